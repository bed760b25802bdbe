"""Latency tracker: warm-up, then timed iterations until a minimum count AND a minimum duration.

MLPerf-style stopping: both minimums must hold (a fast model gets many samples, a slow one at
least ``min_iterations``), with an optional ``max_duration_s`` cap recorded as the stop reason.
On CPU each iteration is timed with ``time.perf_counter_ns``; on CUDA with a pair of CUDA events
per iteration, synchronised once at the end so timing does not serialise the launch queue more
than the model itself does.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

PERCENTILE_METHOD = "linear"  # numpy's default (Hyndman-Fan type 7)
BOOTSTRAP_RESAMPLES = 2000
NOISE_CV = 0.10  # pyperf warns when std >= 10% of the mean


@dataclass(frozen=True)
class LatencyConfig:
    warmup_iterations: int = 3
    warmup_s: float = 0.5
    min_iterations: int = 20
    min_duration_s: float = 2.0
    max_duration_s: float | None = 60.0
    max_iterations: int = 10_000
    # Adaptive stopping (MLPerf-style early stop): once ``min_iterations`` and ``ci_min_duration_s``
    # hold, stop as soon as the median's 95% CI half-width, estimated as 1.96 * 1.2533 * std / sqrt(n)
    # relative to the median, is at most ``ci_target``; ``min_duration_s`` still stops a noisy cell.
    ci_target: float | None = None
    ci_min_duration_s: float = 0.0
    # The fewest iterations the CI rule may stop at (None: ``min_iterations``, and at least 5). Lower
    # than ``min_iterations``, a steady slow cell stops once its CI is tight (ViT-H/14 NF4 on 2
    # cores, 2.5 s a forward, at 5-8 iterations instead of 10) while a noisy one still runs to
    # ``min_iterations``.
    ci_min_iterations: int | None = None

    def __post_init__(self) -> None:
        if self.ci_target is not None and not 0 < self.ci_target < 1:
            raise ValueError("ci_target must be in (0, 1)")
        if self.ci_min_iterations is not None and not 3 <= self.ci_min_iterations <= self.min_iterations:
            raise ValueError("ci_min_iterations must be between 3 and min_iterations")
        if self.ci_min_duration_s < 0:
            raise ValueError("ci_min_duration_s must be >= 0")
        if self.warmup_iterations < 0 or self.warmup_s < 0:
            raise ValueError("warm-up count and time must be >= 0")
        if self.min_iterations < 1:
            raise ValueError("min_iterations must be >= 1")
        if self.min_duration_s < 0:
            raise ValueError("min_duration_s must be >= 0")
        if self.max_duration_s is not None and self.max_duration_s < self.min_duration_s:
            raise ValueError("max_duration_s must be >= min_duration_s")
        if self.max_iterations < self.min_iterations:
            raise ValueError("max_iterations must be >= min_iterations")


@dataclass
class LatencyResult:
    samples_ms: list[float]
    timer: str
    config: LatencyConfig
    warmup_iterations: int
    warmup_s: float
    duration_s: float
    stopped_by: str
    stats: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_values(
        cls,
        samples_ms: list[float],
        *,
        timer: str,
        config: LatencyConfig,
        warmup_iterations: int,
        warmup_s: float,
        duration_s: float,
        stopped_by: str,
        seed: int = 0,
    ) -> LatencyResult:
        result = cls(samples_ms, timer, config, warmup_iterations, warmup_s, duration_s, stopped_by)
        result.stats = summarize(samples_ms, seed=seed)
        return result

    def to_dict(self) -> dict[str, Any]:
        s = self.stats
        return {
            "unit": "ms",
            "timer": self.timer,
            "warmup_iterations": self.warmup_iterations,
            "warmup_s": round(self.warmup_s, 6),
            "iterations": len(self.samples_ms),
            "duration_s": round(self.duration_s, 6),
            "min_iterations": self.config.min_iterations,
            "min_duration_s": self.config.min_duration_s,
            "max_duration_s": self.config.max_duration_s,
            "stopped_by": self.stopped_by,
            "ci_target": self.config.ci_target,
            "ci_min_iterations": self.config.ci_min_iterations,
            **{k: s[k] for k in ("mean", "std", "cv", "min", "p50", "p90", "p95", "p99", "max")},
            "p50_ci95": s["p50_ci95"],
            "ci_method": s["ci_method"],
            "percentile_method": PERCENTILE_METHOD,
            "noise_warnings": s["noise_warnings"],
            "samples": [round(x, 6) for x in self.samples_ms],
        }


def summarize(samples_ms: list[float], seed: int = 0) -> dict[str, Any]:
    """Distribution statistics of latency samples (ms). Sample std (ddof=1); CV = std/mean."""
    if not samples_ms:
        raise ValueError("no latency samples")
    x = np.asarray(samples_ms, dtype=np.float64)
    mean = float(x.mean())
    std = float(x.std(ddof=1)) if x.size > 1 else 0.0
    p50, p90, p95, p99 = (float(v) for v in np.percentile(x, [50, 90, 95, 99], method=PERCENTILE_METHOD))  # type: ignore[call-overload]
    lo, hi = bootstrap_median_ci(x, seed=seed)
    stats = {
        "mean": mean,
        "std": std,
        "cv": std / mean if mean > 0 else 0.0,
        "min": float(x.min()),
        "p50": p50,
        "p90": p90,
        "p95": p95,
        "p99": p99,
        "max": float(x.max()),
        "p50_ci95": [lo, hi],
        "ci_method": f"percentile bootstrap of the median, {BOOTSTRAP_RESAMPLES} resamples, seed {seed}",
    }
    stats["noise_warnings"] = noise_warnings(stats, x.size)
    return stats


def bootstrap_median_ci(x: np.ndarray, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    if x.size == 1:
        return float(x[0]), float(x[0])
    # Resampled in chunks so memory stays ~8 MB whatever the sample count.
    medians = bootstrap_medians(x, np.random.default_rng(seed))
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(medians, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def noise_warnings(stats: dict[str, Any], n: int) -> list[str]:
    """pyperf-style self-criticism: say when the number should not be trusted as printed."""
    warnings = []
    if stats["cv"] >= NOISE_CV:
        warnings.append(f"std is {stats['cv']:.0%} of the mean (>= {NOISE_CV:.0%}): noisy measurement")
    if stats["p50"] > 0 and stats["max"] > 2.0 * stats["p50"]:
        warnings.append(f"max {stats['max']:.3f} ms is over 2x the median {stats['p50']:.3f} ms")
    if n < 10:
        warnings.append(f"only {n} timed iterations: percentiles above p90 are the max")
    return warnings


class LatencyTracker:
    """Context manager that times ``fn`` according to a ``LatencyConfig``.

    >>> with LatencyTracker(config) as tracker:
    ...     tracker.run(fn)
    >>> tracker.result.stats["p50"]
    """

    def __init__(self, config: LatencyConfig, device: str = "cpu", seed: int = 0) -> None:
        self.config = config
        self.device = device
        self.seed = seed
        self.result: LatencyResult | None = None

    def __enter__(self) -> LatencyTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def run(self, fn: Callable[[], Any]) -> LatencyResult:
        warm_n, warm_s = self._warmup(fn)
        if self.device == "cuda":
            samples, duration, stopped_by = self._time_cuda(fn)
            timer = "cuda_event"
        else:
            samples, duration, stopped_by = self._time_cpu(fn)
            timer = "perf_counter_ns"
        self.result = LatencyResult.from_values(
            samples,
            timer=timer,
            config=self.config,
            warmup_iterations=warm_n,
            warmup_s=warm_s,
            duration_s=duration,
            stopped_by=stopped_by,
            seed=self.seed,
        )
        return self.result

    def _warmup(self, fn: Callable[[], Any]) -> tuple[int, float]:
        cfg = self.config
        start = time.perf_counter()
        n = 0
        while n < cfg.warmup_iterations or (time.perf_counter() - start) < cfg.warmup_s:
            fn()
            n += 1
            if cfg.max_duration_s is not None and time.perf_counter() - start > cfg.max_duration_s:
                break
        self._synchronize()
        return n, time.perf_counter() - start

    def _synchronize(self) -> None:
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()

    def _stop_reason(self, n: int, elapsed_s: float) -> str | None:
        cfg = self.config
        if n >= cfg.max_iterations:
            return "max_iterations"
        if cfg.max_duration_s is not None and elapsed_s >= cfg.max_duration_s and n >= 1:
            return "max_duration"
        if n >= cfg.min_iterations and elapsed_s >= cfg.min_duration_s:
            return "min_iterations_and_duration"
        return None

    def _ci_reached(self, values: list[int] | list[float], elapsed_s: float) -> bool:
        cfg = self.config
        n = len(values)
        fewest = cfg.ci_min_iterations if cfg.ci_min_iterations is not None else max(cfg.min_iterations, 5)
        # Checked every 4th iteration where iterations are many (the check costs a numpy call).
        if cfg.ci_target is None or n < fewest or elapsed_s < cfg.ci_min_duration_s or (n >= 64 and n % 4):
            return False
        x = np.asarray(values, dtype=np.float64)
        med = float(np.median(x))
        return med > 0 and 1.96 * 1.2533 * float(x.std(ddof=1)) / (n**0.5) / med <= cfg.ci_target

    def _time_cpu(self, fn: Callable[[], Any]) -> tuple[list[float], float, str]:
        # The loop body is kept minimal: two clock reads and a list append (overhead < 1 us).
        clock = time.perf_counter_ns
        ticks: list[int] = []
        append = ticks.append
        start = clock()
        while True:
            t0 = clock()
            fn()
            t1 = clock()
            append(t1 - t0)
            elapsed = (t1 - start) * 1e-9
            stopped_by = self._stop_reason(len(ticks), elapsed)
            if not stopped_by and self._ci_reached(ticks, elapsed):
                stopped_by = "ci_target"
            if stopped_by:
                break
        return [t * 1e-6 for t in ticks], (clock() - start) * 1e-9, stopped_by

    def _time_cuda(self, fn: Callable[[], Any]) -> tuple[list[float], float, str]:
        import torch

        events: list[tuple[Any, Any]] = []
        start = time.perf_counter()
        while True:
            begin = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            begin.record()
            fn()
            end.record()
            events.append((begin, end))
            # Wall time decides when to stop; synchronising on the last event keeps the
            # host from racing far ahead of the device, so the duration is real GPU time.
            end.synchronize()
            stopped_by = self._stop_reason(len(events), time.perf_counter() - start)
            if not stopped_by and self.config.ci_target is not None and len(events) % 4 == 0:
                elapsed = time.perf_counter() - start
                if self._ci_reached([b.elapsed_time(e) for b, e in events], elapsed):
                    stopped_by = "ci_target"
            if stopped_by:
                break
        torch.cuda.synchronize()
        samples = [b.elapsed_time(e) for b, e in events]
        return samples, time.perf_counter() - start, stopped_by


# ---------------------------------------------------------------- intervals across processes

T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}
ACROSS_PROCESSES_METHOD = (
    "95% CI of the median across {k} fresh processes: the wider of a two-level (hierarchical) percentile "
    "bootstrap (processes, then iterations within each; {b} resamples, seed {seed}) and a Student-t interval "
    "on the process medians (t_{{0.975, k-1}} * sd / sqrt(k))"
)
WITHIN_PROCESS_NOTE = (
    "within one process only: iterations of one process vary less than runs in fresh processes; "
    "use repeats >= 3 for an interval that holds across processes"
)


def _t975(df: int) -> float:
    return T975.get(df, 1.96 + 2.4 / max(df, 1))  # df > 10: within 1% of the exact quantile


def bootstrap_medians(x: np.ndarray, rng: np.random.Generator, resamples: int = BOOTSTRAP_RESAMPLES) -> np.ndarray:
    """``resamples`` medians of ``x`` resampled with replacement (chunked: bounded memory)."""
    rows_per_chunk = max(1, 1_000_000 // x.size)
    medians = np.empty(resamples)
    for start in range(0, resamples, rows_per_chunk):
        rows = min(rows_per_chunk, resamples - start)
        idx = rng.integers(0, x.size, size=(rows, x.size))
        medians[start : start + rows] = np.median(x[idx], axis=1)
    return medians


def across_processes(groups: list[list[float]], seed: int = 0, level: float = 0.95) -> dict[str, Any]:
    """The median of process medians and a CI that includes process-to-process variation.

    ``groups``: each fresh process's timed samples (ms). One process gives the within-process
    bootstrap, labelled as such; two or more give the wider of a hierarchical bootstrap and a
    t-interval on the process medians."""
    if not groups or any(len(g) == 0 for g in groups):
        raise ValueError("every process needs at least one sample")
    arrays = [np.asarray(g, dtype=np.float64) for g in groups]
    medians = np.asarray([float(np.median(a)) for a in arrays])
    k = len(arrays)
    centre = float(np.median(medians))
    if k == 1:
        lo, hi = bootstrap_median_ci(arrays[0], seed=seed, level=level)
        return {
            "p50": centre,
            "p50_ci95": [lo, hi],
            "processes": 1,
            "process_medians": medians.tolist(),
            "ci_method": f"percentile bootstrap of the median, {BOOTSTRAP_RESAMPLES} resamples, seed {seed}; "
            + WITHIN_PROCESS_NOTE,
        }
    rng = np.random.default_rng(seed)
    per_process = np.stack([bootstrap_medians(a, rng) for a in arrays])  # (k, B)
    pick = rng.integers(0, k, size=(BOOTSTRAP_RESAMPLES, k))
    column = rng.integers(0, BOOTSTRAP_RESAMPLES, size=(BOOTSTRAP_RESAMPLES, k))
    boot = np.median(per_process[pick, column], axis=1)
    alpha = (1.0 - level) / 2.0
    b_lo, b_hi = (float(v) for v in np.quantile(boot, [alpha, 1.0 - alpha]))
    sd = float(medians.std(ddof=1))
    half = _t975(k - 1) * sd / np.sqrt(k)
    mean_of_medians = float(medians.mean())
    lo, hi = min(b_lo, mean_of_medians - half, centre), max(b_hi, mean_of_medians + half, centre)
    # Where another run of k fresh processes should put its median (a prediction interval: the
    # difference of two runs' medians has twice the variance of one).
    rerun_half = _t975(k - 1) * sd * np.sqrt(2.0 / k)
    return {
        "p50": centre,
        "p50_ci95": [max(lo, 0.0), hi],
        "p50_rerun95": [max(min(lo, centre - rerun_half), 0.0), max(hi, centre + rerun_half)],
        "processes": k,
        "process_medians": medians.tolist(),
        "between_process_cv": sd / mean_of_medians if mean_of_medians > 0 else 0.0,
        "spread": float((medians.max() - medians.min()) / centre) if centre > 0 else 0.0,
        "ci_method": ACROSS_PROCESSES_METHOD.format(k=k, b=BOOTSTRAP_RESAMPLES, seed=seed),
    }


def mean_across_processes(groups: list[list[float]]) -> tuple[float, list[float]]:
    """Mean latency over processes (each process's mean, averaged) and a t-interval on those means."""
    means = np.asarray([float(np.mean(g)) for g in groups])
    k = len(means)
    centre = float(means.mean())
    if k < 2:
        return centre, [centre, centre]
    half = _t975(k - 1) * float(means.std(ddof=1)) / np.sqrt(k)
    return centre, [max(centre - half, 0.0), centre + half]
