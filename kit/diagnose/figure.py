"""The figure: local and accumulated error by depth (matplotlib, Agg backend, PNG)."""

from __future__ import annotations

import io
import math
import os
from pathlib import Path

from kit.diagnose.records import Diagnosis

# SQNR of an exact match is +inf; drawn at this ceiling so the point stays visible.
SQNR_CEILING_DB = 120.0


def _db(value: float) -> float:
    if math.isnan(value):
        return float("nan")
    return min(value, SQNR_CEILING_DB)


def write_figure(diagnosis: Diagnosis, target: str | os.PathLike[str]) -> Path:
    """Two panels against layer index (execution order): SQNR (dB) and 1 - cosine (log scale),
    local and accumulated; layers of the keep-in-float set marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from kit.documents import atomic_write_bytes

    layers = diagnosis.by_depth()
    x = [layer.index for layer in layers]
    kept = set(diagnosis.keep_in_float.layers) if diagnosis.keep_in_float else set()
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(max(7.0, 0.12 * len(x) + 4), 7), sharex=True)
    ax1.plot(x, [_db(la.local_sqnr_db) for la in layers], "o-", ms=3, label="local (layer fed FP32 inputs)")
    ax1.plot(x, [_db(la.accumulated_sqnr_db) for la in layers], "s-", ms=3, label="accumulated (whole quantized model)")
    ax1.set_ylabel("SQNR vs FP32 (dB, higher is better)")
    floor = 1e-9
    ax2.semilogy(x, [max(1 - la.local_cosine, floor) for la in layers], "o-", ms=3, label="local")
    ax2.semilogy(x, [max(1 - la.accumulated_cosine, floor) for la in layers], "s-", ms=3, label="accumulated")
    ax2.set_ylabel("1 - cosine vs FP32 (lower is better)")
    ax2.set_xlabel("quantized layer index (execution order)")
    marks = [la.index for la in layers if la.name in kept]
    for ax in (ax1, ax2):
        for i in marks:
            ax.axvline(i, color="tab:red", alpha=0.25, lw=3)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    keep = diagnosis.keep_in_float
    sub = ""
    if keep is not None:
        sub = (
            f"\nkeep in float (red): {len(keep.layers)} layers -> verified cosine {keep.verified_cosine:.4f} "
            f"(target {keep.target_cosine}, {'reached' if keep.reached else 'not reached'})"
        )
    weights = "untrained (seeded random) weights" if diagnosis.weights == "random" else f"weights {diagnosis.weights}"
    fig.suptitle(
        f"{diagnosis.model} / {diagnosis.path}: error by depth, {diagnosis.inputs['images']} seeded images, "
        f"{weights}\nfinal output cosine {diagnosis.final['cosine']:.4f}{sub}",
        fontsize=9,
    )
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return atomic_write_bytes(target, buf.getvalue())
