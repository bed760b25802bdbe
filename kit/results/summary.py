"""``summary.csv`` in the column layout of the study's ``quantization_results.csv``.

Only measured columns: the study's ``simulated_accuracy`` and ``stability_score`` are not
measurements and have no column here. Extra measured columns (device, batch size, p50/p99, CV,
fidelity, status and reason) follow the study's columns.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from kit.documents import atomic_write_text

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
    "latency_p50_ms",
    "latency_p99_ms",
    "latency_cv",
    "iterations",
    "fidelity_cosine",
    "top1_agreement",
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
            row.update(
                parameters=(doc.get("model_info") or {}).get("param_count", ""),
                latency_ms=f"{lat['mean']:.4f}",
                latency_p50_ms=f"{lat['p50']:.4f}",
                latency_p99_ms=f"{lat['p99']:.4f}",
                latency_cv=f"{lat['cv']:.4f}",
                iterations=lat["iterations"],
                throughput_sps=f"{doc['throughput']['samples_per_s']:.3f}",
                peak_memory_mb=f"{doc['memory']['peak_mb']:.2f}",
                model_size_mb=f"{doc['size']['bytes'] / 2**20:.2f}" if doc.get("size") else "",
                actual_quantization_method=(doc.get("path_info") or {}).get("method", ""),
                execution_provider=(doc.get("path_info") or {}).get("execution_provider") or "",
                fidelity_cosine=f"{doc['fidelity']['cosine']:.6f}",
                top1_agreement=doc["fidelity"].get("top1_agreement")
                if doc["fidelity"].get("top1_agreement") is not None
                else "",
            )
            if base is not None:
                row["speedup"] = f"{base['latency']['p50'] / lat['p50']:.4f}"
                row["memory_reduction_pct"] = (
                    f"{100.0 * (1.0 - doc['memory']['peak_mb'] / base['memory']['peak_mb']):.2f}"
                )
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
