"""Memory tracker: peak memory of one cell, each figure labelled with where it came from.

CPU: every cell runs in its own child process, so the kernel's high-water mark of resident set
size (``getrusage(RUSAGE_SELF).ru_maxrss``) is exactly the cell's peak RSS with no sampling
thread competing for the cores. The baseline (interpreter + libraries, before the model is built)
is recorded beside it. CUDA: ``torch.cuda.reset_peak_memory_stats`` then
``max_memory_allocated`` / ``max_memory_reserved``, plus NVML's device-wide used memory.
"""

from __future__ import annotations

import os
import resource
import sys
from dataclasses import dataclass, field
from typing import Any

MIB = 1024 * 1024


def current_rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / MIB


def peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak / MIB if sys.platform == "darwin" else peak / 1024


def nvml_used_mb(device_index: int = 0) -> dict[str, Any] | None:
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(device_index)
        info = pynvml.nvmlDeviceGetMemoryInfo(handle)
        return {
            "used_mb": info.used / MIB,
            "total_mb": info.total / MIB,
            "source": "NVML nvmlDeviceGetMemoryInfo.used (device-wide, all processes and contexts)",
        }
    except Exception as exc:  # NVML missing or driver mismatch: record, don't fail the cell
        return {"error": f"NVML unavailable: {exc}"}


@dataclass
class MemoryTracker:
    """Context manager around model preparation and measurement."""

    device: str = "cpu"
    baseline_mb: float = 0.0
    result: dict[str, Any] = field(default_factory=dict)
    after_prepare: dict[str, Any] = field(default_factory=dict)

    def mark_prepared(self) -> None:
        """Memory held once the model is ready, before any inference: the resident footprint
        of weights plus runtime (CPU RSS; on CUDA ``memory_allocated``, i.e. weights and
        buffers on the device)."""
        self.after_prepare = {"rss_mb": current_rss_mb()}
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()
            self.after_prepare["cuda_allocated_mb"] = torch.cuda.memory_allocated() / MIB

    def __enter__(self) -> MemoryTracker:
        self.baseline_mb = current_rss_mb()
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._cuda_start = torch.cuda.memory_allocated()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()
            peak_alloc = torch.cuda.max_memory_allocated() / MIB
            self.result = {
                "peak_mb": peak_alloc,
                "peak_source": "torch.cuda.max_memory_allocated after reset_peak_memory_stats (MiB)",
                "baseline_mb": self._cuda_start / MIB,
                "cuda": {
                    "max_memory_allocated_mb": peak_alloc,
                    "max_memory_reserved_mb": torch.cuda.max_memory_reserved() / MIB,
                    "source": "torch.cuda caching allocator statistics (MiB)",
                },
                "nvml": nvml_used_mb(torch.cuda.current_device()),
                "host_peak_rss_mb": peak_rss_mb(),
                "after_prepare": self.after_prepare or None,
            }
        else:
            own_process = os.environ.get("QKIT_CELL_PROCESS") == "1"
            source = (
                "getrusage(RUSAGE_SELF).ru_maxrss of the cell's own child process (MiB)"
                if own_process
                else "getrusage(RUSAGE_SELF).ru_maxrss of a shared process (inline run: includes whatever this "
                "process held before the cell; not a per-cell peak) (MiB)"
            )
            self.result = {
                "peak_mb": peak_rss_mb(),
                "peak_source": source,
                "per_cell": own_process,
                "baseline_mb": self.baseline_mb,
                "cuda": None,
                "nvml": None,
                "after_prepare": self.after_prepare or None,
            }


def weight_bytes_by_dtype(model: Any) -> dict[str, int]:
    """Bytes held in parameters and buffers, per dtype (what the weights occupy, not activations)."""
    out: dict[str, int] = {}
    seen: set[int] = set()
    tensors = list(model.parameters()) + list(model.buffers())
    for t in tensors:
        if id(t) in seen:
            continue
        seen.add(id(t))
        key = str(t.dtype).replace("torch.", "")
        out[key] = out.get(key, 0) + t.numel() * t.element_size()
    return out
