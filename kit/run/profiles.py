"""Measurement profiles: how long to warm up, how long to time, how many fidelity images.

``full`` is sized for the kit's 30-minute budget for the 16-model CPU matrix on 2 cores while
still giving a median with a bootstrap CI: ViT-H/14 FP32 at ~1.9 s a forward gets its
``min_iterations``; small models run for ``min_duration_s`` and collect hundreds of samples.
Measured on the reference 2-core Xeon the matrix takes 36.1 min, over the budget; timing is the
smaller part of it, ONNX export, static calibration and model builds of the four large models
the larger.
Top-1 agreement in ``full`` uses 64 images for classifiers under 30M parameters at <= 256 px
(DeiT-T/S, MobileViT-S/XXS: about 73 s over the matrix on the reference 2-core Xeon, estimated
from its per-forward medians), 4 elsewhere, where the cosine carries the fidelity. ViT-B/16 at
64 would add another ~83 s, over the matrix's budget.
``full`` stops a cell early (adaptive, MLPerf-style) once 1 s and 10 iterations are timed and the
median's CI half-width is within 1 %, which pays for the fidelity images above; a noisy cell still
runs to 2 s.
``quick`` is for smoke runs and tests. ``study`` follows the seeds' published protocol (100
warm-up and 1000 timed iterations) for GPU runs, where it is affordable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kit.measure.latency import LatencyConfig


@dataclass(frozen=True)
class Profile:
    name: str
    latency: LatencyConfig
    fidelity_images: int = 4
    cell_timeout_s: float = 900.0
    # Fresh processes per cell (kit.run.repeats): the latency CI includes process-to-process
    # variation only from 2 up; 1 records a within-process CI, labelled so.
    repeats: int = 1
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


PROFILES: dict[str, Profile] = {
    "quick": Profile(
        "quick",
        LatencyConfig(warmup_iterations=1, warmup_s=0.0, min_iterations=3, min_duration_s=0.2, max_duration_s=10.0),
        fidelity_images=2,
        cell_timeout_s=600.0,
    ),
    "full": Profile(
        "full",
        LatencyConfig(
            warmup_iterations=2,
            warmup_s=0.5,
            min_iterations=10,
            min_duration_s=2.0,
            max_duration_s=30.0,
            ci_target=0.01,
            ci_min_duration_s=1.0,
        ),
        fidelity_images=4,
        fidelity_images_cheap=64,
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
