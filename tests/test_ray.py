"""The Ray executor on a local Ray (2 CPUs) started by this module: a tiny matrix whose documents
validate, resource requests, and cells whose process or Ray worker is killed mid-run being redone.

Skipped where ray is not installed (``pip install 'qkit[ray]'``), except the check of that
one-line message itself.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kit.results.store import Cell, load_results, write_result
from kit.run.cell import RunOptions, measure_cell
from kit.run.ray_executor import RAY_MISSING, ray_available
from kit.run.reproduce import plan_matrix, reproduce

needs_ray = pytest.mark.skipif(not ray_available(), reason="ray is not installed: pip install 'qkit[ray]'")
TESTS_DIR = str(Path(__file__).resolve().parent)


def _opts(out: Path, **path_options: Any) -> RunOptions:
    return RunOptions(out_dir=str(out), profile="quick", command="pytest", path_options=path_options)


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("reference-cache")


@pytest.fixture()
def out(tmp_path: Path, shared_cache: Path) -> Path:
    """A fresh result directory whose ``_cache`` (the models' FP32 references) is shared by the
    module's tests: each tiny model's reference is computed once, keeping the module short."""
    (tmp_path / "_cache").symlink_to(shared_cache, target_is_directory=True)
    return tmp_path


# Measure functions that misbehave on purpose. They run in Ray workers and their children, which
# import this module by name (this directory is on their PYTHONPATH, see the ``ray_local`` fixture).


def _marker(cell: Cell, opts: RunOptions) -> Path:
    return Path(opts.out_dir) / f"killed-once-{cell.model}-{cell.path}"


def kill_own_process_once(cell: Cell, opts: RunOptions) -> dict[str, Any]:
    """SIGKILL the process measuring the cell on the first attempt (as the OOM killer would)."""
    marker = _marker(cell, opts)
    if not marker.exists():
        marker.write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return measure_cell(cell, opts)


def always_killed(cell: Cell, opts: RunOptions) -> dict[str, Any]:
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("unreachable")


def hangs(cell: Cell, opts: RunOptions) -> dict[str, Any]:
    time.sleep(600)
    raise AssertionError("unreachable")


def raises(cell: Cell, opts: RunOptions) -> dict[str, Any]:
    raise RuntimeError("broken measurement")


# ------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def ray_local() -> Iterator[Any]:
    if not ray_available():
        pytest.skip("ray is not installed: pip install 'qkit[ray]'")
    import ray

    if ray.is_initialized():
        ray.shutdown()
    path = os.pathsep.join(p for p in (TESTS_DIR, os.environ.get("PYTHONPATH")) if p)
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        object_store_memory=100 * 2**20,
        runtime_env={"env_vars": {"PYTHONPATH": path}},
    )
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def executor(ray_local: Any) -> Any:
    from kit.run.ray_executor import RayExecutor

    return RayExecutor(num_cpus=1, max_retries=1)


def _drive(
    executor: Any, cells: list[Cell], opts: RunOptions, measure_fn: Any = None, timeout_s: float | None = 120
) -> dict[Cell, dict[str, Any]]:
    """What the runner does with ``run_cells``: write every document through the store."""
    docs = {}
    for cell, doc in executor.run_cells(cells, opts, measure_fn, timeout_s):
        write_result(Path(opts.out_dir), doc)
        docs[cell] = doc
    return docs


# --------------------------------------------------------------------------------------- tests


def test_missing_ray_is_a_one_line_error_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    from kit.run.executors import make_executor

    with pytest.raises(ImportError) as info:
        make_executor("ray")
    assert str(info.value) == RAY_MISSING == "the ray executor needs the optional extra: pip install 'qkit[ray]'"


@needs_ray
def test_tiny_matrix_runs_on_local_ray_and_validates(executor: Any, out: Path) -> None:
    # Two models, each with its reference; the CUDA cells are skipped (no GPU in this cluster, or
    # a path that does not run on CUDA at all). Small, as every tiny cell is a real measurement.
    cells = [
        *plan_matrix(["tiny-vit", "tiny-deit"], ["torch-fp32"], ["cpu", "cuda"], [1]),
        Cell("tiny-vit", "torch-int8-dynamic", "cuda", 1),
    ]
    opts = _opts(out)
    docs = _drive(executor, cells, opts)
    assert set(docs) == set(cells)
    loaded = load_results(out)
    assert not loaded.corrupt and len(loaded.docs) == len(cells)
    by_cell = {Cell.from_dict(d["cell"]): d for d in loaded.docs}
    for cell in cells:
        doc = by_cell[cell]
        if cell.device == "cpu":
            assert doc["status"] == "ok", doc["reason"]
            assert doc["latency"]["p50"] > 0 and doc["fidelity"]["cosine"] > 0.9
            assert doc["math"]["torch_num_threads"] == 1  # the one CPU the task asked for
        else:
            assert doc["status"] == "skipped"
    assert "runs on cpu, not cuda" in by_cell[Cell("tiny-vit", "torch-int8-dynamic", "cuda", 1)]["reason"]
    assert "no node of the Ray cluster has a GPU" in by_cell[Cell("tiny-vit", "torch-fp32", "cuda", 1)]["reason"]
    # Each model's reference was computed once, before its cells.
    for model in ("tiny-vit", "tiny-deit"):
        assert len(list((out / "_cache" / "reference").glob(f"{model}__*.npz"))) == 1


@needs_ray
def test_call_runs_one_task_and_reproduce_writes_through_the_store(executor: Any, out: Path) -> None:
    from kit.run.cell import reference_output
    from kit.run.executors import TaskCrashed

    opts = _opts(out)
    cell = Cell("tiny-vit", "torch-bf16", "cpu", 1)
    assert executor.call(reference_output, cell.model, opts, timeout_s=120)["file"].endswith(".npz")
    doc = executor.call(measure_cell, cell, opts, timeout_s=120)  # the executor contract
    assert doc["status"] == "ok" and doc["cell"] == cell.as_dict()
    with pytest.raises(TaskCrashed, match="child raised RuntimeError: broken measurement"):
        executor.call(raises, cell, opts, timeout_s=120)
    # The runner, whichever way it drives the executor, writes a valid document per cell.
    summary = reproduce([cell], opts, executor)
    assert summary.ok == 1 and summary.failed == 0, summary
    assert [d["status"] for d in load_results(out).docs] == ["ok"]


@needs_ray
def test_a_cell_whose_process_is_killed_is_retried_and_nothing_is_lost(executor: Any, out: Path) -> None:
    cells = plan_matrix(["tiny-vit", "tiny-deit"], ["torch-fp32"], ["cpu"], [1])  # references cached above
    opts = _opts(out)
    docs = _drive(executor, cells, opts, kill_own_process_once)
    for cell in cells:
        assert _marker(cell, opts).exists()  # it was killed once ...
        assert docs[cell]["status"] == "ok", docs[cell]["reason"]  # ... and measured on the retry
    assert len(load_results(out).docs) == 2


@needs_ray
def test_a_killed_ray_worker_is_retried(ray_local: Any, out: Path) -> None:
    from kit.run.ray_executor import RayExecutor

    # In-worker mode: the measure function kills the Ray worker process itself (worker loss).
    in_worker = RayExecutor(num_cpus=1, max_retries=1, isolate=False)
    cell = Cell("tiny-vit", "torch-fp32", "cpu", 1)
    opts = _opts(out)
    doc = _drive(in_worker, [cell], opts, kill_own_process_once)[cell]
    assert _marker(cell, opts).exists() and doc["status"] == "ok", doc["reason"]


@needs_ray
def test_crashes_after_the_last_retry_timeouts_and_errors_are_failed_cells(executor: Any, out: Path) -> None:
    opts = _opts(out)
    killed = _drive(executor, [Cell("tiny-vit", "torch-fp32", "cpu", 1)], opts, always_killed)
    doc = next(iter(killed.values()))
    assert doc["status"] == "failed"
    assert "cell process lost on each of 2 attempt(s)" in doc["reason"] and "SIGKILL" in doc["reason"]
    t0 = time.perf_counter()
    hung = _drive(executor, [Cell("tiny-vit", "torch-bf16", "cpu", 1)], opts, hangs, timeout_s=3)
    assert next(iter(hung.values()))["reason"] == "timed out after 3 s"
    assert time.perf_counter() - t0 < 60  # not retried
    broken = _drive(executor, [Cell("tiny-vit", "torch-int8-dynamic", "cpu", 1)], opts, raises)
    assert next(iter(broken.values()))["reason"] == "child raised RuntimeError: broken measurement"
    bad_model = _drive(executor, [Cell("tiny-nope", "torch-fp32", "cpu", 1)], opts)
    assert next(iter(bad_model.values()))["reason"].startswith("FP32 reference for tiny-nope failed: child raised")
    assert len(load_results(out).docs) == 4 and not load_results(out).corrupt


@needs_ray
def test_resource_requests(executor: Any) -> None:
    from kit.run.ray_executor import RayExecutor

    cpu, cuda = Cell("tiny-vit", "torch-fp32", "cpu", 1), Cell("tiny-vit", "torch-fp16", "cuda", 1)
    assert executor.task_options(cpu) == {"num_gpus": 0, "num_cpus": 1}
    assert executor.task_options(cuda) == {"num_gpus": 1, "num_cpus": 1}
    targeted = _opts(Path("."), **{"ray.gpu": "H100", "ray.resources": '{"gpu:H100": 1}'})
    assert executor.task_options(cuda, targeted) == {
        "num_gpus": 1,
        "num_cpus": 1,
        "accelerator_type": "H100",
        "resources": {"gpu:H100": 1.0},
    }
    assert executor.task_options(cpu, _opts(Path("."), **{"ray.num_cpus": 2}))["num_cpus"] == 2
    # Default: a CPU cell asks for all the CPUs of the smallest node (here the local one: 2).
    assert RayExecutor().task_options(cpu)["num_cpus"] == 2
    assert executor.unschedulable({"num_cpus": 2}) is None
    assert "accelerator_type:H100" in executor.unschedulable(executor.task_options(cuda, targeted))
    assert "gpu:H100=1" in executor.unschedulable(executor.task_options(cpu, targeted))


@needs_ray
def test_unschedulable_cells_are_skipped_with_the_reason(executor: Any, tmp_path: Path) -> None:
    opts = _opts(tmp_path, **{"ray.resources": {"gpu:H100": 1}})
    cell = Cell("tiny-vit", "torch-fp32", "cpu", 1)
    doc = _drive(executor, [cell], opts)[cell]
    assert doc["status"] == "skipped" and "gpu:H100=1" in doc["reason"]
    doc = executor.call(measure_cell, cell, opts, timeout_s=60)  # one at a time: the same, no wait
    assert doc["status"] == "skipped" and "gpu:H100=1" in doc["reason"]


@needs_ray
def test_repeats_run_as_more_ray_tasks_and_come_back_merged(executor: Any, out: Path) -> None:
    cells = [Cell("tiny-vit", "torch-fp32", "cpu", 1), Cell("tiny-deit", "torch-fp32", "cpu", 1)]
    opts = RunOptions(out_dir=str(out), profile="quick", command="pytest", repeats=2)
    docs = _drive(executor, cells, opts)
    assert set(docs) == set(cells)
    for doc in docs.values():
        assert doc["status"] == "ok", doc["reason"]
        lat = doc["latency"]
        assert lat["repeats"]["processes"] == 2 and "fresh processes" in lat["ci_method"]
        assert lat["processes_policy"] == "--repeats 2"
        assert doc["fidelity"]["cosine"] > 0.9  # from the first process, which measured everything
