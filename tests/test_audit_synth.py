"""A self-consistent synthetic study, written in the claims format and loaded through
``kit.claims.load``: audit must find nothing at warning or error level in it, and each rule must
fire when one defect of its kind is injected.

The study is built the way an honest benchmark would be: exact numbers first (latencies from a
compute model that respects the GPU's peak, memory from the real parameter counts), every
printed figure rounded from them, every aggregate computed from the exact rows.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kit.claims.audit import counts, load_rules, run_audit
from kit.claims.load import load_claims
from kit.models.flops import model_flops
from kit.models.registry import get_model

GPU = "NVIDIA GeForce RTX 4090"
MAIN, SUMMARY, SIDE = "100_aaaa.txt", "101_bbbb.txt", "102_cccc.txt"
PATHS = {"fp32": "torch-fp32", "fp16": "torch-fp16", "int8_bitsandbytes": "bnb-int8", "int4_nf4": "bnb-nf4"}
TIERS = {
    "Foundation Models (300M+ params)": ["vit-huge-patch14-2020", "vit-large-patch16-2020", "dinov2-large-2023"],
    "Production Models (~86M params)": ["vit-base-224-production", "dino-vitb16-production", "vit-base-384-production"],
    "Edge Models (<25M params)": ["deit-small-distilled-224-edge", "deit-tiny-ultra-efficient", "mobilevit-xxs-edge"],
}
MODELS = [m for ms in TIERS.values() for m in ms]
TOL = {"kind": "relative", "value": 0.1, "reason": "synthetic: run-to-run noise"}


# ------------------------------------------------------------------------------- exact data


def _exact() -> dict[str, dict[str, dict[str, float]]]:
    """model -> label -> {latency_ms, peak_mb (decimal MB), ...}: a physically consistent run."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for m in MODELS:
        spec, fc = get_model(m), model_flops(m)
        params, linear = spec.real_params, fc.linear_params
        other = params - linear
        act = 5e6 + fc.flops / 1e4  # activation bytes, grows with the work
        rows = {
            "fp32": (0.30 + fc.flops / 20e12 * 1e3, params * 4 + act),
            "fp16": (0.30 + fc.flops / 60e12 * 1e3, params * 2 + act / 2),
            "int8_bitsandbytes": (1.00 + fc.flops / 15e12 * 1e3, linear + other * 2 + act / 2 + 2e6),
            "int4_nf4": (1.20 + fc.flops / 12e12 * 1e3, linear * 0.55 + other * 2 + act / 2 + 2e6),
        }
        out[m] = {}
        for label, (lat, peak_b) in rows.items():
            out[m][label] = {"latency_ms": lat, "peak_memory_mb": peak_b / 1e6, "throughput_sps": 1000 / lat}
        base = out[m]["fp32"]
        for r in out[m].values():
            r["speedup"] = base["latency_ms"] / r["latency_ms"]
            r["memory_reduction_pct"] = 100 * (1 - r["peak_memory_mb"] / base["peak_memory_mb"])
    return out


def _r(x: float, nd: int) -> float:
    return round(x, nd)


def _fmt(x: float, nd: int) -> str:
    return f"{x:.{nd}f}"


def claim(
    cid: str,
    section: str,
    text: str,
    subject: dict[str, Any],
    metric: str,
    value: Any,
    unit: str = "",
    label: str | None = None,
    path: str | None = None,
    device: str | None = None,
    batch: int | None = None,
    table: tuple[str, str, str] | None = None,
) -> dict[str, Any]:
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    c: dict[str, Any] = {
        "id": cid,
        "section": section,
        "text": text,
        "subject": subject,
        "metric": metric,
        "value": value,
        "unit": unit,
        "published_label": label,
        "kit_path": path,
        "device": device,
        "batch_size": batch,
        "tolerance": TOL if numeric else {"kind": "exact", "value": 0, "reason": "a label"},
        "comparability": "hardware-bound" if device else "portable",
        "supported": True,
        "unsupported_reason": None,
    }
    if table:
        c["table_cell"] = {"table": table[0], "row": table[1], "column": table[2]}
    return c


def cell(
    cid: str,
    section: str,
    model: str,
    metric: str,
    value: float,
    nd: int,
    label: str,
    unit: str,
    table: str | None = None,
) -> dict[str, Any]:
    text = f"{model} {_fmt(value, nd)} [column {label}]"
    return claim(
        cid,
        section,
        text,
        {"kind": "cell", "model": model},
        metric,
        _r(value, nd),
        unit,
        label,
        PATHS.get(label),
        "cuda",
        1,
        (table, model, label) if table else None,
    )


def agg(
    cid: str,
    section: str,
    text: str,
    kind: str,
    metric: str,
    paths: str | list[str],
    models: list[str],
    value: Any,
    how: str = "computed from the rows",
    params: dict | None = None,
    label: str | None = None,
):
    subject: dict[str, Any] = {
        "kind": "aggregate",
        "aggregate": kind,
        "over": {"metric": metric, "kit_path": paths, "models": models},
        "how": how,
    }
    if params:
        subject["params"] = params
    return claim(cid, section, text, subject, metric, value, "", label, None, "cuda", 1)


def study(
    cid: str, section: str, text: str, metric: str, value: Any, item: str | None = None, unit: str = ""
) -> dict[str, Any]:
    subject = {"kind": "study", **({"item": item} if item else {})}
    return claim(cid, section, text, subject, metric, value, unit)


def _doc(source: str, title: str, gpu: str, claims: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "schema_version": "1",
        "source_file": source,
        "title": title,
        "published_hardware": {"gpu": gpu, "memory_gb": 24},
        "claims": claims,
    }


def main_doc(ex: dict) -> dict[str, Any]:
    claims = []
    lat_t, mem_t, thr_t = "Latency (ms)", "Peak Memory (MB)", "Throughput (samples/s)"
    for m in MODELS:
        for label in PATHS:
            r = ex[m][label]
            claims.append(cell(f"100.lat.{m}.{label}", lat_t, m, "latency_ms", r["latency_ms"], 2, label, "ms", lat_t))
            claims.append(cell(f"100.sp.{m}.{label}", lat_t, m, "speedup", r["speedup"], 2, label, "x", lat_t))
            claims.append(
                cell(f"100.mem.{m}.{label}", mem_t, m, "peak_memory_mb", r["peak_memory_mb"], 2, label, "MB", mem_t)
            )
            claims.append(
                cell(
                    f"100.red.{m}.{label}",
                    mem_t,
                    m,
                    "memory_reduction_pct",
                    r["memory_reduction_pct"],
                    2,
                    label,
                    "%",
                    mem_t,
                )
            )
            claims.append(
                cell(
                    f"100.thr.{m}.{label}",
                    thr_t,
                    m,
                    "throughput_sps",
                    r["throughput_sps"],
                    2,
                    label,
                    "samples/s",
                    thr_t,
                )
            )
            if label != "fp32":
                gain = 100 * (r["throughput_sps"] / ex[m]["fp32"]["throughput_sps"] - 1)
                claims.append(
                    cell(f"100.gain.{m}.{label}", thr_t, m, "throughput_change_pct", gain, 1, label, "%", thr_t)
                )
    # the same latency printed again in a second, coarser table
    for m in MODELS:
        claims.append(
            cell(
                f"100.again.{m}",
                "Summary table",
                m,
                "latency_ms",
                ex[m]["fp16"]["latency_ms"],
                1,
                "fp16",
                "ms",
                "Summary table",
            )
        )
    return _doc(MAIN, "Synthetic results", GPU, claims)


def _stat_rows(ex: dict, metric: str, label: str) -> np.ndarray:
    return np.array([ex[m][label][metric] for m in MODELS])


def summary_doc(ex: dict) -> dict[str, Any]:
    sec = "Statistics"
    sp = _stat_rows(ex, "speedup", "fp16")
    red8 = _stat_rows(ex, "memory_reduction_pct", "int8_bitsandbytes")
    red16 = _stat_rows(ex, "memory_reduction_pct", "fp16")
    lat16 = _stat_rows(ex, "latency_ms", "fp16")
    c: list[dict[str, Any]] = [
        agg("101.sp.mean", sec, f"- Mean: {sp.mean():.2f}x", "mean", "speedup", "torch-fp16", MODELS, _r(sp.mean(), 2)),
        agg(
            "101.sp.median",
            sec,
            f"- Median: {np.median(sp):.2f}x",
            "median",
            "speedup",
            "torch-fp16",
            MODELS,
            _r(float(np.median(sp)), 2),
        ),
        agg(
            "101.sp.std",
            sec,
            f"- Std: {sp.std(ddof=1):.2f}",
            "std",
            "speedup",
            "torch-fp16",
            MODELS,
            _r(float(sp.std(ddof=1)), 2),
            params={"ddof": 1},
        ),
        agg(
            "101.sp.p95",
            sec,
            f"- 95th percentile: {np.percentile(sp, 95):.2f}x",
            "percentile",
            "speedup",
            "torch-fp16",
            MODELS,
            _r(float(np.percentile(sp, 95)), 2),
            params={"percentile": 95, "method": "linear"},
        ),
        agg(
            "101.sp.range",
            sec,
            f"- Range: {sp.min():.2f}x - {sp.max():.2f}x",
            "range",
            "speedup",
            "torch-fp16",
            MODELS,
            [_r(sp.min(), 2), _r(sp.max(), 2)],
        ),
        agg(
            "101.red8.mean",
            sec,
            f"- INT8 mean reduction: {red8.mean():.1f}%",
            "mean",
            "memory_reduction_pct",
            "bnb-int8",
            MODELS,
            _r(red8.mean(), 1),
        ),
        agg(
            "101.red16.within",
            sec,
            f"- FP16 saves {math.floor(red16.min())}-{math.ceil(red16.max())}%",
            "all_within",
            "memory_reduction_pct",
            "torch-fp16",
            MODELS,
            [math.floor(red16.min()), math.ceil(red16.max())],
        ),
        agg(
            "101.sp.atleast",
            sec,
            f"- FP16 is at least {math.floor(sp.min() * 10) / 10:.1f}x faster",
            "at_least",
            "speedup",
            "torch-fp16",
            MODELS,
            math.floor(sp.min() * 10) / 10,
        ),
        agg(
            "101.lat.atmost",
            sec,
            f"- FP16 under {math.ceil(lat16.max())} ms",
            "at_most",
            "latency_ms",
            "torch-fp16",
            MODELS,
            float(math.ceil(lat16.max())),
        ),
    ]
    top = [MODELS[i] for i in np.argsort(-sp)[:3]]
    c.append(agg("101.sp.top", sec, "top 3 FP16 speedups", "top", "speedup", "torch-fp16", MODELS, top))
    for tier, members in TIERS.items():
        key = tier.split()[0].lower()
        vals = {m: ex[m]["fp16"]["speedup"] for m in members}
        c.append(
            agg(
                f"101.leader.{key}",
                "Leaders",
                f"{key} leader",
                "leader",
                "speedup",
                "torch-fp16",
                members,
                max(vals, key=vals.get),
            )
        )
        c.append(
            study(
                f"101.cat.{key}.count",
                "Model Categories",
                f"**{tier}:** ({len(members)} listed)",
                "category_model_count",
                len(members),
                tier,
                "count",
            )
        )
        c.append(study(f"101.cat.{key}.members", "Model Categories", f"**{tier}:**", "category_members", members, tier))
        for m in members:
            p = get_model(m).real_params
            mill = float(f"{p / 1e6:.3g}")
            c.append(
                claim(
                    f"101.cat.{key}.{m}.params",
                    "Model Categories",
                    f"- {m} ({mill:g}M)",
                    {"kind": "cell", "model": m},
                    "parameters",
                    mill * 1e6,
                    "params",
                )
            )
    mean_sp = float(sp.mean())
    n32 = 6
    n16 = math.ceil(n32 / mean_sp)
    c += [
        study("101.models", "Overview", "- 9 models", "model_count", 9, unit="count"),
        study("101.precisions", "Overview", "- 4 precisions", "precision_count", 4, unit="count"),
        study("101.experiments", "Overview", "- 36 experiments", "experiment_count", 36, unit="count"),
        study("101.csv.rows", "Data", "results.csv (37 rows)", "row_count", 37, "results.csv", "rows"),
        study("101.csv.experiments", "Data", "results.csv: 36 experiments", "experiment_count", 36, "results.csv"),
        study(
            "101.csv.columns",
            "Data",
            "columns",
            "column_names",
            [
                "model_name",
                "precision",
                "latency_ms",
                "throughput_sps",
                "peak_memory_mb",
                "speedup",
                "memory_reduction_pct",
            ],
            "results.csv",
        ),
        study("101.iterations", "Protocol", "- 1000 iterations", "measured_iterations", 1000, unit="iterations"),
        study("101.warmup", "Protocol", "- 100 warmup", "warmup_iterations", 100, unit="iterations"),
        study("101.success", "Overview", "- Success rate: 100%", "success_rate_pct", 100, unit="%"),
        study("101.sw.torch", "Software", "PyTorch 2.4.0", "software_version", "2.4.0", "torch"),
        study("101.sw.python", "Software", "Python 3.11", "software_version", "3.11", "python"),
        study("101.sw.cuda", "Software", "CUDA 12.1", "software_version", "12.1", "cuda"),
        study("101.sw.bnb", "Software", "bitsandbytes 0.43.1", "software_version", "0.43.1", "bitsandbytes"),
        study("101.hw", "Hardware", f"- GPU: {GPU}", "hardware", GPU, "gpu"),
        study("101.timestamp", "Header", "Timestamp: 1725000000", "timestamp", 1725000000, unit="unix s"),
        study("101.updated", "Footer", "Last updated: September 2024", "timestamp", "2024-09"),
        study(
            "101.method.int8",
            "Methods",
            "INT8: LLM.int8 via bitsandbytes",
            "method_description",
            "LLM.int8 (vector-wise INT8 with FP16 outliers) via bitsandbytes",
            "int8_bitsandbytes",
        ),
        study(
            "101.cost.fp32",
            "Costs",
            f"| g5 | {n32} instances | {n16} instances | $1,000 | $12,000 | [fp32]",
            "instances_required",
            n32,
            "g5",
        ),
        study(
            "101.cost.fp16",
            "Costs",
            f"| g5 | {n32} instances | {n16} instances | $1,000 | $12,000 | [fp16]",
            "instances_required",
            n16,
            "g5",
        ),
        study("101.cost.monthly", "Costs", "| g5 | $1,000 | $12,000 | [monthly]", "savings_usd_per_month", 1000, "g5"),
        study("101.cost.annual", "Costs", "| g5 | $1,000 | $12,000 | [annual]", "savings_usd_per_year", 12000, "g5"),
        study("101.tco.cost", "Costs", "- Development cost: $50,000", "cost_usd", 50000),
        study("101.tco.gain", "Costs", "- Cost reduction: $100,000/year", "savings_usd_per_year", 100000),
        study("101.tco.roi", "Costs", "- ROI: 500% over 3 years", "roi_pct", 500, "3 years"),
    ]
    return _doc(SUMMARY, "Synthetic summary", GPU, c)


def side_doc() -> dict[str, Any]:
    """A separate one-model study on another GPU: dynamic INT8 on the CPU, accuracy, model size."""
    m = "vit-base-224-production"
    spec, fc = get_model(m), model_flops(m)
    size32 = spec.real_params * 4 / 1e6
    size8 = (fc.linear_params + (spec.real_params - fc.linear_params) * 4) / 1e6 * 1.01
    sec = "Results"

    def c(cid: str, metric: str, value: float, nd: int, label: str, path: str, device: str | None) -> dict:
        text = f"| {metric} | {_fmt(value, nd)} |"
        return claim(
            cid,
            sec,
            text,
            {"kind": "cell", "model": m},
            metric,
            _r(value, nd),
            "",
            label,
            path,
            device,
            1 if device else None,
        )

    lat32, lat8 = 12.0 + fc.flops / 4e12 * 1e3, 40.0
    claims = [
        c("102.lat.fp32", "latency_ms", lat32, 1, "original", "torch-fp32", "cuda"),
        c("102.lat.int8", "latency_ms", lat8, 1, "dynamic", "torch-int8-dynamic", "cpu"),
        c("102.size.fp32", "model_size_mb", size32, 1, "original", "torch-fp32", None),
        c("102.size.int8", "model_size_mb", size8, 1, "dynamic", "torch-int8-dynamic", None),
        c("102.size.red", "size_reduction_pct", 100 * (1 - size8 / size32), 1, "dynamic", "torch-int8-dynamic", None),
        c("102.top1.fp32", "top1_accuracy_pct", 81.07, 2, "original", "torch-fp32", None),
        c("102.top1.int8", "top1_accuracy_pct", 80.63, 2, "dynamic", "torch-int8-dynamic", None),
        c("102.top1.delta", "top1_accuracy_delta_pp", 80.63 - 81.07, 2, "dynamic", "torch-int8-dynamic", None),
        c("102.patch", "patch_size", 16, 0, "original", None, None),
        study("102.dataset", "Data", "ImageNet-1k validation", "dataset", "ImageNet-1k"),
        study("102.crop", "Data", "center crop 224", "center_crop_px", 224),
        study(
            "102.method",
            "Method",
            "torch.ao.quantization.quantize_dynamic on CPU",
            "method_description",
            "torch.ao.quantization.quantize_dynamic(model, {nn.Linear}) on the CPU",
            "dynamic quantization",
        ),
        study("102.sw.torch", "Software", "PyTorch 2.0.1", "software_version", "2.0.1", "torch"),
        study("102.sw.tv", "Software", "torchvision 0.15.2", "software_version", "0.15.2", "torchvision"),
        study("102.sw.py", "Software", "Python 3.10", "software_version", "3.10", "python"),
    ]
    return _doc(SIDE, "Synthetic side study", "NVIDIA T4", claims)


def synthetic_docs() -> list[dict[str, Any]]:
    ex = _exact()
    return [main_doc(ex), summary_doc(ex), side_doc()]


def load_docs(tmp_path: Path, docs: list[dict[str, Any]]):
    d = tmp_path / "expected"
    d.mkdir(exist_ok=True)
    for doc in docs:
        (d / (doc["source_file"][:-4] + ".json")).write_text(json.dumps(doc), encoding="utf-8")
    return load_claims(d)


def audit_docs(tmp_path: Path, docs: list[dict[str, Any]]):
    """The audit of ``docs``; a rule that crashed fails the test (a crash would pass a silence check)."""
    findings = run_audit(load_docs(tmp_path, docs))
    assert not [f.message for f in findings if f.kind == "error"]
    return findings


# ------------------------------------------------------------------------------- mutations


def find(docs: list[dict], cid: str) -> dict[str, Any]:
    for d in docs:
        for c in d["claims"]:
            if c["id"] == cid:
                return c
    raise KeyError(cid)


def add(docs: list[dict], source: str, c: dict[str, Any]) -> None:
    next(d for d in docs if d["source_file"] == source)["claims"].append(c)


def set_value(docs: list[dict], cid: str, value: Any, text: str | None = None) -> None:
    c = find(docs, cid)
    c["value"] = value
    c["text"] = text if text is not None else f"{c['subject'].get('model', '')} {value}"


def _scale(docs, cid, factor, nd=2):
    c = find(docs, cid)
    set_value(docs, cid, round(c["value"] * factor, nd))


M0, BIG, TINY = MODELS[3], "vit-huge-patch14-2020", "deit-tiny-ultra-efficient"


def m_arith_speedup(d):
    _scale(d, f"100.sp.{M0}.fp16", 1.3)


def m_arith_throughput(d):
    _scale(d, f"100.thr.{M0}.fp16", 1.2)


def m_arith_memory_reduction(d):
    set_value(d, f"100.red.{M0}.int8_bitsandbytes", 12.34)


def m_arith_percent_change(d):
    _scale(d, f"100.gain.{M0}.fp16", 1.5, 1)


def m_arith_difference(d):
    set_value(d, "102.top1.delta", -1.5, "| top1 | -1.50 |")


def m_arith_annualised(d):
    set_value(d, "101.cost.annual", 15000, "| g5 | $1,000 | $15,000 | [annual]")


def m_arith_annualised_roi(d):
    set_value(d, "101.tco.roi", 1000, "- ROI: 1000% over 3 years")


def m_stats_central(d):
    c = find(d, "101.sp.mean")
    set_value(d, "101.sp.mean", round(c["value"] + 0.2, 2), f"- Mean: {c['value'] + 0.2:.2f}x")


def m_stats_std(d):
    c = find(d, "101.sp.std")
    set_value(d, "101.sp.std", round(c["value"] * 0.7, 2), f"- Std: {c['value'] * 0.7:.2f}")


def m_stats_percentile(d):
    c = find(d, "101.sp.p95")
    set_value(d, "101.sp.p95", round(c["value"] * 0.8, 2), f"- 95th percentile: {c['value'] * 0.8:.2f}x")


def m_stats_range(d):
    c = find(d, "101.sp.range")
    lo, hi = c["value"]
    set_value(d, "101.sp.range", [lo, round(hi * 0.8, 2)], f"- Range: {lo:.2f}x - {hi * 0.8:.2f}x")


def m_stats_bounds(d):
    c = find(d, "101.red16.within")
    hi = c["value"][1]
    set_value(d, "101.red16.within", [hi + 2, hi + 4], f"- FP16 saves {hi + 2}-{hi + 4}%")


def m_stats_ranking(d):
    c = find(d, "101.sp.top")
    c["value"] = [*c["value"][:2], min(MODELS, key=lambda m: _exact()[m]["fp16"]["speedup"])]


def m_stats_mixed_paths(d):
    add(
        d,
        SUMMARY,
        agg(
            "101.mixed",
            "Statistics",
            "- avg speedup 1.00x",
            "mean",
            "speedup",
            ["torch-fp16", "bnb-int8"],
            MODELS,
            round(
                float(np.mean([_exact()[m][p]["speedup"] for m in MODELS for p in ("fp16", "int8_bitsandbytes")])), 2
            ),
        ),
    )


def m_stats_baseline(d):
    ex = _exact()
    add(
        d,
        SUMMARY,
        agg(
            "101.withbase",
            "Statistics",
            "- avg",
            "mean",
            "speedup",
            ["torch-fp32", "torch-fp16"],
            MODELS,
            round(float(np.mean([ex[m][p]["speedup"] for m in MODELS for p in ("fp32", "fp16")])), 2),
        ),
    )


def m_cons_cell_values(d):
    _scale(d, f"100.again.{M0}", 1.2, 1)


def m_cons_study_values(d):
    add(d, MAIN, study("100.models", "Overview", "- 10 models", "model_count", 10, unit="count"))


def m_cons_category_threshold(d):
    c = find(d, "101.cat.edge.members")
    c["value"] = [*c["value"], "vit-base-224-production"]


def m_cons_category_membership(d):
    add(
        d,
        MAIN,
        claim(
            "100.tier",
            "Tiers",
            "| vit-base-224-production | Edge |",
            {"kind": "cell", "model": "vit-base-224-production"},
            "size_category",
            "Edge Models",
        ),
    )


def m_cons_category_bands(d):
    add(
        d,
        MAIN,
        study(
            "100.cat.edge",
            "Tiers",
            "**Edge Models (<50M params):** (3)",
            "category_model_count",
            3,
            "Edge Models (<50M params)",
        ),
    )


def m_cons_model_list(d):
    c = find(d, "101.cat.edge.members")
    c["value"] = c["value"][:2]


def m_cons_method_row_count(d):
    # 12 of 9 models: not a whole number of rows per model (a count of two paths' rows is row_label's)
    add(d, SUMMARY, study("101.rows.bnb", "Methods", "- bnb: 12 models", "method_row_count", 12, "Bitsandbytes"))


def m_cons_implied_speedup(d):
    set_value(d, "101.cost.fp16", 1, "| g5 | 6 instances | 1 instances |")


def m_phys_peak(d):
    set_value(d, f"100.mem.{BIG}.fp32", 1000.0)


def m_phys_unit(d):
    wb = get_model(BIG).real_params * 4
    v = round(wb / 1e6 * 0.97, 2)  # between the MiB and the MB reading of the weights
    set_value(d, f"100.mem.{BIG}.fp32", v)
    set_value(d, f"100.red.{BIG}.fp16", round(100 * (1 - find(d, f"100.mem.{BIG}.fp16")["value"] / v), 2))
    for label in ("int8_bitsandbytes", "int4_nf4"):
        set_value(d, f"100.red.{BIG}.{label}", round(100 * (1 - find(d, f"100.mem.{BIG}.{label}")["value"] / v), 2))


def m_phys_model_size(d):
    set_value(d, "102.size.fp32", 86.4, "| model_size_mb | 86.4 |")


def m_phys_nf4(d):
    # NF4 rows that differ from INT8 and still save nothing (identical rows: method.indistinguishable)
    for m in MODELS:
        set_value(d, f"100.mem.{m}.int4_nf4", round(find(d, f"100.mem.{m}.int8_bitsandbytes")["value"] + 0.5, 2))


def m_nf4_identical(d):
    for m in MODELS:
        set_value(d, f"100.mem.{m}.int4_nf4", find(d, f"100.mem.{m}.int8_bitsandbytes")["value"])


def m_phys_roofline(d):
    set_value(d, f"100.lat.{BIG}.fp32", 0.5)


def m_phys_overhead(d):
    for m in MODELS:
        set_value(d, f"100.lat.{m}.fp32", 3.7)


def m_phys_params(d):
    set_value(d, f"101.cat.foundation.{BIG}.params", 500e6, f"- {BIG} (500M)")


def m_phys_arch(d):
    set_value(d, "102.patch", 14, "- Patch Size: 14x14")


def m_method_device(d):
    find(d, "102.lat.int8")["device"] = "cuda"


def m_method_label_conflict(d):
    add(
        d,
        SUMMARY,
        study(
            "101.method.int8code",
            "Code",
            "quantize_dynamic(...)",
            "method_description",
            "torch.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)",
            "int8",
        ),
    )


def m_method_indistinguishable(d):
    m_nf4_identical(d)


def m_method_row_label(d):
    add(
        d,
        SUMMARY,
        study(
            "101.rows.int8",
            "Methods",
            "- Bitsandbytes Int8 Success: 18 models",
            "method_row_count",
            18,
            "Bitsandbytes Int8 Success",
        ),
    )


def m_method_accuracy(d):
    for cid in ("102.top1.fp32", "102.top1.int8"):
        find(d, cid)["subject"]["model"] = "dinov2-base-2023"


def m_method_code(d):
    add(
        d,
        SUMMARY,
        study(
            "101.code",
            "Code",
            "bnb.Linear8bitLt(child.in_features, child.out_features)",
            "method_description",
            "setattr(module, name, bnb.Linear8bitLt(child.in_features, child.out_features, has_fp16_weights=False))",
            "int8 code",
        ),
    )


def m_prov_compat(d):
    set_value(d, "101.sw.python", "3.13", "Python 3.13")  # torch 2.4 ships cp38..cp312


def m_prov_dates(d):
    set_value(d, "101.updated", "2024-06", "Last updated: June 2024")


def m_prov_release(d):
    set_value(d, "101.sw.bnb", "0.45.0", "bitsandbytes 0.45.0")


def m_prov_rows(d):
    set_value(d, "101.csv.rows", 40, "results.csv (40 rows)")


def m_prov_matrix(d):
    add(d, SUMMARY, study("101.batches", "Matrix", "- Batch sizes: 1, 8, 32", "batch_sizes", [1, 8, 32]))


def m_prov_dispersion(d):
    m_nf4_identical(d)
    _scale(d, f"100.lat.{TINY}.int4_nf4", 1.08)


def m_prov_distribution(d):
    add(d, SUMMARY, study("101.sla", "SLA", "- 99.9% of requests under 5 ms", "sla_pct_under_5ms", 99.9))


def m_prov_success(d):
    m_nf4_identical(d)


def m_prov_planned(d):
    # the synthetic timestamp is 2024-08-30: a Q1-Q2 2024 "immediate" plan was already past
    add(
        d,
        SUMMARY,
        study(
            "101.roadmap.immediate",
            "Future / 2025 Roadmap",
            "**Immediate (Q1-Q2 2024):**",
            "planned_period",
            ["2024-Q1", "2024-Q2"],
            "Immediate",
        ),
    )


def m_prov_recipe(d):
    add(
        d,
        SUMMARY,
        study(
            "101.reproduce.install",
            "Reproduce",
            "pip install torch bitsandbytes",
            "install_command",
            "pip install torch bitsandbytes",
            "pip",
        ),
    )


def m_prov_unmeasured_hw(d):
    add(
        d,
        SUMMARY,
        study(
            "101.edge.platform", "Edge", "- Sub-2ms inference on mobile hardware", "claimed_platform", "mobile hardware"
        ),
    )


def m_prov_validation(d):
    add(
        d,
        SUMMARY,
        study(
            "101.validation.tolerance",
            "Validation",
            "def validate(r, tolerance=0.05):",
            "validation_tolerance",
            0.05,
            unit="fraction",
        ),
    )
    add(d, SUMMARY, cell("101.validation.speedup", "Validation", BIG, "speedup", 2.0, 2, "fp16", "x"))


def m_ph_constant(d):
    for m in MODELS:
        for label in PATHS:
            add(d, MAIN, cell(f"100.acc.{m}.{label}", "Accuracy", m, "simulated_accuracy", 0.85, 2, label, ""))


def m_ph_unreported(d):
    c = find(d, "101.csv.columns")
    c["value"] = [*c["value"], "stability_score"]


def m_stats_headline(d):
    add(d, SUMMARY, study("101.hw.mem", "Edge", "- Memory: 90% reduction with INT8", "hardware_reduction_pct", 90))


def m_phys_gpu_memory(d):
    add(d, SUMMARY, study("101.hw.vram", "Hardware", "- GPU: RTX 4090 (16GB VRAM)", "gpu_memory_gb", 16, "gpu memory"))


def m_ph_power(d):
    add(d, SUMMARY, study("101.power", "Edge", "- Power consumption: 40% reduction", "power_reduction_pct", 40))


def m_ph_unbacked(d):
    add(
        d,
        SUMMARY,
        agg(
            "101.size.mean",
            "Storage",
            "- 50% smaller artifacts",
            "mean",
            "size_reduction_pct",
            "torch-fp16",
            MODELS,
            50.0,
        ),
    )


def _row(m: str, label: str, metric: str) -> float:
    return _exact()[m][label][metric]


def m_stats_words(d):
    sp8 = float(np.mean([_row(m, "int8_bitsandbytes", "speedup") for m in MODELS]))
    add(
        d,
        SUMMARY,
        agg(
            "101.int8.avg_speedup",
            "Summary",
            f"- INT8 Average Speedup: {sp8:.2f}x",
            "mean",
            "speedup",
            "bnb-int8",
            MODELS,
            _r(sp8, 2),
        ),
    )


def m_stats_class(d):
    members = TIERS["Foundation Models (300M+ params)"]
    top = max(_row(m, "fp16", "speedup") for m in members)
    add(
        d,
        SUMMARY,
        agg(
            "101.class.fp16",
            "Insights",
            f"- 300M+ models reach {top:.2f}x with FP16",
            "max",
            "speedup",
            "torch-fp16",
            members,
            _r(top, 2),
        ),
    )


def m_stats_ranked_order(d):
    order = sorted(MODELS, key=lambda m: -_row(m, "fp16", "speedup"))[:2]
    add(
        d,
        SUMMARY,
        agg(
            "101.ranked",
            "Best FP16",
            f"1. {order[1]}; 2. {order[0]}",
            "top",
            "speedup",
            "torch-fp16",
            MODELS,
            [order[1], order[0]],
            how="the 2 highest rows, compared as a set",
        ),
    )


def m_cons_row_pairs(d):
    m = MODELS[3]
    sp, red = _row(m, "fp16", "speedup"), _row(m, "int8_bitsandbytes", "memory_reduction_pct")
    text = f"1. {m}: {sp:.2f}x speedup, {red:.0f}% INT8 memory reduction"
    for metric, label in (("speedup", "fp16"), ("memory_reduction_pct", "int8_bitsandbytes")):
        c = claim(
            f"101.champ.{metric}",
            "Champions",
            text,
            {"kind": "cell", "model": m},
            metric,
            _r(_row(m, label, metric), 2 if metric == "speedup" else 0),
            "",
            label,
            PATHS[label],
            "cuda",
            1,
        )
        add(d, SUMMARY, c)


def m_phys_pub_params(d):
    set_value(d, f"101.cat.foundation.{BIG}.params", 700e6, f"- {BIG} (700M)")


def m_phys_pairwise(d):
    a, b = "vit-base-224-production", "dino-vitb16-production"
    for label in ("fp32", "fp16"):
        set_value(d, f"100.mem.{b}.{label}", find(d, f"100.mem.{a}.{label}")["value"])


def m_phys_shared(d):
    for m in TIERS["Production Models (~86M params)"]:
        set_value(d, f"101.cat.production.{m}.params", 86e6, f"- {m} (86M)")


def _cost_rows(d, total: float) -> None:
    for i, (item, v) in enumerate((("g5", 12000), ("p4", 24000), ("p3", 6000))):
        add(d, SUMMARY, study(f"101.tab.{i}", "Fleet", f"| {item} | ${v:,} |", "savings_usd_per_year", v, item, "USD"))
    add(
        d,
        SUMMARY,
        study("101.tab.total", "Fleet", f"- Total: ${total:,.0f}/year", "savings_usd_per_year", total, unit="USD"),
    )


def m_arith_total(d):
    _cost_rows(d, 50000)


def m_arith_savings(d):
    c = study("101.fleet", "Fleet", "- 90% fewer GPU instances with FP16", "infrastructure_savings_pct", 90, unit="%")
    c["kit_path"] = "torch-fp16"
    add(d, SUMMARY, c)


def m_method_target(d):
    c = study("101.target", "Edge", "- Runs on mobile phones", "claimed_platform", "mobile phones")
    c["kit_path"] = "bnb-int8"
    add(d, SUMMARY, c)


def m_method_calibration(d):
    c = study("102.recal", "Deployment", "3. Regular recalibration", "recommendation", "regular recalibration")
    c["kit_path"] = "torch-int8-dynamic"
    add(d, SIDE, c)


def m_prov_escape(d):
    add(d, SUMMARY, study("101.esc", "Overview", "- Success: 100%\\n## Next", "success_note", "ok"))


def m_prov_epoch(d):
    add(d, SUMMARY, study("101.date", "Header", "**Date**: 1725000000.5", "timestamp", 1725000000.5, unit="unix s"))


def m_prov_complete(d):
    m = MODELS[0]
    c = cell(
        "101.complete.lat",
        "Complete Results / Latency",
        m,
        "latency_ms",
        _row(m, "fp16", "latency_ms"),
        2,
        "fp16",
        "ms",
    )
    add(d, SUMMARY, c)


MUTATIONS: dict[str, Callable[[list[dict]], None]] = {
    "arith.speedup": m_arith_speedup,
    "arith.throughput": m_arith_throughput,
    "arith.memory_reduction": m_arith_memory_reduction,
    "arith.percent_change": m_arith_percent_change,
    "arith.difference": m_arith_difference,
    "arith.annualised": m_arith_annualised,
    "stats.central": m_stats_central,
    "stats.std": m_stats_std,
    "stats.percentile": m_stats_percentile,
    "stats.range": m_stats_range,
    "stats.bounds": m_stats_bounds,
    "stats.ranking": m_stats_ranking,
    "stats.mixed_paths": m_stats_mixed_paths,
    "stats.baseline_in_aggregate": m_stats_baseline,
    "consistency.cell_values": m_cons_cell_values,
    "consistency.study_values": m_cons_study_values,
    "consistency.category_threshold": m_cons_category_threshold,
    "consistency.category_membership": m_cons_category_membership,
    "consistency.category_bands": m_cons_category_bands,
    "consistency.model_list": m_cons_model_list,
    "consistency.method_row_count": m_cons_method_row_count,
    "consistency.implied_speedup": m_cons_implied_speedup,
    "physics.peak_vs_weights": m_phys_peak,
    "physics.memory_unit": m_phys_unit,
    "physics.model_size": m_phys_model_size,
    "physics.nf4_vs_int8": m_phys_nf4,
    "physics.roofline": m_phys_roofline,
    "physics.overhead_bound": m_phys_overhead,
    "physics.param_count": m_phys_params,
    "physics.architecture": m_phys_arch,
    "method.device_support": m_method_device,
    "method.label_conflict": m_method_label_conflict,
    "method.indistinguishable": m_method_indistinguishable,
    "method.row_label": m_method_row_label,
    "method.accuracy_setup": m_method_accuracy,
    "method.code": m_method_code,
    "provenance.version_compat": m_prov_compat,
    "provenance.dates": m_prov_dates,
    "provenance.release_dates": m_prov_release,
    "provenance.row_count": m_prov_rows,
    "provenance.experiment_matrix": m_prov_matrix,
    "provenance.iterations_vs_dispersion": m_prov_dispersion,
    "provenance.distribution_claims": m_prov_distribution,
    "provenance.success_rate": m_prov_success,
    "provenance.planned_dates": m_prov_planned,
    "provenance.reproduction_recipe": m_prov_recipe,
    "provenance.unmeasured_hardware": m_prov_unmeasured_hw,
    "provenance.validation_tolerance": m_prov_validation,
    "placeholders.constant_metric": m_ph_constant,
    "placeholders.unreported_column": m_ph_unreported,
    "placeholders.unbacked_aggregate": m_ph_unbacked,
    "placeholders.unmeasured_quantity": m_ph_power,
    "stats.headline_vs_rows": m_stats_headline,
    "physics.gpu_memory": m_phys_gpu_memory,
    "stats.words_vs_numbers": m_stats_words,
    "stats.class_claim": m_stats_class,
    "stats.ranked_order": m_stats_ranked_order,
    "consistency.row_pairs": m_cons_row_pairs,
    "physics.peak_vs_published_params": m_phys_pub_params,
    "physics.pairwise_weights": m_phys_pairwise,
    "physics.shared_param_count": m_phys_shared,
    "arith.stated_total": m_arith_total,
    "arith.savings_vs_speedup": m_arith_savings,
    "method.deployment_target": m_method_target,
    "method.calibration_without_method": m_method_calibration,
    "provenance.escape_sequences": m_prov_escape,
    "provenance.epoch_date": m_prov_epoch,
    "provenance.complete_table": m_prov_complete,
}


@pytest.fixture(scope="module")
def base_docs() -> list[dict[str, Any]]:
    return synthetic_docs()


def test_synthetic_study_is_clean(tmp_path: Path, base_docs: list[dict]) -> None:
    findings = audit_docs(tmp_path, copy.deepcopy(base_docs))
    loud = [f for f in findings if f.severity in ("error", "warning")]
    assert not loud, "\n".join(f"{f.rule}: {f.message} | {f.evidence}" for f in loud)
    assert counts(findings)["error"] == 0


def test_every_rule_has_an_injection() -> None:
    assert set(load_rules()) == set(MUTATIONS), set(load_rules()) ^ set(MUTATIONS)


@pytest.mark.parametrize("rule_id", sorted(MUTATIONS))
def test_rule_fires_on_its_defect(tmp_path: Path, base_docs: list[dict], rule_id: str) -> None:
    docs = copy.deepcopy(base_docs)
    MUTATIONS[rule_id](docs)
    findings = audit_docs(tmp_path, docs)
    crashed = [f for f in findings if f.kind == "error"]
    assert not crashed, crashed
    hits = [f for f in findings if f.rule == rule_id]
    assert hits, f"{rule_id} did not fire; got {[f.rule for f in findings]}"
    f = hits[0]
    assert f.message and "\n" not in f.message
    assert f.evidence
    if rule_id not in ("placeholders.unreported_column",):
        assert f.claims, "a finding names the claims it involves"


def test_roi_defect(tmp_path: Path, base_docs: list[dict]) -> None:
    docs = copy.deepcopy(base_docs)
    m_arith_annualised_roi(docs)
    hits = [f for f in audit_docs(tmp_path, docs) if f.rule == "arith.annualised"]
    assert hits and "ROI" in hits[0].message


def test_rounding_is_not_a_defect(tmp_path: Path, base_docs: list[dict]) -> None:
    """25.59 / 10.24 = 2.499 printed as 2.50: the published rounding must be accepted."""
    docs = copy.deepcopy(base_docs)
    set_value(docs, f"100.lat.{M0}.fp32", 25.59, f"{M0} 25.59")
    set_value(docs, f"100.lat.{M0}.fp16", 10.24, f"{M0} 10.24")
    set_value(docs, f"100.sp.{M0}.fp16", 2.5, f"{M0} 2.50x")
    set_value(docs, f"100.thr.{M0}.fp32", 39.08, f"{M0} 39.08")
    set_value(docs, f"100.thr.{M0}.fp16", 97.64, f"{M0} 97.64")
    set_value(docs, f"100.gain.{M0}.fp16", 149.9, f"{M0} +149.9%")
    hits = [
        f
        for f in audit_docs(tmp_path, docs)
        if f.rule.startswith("arith.") and (f"{M0} torch-fp16" in f.message or f"{M0} torch-fp32" in f.message)
    ]
    assert not hits, [h.message for h in hits]


# ----------------------------------------------------------------- issue 17: what holds stays silent


def _silent(tmp_path: Path, docs: list[dict], *rules: str) -> None:
    hits = [f for f in audit_docs(tmp_path, docs) if f.rule in rules]
    assert not hits, [f"{f.rule}: {f.message}" for f in hits]


def test_a_total_that_is_the_sum_is_not_flagged(tmp_path: Path, base_docs: list[dict]) -> None:
    docs = copy.deepcopy(base_docs)
    _cost_rows(docs, 42000)
    _silent(tmp_path, docs, "arith.stated_total")


def test_words_of_gain_over_values_above_1x_are_not_flagged(tmp_path: Path, base_docs: list[dict]) -> None:
    docs = copy.deepcopy(base_docs)
    sp = float(np.mean([_row(m, "fp16", "speedup") for m in MODELS]))
    assert sp > 1
    add(
        docs,
        SUMMARY,
        agg(
            "101.fp16.gain",
            "Summary",
            f"- FP16 gains: {sp:.2f}x average speedup",
            "mean",
            "speedup",
            "torch-fp16",
            MODELS,
            _r(sp, 2),
        ),
    )
    _silent(tmp_path, docs, "stats.words_vs_numbers")


def test_a_class_figure_worded_as_up_to_is_not_flagged(tmp_path: Path, base_docs: list[dict]) -> None:
    docs = copy.deepcopy(base_docs)
    m_stats_class(docs)
    c = find(docs, "101.class.fp16")
    c["text"] = c["text"].replace("reach", "reach up to")
    _silent(tmp_path, docs, "stats.class_claim")


def test_a_ranked_list_in_value_order_is_not_flagged(tmp_path: Path, base_docs: list[dict]) -> None:
    docs = copy.deepcopy(base_docs)
    m_stats_ranked_order(docs)
    c = find(docs, "101.ranked")
    c["value"] = c["value"][::-1]
    _silent(tmp_path, docs, "stats.ranked_order", "stats.ranking")


def test_a_bound_is_compared_at_the_printed_precision(tmp_path: Path, base_docs: list[dict]) -> None:
    """'2x+' is >= 2.00: a 1.96x row misses it even though '2' printed as an integer spans 1.5-2.5."""
    docs = copy.deepcopy(base_docs)
    members = TIERS["Foundation Models (300M+ params)"]
    low = min(_row(m, "fp16", "speedup") for m in members)
    bound = float(math.floor(low * 100) / 100 + 0.05)  # just above the lowest row
    for cid in ("101.b.one", "101.b.two"):  # one statement printed twice: one finding
        add(
            docs,
            SUMMARY,
            agg(
                cid,
                "Insights",
                f"- {bound:g}x+ speedups on 300M+ models",
                "at_least",
                "speedup",
                "torch-fp16",
                members,
                bound,
            ),
        )
    hits = [
        f for f in audit_docs(tmp_path, docs) if f.rule == "stats.bounds" and "101.b.one" in [c.id for c in f.claims]
    ]
    assert len(hits) == 1 and "stated in 2 places" in hits[0].message
    below = sum(1 for m in members if round(_row(m, "fp16", "speedup"), 2) < bound)
    assert f"{below} of {len(members)} rows are not, so only {len(members) - below} of" in hits[0].message


def test_an_integer_bound_is_not_widened_by_its_rounding(tmp_path: Path, base_docs: list[dict]) -> None:
    """'2x+' printed as an integer still means >= 2.00: a row printed 1.96 does not meet it."""
    docs = copy.deepcopy(base_docs)
    m = TIERS["Foundation Models (300M+ params)"][0]
    set_value(docs, f"100.sp.{m}.fp16", 1.96, f"{m} 1.96")
    set_value(docs, f"100.lat.{m}.fp32", 19.6, f"{m} 19.60")
    set_value(docs, f"100.lat.{m}.fp16", 10.0, f"{m} 10.00")
    add(docs, SUMMARY, agg("101.b.int", "Insights", "- 2x+ speedups", "at_least", "speedup", "torch-fp16", [m], 2.0))
    hits = [
        f for f in audit_docs(tmp_path, docs) if f.rule == "stats.bounds" and "101.b.int" in [c.id for c in f.claims]
    ]
    assert hits and "1 of 1 rows are not" in hits[0].message and "1.96" in hits[0].message


def test_calibration_for_a_static_method_is_not_flagged(tmp_path: Path, base_docs: list[dict]) -> None:
    docs = copy.deepcopy(base_docs)
    m_method_calibration(docs)
    find(docs, "102.recal")["kit_path"] = "ort-int8-static-qdq"  # static QDQ does calibrate
    _silent(tmp_path, docs, "method.calibration_without_method")


# ------------------------------------------------------------------- claims about other models


def test_models_outside_the_registry_are_named_as_unchecked_not_passed(tmp_path: Path) -> None:
    docs = synthetic_docs()
    source = docs[0]["source_file"]
    add(
        docs,
        source,
        cell("100.latency.my-swin.fp16", "A user's table", "my-swin-tiny", "latency_ms", 0.001, 3, "fp16", "ms"),
    )
    notes = [f for f in audit_docs(tmp_path, docs) if f.rule == "audit.unknown_models"]
    assert len(notes) == 1 and notes[0].kind == "skipped" and notes[0].severity == "info"
    assert "my-swin-tiny" in notes[0].message and "physics.roofline" in notes[0].evidence
    # The bundled synthetic study alone names only registry models: no notice.
    (tmp_path / "clean").mkdir()
    assert not [f for f in audit_docs(tmp_path / "clean", synthetic_docs()) if f.rule == "audit.unknown_models"]


def test_one_path_measured_on_two_devices_is_two_figures_not_a_disagreement(tmp_path: Path) -> None:
    docs = synthetic_docs()
    source = docs[0]["source_file"]
    model = "vit-base-224-production"
    on_cuda = cell("100.lat.int8.cuda", "T1", model, "latency_ms", 12.0, 1, "fp32", "ms", table="T1")
    on_cpu = cell("100.lat.int8.cpu", "T2", model, "latency_ms", 95.0, 1, "fp32", "ms", table="T2")
    on_cpu["device"] = "cpu"
    add(docs, source, on_cuda)
    add(docs, source, on_cpu)
    hits = [f for f in audit_docs(tmp_path, docs) if f.rule == "consistency.cell_values"]
    assert not [f for f in hits if "100.lat.int8.cpu" in " ".join(c.id for c in f.claims)]
    # The same two figures on one device do disagree.
    docs = synthetic_docs()
    (tmp_path / "same").mkdir()
    on_cpu["device"] = "cuda"
    add(docs, source, on_cuda)
    add(docs, source, on_cpu)
    hits = [f for f in audit_docs(tmp_path / "same", docs) if f.rule == "consistency.cell_values"]
    assert [f for f in hits if "100.lat.int8.cpu" in " ".join(c.id for c in f.claims)]
