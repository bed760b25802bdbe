"""``make bench``'s Ray figures: two shards at once on a local Ray against the serial child-process run,
and the executor's own cost per cell."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from typing import Any

from kit.results.store import Cell
from kit.run.ray_executor import RAY_MISSING, RayExecutor, import_ray, ray_available


def _drive(
    executor: Any,
    cells: list[Cell],
    opts: Any,
    measure_fn: Callable[..., Any] | None = None,
    write: bool = True,
    with_reference: bool = True,
) -> float:
    """Run ``cells`` through ``executor.run_cells`` and write each document as the runner would."""
    from kit.results.store import write_result

    t0 = time.perf_counter()
    for _cell, doc in executor.run_cells(cells, opts, measure_fn, None, with_reference=with_reference):
        if write:
            write_result(opts.out_dir, doc)
    return time.perf_counter() - t0


def _failures(root: Any) -> list[str]:
    from kit.results.store import load_results

    return sorted(
        f"{Cell.from_dict(d['cell']).key()}: {d['reason']}" for d in load_results(root).docs if d["status"] == "failed"
    )


def bench_ray(num_cpus: int = 2, overhead_cells: int = 200) -> dict[str, Any]:
    """``make bench``: the tiny matrix cut in two shards, both run at once on a local Ray
    (``num_cpus`` CPUs, one per cell) and merged, against the serial child-process run of the same
    cells; then the executor's own cost per cell with a measure function that does nothing
    (target: scheduling overhead < 50 ms per cell)."""
    import tempfile
    import threading
    from pathlib import Path

    if not ray_available():
        print(f"[ray] {RAY_MISSING}")
        return {}
    ray = import_ray()
    from kit.models.tiny import tiny_ids
    from kit.results.store import load_results
    from kit.run.cell import RunOptions
    from kit.run.executors import ProcessExecutor
    from kit.run.merge import merge_results
    from kit.run.reproduce import plan_matrix, reproduce
    from kit.run.shard import shard_cells, shard_loads

    cells = plan_matrix(tiny_ids(), ["torch-fp32", "torch-bf16", "torch-int8-dynamic"], ["cpu"], [1])
    shards = [shard_cells(cells, k, 2, "quick") for k in (1, 2)]
    figures: dict[str, Any] = {
        "cells": len(cells),
        "num_cpus": num_cpus,
        "shard_sizes": [len(s) for s in shards],
        "shard_expected_s": shard_loads(cells, 2, "quick"),
    }

    def opts_for(root: Path, name: str) -> Any:
        return RunOptions(out_dir=str(root / name), profile="quick", command="kit.bench ray")

    with tempfile.TemporaryDirectory(prefix="qkit-bench-ray-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        reproduce(cells, opts_for(root, "serial"), ProcessExecutor())
        figures["serial_s"] = time.perf_counter() - t0
        figures["serial_failed"] = _failures(root / "serial")

        started_ray = not ray.is_initialized()
        t0 = time.perf_counter()
        if started_ray:
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
        figures["ray_init_s"] = time.perf_counter() - t0
        try:
            ex = RayExecutor(num_cpus=1)
            # Warm the workers (forkserver, torch import) outside the timed run: the serial
            # executor's forkserver is likewise started by its first cell, before the timing.
            warm = [Cell("tiny-vit", "torch-fp32", "cpu", b) for b in range(1, num_cpus + 1)]
            _drive(ex, warm, opts_for(root, "warm"), _trivial_cell, write=False, with_reference=False)
            errors: list[BaseException] = []

            def run_shard(k: int) -> None:
                try:
                    _drive(ex, shards[k - 1], opts_for(root, f"shard-{k}"))
                except BaseException as exc:  # reported after the join
                    errors.append(exc)

            t0 = time.perf_counter()
            threads = [threading.Thread(target=run_shard, args=(k,)) for k in (1, 2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            figures["ray_s"] = time.perf_counter() - t0
            if errors:
                raise errors[0]
            merged = merge_results([root / "shard-1", root / "shard-2"], root / "merged")
            ray_cells = {d["cell"]["model"] + d["cell"]["path"] for d in load_results(root / "merged").docs}
            serial_cells = {d["cell"]["model"] + d["cell"]["path"] for d in load_results(root / "serial").docs}
            figures["merged_equals_serial_cells"] = ray_cells == serial_cells
            figures["ray_failed"] = _failures(root / "merged")
            figures["merge_conflicts"] = len(merged.conflicts)
            figures["wall_ratio_ray_over_serial"] = figures["ray_s"] / figures["serial_s"]

            # Cost per cell of the executor itself: a function that does nothing, in the Ray worker
            # (Ray's scheduling alone) and isolated (a fork per cell, as real cells run); and one
            # call() at a time against the process executor's call().
            trivial = [Cell("tiny-vit", "torch-fp32", "cpu", b) for b in range(1, overhead_cells + 1)]
            opts = opts_for(root, "trivial")
            per_cell: dict[str, float] = {}
            for isolate in (False, True):
                ex_t = RayExecutor(num_cpus=1, isolate=isolate)
                s = _drive(ex_t, trivial, opts, _trivial_cell, write=False, with_reference=False)
                per_cell["in_worker" if not isolate else "isolated"] = s / len(trivial) * 1e3
            n_calls = 50
            t0 = time.perf_counter()
            for c in trivial[:n_calls]:
                ex_t.call(_trivial_cell, c, opts, timeout_s=60)
            per_cell["call_isolated_sequential"] = (time.perf_counter() - t0) / n_calls * 1e3
            proc = ProcessExecutor()
            proc.call(_trivial_cell, trivial[0], opts, timeout_s=60)  # start its forkserver first
            t0 = time.perf_counter()
            for c in trivial[:n_calls]:
                proc.call(_trivial_cell, c, opts, timeout_s=60)
            per_cell["process_executor_sequential"] = (time.perf_counter() - t0) / n_calls * 1e3
            figures["overhead_ms_per_cell"] = per_cell
        finally:
            if started_ray:
                ray.shutdown()
    for name in ("serial_failed", "ray_failed"):
        for line in figures[name]:
            print(f"[ray] {name.split('_')[0]} run, failed cell: {line}")
    ov = figures["overhead_ms_per_cell"]
    verdict = "MET" if ov["in_worker"] < 50 else "NOT MET"
    print(
        f"[ray] tiny matrix, {len(cells)} CPU cells (quick profile) in 2 shards of {figures['shard_sizes']} cells "
        f"(expected {figures['shard_expected_s'][0]:.0f} s / {figures['shard_expected_s'][1]:.0f} s): serial "
        f"(process executor) {figures['serial_s']:.1f} s; both shards at once on local Ray ({num_cpus} CPUs, 1 per "
        f"cell) {figures['ray_s']:.1f} s (+ Ray start {figures['ray_init_s']:.1f} s): ratio "
        f"{figures['wall_ratio_ray_over_serial']:.2f}; merged cells = serial cells: "
        f"{figures['merged_equals_serial_cells']}"
    )
    print(
        f"      overhead per cell ({overhead_cells} trivial cells): Ray scheduling {ov['in_worker']:.1f} ms "
        f"(target < 50 ms: {verdict}); with a fork per cell {ov['isolated']:.1f} ms; one call() at a time "
        f"{ov['call_isolated_sequential']:.1f} ms vs process executor {ov['process_executor_sequential']:.1f} ms"
    )
    return figures


def _trivial_cell(cell: Cell, opts: Any) -> dict[str, Any]:
    """A measure_fn that measures nothing: what is left is the executor's own cost per cell."""
    return {"cell": cell.as_dict()}


if __name__ == "__main__":  # pragma: no cover
    signal.signal(signal.SIGINT, signal.default_int_handler)
    bench_ray()
