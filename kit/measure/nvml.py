"""NVML handle of the GPU torch is using, matched by UUID.

torch numbers devices after ``CUDA_VISIBLE_DEVICES`` has filtered and reordered them; NVML numbers
every GPU in the machine. With ``CUDA_VISIBLE_DEVICES=3`` torch's device 0 is NVML's device 3, so
reading NVML by torch's index records another card's clocks and memory. The UUID names the same
card in both.
"""

from __future__ import annotations

import os
from typing import Any


def torch_device_uuid(index: int) -> str | None:
    """``GPU-<uuid>`` of torch's CUDA device ``index`` (None where torch does not expose it)."""
    try:
        import torch

        uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
    except Exception:
        return None
    if uuid is None:
        return None
    text = str(uuid)
    return text if text.startswith("GPU-") else f"GPU-{text}"


def nvml_handle(pynvml: Any, index: int, uuid: str | None = None) -> tuple[Any, str]:
    """(handle, how it was matched) for torch's CUDA device ``index``; NVML already initialised.

    ``uuid`` defaults to the one torch reports. Falls back to NVML's index when no UUID is known or
    NVML does not know it, and says whether that index can be trusted.
    """
    uuid = uuid if uuid is not None else torch_device_uuid(index)
    if uuid:
        try:
            return pynvml.nvmlDeviceGetHandleByUUID(uuid), f"uuid {uuid}"
        except Exception:
            pass
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None or visible.strip() == "":
        return pynvml.nvmlDeviceGetHandleByIndex(index), "index (CUDA_VISIBLE_DEVICES unset: same numbering)"
    entries = [e.strip() for e in visible.split(",") if e.strip()]
    if index < len(entries) and entries[index].isdigit():
        nvml_index = int(entries[index])
        return (
            pynvml.nvmlDeviceGetHandleByIndex(nvml_index),
            f"index {nvml_index} (torch device {index} through CUDA_VISIBLE_DEVICES={visible})",
        )
    return pynvml.nvmlDeviceGetHandleByIndex(index), (
        f"index {index} (unverified: CUDA_VISIBLE_DEVICES={visible} and no UUID match)"
    )


def open_device(index: int) -> tuple[Any, Any, str]:
    """(pynvml, handle, how it was matched) for torch's CUDA device ``index``, NVML initialised.

    Raises ImportError without nvidia-ml-py and NVML's own errors without a driver; each caller
    records those its own way.
    """
    import pynvml

    pynvml.nvmlInit()
    handle, matched = nvml_handle(pynvml, index)
    return pynvml, handle, matched
