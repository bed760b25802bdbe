"""bitsandbytes: version, native library and per-device backend checks, each answered by asking
the library (and, where it matters, by running one tiny quantized layer).

Works on bitsandbytes 0.42 (the study's CUDA image: CUDA kernels only, quantization happens in
``Params.cuda()``) and on the multi-backend releases (0.46+, here 0.50: ``supported_torch_devices``,
kernels registered per device through ``torch.library``, a CPU backend). Nothing here imports
bitsandbytes at module import time: ``import bitsandbytes`` initialises CUDA probing and logs.

The probe (`probe_method`) is the honest answer to "can this method run on this device here":
it quantizes one 64x64 Linear with the same bitsandbytes classes the transformers loader uses,
checks that the weight really became int8 / packed 4-bit, runs a forward pass and compares it with
the float layer. A version test alone cannot say that bitsandbytes 0.42's CPU library lacks the
int8 kernels, or that a given GPU lacks an int8 cuBLASLt path; the probe can.
"""

from __future__ import annotations

import functools
import importlib
import logging
from collections.abc import Callable
from typing import Any

from kit.errors import first_line

# Linear layers the probe quantizes: out x in. 64 keeps every kernel constraint (CPU 4-bit packing
# needs out_features % 32 == 0, 4-bit blocks of 64) satisfied, so a failure is the backend's.
_PROBE_SHAPE = (64, 64)
_PROBE_MIN_COSINE = 0.9  # a working int8/4-bit layer is > 0.99 on random weights; < 0.9 is broken
# bitsandbytes with a CPU backend: the multi-backend releases. 0.42 (the study's) has none.
CPU_BACKEND_NOTE = (
    "bitsandbytes < 0.46 ships CUDA kernels only (quantization happens in Params.cuda()); the CPU "
    "backend came with the multi-backend releases (supported_torch_devices lists 'cpu')"
)


_INT8_CAST_MESSAGE = "MatMul8bitLt: inputs will be cast from"
_BNB_LOGGERS = ("bitsandbytes.autograd._functions", "bitsandbytes")


class _DropMessage(logging.Filter):
    """Drops one per-call bitsandbytes warning (0.45+ logs it on every LLM.int8 forward whose
    input is not fp16: it would be timed). What it says is recorded in the result instead."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)


def install_log_filter() -> Callable[[], None]:
    """Silence bitsandbytes' per-call LLM.int8 cast warning; returns the function that undoes it."""
    flt = _DropMessage(_INT8_CAST_MESSAGE)
    for name in _BNB_LOGGERS:
        logging.getLogger(name).addFilter(flt)

    def remove() -> None:
        for name in _BNB_LOGGERS:
            logging.getLogger(name).removeFilter(flt)

    return remove


# Logged by bitsandbytes (0.50) at import on an AVX512-BF16 CPU when the `kernels` package cannot
# fetch its fused CPU 4-bit GEMM from the hub. Every cell imports bitsandbytes afresh in its own
# process, so the run's log would repeat it per cell; the result records the kernel that ran
# (``cpu_4bit_kernel`` / ``cpu_4bit_kernel_as_run``), which says the same.
_KERNEL_FETCH_NOTICE = "Failed to load CPU gemm_4bit_forward from kernels-community"


def quiet_import_notice() -> None:
    """Drop bitsandbytes' per-import notice about its hub-fetched CPU kernel (see above)."""
    logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(_DropMessage(_KERNEL_FETCH_NOTICE))


def installed_version(dist: str) -> str | None:
    """Version of an installed distribution, without importing it; None when not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def version_tuple(text: str | None) -> tuple[int, ...]:
    """``'0.50.2'`` -> (0, 50, 2); ``'0.45.0.dev0'`` -> (0, 45, 0); unparsable parts stop the tuple."""
    out: list[int] = []
    for part in (text or "").split("+")[0].split("."):
        digits = "".join(ch for ch in part if ch.isdigit()) if part[:1].isdigit() else ""
        if not digits:
            break
        out.append(int(digits))
    return tuple(out)


def import_bnb() -> tuple[Any | None, str | None]:
    """(module, None), or (None, the exact reason it cannot be imported)."""
    try:
        return importlib.import_module("bitsandbytes"), None
    except ImportError as exc:
        if installed_version("bitsandbytes") is None:
            return None, "bitsandbytes is not installed"
        return None, f"bitsandbytes fails to import: {type(exc).__name__}: {exc}"
    except Exception as exc:  # bitsandbytes raises RuntimeError when its native setup fails
        return None, f"bitsandbytes fails to import: {type(exc).__name__}: {first_line(exc)}"


def bnb_version(bnb: Any | None = None) -> str | None:
    if bnb is not None and getattr(bnb, "__version__", None):
        return str(bnb.__version__)
    return installed_version("bitsandbytes")


def supported_devices(bnb: Any) -> set[str] | None:
    """Devices the multi-backend releases declare; None for releases that predate the attribute."""
    devices = getattr(bnb, "supported_torch_devices", None)
    return set(devices) if devices is not None else None


def native_library(bnb: Any) -> dict[str, Any]:
    """What native library bitsandbytes loaded, as it reports it.

    ``kind``: ``cuda`` (a CUDA/ROCm build: it exposes ``get_context``), ``cpu``, ``missing``
    (0.45+ replaced it with its error-deferring mock), or ``unknown``. ``error``: the load error
    when missing.
    """
    try:
        cext = importlib.import_module("bitsandbytes.cextension")
    except Exception as exc:
        return {"kind": "unknown", "error": first_line(exc)}
    lib = getattr(cext, "lib", None)
    info: dict[str, Any] = {"kind": "unknown", "error": None, "class": type(lib).__name__ if lib is not None else None}
    mock = getattr(cext, "ErrorHandlerMockBNBNativeLibrary", None)
    if lib is None:
        info["kind"] = "missing"
        info["error"] = "bitsandbytes.cextension.lib is None (no native library loaded)"
        return info
    if mock is not None and isinstance(lib, mock):
        info["kind"] = "missing"
        info["error"] = first_line(Exception(getattr(lib, "formatted_error", None) or getattr(lib, "error_msg", "")))
        return info
    compiled_with_cuda = getattr(lib, "compiled_with_cuda", None)
    if compiled_with_cuda is None:
        # bitsandbytes <= 0.43: a bare ctypes CDLL plus a module-level COMPILED_WITH_GPU flag.
        compiled_with_cuda = getattr(cext, "COMPILED_WITH_GPU", None)
        if compiled_with_cuda is None:
            compiled_with_cuda = _has_symbol(lib, "get_context")
    info["kind"] = "cuda" if compiled_with_cuda else "cpu"
    backend = getattr(cext, "BNB_BACKEND", None)
    if backend:
        info["backend"] = backend
    return info


def _has_symbol(lib: Any, name: str) -> bool:
    inner = getattr(lib, "_lib", lib)
    try:
        getattr(inner, name)
    except (AttributeError, RuntimeError, OSError):
        return False
    return True


def cpu_backend_status(bnb: Any) -> tuple[bool, str]:
    """Whether this bitsandbytes has a CPU backend at all (before any probe)."""
    version = bnb_version(bnb)
    devices = supported_devices(bnb)
    if devices is None:
        return False, f"bitsandbytes {version} has no CPU backend ({CPU_BACKEND_NOTE})"
    if "cpu" not in devices:
        return False, f"bitsandbytes {version} does not list cpu in supported_torch_devices ({sorted(devices)})"
    return True, ""


def cuda_backend_status(bnb: Any) -> tuple[bool, str]:
    """Whether torch sees a CUDA device and bitsandbytes loaded a CUDA build of its library."""
    import torch

    version = bnb_version(bnb)
    if not torch.cuda.is_available():
        build = torch.version.cuda
        why = "this torch is a CPU-only build" if build is None else f"torch (CUDA {build}) sees no CUDA device"
        return False, f"CUDA unavailable: {why}"
    lib = native_library(bnb)
    if lib["kind"] == "missing":
        return False, f"bitsandbytes {version} could not load its CUDA library: {lib['error']}"
    if lib["kind"] == "cpu":
        return False, (
            f"bitsandbytes {version} loaded its CPU-only library although torch sees CUDA "
            f"{torch.version.cuda}: no bitsandbytes binary for this CUDA version"
        )
    return True, ""


def bnb_backend_status() -> tuple[bool, str]:
    """For ``qkit env --check``: does the installed bitsandbytes have a usable native backend here?

    ``(True, what it has)`` or ``(False, the exact problem)``. bitsandbytes not installed is not
    a problem of the stack (the bnb paths skip with that reason): ``(True, 'not installed')``.
    """
    if installed_version("bitsandbytes") is None:
        return True, "bitsandbytes not installed (bnb paths skip)"
    bnb, err = import_bnb()
    if bnb is None:
        return False, err or "bitsandbytes fails to import"
    import torch

    version = bnb_version(bnb)
    lib = native_library(bnb)
    if torch.cuda.is_available():
        ok, why = cuda_backend_status(bnb)
        return (True, f"bitsandbytes {version}: CUDA library loaded") if ok else (False, why)
    cpu_ok, cpu_why = cpu_backend_status(bnb)
    if not cpu_ok:
        return False, f"{cpu_why}, and torch sees no CUDA device: no backend bitsandbytes can use here"
    if lib["kind"] == "missing":
        # 0.45+ can run some CPU ops in pure torch without the native library, but not 4-bit quantization.
        return False, f"bitsandbytes {version}: CPU backend without its native library ({lib['error']})"
    return True, f"bitsandbytes {version}: CPU backend, native library {lib.get('class')}"


def transformers_loader_status(device: str) -> tuple[bool, str]:
    """Whether this transformers can load a model through bitsandbytes on ``device``."""
    try:
        import transformers
    except ImportError:
        return False, "transformers is not installed"
    if not hasattr(transformers, "BitsAndBytesConfig"):
        return False, f"transformers {transformers.__version__} has no BitsAndBytesConfig"
    if installed_version("accelerate") is None:
        return False, "transformers' bitsandbytes loader needs accelerate, which is not installed"
    if device == "cpu":
        try:
            integ = importlib.import_module("transformers.integrations.bitsandbytes")
        except Exception as exc:
            return False, f"transformers.integrations.bitsandbytes fails to import: {first_line(exc)}"
        # Added with bitsandbytes multi-backend support; older loaders raise "No GPU found".
        if not hasattr(integ, "validate_bnb_backend_availability"):
            return False, (
                f"transformers {transformers.__version__}'s bitsandbytes loader requires a CUDA GPU "
                "(it predates bitsandbytes' multi-backend support)"
            )
    return True, ""


def has_avx512bf16() -> bool:
    """bitsandbytes' own answer (0.48+): its CPU 4-bit path then repacks weights for an AVX512-BF16
    kernel, which needs out_features % 32 == 0. False where the function does not exist."""
    try:
        functional = importlib.import_module("bitsandbytes.functional")
    except Exception:
        return False
    fn = getattr(functional, "has_avx512bf16", None)
    if fn is None:
        return False
    try:
        return bool(fn())
    except Exception:
        return False


# Block size of bitsandbytes' CPU 4-bit weight repacking (functional._convert_weight_packed_for_cpu).
CPU_4BIT_BLOCK_N = 32


def cpu_4bit_kernel() -> str:
    """Which CPU 4-bit matmul bitsandbytes will use, as far as it can be told without running."""
    if not has_avx512bf16():
        return "dequantize_4bit + torch matmul (no AVX512-BF16 fused kernel on this CPU)"
    try:
        ops = importlib.import_module("bitsandbytes.backends.cpu.ops")
    except Exception:
        return "unknown"
    if getattr(ops, "gemm_4bit_forward_kernel", None) is not None:
        return "kernels-community gemm_4bit_forward (AVX512-BF16, bf16 compute)"
    return (
        "bitsandbytes gemv_4bit_inference_cpu (native fallback, AVX512-BF16, bf16 compute: "
        "kernels-community gemm_4bit_forward did not load; it needs the `kernels` package and the "
        "Hugging Face hub)"
    )


def cpu_int8_kernel() -> str:
    import torch

    cap = torch.backends.cpu.get_cpu_capability()
    if cap == "AVX512" and version_tuple(torch.__version__)[:2] >= (2, 6):
        return "torch._int_mm (AVX-512) for int8 x int8 -> int32, registered by bitsandbytes' CPU backend"
    return (
        f"bitsandbytes default int8 matmul (CPU capability {cap}, torch {torch.__version__}: "
        "no torch._int_mm fast path)"
    )


@functools.cache
def probe_method(method: str, device: str) -> tuple[bool, str]:
    """Quantize one Linear with ``method`` (``int8`` | ``nf4`` | ``fp4``) on ``device`` and run it.

    Cached per process. ``(True, '')`` or ``(False, the exact failure)``.
    """
    import torch

    bnb, err = import_bnb()
    if bnb is None:
        return False, err or "bitsandbytes fails to import"
    version = bnb_version(bnb)
    out_f, in_f = _PROBE_SHAPE
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(out_f, in_f, generator=gen) / in_f**0.5
    bias = torch.zeros(out_f)
    x = torch.randn(4, in_f, generator=gen)
    act_dtype = torch.float16 if device == "cuda" else torch.float32
    remove_filter = install_log_filter()
    try:
        if method == "int8":
            layer = bnb.nn.Linear8bitLt(in_f, out_f, bias=True, has_fp16_weights=False, threshold=6.0)
            layer.weight = bnb.nn.Int8Params(weight.clone(), requires_grad=False, has_fp16_weights=False)
        elif method in ("nf4", "fp4"):
            compute = torch.float16 if device == "cuda" else torch.bfloat16
            layer = bnb.nn.Linear4bit(in_f, out_f, bias=True, compute_dtype=compute, quant_type=method)
            layer.weight = bnb.nn.Params4bit(weight.clone(), requires_grad=False, quant_type=method)
        else:
            raise ValueError(f"unknown bitsandbytes method {method!r}")
        layer.bias = torch.nn.Parameter(bias.clone(), requires_grad=False)
        layer = layer.to(device)
        layer.eval()
        w = layer.weight
        quantized = (
            w.dtype == torch.int8
            if method == "int8"
            else bool(getattr(w, "bnb_quantized", False))
            or (w.dtype == torch.uint8 and getattr(w, "quant_state", None) is not None)
        )
        if not quantized:
            return False, (
                f"bitsandbytes {version} did not quantize a Linear on {device} "
                f"(weight stayed {w.dtype} after .to({device!r}))"
                + (f"; {CPU_BACKEND_NOTE}" if device == "cpu" else "")
            )
        xin = x.to(device=device, dtype=act_dtype)
        with torch.inference_mode():
            y = layer(xin).float().cpu()
        ref = torch.nn.functional.linear(x, weight, bias)
        cos = torch.nn.functional.cosine_similarity(y.flatten(), ref.flatten(), dim=0).item()
    except Exception as exc:
        return False, (
            f"bitsandbytes {version} cannot run {method} on {device}: {type(exc).__name__}: {first_line(exc)}"
        )
    finally:
        remove_filter()
    if not cos >= _PROBE_MIN_COSINE:
        return False, (
            f"bitsandbytes {version} {method} on {device} runs but is wrong: cosine {cos:.4f} "
            f"to the float layer on a {out_f}x{in_f} probe (expected >= {_PROBE_MIN_COSINE})"
        )
    return True, ""


def method_status(method: str, device: str) -> tuple[bool, str]:
    """Everything a bnb path needs on ``device``: library, backend, transformers loader, a probe."""
    bnb, err = import_bnb()
    if bnb is None:
        return False, err or "bitsandbytes fails to import"
    if device == "cuda":
        ok, why = cuda_backend_status(bnb)
    elif device == "cpu":
        ok, why = cpu_backend_status(bnb)
    else:
        ok, why = False, f"bitsandbytes paths run on cpu or cuda, not {device}"
    if not ok:
        return ok, why
    ok, why = transformers_loader_status(device)
    if not ok:
        return ok, why
    return probe_method(method, device)


def library_details(device: str) -> dict[str, Any]:
    """What a result records about the bitsandbytes stack that ran."""
    bnb, _ = import_bnb()
    info: dict[str, Any] = {
        "bitsandbytes_version": bnb_version(bnb),
        "transformers_version": installed_version("transformers"),
        "accelerate_version": installed_version("accelerate"),
    }
    if bnb is None:
        return info
    devices = supported_devices(bnb)
    info["bnb_supported_torch_devices"] = sorted(devices) if devices is not None else None
    info["bnb_native_library"] = native_library(bnb)
    if device == "cpu":
        info["cpu_int8_kernel"] = cpu_int8_kernel()
        info["cpu_4bit_kernel"] = cpu_4bit_kernel()
    return info


# ----------------------------------------------------------------- the CPU 4-bit kernel, as run


def route_cpu_4bit_layers(model: Any, compute_dtype: str = "bfloat16") -> list[str]:
    """Send 4-bit layers the fused CPU kernel cannot take, or must not take, to bitsandbytes'
    generic path.

    bitsandbytes >= 0.48 repacks a Linear4bit's weight for its AVX512-BF16 kernel at the first
    CPU forward, which asserts out_features % 32 == 0 and needs in_features % blocksize == 0 (the
    1000-class head fails: "N must be divisible by block_n"). That kernel also computes in bf16
    whatever ``bnb_4bit_compute_dtype`` says, so with any other compute dtype every layer is
    routed, or the result would name a compute dtype that never ran. The module attribute
    ``support_avx512bf16_for_cpu`` gates the repacking; clearing it keeps the layer 4-bit, run by
    dequantize + matmul in the compute dtype. Returns the names of the layers so routed.
    """
    routed = []
    for name, m in model.named_modules():
        if not getattr(m, "support_avx512bf16_for_cpu", False):
            continue
        qs = getattr(m.weight, "quant_state", None) or getattr(m, "quant_state", None)
        block = int(getattr(qs, "blocksize", 64) or 64)
        misfit = int(m.out_features) % CPU_4BIT_BLOCK_N or int(m.in_features) % block
        if misfit or compute_dtype != "bfloat16":
            m.support_avx512bf16_for_cpu = False
            routed.append(name)
    return routed


def cpu_4bit_kernel_as_run(n_generic: int, n_4bit: int) -> dict[str, Any]:
    """Which CPU kernels the 4-bit layers run: the fused one (as bitsandbytes loaded it) for the
    layers not routed, dequantize + matmul for the rest."""
    fused = n_4bit - n_generic if has_avx512bf16() else 0
    return {
        "fused_layers": fused,
        "fused_kernel": cpu_4bit_kernel() if fused else None,
        "generic_layers": n_4bit - fused,
        "generic_kernel": "bitsandbytes gemm_4bit (dequantize_4bit + torch matmul in the compute dtype)"
        if n_4bit - fused
        else None,
    }
