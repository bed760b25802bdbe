"""Intervals across processes: the hierarchical CI, merging repeats, the coverage arithmetic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kit.bench.coverage import coverage, runs_from_processes
from kit.measure.latency import across_processes, bootstrap_median_ci, mean_across_processes
from kit.results.store import Cell, load_results
from kit.run.cell import RunOptions
from kit.run.executors import InlineExecutor
from kit.run.repeats import merge_repeats
from kit.run.reproduce import plan_matrix, reproduce


def _process(median: float, n: int = 200, cv: float = 0.01, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    return list(median * (1 + cv * rng.standard_normal(n)))


def test_one_process_is_labelled_within_process_only() -> None:
    x = _process(10.0)
    res = across_processes([x])
    assert res["processes"] == 1 and "within one process only" in res["ci_method"]
    assert res["p50_ci95"] == list(bootstrap_median_ci(np.asarray(x)))


def test_process_to_process_variation_widens_the_interval() -> None:
    # Three processes whose medians differ by 10 %, each tight within itself.
    groups = [_process(m, seed=i) for i, m in enumerate((10.0, 11.0, 10.5))]
    one = across_processes(groups[:1])
    three = across_processes(groups)
    lo, hi = three["p50_ci95"]
    assert three["processes"] == 3 and "fresh processes" in three["ci_method"]
    assert lo <= 10.05 and hi >= 10.95  # covers every process median
    assert (hi - lo) > 5 * (one["p50_ci95"][1] - one["p50_ci95"][0])
    assert three["p50"] == pytest.approx(10.5, rel=0.01)
    assert three["spread"] == pytest.approx(1.0 / 10.5, rel=0.05)
    rlo, rhi = three["p50_rerun95"]  # where another run's median should fall: wider still
    assert rlo <= lo and rhi >= hi and (rhi - rlo) > (hi - lo)
    mean, (mlo, mhi) = mean_across_processes(groups)
    assert mlo < mean < mhi


def test_coverage_arithmetic() -> None:
    runs = [(10.0, (9.5, 10.5)), (10.4, (10.3, 10.5)), (12.0, (11.0, 13.0))]
    # run 0 holds 10.4 (1 of 2); run 1 holds neither 10.0 nor 12.0; run 2 holds neither
    assert coverage(runs) == (1, 6)
    assert coverage([(1.0, (0.0, 2.0))]) == (0, 0)
    wide = [(m, (0.0, 100.0)) for m in (1.0, 2.0, 3.0, 4.0, 5.0)]
    assert coverage(wide) == (20, 20)  # 5 runs: 20 ordered pairs, as in the 20 of 60


def test_runs_from_processes_before_and_after() -> None:
    # Five runs of three processes; process medians wander by +-5 %, each process tight.
    rng = np.random.default_rng(1)
    groups = [[_process(10 * (1 + 0.05 * rng.standard_normal()), seed=10 * r + p) for p in range(3)] for r in range(5)]
    before, after = runs_from_processes(groups)
    hb, pb = coverage(before)
    ha, pa = coverage(after)
    assert pb == pa == 20
    assert ha > hb  # the across-process CI holds where one process's does not


def test_ideal_coverage_is_below_95_percent_for_the_ci_and_near_it_for_the_rerun_interval() -> None:
    # Independent process medians: the CI of one run's median misses another run's median more
    # often than 5 % (that median has its own noise); the rerun (prediction) interval is built for it.
    from kit.bench.coverage import ideal_coverage

    ideal = ideal_coverage(n_runs=5, repeats=3, trials=60)
    assert 0.82 <= ideal["after"] <= 0.93
    assert ideal["rerun"] >= 0.90 and ideal["rerun"] > ideal["after"] + 0.02


def _doc(samples: list[float], status: str = "ok") -> dict:
    return {
        "cell": {"model": "m", "path": "torch-fp32", "device": "cpu", "batch_size": 2},
        "status": status,
        "reason": None if status == "ok" else "boom",
        "latency": {"samples": samples, "duration_s": 1.0, "p50": float(np.median(samples))} if samples else None,
        "throughput": {"samples_per_s": 0.0, "method": "x"},
        "started_utc": "2026-01-01T00:00:00Z",
        "finished_utc": "2026-01-01T00:00:01Z",
        "duration_s": 1.0,
    }


def test_merge_repeats_pools_and_records_each_process() -> None:
    docs = [_doc(_process(10.0, seed=1)), _doc([], "failed"), _doc(_process(12.0, seed=2))]
    merged = merge_repeats(docs)
    lat = merged["latency"]
    assert lat["repeats"]["processes"] == 2 and lat["iterations"] == 400
    assert lat["repeats"]["failed"] == ["failed: boom"]
    assert lat["p50_ci95"][0] <= 10.0 and lat["p50_ci95"][1] >= 12.0
    assert merged["throughput"]["samples_per_s"] == pytest.approx(2 / (lat["p50"] / 1000))
    assert any("spread" in w for w in lat["noise_warnings"])
    assert merge_repeats([_doc([], "failed")])["status"] == "failed"


def test_merge_of_one_ok_process_and_failed_ones_keeps_the_within_process_interval() -> None:
    # A later process that crashed (OOM, timeout) leaves one ok process: no between-process
    # interval can be made, and the merge must neither fail nor invent one.
    first = _doc(_process(10.0, seed=1))
    merged = merge_repeats([first, _doc([], "failed"), _doc([], "failed")])
    lat = merged["latency"]
    assert merged["status"] == "ok"
    assert lat["repeats"]["processes"] == 1 and lat["repeats"]["failed"] == ["failed: boom"] * 2
    assert "within one process only" in lat["ci_method"]
    assert "p50_rerun95" not in lat and "mean_ci95" not in lat
    assert lat["p50_ci95"] == list(bootstrap_median_ci(np.asarray(first["latency"]["samples"])))


def test_reproduce_with_repeats_writes_one_merged_document(tmp_path: Path) -> None:
    cells = plan_matrix(["tiny-vit"], ["torch-fp32"], ["cpu"], [1])
    opts = RunOptions(out_dir=str(tmp_path), profile="quick", command="pytest", repeats=2)
    summary = reproduce(cells, opts, InlineExecutor())
    assert summary.ok == 1
    (doc,) = load_results(tmp_path).docs
    assert doc["latency"]["repeats"]["processes"] == 2
    assert "fresh processes" in doc["latency"]["ci_method"]
    assert doc["latency"]["processes_policy"] == "--repeats 2"
    assert doc["fidelity"]["cosine"] > 0.9  # from the first process: the repeat only timed


def test_processes_for_follows_the_profile_budget_and_says_why() -> None:
    from kit.run.profiles import get_profile
    from kit.run.repeats import processes_for

    full = get_profile("full")
    assert full.repeats == 3 and full.repeat_max_median_ms is not None
    fast, slow = _doc(_process(20.0)), _doc(_process(2 * full.repeat_max_median_ms))
    assert processes_for(fast, None, full) == (3, full.repeats_policy())
    n, why = processes_for(slow, None, full)
    assert n == 1 and "above that" in why and "within one process only" in why
    assert processes_for(slow, 4, full) == (4, "--repeats 4")  # the user's number wins
    n, why = processes_for(_doc([], "failed"), 4, full)
    assert n == 1 and "failed" in why
    assert processes_for(fast, None, get_profile("quick"))[0] == 1


def test_a_repeat_process_only_times_the_cell(tmp_path: Path) -> None:
    from kit.results.store import Cell
    from kit.run.cell import measure_cell, reference_output, time_cell

    opts = RunOptions(out_dir=str(tmp_path), profile="full", command="pytest")
    cell = Cell("tiny-vit", "torch-fp32", "cpu", 1)
    reference_output(cell.model, opts)
    full, timed = measure_cell(cell, opts), time_cell(cell, opts)
    assert full["status"] == timed["status"] == "ok"
    assert full["fidelity"] is not None and timed["fidelity"] is None
    # Sizes are the first process's: a repeat does not write the state dict out again.
    assert full["size"]["bytes"] > 0 and timed["size"] is None
    assert "weights_mb" in full["memory"] and "weights_mb" not in timed["memory"]
    # Same warm-up; the repeat's timed part is the profile's shorter one.
    from kit.run.profiles import get_profile

    profile = get_profile("full")
    assert profile.timing_only_latency.warmup_s == profile.latency.warmup_s
    assert profile.timing_only_latency.warmup_iterations == profile.latency.warmup_iterations
    assert timed["latency"]["warmup_s"] >= profile.latency.warmup_s
    assert timed["latency"]["min_iterations"] < full["latency"]["min_iterations"]


def test_the_first_of_several_processes_times_less_and_a_lone_process_as_before(tmp_path: Path) -> None:
    from kit.results.store import Cell
    from kit.run.cell import measure_cell, reference_output
    from kit.run.profiles import get_profile

    full = get_profile("full")
    assert full.first_of_many_latency is not None
    assert full.first_latency(None) is full.first_of_many_latency  # the profile's 3 processes may follow
    assert full.first_latency(3) is full.first_of_many_latency
    assert full.first_latency(1) is full.latency  # --repeats 1: a lone process is timed as always
    assert get_profile("quick").first_latency(None) is get_profile("quick").latency
    assert full.first_of_many_latency.min_duration_s < full.latency.min_duration_s

    opts = RunOptions(out_dir=str(tmp_path), profile="full", command="pytest")
    cell = Cell("tiny-vit", "torch-fp32", "cpu", 1)
    reference_output(cell.model, opts)
    many = measure_cell(cell, opts)
    lone = measure_cell(cell, RunOptions(out_dir=str(tmp_path), profile="full", command="pytest", repeats=1))
    assert many["latency"]["min_duration_s"] == full.first_of_many_latency.min_duration_s
    assert lone["latency"]["min_duration_s"] == full.latency.min_duration_s


def test_a_first_of_many_config_that_would_shorten_a_lone_process_is_refused() -> None:
    import dataclasses

    from kit.measure.latency import LatencyConfig
    from kit.run.profiles import get_profile

    full = get_profile("full")
    short = LatencyConfig(warmup_iterations=2, warmup_s=0.5, min_iterations=2, min_duration_s=0.2)
    with pytest.raises(ValueError, match="less than latency"):
        dataclasses.replace(full, first_of_many_latency=short)
    other_warmup = dataclasses.replace(full.first_of_many_latency, warmup_s=0.1)
    with pytest.raises(ValueError, match="warm up"):
        dataclasses.replace(full, first_of_many_latency=other_warmup)


def test_a_cells_processes_run_in_rounds_over_the_matrix_and_a_stopped_run_resumes_them(tmp_path: Path) -> None:
    from kit.run.cell import measure_cell
    from kit.run.repeats import processes_pending

    cells = plan_matrix(["tiny-vit"], ["torch-fp32", "torch-bf16"], ["cpu"], [1])
    opts = RunOptions(out_dir=str(tmp_path), profile="quick", command="pytest", repeats=3)
    calls: list[str] = []
    stop_at = [4]  # the 4th process: the second round's second cell

    def logged(cell: Cell, run_opts: RunOptions) -> dict:  # a measure_fn stand-in
        calls.append(cell.path)
        if len(calls) == stop_at[0]:
            raise KeyboardInterrupt
        return measure_cell(cell, run_opts)

    rounds: list[tuple[str, int]] = []
    summary = reproduce(
        cells, opts, InlineExecutor(), measure_fn=logged, on_round=lambda c, k, d: rounds.append((c.path, k))
    )
    assert summary.interrupted
    # Round by round, not cell by cell: fp32's second process comes after bf16's first.
    assert calls == ["torch-fp32", "torch-bf16", "torch-fp32", "torch-bf16"]
    assert rounds == [("torch-fp32", 2)]
    docs = {d["cell"]["path"]: d for d in load_results(tmp_path).docs}
    # Nothing measured is lost: fp32 has 2 of its 3 processes, bf16 its first, each saying so.
    assert docs["torch-fp32"]["latency"]["repeats"]["processes"] == 2
    assert "2 of 3 processes measured so far" in docs["torch-fp32"]["latency"]["processes_policy"]
    assert "repeats" not in docs["torch-bf16"]["latency"]
    assert processes_pending(docs["torch-fp32"]) == 1 and processes_pending(docs["torch-bf16"]) == 2

    calls.clear()
    stop_at[0] = 0
    summary = reproduce(cells, opts, InlineExecutor(), measure_fn=logged)
    assert summary.resumed == 2 and not summary.interrupted and summary.later_processes == 3
    assert "2 already done (resumed), 3 later processes" in summary.line()
    # Where the time went: only later processes ran in the resumed run, and the line says so.
    assert set(summary.phase_s) == {"later processes"} and summary.phase_s["later processes"] > 0
    assert f"(later processes {summary.phase_s['later processes']:.0f} s)" in summary.line()
    assert calls == ["torch-fp32", "torch-bf16", "torch-bf16"]  # only the processes still to run, in rounds
    docs = {d["cell"]["path"]: d for d in load_results(tmp_path).docs}
    for doc in docs.values():
        lat = doc["latency"]
        assert lat["repeats"]["processes"] == 3 and len(lat["repeats"]["process_iterations"]) == 3
        assert lat["processes_policy"] == "--repeats 3" and processes_pending(doc) == 0
        assert doc["fidelity"] is not None  # the first process's, kept through the merges


def test_the_policy_of_a_pending_document_reads_back_whole() -> None:
    from kit.run.repeats import finish, planned_policy

    doc = finish([_doc(_process(10.0))], "profile x: 3 processes; a reason with a semicolon", planned=3)
    assert "1 of 3 processes measured so far" in doc["latency"]["processes_policy"]
    assert planned_policy(doc) == "profile x: 3 processes; a reason with a semicolon"
