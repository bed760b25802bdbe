"""The precision-path contract: every way of running a model sits behind `PrecisionPath`.

A path names its *method* (``torch-fp16``, ``bnb-int8`` = LLM.int8, ``ort-int8-static-qdq`` ...).
The device is a separate argument, and whatever actually ran (dtype, execution provider,
quantizer settings) is reported by the prepared model in ``details`` so the result records it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

if TYPE_CHECKING:
    from kit.models.registry import ModelSpec

DEVICES: tuple[str, ...] = ("cpu", "cuda")


class PathUnavailable(Exception):
    """Raised by ``prepare`` when the path turns out not to be runnable here (-> skipped cell)."""


class PathFailed(Exception):
    """Raised by ``prepare`` when the method ran but its own checks failed (-> failed cell)."""


@dataclass
class PrepareContext:
    """What a path needs to build its runnable model.

    ``build_float_model`` returns a fresh FP32 ``torch.nn.Module`` on CPU in eval mode, built the
    way the run asked (random seeded weights, local directory or hub). ``work_dir`` is scratch
    space that lives as long as the cell (exports, quantized files). ``cache_dir`` is kept for the
    whole run (ONNX exports are cached there).
    """

    spec: ModelSpec
    device: str
    batch_size: int
    build_float_model: Callable[[], Any]
    work_dir: str
    cache_dir: str
    weights_fingerprint: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class PreparedModel:
    """A model made ready by a path.

    ``run(pixel_values)`` takes float32 NCHW numpy input and returns the model's primary output
    (logits for classifiers, pooled/CLS features for backbones) as float32 numpy; it is used for
    fidelity. ``make_timed_call(pixel_values)`` returns a zero-argument callable that performs one
    inference with inputs already placed on the device, so the latency tracker times only the
    forward pass (no host-to-device copies, no numpy conversion).
    """

    run: Callable[[np.ndarray], np.ndarray]
    make_timed_call: Callable[[np.ndarray], Callable[[], Any]]
    details: dict[str, Any]
    serialized_bytes: int | None = None
    serialized_method: str | None = None
    weight_bytes: int | None = None
    weight_bytes_by_dtype: dict[str, int] | None = None
    close: Callable[[], None] = lambda: None
    # True when the timed call itself waits for the device (ONNX Runtime's run on a GPU provider
    # synchronises its own stream): the host clock then measures it, and CUDA events recorded on
    # torch's stream would time a stream that did none of the work.
    host_synchronous: bool = False
    # Who allocates the model's device memory: "torch", or a runtime torch's allocator cannot see.
    device_allocator: str = "torch"


class PrecisionPath(ABC):
    """One way to run a model. Subclasses register themselves with ``@register_path``."""

    name: ClassVar[str]
    family: ClassVar[str]
    devices: ClassVar[tuple[str, ...]]
    description: ClassVar[str]
    # Devices on which the path is part of the default matrix (None: all of ``devices``).
    # A path can run on a device without being planned there by default; ``--paths`` and
    # ``--devices`` given explicitly plan exactly what was asked.
    default_devices: ClassVar[tuple[str, ...] | None] = None
    default_devices_reason: ClassVar[str] = ""

    @abstractmethod
    def available(self, device: str) -> tuple[bool, str]:
        """Whether this path can run on ``device`` here, and if not, the exact reason."""

    @abstractmethod
    def prepare(self, ctx: PrepareContext) -> PreparedModel:
        """Build the runnable model. Raise PathUnavailable / PathFailed with a reason."""

    def supports_device(self, device: str) -> tuple[bool, str]:
        if device not in self.devices:
            return False, f"path {self.name} runs on {', '.join(self.devices)}, not {device}"
        return True, ""


def parse_bool(value: Any) -> bool:
    """A path option's boolean (``--option key=true``): bools, 1/0, true/false, yes/no, on/off."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {value!r}")


_PATHS: dict[str, type[PrecisionPath]] = {}


def register_path(cls: type[PrecisionPath]) -> type[PrecisionPath]:
    if cls.name in _PATHS:
        raise ValueError(f"path {cls.name} registered twice")
    _PATHS[cls.name] = cls
    return cls


def _load_families() -> None:
    # Importing the family modules registers their paths; a family whose optional dependency is
    # missing still registers (its ``available`` says why it cannot run).
    import importlib

    for module in ("kit.paths.torch_paths", "kit.paths.bnb", "kit.paths.onnxruntime"):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


def planned_by_default(name: str, device: str) -> bool:
    cls = _PATHS[name]
    return device in (cls.default_devices if cls.default_devices is not None else cls.devices)


def path_names() -> list[str]:
    _load_families()
    return list(_PATHS)


def get_path(name: str) -> PrecisionPath:
    _load_families()
    try:
        return _PATHS[name]()
    except KeyError:
        raise KeyError(f"unknown path {name!r}; valid paths: {', '.join(_PATHS)}") from None
