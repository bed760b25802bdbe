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
    row_cos = [cosine(r, c) for r, c in zip(ref_rows, cand_rows)]
    result: dict[str, Any] = {
        "max_abs_error": float(diff.max()),
        "mean_abs_error": float(diff.mean()),
        "cosine": cosine(ref_rows, cand_rows),
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


def cosine(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Cosine of the flattened tensors (float64); 1.0 for two zero tensors, 0.0 for one: an
    all-zero output is a broken model, not a perfect match."""
    r = np.asarray(reference, dtype=np.float64).ravel()
    q = np.asarray(candidate, dtype=np.float64).ravel()
    nr, nq = float(np.linalg.norm(r)), float(np.linalg.norm(q))
    if nr == 0.0 or nq == 0.0:
        return 1.0 if nr == nq else 0.0
    return float(np.clip(np.dot(r, q) / (nr * nq), -1.0, 1.0))
