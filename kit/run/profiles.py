"""Measurement profiles: how long to warm up and time, how many fresh processes, how many fidelity images.

``full`` is sized for the kit's 30-minute budget for the 16-model CPU matrix on 2 cores while
still giving a median with a CI that holds across processes:

- Timing stops early (adaptive, MLPerf-style) once the median's CI half-width is within 1 %: in
  a cell's first process from 5 iterations and 0.5 s (a steady slow cell, ViT-H/14 at 1-2.5 s a
  forward, stops there), else at 10 iterations and 1 s; a lone process (``--repeats 1``) from 10
  iterations and 1 s, else at 2 s.
- Fresh processes: a cell whose first median is at most ``REPEAT_MAX_MEDIAN_MS`` is measured in
  3 fresh processes, and its CI is the two-level one across them (`kit.run.repeats`). The first
  process times at least 10 iterations and 1 s (``first_of_many_latency``: its median is one of
  three, and the spread between them sets the interval); processes 2 and 3 only time it (the same
  warm-up, then at least 5 iterations and 0.5 s). A cell above the line keeps its first process
  alone: timed until its CI is within 1 % from 5 iterations, else for 10 iterations of over
  300 ms, longer than ``latency``'s 2 s. The processes of a cell run in rounds over the matrix
  (`kit.run.reproduce`). With one process per run, 10-25 % of rerun medians fell inside another
  run's CI on the reference 2-core Xeon; with three back to back 53-98 % (quiet and noisy hours);
  with three in rounds 87-97 % (`python -m kit.bench --only coverage`, 2026-12-05: 87, 97, 87, then
  95, 97), where independent processes would give about 89 % (`kit.bench.coverage.ideal_coverage`). The two more
  processes cost the matrix about 7 minutes there (99 of 128 CPU cells); the slower cells (the
  large models, NF4 on CPU) keep one process, labelled within-process.
- Top-1 agreement uses 64 images for classifiers under 30M parameters at <= 256 px (DeiT-T/S,
  MobileViT-S/XXS: about 73 s over the matrix on the reference 2-core Xeon), 4 elsewhere, where
  the cosine carries the fidelity. ViT-B/16 at 64 would add another ~83 s.

``quick`` is for smoke runs and tests (one process). ``study`` follows the seeds' published
protocol (100 warm-up and 1000 timed iterations) for GPU runs, where it is affordable (one
process: `--repeats` adds more).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from kit.measure.latency import LatencyConfig

# The full profile's budget for fresh processes (see the module docstring): on the reference 2-core
# Xeon (AMX), 99-101 of the 128 CPU cells have a median at most 300 ms, and their two more
# processes cost about 7 minutes over the matrix (30.6 min in all from an empty cache, 21.5 min
# with the run's cache, 2026-12-05). The line is not
# lower because seed 004's latency claim rests on DINOv2-B FP32 at about 220 ms, whose process
# medians differ by up to 10 %.
REPEAT_MAX_MEDIAN_MS = 300.0


@dataclass(frozen=True)
class Profile:
    name: str
    latency: LatencyConfig
    fidelity_images: int = 4
    cell_timeout_s: float = 900.0
    # Fresh processes per cell (kit.run.repeats): the latency CI includes process-to-process
    # variation only from 2 up; 1 records a within-process CI, labelled so.
    repeats: int = 1
    # Processes 2..N only time the cell (no fidelity, no batch sweep): ``repeat_latency`` keeps the
    # first process's warm-up (a different warm-up would be a different measurement) and times less,
    # since the interval then rests on the spread between process medians. None: ``latency``.
    repeat_latency: LatencyConfig | None = None
    # The first process when more may follow: its median is one of k, and the interval rests on
    # the spread between process medians, so it times to ``first_of_many_latency`` (None:
    # ``latency``). Its ``min_iterations`` at the repeat line must time at least as long as
    # ``latency`` would, so that a cell left with one process (above the line) and not steady
    # enough to stop on its CI sooner is timed as a single-process cell always was (checked in
    # __post_init__).
    first_of_many_latency: LatencyConfig | None = None
    # The budget: the extra processes run only where the first process's median is at most this
    # (None: always). A cell above it keeps one process and its document says why.
    repeat_max_median_ms: float | None = None
    sweep_latency: LatencyConfig = field(
        default_factory=lambda: LatencyConfig(
            warmup_iterations=1, warmup_s=0.0, min_iterations=3, min_duration_s=0.5, max_duration_s=20.0
        )
    )

    # Top-1 agreement needs enough images to mean something (its Wilson interval on 4 images
    # spans most of [0, 1]); where a forward is cheap, classifiers get ``fidelity_images_cheap``.
    fidelity_images_cheap: int | None = None
    cheap_max_params: int = 30_000_000
    cheap_max_image_size: int = 256

    def fidelity_images_for(self, spec: Any) -> int:
        """How many seeded images the fidelity comparison of ``spec`` uses under this profile."""
        cheap = (
            self.fidelity_images_cheap is not None
            and getattr(spec, "head", None) == "classifier"
            and getattr(spec, "real_params", 0) < self.cheap_max_params
            and getattr(spec, "image_size", 0) <= self.cheap_max_image_size
        )
        return max(self.fidelity_images, self.fidelity_images_cheap or 0) if cheap else self.fidelity_images

    def __post_init__(self) -> None:
        if self.fidelity_images < 1:
            raise ValueError("fidelity_images must be >= 1")
        if self.cell_timeout_s <= 0:
            raise ValueError("cell_timeout_s must be > 0")
        if self.repeats < 1:
            raise ValueError("repeats must be >= 1")
        if self.repeat_max_median_ms is not None and self.repeat_max_median_ms <= 0:
            raise ValueError("repeat_max_median_ms must be > 0")
        first = self.first_of_many_latency
        if first is not None:
            if self.repeat_max_median_ms is None:
                raise ValueError("first_of_many_latency needs repeat_max_median_ms (every cell would repeat)")
            if first.min_iterations * self.repeat_max_median_ms / 1000 < self.latency.min_duration_s:
                raise ValueError(
                    "first_of_many_latency would time a cell left with one process for less than latency does"
                )
            if (first.warmup_iterations, first.warmup_s) != (self.latency.warmup_iterations, self.latency.warmup_s):
                raise ValueError("first_of_many_latency must warm up as latency does")

    def first_latency(self, requested_repeats: int | None) -> LatencyConfig:
        """The latency configuration of a cell's first process, given ``--repeats`` (None: the
        profile's default): ``first_of_many_latency`` when more processes may follow."""
        more_may_follow = self.repeats > 1 if requested_repeats is None else requested_repeats > 1
        return (self.first_of_many_latency or self.latency) if more_may_follow else self.latency

    @property
    def timing_only_latency(self) -> LatencyConfig:
        """The latency configuration of processes 2..N of a cell."""
        return self.repeat_latency or self.latency

    def repeats_policy(self) -> str:
        """The profile's default number of processes per cell, in words (recorded in documents)."""
        if self.repeats == 1:
            return f"profile {self.name}: 1 process per cell"
        limit = (
            f" where the first process's median is at most {self.repeat_max_median_ms:g} ms"
            if self.repeat_max_median_ms is not None
            else ""
        )
        return f"profile {self.name}: {self.repeats} fresh processes per cell{limit}"


# The full profile's lone-process timing; its first-of-many and timing-only processes are this with
# less timing (`dataclasses.replace`), so all three warm up alike.
_FULL_LATENCY = LatencyConfig(
    warmup_iterations=2,
    warmup_s=0.5,
    min_iterations=10,
    min_duration_s=2.0,
    max_duration_s=30.0,
    ci_target=0.01,
    ci_min_duration_s=1.0,
)

PROFILES: dict[str, Profile] = {
    "quick": Profile(
        "quick",
        LatencyConfig(warmup_iterations=1, warmup_s=0.0, min_iterations=3, min_duration_s=0.2, max_duration_s=10.0),
        fidelity_images=2,
        cell_timeout_s=600.0,
    ),
    "full": Profile(
        "full",
        _FULL_LATENCY,
        fidelity_images=4,
        fidelity_images_cheap=64,
        cell_timeout_s=900.0,
        repeats=3,
        repeat_latency=replace(
            _FULL_LATENCY,
            min_iterations=5,
            min_duration_s=0.5,
            max_duration_s=10.0,
            ci_target=0.02,
            ci_min_duration_s=0.3,
        ),
        repeat_max_median_ms=REPEAT_MAX_MEDIAN_MS,
        first_of_many_latency=replace(_FULL_LATENCY, min_duration_s=1.0, ci_min_duration_s=0.5, ci_min_iterations=5),
    ),
    "study": Profile(
        "study",
        LatencyConfig(
            warmup_iterations=100, warmup_s=0.0, min_iterations=1000, min_duration_s=0.0, max_duration_s=None
        ),
        fidelity_images=8,
        cell_timeout_s=1800.0,
    ),
}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise KeyError(f"unknown profile {name!r}; valid profiles: {', '.join(PROFILES)}") from None
