"""Memory tracker: memory of one cell by phase, each figure labelled with where it came from.

Phases (DESIGN.md): ``load`` (build and prepare: the high-water mark up to the prepared model),
``steady`` (the prepared model at rest: resident memory after prepare minus the process baseline)
and ``inference`` (from the first warm-up to the end of timing: the high-water mark reset after
prepare and read after the timed loop). A claim is judged on the phase it speaks of.

CPU on Linux: ``VmHWM`` from ``/proc/self/status``, which the process resets itself by writing
``5`` to ``/proc/self/clear_refs`` (kernel-accounted, no sampling thread). Before the steady
reading, freed heap is handed back to the kernel (``malloc_trim(0)``, glibc), so the float model a
quantizing path started from no longer counts as resident. Where the reset is unavailable (macOS,
a locked-down /proc) the inference peak is not recorded and the phase says why.

CPU: every cell runs in its own child process, so the kernel's high-water mark of resident set
size (``getrusage(RUSAGE_SELF).ru_maxrss``) is exactly the cell's peak RSS with no sampling
thread competing for the cores. The baseline (interpreter + libraries, before the model is built)
is recorded beside it. CUDA: ``torch.cuda.reset_peak_memory_stats`` then
``max_memory_allocated`` / ``max_memory_reserved``, plus the device-wide used memory from the
CUDA runtime and NVML. A runtime that allocates outside torch (ONNX Runtime's CUDA / TensorRT
providers) gets the growth of device-wide used memory as its peak instead, labelled so.
"""

from __future__ import annotations

import ctypes
import gc
import os
import re
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


_HWM = re.compile(r"^VmHWM:\s+(\d+)\s+kB", re.MULTILINE)
_RSS = re.compile(r"^VmRSS:\s+(\d+)\s+kB", re.MULTILINE)


def _status_kb(pattern: re.Pattern[str]) -> float | None:
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            m = pattern.search(fh.read())
    except OSError:
        return None
    return int(m.group(1)) / 1024 if m else None


def hwm_mb() -> float | None:
    """The kernel's resident high-water mark of this process (``VmHWM``), MiB; None off Linux."""
    return _status_kb(_HWM)


def reset_hwm() -> str | None:
    """Reset ``VmHWM`` to the current RSS (``echo 5 > /proc/self/clear_refs``). Returns None on
    success, else why it could not be reset."""
    if hwm_mb() is None:
        return f"no /proc/self/status VmHWM on {sys.platform}"
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
    except OSError as exc:
        return f"cannot reset VmHWM (/proc/self/clear_refs: {exc.strerror or exc})"
    return None


def trim_heap() -> bool:
    """Collect garbage, then hand freed heap pages back to the kernel (glibc ``malloc_trim(0)``);
    False where ``malloc_trim`` is absent (the garbage is collected all the same)."""
    gc.collect()
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        return False
    return True


CPU_LOAD_SOURCE = (
    "VmHWM (kernel resident high-water mark), reset at the cell's start, read at the end of prepare "
    "(model build and prepare) (MiB); net_mb subtracts the process baseline"
)
CPU_STEADY_SOURCE = (
    "VmRSS after prepare, gc and malloc_trim(0), minus the process baseline before the model was built (MiB)"
)
CPU_INFERENCE_SOURCE = (
    "VmHWM reset after prepare (/proc/self/clear_refs 5), read after the timed loop: warm-up and timed "
    "iterations (MiB); net_mb subtracts the process baseline"
)
CUDA_LOAD_SOURCE = "torch.cuda.max_memory_allocated from the cell's start to the end of prepare (MiB)"
CUDA_STEADY_SOURCE = "torch.cuda.memory_allocated after prepare: weights and buffers on the device (MiB)"
CUDA_INFERENCE_SOURCE = (
    "torch.cuda.max_memory_allocated after reset_peak_memory_stats at the end of prepare, read after the "
    "timed loop (MiB); includes the resident weights, as the study's peak GPU memory does"
)


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
    """Context manager around model preparation and measurement, memory by phase.

    The cell calls ``mark_prepared`` once the model is ready (load phase ends, steady reading),
    ``start_inference`` right before the warm-up and ``end_inference`` right after the timed
    loop. ``device_allocator`` says who allocates the model's device memory: ``"torch"`` (the
    peak is torch's allocator statistic) or another runtime such as ``"onnxruntime"``, whose
    allocations torch cannot see; the cell sets it from the prepared model before the tracker exits.
    """

    device: str = "cpu"
    baseline_mb: float = 0.0
    result: dict[str, Any] = field(default_factory=dict)
    after_prepare: dict[str, Any] = field(default_factory=dict)
    device_allocator: str = "torch"
    phases: dict[str, Any] = field(default_factory=dict)
    _before_inference_peak: float | None = None
    _before_inference_reserved: float | None = None
    _inference_reset_error: str | None = None
    _load_reset_error: str | None = None

    def mark_prepared(self) -> None:
        """End of the load phase: its peak, and the steady footprint of the prepared model
        (CPU RSS after handing freed heap back; on CUDA ``memory_allocated``, i.e. weights and
        buffers on the device, and the device-wide used memory)."""
        trimmed = trim_heap() if self.device != "cuda" else False
        self.after_prepare = {"rss_mb": current_rss_mb(), "heap_trimmed": trimmed}
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()
            allocated = torch.cuda.memory_allocated() / MIB
            self.after_prepare["cuda_allocated_mb"] = allocated
            self.after_prepare["cuda_device_used_mb"] = cuda_device_used_mb()
            if self.device_allocator == "torch":
                self.phases["load"] = {
                    "peak_mb": torch.cuda.max_memory_allocated() / MIB,
                    "source": CUDA_LOAD_SOURCE,
                }
                self.phases["steady"] = {"mb": allocated, "source": CUDA_STEADY_SOURCE}
            else:
                used = self.after_prepare["cuda_device_used_mb"] - self._device_used_start
                self.phases["steady"] = {
                    "mb": max(used, 0.0),
                    "source": f"growth of device-wide used memory to the end of prepare ({self.device_allocator} "
                    "allocates outside torch's allocator) (MiB)",
                }
            return
        load_peak = hwm_mb()
        if load_peak is None:
            load_peak, load_source = peak_rss_mb(), "getrusage ru_maxrss at the end of prepare (MiB)"
        else:
            load_source = (
                CPU_LOAD_SOURCE
                if not self._load_reset_error
                else CPU_LOAD_SOURCE.replace(
                    "at the end of prepare",
                    f"at the end of prepare, not reset at the cell's start ({self._load_reset_error})",
                )
            )
        self.phases["load"] = {"peak_mb": load_peak, "net_mb": load_peak - self.baseline_mb, "source": load_source}
        steady_source = CPU_STEADY_SOURCE if trimmed else CPU_STEADY_SOURCE.replace(" and malloc_trim(0)", "")
        self.phases["steady"] = {
            "mb": max(self.after_prepare["rss_mb"] - self.baseline_mb, 0.0),
            "rss_mb": self.after_prepare["rss_mb"],
            "source": steady_source,
        }

    def start_inference(self) -> None:
        """Reset the high-water mark: what follows is the inference phase."""
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()
            self._before_inference_peak = torch.cuda.max_memory_allocated() / MIB
            self._before_inference_reserved = torch.cuda.max_memory_reserved() / MIB
            torch.cuda.reset_peak_memory_stats()
            return
        self._before_inference_peak = hwm_mb() or peak_rss_mb()
        self._inference_reset_error = reset_hwm()

    def end_inference(self) -> None:
        if self._before_inference_peak is None:
            return
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()
            if self.device_allocator == "torch":
                self.phases["inference"] = {
                    "peak_mb": torch.cuda.max_memory_allocated() / MIB,
                    "source": CUDA_INFERENCE_SOURCE,
                }
            else:
                self.phases["inference"] = {
                    "peak_mb": None,
                    "unavailable": f"{self.device_allocator} allocates outside torch's allocator and its arena "
                    "keeps its high-water mark: no inference-phase peak apart from the whole cell's",
                }
            return
        if self._inference_reset_error:
            self.phases["inference"] = {"peak_mb": None, "unavailable": self._inference_reset_error}
            return
        peak = hwm_mb()
        self.phases["inference"] = {
            "peak_mb": peak,
            "net_mb": (peak - self.baseline_mb) if peak is not None else None,
            "source": CPU_INFERENCE_SOURCE,
        }

    def __enter__(self) -> MemoryTracker:
        # The load phase counts from here: what the process held before (imports, a reference
        # computed in this process) is the baseline, not the cell's peak.
        # The baseline is read on the same footing as the steady reading (after gc and malloc_trim):
        # garbage the process held before the cell would otherwise be returned during the cell and
        # make the prepared model look smaller than it is (down to a steady footprint of 0).
        if self.device != "cuda":
            trim_heap()
        self._load_reset_error = reset_hwm() if self.device != "cuda" else None
        self.baseline_mb = current_rss_mb()
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._cuda_start = torch.cuda.memory_allocated()
            self._device_used_start = cuda_device_used_mb()
        return self

    def _whole_cell(self, now: float | None) -> float | None:
        values = [v for v in (self._before_inference_peak, now) if v is not None]
        return max(values) if values else None

    def __exit__(self, *exc: object) -> None:
        if self.device == "cuda":
            self.result = self._cuda_result()
        else:
            own_process = os.environ.get("QKIT_CELL_PROCESS") == "1"
            whole = self._whole_cell(hwm_mb() or peak_rss_mb())
            source = (
                "process high-water mark over the whole cell (model build, prepare and inference), "
                "the larger of VmHWM before and after its reset after prepare, of the cell's own child process (MiB)"
                if own_process
                else "process high-water mark of a shared process (inline run: includes whatever this "
                "process held before the cell; not a per-cell peak) (MiB)"
            )
            self.result = {
                "peak_mb": whole if whole is not None else peak_rss_mb(),
                "peak_source": source,
                "per_cell": own_process,
                "baseline_mb": self.baseline_mb,
                "cuda": None,
                "nvml": None,
                "after_prepare": self.after_prepare or None,
                "phases": self._phases_doc(),
            }

    def _phases_doc(self) -> dict[str, Any]:
        out = dict(self.phases)
        out.setdefault("load", None)
        out.setdefault("steady", None)
        out.setdefault("inference", None)
        out["baseline_mb"] = self.baseline_mb if self.device != "cuda" else self._cuda_start / MIB
        return out

    def _cuda_result(self) -> dict[str, Any]:
        import torch

        torch.cuda.synchronize()
        peak_alloc = self._whole_cell(torch.cuda.max_memory_allocated() / MIB) or 0.0
        device_used_end = cuda_device_used_mb()
        grown = max(device_used_end - self._device_used_start, 0.0)
        result: dict[str, Any] = {
            "peak_mb": peak_alloc,
            "peak_source": "torch.cuda.max_memory_allocated over the whole cell (the larger of before and after "
            "the reset at the end of prepare) (MiB)",
            "baseline_mb": self._cuda_start / MIB,
            "device_allocator": self.device_allocator,
            "cuda": {
                "max_memory_allocated_mb": peak_alloc,
                # Over the whole cell like the allocated peak: the reset at the end of prepare clears both.
                "max_memory_reserved_mb": max(
                    torch.cuda.max_memory_reserved() / MIB, self._before_inference_reserved or 0.0
                ),
                "source": "torch.cuda caching allocator statistics over the whole cell (MiB)",
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
            "phases": self._phases_doc(),
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
