"""``summary.csv`` in the column layout of the study's ``quantization_results.csv``.

Only measured columns: the study's ``simulated_accuracy`` and ``stability_score`` are not
measurements and have no column here. Extra measured columns (device, batch size, p50/p99, CV,
fidelity, status and reason) follow the study's columns.

Every figure comes from ``kit.results.figures`` and names its statistic in a column: the study's
columns use the study's statistic (``latency_ms`` is the mean, as the study averaged its
iterations, so ``speedup`` and ``throughput_sps`` are from means too, as validate computes them),
and ``peak_memory_mb`` / ``memory_reduction_pct`` are the inference-phase figures (the study's
"peak GPU memory"); ``speedup_p50`` is the report's ratio of medians. A document written before
memory phases has no inference-phase figure: those cells are blank, with the whole-cell peak in
``peak_memory_whole_cell_mb``.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from kit.documents import atomic_write_text
from kit.results import figures

STATISTIC = "mean"  # the study's: it averaged its iterations
PHASE = figures.DEFAULT_MEMORY_PHASE


def _fmt(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


STUDY_COLUMNS = [
    "model_name",
    "precision",
    "architecture",
    "size_category",
    "parameters",
    "latency_ms",
    "throughput_sps",
    "peak_memory_mb",
    "model_size_mb",
    "actual_quantization_method",
    "speedup",
    "memory_reduction_pct",
]
EXTRA_COLUMNS = [
    "device",
    "batch_size",
    "status",
    "latency_statistic",
    "memory_phase",
    "speedup_p50",
    "steady_memory_mb",
    "load_memory_mb",
    "peak_memory_whole_cell_mb",
    "latency_p50_ms",
    "latency_p99_ms",
    "latency_cv",
    "iterations",
    "fidelity_cosine",
    "top1_agreement",
    "top1_agreement_n",
    "top1_agreement_ci95",
    "fidelity_weights",
    "execution_provider",
    "reason",
]


def _baseline_key(doc: dict[str, Any]) -> tuple[str, str, int]:
    c = doc["cell"]
    return c["model"], c["device"], c["batch_size"]


def summary_rows(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from kit.models.registry import MODELS

    baselines = {_baseline_key(d): d for d in docs if d["cell"]["path"] == "torch-fp32" and d["status"] == "ok"}
    rows = []
    for doc in sorted(docs, key=lambda d: (d["cell"]["model"], d["cell"]["device"], d["cell"]["path"])):
        c = doc["cell"]
        spec = MODELS.get(c["model"])
        row: dict[str, Any] = {k: "" for k in STUDY_COLUMNS + EXTRA_COLUMNS}
        row.update(
            model_name=c["model"],
            precision=c["path"],
            architecture=getattr(spec, "published_architecture", "") if spec else "",
            size_category=getattr(spec, "published_category", "") if spec else "",
            device=c["device"],
            batch_size=c["batch_size"],
            status=doc["status"],
            reason=doc.get("reason") or "",
        )
        if doc["status"] == "ok":
            lat, base = doc["latency"], baselines.get(_baseline_key(doc))
            agreement = figures.top1_agreement(doc)
            row.update(
                parameters=(doc.get("model_info") or {}).get("param_count", ""),
                latency_ms=f"{lat['mean']:.4f}",
                latency_statistic=f"{STATISTIC} (latency_ms, speedup, throughput_sps); p50 in *_p50*",
                memory_phase=f"{PHASE} (peak_memory_mb, memory_reduction_pct)",
                latency_p50_ms=f"{lat['p50']:.4f}",
                latency_p99_ms=f"{lat['p99']:.4f}",
                latency_cv=f"{lat['cv']:.4f}",
                iterations=lat["iterations"],
                throughput_sps=_fmt(figures.throughput_sps(doc, STATISTIC), ".3f"),
                peak_memory_mb=_fmt(figures.memory_mb(doc, PHASE), ".2f"),
                steady_memory_mb=_fmt(figures.memory_mb(doc, "steady"), ".2f"),
                load_memory_mb=_fmt(figures.memory_mb(doc, "load"), ".2f"),
                peak_memory_whole_cell_mb=f"{doc['memory']['peak_mb']:.2f}",
                model_size_mb=f"{doc['size']['bytes'] / 2**20:.2f}" if doc.get("size") else "",
                actual_quantization_method=(doc.get("path_info") or {}).get("method", ""),
                execution_provider=(doc.get("path_info") or {}).get("execution_provider") or "",
                fidelity_cosine=f"{doc['fidelity']['cosine']:.6f}",
                top1_agreement=agreement.value if agreement else "",
                top1_agreement_n=(agreement.n or "") if agreement else "",
                top1_agreement_ci95=(
                    f"{agreement.ci95[0]:.4f}-{agreement.ci95[1]:.4f}" if agreement and agreement.ci95 else ""
                ),
                fidelity_weights="trained" if figures.trained_weights(doc) else figures.UNTRAINED_LABEL,
            )
            if base is not None:
                row["speedup"] = _fmt(figures.speedup(doc, base, STATISTIC), ".4f")
                row["speedup_p50"] = _fmt(figures.speedup(doc, base, "median"), ".4f")
                row["memory_reduction_pct"] = _fmt(figures.memory_reduction_pct(doc, base, PHASE), ".2f")
        rows.append(row)
    return rows


def write_summary_csv(out_dir: Path, docs: list[dict[str, Any]]) -> Path:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=STUDY_COLUMNS + EXTRA_COLUMNS)
    writer.writeheader()
    for row in summary_rows(docs):
        writer.writerow(row)
    target = Path(out_dir) / "summary.csv"
    atomic_write_text(target, buf.getvalue())
    return target
