"""Compute: FLOPs per forward (counted once per model) and the achieved rate beside the card's peak.

FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode`` (1 multiply-add = 2 FLOPs;
it counts matmuls, convolutions and attention, not norms or activations) on the FP32 model at
batch 1, built on the ``meta`` device from the registry spec: the count depends only on shapes,
so no weights are allocated and a quantized path's model (whose bitsandbytes / ONNX kernels the
counter cannot see) never enters it. Batch size multiplies the count (these models share no work
across a batch). Counts are cached in ``<cache>/flops.json`` keyed by model id, image size and a
digest of the architecture, so each model is counted once per machine.

``achieved = flops per forward / median latency``. The peak is the card's dense rate for the math
the path actually runs (the path's declared ``math_class``, refined by the cell), from
``kit.hardware.gpus`` (None with the reason where the card is not in it):
FP32 cells use the TF32 tensor rate when TF32 matmuls were on,
FP16/BF16 and 4-bit (dequantized to fp16/bf16) cells the FP16 tensor rate, LLM.int8 and other
int8 cells the INT8 tensor rate.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from kit.hardware.gpus import find_gpu

METHOD = "torch.utils.flop_counter.FlopCounterMode, 1 MAC = 2 FLOPs"
CACHE_FILE = "flops.json"
_CACHE_VERSION = 1


def default_cache_dir() -> Path:
    env = os.environ.get("QKIT_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "qkit"


def _arch_digest(spec: Any) -> str:
    payload = [
        getattr(spec, "model_class", None),
        getattr(spec, "config_class", None),
        getattr(spec, "config", None),
        getattr(spec, "model_kwargs", None),
    ]
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:12]


def cache_key(spec: Any) -> str:
    return f"{spec.id}|{spec.image_size}|{_arch_digest(spec)}"


def _read_cache(path: Path) -> dict[str, Any]:
    from kit.documents import DocumentError, read_json

    try:
        data = read_json(path)
    except DocumentError:  # missing, unreadable or not JSON: only costs a recount
        return {}
    if not isinstance(data, dict) or data.get("version") != _CACHE_VERSION:
        return {}
    entries = data.get("entries")
    return entries if isinstance(entries, dict) else {}


def _write_cache(path: Path, key: str, entry: dict[str, Any]) -> None:
    """Merge ``entry`` into the cache file atomically (re-read first: cells write concurrently)."""
    from kit.documents import write_json

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        entries = _read_cache(path)
        entries[key] = entry
        write_json(path, {"version": _CACHE_VERSION, "entries": dict(sorted(entries.items()))})
    except (OSError, ValueError):
        return  # a read-only cache only costs a recount


def _math_sdpa() -> Any:
    import contextlib

    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # torch < 2.3
        return contextlib.nullcontext()
    return sdpa_kernel([SDPBackend.MATH])


def _count_with(model: Any, pixel_values: Any) -> tuple[int, dict[str, int]]:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    # The math SDPA backend is decomposed into matmuls the counter sees on every device; the
    # fused CPU flash-attention kernel (_scaled_dot_product_flash_attention_for_cpu) has no FLOP
    # formula in FlopCounterMode and would drop QK^T and AV from the count. FLOPs do not depend
    # on the backend.
    with counter, torch.no_grad(), _math_sdpa():
        model(pixel_values=pixel_values)
    by_op = {str(op): int(n) for op, n in counter.get_flop_counts().get("Global", {}).items()}
    return int(counter.get_total_flops()), by_op


def _count_meta(spec: Any) -> tuple[int, dict[str, int]]:
    import torch

    from kit.models.build import choose_attn_implementation, make_config, model_class

    with torch.device("meta"):
        model = model_class(spec)._from_config(
            make_config(spec), attn_implementation=choose_attn_implementation(spec), **spec.model_kwargs
        )
        model.eval()
        x = torch.empty(spec.input_shape(1), dtype=torch.float32)
        return _count_with(model, x)


def _is_plain_float(model: Any) -> bool:
    """True when every parameter is floating point and no module is from a quantization library."""
    for m in model.modules():
        mod = type(m).__module__
        if mod.startswith(("bitsandbytes", "torch.ao.nn.quantized", "torch.nn.quantized")):
            return False
    return all(p.is_floating_point() for p in model.parameters())


def _count_model(spec: Any, model: Any) -> tuple[int, dict[str, int]]:
    import torch

    param = next(model.parameters())
    x = torch.zeros(spec.input_shape(1), dtype=param.dtype, device=param.device)
    return _count_with(model, x)


def count_flops(spec: Any, model: Any = None, *, cache_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """FLOPs of one forward at batch 1 (cached): ``{flops_per_sample, by_op, counted_on, cached}``.

    Counted on a meta-device FP32 build of ``spec``; where that fails, on ``model`` if it is a
    plain float torch module. ``flops_per_sample`` is None (with ``error``) when neither works.
    """
    path = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = path / CACHE_FILE
    key = cache_key(spec)
    hit = _read_cache(path).get(key)
    if isinstance(hit, dict) and isinstance(hit.get("flops_per_sample"), int):
        return {**hit, "cached": True, "cache_file": str(path)}
    errors = []
    entry: dict[str, Any] | None = None
    try:
        total, by_op = _count_meta(spec)
        entry = {
            "flops_per_sample": total,
            "by_op": by_op,
            "counted_on": "FP32 model built on the meta device from the registry spec, batch 1",
        }
    except Exception as exc:
        errors.append(f"meta-device build: {type(exc).__name__}: {exc}")
    if entry is None and model is not None:
        if _is_plain_float(model):
            try:
                total, by_op = _count_model(spec, model)
                entry = {
                    "flops_per_sample": total,
                    "by_op": by_op,
                    "counted_on": "the cell's float model, batch 1 (meta-device build failed)",
                }
            except Exception as exc:
                errors.append(f"cell model: {type(exc).__name__}: {exc}")
        else:
            errors.append("cell model is quantized: FlopCounterMode cannot see its kernels")
    if entry is None:
        return {
            "flops_per_sample": None,
            "by_op": {},
            "counted_on": None,
            "cached": False,
            "error": "; ".join(errors)[:500],
        }
    entry["image_size"] = spec.image_size
    entry["model_id"] = spec.id
    _write_cache(path, key, entry)
    return {**entry, "cached": False, "cache_file": str(path)}


def achieved(flops: float, latency_ms: float) -> float | None:
    """TFLOP/s achieved by ``flops`` of work done in ``latency_ms``; None for a non-positive time."""
    if latency_ms is None or latency_ms <= 0 or flops is None:
        return None
    return flops / (latency_ms / 1000.0) / 1e12


# --------------------------------------------------------------------------------- peak


def _tf32_on(math: dict[str, Any] | None) -> bool | None:
    env = (math or {}).get("env") or {}
    override = env["NVIDIA_TF32_OVERRIDE"] if "NVIDIA_TF32_OVERRIDE" in env else os.environ.get("NVIDIA_TF32_OVERRIDE")
    if override == "0":
        return False  # switches TF32 off in cuBLAS and cuDNN whatever torch's flags say
    if math is not None and "tf32_matmul" in math:
        return bool(math["tf32_matmul"]) or math.get("float32_matmul_precision") not in (None, "highest")
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    return bool(torch.backends.cuda.matmul.allow_tf32) or torch.get_float32_matmul_precision() != "highest"


def math_class(
    declared: str | None, details: dict[str, Any] | None = None, math: dict[str, Any] | None = None
) -> tuple[str | None, str]:
    """The tensor math a cell's matmuls ran in: fp32 | tf32 | fp16 | bf16 | int8, and why.

    ``declared`` is the path's declared ``math_class`` (kit.paths.base.MATH_CLASSES; the caller
    reads it from the path: measurement sits below the paths and does not import them). The cell
    refines it where the class depends on how it ran: 4-bit weights run in their compute dtype
    (``details['settings']['compute_dtype']``), FP32 in TF32 when TF32 matmuls were on.
    """
    if declared == "int8":
        return "int8", "int8 matmuls (LLM.int8 / dynamic or static int8): INT8 tensor rate"
    if declared == "int4":
        compute = str(((details or {}).get("settings") or {}).get("compute_dtype") or "float16")
        cls = "bf16" if "bfloat16" in compute else "fp16"
        return cls, f"4-bit weights dequantized to {compute} for the matmul: {cls.upper()} tensor rate"
    if declared in ("fp16", "bf16"):
        return declared, f"{declared} weights and activations: {declared.upper()} tensor rate"
    if declared == "fp32":
        if _tf32_on(math):
            return "tf32", "FP32 with TF32 matmuls on: TF32 tensor rate"
        return "fp32", "FP32 with TF32 off: FP32 (CUDA core) rate"
    return None, f"no math class known ({declared!r})"


def peak_tflops(gpu_name: str | None, cls: str | None) -> dict[str, Any]:
    """``{peak_tflops, peak_kind, gpu_table_entry, source}``; peak None with ``reason`` when unknown."""
    out: dict[str, Any] = {"peak_tflops": None, "peak_kind": None, "gpu_table_entry": None, "source": None}
    if not gpu_name:
        out["reason"] = "no GPU in this cell (CPU): no peak table for CPUs"
        return out
    spec = find_gpu(gpu_name)
    if spec is None:
        out["reason"] = f"{gpu_name!r} is not in kit.hardware.gpus"
        return out
    values = {
        "fp32": (getattr(spec, "fp32_tflops", None), "FP32 non-tensor"),
        "tf32": (getattr(spec, "tf32_tflops", None), "TF32 tensor dense"),
        "fp16": (getattr(spec, "fp16_tensor_tflops", None), "FP16 tensor dense"),
        "bf16": (getattr(spec, "fp16_tensor_tflops", None), "BF16 tensor dense (= FP16 rate on this card)"),
        "int8": (getattr(spec, "int8_tensor_tops", None), "INT8 tensor dense (TOP/s)"),
    }
    out["gpu_table_entry"] = getattr(spec, "name", None)
    out["source"] = getattr(spec, "source", None)
    if getattr(spec, "note", ""):
        out["table_note"] = spec.note
    peak, kind = values.get(cls or "", (None, None))
    if peak is None:
        out["reason"] = f"no {cls} peak for {out['gpu_table_entry']}"
        return out
    out["peak_tflops"] = float(peak)
    out["peak_kind"] = kind
    return out


def compute_section(
    spec: Any,
    model: Any,
    batch_size: int,
    p50_ms: float | None,
    gpu_name: str | None,
    *,
    declared_math: str | None = None,
    details: dict[str, Any] | None = None,
    math: dict[str, Any] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """The result document's ``compute`` field for one cell.

    ``declared_math``/``details``/``math`` (the path's declared ``math_class``, the cell's
    ``path_info`` and ``math_settings()``) pick the peak that matches the math that ran; without
    them no peak is chosen.
    """
    counted = count_flops(spec, model, cache_dir=cache_dir)
    per_sample = counted.get("flops_per_sample")
    flops = per_sample * batch_size if per_sample is not None else None
    rate = achieved(flops, p50_ms) if flops is not None and p50_ms is not None else None
    cls, cls_reason = math_class(declared_math, details, math) if declared_math else (None, "math class not given")
    peak = peak_tflops(gpu_name, cls)
    fraction = rate / peak["peak_tflops"] if rate is not None and peak.get("peak_tflops") else None
    section: dict[str, Any] = {
        "method": METHOD,
        "counted_on": counted.get("counted_on"),
        "flops_per_sample": per_sample,
        "batch_size": batch_size,
        "flops_per_forward": flops,
        "gflops_per_forward": flops / 1e9 if flops is not None else None,
        "scaling": "counted once at batch 1, multiplied by the batch size",
        "by_op_per_sample": counted.get("by_op") or {},
        "latency_p50_ms": p50_ms,
        "achieved_tflops": rate,
        "achieved_method": "flops_per_forward / median latency",
        "gpu": gpu_name,
        "math_class": cls,
        "math_class_reason": cls_reason,
        **peak,
        "fraction_of_peak": fraction,
        "flops_cached": bool(counted.get("cached")),
    }
    if counted.get("error"):
        section["error"] = counted["error"]
    return section
