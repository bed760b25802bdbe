"""Run a matrix of cells: plan, resume, execute each cell in its executor, write documents.

One bad cell never stops the run: a crash, timeout or OOM becomes a failed document with its
reason. Cells that already have a valid ``ok`` or ``skipped`` document are not redone unless
``force``; failed cells are retried (a failure may have been transient); corrupt documents are
reported by name and redone.

A cell measured in several fresh processes (`kit.run.repeats`) gets them in rounds: every cell's
first process in matrix order, then the second process of each cell that has more planned, and
so on, so that a cell's processes are minutes apart and sample different episodes of the host's
noise rather than one. Its document is rewritten after each round with the processes so far; a
cell whose document has processes still to run is resumed, not redone.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kit.results.store import Cell, load_results, write_result
from kit.run.cell import (
    RunOptions,
    cell_processes,
    failed_document,
    make_artifacts,
    measure_cell,
    reference_output,
    skipped_document,
)
from kit.run.child import TaskCrashed

ProgressFn = Callable[[Cell, dict[str, Any]], None]
# (cell, which of its processes this was (2 up), the cell's document so far)
RoundFn = Callable[[Cell, int, dict[str, Any]], None]


@dataclass
class RunSummary:
    planned: int = 0
    resumed: int = 0
    ok: int = 0
    skipped: int = 0
    failed: int = 0
    corrupt: list[tuple[str, str]] = field(default_factory=list)
    interrupted: bool = False
    wall_s: float = 0.0
    per_cell_s: dict[str, float] = field(default_factory=dict)
    later_processes: int = 0  # processes run in later rounds (a cell's 2nd, 3rd, ...)
    # Where the wall time went, by kind of process (PHASES), in seconds of this runner's clock.
    phase_s: dict[str, float] = field(default_factory=dict)

    def line(self) -> str:
        return (
            f"{self.planned} cells: {self.ok} ok, {self.skipped} skipped, {self.failed} failed, "
            f"{self.resumed} already done (resumed)"
            + (f", {self.later_processes} later processes" if self.later_processes else "")
            + f"; {self.wall_s:.0f} s"
            + (f" ({self.phases_text()})" if self.phase_s else "")
            + ("; INTERRUPTED" if self.interrupted else "")
        )

    def phases_text(self) -> str:
        """``"references 12 s, artifacts 480 s, ..."``: the phases that took any time, in PHASES order."""
        return ", ".join(f"{name} {self.phase_s[name]:.0f} s" for name in PHASES if self.phase_s.get(name))

    @contextlib.contextmanager
    def timing(self, phase: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.phase_s[phase] = self.phase_s.get(phase, 0.0) + time.perf_counter() - t0


# The kinds of process a run spends its time in: each model's FP32 reference, the cached artifacts
# (exports, quantized and calibrated models, the FP32 source of bitsandbytes), each cell's first
# (measuring) process and its later timing-only ones.
PHASES: tuple[str, ...] = ("references", "artifacts", "first processes", "later processes")


def plan_matrix(
    models: Sequence[str],
    paths: Sequence[str],
    devices: Sequence[str],
    batch_sizes: Sequence[int],
    *,
    defaults_only: bool = False,
) -> list[Cell]:
    """The cells in run order: model by model, so each model's reference is built once.

    ``defaults_only`` drops (path, device) pairs a path is not planned on by default (e.g.
    torch-fp16 on cpu); the CLI sets it when the user named no paths.
    """
    from kit.paths.base import path_names, planned_by_default

    path_names()  # registers the families
    return [
        Cell(m, p, d, b)
        for m, d, b, p in itertools.product(models, devices, batch_sizes, paths)
        if not defaults_only or planned_by_default(p, d)
    ]


def machine_tag() -> str:
    """A directory-safe name for this machine's hardware (GPU if any, else CPU model)."""
    from kit.hardware.machine import machine_tag as tag
    from kit.measure.environment import cpu_info, gpu_info

    gpu, _ = gpu_info()
    return tag(machine_name_of(gpu, cpu_info()))


def machine_name_of(gpu: dict[str, Any] | None, cpu: dict[str, Any]) -> str:
    from kit.hardware.machine import machine_name

    return machine_name({"gpu": gpu, "cpu": cpu})


def _existing(out: Path) -> tuple[dict[Cell, dict[str, Any]], list[tuple[str, str]]]:
    loaded = load_results(out)
    return {Cell.from_dict(d["cell"]): d for d in loaded.docs}, loaded.corrupt


@dataclass
class _Later:
    """A cell with fresh processes still to run in later rounds."""

    cell: Cell
    docs: list[dict[str, Any]]
    planned: int
    policy: str


def reproduce(
    cells: Iterable[Cell],
    opts: RunOptions,
    executor: Any,
    *,
    force: bool = False,
    on_cell: ProgressFn | None = None,
    on_round: RoundFn | None = None,
    timeout_s: float | None = None,
    measure_fn: Callable[[Cell, RunOptions], dict[str, Any]] = measure_cell,
) -> RunSummary:
    from kit.paths.base import get_path
    from kit.run.profiles import get_profile
    from kit.run.repeats import processes_pending

    out = Path(opts.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cells = list(cells)
    summary = RunSummary(planned=len(cells))
    existing, summary.corrupt = _existing(out)
    timeout = timeout_s if timeout_s is not None else get_profile(opts.profile).cell_timeout_s
    references: dict[str, str | None] = {}  # model -> None if ok, else the failure reason
    later: list[_Later] = []
    start = time.perf_counter()

    def record(cell: Cell, doc: dict[str, Any], seconds: float) -> None:
        write_result(out, doc)
        summary.per_cell_s[cell.key()] = seconds
        setattr(summary, doc["status"], getattr(summary, doc["status"]) + 1)
        if on_cell:
            on_cell(cell, doc)

    try:
        todo: list[Cell] = []
        for cell in cells:
            old = existing.get(cell)
            if not force and old is not None and old["status"] in ("ok", "skipped"):
                summary.resumed += 1
                if on_cell:
                    on_cell(cell, {"status": "resumed"})
                if processes_pending(old):
                    later.append(_resumed(cell, old))
                continue
            todo.append(cell)
        run_cells = getattr(executor, "run_cells", None)
        if run_cells is not None:
            # A parallel executor (Ray) takes the whole list: it checks availability where each
            # cell runs, computes each model's reference before its cells, and hands documents
            # back as cells finish; they are written here, one by one, as with any executor.
            # Its further processes run on other workers as soon as the first is back.
            for cell, doc in run_cells(todo, opts, measure_fn, timeout):
                record(cell, doc, float(doc.get("duration_s") or 0.0))
        else:
            for cell in todo:
                t0 = time.perf_counter()
                ok, why = get_path(cell.path).available(cell.device)
                if not ok:
                    doc = skipped_document(cell, opts, why)
                else:
                    if cell.model not in references:
                        with summary.timing("references"):
                            references[cell.model] = _ensure_reference(cell.model, opts, executor, timeout)
                    failure = references[cell.model]
                    if failure:
                        doc = failed_document(cell, opts, f"FP32 reference for {cell.model} failed: {failure}")
                    else:
                        doc, more = _first_process(cell, opts, executor, timeout, measure_fn, summary)
                        if more is not None:
                            later.append(more)
                record(cell, doc, time.perf_counter() - t0)
        _later_rounds(later, opts, executor, timeout, measure_fn, out, summary, on_round)
    except KeyboardInterrupt:
        summary.interrupted = True
    summary.wall_s = time.perf_counter() - start
    return summary


def _ensure_reference(model: str, opts: RunOptions, executor: Any, timeout: float) -> str | None:
    try:
        executor.call(reference_output, model, opts, timeout_s=timeout)
    except TaskCrashed as exc:
        return str(exc)
    except Exception as exc:  # inline executor: the exception itself
        return f"{type(exc).__name__}: {exc}"
    return None


def _in_process(
    fn: Callable[..., dict[str, Any]], cell: Cell, opts: RunOptions, executor: Any, timeout: float
) -> dict[str, Any]:
    try:
        doc: dict[str, Any] = executor.call(fn, cell, opts, timeout_s=timeout)
    except TaskCrashed as exc:
        doc = failed_document(cell, opts, str(exc))
    return doc


def _first_process(
    cell: Cell,
    opts: RunOptions,
    executor: Any,
    timeout: float,
    measure_fn: Callable[..., dict[str, Any]],
    summary: RunSummary,
) -> tuple[dict[str, Any], _Later | None]:
    """The cell's first process (its artifacts made before it, in a process of their own), as a
    document, and what is left for later rounds when `processes_for` plans more processes."""
    from kit.run.profiles import get_profile
    from kit.run.repeats import finish, processes_for

    _, artifacts_first = cell_processes(cell, measure_fn)
    if artifacts_first:
        # Exports and quantized models are made in a process of their own: the measured process
        # then only loads them, whether or not the cache was warm (`prepare_artifacts`).
        # A crash here is met again by the measured process, which reports it as the cell's.
        with contextlib.suppress(TaskCrashed), summary.timing("artifacts"):
            executor.call(make_artifacts, cell, opts, timeout_s=timeout)
    with summary.timing("first processes"):
        first = _in_process(measure_fn, cell, opts, executor, timeout)
    n, policy = processes_for(first, opts.repeats, get_profile(opts.profile))
    doc = finish([first], policy, opts.seed, planned=n)
    return doc, (_Later(cell, [doc], n, policy) if n > 1 else None)


def _resumed(cell: Cell, doc: dict[str, Any]) -> _Later:
    """A cell whose document (from a stopped run) has processes still to run."""
    from kit.run.repeats import planned_policy

    return _Later(cell, [doc], int(doc["latency"]["processes_planned"]), planned_policy(doc))


def _later_rounds(
    later: list[_Later],
    opts: RunOptions,
    executor: Any,
    timeout: float,
    measure_fn: Callable[..., dict[str, Any]],
    out: Path,
    summary: RunSummary,
    on_round: RoundFn | None,
) -> None:
    """Round r runs the next process of every cell that has one planned (timing only), and
    rewrites the cell's document with its processes so far."""
    from kit.run.repeats import finish, processes_attempted

    def attempted(item: _Later) -> int:
        return sum(processes_attempted(d) for d in item.docs)

    while True:
        due = [item for item in later if attempted(item) < item.planned]
        if not due:
            return
        for item in due:
            again_fn, _ = cell_processes(item.cell, measure_fn)
            t0 = time.perf_counter()
            with summary.timing("later processes"):
                item.docs.append(_in_process(again_fn, item.cell, opts, executor, timeout))
            doc = finish(item.docs, item.policy, opts.seed, planned=item.planned)
            write_result(out, doc)
            summary.later_processes += 1
            key = item.cell.key()
            summary.per_cell_s[key] = summary.per_cell_s.get(key, 0.0) + time.perf_counter() - t0
            if on_round:
                on_round(item.cell, attempted(item), doc)


def link_latest(out: Path) -> None:
    """Point ``<out>/../latest`` at ``out`` so ``make validate`` finds the newest results."""
    latest = out.parent / "latest"
    try:
        if latest.is_symlink() or latest.exists():
            if latest.is_symlink():
                latest.unlink()
            else:
                return  # a real directory named latest: leave it alone
        os.symlink(out.name, latest)
    except OSError as exc:
        print(f"note: could not link {latest}: {exc}", file=sys.stderr)
