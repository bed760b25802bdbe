"""Where a cell runs, kept apart from what it measures (optimum-benchmark's launcher cut).

- ``InlineExecutor``: in this process (tests, debugging, ``qkit bench --inline``).
- ``ProcessExecutor``: each task in a fresh child process with a timeout, so a crash, hang or
  OOM kill is one failed cell and the run goes on. Children come from a ``forkserver`` that has
  imported torch, transformers' model modules, ONNX Runtime and the kit once (`preload_modules`:
  no per-cell import cost, and no OpenMP pool inherited through fork because the server never
  runs an op). The parent *blocks* on the child's pipe
  (``Connection.poll(timeout)`` is a select, not a spin), so it does not compete for the cores
  while the child measures: optimum-benchmark 0.6.0's process launcher busy-waits in its parent
  and made latencies 1.6-3.4x slower on a 2-core machine.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol, runtime_checkable

from kit.run.child import TaskCrashed, run_in_child

__all__ = ["EXECUTORS", "Executor", "InlineExecutor", "ProcessExecutor", "TaskCrashed", "cpu_count", "make_executor"]

_PRELOAD = [
    "kit.run.forkserver_init",
    "torch",
    "transformers",
    "numpy",
    "onnxruntime",
    "kit.run.cell",
    "kit.run.repeats",
]
_PRELOAD += [f"kit.paths.{m}" for m in ("torch_paths", "onnxruntime", "bnb", "bnb_inspect", "bnb_support")]
_PRELOAD += [f"kit.measure.{m}" for m in ("latency", "memory", "fidelity", "compute", "environment")]


def preload_modules() -> list[str]:
    """What the forkserver imports once, so that no cell pays for it (about 1.5 s a cell for the
    transformers model modules and 2.5 s for bitsandbytes on the reference 2-core Xeon).

    The model modules are those of the study's architectures (transformers imports them lazily).
    bitsandbytes only with a CPU-only torch: on a CUDA build its import initialises CUDA, which a
    forked child cannot inherit. None of these imports starts a thread pool."""
    mods = list(_PRELOAD)
    try:
        import torch
        from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

        from kit.models.registry import MODELS
    except ImportError:  # a missing package: its cells say so themselves
        return mods
    model_type = {cls: kind for kind, cls in CONFIG_MAPPING_NAMES.items()}
    kinds = sorted({model_type[s.config_class] for s in MODELS.values() if s.config_class in model_type})
    mods += [f"transformers.models.{k}.modeling_{k}" for k in kinds]
    if torch.version.cuda is None:
        mods.append("bitsandbytes")
    return mods


EXECUTORS: tuple[str, ...] = ("process", "inline", "ray")


@runtime_checkable
class Executor(Protocol):
    """Where a task runs. ``call`` runs ``fn(*args)`` and returns its result, or raises
    `TaskCrashed` (process executors) / the exception itself (inline) when it did not finish."""

    name: str

    def call(self, fn: Callable[..., Any], *args: Any, timeout_s: float | None = None) -> Any: ...

    def close(self) -> None: ...


@runtime_checkable
class BatchExecutor(Executor, Protocol):
    """An executor that takes the whole list of cells at once (Ray): it checks availability where
    each cell runs, computes each model's reference first, and yields (cell, document) as cells finish."""

    def run_cells(
        self, cells: Iterable[Any], opts: Any, measure_fn: Callable[..., Any], timeout_s: float | None
    ) -> Iterator[tuple[Any, dict[str, Any]]]: ...


class InlineExecutor:
    name = "inline"

    def call(self, fn: Callable[..., Any], *args: Any, timeout_s: float | None = None) -> Any:
        return fn(*args)

    def close(self) -> None:
        return None


class ProcessExecutor:
    name = "process"

    _ctx: Any

    def __init__(self, start_method: str = "forkserver") -> None:
        if start_method == "forkserver" and "forkserver" in mp.get_all_start_methods():
            self._ctx = mp.get_context("forkserver")
            self._ctx.set_forkserver_preload(preload_modules())
        else:
            self._ctx = mp.get_context("spawn")
        self.start_method = self._ctx.get_start_method()

    def call(self, fn: Callable[..., Any], *args: Any, timeout_s: float | None = None) -> Any:
        outcome, payload = run_in_child(self._ctx, fn, args, timeout_s)
        if outcome != "ok":
            raise TaskCrashed(payload)
        return payload

    def close(self) -> None:
        return None


def make_executor(name: str, *, address: str | None = None) -> Executor:
    """The one factory the CLI, compare-int8 and the benchmarks use. ``address``: a Ray cluster."""
    if address and name != "ray":
        raise ValueError("an address is for the ray executor")
    if name == "inline":
        return InlineExecutor()
    if name == "process":
        return ProcessExecutor()
    if name == "ray":
        from kit.run.ray_executor import RayExecutor  # optional extra: imported only when asked for

        return RayExecutor(address=address)
    raise KeyError(f"unknown executor {name!r}; valid executors: {', '.join(EXECUTORS)}")


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1
