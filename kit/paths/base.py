"""The precision-path contract: every way of running a model sits behind `PrecisionPath`.

A path names its *method* (``torch-fp16``, ``bnb-int8`` = LLM.int8, ``ort-int8-static-qdq`` ...).
The device is a separate argument, and whatever actually ran (dtype, execution provider,
quantizer settings) is reported by the prepared model in ``details`` so the result records it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from kit.errors import BadInput

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
    # False in a timing-only process (`kit.run.cell.time_cell`): sizes and weight bytes are the
    # first process's, and working them out costs seconds a process (a state dict written to disk,
    # packed INT8 weights unpacked: 7 s for ViT-L/16 torch dynamic INT8).
    measure_size: bool = True


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


# --------------------------------------------------------------------------- path facts
#
# What a path *is* is declared once, as class attributes of its class, and checked when the class
# registers; the shard cost model, the compute peak, the report's order and INT8 family, compare-
# int8's plan and the audit's device statements all read these facts (`path_facts`, `paths_where`)
# instead of keeping their own lists or matching substrings of the name.

RUNTIMES: tuple[str, ...] = ("torch", "onnxruntime")
FAMILIES: tuple[str, ...] = ("torch", "bitsandbytes", "onnxruntime")
# What the weights are held in; "int8" is the INT8 family the report and compare-int8 group by.
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "bf16", "int8", "int4")
# The math the matmuls run in, for the compute peak: int4 means 4-bit weights dequantized to the
# compute dtype for the matmul (the peak is then that dtype's, read from the cell's settings).
MATH_CLASSES: tuple[str, ...] = ("fp32", "fp16", "bf16", "int8", "int4")
# Work a cell does before timing, beyond building the float model (the shard cost model prices each).
PREPARE_STEPS: tuple[str, ...] = (
    "onnx-export",
    "ort-fuse",
    "ort-quantize",
    "ort-calibrate",
    "fp32-save",
    "bnb-load",
    "torch-quantize",
)
# The steps whose product the run's cache keeps (``<out>/_cache``): made once, loaded after that.
CACHED_PREPARE_STEPS: frozenset[str] = frozenset(
    {"onnx-export", "ort-fuse", "ort-quantize", "ort-calibrate", "fp32-save"}
)


def per_device(**values: Any) -> Mapping[str, Any]:
    """A read-only per-device fact (``cost = per_device(cpu=1.0, cuda=0.4)``): shared by subclasses,
    so it must not be mutable."""
    return MappingProxyType(values)


@dataclass(frozen=True)
class StackLimit:
    """A device restriction of a path's library in releases before ``before``: the method ran only
    on ``devices`` there (the study's pinned stack is such a release)."""

    package: str
    before: str
    devices: tuple[str, ...]
    why: str


@dataclass(frozen=True)
class PathFacts:
    """The declared facts of one registered path (see `PrecisionPath` for each one's meaning)."""

    name: str
    family: str
    runtime: str
    method: str
    description: str
    precision: str
    math_class: str
    devices: tuple[str, ...]
    default_devices: tuple[str, ...]
    cost: dict[str, float]
    prepare_steps: tuple[str, ...]
    order: int
    baseline: str
    reference: bool
    providers: dict[str, tuple[str | None, ...]]
    device_reasons: dict[str, str]
    stack_limits: tuple[StackLimit, ...]
    options_keys: tuple[str, ...]

    @property
    def is_baseline(self) -> bool:
        return self.baseline == self.name

    @property
    def is_int8(self) -> bool:
        return self.precision == "int8"

    def runs_on(self, device: str) -> bool:
        return device in self.devices


class PrecisionPath(ABC):
    """One way to run a model. Subclasses register themselves with ``@register_path``, which
    refuses a class whose facts (the ClassVars below without a default) are missing or invalid."""

    name: ClassVar[str]
    family: ClassVar[str]  # one of FAMILIES: the module family, and whose options it takes
    runtime: ClassVar[str]  # one of RUNTIMES: what executes the model
    method: ClassVar[str]  # the method, in words (``LLM.int8 (bitsandbytes)``)
    description: ClassVar[str]
    precision: ClassVar[str]  # one of PRECISIONS
    math_class: ClassVar[str]  # one of MATH_CLASSES
    devices: ClassVar[tuple[str, ...]]  # the devices the method has kernels for
    # Forward time relative to FP32 of the same model on the same device, per device in ``devices``:
    # coarse, only for balancing shards (kit.run.shard).
    cost: ClassVar[Mapping[str, float]]
    prepare_steps: ClassVar[tuple[str, ...]] = ()
    order: ClassVar[int]  # reading order in tables and figures (unique)
    # The FP32 path of the same runtime this path is compared with (itself for a float baseline).
    baseline: ClassVar[str]
    # The kit's reference (fidelity, and the report's speedups, are against it): one path.
    reference: ClassVar[bool] = False
    # Providers beyond the device's default that the ``provider`` option selects, per device.
    extra_providers: ClassVar[Mapping[str, tuple[str, ...]]] = per_device()
    # Why the path does not run on each device of DEVICES outside ``devices`` (every one needs one),
    # as a predicate: "has CPU kernels only (...)" (the audit says "that method <reason>").
    device_reasons: ClassVar[Mapping[str, str]] = per_device()
    stack_limits: ClassVar[tuple[StackLimit, ...]] = ()
    # Devices on which the path is part of the default matrix (None: all of ``devices``).
    # A path can run on a device without being planned there by default; ``--paths`` and
    # ``--devices`` given explicitly plan exactly what was asked.
    default_devices: ClassVar[tuple[str, ...] | None] = None
    default_devices_reason: ClassVar[str] = ""
    options_class: ClassVar[type[PathOptions]]

    @abstractmethod
    def available(self, device: str) -> tuple[bool, str]:
        """Whether this path can run on ``device`` here, and if not, the exact reason."""

    @abstractmethod
    def prepare(self, ctx: PrepareContext) -> PreparedModel:
        """Build the runnable model. Raise PathUnavailable / PathFailed with a reason."""

    def prepare_artifacts(self, ctx: PrepareContext) -> dict[str, Any] | None:
        """Make what ``prepare`` takes from the run's cache (exports, quantized models) without
        loading it to run; return what was made, or None when the path caches nothing.

        The runner calls this in a process of its own before the cell's measured process, so the
        measured process only loads from the cache: an export made in it would leave the torch
        model, protobufs and a fragmented heap resident, and its steady footprint would depend on
        whether the cache was warm (ViT-B/16 ORT dynamic INT8: 572 MiB on a miss, 141 MiB on a hit)."""
        return None

    def supports_device(self, device: str) -> tuple[bool, str]:
        if device not in self.devices:
            why = f"path {self.name} runs on {', '.join(self.devices)}, not {device}"
            note = self.device_reasons.get(device)
            return False, why + (f": it {note}" if note else "")
        return True, ""

    def options(self, ctx: PrepareContext) -> PathOptions:
        """This path's typed options, read from the run's raw ``--option`` dict."""
        return self.options_class.from_raw(ctx.options)

    @classmethod
    def facts(cls) -> PathFacts:
        devices = tuple(cls.devices)
        return PathFacts(
            name=cls.name,
            family=cls.family,
            runtime=cls.runtime,
            method=cls.method,
            description=cls.description,
            precision=cls.precision,
            math_class=cls.math_class,
            devices=devices,
            default_devices=tuple(d for d in devices if cls.default_devices is None or d in cls.default_devices),
            cost=dict(cls.cost),
            prepare_steps=tuple(cls.prepare_steps),
            order=cls.order,
            baseline=cls.baseline,
            reference=cls.reference,
            providers={d: (None, *cls.extra_providers.get(d, ())) for d in devices},
            device_reasons=dict(cls.device_reasons),
            stack_limits=tuple(cls.stack_limits),
            options_keys=cls.options_class.option_keys(),
        )


def _check_facts(cls: type[PrecisionPath]) -> None:
    """ValueError naming the class and the fact when a declared fact is missing or invalid."""

    def need(fact: str, ok: bool, expected: str) -> None:
        if not ok:
            got = getattr(cls, fact, "<missing>")
            raise ValueError(f"path class {cls.__name__}: fact {fact}={got!r} is invalid; expected {expected}")

    def declared(fact: str) -> bool:
        return hasattr(cls, fact)

    need("name", declared("name") and isinstance(cls.name, str) and bool(cls.name), "a non-empty string")
    need("family", declared("family") and cls.family in FAMILIES, f"one of {FAMILIES}")
    need("runtime", declared("runtime") and cls.runtime in RUNTIMES, f"one of {RUNTIMES}")
    for text in ("method", "description"):
        need(text, declared(text) and isinstance(getattr(cls, text), str) and bool(getattr(cls, text)), "words")
    need("precision", declared("precision") and cls.precision in PRECISIONS, f"one of {PRECISIONS}")
    need("math_class", declared("math_class") and cls.math_class in MATH_CLASSES, f"one of {MATH_CLASSES}")
    raw_devices = getattr(cls, "devices", None)
    need(
        "devices",
        isinstance(raw_devices, tuple) and bool(raw_devices) and set(raw_devices) <= set(DEVICES),
        f"a non-empty tuple of {DEVICES}",
    )
    devices: tuple[str, ...] = tuple(raw_devices or ())
    cost = getattr(cls, "cost", None)
    need(
        "cost",
        isinstance(cost, Mapping)
        and set(cost) == set(devices)
        and all(isinstance(v, (int, float)) and v > 0 for v in cost.values()),
        f"a positive factor for each of {devices} and nothing else",
    )
    need(
        "prepare_steps",
        isinstance(cls.prepare_steps, tuple) and set(cls.prepare_steps) <= set(PREPARE_STEPS),
        f"a tuple of {PREPARE_STEPS}",
    )
    need("order", declared("order") and isinstance(cls.order, int) and not isinstance(cls.order, bool), "an int")
    need("baseline", declared("baseline") and isinstance(cls.baseline, str) and bool(cls.baseline), "a path name")
    if cls.baseline == cls.name:
        need("precision", cls.precision == "fp32", "fp32 for a path that is its own (FP32) baseline")
    need("reference", isinstance(cls.reference, bool) and (not cls.reference or cls.baseline == cls.name), "a bool")
    need(
        "extra_providers",
        isinstance(cls.extra_providers, Mapping) and set(cls.extra_providers) <= set(DEVICES),
        f"a dict keyed by {DEVICES}",
    )
    missing = set(DEVICES) - set(devices)
    need(
        "device_reasons",
        isinstance(cls.device_reasons, Mapping)
        and set(cls.device_reasons) == missing
        and all(isinstance(v, str) and v for v in cls.device_reasons.values()),
        f"a reason for each device it does not run on ({', '.join(sorted(missing)) or 'none'})",
    )
    need(
        "stack_limits",
        isinstance(cls.stack_limits, tuple) and all(isinstance(x, StackLimit) for x in cls.stack_limits),
        "a tuple of StackLimit",
    )
    default = cls.default_devices
    need("default_devices", default is None or set(default) <= set(devices), f"None or a subset of {devices}")
    options = getattr(cls, "options_class", None)
    need(
        "options_class",
        isinstance(options, type) and issubclass(options, PathOptions) and options.family == cls.family,
        f"a PathOptions class of family {cls.family!r}",
    )


# --------------------------------------------------------------------------- path options
#
# ``--option KEY=VALUE`` pairs arrive as one raw dict for the whole run. Each family reads its
# keys into one frozen dataclass (typed fields, defaults, checks in ``__post_init__``); the
# commands check the raw dict against the selected paths' families before any cell starts
# (`check_path_options`), so a typo or a bad value is one line and exit 2, never N failed or
# skipped cells. Keys under an executor's namespace (``ray.``) belong to the executor.

EXECUTOR_OPTION_PREFIXES: tuple[str, ...] = ("ray.",)


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


def parse_int(value: Any) -> int:
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError(f"not a whole number: {value!r}")
    return int(str(value).strip()) if not isinstance(value, (int, float)) else int(value)


def parse_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"not a number: {value!r}")
    return float(str(value).strip()) if not isinstance(value, (int, float)) else float(value)


def parse_names(value: Any) -> tuple[str, ...]:
    """A list of names: a JSON list, or a comma/space separated string (``[]``/``none`` for none)."""
    if isinstance(value, (list, tuple)):
        if not all(isinstance(x, str) for x in value):
            raise ValueError(f"expected a list of names, got {value!r}")
        return tuple(value)
    if not isinstance(value, str):
        raise ValueError(f"expected a list of names, got {value!r}")
    if value.strip().lower() in ("none", "[]"):
        return ()
    return tuple(x for x in value.replace(",", " ").split() if x)


def parse_text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected text, got {value!r}")
    return value.strip()


_UNSET = object()


def opt(default: Any, parse: Callable[[Any], Any], doc: str = "", blank: Any = _UNSET) -> Any:
    """A field of a `PathOptions` dataclass: its default, how a raw value is parsed, what it does,
    and what an empty value (``--option key=``) means (by default: not given)."""
    return field(default=default, metadata={"parse": parse, "doc": doc, "blank": blank})


@dataclass(frozen=True)
class PathOptions:
    """Base of the per-family options. Subclasses are frozen dataclasses whose fields use `opt`;
    the raw key of a field is ``prefix + name``; ``__post_init__`` raises ValueError on a bad value."""

    family: ClassVar[str] = ""
    prefix: ClassVar[str] = ""

    @classmethod
    def option_keys(cls) -> tuple[str, ...]:
        return tuple(cls.prefix + f.name for f in fields(cls))

    @classmethod
    def from_raw(cls, raw: dict[str, Any] | None) -> PathOptions:
        """The family's options from the run's raw dict (other families' keys are not read).
        A value that does not parse or check raises `BadInput` naming the key."""
        values: dict[str, Any] = {}
        raw = raw or {}
        for f in fields(cls):
            key = cls.prefix + f.name
            if key not in raw or raw[key] is None:
                continue
            if raw[key] == "":
                if f.metadata["blank"] is not _UNSET:
                    values[f.name] = f.metadata["blank"]
                continue
            try:
                values[f.name] = f.metadata["parse"](raw[key])
            except (TypeError, ValueError) as exc:
                raise BadInput(f"path option {key}={raw[key]!r}: {exc}") from None
        try:
            return cls(**values)
        except (TypeError, ValueError) as exc:
            raise BadInput(f"path option {exc}") from None


def choice(name: str, value: Any, valid: tuple[Any, ...], prefix: str = "") -> None:
    """For ``__post_init__``: ValueError in the form ``from_raw`` reports, when ``value`` is not valid."""
    if value is not None and value not in valid:
        raise ValueError(f"{prefix}{name}={value!r}: expected one of {', '.join(map(str, valid))}")


def check_path_options(paths: Iterable[str], raw: dict[str, Any] | None) -> dict[str, PathOptions]:
    """Check the run's raw path options against the selected paths, before any cell starts.

    A key no selected path's family takes (and outside the executors' namespaces), or a value a
    family refuses, raises `BadInput` with one line. Returns each selected family's typed options.
    """
    _load_families()
    raw = dict(raw or {})
    classes: dict[str, type[PathOptions]] = {}
    for name in paths:
        cls = _PATHS.get(name)
        if cls is None:
            raise BadInput(f"unknown path {name!r}; valid paths: {', '.join(path_names())}")
        classes.setdefault(cls.family, cls.options_class)
    valid = [k for c in classes.values() for k in c.option_keys()]
    unknown = [k for k in raw if k not in valid and not k.startswith(EXECUTOR_OPTION_PREFIXES)]
    if unknown:
        import difflib

        near = [m for k in unknown for m in difflib.get_close_matches(k, valid, n=1)]
        hint = f"did you mean {', '.join(map(repr, near))}? " if near else ""
        takes = f"valid keys: {', '.join(valid)}" if valid else "they take no options"
        raise BadInput(
            f"unknown path option {', '.join(map(repr, unknown))} for the selected paths "
            f"({', '.join(classes)} family); {hint}{takes}"
        )
    return {family: cls.from_raw(raw) for family, cls in classes.items()}


# --------------------------------------------------------------------------- registry

_PATHS: dict[str, type[PrecisionPath]] = {}


def register_path(cls: type[PrecisionPath]) -> type[PrecisionPath]:
    _check_facts(cls)
    if cls.name in _PATHS:
        raise ValueError(f"path {cls.name} registered twice")
    clash = [p.name for p in _PATHS.values() if p.order == cls.order]
    if clash:
        raise ValueError(f"path {cls.name}: display order {cls.order} is already {clash[0]}'s")
    _PATHS[cls.name] = cls
    return cls


# The path families, each a module that registers its paths on import (one line per family).
FAMILY_MODULES: tuple[str, ...] = ("kit.paths.torch_paths", "kit.paths.bnb", "kit.paths.onnxruntime")


def _load_families() -> None:
    # Importing the family modules registers their paths; a family whose optional dependency is
    # missing still registers (its ``available`` says why it cannot run).
    import importlib

    # They import their optional packages lazily, so an import error here is a bug: let it raise.
    for module in FAMILY_MODULES:
        importlib.import_module(module)


def planned_by_default(name: str, device: str) -> bool:
    cls = _PATHS[name]
    return device in (cls.default_devices if cls.default_devices is not None else cls.devices)


def path_names() -> list[str]:
    """Every registered path, in display order (not import order, which depends on who imported first)."""
    _load_families()
    return sorted(_PATHS, key=lambda n: _PATHS[n].order)


def get_path(name: str) -> PrecisionPath:
    _load_families()
    try:
        return _PATHS[name]()
    except KeyError:
        raise KeyError(f"unknown path {name!r}; valid paths: {', '.join(path_names())}") from None


def path_facts() -> dict[str, PathFacts]:
    """Every registered path's facts, in display order. Checks what one class cannot check alone:
    each baseline is a registered FP32 path of the same runtime that is its own baseline, and
    exactly one path is the reference."""
    _load_families()
    facts = {cls.name: cls.facts() for cls in sorted(_PATHS.values(), key=lambda c: c.order)}
    for f in facts.values():
        base = facts.get(f.baseline)
        if base is None or not base.is_baseline or base.runtime != f.runtime:
            raise ValueError(
                f"path {f.name}: baseline {f.baseline!r} is not an FP32 baseline path of runtime {f.runtime}"
            )
    references = [f.name for f in facts.values() if f.reference]
    if len(references) != 1:
        raise ValueError(f"exactly one path must be the reference; found {references or 'none'}")
    return facts


def caches_artifacts(name: str) -> bool:
    """Whether the path makes something the run's cache keeps (``CACHED_PREPARE_STEPS``)."""
    facts = path_facts().get(name)
    return facts is not None and bool(set(facts.prepare_steps) & CACHED_PREPARE_STEPS)


def facts_of(name: str) -> PathFacts:
    """One path's facts; KeyError naming the valid paths for an unknown one."""
    facts = path_facts()
    try:
        return facts[name]
    except KeyError:
        raise KeyError(f"unknown path {name!r}; valid paths: {', '.join(facts)}") from None


def paths_where(**conditions: Any) -> list[str]:
    """Registered paths, in display order, whose facts equal every condition
    (``paths_where(precision="int8")``, ``paths_where(is_baseline=True, runtime="torch")``)."""
    return [n for n, f in path_facts().items() if all(getattr(f, k) == v for k, v in conditions.items())]


def reference_path() -> str:
    """The kit's reference path (torch-fp32): fidelity and the report's speedups are against it."""
    return paths_where(reference=True)[0]
