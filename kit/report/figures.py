"""The report's figures, drawn with matplotlib's Agg backend from measured documents only.

Each ``draw_*`` function takes the documents (and verdicts where relevant) and an output file,
and returns a `Figure` record: the file it wrote with its pixel size, or ``None`` and the reason
it drew nothing. Sizes are fixed by ``figsize * DPI`` (no tight bounding box), so a test can
check a PNG's dimensions against the record.
"""

from __future__ import annotations

import io
import math
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display anywhere the kit runs; must precede pyplot

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.artist import Artist
from matplotlib.colors import Normalize
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from kit.documents import atomic_write_bytes
from kit.report import data

DPI = 100
Doc = dict[str, Any]
# Colour-blind-safe (Okabe-Ito) colours; paths keep one colour across every figure.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000", "#999999"]
EXTRA_COLOURS = ["#8C564B", "#17BECF", "#BCBD22", "#7F7F7F"]
DEVICE_COLOURS = {"cpu": "#0072B2", "cuda": "#E69F00"}
DEVICE_MARKERS = {"cpu": "o", "cuda": "s"}
VERDICT_COLOURS = {"pass": "#009E73", "fail": "#D55E00", "inconclusive": "#E69F00", "not-comparable": "#999999"}


@dataclass
class Figure:
    name: str
    title: str
    caption: str
    file: Path | None = None
    size_px: tuple[int, int] | None = None
    why_not: str | None = None


def path_colour(path: str) -> str:
    """One colour per path in every figure; a path the kit does not list gets a stable extra colour
    (crc32, not hash(): str hashes change between processes)."""
    if path in data.PATH_ORDER:
        return PALETTE[data.PATH_ORDER.index(path) % len(PALETTE)]
    return EXTRA_COLOURS[zlib.crc32(path.encode()) % len(EXTRA_COLOURS)]


def _save(fig: Any, target: Path, name: str, title: str, caption: str) -> Figure:
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=DPI, facecolor="white")
    atomic_write_bytes(target, png.getvalue())  # a report rebuilt over an old one never shows half a figure
    w, h = fig.get_size_inches()
    plt.close(fig)
    return Figure(name, title, caption, file=target, size_px=(round(w * DPI), round(h * DPI)))


def _ratio_formatter() -> FuncFormatter:
    return FuncFormatter(lambda v, _pos: f"{v:.3g}×")


# Ratios a reader knows by heart; a log axis gets those that fall in its range, the coarse ones
# only when the fine ones would crowd it.
_FINE_RATIOS = (
    0.01,
    0.02,
    0.05,
    0.1,
    0.2,
    0.25,
    0.3,
    0.4,
    0.5,
    0.6,
    0.7,
    0.8,
    0.9,
    1.0,
    1.1,
    1.25,
    1.5,
    2.0,
    2.5,
    3.0,
    4.0,
    5.0,
    7.0,
    10.0,
    20.0,
    50.0,
    100.0,
)
_COARSE_RATIOS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0)


def ratio_ticks(lo: float, hi: float) -> list[float]:
    fine = [t for t in _FINE_RATIOS if lo <= t <= hi]
    coarse = [t for t in _COARSE_RATIOS if lo <= t <= hi]
    return fine if len(fine) <= 7 or len(coarse) < 3 else coarse


def _log_ratio_axis(ax: Any, values: list[float]) -> None:
    """A log2 y axis for speedups: 0.5× and 2× sit equally far from 1×."""
    lo, hi = min([*values, 1.0]) / 1.25, max([*values, 1.0]) * 1.25
    ax.set_yscale("log", base=2)
    ax.set_ylim(lo, hi)
    ax.set_yticks(ratio_ticks(lo, hi))
    ax.yaxis.set_major_formatter(_ratio_formatter())
    ax.yaxis.set_minor_formatter(NullFormatter())


# ---------------------------------------------------------------- 1. speedup vs memory reduction


def draw_speedup_vs_memory(docs: list[Doc], target: Path) -> Figure:
    name, title = "speedup_vs_memory", "Speedup against memory reduction, per model and path"
    caption = (
        "Each point is one measured cell: speedup = torch-fp32 p50 / path p50 and peak-memory reduction "
        "vs torch-fp32, both on the same device and batch size (the study's scatter, from our numbers). "
        "Colour: path; marker: device. torch-fp32 itself sits at (0 %, 1×) by definition and is not drawn."
    )
    rows = [
        r
        for r in data.measured_rows(docs)
        if r["path"] != data.BASELINE_PATH and r["speedup"] is not None and r["memory_reduction_pct"] is not None
    ]
    if not rows:
        return Figure(name, title, caption, why_not=_no_ratio_reason(docs))
    fig, ax = plt.subplots(figsize=(9, 6), layout="constrained")
    paths = data.ordered((r["path"] for r in rows), data.path_rank)
    devices = data.ordered((r["device"] for r in rows), data.device_rank)
    for r in rows:
        ax.scatter(
            r["memory_reduction_pct"],
            r["speedup"],
            s=55,
            alpha=0.85,
            edgecolors="black",
            linewidths=0.5,
            color=path_colour(r["path"]),
            marker=DEVICE_MARKERS.get(r["device"], "D"),
            zorder=3,
        )
    ax.axhline(1.0, color="grey", lw=1, ls="--", zorder=1)
    ax.axvline(0.0, color="grey", lw=1, ls="--", zorder=1)
    _log_ratio_axis(ax, [r["speedup"] for r in rows])
    if len(rows) <= 16:  # few points: name them; many: the table carries the names
        for r in rows:
            ax.annotate(
                r["model"],
                (r["memory_reduction_pct"], r["speedup"]),
                textcoords="offset points",
                xytext=(5, 4),
                fontsize=7,
                color="#333333",
            )
    xs = [r["memory_reduction_pct"] for r in rows]
    span = max(max(xs) - min(xs), 5.0)
    ax.set_xlim(min(*xs, 0.0) - 0.1 * span, max(*xs, 0.0) + 0.1 * span)
    ax.set_xlabel("inference-phase memory reduction vs torch-fp32 (%)  →  less memory")
    ax.set_ylabel("speedup vs torch-fp32 (×, p50 ratio, log scale)  →  faster")
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    handles: list[Artist] = [Patch(color=path_colour(p), label=p) for p in paths]
    handles += [
        Line2D(
            [],
            [],
            marker=DEVICE_MARKERS.get(d, "D"),
            ls="",
            color="black",
            markerfacecolor="white",
            label=f"device: {d}",
        )
        for d in devices
    ]
    ax.legend(handles=handles, loc="best", fontsize=8, framealpha=0.9)
    return _save(fig, target, name, title, caption)


def _no_ratio_reason(docs: list[Doc]) -> str:
    ok = data.ok_docs(docs)
    if not ok:
        return "no cell was measured (every cell was skipped or failed)"
    if not data.baselines(ok):
        return "no ok torch-fp32 cell to divide by, so no speedup or memory reduction can be computed"
    return "no quantized or half-precision path was measured beside a torch-fp32 baseline on the same device"


# ---------------------------------------------------------------- 2. memory efficiency by method


def draw_memory_efficiency(docs: list[Doc], target: Path) -> Figure:
    name, title = "memory_efficiency", "Memory efficiency by method"
    caption = (
        "Bars: median reduction over the models measured, per path and device, against torch-fp32 on the "
        "same device; dots: one model each. Left: peak memory as the memory tracker read it (on CPU the "
        "process RSS, interpreter and libraries included). Right: bytes of weights the path holds."
    )
    rows = [r for r in data.measured_rows(docs) if r["path"] != data.BASELINE_PATH]
    metrics = [("memory_reduction_pct", "Peak memory"), ("weights_reduction_pct", "Weight memory")]
    metrics = [(k, label) for k, label in metrics if any(r[k] is not None for r in rows)]
    if not metrics:
        return Figure(name, title, caption, why_not=_no_ratio_reason(docs))
    fig, axes = plt.subplots(1, len(metrics), figsize=(6.5 * len(metrics), 5.5), layout="constrained", squeeze=False)
    devices = data.ordered((r["device"] for r in rows), data.device_rank)
    for ax, (key, label) in zip(axes[0], metrics):
        _memory_panel(ax, rows, key, devices)
        ax.set_title(f"{label} reduction vs torch-fp32")
    fig.suptitle(title, fontsize=13)
    handles: list[Artist] = [Patch(color=DEVICE_COLOURS.get(d, "grey"), label=f"device: {d}") for d in devices]
    handles.append(Line2D([], [], marker="o", ls="", color="black", markersize=4, label="one model"))
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=9)
    return _save(fig, target, name, title, caption)


def _memory_panel(ax: Any, rows: list[dict[str, Any]], key: str, devices: list[str]) -> None:
    vals = [r for r in rows if r[key] is not None]
    paths = data.ordered((r["path"] for r in vals), data.path_rank)
    width = 0.8 / max(len(devices), 1)
    for j, dev in enumerate(devices):
        for i, p in enumerate(paths):
            ys = [r[key] for r in vals if r["path"] == p and r["device"] == dev]
            if not ys:
                continue
            x = i - 0.4 + width * (j + 0.5)
            ax.bar(
                x,
                float(np.median(ys)),
                width * 0.9,
                color=DEVICE_COLOURS.get(dev, "grey"),
                alpha=0.75,
                edgecolor="black",
                linewidth=0.5,
            )
            ax.scatter([x] * len(ys), ys, s=12, color="black", zorder=3)
            ax.annotate(
                f"{np.median(ys):.1f}",
                (x, float(np.median(ys))),
                textcoords="offset points",
                xytext=(0, 3 if np.median(ys) >= 0 else -10),
                ha="center",
                fontsize=7,
            )
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(range(len(paths)), paths, rotation=25, ha="right")
    ax.set_xlabel("path (method)")
    ax.set_ylabel("reduction vs torch-fp32 (%)  (negative = uses more)")
    ax.grid(True, axis="y", alpha=0.3)


# ---------------------------------------------------------------- 3. model x path speedup heatmap


def draw_speedup_heatmap(docs: list[Doc], target: Path) -> Figure:
    name, title = "speedup_heatmap", "Speedup vs torch-fp32, model × path"
    caption = (
        "Speedup (torch-fp32 p50 / path p50) per model and path, one panel per device (the study's heatmap, "
        "from our numbers). Green is faster than FP32, red slower; grey cells were skipped or failed "
        "(reasons in the table below), blank ones were not in the run."
    )
    rows = [r for r in data.measured_rows(docs) if r["speedup"] is not None]
    if not rows:
        return Figure(name, title, caption, why_not=_no_ratio_reason(docs))
    panels = sorted({(r["device"], r["batch_size"]) for r in rows}, key=lambda k: (data.device_rank(k[0]), k[1]))
    models = data.ordered((r["model"] for r in rows), data.model_rank)
    status = {data.cell_key(d): d["status"] for d in docs}
    unmeasured = data.ordered({k[2] for k in status} - {dev for dev, _bs in panels}, data.device_rank)
    if unmeasured:
        caption += f" No panel for {', '.join(unmeasured)}: no speedup could be measured there."
    # Columns: every path that appears in the documents for that device, so skipped ones show as grey.
    max_cols = max(len({k[1] for k in status if k[2] == dev and k[3] == bs}) for dev, bs in panels)
    width = min(4 + 1.1 * max_cols * len(panels), 22)
    height = min(2.5 + 0.42 * len(models), 14)
    fig, axes = plt.subplots(1, len(panels), figsize=(width, height), layout="constrained", squeeze=False)
    top = max(abs(math.log2(r["speedup"])) for r in rows)
    bound = max(top, 0.5)
    norm = Normalize(-bound, bound)
    images = [_heatmap_panel(ax, rows, status, models, dev, bs, norm) for ax, (dev, bs) in zip(axes[0], panels)]
    for ax, (dev, bs) in zip(axes[0], panels):
        ax.set_title(f"device: {dev}, batch size {bs}", fontsize=11)
    cbar = fig.colorbar(images[-1], ax=axes[0].tolist(), shrink=0.8)
    ticks = ratio_ticks(2.0**-bound, 2.0**bound)
    cbar.set_ticks([math.log2(t) for t in ticks], labels=[f"{t:.3g}×" for t in ticks])
    cbar.set_label("speedup vs torch-fp32 (×, log scale)")
    fig.suptitle(title, fontsize=13)
    return _save(fig, target, name, title, caption)


def _heatmap_panel(
    ax: Any, rows: list[dict[str, Any]], status: dict[Any, str], models: list[str], dev: str, bs: int, norm: Normalize
) -> Any:
    paths = data.ordered((k[1] for k in status if k[2] == dev and k[3] == bs), data.path_rank)
    grid = np.full((len(models), len(paths)), np.nan)
    for r in rows:
        if r["device"] == dev and r["batch_size"] == bs and r["path"] in paths and r["model"] in models:
            grid[models.index(r["model"]), paths.index(r["path"])] = math.log2(r["speedup"])
    ax.set_facecolor("white")
    image = ax.imshow(grid, cmap="RdYlGn", norm=norm, aspect="auto")
    for i, m in enumerate(models):
        for j, p in enumerate(paths):
            st = status.get((m, p, dev, bs))
            if not np.isnan(grid[i, j]):
                # White text on the saturated ends of the colour map, black in the pale middle.
                dark = abs(grid[i, j]) > 0.6 * float(norm.vmax or 0.0)
                ax.text(
                    j,
                    i,
                    f"{2 ** grid[i, j]:.2f}×",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if dark else "black",
                )
            elif st in ("skipped", "failed") or (st == "ok"):
                label = st if st != "ok" else "no fp32"
                ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, color="#dddddd", zorder=0))
                ax.text(j, i, label, ha="center", va="center", fontsize=7, color="#555555")
    ax.set_xticks(range(len(paths)), paths, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(models)), models, fontsize=8)
    ax.set_xlabel("path (precision / method)")
    ax.set_ylabel("model")
    return image


# ---------------------------------------------------------------- 4. published vs measured

MAIN_METRIC_PANELS = 6  # the metrics with most claims get a scatter each; the rest share one panel
CLIP = 20.0  # the shared panel clips misses beyond 20 tolerance widths (drawn as triangles)


def draw_published_vs_measured(verdicts: list[dict[str, Any]] | None, target: Path) -> Figure:
    name, title = "published_vs_measured", "Published against measured, by metric"
    caption = (
        "One point per claim with a numeric published and measured value, coloured by validate's verdict. "
        "Scatter panels (the metrics with most claims): x = published, y = measured here, the dashed "
        "diagonal is agreement and the grey bar at each point is the claim's tolerance band. Last panel "
        "(other metrics): distance from the published value in tolerance half-widths, so the shaded "
        "band from -1 to +1 is within tolerance."
    )
    if verdicts is None:
        return Figure(name, title, caption, why_not="validate not run: no verdicts file to compare against")
    points = data.plottable_verdicts(verdicts)
    if not points:
        return Figure(
            name, title, caption, why_not="no verdict has both a numeric published and a numeric measured value"
        )
    counts = Counter(p["metric"] for p in points)
    main = [m for m, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if n >= 2][:MAIN_METRIC_PANELS]
    other = [p for p in points if p["metric"] not in main]
    ncols = max(1, min(3, len(main)))
    main_rows = math.ceil(len(main) / ncols)
    other_metrics = sorted({p["metric"] for p in other})
    other_h = 1.2 + 0.32 * len(other_metrics) if other else 0.0
    fig = plt.figure(figsize=(5.2 * max(ncols, 2), 4.6 * main_rows + other_h + 0.8), layout="constrained")
    grid = fig.add_gridspec(
        main_rows + (1 if other else 0), ncols, height_ratios=[4.6] * main_rows + ([other_h] if other else [])
    )
    for k, metric in enumerate(main):
        _published_panel(
            fig.add_subplot(grid[k // ncols, k % ncols]), [p for p in points if p["metric"] == metric], metric
        )
    if other:
        _normalised_panel(fig.add_subplot(grid[main_rows, :]), other, other_metrics)
    seen = data.ordered((p["verdict"] for p in points), _verdict_rank)
    handles = [
        Line2D(
            [],
            [],
            marker="o",
            ls="",
            color=VERDICT_COLOURS.get(v, "#444444"),
            label=f"{v} ({sum(p['verdict'] == v for p in points)})",
        )
        for v in seen
    ]
    handles.append(Line2D([], [], color="grey", lw=4, alpha=0.4, label="tolerance band"))
    handles.append(Line2D([], [], color="black", ls="--", lw=1, label="measured = published"))
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=9)
    fig.suptitle(title, fontsize=13)
    return _save(fig, target, name, title, caption)


def _verdict_rank(v: str) -> tuple[int, str]:
    return (data.VERDICT_ORDER.index(v) if v in data.VERDICT_ORDER else len(data.VERDICT_ORDER), v)


def compact(v: float) -> str:
    """Tick labels short enough not to collide: 20k, 5M, 0.5."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= scale:
            return f"{v / scale:g}{suffix}"
    return f"{v:g}"


def _plain_log_axes(ax: Any, lo: float, hi: float) -> None:
    # Default log labels (2×10^1, 3×10^1 ...) collide on short axes: 1-2-5 ticks on a short range,
    # decades on a long one, labelled compactly.
    subs = (1.0, 2.0, 5.0) if math.log10(hi / lo) <= 2.5 else (1.0,)
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(LogLocator(base=10, subs=subs))
        axis.set_major_formatter(FuncFormatter(lambda v, _pos: compact(v)))
        axis.set_minor_formatter(NullFormatter())


def _published_panel(ax: Any, points: list[dict[str, Any]], metric: str) -> None:
    xs = [p["claimed"] for p in points]
    ys = [p["measured"] for p in points]
    bands = [v for p in points if p["band"] for v in p["band"]]
    every = xs + ys + bands
    for p in sorted(points, key=lambda q: q["verdict"] == "not-comparable", reverse=True):
        # A not-comparable claim was shown, not judged: a tolerance band would suggest a test.
        if p["band"] and p["verdict"] != "not-comparable":
            ax.plot(
                [p["claimed"], p["claimed"]], p["band"], color="grey", lw=4, alpha=0.35, solid_capstyle="butt", zorder=1
            )
        ax.scatter(
            p["claimed"],
            p["measured"],
            s=26,
            color=VERDICT_COLOURS.get(p["verdict"], "#444444"),
            edgecolors="black",
            linewidths=0.4,
            zorder=3,
            alpha=0.9,
        )
    lo, hi = min(every), max(every)
    if all(v > 0 for v in every) and hi / lo > 20:  # values spanning decades (16 models' latencies) read in log
        lo, hi = lo / 1.3, hi * 1.3
        ax.set_xscale("log")
        ax.set_yscale("log")
        _plain_log_axes(ax, lo, hi)
    else:
        pad = (hi - lo) * 0.08 or abs(hi) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    ax.plot([lo, hi], [lo, hi], color="black", ls="--", lw=1, zorder=2)
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    unit = next((p["unit"] for p in points if p.get("unit")), None)
    suffix = f" ({unit})" if unit else ""
    ax.set_xlabel(f"published{suffix}")
    ax.set_ylabel(f"measured here{suffix}")
    ax.set_title(f"{metric} (n={len(points)})", fontsize=10)
    ax.grid(True, alpha=0.3)


def tolerance_distance(p: dict[str, Any]) -> float | None:
    """(measured - published) in tolerance half-widths; ±CLIP for a miss of an exact claim."""
    if not p["band"]:
        return None
    half = (p["band"][1] - p["band"][0]) / 2
    diff = p["measured"] - p["claimed"]
    if half <= 0:
        return 0.0 if diff == 0 else math.copysign(CLIP, diff)
    return max(-CLIP, min(CLIP, diff / half))


def _normalised_panel(ax: Any, points: list[dict[str, Any]], metrics: list[str]) -> None:
    ax.axvspan(-1, 1, color="grey", alpha=0.2, zorder=0)
    ax.axvline(0, color="black", ls="--", lw=1)
    skipped = 0
    for p in points:
        d = tolerance_distance(p)
        if d is None:
            skipped += 1
            continue
        clipped = abs(d) >= CLIP
        marker = (">" if d > 0 else "<") if clipped else "o"
        ax.scatter(
            d,
            metrics.index(p["metric"]),
            s=30,
            marker=marker,
            zorder=3,
            color=VERDICT_COLOURS.get(p["verdict"], "#444444"),
            edgecolors="black",
            linewidths=0.4,
        )
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlim(-CLIP * 1.5, CLIP * 1.5)
    ax.set_xticks([-20, -10, -5, -2, -1, 0, 1, 2, 5, 10, 20])
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:+g}" if v else "0"))
    ax.set_yticks(range(len(metrics)), metrics, fontsize=8)
    ax.set_ylim(-0.6, len(metrics) - 0.4)
    ax.invert_yaxis()
    ax.set_xlabel("(measured - published) / tolerance half-width  (symlog; triangles: beyond ±20)")
    ax.set_title(
        "other metrics" + (f" ({skipped} claims without a tolerance not shown)" if skipped else ""), fontsize=10
    )
    ax.grid(True, axis="x", alpha=0.3)


# ---------------------------------------------------------------- 5. latency distributions


def draw_latency_distributions(docs: list[Doc], target: Path) -> Figure:
    name, title = "latency_distributions", "Latency distributions per path"
    caption = (
        "Every timed iteration of each measured cell, one panel per model: box = p25 to p75, line = p50, "
        "whiskers = p1 to p99, dots beyond them. Colour: device. The y axis is logarithmic when a panel "
        "spans more than a factor of 20."
    )
    samples = {k: v for k, v in data.latency_samples(docs).items() if v}
    if not samples:
        return Figure(name, title, caption, why_not="no measured cell recorded latency samples")
    models = data.ordered((k[0] for k in samples), data.model_rank)
    many_batches = len({k[3] for k in samples}) > 1
    ncols = min(3, len(models))
    nrows = math.ceil(len(models) / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(5.2 * ncols, 3.9 * nrows + 0.7), layout="constrained", squeeze=False
    )
    for ax, model in zip(axes.flat, models):
        _latency_panel(ax, {k: v for k, v in samples.items() if k[0] == model}, model, many_batches)
    for ax in list(axes.flat)[len(models) :]:
        ax.set_visible(False)
    devices = data.ordered((k[2] for k in samples), data.device_rank)
    handles = [Patch(color=DEVICE_COLOURS.get(d, "grey"), alpha=0.6, label=f"device: {d}") for d in devices]
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=9)
    fig.suptitle(title, fontsize=13)
    return _save(fig, target, name, title, caption)


def _latency_panel(ax: Any, samples: dict[Any, list[float]], model: str, many_batches: bool) -> None:
    keys = sorted(samples, key=lambda k: (data.device_rank(k[2]), k[3], data.path_rank(k[1])))
    labels = [f"{k[1]}" + (f" bs{k[3]}" if many_batches else "") for k in keys]
    parts = ax.boxplot(
        [samples[k] for k in keys],
        whis=(1, 99),
        patch_artist=True,
        widths=0.6,
        flierprops={"markersize": 2, "alpha": 0.4},
        medianprops={"color": "black"},
    )
    for patch, k in zip(parts["boxes"], keys):
        patch.set_facecolor(DEVICE_COLOURS.get(k[2], "grey"))
        patch.set_alpha(0.6)
    flat = [x for v in samples.values() for x in v if x > 0]
    if flat and max(flat) / min(flat) > 20:
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: compact(v)))
    # A dotted line between the device groups: CPU and GPU boxes are not one series.
    for i in range(1, len(keys)):
        if keys[i][2] != keys[i - 1][2]:
            ax.axvline(i + 0.5, color="grey", ls=":", lw=1)
    ax.set_xticks(range(1, len(keys) + 1), labels, rotation=25, ha="right", fontsize=8)
    ax.set_ylabel("latency per forward (ms)")
    ax.set_xlabel("path")
    ax.set_title(model, fontsize=10)
    ax.grid(True, axis="y", alpha=0.3)


# ---------------------------------------------------------------- 6. CPU vs GPU INT8


def draw_int8_cpu_vs_gpu(docs: list[Doc], target: Path) -> Figure:
    name, title = "int8_cpu_vs_gpu", "INT8 paths on CPU and GPU: speedup vs FP32 on the same device"
    caption = (
        "Per INT8 path, one bar per device: geometric mean over models of torch-fp32 p50 / INT8 p50 on that "
        "device (dots: one model each). Above 1× the INT8 path is faster than FP32 on that device. "
        "A device with no bar says why on the plot and in the skipped-cells table."
    )
    rows = data.int8_comparison(docs)
    if not rows:
        return Figure(
            name, title, caption, why_not=f"no cell of an INT8 path ({', '.join(data.INT8_PATHS)}) was in the run"
        )
    if not any(r["speedups"] for r in rows):
        why = "; ".join(sorted({f"{r['path']} on {r['device']}: {x}" for r in rows for x in r["reasons"]}))
        return Figure(name, title, caption, why_not=f"no INT8 cell has a speedup to draw ({why})")
    paths = data.ordered((r["path"] for r in rows), data.path_rank)
    devices = data.ordered((r["device"] for r in rows), data.device_rank)
    fig, ax = plt.subplots(figsize=(max(7.5, 2.4 * len(paths) + 3), 5.5), layout="constrained")
    width = 0.8 / len(devices)
    values = [v for r in rows for v in r["speedups"].values()]
    _log_ratio_axis(ax, values)
    base_y = ax.get_ylim()[0]
    for r in rows:
        i, j = paths.index(r["path"]), devices.index(r["device"])
        x = i - 0.4 + width * (j + 0.5)
        colour = DEVICE_COLOURS.get(r["device"], "grey")
        if r["geomean"] is None:
            ax.text(
                x,
                base_y * 1.05,
                f"{r['device']}: {r['status']}",
                rotation=90,
                ha="center",
                va="bottom",
                fontsize=9,
                color="#555555",
            )
            continue
        # Bars grow from 1× (no change) so faster and slower read as up and down.
        ax.bar(x, r["geomean"] - 1.0, width * 0.9, bottom=1.0, color=colour, alpha=0.75, edgecolor="black", lw=0.5)
        ys = list(r["speedups"].values())
        ax.scatter([x] * len(ys), ys, s=14, color="black", zorder=3)
        # The label sits on the 1× side of the bar, clear of the per-model dots.
        ax.annotate(
            f"{r['geomean']:.2f}× (n={len(ys)})",
            (x, max(*ys, r["geomean"], 1.0)),
            textcoords="offset points",
            xytext=(0, 5),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax.axhline(1.0, color="black", lw=1)
    ax.set_xticks(range(len(paths)), paths)
    ax.set_xlim(-0.6, len(paths) - 0.4)
    ax.set_xlabel("INT8 path")
    ax.set_ylabel("speedup vs torch-fp32 on the same device (×, log scale)")
    ax.set_title(title)
    ax.grid(True, axis="y", alpha=0.3)
    handles: list[Artist] = [
        Patch(color=DEVICE_COLOURS.get(d, "grey"), alpha=0.75, label=f"device: {d}") for d in devices
    ]
    handles.append(Line2D([], [], marker="o", ls="", color="black", markersize=4, label="one model"))
    ax.legend(handles=handles, loc="best", fontsize=9)
    return _save(fig, target, name, title, caption)


# ---------------------------------------------------------------- all of them

FigureFn = Callable[[Path], Figure]


def draw_all(docs: list[Doc], verdicts: list[dict[str, Any]] | None, out_dir: Path) -> list[Figure]:
    """Draw every figure into ``out_dir``; a figure that fails to draw is reported, not raised."""
    out_dir = Path(out_dir)
    jobs: list[tuple[str, str, FigureFn]] = [
        ("speedup_vs_memory", "Speedup against memory reduction", lambda t: draw_speedup_vs_memory(docs, t)),
        ("memory_efficiency", "Memory efficiency by method", lambda t: draw_memory_efficiency(docs, t)),
        ("speedup_heatmap", "Speedup vs torch-fp32, model × path", lambda t: draw_speedup_heatmap(docs, t)),
        ("published_vs_measured", "Published against measured", lambda t: draw_published_vs_measured(verdicts, t)),
        ("latency_distributions", "Latency distributions per path", lambda t: draw_latency_distributions(docs, t)),
        ("int8_cpu_vs_gpu", "INT8 paths on CPU and GPU", lambda t: draw_int8_cpu_vs_gpu(docs, t)),
    ]
    figures = []
    for name, title, fn in jobs:
        target = out_dir / f"{name}.png"
        if target.exists():
            target.unlink()  # a figure that is not drawn this time must not survive from an older report
        try:
            figures.append(fn(target))
        except Exception as exc:  # one broken figure never hides the rest of the report
            plt.close("all")
            figures.append(Figure(name, title, "", why_not=f"drawing failed: {type(exc).__name__}: {exc}"))
    return figures


__all__ = ["DPI", "Figure", "draw_all"]
