"""A path's PrepareContext for a model with seeded random weights, and the PyTorch FP32 output
to compare with: what the path tests build by hand otherwise."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from kit.models.build import build_model, output_of, weights_fingerprint
from kit.paths.base import PrepareContext


def prepare_context(spec: Any, cache: Path, work: Path, device: str = "cpu", **options: Any) -> PrepareContext:
    return PrepareContext(
        spec=spec,
        device=device,
        batch_size=1,
        build_float_model=lambda: build_model(spec, "random", 0)[0],
        work_dir=str(work),
        cache_dir=str(cache),
        weights_fingerprint=weights_fingerprint(spec, "random", 0),
        options=options,
    )


def torch_output(spec: Any, pixels: np.ndarray) -> np.ndarray:
    import torch

    model, _ = build_model(spec, "random", 0)
    return output_of(model, spec, torch.from_numpy(pixels)).float().numpy()
