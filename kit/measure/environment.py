"""The environment recorded with every result: software, CPU, GPU, the kit itself.

Collected once per process (the parent collects it, children re-collect the parts that are
process-specific such as thread counts and TF32 flags via ``math_settings``).
"""

from __future__ import annotations

import datetime as _dt
import functools
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = (
    "torch",
    "transformers",
    "bitsandbytes",
    "accelerate",
    "onnx",
    "onnxruntime",
    "onnxruntime-gpu",
    "onnxscript",
    "optimum",
    "optimum-onnx",
    "safetensors",
    "numpy",
    "nvidia-ml-py",
)
# Environment variables that change what the math does or where it runs.
MATH_ENV = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_CORETYPE",
    "CUDA_VISIBLE_DEVICES",
    "NVIDIA_TF32_OVERRIDE",
    "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE",
    "CUBLAS_WORKSPACE_CONFIG",
)
ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_bf16", "amx_int8", "amx_tile")


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


@functools.lru_cache(maxsize=1)
def cpu_info() -> dict[str, Any]:
    model, flags = platform.processor() or "unknown", set[str]()
    try:
        text = Path("/proc/cpuinfo").read_text()
        for line in text.splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name" and model in ("unknown", "", platform.machine()):
                model = value.strip()
            elif key == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count() or 0
    return {
        "model": model,
        "machine": platform.machine(),
        "logical_cores": os.cpu_count(),
        "usable_cores": affinity,
        "isa": {flag: (flag in flags) for flag in ISA_FLAGS},
    }


def _nvml_gpu(index: int) -> dict[str, Any]:
    try:
        from kit.measure.nvml import open_device

        pynvml, h, matched = open_device(index)
        return {
            "nvml_device_matched_by": matched,
            "nvml_name": _text(pynvml.nvmlDeviceGetName(h)),
            "driver": _text(pynvml.nvmlSystemGetDriverVersion()),
            "cuda_driver_api": pynvml.nvmlSystemGetCudaDriverVersion(),
            "sm_clock_mhz": pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM),
            "mem_clock_mhz": pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_MEM),
            "max_sm_clock_mhz": pynvml.nvmlDeviceGetMaxClockInfo(h, pynvml.NVML_CLOCK_SM),
            "max_mem_clock_mhz": pynvml.nvmlDeviceGetMaxClockInfo(h, pynvml.NVML_CLOCK_MEM),
            "clocks_source": "NVML nvmlDeviceGetClockInfo (current, at collection) / GetMaxClockInfo",
            "power_limit_w": pynvml.nvmlDeviceGetPowerManagementLimit(h) / 1000.0,
            "temperature_c": pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU),
        }
    except Exception as exc:  # pynvml missing or no driver: say so
        return {"nvml_error": f"{type(exc).__name__}: {exc}"}


# NVML clock event ("throttle") reason bits, as nvml.h defines them (names without the prefix).
_CLOCK_EVENT_BITS = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}


def gpu_clocks_now(index: int) -> dict[str, Any]:
    """The card's clocks, power and clock-event (throttle) reasons at this moment, from NVML.

    Read right after a cell's timed loop, these say what the card ran at under load; the
    environment's clocks are read when the process starts, usually at idle clocks.
    """
    try:
        from kit.measure.nvml import open_device

        pynvml, h, matched = open_device(index)
        # nvidia-ml-py 12.535+ names it "ClocksEventReasons"; older releases only "ThrottleReasons".
        reasons_fn = getattr(pynvml, "nvmlDeviceGetCurrentClocksEventReasons", None)
        if reasons_fn is None:
            reasons_fn = pynvml.nvmlDeviceGetCurrentClocksThrottleReasons
        bits = int(reasons_fn(h))
        return {
            "sm_clock_mhz": pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM),
            "mem_clock_mhz": pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_MEM),
            "power_draw_w": pynvml.nvmlDeviceGetPowerUsage(h) / 1000.0,
            "temperature_c": pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU),
            "clock_event_reasons": [name for bit, name in _CLOCK_EVENT_BITS.items() if bits & bit],
            "clock_event_bits": bits,
            "device_matched_by": matched,
            "source": "NVML, read right after the timed loop",
        }
    except Exception as exc:  # pynvml missing, no driver, or a call this driver lacks: say so
        return {"nvml_error": f"{type(exc).__name__}: {exc}"}


def _text(value: Any) -> str:
    """NVML strings are bytes in older pynvml releases."""
    return value.decode() if isinstance(value, bytes) else str(value)


def gpu_info() -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(gpu, cuda) sections; both None when torch sees no CUDA device."""
    try:
        import torch
    except ImportError:
        return None, None
    cuda_build = torch.version.cuda
    if not torch.cuda.is_available():
        return None, {"torch_cuda_build": cuda_build, "available": False}
    index = torch.cuda.current_device()
    props = torch.cuda.get_device_properties(index)
    gpu = {
        "name": props.name,
        "index": index,
        "count": torch.cuda.device_count(),
        "memory_mb": props.total_memory / 2**20,
        "sm_count": props.multi_processor_count,
        "capability": f"{props.major}.{props.minor}",
        **_nvml_gpu(index),
    }
    cuda = {
        "available": True,
        "torch_cuda_build": cuda_build,
        "cudnn": torch.backends.cudnn.version(),
    }
    return gpu, cuda


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return os.environ.get("QKIT_GIT_COMMIT")
    if out.returncode != 0:
        # Inside the Docker images the source has no .git; the build records the commit.
        return os.environ.get("QKIT_GIT_COMMIT")
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def math_settings() -> dict[str, Any]:
    """Settings that change numbers: threads, TF32, matmul precision."""
    import torch

    settings: dict[str, Any] = {
        "torch_num_threads": torch.get_num_threads(),
        "torch_num_interop_threads": torch.get_num_interop_threads(),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "mkldnn_enabled": torch.backends.mkldnn.is_available(),
        "env": {k: os.environ.get(k) for k in MATH_ENV},
    }
    if torch.cuda.is_available():
        settings["tf32_matmul"] = torch.backends.cuda.matmul.allow_tf32
        settings["tf32_cudnn"] = torch.backends.cudnn.allow_tf32
        settings["cudnn_benchmark"] = torch.backends.cudnn.benchmark
    return settings


def collect_environment(command: str | None = None) -> dict[str, Any]:
    from kit import __version__

    gpu, cuda = gpu_info()
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "packages": package_versions(),
        "os": f"{platform.system()} {platform.release()} ({platform.platform()})",
        "cpu": cpu_info(),
        "gpu": gpu,
        "cuda": cuda,
        "kit": {"version": __version__, "git_commit": git_commit()},
        "command": command if command is not None else " ".join(sys.argv),
        "utc": _dt.datetime.now(_dt.timezone.utc).isoformat(),
    }
