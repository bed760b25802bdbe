"""The two error measures, defined once.

Both compare a candidate tensor ``q`` with its FP32 reference ``r`` over every element of the
batch (flattened), in float64 so the comparison adds no error of its own:

* SQNR (dB) = 20 log10(||r|| / ||r - q||): signal to quantization noise, the definition of ORT's
  ``qdq_loss_debug.compute_signal_to_quantization_noice_ratio`` (which the ONNX Runtime diagnosis
  calls itself). Higher is better; every 6 dB is one bit. Exact equality gives +inf, reported as
  ``None`` in documents (JSON has no infinity) and as "exact" in tables.
* cosine = r.q / (||r|| ||q||): direction only; the kit's fidelity cosine (kit.measure.fidelity).
"""

from __future__ import annotations

import math

import numpy as np

from kit.measure.fidelity import cosine

__all__ = ["COSINE_DEFINITION", "SQNR_DEFINITION", "both", "cosine", "finite_or_none", "sqnr_db"]

SQNR_DEFINITION = "20*log10(||r|| / ||r - q||) over the flattened batch, float64 (r: FP32, q: quantized)"
COSINE_DEFINITION = "r.q / (||r|| ||q||) over the flattened batch, float64"


def sqnr_db(reference: np.ndarray, candidate: np.ndarray) -> float:
    """SQNR in dB of ``candidate`` against ``reference`` (+inf when they are equal)."""
    r = np.asarray(reference, dtype=np.float64).ravel()
    q = np.asarray(candidate, dtype=np.float64).ravel()
    if r.shape != q.shape:
        raise ValueError(f"shapes differ: {r.shape} vs {q.shape}")
    noise = float(np.linalg.norm(r - q))
    signal = float(np.linalg.norm(r))
    if noise == 0.0:
        return math.inf
    if signal == 0.0:
        return -math.inf
    return 20.0 * math.log10(signal / noise)


def both(reference: np.ndarray, candidate: np.ndarray) -> tuple[float, float]:
    """(SQNR dB, cosine) of ``candidate`` against ``reference``."""
    return sqnr_db(reference, candidate), cosine(reference, candidate)


def finite_or_none(value: float | None) -> float | None:
    """A JSON-safe number: infinities and NaN become None."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)
