"""Measurement profiles: how long to warm up, how long to time, how many fidelity images.

``full`` is sized for the kit's 30-minute budget for the 16-model CPU matrix on 2 cores while
still giving a median with a bootstrap CI: ViT-H/14 FP32 at ~1.9 s a forward gets its
``min_iterations``; small models run for ``min_duration_s`` and collect hundreds of samples.
Measured on the reference 2-core Xeon the matrix takes 36.1 min, over the budget; timing is the
smaller part of it, ONNX export, static calibration and model builds of the four large models
the larger.
``quick`` is for smoke runs and tests. ``study`` follows the seeds' published protocol (100
warm-up and 1000 timed iterations) for GPU runs, where it is affordable.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kit.measure.latency import LatencyConfig


@dataclass(frozen=True)
class Profile:
    name: str
    latency: LatencyConfig
    fidelity_images: int = 4
    cell_timeout_s: float = 900.0
    sweep_latency: LatencyConfig = field(
        default_factory=lambda: LatencyConfig(
            warmup_iterations=1, warmup_s=0.0, min_iterations=3, min_duration_s=0.5, max_duration_s=20.0
        )
    )

    def __post_init__(self) -> None:
        if self.fidelity_images < 1:
            raise ValueError("fidelity_images must be >= 1")
        if self.cell_timeout_s <= 0:
            raise ValueError("cell_timeout_s must be > 0")


PROFILES: dict[str, Profile] = {
    "quick": Profile(
        "quick",
        LatencyConfig(warmup_iterations=1, warmup_s=0.0, min_iterations=3, min_duration_s=0.2, max_duration_s=10.0),
        fidelity_images=2,
        cell_timeout_s=600.0,
    ),
    "full": Profile(
        "full",
        LatencyConfig(warmup_iterations=2, warmup_s=0.5, min_iterations=10, min_duration_s=2.0, max_duration_s=30.0),
        fidelity_images=4,
        cell_timeout_s=900.0,
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
