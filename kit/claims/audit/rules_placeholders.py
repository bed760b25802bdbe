"""Placeholders: metrics presented as results that no experiment produced.

* A per-row metric with one value across every model and precision is a constant, not a
  measurement (accuracy cannot be identical to two decimals for 16 architectures at 4 bit widths).
* A results column the study describes but never reports a value of.
* An aggregate over a per-model metric the study never reports.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator

from kit.claims.audit.claim import AuditClaim, Study, path_key
from kit.claims.audit.findings import Hit
from kit.claims.audit.numbers import fmt
from kit.claims.audit.registry import rule

MIN_ROWS = 8
MIN_MODELS = 4


@rule(
    "placeholders.constant_metric",
    family="placeholders",
    severity="error",
    convention=f"a per-row metric with >= {MIN_ROWS} rows over >= {MIN_MODELS} models and >= 2 "
    "precisions, all one value, is a placeholder",
)
def constant_metric(study: Study) -> Iterator[Hit]:
    """A metric constant across all experiments, presented as a result."""
    by: dict[tuple[str, str], list[AuditClaim]] = defaultdict(list)
    for c in study.claims:
        if c.kind == "cell" and c.is_number and c.model:
            by[(study.group_of(c.source_file), c.metric)].append(c)
    for (_g, metric), claims in sorted(by.items()):
        models = {c.model for c in claims}
        paths = {path_key(c) for c in claims}
        values = {round(c.num, 9) for c in claims}
        if len(claims) < MIN_ROWS or len(models) < MIN_MODELS or len(paths) < 2 or len(values) != 1:
            continue
        v = next(iter(values))
        files = sorted({c.source_file for c in claims})
        yield Hit(
            f"{metric} is {fmt(v)} in all {len(claims)} rows ({len(models)} models x {len(paths)} precisions): "
            "a constant, not a measurement",
            f"{metric} = {fmt(v)} for every row in {', '.join(files)}; "
            f"paths: {', '.join(sorted(p or '' for p in paths))}",
            claims[:8],
        )


# Words a study uses for a column or metric -> the metric ids the claims would carry.
_COLUMN_METRICS = {
    "latency_ms": ("latency_ms",),
    "latency": ("latency_ms",),
    "throughput_sps": ("throughput_sps",),
    "throughput": ("throughput_sps",),
    "peak_memory_mb": ("peak_memory_mb",),
    "memory usage": ("peak_memory_mb",),
    "model_size_mb": ("model_size_mb",),
    "model size": ("model_size_mb",),
    "simulated_accuracy": ("simulated_accuracy",),
    "accuracy simulation": ("simulated_accuracy",),
    "stability_score": ("stability_score",),
    "speedup": ("speedup",),
    "memory_reduction_pct": ("memory_reduction_pct",),
}


@rule(
    "placeholders.unreported_column",
    family="placeholders",
    severity="warning",
    convention="a results column or metric the study lists (or defines, like 'stability_score: "
    "0.95 = excellent') must have per-model values somewhere in the study",
)
def unreported_column(study: Study) -> Iterator[Hit]:
    """Result columns the study describes but never reports."""
    reported = defaultdict(set)
    for c in study.claims:
        if c.kind == "cell" and c.model:
            reported[study.group_of(c.source_file)].add(c.metric)
    missing: dict[tuple[str, str], list[AuditClaim]] = defaultdict(list)
    for c in study.metric("column_names", "metric_names"):
        if not isinstance(c.value, list):
            continue
        g = study.group_of(c.source_file)
        for name in c.value:
            if not isinstance(name, str):
                continue
            for metric in _COLUMN_METRICS.get(name.strip().lower(), ()):
                if metric not in reported[g]:
                    missing[(g, metric)].append(c)
    # a metric the study defines with a scale but never reports (stability_score: 0.95 = excellent)
    for c in study.claims:
        g = study.group_of(c.source_file)
        if c.kind == "study" and c.metric in _COLUMN_METRICS and c.metric not in reported[g]:
            missing[(g, c.metric)].append(c)
    for (_g, metric), claims in sorted(missing.items()):
        uniq = list({c.id: c for c in claims}.values())
        yield Hit(
            f"'{metric}' is listed as a result ({', '.join(sorted({c.source_file for c in uniq}))}) but no "
            "model or experiment has a reported value",
            "; ".join(f"{c.id}: {c.text.strip()[:80]}" for c in uniq[:4]),
            uniq[:6],
        )


_ALIAS = re.compile(r"_(fraction|drop_pp|delta_pp)$")


@rule(
    "placeholders.unbacked_aggregate",
    family="placeholders",
    severity="info",
    convention="an aggregate over a per-model metric of which the study reports no value cannot be "
    "recomputed from the study: it rests on numbers not shown",
)
def unbacked_aggregate(study: Study) -> Iterator[Hit]:
    """Aggregates (means, bounds) over a per-model metric the study never reports."""
    reported = {(study.group_of(c.source_file), c.metric) for c in study.claims if c.kind == "cell"}
    for c in study.claims:
        if c.kind != "aggregate":
            continue
        metric = c.over.get("metric")
        if not isinstance(metric, str) or _ALIAS.search(metric):
            continue  # fraction/drop forms are recomputed from their pct/delta rows
        if (study.group_of(c.source_file), metric) in reported:
            continue
        yield Hit(
            f"'{c.text.strip(' -*')}': {c.aggregate} of {metric}, but the study reports no per-model {metric} at all",
            f"{c.id}: {c.value}; no cell claim of {metric} in this study",
            [c],
        )


_UNMEASURED = re.compile(r"power|energy|watt|carbon", re.IGNORECASE)


@rule(
    "placeholders.unmeasured_quantity",
    family="placeholders",
    severity="info",
    convention="a figure for a quantity the study never measures (power, energy) rests on no data of "
    "the study; reported once per quantity",
)
def unmeasured_quantity(study: Study) -> Iterator[Hit]:
    """Headline figures for quantities no experiment measured (e.g. power consumption)."""
    measured = {c.metric for c in study.claims if c.kind == "cell"}
    for c in study.claims:
        if c.kind != "study" or not _UNMEASURED.search(c.metric):
            continue
        if any(_UNMEASURED.search(m) for m in measured):
            continue
        yield Hit(
            f"'{c.text.strip(' -*')}': the study measures no {c.metric.split('_')[0]}, so this figure has "
            "no data behind it",
            f"{c.id}: {c.value}; no per-model {c.metric.split('_')[0]} measurement in any file",
            [c],
        )
