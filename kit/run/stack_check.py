"""``qkit env --check``: the stack problems the kit knows about, each found by asking the library.

Each check returns problems (empty when fine or not applicable); a check that cannot run says
nothing rather than guessing. The checks:

- ``ort-cuda-provider``: onnxruntime-gpu lists CUDAExecutionProvider but a session cannot keep
  it (CUDA or cuDNN major mismatch makes ORT drop it, with only a log line).
- ``bnb-backend``: bitsandbytes imports but has no usable native backend.
- ``torch-cuda-driver``: torch built for a CUDA newer than the driver supports.
- ``tf32-fp32``: TF32 matmuls on, so "FP32" cells would not be FP32.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class StackProblem:
    id: str
    message: str


CHECKS: list[Callable[[], list[StackProblem]]] = []


def check(fn: Callable[[], list[StackProblem]]) -> Callable[[], list[StackProblem]]:
    CHECKS.append(fn)
    return fn


@check
def ort_cuda_provider() -> list[StackProblem]:
    try:
        import onnxruntime as ort
    except ImportError:
        return []
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return []
    from kit.export.ort_runtime import probe_provider

    kept, why = probe_provider("CUDAExecutionProvider")
    if kept:
        return []
    return [StackProblem("ort-cuda-provider", f"onnxruntime lists CUDAExecutionProvider but cannot use it: {why}")]


@check
def bnb_backend() -> list[StackProblem]:
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        return []
    except Exception as exc:  # bitsandbytes raises RuntimeError when its native library fails
        return [StackProblem("bnb-backend", f"bitsandbytes fails to import: {exc}")]
    from kit.paths.bnb_support import bnb_backend_status

    ok, why = bnb_backend_status()
    return [] if ok else [StackProblem("bnb-backend", why)]


def _cuda_version_tuple(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    parts = text.split(".")
    try:
        return int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        return None


@check
def torch_cuda_driver() -> list[StackProblem]:
    try:
        import torch
    except ImportError:
        return []
    build = _cuda_version_tuple(torch.version.cuda)
    if build is None:
        return []
    try:
        import pynvml

        pynvml.nvmlInit()
        drv = pynvml.nvmlSystemGetCudaDriverVersion()  # e.g. 12020 for 12.2
    except Exception:
        return []  # no driver at all: nothing to compare (CUDA paths skip with their own reason)
    driver = (drv // 1000, (drv % 1000) // 10)
    if build > driver:
        return [
            StackProblem(
                "torch-cuda-driver",
                f"torch is built for CUDA {build[0]}.{build[1]} but the driver supports up to "
                f"{driver[0]}.{driver[1]}: CUDA will not initialise (or only with forward-compat libs)",
            )
        ]
    return []


@check
def tf32_on_for_fp32() -> list[StackProblem]:
    try:
        import torch
    except ImportError:
        return []
    if not torch.cuda.is_available():
        return []
    if torch.cuda.get_device_capability()[0] < 8:
        return []  # TF32 exists from Ampere (sm_80) on
    on = []
    if torch.backends.cuda.matmul.allow_tf32:
        on.append("torch.backends.cuda.matmul.allow_tf32")
    # torch.backends.cudnn.allow_tf32 is on by default (convolutions in TF32); the kit's
    # torch-fp32 path switches it off for its cells and records that, so it is not flagged here.
    # TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1 forces allow_tf32 on. NVIDIA_TF32_OVERRIDE only ever
    # switches TF32 off (=0); no value of it turns TF32 on, so it is never flagged.
    if os.environ.get("TORCH_ALLOW_TF32_CUBLAS_OVERRIDE") not in (None, "", "0"):
        on.append(f"TORCH_ALLOW_TF32_CUBLAS_OVERRIDE={os.environ['TORCH_ALLOW_TF32_CUBLAS_OVERRIDE']}")
    if os.environ.get("NVIDIA_TF32_OVERRIDE") == "0":
        return []  # TF32 off in every NVIDIA library whatever torch's flags say
    if torch.get_float32_matmul_precision() != "highest":
        on.append(f"float32_matmul_precision={torch.get_float32_matmul_precision()!r}")
    if on:
        return [StackProblem("tf32-fp32", f"TF32 is on ({', '.join(on)}): torch-fp32 cells would not be FP32")]
    return []


def run_stack_checks() -> list[StackProblem]:
    problems: list[StackProblem] = []
    for fn in CHECKS:
        try:
            problems.extend(fn())
        except Exception as exc:  # a broken check is itself a problem worth seeing
            problems.append(StackProblem(fn.__name__, f"check crashed: {type(exc).__name__}: {exc}"))
    return problems
