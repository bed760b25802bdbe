"""Ray executor: each cell a Ray task with its resource request; results come back to the driver,
which writes them through the result store (atomic, resumable) as with every other executor.

``qkit reproduce --executor ray``; Ray is an optional extra (``pip install 'qkit[ray]'``).

What a task asks for
--------------------
- CUDA cell: ``num_gpus=1, num_cpus=1``. A cell targets a GPU model with the path option
  ``ray.gpu=H100`` (or ``RayExecutor(gpu_model=...)``): Ray's own accelerator label
  (``accelerator_type:H100``, detected on every node, no cluster setup needed). Hand-made
  custom resources go in ``ray.resources={"gpu:H100": 1}``.
- CPU cell: ``num_cpus = RayExecutor(num_cpus=...)`` or the path option ``ray.num_cpus``; by
  default *all* CPUs of the smallest node, so a CPU measurement has its node to itself as in a
  serial run (a CUDA cell holds one CPU, so a CPU cell never shares a node with a running one
  either). The cell's torch uses that many threads; the document records it (``math``).
- The FP32 reference of a model (computed once, cached under ``<out>/_cache``): ``num_cpus=1``
  and one thread, so it never waits for a whole node and never disturbs a running measurement.
- A request no node of the cluster can meet (a CUDA cell on a cluster without GPUs, an unknown
  GPU model) would wait forever in Ray: it becomes a skipped cell with the reason instead.

Isolation, crashes, retries, timeouts
-------------------------------------
A Ray worker is reused across tasks, but a cell's CPU peak memory is the kernel's high-water mark
of its *own* process (``kit.measure.memory``). So, by default (``isolate=True``), the task runs
the cell in a child process of the worker, forked from a per-worker forkserver that has torch
imported (as ``ProcessExecutor`` does on one machine); the child gets the GPUs Ray assigned to
*this* task (``CUDA_VISIBLE_DEVICES`` is passed on, since the forkserver may predate the task).

- The cell's process dies (signal, OOM kill) or the Ray worker or its node is lost: Ray runs the
  task again, up to ``max_retries`` more times; a killed cell is redone and nothing is lost. Only
  after the last attempt is the cell a failed document, with the reason and the attempt count.
- The cell raises: a failed cell at once (the same code would raise again).
- The cell runs past its timeout (counted in the worker from the cell's own start, not from
  submission, since a queued task is not late): the child is killed and the cell fails; not
  retried (a hang usually repeats, and each attempt costs the whole timeout).

``isolate=False`` runs the function in the Ray worker itself: for tests and the overhead
benchmark only (no per-cell memory peak, no timeout).

Parallelism: ``reproduce()`` calls ``executor.call`` one cell at a time; ``run_cells`` submits a
whole matrix at once (each cell after its model's reference, through Ray's task dependencies) and
yields ``(cell, document)`` as cells finish, for the runner to write.

On a multi-node cluster every node needs the same qkit installed; ``<out>`` should be on a shared
filesystem, else each node recomputes a model's reference in its own ``<out>/_cache`` (correct,
slower). Documents made on the driver (driver-side skips, a cell whose worker was lost on every
attempt) carry the driver's environment.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from kit.errors import first_line
from kit.results.store import Cell
from kit.run.child import TaskCrashed, run_in_child

RAY_MISSING = "the ray executor needs the optional extra: pip install 'qkit[ray]'"
DEFAULT_MAX_RETRIES = 2
# On top of the cell's timeout, for what the driver waits before giving up on Ray itself in
# call(): worker start, the forkserver importing torch, queueing behind another driver's work.
CALL_BACKSTOP_SLACK_S = 600.0
NODES_TTL_S = 5.0
_PRELOAD = ["torch", "transformers", "numpy", "kit.run.cell"]


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ImportError(RAY_MISSING) from None
    return ray


def ray_available() -> bool:
    try:
        import_ray()
    except ImportError:
        return False
    return True


class CellProcessLost(Exception):
    """The cell's process died without a result: Ray retries the task (``retry_exceptions``)."""


# ------------------------------------------------------------------------- in the Ray worker

_FORK_CONTEXT: Any = None


def _fork_context() -> Any:
    """A forkserver per Ray worker, torch preloaded once (as ``ProcessExecutor`` has)."""
    global _FORK_CONTEXT
    if _FORK_CONTEXT is None:
        ctx: Any
        if "forkserver" in mp.get_all_start_methods():
            ctx = mp.get_context("forkserver")
            ctx.set_forkserver_preload(list(_PRELOAD))
        else:  # pragma: no cover - platforms without fork
            ctx = mp.get_context("spawn")
        _FORK_CONTEXT = ctx
    return _FORK_CONTEXT


@contextlib.contextmanager
def _without_main_file() -> Iterator[None]:
    """While a child starts, hide ``__main__.__file__``: a Ray worker's main module is Ray's
    ``default_worker.py``, and multiprocessing would make every child re-run that script (importing
    Ray again, ~0.4 s a cell) to rebuild ``__main__``, which the cell never uses."""
    main = sys.modules.get("__main__")
    saved = main.__dict__.pop("__file__", None) if main is not None else None
    try:
        yield
    finally:
        if main is not None and saved is not None:
            main.__file__ = saved


def _prepared_call(env: dict[str, str | None], threads: int | None, fn: Callable[..., Any], *args: Any) -> Any:
    """Runs in the cell's process: this task's GPUs and thread count, then the function."""
    for key, value in env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    if threads:
        os.environ["OMP_NUM_THREADS"] = str(threads)
        import torch

        torch.set_num_threads(threads)
    return fn(*args)


def _task_env() -> dict[str, str | None]:
    return {"CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES")}


def _in_child(
    fn: Callable[..., Any], args: tuple[Any, ...], timeout_s: float | None, threads: int | None
) -> tuple[str, Any]:
    def start(proc: Any) -> None:
        with _without_main_file():
            proc.start()

    outcome, payload = run_in_child(
        _fork_context(), _prepared_call, (_task_env(), threads, fn, *args), timeout_s, start=start
    )
    if outcome == "lost":
        raise CellProcessLost(payload)  # Ray retries the task
    if outcome == "timeout":
        return "error", payload
    return outcome, payload


def _in_worker(fn: Callable[..., Any], args: tuple[Any, ...], threads: int | None) -> tuple[str, Any]:
    try:
        return "ok", _prepared_call({}, threads, fn, *args)
    except Exception as exc:
        from kit.run.cell import one_line

        return "error", f"task raised {one_line(exc)}"


def _task(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    timeout_s: float | None,
    threads: int | None,
    isolate: bool,
    after: Any = None,
    documents: bool = False,
) -> tuple[str, Any]:
    """The Ray task. ``after`` is the model's reference outcome (Ray resolves it before the task
    starts); with ``documents``, failures of a (cell, opts) call come back as failed documents
    made here, on the worker, so they carry the worker's environment."""
    if after is not None and after[0] != "ok":
        outcome: tuple[str, Any] = ("error", f"FP32 reference for {args[0].model} failed: {after[1]}")
    elif isolate:
        outcome = _in_child(fn, args, timeout_s, threads)
    else:
        outcome = _in_worker(fn, args, threads)
    if documents and outcome[0] != "ok" and len(args) >= 2 and isinstance(args[0], Cell):
        from kit.run.cell import failed_document

        return "ok", failed_document(args[0], args[1], outcome[1])
    return outcome


def _reference_task(model: str, opts: Any, timeout_s: float | None, isolate: bool) -> tuple[str, Any]:
    from kit.run.cell import reference_output

    return _task(reference_output, (model, opts), timeout_s, 1, isolate)


def _artifacts_task(
    cell: Cell, opts: Any, timeout_s: float | None, threads: int | None, isolate: bool, after: Any = None
) -> tuple[str, Any]:
    """The cell's cached artifacts (`kit.run.cell.make_artifacts`) in a process of their own,
    before the measured one. Passes a failed reference on; its own failure is not the cell's end
    (the measured process meets it again and reports it)."""
    from kit.run.cell import make_artifacts

    if after is not None and after[0] != "ok":
        return after
    outcome = (
        _in_child(make_artifacts, (cell, opts), timeout_s, threads)
        if isolate
        else _in_worker(make_artifacts, (cell, opts), threads)
    )
    return "ok", outcome[1] if outcome[0] == "ok" else None


# ---------------------------------------------------------------------------------- the driver


class RayExecutor:
    """Run cells as Ray tasks (see the module docstring).

    ``address``: a running cluster (``ray://...``, ``host:port`` or ``auto``); ``None`` connects to
    ``RAY_ADDRESS`` if set, else starts a local Ray. A Ray already initialised in this process
    (e.g. by a test) is used as it is. ``num_cpus``: CPUs each CPU cell asks for (default: all
    CPUs of the smallest node). ``init_kwargs`` go to ``ray.init`` when this executor starts Ray.
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        num_cpus: int | None = None,
        *,
        gpu_model: str | None = None,
        max_retries: int = DEFAULT_MAX_RETRIES,
        isolate: bool = True,
        init_kwargs: dict[str, Any] | None = None,
    ) -> None:
        ray = import_ray()
        if num_cpus is not None and num_cpus < 1:
            raise ValueError("num_cpus must be >= 1")
        self._ray = ray
        self._started = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"log_to_driver": False}
            if not (address or os.environ.get("RAY_ADDRESS")):
                kwargs["include_dashboard"] = False  # a local Ray: no dashboard process on a shared machine
            ray.init(address=address, **{**kwargs, **(init_kwargs or {})})
            self._started = True
        self._nodes_cache: tuple[float, list[dict[str, float]]] = (float("-inf"), [])
        self.num_cpus = num_cpus
        self.gpu_model = gpu_model
        self.max_retries = max_retries
        self.isolate = isolate
        self._retry = {"max_retries": max_retries, "retry_exceptions": [CellProcessLost]}
        self._task_fn = ray.remote(_task)
        self._reference_fn = ray.remote(_reference_task)
        self._artifacts_fn = ray.remote(_artifacts_task)

    # --------------------------------------------------------------------- resource requests

    def _nodes(self) -> list[dict[str, float]]:
        # Asked of the GCS at most every few seconds: a matrix asks once per cell.
        stamp, nodes = self._nodes_cache
        if time.monotonic() - stamp > NODES_TTL_S:
            nodes = [n.get("Resources", {}) for n in self._ray.nodes() if n.get("Alive")]
            self._nodes_cache = (time.monotonic(), nodes)
        return nodes

    def cpus_per_cell(self, opts: Any = None) -> int:
        asked = _path_option(opts, "ray.num_cpus")
        if asked is not None:
            return max(1, int(asked))
        if self.num_cpus is not None:
            return self.num_cpus
        cpus = [int(r.get("CPU", 0)) for r in self._nodes() if r.get("CPU", 0) >= 1]
        return min(cpus) if cpus else 1

    def task_options(self, cell: Cell, opts: Any = None) -> dict[str, Any]:
        """The Ray options of ``cell``'s task (its resource request)."""
        if cell.device == "cuda":
            req: dict[str, Any] = {"num_gpus": 1, "num_cpus": 1}
            gpu = _path_option(opts, "ray.gpu") or self.gpu_model
            if gpu:
                req["accelerator_type"] = str(gpu)
        else:
            req = {"num_gpus": 0, "num_cpus": self.cpus_per_cell(opts)}
        custom = _path_option(opts, "ray.resources")
        if custom:
            if isinstance(custom, str):
                custom = json.loads(custom)
            req["resources"] = {str(k): float(v) for k, v in dict(custom).items()}
        return req

    def unschedulable(self, request: dict[str, Any]) -> str | None:
        """Why no alive node can ever run ``request``, or None when one can."""
        need = {
            "CPU": float(request.get("num_cpus", 0)),
            "GPU": float(request.get("num_gpus", 0)),
            **request.get("resources", {}),
        }
        if request.get("accelerator_type"):
            need[f"accelerator_type:{request['accelerator_type']}"] = 0.001
        nodes = self._nodes()
        for node in nodes:
            if all(node.get(k, 0.0) >= v for k, v in need.items() if v > 0):
                return None
        wanted = ", ".join(f"{k}={v:g}" for k, v in need.items() if v > 0)
        offered = (
            "; ".join(
                ", ".join(
                    f"{k}={v:g}"
                    for k, v in sorted(n.items())
                    if k in ("CPU", "GPU") or (":" in k and not k.startswith("node:"))
                )
                for n in nodes
            )
            or "no alive nodes"
        )
        if need.get("GPU"):
            what = "a GPU" + (f" of type {request['accelerator_type']}" if request.get("accelerator_type") else "")
            return f"no node of the Ray cluster has {what} (asked {wanted}; nodes offer: {offered})"
        return f"no node of the Ray cluster can meet {wanted} (nodes offer: {offered})"

    def _threads(self, cell: Cell | None, request: dict[str, Any]) -> int | None:
        # CPU cells use what they asked for; CUDA cells keep torch's default, as in a serial run.
        return int(request["num_cpus"]) if cell is not None and cell.device == "cpu" else None

    def _submit(self, request: dict[str, Any]) -> Any:
        return self._task_fn.options(**request, **self._retry)

    # --------------------------------------------------------------------- one call at a time

    def call(self, fn: Callable[..., Any], *args: Any, timeout_s: float | None = None) -> Any:
        """The executor contract: run ``fn(*args)`` as a Ray task; ``TaskCrashed`` on a crash
        (after Ray's retries), a timeout or an error in the task."""
        cell = args[0] if args and isinstance(args[0], Cell) else None
        opts = args[1] if len(args) > 1 else None
        if cell is not None and opts is not None:
            request = self.task_options(cell, opts)
            why = self.unschedulable(request)
            if why:  # as in run_cells: a request no node can meet is a skipped cell, not a wait
                from kit.run.cell import skipped_document

                return skipped_document(cell, opts, why)
            ref = self._submit(request).remote(fn, args, timeout_s, self._threads(cell, request), self.isolate)
        else:  # the model's FP32 reference (or any other helper): one CPU, one thread
            ref = self._submit({"num_cpus": 1, "num_gpus": 0}).remote(fn, args, timeout_s, 1, self.isolate)
        backstop = None if timeout_s is None else timeout_s * (self.max_retries + 1) + CALL_BACKSTOP_SLACK_S
        status, payload = self._get(ref, backstop)
        if status != "ok":
            raise TaskCrashed(payload)
        return payload

    def _get(self, ref: Any, timeout_s: float | None = None) -> tuple[str, Any]:
        ray = self._ray
        try:
            return ray.get(ref, timeout=timeout_s)
        except ray.exceptions.GetTimeoutError:
            ray.cancel(ref, force=True)
            raise TaskCrashed(f"no answer from Ray within {timeout_s:.0f} s") from None
        except ray.exceptions.RayError as exc:
            raise TaskCrashed(self.describe_ray_error(exc)) from None

    def describe_ray_error(self, exc: BaseException) -> str:
        ray = self._ray
        attempts = f"on each of {self.max_retries + 1} attempt(s)"
        if isinstance(exc, CellProcessLost):
            cause = getattr(exc, "cause", None)
            return f"cell process lost {attempts}: {cause or first_line(exc)}"
        if isinstance(exc, ray.exceptions.OutOfMemoryError):
            return f"out of memory: Ray's memory monitor killed the task ({first_line(exc)})"
        if isinstance(exc, ray.exceptions.TaskCancelledError):
            return "cancelled"
        if isinstance(
            exc, (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError, ray.exceptions.LocalRayletDiedError)
        ):
            return f"Ray worker lost {attempts} ({type(exc).__name__})"
        return f"Ray error: {type(exc).__name__}: {first_line(exc)}"

    # ------------------------------------------------------------------------- a whole matrix

    def run_cells(
        self,
        cells: Iterable[Cell],
        opts: Any,
        measure_fn: Callable[..., dict[str, Any]] | None = None,
        timeout_s: float | None = None,
        *,
        with_reference: bool = True,
    ) -> Iterator[tuple[Cell, dict[str, Any]]]:
        """Submit every cell at once; yield ``(cell, document)`` as each finishes (any order).

        Each model's FP32 reference runs first, once, and its cells start when it is done (Ray
        task dependencies); every cell gets a document: measured, skipped or failed with its
        reason. A cell's further fresh processes (`kit.run.repeats.processes_for`) are submitted
        when its first process's document is back, and the cell is yielded once all are merged.
        Stopping the iteration (Ctrl-C) cancels what is still queued or running.
        """
        from kit.run.cell import cell_processes, failed_document, measure_cell, skipped_document
        from kit.run.profiles import get_profile
        from kit.run.repeats import finish, processes_for

        ray = self._ray
        measure = measure_fn or measure_cell
        profile = get_profile(opts.profile)
        pending: dict[Any, Cell] = {}
        requests: dict[Cell, dict[str, Any]] = {}
        processes: dict[Cell, list[dict[str, Any]]] = {}  # the documents back so far, first first
        planned: dict[Cell, tuple[int, str]] = {}
        agains: dict[Cell, Callable[..., dict[str, Any]]] = {}  # what processes 2..N of a cell run
        reference: dict[str, Any] = {}
        ready_docs: list[tuple[Cell, dict[str, Any]]] = []
        try:
            for cell in cells:
                unsupported = _unsupported_device(cell)
                request = self.task_options(cell, opts)
                why = unsupported or self.unschedulable(request)
                if why:
                    ready_docs.append((cell, skipped_document(cell, opts, why)))
                    continue
                after = None
                if with_reference:
                    if cell.model not in reference:
                        submit = self._reference_fn.options(num_cpus=1, num_gpus=0, **self._retry)
                        reference[cell.model] = submit.remote(cell.model, opts, timeout_s, self.isolate)
                    after = reference[cell.model]
                agains[cell], artifacts_first = cell_processes(cell, measure)
                if artifacts_first:
                    submit = self._artifacts_fn.options(**request, **self._retry)
                    after = submit.remote(cell, opts, timeout_s, self._threads(cell, request), self.isolate, after)
                ref = self._submit(request).remote(
                    measure, (cell, opts), timeout_s, self._threads(cell, request), self.isolate, after, True
                )
                pending[ref] = cell
                requests[cell] = request
            yield from ready_docs
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    cell = pending.pop(ref)
                    try:
                        status, doc = ray.get(ref)
                        if status != "ok":  # not a (cell, opts) call: cannot happen for cells
                            doc = failed_document(cell, opts, str(doc))
                    except ray.exceptions.RayError as exc:
                        doc = failed_document(cell, opts, self._lost_reason(cell, exc, reference))
                    docs = processes.setdefault(cell, [])
                    docs.append(doc)
                    if cell not in planned:
                        planned[cell] = processes_for(doc, getattr(opts, "repeats", None), profile)
                        request = requests[cell]
                        for _ in range(planned[cell][0] - 1):
                            more = self._submit(request).remote(
                                agains[cell],
                                (cell, opts),
                                timeout_s,
                                self._threads(cell, request),
                                self.isolate,
                                None,
                                True,
                            )
                            pending[more] = cell
                    if len(docs) == planned[cell][0]:
                        n, policy = planned[cell]
                        yield cell, finish(docs, policy, getattr(opts, "seed", 0), planned=n)
        finally:
            for ref in [*pending, *reference.values()]:
                with contextlib.suppress(Exception):  # already finished or gone: nothing to stop
                    ray.cancel(ref, force=True)

    def _lost_reason(self, cell: Cell, exc: BaseException, reference: dict[str, Any]) -> str:
        ray = self._ray
        ref = reference.get(cell.model)
        if ref is not None:
            try:
                ray.get(ref, timeout=0)
            except ray.exceptions.GetTimeoutError:
                pass
            except ray.exceptions.RayError as ref_exc:
                return f"FP32 reference for {cell.model} failed: {self.describe_ray_error(ref_exc)}"
        return self.describe_ray_error(exc) + "; environment recorded is the driver's"

    def close(self) -> None:
        if self._started and self._ray.is_initialized():
            self._ray.shutdown()
        self._started = False


def _path_option(opts: Any, key: str) -> Any:
    options = getattr(opts, "path_options", None) or {}
    return options.get(key)


def _unsupported_device(cell: Cell) -> str | None:
    """The path's static device list (not this machine's availability: the driver is not where
    the cell runs)."""
    try:
        from kit.paths.base import get_path

        ok, why = get_path(cell.path).supports_device(cell.device)
    except KeyError as exc:
        return str(exc.args[0]) if exc.args else str(exc)
    return None if ok else why


# -------------------------------------------------------------------------------- benchmark
