"""PyTorch float paths (FP32, FP16, BF16) and torch.ao dynamic INT8 (seed 004's method)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from kit.measure.memory import weight_bytes_by_dtype
from kit.paths.base import (
    PathOptions,
    PathUnavailable,
    PrecisionPath,
    PrepareContext,
    PreparedModel,
    per_device,
    register_path,
)


@dataclass(frozen=True)
class TorchOptions(PathOptions):
    """The torch paths take no options: the dtype is the path (``--option`` keys here are refused)."""

    family = "torch"


def cuda_available() -> tuple[bool, str]:
    try:
        import torch
    except ImportError:
        return False, "torch is not installed"
    if not torch.cuda.is_available():
        build = torch.version.cuda
        why = "this torch is a CPU-only build" if build is None else f"torch (CUDA {build}) sees no CUDA device"
        return False, f"CUDA unavailable: {why}"
    return True, ""


def serialized_state_dict_bytes(model: Any, work_dir: str) -> tuple[int, str]:
    """Bytes of the model's state dict on disk (what a deployment would store), and how.

    safetensors for plain tensors; ``torch.save`` where the state dict holds packed quantized
    parameters (torch.ao dynamic Linear), which safetensors cannot store.
    """
    import torch
    from safetensors.torch import save_file

    raw = model.state_dict()
    if not all(isinstance(v, torch.Tensor) and not v.is_quantized for v in raw.values()):
        target = os.path.join(work_dir, "model.pt")
        torch.save(raw, target)
        size = os.path.getsize(target)
        os.unlink(target)
        return size, "torch.save of the state dict (packed quantized params)"
    state = {k: v.detach().contiguous().cpu() for k, v in raw.items()}
    # safetensors refuses shared storage; clone tensors that alias (tied weights).
    seen: dict[int, str] = {}
    for k, v in list(state.items()):
        ptr = v.untyped_storage().data_ptr()
        if ptr in seen:
            state[k] = v.clone()
        seen[ptr] = k
    target = os.path.join(work_dir, "model.safetensors")
    save_file(state, target)
    size = os.path.getsize(target)
    os.unlink(target)
    return size, "safetensors file of the state dict as the path holds it"


def quantized_weight_bytes(model: Any) -> dict[str, int]:
    """Weight bytes per dtype, counting torch.ao packed Linear weights as the int8 they hold."""
    by_dtype = weight_bytes_by_dtype(model)
    for module in model.modules():
        weight_fn = getattr(module, "weight", None)
        if callable(weight_fn) and type(module).__module__.startswith("torch.ao.nn.quantized"):
            w = weight_fn()
            by_dtype["qint8"] = by_dtype.get("qint8", 0) + w.numel() * w.element_size()
            bias = module.bias() if callable(getattr(module, "bias", None)) else None
            if bias is not None:
                key = str(bias.dtype).replace("torch.", "")
                by_dtype[key] = by_dtype.get(key, 0) + bias.numel() * bias.element_size()
    return by_dtype


def torch_prepared(model: Any, ctx: PrepareContext, dtype: Any, details: dict[str, Any]) -> PreparedModel:
    """Wrap a float torch model placed on ``ctx.device`` with ``dtype`` inputs."""
    import torch

    from kit.models.build import output_of

    device = torch.device(ctx.device)
    spec = ctx.spec

    def to_input(pixels: np.ndarray) -> Any:
        return torch.from_numpy(np.ascontiguousarray(pixels)).to(device=device, dtype=dtype)

    def run(pixels: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out = output_of(model, spec, to_input(pixels))
        return out.float().cpu().numpy()

    def make_timed_call(pixels: np.ndarray) -> Any:
        x = to_input(pixels)

        def call() -> Any:
            with torch.inference_mode():
                return model(pixel_values=x)

        return call

    prepared = PreparedModel(run=run, make_timed_call=make_timed_call, details=details)
    if ctx.measure_size:
        by_dtype = quantized_weight_bytes(model)
        prepared.serialized_bytes, prepared.serialized_method = serialized_state_dict_bytes(model, ctx.work_dir)
        prepared.weight_bytes, prepared.weight_bytes_by_dtype = sum(by_dtype.values()), by_dtype
    return prepared


class TorchFloatPath(PrecisionPath):
    family: ClassVar[str] = "torch"
    runtime: ClassVar[str] = "torch"
    devices: ClassVar[tuple[str, ...]] = ("cpu", "cuda")
    baseline: ClassVar[str] = "torch-fp32"
    options_class = TorchOptions
    dtype_name: ClassVar[str]

    def available(self, device: str) -> tuple[bool, str]:
        ok, why = self.supports_device(device)
        if not ok:
            return ok, why
        if device == "cuda":
            return cuda_available()
        return True, ""

    def prepare(self, ctx: PrepareContext) -> PreparedModel:
        import torch

        dtype = getattr(torch, self.dtype_name)
        tf32 = None
        if ctx.device == "cuda" and self.dtype_name == "float32":
            # FP32 means FP32: torch turns TF32 on for cuDNN convolutions by default (and users
            # or other libraries may for matmuls, as timm's benchmark does). Off, and recorded.
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
            tf32 = {"matmul": False, "cudnn": False, "set_by": "qkit torch-fp32 path"}
        model = ctx.build_float_model()
        model = model.to(device=ctx.device, dtype=dtype)
        model.eval()
        details = {
            "method": f"{self.dtype_name} weights and activations (model.to(dtype)), no autocast",
            "dtype": self.dtype_name,
            "framework": "pytorch",
            "execution_provider": None,
            "tf32": tf32,
        }
        return torch_prepared(model, ctx, dtype, details)


@register_path
class TorchFP32(TorchFloatPath):
    name = "torch-fp32"
    dtype_name = "float32"
    description = "PyTorch FP32 (the reference)"
    method = "FP32 (PyTorch)"
    precision = math_class = "fp32"
    cost = per_device(cpu=1.0, cuda=1.0)
    order = 10
    reference = True


@register_path
class TorchFP16(TorchFloatPath):
    name = "torch-fp16"
    dtype_name = "float16"
    description = "PyTorch FP16 via model.half(), as the study's .half() conversion"
    method = "FP16 (PyTorch .half())"
    precision = math_class = "fp16"
    # CPUs without native FP16 GEMM upcast per op.
    cost = per_device(cpu=4.0, cuda=0.4)
    order = 20
    # The study's FP16 is `.half().cuda()`. On CPUs without AVX512-FP16/AMX-FP16 half-precision
    # GEMMs are converted and run slower than FP32 (measured 3x on ViT-B/16 here), so CPU FP16 is
    # opt-in (`--paths torch-fp16 --devices cpu`) rather than a default cell.
    default_devices = ("cuda",)
    default_devices_reason = "FP16 on CPU is emulated (slower than FP32); the study's FP16 ran on CUDA"


@register_path
class TorchBF16(TorchFloatPath):
    name = "torch-bf16"
    dtype_name = "bfloat16"
    description = "PyTorch BF16 via model.to(torch.bfloat16)"
    method = "BF16 (PyTorch)"
    precision = math_class = "bf16"
    # BF16 is native on AVX512-BF16/AMX CPUs, emulated elsewhere.
    cost = per_device(cpu=0.4, cuda=0.4)
    order = 30


def _dynamic_quantize_fn() -> Any:
    """torch.ao's quantize_dynamic, or None where this torch no longer ships it."""
    try:
        from torch.ao.quantization import quantize_dynamic
    except ImportError:
        return None
    return quantize_dynamic


@register_path
class TorchInt8Dynamic(PrecisionPath):
    name = "torch-int8-dynamic"
    family = "torch"
    runtime = "torch"
    devices = ("cpu",)
    description = "torch.ao dynamic quantization of nn.Linear to qint8 (CPU only; seed 004's method)"
    method = "dynamic INT8 (torch.ao quantize_dynamic)"
    precision = math_class = "int8"
    cost = per_device(cpu=0.55)
    prepare_steps = ("torch-quantize",)
    order = 40
    baseline = "torch-fp32"
    device_reasons = per_device(cuda="has CPU kernels only (quantized::linear_dynamic has no CUDA implementation)")
    options_class = TorchOptions

    def available(self, device: str) -> tuple[bool, str]:
        ok, why = self.supports_device(device)
        if not ok:
            return False, why
        if _dynamic_quantize_fn() is None:
            return False, "this torch has no torch.ao.quantization.quantize_dynamic"
        import torch

        engines = torch.backends.quantized.supported_engines
        if not any(e in engines for e in ("x86", "fbgemm", "qnnpack", "onednn")):
            return False, f"no quantized CPU engine in this torch (supported_engines={engines})"
        return True, ""

    def prepare(self, ctx: PrepareContext) -> PreparedModel:
        import warnings

        import torch

        quantize_dynamic = _dynamic_quantize_fn()
        if quantize_dynamic is None:
            raise PathUnavailable("this torch has no torch.ao.quantization.quantize_dynamic")
        model = ctx.build_float_model()
        n_linear = sum(1 for m in model.modules() if isinstance(m, torch.nn.Linear))
        with warnings.catch_warnings(record=True) as caught:
            # Recent torch deprecates torch.ao.quantization (in favour of torchao); it still runs,
            # and the deprecation is recorded with the result rather than printed.
            warnings.simplefilter("always")
            # In place: the float model is not used again, and a copy first (inplace=False) cloned
            # every weight: 2.9 s of a ViT-L/16 process on the reference Xeon, and a second FP32
            # model in the load phase's peak.
            qmodel = quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
        del model
        deprecations = sorted(
            {str(w.message).split(".")[0] for w in caught if issubclass(w.category, (DeprecationWarning, UserWarning))}
        )
        n_dynamic = sum(1 for m in qmodel.modules() if type(m).__module__.startswith("torch.ao.nn.quantized.dynamic"))
        details = {
            "method": "torch.ao.quantization.quantize_dynamic({nn.Linear}, dtype=qint8, inplace=True): int8 "
            "weights, activations quantized per batch at run time",
            "dtype": "qint8 weights / float32 activations",
            "framework": "pytorch",
            "quantized_engine": torch.backends.quantized.engine,
            "replaced_linear_layers": n_dynamic,
            "float_linear_layers_left": n_linear - n_dynamic,
            "execution_provider": None,
            "warnings": deprecations,
        }
        return torch_prepared(qmodel, ctx, torch.float32, details)
