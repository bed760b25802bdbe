"""ONNX Runtime paths: the checked ONNX export of a model run by ORT, in FP32, FP16 or INT8.

Paths (named by method; the device and the provider are separate):

* ``ort-fp32``: the export as is. cpu and cuda.
* ``ort-fp16``: GPU providers only. CUDA provider: the graph converted to FP16 by
  ``onnxruntime.transformers.float16`` (inputs/outputs kept FP32). TensorRT provider: the FP32
  graph with TensorRT's FP16 flag. ORT's CPU provider has FP16 kernels for few ops, so cpu is
  refused rather than measured as something else.
* ``ort-int8-dynamic``: ``quantize_dynamic`` (see `kit.quantize.ort_quant`); cpu only: its
  DynamicQuantizeMatMul/MatMulIntegerToFloat kernels exist for the CPU provider only.
* ``ort-int8-static-qdq``: ``quantize_static`` in QDQ format, calibrated; cpu and cuda (CUDA
  provider, or TensorRT with its INT8 flag reading the QDQ scales).

Provider choice is the path option ``provider`` (``--option provider=tensorrt``), not a path name:
the method is the same whichever provider runs it. cpu -> CPUExecutionProvider; cuda ->
CUDAExecutionProvider unless ``provider=tensorrt``. A provider that is not available, or that ORT
drops when the session is made, is a skipped cell with the reason, never a silent CPU fallback;
``execution_provider`` in the result is ``session.get_providers()[0]``, and ``nodes_by_provider``
shows any node ORT still gave to the CPU. (One result directory holds one provider per cell:
``qkit compare-int8`` writes TensorRT cells to their own directory.)

Other path options (`OrtOptions`; strings from the command line are parsed, and the commands check
them before any cell starts): ``intra_op_threads``, ``exporter`` (dynamo | legacy),
``calibration_dir``, ``calibration_samples`` (default 8), ``calibration_method`` (MinMax | Entropy
| Percentile), ``static_per_channel``, ``static_op_types``, ``static_activation_type``,
``dynamic_per_channel``, ``dynamic_op_types``, ``dynamic_weight_type``, ``dynamic_reduce_range``,
``trt_fp16`` (INT8 on TensorRT: FP16 for the layers left unquantized, default on), ``fusion``
and ``fusion_attention`` (below).

Fusions (``fusion``, `kit.export.ort_optimize`): ORT's transformer optimizer (BiasGelu,
SkipLayerNormalization, MultiHeadAttention) is applied to the export once, cached, and every
path derives from the fused graph, FP32 and INT8 alike, so ratios compare like with like; the
fused graph is checked against the unfused one at cosine >= 0.9999. Default (`default_fusion`):
off on the CPU provider, where it measured slower than ORT's own session-level fusions; on for
CUDA; off for TensorRT, which does its own fusions and does not take ORT's com.microsoft contrib
ops (they would fall to the CUDA provider). ``fusion=true|false`` decides it. ``path_info.fusion`` records what
was applied (or why not): optimizer, ORT version, options, fused operator counts, the check.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from kit.export.ort_runtime import (
    ort_import_status,
    provider_name,
    provider_status,
    resolve_provider,
    session_options,
    session_record,
)
from kit.paths.base import (
    PathFailed,
    PathOptions,
    PathUnavailable,
    PrecisionPath,
    PrepareContext,
    PreparedModel,
    choice,
    opt,
    parse_bool,
    parse_int,
    parse_names,
    parse_text,
    per_device,
    register_path,
)

SANITY_SEED = 0x5A17  # the all-zero / NaN check's image: apart from every other seed
CUDA_TIMING = (
    "session.run_with_iobinding with input and output bound on the GPU (no host copies); "
    "ORT synchronises its stream at the end of each run, so the host clock (perf_counter_ns) "
    "times it: CUDA events on torch's stream would not see ORT's stream"
)
CPU_TIMING = "session.run on a float32 numpy input (ORT reads it in place)"


# --------------------------------------------------------------------------- options

# Kept here rather than imported from kit.quantize.ort_quant, which imports onnx-side code: the
# options must be checkable where onnxruntime is not installed. tests/test_path_facts.py checks
# they match the quantizer's.
DEFAULT_CALIBRATION_SAMPLES = 8
CALIBRATION_METHODS = ("MinMax", "Entropy", "Percentile")
QUANT_TYPES = ("QInt8", "QUInt8")
EXPORTERS = ("dynamo", "legacy")
ROUTES = ("kit", "optimum")  # kit.export.onnx_export + kit.quantize, or kit.export.optimum_route
FUSION_ATTENTION = ("MultiHeadAttention", "Attention", "none")  # kit.export.ort_optimize.ATTENTION_OPS


def default_fusion(provider: str) -> tuple[bool, str]:
    """Whether a provider's cells run the fused graph when no ``fusion`` option is given, and why.

    CPU: off. Measured on the reference 2-core Xeon (AVX512-VNNI, AMX; ORT 1.32), ViT-B/16 batch 1,
    each cell in its own process: fused against unfused FP32 143 vs 139 ms, dynamic INT8 47.8 vs
    37.2 ms, static QDQ 51.6 vs 45.5 ms. ORT's session-level optimizer already fuses what pays on
    the unfused graph; the offline SkipLayerNormalization (24 nodes, 9.9 ms against 4.5 ms for the
    LayerNormalization + Add it replaces) and MultiHeadAttention (10.1 ms against 10.5) kernels gain
    nothing there. ``fusion=true`` applies them (another CPU may differ: `make bench` reports both).
    CUDA: on (ORT's fused attention and SkipLayerNorm kernels are its documented fast path on GPUs;
    not measured here). TensorRT: off (it fuses itself and does not take com.microsoft ops)."""
    if provider == "CUDAExecutionProvider":
        return True, "on by default on the CUDA provider"
    if provider == "TensorrtExecutionProvider":
        return False, "off by default on TensorRT: it fuses itself and does not take ORT's com.microsoft ops"
    return False, (
        "off by default on the CPU provider: slower than ORT's own session-level fusions on the reference "
        "Xeon (ViT-B/16 dynamic INT8 47.8 vs 37.2 ms); fusion=true applies it"
    )


def _provider(value: Any) -> str:
    text = parse_text(value)
    provider_name(text)  # ValueError naming the valid providers
    return text


@dataclass(frozen=True)
class OrtOptions(PathOptions):
    """The ONNX Runtime paths' options. None: the path's (or the provider's) default."""

    family = "onnxruntime"

    provider: str | None = opt(None, _provider, "cpu | cuda | tensorrt (or a full provider name)")
    intra_op_threads: int | None = opt(None, parse_int, "ORT intra-op threads (default: the usable cores)")
    exporter: str | None = opt(None, parse_text, "dynamo | legacy (default: dynamo where it runs)")
    calibration_dir: str | None = opt(None, parse_text, "image folder for static INT8 calibration")
    calibration_samples: int = opt(DEFAULT_CALIBRATION_SAMPLES, parse_int, "calibration images")
    calibration_method: str | None = opt(None, parse_text, "MinMax | Entropy | Percentile")
    static_per_channel: bool | None = opt(None, parse_bool)
    static_op_types: tuple[str, ...] | None = opt(None, parse_names)
    static_activation_type: str | None = opt(None, parse_text, "QInt8 | QUInt8")
    dynamic_per_channel: bool | None = opt(None, parse_bool)
    dynamic_op_types: tuple[str, ...] | None = opt(None, parse_names)
    dynamic_weight_type: str | None = opt(None, parse_text, "QInt8 | QUInt8")
    dynamic_reduce_range: bool | None = opt(None, parse_bool)
    trt_fp16: bool = opt(True, parse_bool, "INT8 on TensorRT: FP16 for the layers left unquantized")
    fusion: bool | None = opt(
        None, parse_bool, "ORT transformer fusions before FP32/INT8 (default: on for CUDA, off for CPU and TensorRT)"
    )
    route: str = opt("kit", parse_text, "kit | optimum (optimum's exporter, ORTOptimizer, ORTQuantizer)")
    optimum_optimize: bool = opt(False, parse_bool, "route=optimum: ORTOptimizer (level optimum_level) first")
    optimum_level: int = opt(2, parse_int, "route=optimum: ORTOptimizer's optimization level (0-4)")
    fusion_attention: str | None = opt(
        None, parse_text, "MultiHeadAttention | Attention | none (default MultiHeadAttention)"
    )

    def __post_init__(self) -> None:
        choice("exporter", self.exporter, EXPORTERS)
        choice("calibration_method", self.calibration_method, CALIBRATION_METHODS)
        choice("static_activation_type", self.static_activation_type, QUANT_TYPES)
        choice("dynamic_weight_type", self.dynamic_weight_type, QUANT_TYPES)
        choice("fusion_attention", self.fusion_attention, FUSION_ATTENTION)
        choice("route", self.route, ROUTES)
        if not 0 <= self.optimum_level <= 4:
            raise ValueError(f"optimum_level={self.optimum_level}: expected 0-4")
        if self.intra_op_threads is not None and self.intra_op_threads < 1:
            raise ValueError(f"intra_op_threads={self.intra_op_threads}: expected >= 1")
        if self.calibration_samples < 1:
            raise ValueError(f"calibration_samples={self.calibration_samples}: expected >= 1")


# --------------------------------------------------------------------------- provider options


def provider_list(provider: str, path_kind: str, ctx: PrepareContext, options: OrtOptions) -> list[Any]:
    """The ``providers`` argument for the session: (name, options) pairs, most preferred first."""
    if provider == "CPUExecutionProvider":
        return [("CPUExecutionProvider", {})]
    # FP32 means FP32: ORT's CUDA provider would use TF32 tensor cores for FP32 MatMul/Conv.
    cuda = {"device_id": 0, "use_tf32": 0}
    if provider == "CUDAExecutionProvider":
        return [("CUDAExecutionProvider", cuda)]
    int8 = path_kind == "int8-static-qdq"
    engines = Path(ctx.cache_dir) / "tensorrt-engines"
    engines.mkdir(parents=True, exist_ok=True)
    trt: dict[str, Any] = {
        "device_id": 0,
        # FP16 path: FP16 kernels; INT8 path: FP16 for the layers left unquantized (option trt_fp16).
        "trt_fp16_enable": path_kind == "fp16" or (int8 and options.trt_fp16),
        # Explicit quantization: TensorRT reads the scales from the QDQ nodes (no calibration table).
        "trt_int8_enable": int8,
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(engines),
    }
    # Nodes TensorRT does not take run on the CUDA provider (recorded in nodes_by_provider).
    return [("TensorrtExecutionProvider", trt), ("CUDAExecutionProvider", cuda)]


def _requested_options(providers: list[Any]) -> dict[str, Any]:
    return {name: dict(opts) for name, opts in providers}


# --------------------------------------------------------------------------- the base path


class OrtPath(PrecisionPath):
    """Shared by the ORT paths: provider checks, export, session, prepared model."""

    family: ClassVar[str] = "onnxruntime"
    runtime: ClassVar[str] = "onnxruntime"
    devices: ClassVar[tuple[str, ...]] = ("cpu", "cuda")
    baseline: ClassVar[str] = "ort-fp32"
    prepare_steps: ClassVar[tuple[str, ...]] = ("onnx-export", "ort-fuse")
    # The provider option picks TensorRT on cuda (see the module docstring).
    extra_providers = per_device(cuda=("tensorrt",))
    options_class = OrtOptions
    kind: ClassVar[str]

    def available(self, device: str) -> tuple[bool, str]:
        ok, why = self.supports_device(device)
        if not ok:
            return False, why
        ok, why = ort_import_status()
        if not ok:
            return ok, why
        if device == "cuda":
            ok, why = provider_status("CUDAExecutionProvider")
            if not ok:
                return ok, why
            return _torch_cuda_timing_status()
        return True, ""

    def prepare(self, ctx: PrepareContext) -> PreparedModel:
        opts = self.options(ctx)
        assert isinstance(opts, OrtOptions)
        provider = self._provider(ctx, opts)
        source = self._model_source(ctx, opts, provider)
        model_path = source.model_path
        providers = provider_list(provider, self.kind, ctx, opts)
        options = session_options(opts.intra_op_threads)
        session = self._session(model_path, options, providers, provider)
        info = session_record(session, options, _requested_options(providers))
        input_name = session.get_inputs()[0].name
        sanity = _sanity_check(session, input_name, ctx, self.name)
        fp32_bytes = source.fp32_bytes
        size = _file_bytes(model_path)
        details = {
            "method": self.method_text(provider) if source.route == "kit" else _OPTIMUM_METHOD[self.kind],
            "dtype": self.dtype_text(),
            "framework": "onnxruntime",
            **info,
            "provider_requested": provider,
            "route": source.route,
            "export": source.export,
            "fusion": source.fusion,
            "quantization": source.quantization,
            "model_transform": source.transform,
            "model_file": str(model_path),
            "model_file_bytes": size,
            "fp32_file_bytes": fp32_bytes,
            "size_ratio_vs_fp32_file": size / fp32_bytes if fp32_bytes else None,
            "made_in_this_cell": source.made,
            "timing": CPU_TIMING if provider == "CPUExecutionProvider" else CUDA_TIMING,
            "sanity": sanity,
        }
        return _prepared(session, input_name, provider, model_path, details)

    def prepare_artifacts(self, ctx: PrepareContext) -> dict[str, Any] | None:
        """The export, its fused graph and the path's model in the cache; no session opened."""
        opts = self.options(ctx)
        assert isinstance(opts, OrtOptions)
        source = self._model_source(ctx, opts, self._provider(ctx, opts))
        return {"model_file": str(source.model_path), "made": source.made}

    def _model_source(self, ctx: PrepareContext, opts: OrtOptions, provider: str) -> ModelSource:
        """The ONNX model the session will load, by the kit's route or optimum's, and its record."""
        if opts.route == "optimum":
            return self._optimum_source(ctx, opts)
        export = self._export(ctx, opts)
        base = self._base(ctx, export, provider, opts)
        model_path, method, made_here = self.make_model(ctx, export, provider, opts, base)
        return ModelSource(
            route="kit",
            model_path=model_path,
            export=_export_summary(export),
            fusion=base.fusion,
            quantization=method.get("quantization"),
            transform=method.get("transform"),
            fp32_bytes=_file_bytes(export.onnx_path),
            made={
                "export": not export.record.get("cache_hit"),
                "fusion": bool(base.fusion.get("applied") and not base.fusion.get("cache_hit")),
                "model": made_here,
            },
        )

    def _optimum_source(self, ctx: PrepareContext, opts: OrtOptions) -> ModelSource:
        from kit.export.optimum_route import OptimumFailed, OptimumUnavailable, optimum_model

        kind: Literal["fp32", "int8-dynamic"]
        if self.kind == "fp32":
            kind = "fp32"
        elif self.kind == "int8-dynamic":
            kind = "int8-dynamic"
        else:
            raise PathUnavailable(f"route=optimum offers ort-fp32 and ort-int8-dynamic, not {self.name}")
        try:
            model_path, rec = optimum_model(ctx, kind, opts.optimum_optimize, level=opts.optimum_level)
        except OptimumUnavailable as exc:
            raise PathUnavailable(str(exc)) from None
        except OptimumFailed as exc:
            raise PathFailed(str(exc)) from None
        export = rec.get("export") or {}
        return ModelSource(
            route="optimum",
            model_path=model_path,
            export={
                "exporter": export.get("exporter"),
                "exporter_version": f"optimum {(rec.get('versions') or {}).get('optimum')}",
                "opset": rec.get("opset"),
                "task": export.get("task"),
                "check": export.get("check"),
                "cache_hit": rec.get("cache_hit"),
                "cache_entry": rec.get("cache_entry"),
            },
            fusion={"applied": False, "why": "route=optimum: ORTOptimizer's own fusions are in model_transform"},
            quantization=rec.get("quantization"),
            transform=rec.get("optimization"),
            fp32_bytes=int(rec.get("fp32_file_bytes") or 0),
            made={"export": not rec.get("cache_hit"), "fusion": False, "model": not rec.get("cache_hit")},
        )

    # ----------------------------------------------------------------- steps

    def _provider(self, ctx: PrepareContext, opts: OrtOptions) -> str:
        try:
            provider = resolve_provider(ctx.device, opts.provider)
        except ValueError as exc:
            raise PathUnavailable(str(exc)) from None
        ok, why = provider_status(provider)
        if not ok:
            raise PathUnavailable(why)
        return provider

    def _export(self, ctx: PrepareContext, opts: OrtOptions) -> Any:
        from kit.export.onnx_export import ExportCheckFailed, OnnxModelError, get_or_export

        try:
            return get_or_export(
                ctx.spec,
                ctx.build_float_model,
                ctx.cache_dir,
                ctx.weights_fingerprint,
                exporter=opts.exporter,
            )
        except (ExportCheckFailed, OnnxModelError) as exc:
            raise PathFailed(str(exc)) from None
        except ValueError as exc:  # an exporter asked for that this torch lacks
            raise PathUnavailable(str(exc)) from None
        finally:
            gc.collect()  # the float model built for the export is not needed any more

    def _base(self, ctx: PrepareContext, export: Any, provider: str, opts: OrtOptions) -> ModelBase:
        """The graph the path derives its model from: the fused export, or the export as is."""
        wanted, why = (
            (opts.fusion, "off by option (fusion=false)") if opts.fusion is not None else default_fusion(provider)
        )
        if not wanted:
            return ModelBase(export.onnx_path, export.external_data, "", {"applied": False, "why": why})
        from kit.export.ort_optimize import FusionFailed, FusionSettings, fusion_digest, get_or_fuse

        settings = FusionSettings(attention=opts.fusion_attention or "MultiHeadAttention")
        try:
            path, record = get_or_fuse(export, ctx.spec, settings)
        except FusionFailed as exc:
            raise PathFailed(str(exc)) from None
        except MemoryError:
            raise
        except Exception as exc:  # onnx save/load errors: one line, a failed cell
            raise PathFailed(f"fusion failed: {type(exc).__name__}: {str(exc).strip()[:300]}") from None
        summary = {"applied": True, **{k: v for k, v in record.items() if k not in ("op_counts_before", "files")}}
        return ModelBase(path, export.external_data, f"-fused-{fusion_digest(record)}", summary)

    def _session(self, model_path: Path, options: Any, providers: list[Any], provider: str) -> Any:
        from kit.export.onnx_export import OnnxModelError, open_session

        try:
            session = open_session(model_path, options, providers)
        except OnnxModelError as exc:
            raise PathFailed(str(exc)) from None
        kept = session.get_providers()
        if kept[0] != provider:
            raise PathUnavailable(
                f"ONNX Runtime dropped {provider} for {model_path.name} (providers kept: "
                f"{kept}); not measured as a CPU fallback"
            )
        return session

    # ----------------------------------------------------------------- per path

    def make_model(
        self, ctx: PrepareContext, export: Any, provider: str, opts: OrtOptions, base: ModelBase
    ) -> tuple[Path, dict[str, Any], bool]:
        """The model file the session loads, what was done to make it, and whether it was made now."""
        return base.path, {"transform": None, "quantization": None}, False

    def method_text(self, provider: str) -> str:
        return "the checked FP32 ONNX export (after the fusions in fusion) run by ONNX Runtime"

    def dtype_text(self) -> str:
        return "float32"


@dataclass(frozen=True)
class ModelBase:
    """The FP32 graph a path starts from: the fused export or the export itself.

    ``key`` is appended to the cache entries of models derived from it ("" unfused, so entries
    made before fusions existed stay valid); ``fusion`` is ``path_info.fusion``.
    """

    path: Path
    external_data: bool
    key: str
    fusion: dict[str, Any]


def _torch_cuda_timing_status() -> tuple[bool, str]:
    """The latency tracker times CUDA cells with torch CUDA events, so torch must see the GPU."""
    from kit.paths.torch_paths import cuda_available

    ok, why = cuda_available()
    return (True, "") if ok else (False, f"{why} (CUDA cells are timed with torch CUDA events)")


def _sanity_check(session: Any, input_name: str, ctx: PrepareContext, path: str) -> dict[str, Any]:
    """PathFailed when the model's output is all zeros or not finite (a broken quantization)."""
    from kit.models.build import example_inputs

    x = example_inputs(ctx.spec, 1, seed=SANITY_SEED)
    out = np.asarray(session.run(None, {input_name: x})[0], dtype=np.float64)
    finite = bool(np.isfinite(out).all())
    all_zero = bool(finite and not np.any(out))
    if not finite or all_zero:
        what = "non-finite values" if not finite else "all zeros"
        raise PathFailed(f"{path} output on a seeded image is {what}: the model is broken, not measured")
    return {"image_seed": SANITY_SEED, "finite": finite, "all_zero": all_zero, "output_std": float(out.std())}


def _file_bytes(path: Path) -> int:
    from kit.export.onnx_export import onnx_file_bytes

    return onnx_file_bytes(path)


@dataclass(frozen=True)
class ModelSource:
    """The model file a session loads and where it came from (the record ``details`` shows)."""

    route: str
    model_path: Path
    export: dict[str, Any]
    fusion: dict[str, Any]
    quantization: dict[str, Any] | None
    transform: dict[str, Any] | None
    fp32_bytes: int
    made: dict[str, bool]


_OPTIMUM_METHOD = {
    "fp32": "optimum's ONNX exporter (onnx_export_from_model), optionally ORTOptimizer (model_transform)",
    "int8-dynamic": "optimum's ONNX exporter, then ORTQuantizer with AutoQuantizationConfig.avx512_vnni "
    "(is_static=False; settings in quantization)",
}


def _export_summary(export: Any) -> dict[str, Any]:
    keep = (
        "exporter",
        "exporter_kind",
        "exporter_version",
        "opset",
        "fallback_from",
        "attn_implementation_built",
        "attn_implementation_exported",
        "external_data",
        "external_data_file",
        "check",
        "cache_hit",
        "cache_entry",
        "cache_note",
        "export_seconds",
        "optimum_exporter",
        "weights_fingerprint",
    )
    return {k: export.record.get(k) for k in keep}


def _prepared(session: Any, input_name: str, provider: str, model_path: Path, details: dict[str, Any]) -> PreparedModel:
    from kit.export.onnx_export import initializer_bytes_by_dtype, onnx_file_bytes

    def run(pixels: np.ndarray) -> np.ndarray:
        out = session.run(None, {input_name: np.ascontiguousarray(pixels, dtype=np.float32)})[0]
        return np.asarray(out, dtype=np.float32)

    def make_timed_call(pixels: np.ndarray) -> Any:
        x = np.ascontiguousarray(pixels, dtype=np.float32)
        if provider == "CPUExecutionProvider":
            feed = {input_name: x}
            return lambda: session.run(None, feed)
        return _gpu_call(session, input_name, x)

    by_dtype = initializer_bytes_by_dtype(model_path)
    state = {"session": session}

    def close() -> None:
        state.clear()  # drops the last reference to the session (and its arena)
        gc.collect()

    return PreparedModel(
        run=run,
        make_timed_call=make_timed_call,
        details=details,
        serialized_bytes=onnx_file_bytes(model_path),
        serialized_method="ONNX file(s) the session loads: graph + external data, bytes on disk",
        weight_bytes=sum(by_dtype.values()),
        weight_bytes_by_dtype=by_dtype,
        close=close,
        host_synchronous=provider != "CPUExecutionProvider",
        device_allocator="torch" if provider == "CPUExecutionProvider" else "onnxruntime",
    )


def _gpu_call(session: Any, input_name: str, x: np.ndarray) -> Any:
    import onnxruntime as ort

    binding = session.io_binding()
    binding.bind_ortvalue_input(input_name, ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0))
    for out in session.get_outputs():
        binding.bind_output(out.name, "cuda", 0)

    def call() -> None:
        session.run_with_iobinding(binding)

    return call


# --------------------------------------------------------------------------- paths


@register_path
class OrtFP32(OrtPath):
    name = "ort-fp32"
    kind = "fp32"
    description = "ONNX Runtime FP32 on the checked ONNX export (CPU, CUDA or TensorRT provider)"
    method = "FP32 (ONNX Runtime)"
    precision = math_class = "fp32"
    cost = per_device(cpu=0.8, cuda=0.6)
    order = 80

    def method_text(self, provider: str) -> str:
        if provider == "TensorrtExecutionProvider":
            return (
                "the checked FP32 ONNX export run by ONNX Runtime's TensorRT provider (no FP16/INT8 "
                "flags; TensorRT may still use TF32 on Ampere and newer)"
            )
        return "the checked FP32 ONNX export run by ONNX Runtime (CUDA provider: use_tf32=0)"


@register_path
class OrtFP16(OrtPath):
    name = "ort-fp16"
    kind = "fp16"
    devices = ("cuda",)
    device_reasons = per_device(
        cpu="has FP16 kernels for few ops in ORT's CPU provider; FP16 is measured on GPU providers only"
    )
    description = "ONNX Runtime FP16: float16-converted graph (CUDA) or TensorRT's FP16 flag"
    method = "FP16 (ONNX Runtime)"
    precision = math_class = "fp16"
    cost = per_device(cuda=0.35)
    order = 90

    def make_model(
        self, ctx: PrepareContext, export: Any, provider: str, opts: OrtOptions, base: ModelBase
    ) -> tuple[Path, dict[str, Any], bool]:
        if provider == "TensorrtExecutionProvider":
            return (
                base.path,
                {"transform": "none: TensorRT builds FP16 kernels (trt_fp16_enable)", "quantization": None},
                False,
            )
        from kit.export.onnx_export import cached_model

        entry = export.directory / "derived" / f"fp16-keepio{base.key}"

        def make(target: Path) -> dict[str, Any]:
            return convert_fp16(base.path, target, base.external_data)

        path, record = cached_model(entry, make)
        return path, {"transform": record, "quantization": None}, not record["cache_hit"]

    def method_text(self, provider: str) -> str:
        if provider == "TensorrtExecutionProvider":
            return "FP32 ONNX export, TensorRT provider with trt_fp16_enable"
        return "ONNX graph converted to float16 (onnxruntime.transformers.float16, keep_io_types), CUDA provider"

    def dtype_text(self) -> str:
        return "float16 (float32 inputs/outputs)"


def convert_fp16(src: Path, dst: Path, external: bool) -> dict[str, Any]:
    """FP16 copy of ``src`` with FP32 inputs/outputs (a Cast at each end)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from kit.export.onnx_export import save_onnx

    model = onnx.load(str(src), load_external_data=True)
    converted = convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=external)
    del model
    save_onnx(converted, dst, external)
    return {"converter": "onnxruntime.transformers.float16.convert_float_to_float16", "keep_io_types": True}


@register_path
class OrtInt8Dynamic(OrtPath):
    name = "ort-int8-dynamic"
    kind = "int8-dynamic"
    devices = ("cpu",)
    device_reasons = per_device(
        cuda="has its dynamic-quantization kernels (DynamicQuantizeMatMul, MatMulIntegerToFloat) in the "
        "CPU provider only; on a GPU provider they would run on the CPU"
    )
    description = "ONNX Runtime dynamic INT8 (quantize_dynamic: int8 weights, activations quantized per run)"
    method = "dynamic INT8 (ONNX Runtime quantize_dynamic)"
    precision = math_class = "int8"
    cost = per_device(cpu=0.3)
    prepare_steps = ("onnx-export", "ort-fuse", "ort-quantize")
    order = 100

    def settings(self, opts: OrtOptions) -> Any:
        from kit.quantize.ort_quant import DynamicSettings

        overrides: dict[str, Any] = {
            "per_channel": opts.dynamic_per_channel,
            "reduce_range": opts.dynamic_reduce_range,
            "weight_type": opts.dynamic_weight_type,
            "op_types": opts.dynamic_op_types,
        }
        return DynamicSettings(**{k: v for k, v in overrides.items() if v is not None})

    def make_model(
        self, ctx: PrepareContext, export: Any, provider: str, opts: OrtOptions, base: ModelBase
    ) -> tuple[Path, dict[str, Any], bool]:
        from kit.export.onnx_export import cached_model
        from kit.quantize.ort_quant import quantize_dynamic_file, settings_digest

        settings = self.settings(opts)
        entry = export.directory / "derived" / f"int8-dynamic-{settings_digest(settings.record())}{base.key}"

        def make(target: Path) -> dict[str, Any]:
            return quantize_dynamic_file(base.path, target, settings, base.external_data)

        path, record = _quantize(entry, make, cached_model)
        return path, {"transform": None, "quantization": record}, not record["cache_hit"]

    def method_text(self, provider: str) -> str:
        return (
            "onnxruntime.quantization.quantize_dynamic of the checked FP32 export, after the fusions in "
            "fusion (settings in quantization)"
        )

    def dtype_text(self) -> str:
        return "int8 weights / uint8 activations quantized per run, float32 elsewhere"


@register_path
class OrtInt8StaticQDQ(OrtPath):
    name = "ort-int8-static-qdq"
    kind = "int8-static-qdq"
    # cpu and cuda: ORT's CUDA provider runs QDQ models (TensorRT, chosen with provider=tensorrt,
    # builds INT8 kernels from the QDQ scales).
    description = "ONNX Runtime static INT8 in QDQ format (quantize_static, calibrated activation ranges)"
    method = "static INT8, QDQ (ONNX Runtime quantize_static)"
    precision = math_class = "int8"
    cost = per_device(cpu=0.35, cuda=0.8)
    prepare_steps = ("onnx-export", "ort-fuse", "ort-quantize", "ort-calibrate")
    order = 110

    def settings(self, opts: OrtOptions, provider: str) -> Any:
        from kit.quantize.ort_quant import static_settings_for

        overrides: dict[str, Any] = {
            "per_channel": opts.static_per_channel,
            "activation_type": opts.static_activation_type,
            "op_types": opts.static_op_types,
            "calibrate_method": opts.calibration_method,
            "samples": opts.calibration_samples,
        }
        if overrides["activation_type"] == "QUInt8":
            overrides["activation_symmetric"] = False
        return static_settings_for(provider, overrides)

    def calibration(self, ctx: PrepareContext, opts: OrtOptions, samples: int) -> Any:
        from kit.quantize.ort_quant import CalibrationError, folder_calibration, synthetic_calibration

        directory = opts.calibration_dir
        if not directory:
            return synthetic_calibration(ctx.spec, samples)
        try:
            return folder_calibration(ctx.spec, directory, samples)
        except CalibrationError as exc:
            raise PathUnavailable(str(exc)) from None

    def make_model(
        self, ctx: PrepareContext, export: Any, provider: str, opts: OrtOptions, base: ModelBase
    ) -> tuple[Path, dict[str, Any], bool]:
        from kit.export.onnx_export import INPUT_NAME, cached_model
        from kit.quantize.ort_quant import quantize_static_file, settings_digest

        settings = self.settings(opts, provider)
        calibration = self.calibration(ctx, opts, settings.samples)
        digest = settings_digest(settings.record(), calibration.record)
        entry = export.directory / "derived" / f"int8-static-qdq-{digest}{base.key}"

        def make(target: Path) -> dict[str, Any]:
            return quantize_static_file(base.path, target, settings, calibration, INPUT_NAME, base.external_data)

        path, record = _quantize(entry, make, cached_model)
        return path, {"transform": None, "quantization": record}, not record["cache_hit"]

    def method_text(self, provider: str) -> str:
        text = (
            "onnxruntime.quantization.quantize_static (QDQ) of the checked FP32 export, after the fusions in "
            "fusion (settings in quantization)"
        )
        if provider == "TensorrtExecutionProvider":
            text += "; TensorRT builds INT8 kernels from the QDQ scales (trt_int8_enable)"
        elif provider == "CUDAExecutionProvider":
            text += "; the CUDA provider runs QuantizeLinear/DequantizeLinear around FP32 kernels (no INT8 GEMM)"
        return text

    def dtype_text(self) -> str:
        return "int8 weights and activations at the quantized ops (QDQ), float32 elsewhere"


def _quantize(entry: Path, make: Any, cached_model: Any) -> tuple[Path, dict[str, Any]]:
    """Run a quantizer through the cache; its exceptions become a failed cell with one line."""
    try:
        return cached_model(entry, make)
    except MemoryError:
        raise
    except (PathFailed, PathUnavailable):
        raise
    except Exception as exc:  # ORT's quantizer raises ValueError, RuntimeError, onnx errors ...
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise PathFailed(f"quantization failed: {type(exc).__name__}: {first[:300]}") from None
