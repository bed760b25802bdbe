"""Latency tracker: statistics are consistent, both stopping minimums are honoured."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest

from kit.measure.latency import LatencyConfig, LatencyTracker, summarize


def _sleep_fn(seconds: float):
    def fn() -> None:
        time.sleep(seconds)

    return fn


def test_minimum_duration_is_honoured_for_fast_calls() -> None:
    cfg = LatencyConfig(warmup_iterations=2, warmup_s=0.0, min_iterations=5, min_duration_s=0.3, max_duration_s=5)
    with LatencyTracker(cfg) as tracker:
        result = tracker.run(_sleep_fn(0.0002))
    assert result.duration_s >= 0.3
    assert len(result.samples_ms) > 5  # a fast call gets far more than the minimum count
    assert result.stopped_by == "min_iterations_and_duration"
    assert result.warmup_iterations >= 2


def test_minimum_count_is_honoured_for_slow_calls() -> None:
    cfg = LatencyConfig(warmup_iterations=1, warmup_s=0.0, min_iterations=6, min_duration_s=0.0, max_duration_s=10)
    result = LatencyTracker(cfg).run(_sleep_fn(0.01))
    assert len(result.samples_ms) == 6
    assert all(s >= 9.5 for s in result.samples_ms)  # each sample covers the 10 ms sleep


def test_max_duration_caps_a_slow_call_and_says_so() -> None:
    cfg = LatencyConfig(warmup_iterations=0, warmup_s=0.0, min_iterations=1000, min_duration_s=0.0, max_duration_s=0.2)
    result = LatencyTracker(cfg).run(_sleep_fn(0.02))
    assert result.stopped_by == "max_duration"
    # How many 20 ms calls fit in 0.2 s depends on the machine's load; what must hold is that the
    # cap, not the 1000-iteration minimum, ended the loop, and only after the cap had passed.
    assert 1 <= len(result.samples_ms) < 1000
    assert result.duration_s >= 0.2


def test_max_iterations_caps_a_near_empty_call() -> None:
    cfg = LatencyConfig(warmup_iterations=0, warmup_s=0.0, min_iterations=10, min_duration_s=5.0, max_iterations=500)
    result = LatencyTracker(cfg).run(lambda: None)
    assert result.stopped_by == "max_iterations"
    assert len(result.samples_ms) == 500


def test_adaptive_stopping_ends_a_steady_cell_once_its_ci_is_tight() -> None:
    cfg = LatencyConfig(
        warmup_iterations=1, warmup_s=0.0, min_iterations=8, min_duration_s=5.0, max_duration_s=10.0, ci_target=0.05
    )
    t0 = time.perf_counter()
    res = LatencyTracker(cfg).run(lambda: time.sleep(0.002))
    assert res.stopped_by == "ci_target" and time.perf_counter() - t0 < 4.0
    assert res.to_dict()["ci_target"] == 0.05
    # a noisy call does not reach a 0.1 % target: the minimum duration stops it instead
    rng = np.random.default_rng(0)
    noisy = LatencyConfig(
        warmup_iterations=0, warmup_s=0.0, min_iterations=4, min_duration_s=0.3, max_duration_s=5.0, ci_target=0.001
    )
    res = LatencyTracker(noisy).run(lambda: time.sleep(0.001 * (1 + rng.random())))
    assert res.stopped_by == "min_iterations_and_duration"


def test_statistics_are_consistent() -> None:
    samples = list(np.random.default_rng(0).lognormal(mean=1.0, sigma=0.2, size=500))
    s = summarize(samples)
    assert s["min"] <= s["p50"] <= s["p90"] <= s["p95"] <= s["p99"] <= s["max"]
    assert s["p50"] == pytest.approx(float(np.median(samples)))
    assert s["mean"] == pytest.approx(float(np.mean(samples)))
    assert s["std"] == pytest.approx(float(np.std(samples, ddof=1)))
    assert s["cv"] == pytest.approx(s["std"] / s["mean"])
    lo, hi = s["p50_ci95"]
    assert lo <= s["p50"] <= hi
    assert hi - lo < 0.2 * s["p50"]  # 500 samples: the median is tight


def test_noise_warnings_flag_a_noisy_distribution() -> None:
    assert summarize([1.0] * 50)["noise_warnings"] == []
    noisy = summarize([1.0, 1.0, 1.0, 5.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 9.0])
    assert any("std" in w for w in noisy["noise_warnings"])
    assert any("max" in w for w in noisy["noise_warnings"])


def test_result_dict_carries_method_and_counts() -> None:
    cfg = LatencyConfig(warmup_iterations=1, warmup_s=0.0, min_iterations=3, min_duration_s=0.0)
    d = LatencyTracker(cfg).run(lambda: None).to_dict()
    assert d["timer"] == "perf_counter_ns"
    assert d["iterations"] == len(d["samples"]) >= 3
    assert d["percentile_method"] == "linear"
    assert d["min_iterations"] == 3


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_iterations": 0},
        {"min_duration_s": -1},
        {"min_duration_s": 5, "max_duration_s": 1},
        {"warmup_iterations": -1},
        {"min_iterations": 10, "max_iterations": 5},
    ],
)
def test_config_rejects_nonsense(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        LatencyConfig(**kwargs)


@pytest.mark.cuda
def test_cuda_events_time_a_cuda_call() -> None:
    import torch

    x = torch.randn(1024, 1024, device="cuda")
    cfg = LatencyConfig(warmup_iterations=2, warmup_s=0.0, min_iterations=10, min_duration_s=0.0)
    result = LatencyTracker(cfg, device="cuda").run(lambda: x @ x)
    assert result.timer == "cuda_event"
    assert all(s > 0 for s in result.samples_ms)


def test_a_steady_slow_call_stops_on_its_ci_before_min_iterations() -> None:
    cfg = LatencyConfig(
        warmup_iterations=0,
        warmup_s=0.0,
        min_iterations=10,
        min_duration_s=0.0,
        max_duration_s=10.0,
        ci_target=0.02,
        ci_min_iterations=5,
    )
    res = LatencyTracker(cfg).run(lambda: time.sleep(0.03))
    assert res.stopped_by == "ci_target" and 5 <= len(res.samples_ms) < 10
    assert res.to_dict()["ci_min_iterations"] == 5
    # Without it the CI rule waits for min_iterations.
    res = LatencyTracker(dataclasses.replace(cfg, ci_min_iterations=None)).run(lambda: time.sleep(0.03))
    assert len(res.samples_ms) >= 10
    with pytest.raises(ValueError, match="ci_min_iterations"):
        dataclasses.replace(cfg, ci_min_iterations=11)
