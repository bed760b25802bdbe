"""``qkit compare A B``: two result sets, cell by cell, and what changed beyond noise.

Modelled on pyperf's ``compare_to``: a change is reported only where it is significant, and
"no significant change" is said otherwise, never a noisy ratio presented as a change.

Latency. Each result document keeps its timed samples (``latency.samples``). Per cell in both
sets: ratio = median(B) / median(A) (above 1: B is slower), its 95% CI from a percentile
bootstrap that resamples each side's samples independently (``RESAMPLES``, seeded: the same
inputs give the same output). A cell is ``slower`` or ``faster`` only when that CI excludes 1
*and* the ratio is beyond ``min_change`` (pyperf's ``--min-speed``); otherwise ``no significant
change``. Where a document has no samples, the ratio's CI is bounded from the two medians' own
95% CIs (``lo_B / hi_A`` to ``hi_B / lo_A``), conservative, and the row says so.
Caveat: a cell's samples are pooled from its fresh processes (up to 3, spread over the run in
rounds), so the CI covers the noise those processes met, not run-to-run noise beyond it (another
boot, another day); ``min_change`` is the guard for that.

Memory. The inference-phase peak where both documents have memory phases (`kit.results.figures`),
else the whole-cell peak of both, named so (one value per cell, no samples): ``higher`` / ``lower``
only beyond ``memory_change``.
Fidelity. Deterministic for a seed: a cosine moving by more than ``FIDELITY_EPS`` or a top-1
agreement that differs is ``changed``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

Doc = dict[str, Any]
Key = tuple[str, str, str, int]

RESAMPLES = 2000
SEED = 0
FIDELITY_EPS = 1e-4
SLOWER, FASTER, SAME = "slower", "faster", "no significant change"


@dataclass
class CellChange:
    key: Key
    verdict: str  # slower | faster | no significant change | not comparable
    ratio: float | None = None  # median(B) / median(A)
    ci95: tuple[float, float] | None = None
    p50_a: float | None = None
    p50_b: float | None = None
    n_a: int = 0
    n_b: int = 0
    method: str = "bootstrap of the samples"
    memory_ratio: float | None = None
    memory_verdict: str = SAME
    memory_phase: str = "inference"
    cosine_delta: float | None = None
    fidelity_verdict: str = SAME
    note: str = ""

    @property
    def name(self) -> str:
        m, p, d, bs = self.key
        return f"{m} {p} {d} bs{bs}"

    def to_dict(self) -> dict[str, Any]:
        m, p, d, bs = self.key
        return {
            "model": m,
            "path": p,
            "device": d,
            "batch_size": bs,
            "verdict": self.verdict,
            "ratio": self.ratio,
            "ci95": list(self.ci95) if self.ci95 else None,
            "p50_a_ms": self.p50_a,
            "p50_b_ms": self.p50_b,
            "samples": [self.n_a, self.n_b],
            "method": self.method,
            "memory_ratio": self.memory_ratio,
            "memory_verdict": self.memory_verdict,
            "memory_phase": self.memory_phase,
            "cosine_delta": self.cosine_delta,
            "fidelity_verdict": self.fidelity_verdict,
            "note": self.note,
        }


@dataclass
class Comparison:
    a: str
    b: str
    cells: list[CellChange] = field(default_factory=list)
    only_a: list[Key] = field(default_factory=list)
    only_b: list[Key] = field(default_factory=list)
    min_change: float = 0.02
    memory_change: float = 0.05

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for c in self.cells:
            out[c.verdict] = out.get(c.verdict, 0) + 1
        return out

    def slower_beyond(self, pct: float) -> list[CellChange]:
        return [c for c in self.cells if c.verdict == SLOWER and c.ratio is not None and c.ratio > 1 + pct / 100]

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "qkit-compare",
            "a": self.a,
            "b": self.b,
            "min_change": self.min_change,
            "memory_change": self.memory_change,
            "counts": self.counts(),
            "cells": [c.to_dict() for c in self.cells],
            "only_a": ["/".join(map(str, k)) for k in self.only_a],
            "only_b": ["/".join(map(str, k)) for k in self.only_b],
        }


def _key(doc: Doc) -> Key:
    c = doc["cell"]
    return c["model"], c["path"], c["device"], int(c["batch_size"])


def index(docs: list[Doc]) -> dict[Key, Doc]:
    """One document per cell: an ok one where there is one (the newest), else the newest."""
    out: dict[Key, Doc] = {}
    for d in sorted(docs, key=lambda d: (d.get("status") == "ok", str(d.get("finished_utc") or ""))):
        out[_key(d)] = d
    return out


def ratio_ci(a: list[float], b: list[float], resamples: int = RESAMPLES, seed: int = SEED) -> tuple[float, float]:
    """95% percentile-bootstrap CI of median(b) / median(a), each side resampled on its own."""
    rng = np.random.default_rng(seed)
    xa, xb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    ma = np.median(xa[rng.integers(0, len(xa), (resamples, len(xa)))], axis=1)
    mb = np.median(xb[rng.integers(0, len(xb), (resamples, len(xb)))], axis=1)
    r = mb / ma
    return float(np.percentile(r, 2.5)), float(np.percentile(r, 97.5))


def latency_change(da: Doc, db: Doc, min_change: float) -> CellChange:
    la, lb = da["latency"], db["latency"]
    sa, sb = list(la.get("samples") or []), list(lb.get("samples") or [])
    change = CellChange(_key(da), SAME, n_a=len(sa), n_b=len(sb))
    if len(sa) >= 2 and len(sb) >= 2:
        ma, mb = float(np.median(sa)), float(np.median(sb))
        lo, hi = ratio_ci(sa, sb)
    else:
        ma, mb = float(la["p50"]), float(lb["p50"])
        (alo, ahi), (blo, bhi) = la["p50_ci95"], lb["p50_ci95"]
        lo, hi = blo / ahi, bhi / alo
        change.method = "from the two medians' 95% CIs (no samples stored): conservative"
    change.p50_a, change.p50_b = ma, mb
    change.ratio = mb / ma if ma > 0 else None
    change.ci95 = (lo, hi)
    if change.ratio is not None and (lo > 1 or hi < 1) and abs(change.ratio - 1) > min_change:
        change.verdict = SLOWER if change.ratio > 1 else FASTER
    return change


def compare_docs(
    docs_a: list[Doc],
    docs_b: list[Doc],
    *,
    a: str = "A",
    b: str = "B",
    min_change: float = 0.02,
    memory_change: float = 0.05,
) -> Comparison:
    """Cell by cell: latency, memory and fidelity of B against A."""
    ia, ib = index(docs_a), index(docs_b)
    out = Comparison(a, b, min_change=min_change, memory_change=memory_change)
    out.only_a = sorted(set(ia) - set(ib))
    out.only_b = sorted(set(ib) - set(ia))
    for key in sorted(set(ia) & set(ib)):
        da, db = ia[key], ib[key]
        if da.get("status") != "ok" or db.get("status") != "ok":
            both = da.get("status") != "ok" and db.get("status") != "ok"
            verdict = "measured in neither" if both else "measured in one only"
            out.cells.append(CellChange(key, verdict, note=f"status {da.get('status')} in A, {db.get('status')} in B"))
            continue
        change = latency_change(da, db, min_change)
        pa, pb, change.memory_phase = _memory_pair(da, db)
        if pa and pb:
            change.memory_ratio = pb / pa
            if abs(change.memory_ratio - 1) > memory_change:
                change.memory_verdict = "higher" if change.memory_ratio > 1 else "lower"
        fa, fb = da.get("fidelity") or {}, db.get("fidelity") or {}
        if isinstance(fa.get("cosine"), (int, float)) and isinstance(fb.get("cosine"), (int, float)):
            change.cosine_delta = float(fb["cosine"]) - float(fa["cosine"])
            if abs(change.cosine_delta) > FIDELITY_EPS or fa.get("top1_agreement") != fb.get("top1_agreement"):
                change.fidelity_verdict = "changed"
        out.cells.append(change)
    return out


def compare_dirs(a: Path, b: Path, **kw: Any) -> tuple[Comparison, list[tuple[str, str]]]:
    """Load both result sets (strictly, through `kit.results.store`) and compare them."""
    from kit.results.store import load_results

    la, lb = load_results(a), load_results(b)
    return compare_docs(la.docs, lb.docs, a=str(a), b=str(b), **kw), list(la.corrupt) + list(lb.corrupt)


# ---------------------------------------------------------------- output


def _pct(r: float | None) -> str:
    return "-" if r is None else f"{(r - 1) * 100:+.1f}%"


def cell_line(c: CellChange) -> str:
    if c.ratio is None or c.ci95 is None:
        return f"{c.verdict:<22} {c.name}  {c.note}"
    extra = []
    if c.memory_verdict != SAME:
        extra.append(f"{c.memory_phase} memory {c.memory_verdict} ({_pct(c.memory_ratio)})")
    if c.fidelity_verdict != SAME:
        extra.append(f"fidelity changed (cosine {c.cosine_delta:+.2e})")
    if c.method != "bootstrap of the samples":
        extra.append(c.method)
    return (
        f"{c.verdict:<22} {c.name}  {c.p50_a:.4g} -> {c.p50_b:.4g} ms  x{c.ratio:.3f} "
        f"[{c.ci95[0]:.3f}, {c.ci95[1]:.3f}] ({_pct(c.ratio)})" + ("  " + "; ".join(extra) if extra else "")
    )


def text_lines(cmp: Comparison, show_all: bool = False, limit: int = 40) -> list[str]:
    counts = cmp.counts()
    lines = [
        f"compare: A = {cmp.a}, B = {cmp.b}: {len(cmp.cells)} cells in both, {len(cmp.only_a)} only in A, "
        f"{len(cmp.only_b)} only in B",
        "latency: median(B)/median(A) with a 95% bootstrap CI of the samples; a change is significant when the CI "
        f"excludes 1 and it exceeds {cmp.min_change:.0%} (the CI covers iteration noise within one process only)",
        "  " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items(), key=lambda kv: -kv[1])),
    ]
    changed = [c for c in cmp.cells if show_all or c.verdict in (SLOWER, FASTER)]
    changed.sort(key=lambda c: -(abs(math.log(c.ratio)) if c.ratio else 0))
    other = [
        c
        for c in cmp.cells
        if not show_all and c.verdict == SAME and (c.memory_verdict != SAME or c.fidelity_verdict != SAME)
    ]
    for c in (changed + other)[: None if show_all else limit]:
        lines.append("  " + cell_line(c))
    if not show_all and len(changed) + len(other) > limit:
        lines.append(f"  ... {len(changed) + len(other) - limit} more (--all)")
    mem = sum(1 for c in cmp.cells if c.memory_verdict != SAME)
    fid = sum(1 for c in cmp.cells if c.fidelity_verdict != SAME)
    lines.append(f"memory: {mem} cells moved more than {cmp.memory_change:.0%}; fidelity: {fid} cells changed")
    for label, keys in (("only in A", cmp.only_a), ("only in B", cmp.only_b)):
        if keys:
            shown = ", ".join("/".join(map(str, k)) for k in keys[:8])
            lines.append(f"{label} ({len(keys)}): {shown}" + (f", ... +{len(keys) - 8}" if len(keys) > 8 else ""))
    return lines


def markdown(cmp: Comparison) -> str:
    head = "| cell | verdict | A p50 ms | B p50 ms | B/A [95% CI] | memory B/A (phase) | cosine Δ |"
    rows = [head, "|---|---|---:|---:|---:|---:|---:|"]
    for c in cmp.cells:
        ci = f" [{c.ci95[0]:.3f}, {c.ci95[1]:.3f}]" if c.ci95 else ""
        rows.append(
            f"| {c.name} | {c.verdict} | {'-' if c.p50_a is None else f'{c.p50_a:.4g}'} | "
            f"{'-' if c.p50_b is None else f'{c.p50_b:.4g}'} | "
            f"{'-' if c.ratio is None else f'{c.ratio:.3f}'}{ci} | "
            f"{'-' if c.memory_ratio is None else f'{c.memory_ratio:.3f} ({c.memory_phase})'} | "
            f"{'-' if c.cosine_delta is None else f'{c.cosine_delta:+.1e}'} |"
        )
    intro = "\n".join(f"- {line.strip()}" for line in text_lines(cmp, limit=0)[:3])
    return f"# qkit compare\n\n{intro}\n\n![B/A latency per cell](compare.png)\n\n" + "\n".join(rows) + "\n"


def draw(cmp: Comparison, target: Path) -> Path | None:
    """One row per cell in both sets: B/A latency ratio with its CI, coloured by verdict."""
    cells = [c for c in cmp.cells if c.ratio is not None and c.ci95 is not None]
    if not cells:
        return None
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from kit.documents import atomic_write_bytes

    cells.sort(key=lambda c: c.ratio or 1.0)
    colours = {SLOWER: "#D55E00", FASTER: "#009E73", SAME: "#777777"}
    fig, ax = plt.subplots(figsize=(9, max(3.0, 0.16 * len(cells) + 1.2)))
    for i, c in enumerate(cells):
        assert c.ratio is not None and c.ci95 is not None  # filtered above
        lo, hi = c.ci95
        ax.plot([lo, hi], [i, i], color=colours.get(c.verdict, "#777777"), lw=1.5)
        ax.plot([c.ratio], [i], "o", ms=3.5, color=colours.get(c.verdict, "#777777"))
    ax.axvline(1.0, color="black", lw=0.8)
    ax.set_yticks(range(len(cells)))
    ax.set_yticklabels([c.name for c in cells], fontsize=6)
    ax.set_xscale("log")
    ax.set_xlabel("median latency B / A (log; > 1: B slower), 95% CI")
    ax.set_title(f"B = {Path(cmp.b).name} against A = {Path(cmp.a).name}", fontsize=9)
    handles = [plt.Line2D([], [], color=v, marker="o", lw=1.5, label=k) for k, v in colours.items()]
    ax.legend(handles=handles, fontsize=7, loc="lower right")
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100, facecolor="white")
    plt.close(fig)
    atomic_write_bytes(target, png.getvalue())
    return target


def _memory_pair(da: Doc, db: Doc) -> tuple[float | None, float | None, str]:
    """Both cells' memory in the same phase: inference where both have it, else the whole cell."""
    from kit.results import figures

    ia, ib = figures.memory_mb(da, "inference"), figures.memory_mb(db, "inference")
    if ia is not None and ib is not None:
        return ia, ib, "inference"
    return da["memory"].get("peak_mb"), db["memory"].get("peak_mb"), "whole-cell peak"
