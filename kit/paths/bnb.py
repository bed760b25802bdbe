"""bitsandbytes paths through transformers' loader: ``bnb-int8`` (LLM.int8), ``bnb-nf4``, ``bnb-fp4``.

How a model is quantized
------------------------
The float model is built the way the run asked (``ctx.build_float_model()``: seeded random
weights, a local directory or the hub), saved with ``save_pretrained(safe_serialization=True)``
once per run into the run's cache (``<out>/_cache/bnb-source``, in an artifacts process before the
model's first bitsandbytes cell, `BnbPath.prepare_artifacts`: every measured process then loads
the same directory, and none pays the save: 3.8 s for ViT-L/16 on the reference Xeon), and loaded
back with
``model_class.from_pretrained(dir, quantization_config=BitsAndBytesConfig(...), device_map=...)``:
bitsandbytes quantizes the float state dict as it loads, exactly as it would a downloaded
checkpoint. (Building uint8 tensors by hand is the road where optimum-benchmark's users hit
"Blockwise quantization only supports 16/32-bit floats".) When the float model was itself loaded
from a local directory of safetensors, that directory is loaded directly.

Settings, each recorded in the result (``details``) with where it came from
---------------------------------------------------------------------------
* ``llm_int8_threshold`` (bnb-int8) 6.0: LLM.int8's outlier threshold (Dettmers et al. 2022) and
  transformers' default: activation columns with any |value| > 6 go through an fp16 matmul.
  0.0 would switch the outlier decomposition off (optimum-benchmark's default), which is then
  not LLM.int8 but plain absmax int8.
* Modules kept in float: by default the task head(s) outside the base model (``classifier``;
  ``cls_classifier`` + ``distillation_classifier`` for distilled DeiT), none for backbones. That
  is what transformers 4.x chose by default (``get_keys_to_not_convert``: the last module, none
  for a base model), i.e. the study's stack. transformers 5.x's default names ``classifier.bias``,
  which matches no module, so it quantizes the classifier; qkit passes the list explicitly so
  every version quantizes the same layers. On CPU, bitsandbytes (0.48+) repacks 4-bit weights
  for its AVX512-BF16 kernel at the first forward, which asserts "N must be divisible by
  block_n" (out_features % 32) and needs in_features % 64: it fails on the 1000-class head
  when that is quantized. Such layers stay 4-bit and are routed to bitsandbytes' generic
  dequantize + matmul path (``support_avx512bf16_for_cpu = False``), listed in the result. The
  loaded model is then inspected: what the result reports as replaced and float is what the
  model holds, not what was asked.
* 4-bit compute dtype: bf16 on CPU (bitsandbytes' fused CPU 4-bit kernel computes in bf16 only;
  it would cast anything else to bf16 and back, so with ``bnb.compute_dtype`` float32 or float16
  every 4-bit layer is routed to the generic dequantize + matmul, which honours it), fp16 on
  CUDA (matches the fp16 activations the CUDA paths use, and the tensor-core fp16 GEMM the
  dequantized weights feed).
* Double quantization (4-bit): off, transformers' ``BitsAndBytesConfig`` default (what
  ``load_in_4bit=True, bnb_4bit_quant_type="nf4"`` gets). Option ``bnb.double_quant`` turns it on.
* dtype of the layers left in float and of the activations: float32 on CPU (the comparison with
  FP32 then isolates the quantized Linears), float16 on CUDA (what transformers 4.x's bitsandbytes
  loader forced when no dtype was given: the study's stack, and LLM.int8's design; bitsandbytes
  casts LLM.int8 inputs to fp16 anyway).

Path options (`BnbOptions`, ``--option KEY=VALUE``, checked by the commands before any cell
starts): ``bnb.llm_int8_threshold`` (float >= 0), ``bnb.skip_modules`` (JSON list of module names,
a comma-separated string, or ``[]`` for none), ``bnb.compute_dtype`` (``bfloat16`` | ``float16`` |
``float32``), ``bnb.double_quant`` (bool), ``bnb.float_dtype`` (as compute_dtype).

Proof that the method ran
-------------------------
After loading, every Linear is classified: replaced by ``Linear8bitLt`` / ``Linear4bit`` with a
weight that really is int8 / packed 4-bit, or left in float. Bytes are counted per dtype,
including the quantization state bitsandbytes keeps outside parameters (LLM.int8's per-row
``SCB`` scales; 4-bit ``absmax``, nested absmax/offset and the code tables). A cell fails when:
no Linear was replaced; a layer of the other method appears (an "INT4" path holding 8-bit
layers); a replaced layer's weight is not quantized; the replaced layers' bytes (codes + scales,
code tables excluded) exceed ``LAYER_RATIO_LIMIT`` of their FP32 weights (int8 0.30: 1 byte +
4/in_features per weight = 0.25 + 1/in_features; 4-bit 0.17: 0.5 byte + 4/64 per weight =
0.1406 with fp32 absmax, ~0.129 with double quantization, well below int8's 0.25); or the whole
model's weight bytes are not below the float model's.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from kit.errors import one_line
from kit.export.cache_entry import META_FILE, cached_entry
from kit.measure.memory import weight_bytes_by_dtype
from kit.paths.base import (
    PathOptions,
    PathUnavailable,
    PrecisionPath,
    PrepareContext,
    PreparedModel,
    StackLimit,
    choice,
    opt,
    parse_bool,
    parse_float,
    parse_names,
    per_device,
    register_path,
)
from kit.paths.bnb_inspect import (
    LAYER_RATIO_LIMIT,
    head_modules,
    inspect_bnb_model,
    linear_shapes,
    listed_names,
    verify_bnb_model,
)
from kit.paths.bnb_support import (
    CPU_4BIT_BLOCK_N,
    CPU_BACKEND_NOTE,
    cpu_4bit_kernel_as_run,
    has_avx512bf16,
    import_bnb,
    install_log_filter,
    library_details,
    method_status,
    route_cpu_4bit_layers,
    version_tuple,
)

DEFAULT_LLM_INT8_THRESHOLD = 6.0
OPTION_PREFIX = "bnb."
_DTYPES = ("float32", "float16", "bfloat16")


# --------------------------------------------------------------------------------- settings


def _dtype(value: Any) -> str:
    text = str(value).strip().replace("torch.", "")
    text = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32", "half": "float16"}.get(text, text)
    if text not in _DTYPES:
        raise ValueError(f"expected one of {', '.join(_DTYPES)}")
    return text


def _bool(value: Any) -> bool:
    try:
        return parse_bool(value)
    except ValueError:
        raise ValueError("expected true or false") from None


def _number(value: Any) -> float:
    try:
        return parse_float(value)
    except ValueError:
        raise ValueError("expected a number") from None


@dataclass(frozen=True)
class BnbOptions(PathOptions):
    """The bitsandbytes paths' options (``bnb.`` keys). None: the device's default (module docstring)."""

    family = "bitsandbytes"
    prefix = OPTION_PREFIX

    llm_int8_threshold: float | None = opt(None, _number, "LLM.int8 outlier threshold (default 6.0)")
    skip_modules: tuple[str, ...] | None = opt(None, parse_names, "modules kept in float", blank=())
    compute_dtype: str | None = opt(None, _dtype, "4-bit compute dtype")
    double_quant: bool | None = opt(None, _bool, "4-bit double quantization (default off)")
    float_dtype: str | None = opt(None, _dtype, "dtype of the layers left in float and the activations")

    def __post_init__(self) -> None:
        for name in ("compute_dtype", "float_dtype"):
            choice(name, getattr(self, name), _DTYPES, OPTION_PREFIX)
        if self.llm_int8_threshold is not None and not self.llm_int8_threshold >= 0:
            raise ValueError(f"{OPTION_PREFIX}llm_int8_threshold={self.llm_int8_threshold!r}: expected a number >= 0")


def first_forward(model: Any, ctx: PrepareContext, dtype: Any) -> None:
    import torch

    from kit.models.build import example_inputs

    x = torch.from_numpy(example_inputs(ctx.spec, 1, seed=0)).to(device=ctx.device, dtype=dtype)
    with torch.inference_mode():
        model(pixel_values=x)


# --------------------------------------------------------------------------------- loading


def _local_checkpoint_dir(model: Any) -> str | None:
    """The directory ``model`` was loaded from, when it is a local directory of safetensors."""
    source = getattr(model, "name_or_path", None) or getattr(getattr(model, "config", None), "_name_or_path", "")
    if not source or not os.path.isdir(source):
        return None
    directory = Path(source)
    if (directory / "config.json").is_file() and list(directory.glob("*.safetensors")):
        return str(directory)
    return None


def fp32_source_entry(ctx: PrepareContext) -> Path:
    """The run-cache directory of ``ctx``'s FP32 model as ``save_pretrained`` writes it: one per
    model, weights and transformers version (its files' layout is transformers')."""
    import transformers

    key = json.dumps([ctx.spec.id, ctx.weights_fingerprint, transformers.__version__, "safetensors"])
    return Path(ctx.cache_dir) / "bnb-source" / ctx.spec.id / hashlib.sha256(key.encode()).hexdigest()[:20]


def fp32_source(ctx: PrepareContext, float_model: Any) -> tuple[str, str]:
    """The directory bitsandbytes' loader quantizes from (the run's cache entry, made now when
    the artifacts process did not leave one), and how the result names it."""
    try:
        entry, record = cached_entry(
            fp32_source_entry(ctx), lambda tmp: _save_fp32(ctx, float_model, tmp), _saved_files
        )
    except OSError as exc:  # a cache that cannot be written (full disk, read-only): the cell's scratch dir
        source = os.path.join(ctx.work_dir, "float-model")
        float_model.save_pretrained(source, safe_serialization=True)
        return source, (
            "the run's FP32 model, saved with save_pretrained(safe_serialization=True) to the cell's scratch "
            f"dir: the run's cache could not keep it ({one_line(exc)})"
        )
    made = "made by an earlier process of the run" if record["cache_hit"] else "made in this process"
    return str(entry), (
        "the run's FP32 model, saved once with save_pretrained(safe_serialization=True) to the run's "
        f"cache ({entry}, {made})"
    )


def _save_fp32(ctx: PrepareContext, float_model: Any, directory: Path) -> dict[str, Any]:
    import transformers

    float_model.save_pretrained(str(directory), safe_serialization=True)
    return {
        "model": ctx.spec.id,
        "weights_fingerprint": ctx.weights_fingerprint,
        "method": "save_pretrained(safe_serialization=True)",
        "transformers_version": transformers.__version__,
    }


def _saved_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_file() and p.name != META_FILE)


def _dtype_kwarg() -> str:
    import transformers

    # transformers renamed torch_dtype to dtype in 4.56; 4.40-4.55 know only torch_dtype.
    return "dtype" if version_tuple(transformers.__version__)[:2] >= (4, 56) else "torch_dtype"


def _device_map(device: str) -> dict[str, Any]:
    return {"": 0} if device == "cuda" else {"": "cpu"}


class BnbPath(PrecisionPath):
    """One bitsandbytes method; subclasses set ``quant_type`` (int8 | nf4 | fp4)."""

    family: ClassVar[str] = "bitsandbytes"
    runtime: ClassVar[str] = "torch"
    devices: ClassVar[tuple[str, ...]] = ("cpu", "cuda")
    baseline: ClassVar[str] = "torch-fp32"
    prepare_steps: ClassVar[tuple[str, ...]] = ("fp32-save", "bnb-load")
    # The study's bitsandbytes (0.42) had CUDA kernels only.
    stack_limits = (StackLimit("bitsandbytes", "0.46", ("cuda",), CPU_BACKEND_NOTE),)
    options_class = BnbOptions
    quant_type: ClassVar[str]

    def available(self, device: str) -> tuple[bool, str]:
        ok, why = self.supports_device(device)
        if not ok:
            return ok, why
        return method_status(self.quant_type, device)

    # ------------------------------------------------------------------ settings
    def settings(self, ctx: PrepareContext, float_model: Any) -> dict[str, Any]:
        opts = self.options(ctx)
        assert isinstance(opts, BnbOptions)
        cuda = ctx.device == "cuda"
        s: dict[str, Any] = {}
        s["float_dtype"] = opts.float_dtype or ("float16" if cuda else "float32")
        s["float_dtype_source"] = (
            "option"
            if opts.float_dtype
            else (
                "default on cuda: float16, transformers 4.x's bitsandbytes loader default (the study's stack)"
                if cuda
                else "default on cpu: float32, so the comparison with FP32 isolates the quantized Linears"
            )
        )
        if opts.skip_modules is None:
            requested = head_modules(float_model)
            s["skip_modules_source"] = (
                "default: Linear heads outside the base model (transformers 4.x's default; passed "
                "explicitly because transformers 5.x's default misses the classifier)"
            )
        else:
            requested = list(opts.skip_modules)
            s["skip_modules_source"] = "option"
        s["skip_modules"] = list(requested)
        if self.quant_type == "int8":
            thr = opts.llm_int8_threshold
            s["llm_int8_threshold"] = thr if thr is not None else DEFAULT_LLM_INT8_THRESHOLD
            s["llm_int8_threshold_source"] = (
                "option"
                if thr is not None
                else (
                    "default 6.0: LLM.int8's outlier threshold (Dettmers et al. 2022) and transformers' "
                    "default; 0.0 would switch the fp16 outlier decomposition off"
                )
            )
        else:
            cd = opts.compute_dtype
            s["compute_dtype"] = cd or ("float16" if cuda else "bfloat16")
            s["compute_dtype_source"] = (
                "option"
                if cd
                else (
                    "default on cuda: float16, the dtype of the activations and of the tensor-core GEMM "
                    "the dequantized weights feed"
                    if cuda
                    else "default on cpu: bfloat16, the only dtype bitsandbytes' fused CPU 4-bit kernel "
                    "computes in (it casts other inputs to bf16 and back)"
                )
            )
            s["double_quant"] = bool(opts.double_quant)
            s["double_quant_source"] = (
                "option"
                if opts.double_quant is not None
                else ("default off: transformers' BitsAndBytesConfig default (bnb_4bit_use_double_quant=False)")
            )
        return s

    def quantization_config(self, s: dict[str, Any]) -> Any:
        import torch
        from transformers import BitsAndBytesConfig

        if self.quant_type == "int8":
            return BitsAndBytesConfig(
                load_in_8bit=True,
                llm_int8_threshold=s["llm_int8_threshold"],
                llm_int8_skip_modules=list(s["skip_modules"]),
            )
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=self.quant_type,
            bnb_4bit_compute_dtype=getattr(torch, s["compute_dtype"]),
            bnb_4bit_use_double_quant=s["double_quant"],
            llm_int8_skip_modules=list(s["skip_modules"]),
        )

    # ------------------------------------------------------------------ prepare
    def prepare_artifacts(self, ctx: PrepareContext) -> dict[str, Any] | None:
        """The FP32 model directory the loader quantizes, saved once into the run's cache (shared
        by every bitsandbytes path of the model); nothing for a model that came from a local
        checkpoint directory, which is loaded directly."""
        # available() covers bitsandbytes' import (method_status).
        if not self.available(ctx.device)[0] or ctx.weights_fingerprint.startswith("directory-"):
            return None
        # The float model is built only when the entry is not there yet.
        make = lambda tmp: _save_fp32(ctx, ctx.build_float_model(), tmp)  # noqa: E731
        return cached_entry(fp32_source_entry(ctx), make, _saved_files)[1]

    def prepare(self, ctx: PrepareContext) -> PreparedModel:
        import torch

        from kit.models.build import model_class

        ok, why = self.available(ctx.device)
        if not ok:
            raise PathUnavailable(why)
        bnb, err = import_bnb()
        if bnb is None:
            raise PathUnavailable(err or "bitsandbytes fails to import")

        float_model = ctx.build_float_model()
        float_by_dtype = weight_bytes_by_dtype(float_model)
        float_bytes = int(sum(float_by_dtype.values()))
        n_linear = len(linear_shapes(float_model))
        s = self.settings(ctx, float_model)
        attn = getattr(float_model.config, "_attn_implementation", None)
        source = _local_checkpoint_dir(float_model)
        if source is None:
            source, source_note = fp32_source(ctx, float_model)
        else:
            source_note = f"the local checkpoint directory the FP32 model came from ({source})"
        del float_model
        gc.collect()

        qconfig = self.quantization_config(s)
        kwargs: dict[str, Any] = {
            "quantization_config": qconfig,
            "device_map": _device_map(ctx.device),
            _dtype_kwarg(): getattr(torch, s["float_dtype"]),
            "use_safetensors": True,
            "local_files_only": True,
            "trust_remote_code": False,
            **ctx.spec.model_kwargs,
        }
        if attn:
            kwargs["attn_implementation"] = attn
        remove_filter = install_log_filter()
        try:
            model = model_class(ctx.spec).from_pretrained(source, **kwargs)
        except Exception as exc:
            remove_filter()
            text = str(exc)
            if "No GPU found" in text or "requires a GPU" in text or "None of the available devices" in text:
                first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
                raise PathUnavailable(
                    f"transformers cannot load bitsandbytes models on {ctx.device} here: {first}"
                ) from exc
            raise
        try:
            prepared = self._finish(ctx, bnb, model, s, float_bytes, float_by_dtype, n_linear, source_note, attn)
        except BaseException:
            remove_filter()
            raise

        def close() -> None:
            remove_filter()
            gc.collect()
            if ctx.device == "cuda":
                torch.cuda.empty_cache()

        prepared.close = close
        return prepared

    def _finish(
        self,
        ctx: PrepareContext,
        bnb: Any,
        model: Any,
        s: dict[str, Any],
        float_bytes: int,
        float_by_dtype: dict[str, int],
        n_linear: int,
        source_note: str,
        attn: str | None,
    ) -> PreparedModel:
        """Inspect and verify the loaded model, then wrap it (PathFailed when the method did not run)."""
        import torch

        from kit.paths.torch_paths import torch_prepared

        model.eval()
        weights_alloc_mb = None
        if ctx.device == "cuda":
            torch.cuda.synchronize()
            weights_alloc_mb = torch.cuda.memory_allocated() / 2**20

        info = inspect_bnb_model(model, bnb)
        verify_bnb_model(self.name, self.quant_type, info, float_bytes)
        cpu_4bit = ctx.device == "cpu" and self.quant_type != "int8"
        generic = route_cpu_4bit_layers(model, s["compute_dtype"]) if cpu_4bit else []
        details = self.describe(ctx, s, info, float_bytes, float_by_dtype, n_linear, source_note, attn)
        if cpu_4bit:
            details["cpu_generic_4bit_layers"] = listed_names(generic)
            if s["compute_dtype"] != "bfloat16" and has_avx512bf16():
                details["cpu_generic_4bit_layers_reason"] = (
                    f"compute dtype {s['compute_dtype']}: bitsandbytes' fused AVX512-BF16 4-bit kernel "
                    "computes in bf16 only, so every 4-bit layer runs bitsandbytes' generic dequantize "
                    f"+ matmul in {s['compute_dtype']} (module.support_avx512bf16_for_cpu = False)"
                )
            else:
                details["cpu_generic_4bit_layers_reason"] = (
                    f"bitsandbytes' fused AVX512-BF16 4-bit kernel repacks weights and needs "
                    f"out_features % {CPU_4BIT_BLOCK_N} == 0 and in_features % blocksize == 0 ('N must be "
                    "divisible by block_n'); these layers stay 4-bit and run bitsandbytes' generic "
                    "dequantize + matmul (module.support_avx512bf16_for_cpu = False)"
                )
            details["cpu_4bit_kernel_as_run"] = cpu_4bit_kernel_as_run(len(generic), info["replaced_4bit_layers"])
        if weights_alloc_mb is not None:
            details["cuda_memory_allocated_after_load_mb"] = weights_alloc_mb
            details["cuda_memory_allocated_after_load_source"] = (
                "torch.cuda.memory_allocated() right after from_pretrained, before any forward (MiB; "
                "includes what the process held before, see memory.baseline_mb)"
            )
        # Serialized size first: state_dict() undoes bitsandbytes' CPU 4-bit repacking.
        prepared = torch_prepared(model, ctx, getattr(torch, s["float_dtype"]), details)
        as_run = info
        if cpu_4bit and details["cpu_4bit_kernel_as_run"]["fused_layers"]:
            # bitsandbytes repacks 4-bit weights for its CPU kernel at the first forward (absmax to
            # bf16, double quantization undone): count the bytes the timed model holds.
            first_forward(model, ctx, getattr(torch, s["float_dtype"]))
            as_run = inspect_bnb_model(model, bnb)
            details["cpu_repacked_at_first_forward"] = {
                "weight_bytes": as_run["weight_bytes"],
                "weight_bytes_by_dtype": as_run["weight_bytes_by_dtype"],
                "replaced_weight_ratio_vs_fp32": as_run["replaced_weight_bytes"]["ratio_vs_fp32"],
                "double_quant_in_layers": as_run["double_quant_in_layers"],
                "note": (
                    "bitsandbytes' CPU 4-bit path repacks the fused-kernel layers at the first "
                    "forward: absmax is stored as bf16 per block and double quantization, if on, is "
                    "undone; the weight bytes reported for the cell are these, the ones the timed "
                    "model holds"
                ),
            }
        # torch_prepared counts parameters and buffers; bitsandbytes keeps scales outside them.
        prepared.weight_bytes = as_run["weight_bytes"]
        prepared.weight_bytes_by_dtype = as_run["weight_bytes_by_dtype"]
        return prepared

    def describe(
        self,
        ctx: PrepareContext,
        s: dict[str, Any],
        info: dict[str, Any],
        float_bytes: int,
        float_by_dtype: dict[str, int],
        n_linear: int,
        source_note: str,
        attn: str | None,
    ) -> dict[str, Any]:
        quant = {k: v for k, v in s.items() if k not in ("skip_modules",)}
        quant["skip_modules_passed"] = list(s["skip_modules"])
        details: dict[str, Any] = {
            "method": self.method_text(s),
            "dtype": self.dtype_text(s),
            "framework": "pytorch + bitsandbytes (transformers from_pretrained with a BitsAndBytesConfig)",
            "execution_provider": None,
            "device_map": {"": 0} if ctx.device == "cuda" else {"": "cpu"},
            "quantized_from": source_note,
            "attn_implementation": attn,
            "settings": quant,
            **library_details(ctx.device),
            "proof": {
                **{k: v for k, v in info.items() if k not in ("weight_bytes_by_dtype", "weight_bytes")},
                "linear_layers_in_float_model": n_linear,
                "layer_ratio_limit": LAYER_RATIO_LIMIT[self.quant_type],
                "float_model_weight_bytes": float_bytes,
                "float_model_weight_bytes_by_dtype": float_by_dtype,
                "weight_bytes": info["weight_bytes"],
                "weight_ratio_vs_float_model": info["weight_bytes"] / float_bytes if float_bytes else None,
                "checks": (
                    f">= 1 Linear replaced by the {self.quant_type} class with a quantized weight; no layer of "
                    f"the other method; replaced-weight ratio <= {LAYER_RATIO_LIMIT[self.quant_type]}x FP32; "
                    "whole-model weight bytes < the FP32 model's"
                ),
            },
        }
        if self.quant_type == "int8" and s["float_dtype"] != "float16":
            details["activation_cast"] = (
                f"bitsandbytes' MatMul8bitLt casts {s['float_dtype']} activations to float16 before "
                "quantizing them (its per-call warning is filtered so it is not timed)"
            )
        return details

    def method_text(self, s: dict[str, Any]) -> str:
        raise NotImplementedError

    def dtype_text(self, s: dict[str, Any]) -> str:
        raise NotImplementedError


@register_path
class BnbInt8(BnbPath):
    name = "bnb-int8"
    quant_type = "int8"
    description = "bitsandbytes LLM.int8 (Linear8bitLt, outlier threshold 6.0) via transformers' loader"
    method = "LLM.int8 (bitsandbytes)"
    precision = math_class = "int8"
    # Slow CPU kernels; LLM.int8's outlier decomposition is slower than FP16 at batch 1.
    cost = per_device(cpu=1.1, cuda=1.5)
    order = 50

    def method_text(self, s: dict[str, Any]) -> str:
        return (
            "LLM.int8 (bitsandbytes Linear8bitLt): int8 row-wise absmax weights, int8 vector-wise "
            f"activations, activation columns with |x| > {s['llm_int8_threshold']} in fp16; "
            "BitsAndBytesConfig(load_in_8bit=True) on a float state dict"
        )

    def dtype_text(self, s: dict[str, Any]) -> str:
        return f"int8 Linear weights / {s['float_dtype']} other layers and activations"


class _Bnb4Bit(BnbPath):
    precision = math_class = "int4"
    cost = per_device(cpu=1.7, cuda=0.8)

    def method_text(self, s: dict[str, Any]) -> str:
        return (
            f"bitsandbytes {self.quant_type.upper()} (Linear4bit): 4-bit {self.quant_type} weights in blocks of 64 "
            f"with absmax scales{' (double-quantized)' if s['double_quant'] else ''}, dequantized "
            f"to {s['compute_dtype']} for the matmul; BitsAndBytesConfig(load_in_4bit=True, "
            f"bnb_4bit_quant_type={self.quant_type!r}) on a float state dict"
        )

    def dtype_text(self, s: dict[str, Any]) -> str:
        return (
            f"{self.quant_type} Linear weights / {s['compute_dtype']} compute / {s['float_dtype']} other "
            "layers and activations"
        )


@register_path
class BnbNF4(_Bnb4Bit):
    name = "bnb-nf4"
    quant_type = "nf4"
    description = "bitsandbytes NF4 (Linear4bit, quant_type nf4) via transformers' loader"
    method = "NF4 4-bit (bitsandbytes)"
    order = 60


@register_path
class BnbFP4(_Bnb4Bit):
    name = "bnb-fp4"
    quant_type = "fp4"
    description = "bitsandbytes FP4 (Linear4bit, quant_type fp4) via transformers' loader"
    method = "FP4 4-bit (bitsandbytes)"
    order = 70
    # Not a method of the study: runnable on request (--paths bnb-fp4), not in the default matrix.
    default_devices = ()
    default_devices_reason = "FP4 is not one of the study's methods"
