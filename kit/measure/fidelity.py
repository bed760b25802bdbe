"""Fidelity of a path's output against the FP32 PyTorch reference on the same seeded inputs."""

from __future__ import annotations

from typing import Any

import numpy as np


def compare_outputs(reference: np.ndarray, candidate: np.ndarray, *, classifier: bool) -> dict[str, Any]:
    """Max/mean abs error, cosine (of the flattened batch and the worst row), top-1 agreement.

    Computed in float64 so the comparison itself adds no error. A non-finite candidate is
    reported as such (``finite: false``, cosine -1 sentinel is *not* used: NaN stays visible
    through ``finite`` and the errors are computed on the finite entries only).
    """
    ref = np.asarray(reference, dtype=np.float64)
    cand = np.asarray(candidate, dtype=np.float64)
    if ref.shape != cand.shape:
        raise ValueError(f"output shape {cand.shape} differs from the reference {ref.shape}")
    finite = bool(np.isfinite(cand).all())
    mask = np.isfinite(cand)
    diff = np.abs(ref - np.where(mask, cand, 0.0))[mask] if mask.any() else np.array([np.inf])
    ref_rows = ref.reshape(ref.shape[0], -1)
    cand_rows = np.where(mask, cand, 0.0).reshape(cand.shape[0], -1)
    row_cos = [_cosine(r, c) for r, c in zip(ref_rows, cand_rows)]
    result: dict[str, Any] = {
        "max_abs_error": float(diff.max()),
        "mean_abs_error": float(diff.mean()),
        "cosine": _cosine(ref_rows.ravel(), cand_rows.ravel()),
        "cosine_min": float(min(row_cos)),
        "top1_agreement": None,
        "finite": finite,
    }
    result["n"] = int(ref.shape[0])
    if classifier:
        agree = np.argmax(ref_rows, axis=1) == np.argmax(cand_rows, axis=1)
        result["top1_agreement"] = float(agree.mean())
        result["top1_agree_count"] = int(agree.sum())
    return result


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0.0 or nb == 0.0:
        # An all-zero output is a broken model, not a perfect match.
        return 1.0 if na == nb else 0.0
    return float(np.clip(np.dot(a, b) / (na * nb), -1.0, 1.0))
