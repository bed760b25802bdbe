"""Memory tracker: peak memory of one cell, each figure labelled with where it came from.

CPU: every cell runs in its own child process, so the kernel's high-water mark of resident set
size (``getrusage(RUSAGE_SELF).ru_maxrss``) is exactly the cell's peak RSS with no sampling
thread competing for the cores. The baseline (interpreter + libraries, before the model is built)
is recorded beside it. CUDA: ``torch.cuda.reset_peak_memory_stats`` then
``max_memory_allocated`` / ``max_memory_reserved``, plus the device-wide used memory from the
CUDA runtime and NVML. A runtime that allocates outside torch (ONNX Runtime's CUDA / TensorRT
providers) gets the growth of device-wide used memory as its peak instead, labelled so.
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


def nvml_used_mb(device_index: int = 0) -> dict[str, Any]:
    from kit.measure.nvml import open_device

    try:
        pynvml, handle, matched = open_device(device_index)
        info = pynvml.nvmlDeviceGetMemoryInfo(handle)
        return {
            "used_mb": info.used / MIB,
            "total_mb": info.total / MIB,
            "source": (
                "NVML nvmlDeviceGetMemoryInfo.used (device-wide, all processes and contexts, "
                "including the CUDA context; read once at the end of the cell, not a peak)"
            ),
            "device_matched_by": matched,
        }
    except ImportError:
        return {"error": "NVML unavailable: nvidia-ml-py (pynvml) is not installed (pip install 'qkit[gpu]')"}
    except Exception as exc:  # NVML missing or driver mismatch: record, don't fail the cell
        return {"error": f"NVML unavailable: {exc}"}


def cuda_device_used_mb() -> float:
    """Device-wide used memory from the CUDA runtime (``cudaMemGetInfo``: total - free), MiB."""
    import torch

    free, total = torch.cuda.mem_get_info()
    return (total - free) / MIB


@dataclass
class MemoryTracker:
    """Context manager around model preparation and measurement.

    ``device_allocator`` says who allocates the model's device memory: ``"torch"`` (the peak is
    torch's allocator statistic) or another runtime such as ``"onnxruntime"``, whose allocations
    torch cannot see; the cell sets it from the prepared model before the tracker exits.
    """

    device: str = "cpu"
    baseline_mb: float = 0.0
    result: dict[str, Any] = field(default_factory=dict)
    after_prepare: dict[str, Any] = field(default_factory=dict)
    device_allocator: str = "torch"

    def mark_prepared(self) -> None:
        """Memory held once the model is ready, before any inference: the resident footprint
        of weights plus runtime (CPU RSS; on CUDA ``memory_allocated``, i.e. weights and
        buffers on the device, and the device-wide used memory)."""
        self.after_prepare = {"rss_mb": current_rss_mb()}
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()
            self.after_prepare["cuda_allocated_mb"] = torch.cuda.memory_allocated() / MIB
            self.after_prepare["cuda_device_used_mb"] = cuda_device_used_mb()

    def __enter__(self) -> MemoryTracker:
        self.baseline_mb = current_rss_mb()
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._cuda_start = torch.cuda.memory_allocated()
            self._device_used_start = cuda_device_used_mb()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device == "cuda":
            self.result = self._cuda_result()
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

    def _cuda_result(self) -> dict[str, Any]:
        import torch

        torch.cuda.synchronize()
        peak_alloc = torch.cuda.max_memory_allocated() / MIB
        device_used_end = cuda_device_used_mb()
        grown = max(device_used_end - self._device_used_start, 0.0)
        result: dict[str, Any] = {
            "peak_mb": peak_alloc,
            "peak_source": "torch.cuda.max_memory_allocated after reset_peak_memory_stats (MiB)",
            "baseline_mb": self._cuda_start / MIB,
            "device_allocator": self.device_allocator,
            "cuda": {
                "max_memory_allocated_mb": peak_alloc,
                "max_memory_reserved_mb": torch.cuda.max_memory_reserved() / MIB,
                "source": "torch.cuda caching allocator statistics (MiB)",
                "device_used_start_mb": self._device_used_start,
                "device_used_end_mb": device_used_end,
                "device_used_growth_mb": grown,
                "device_used_source": (
                    "torch.cuda.mem_get_info (cudaMemGetInfo: total - free, device-wide) at the start "
                    "and the end of the cell (MiB)"
                ),
            },
            "nvml": nvml_used_mb(torch.cuda.current_device()),
            "host_peak_rss_mb": peak_rss_mb(),
            "after_prepare": self.after_prepare or None,
        }
        if self.device_allocator != "torch":
            # torch's allocator saw none of this runtime's memory: its statistic would read ~0.
            result["peak_mb"] = grown
            result["peak_source"] = (
                f"growth of device-wide used memory over the cell, torch.cuda.mem_get_info at the end "
                f"minus at the start (MiB): {self.device_allocator} allocates outside torch's allocator; "
                "its arena keeps its high-water mark, so the end value holds its peak; includes the "
                "runtime's own CUDA library workspaces, and other processes on the card would add to it"
            )
            result["baseline_mb"] = self._device_used_start
        return result


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
