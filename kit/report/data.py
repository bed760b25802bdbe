"""Pure functions turning result documents, verdicts and findings into tables for the report.

Nothing here reads files, draws or formats markdown: the inputs are already-loaded JSON objects,
the outputs plain lists and dicts, so each table can be tested on its own. Every number comes
from a document; where a ratio needs a baseline that was not measured, the value is ``None``.
"""

from __future__ import annotations

import math
import re
import statistics
from collections import Counter
from collections.abc import Iterable
from typing import Any

from kit.hardware.machine import short_name
from kit.paths.base import path_facts, paths_where, reference_path
from kit.results import figures

Doc = dict[str, Any]
CellKey = tuple[str, str, str, int]  # model, path, device, batch size

# Path facts come from the registry (each path declares them; kit.paths.base.path_facts):
# the reference every speedup divides by (torch-fp32), the INT8 family (the paths that hold
# weights in 8 bits; the CPU-vs-GPU INT8 figure compares these), and the reading order for tables
# and figure axes (float paths, then quantized ones; names the registry does not know go last).
BASELINE_PATH: str = reference_path()
INT8_PATHS: tuple[str, ...] = tuple(paths_where(precision="int8"))
PATH_ORDER: tuple[str, ...] = tuple(path_facts())
DEVICE_ORDER: tuple[str, ...] = ("cpu", "cuda")
# `error` (the kit failed while judging a claim) first: a reviewer must see it before anything else.
VERDICT_ORDER: tuple[str, ...] = (
    "error",
    "fail",
    "inconclusive",
    "pass",
    "not-comparable",
    "not-measured",
    "unsupported",
)
SEVERITY_ORDER: tuple[str, ...] = ("critical", "error", "high", "warning", "medium", "low", "info", "note")
MIB = 2**20


# ---------------------------------------------------------------- ordering and keys


def path_rank(path: str) -> tuple[int, str]:
    return (PATH_ORDER.index(path) if path in PATH_ORDER else len(PATH_ORDER), path)


def device_rank(device: str) -> tuple[int, str]:
    return (DEVICE_ORDER.index(device) if device in DEVICE_ORDER else len(DEVICE_ORDER), device)


def model_rank(model: str) -> tuple[int, str]:
    """The study's registry order (small to large within families as the study lists them)."""
    from kit.models.registry import MODELS

    ids = list(MODELS)
    return (ids.index(model) if model in ids else len(ids), model)


def cell_key(doc: Doc) -> CellKey:
    c = doc["cell"]
    return c["model"], c["path"], c["device"], int(c["batch_size"])


def sort_docs(docs: Iterable[Doc]) -> list[Doc]:
    def key(d: Doc) -> tuple[Any, ...]:
        m, p, dev, bs = cell_key(d)
        return model_rank(m), device_rank(dev), bs, path_rank(p)

    return sorted(docs, key=key)


def ok_docs(docs: Iterable[Doc]) -> list[Doc]:
    return [d for d in docs if d.get("status") == "ok"]


def ordered(values: Iterable[str], rank: Any) -> list[str]:
    return sorted(set(values), key=rank)


# ---------------------------------------------------------------- measured values


def baselines(docs: Iterable[Doc]) -> dict[tuple[str, str, int], Doc]:
    """The ok torch-fp32 document of each (model, device, batch size)."""
    out = {}
    for d in ok_docs(docs):
        m, p, dev, bs = cell_key(d)
        if p == BASELINE_PATH:
            out[(m, dev, bs)] = d
    return out


# Speedup, memory reduction and throughput have one definition each (kit.results.figures); the
# report uses the median and the inference memory phase, and says so (SPEEDUP_LABEL, MEMORY_LABEL).
REPORT_STATISTIC: str = figures.REPORT_STATISTIC
MEMORY_PHASE: str = figures.DEFAULT_MEMORY_PHASE
SPEEDUP_LABEL: str = figures.speedup_label(REPORT_STATISTIC)
MEMORY_LABEL: str = figures.memory_label(MEMORY_PHASE)
THROUGHPUT_LABEL: str = figures.throughput_label(REPORT_STATISTIC)


def speedup(doc: Doc, base: Doc | None) -> float | None:
    """torch-fp32 p50 / this path's p50, same model, device and batch size (ratio of medians)."""
    return figures.speedup(doc, base, REPORT_STATISTIC)


def reduction_pct(value: float | None, base_value: float | None) -> float | None:
    return figures.reduction_pct(value, base_value)


def weights_mb(doc: Doc) -> float | None:
    return (doc.get("memory") or {}).get("weights_mb")


def size_mb(doc: Doc) -> float | None:
    size = doc.get("size")
    return size["bytes"] / MIB if size else None


def measured_rows(docs: Iterable[Doc]) -> list[dict[str, Any]]:
    """One row per ok cell: the matrix of what was measured, with ratios against torch-fp32."""
    docs = list(docs)
    base = baselines(docs)
    rows = []
    for d in sort_docs(ok_docs(docs)):
        m, p, dev, bs = cell_key(d)
        b = base.get((m, dev, bs))
        lat, fid = d["latency"], d["fidelity"]
        agreement = figures.top1_agreement(d)
        rows.append(
            {
                "model": m,
                "path": p,
                "device": dev,
                "batch_size": bs,
                "p50_ms": lat["p50"],
                "p50_ci95": tuple(lat["p50_ci95"]),
                "p99_ms": lat["p99"],
                "cv": lat["cv"],
                "iterations": lat["iterations"],
                "noise_warnings": list(lat.get("noise_warnings") or []),
                "throughput_sps": figures.throughput_sps(d, REPORT_STATISTIC),
                "throughput_statistic": REPORT_STATISTIC,
                "peak_mb": d["memory"]["peak_mb"],
                "load_mb": figures.memory_mb(d, "load"),
                "steady_mb": figures.memory_mb(d, "steady"),
                "inference_mb": figures.memory_mb(d, "inference"),
                "memory_phase": MEMORY_PHASE,
                "weights_mb": weights_mb(d),
                "size_mb": size_mb(d),
                "cosine": fid["cosine"],
                # Top-1 agreement is a headline figure only on trained weights; on seeded random
                # weights it is the method's error on untrained weights (top1_untrained, with n and CI).
                "top1": agreement.value if agreement and agreement.trained else None,
                "top1_detail": agreement.describe() if agreement else None,
                "top1_n": agreement.n if agreement else None,
                "top1_ci95": agreement.ci95 if agreement else None,
                "trained_weights": figures.trained_weights(d),
                "speedup": speedup(d, b),
                "speedup_statistic": REPORT_STATISTIC,
                "memory_reduction_pct": figures.memory_reduction_pct(d, b, MEMORY_PHASE),
                "weights_reduction_pct": reduction_pct(weights_mb(d), weights_mb(b) if b else None),
                "provider": (d.get("path_info") or {}).get("execution_provider"),
            }
        )
    return rows


def not_ok_rows(docs: Iterable[Doc]) -> list[dict[str, Any]]:
    """Every skipped or failed cell with its reason, in matrix order."""
    rows = []
    for d in sort_docs(d for d in docs if d.get("status") != "ok"):
        m, p, dev, bs = cell_key(d)
        rows.append(
            {
                "model": m,
                "path": p,
                "device": dev,
                "batch_size": bs,
                "status": d["status"],
                "reason": d.get("reason") or "(no reason recorded)",
            }
        )
    return rows


def group_not_ok(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Skipped/failed rows grouped by (status, reason): failures first, biggest group first."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["status"], r["reason"]), []).append(r)
    out = [{"status": s, "reason": why, "cells": cells} for (s, why), cells in groups.items()]
    return sorted(out, key=lambda g: (g["status"] != "failed", -len(g["cells"]), g["reason"]))


def status_counts(docs: Iterable[Doc]) -> dict[str, int]:
    counts = Counter(d.get("status", "?") for d in docs)
    return {s: counts.get(s, 0) for s in ("ok", "skipped", "failed")}


def latency_samples(docs: Iterable[Doc]) -> dict[CellKey, list[float]]:
    """Raw timed latencies (ms) of each ok cell."""
    return {cell_key(d): list(d["latency"].get("samples") or []) for d in sort_docs(ok_docs(docs))}


def geomean(values: Iterable[float]) -> float | None:
    vals = [v for v in values if v is not None and v > 0]
    return math.exp(statistics.fmean(math.log(v) for v in vals)) if vals else None


def int8_comparison(docs: Iterable[Doc]) -> list[dict[str, Any]]:
    """Per INT8 path and device: speedups vs same-device FP32 per model, or why there are none."""
    docs = list(docs)
    base = baselines(docs)
    present = {(p, dev) for _m, p, dev, _b in map(cell_key, docs) if p in INT8_PATHS}
    rows = []
    for path, dev in sorted(present, key=lambda k: (path_rank(k[0]), device_rank(k[1]))):
        cells = [d for d in docs if cell_key(d)[1] == path and cell_key(d)[2] == dev]
        per_model = {}
        for d in ok_docs(cells):
            m, _p, _dev, bs = cell_key(d)
            s = speedup(d, base.get((m, dev, bs)))
            if s is not None:
                per_model[m if bs == 1 else f"{m} bs{bs}"] = s
        reasons = sorted({d.get("reason") or "" for d in cells if d.get("status") != "ok"} - {""})
        if not per_model and ok_docs(cells):
            reasons.append("no torch-fp32 baseline on this device to divide by")
        statuses = sorted({d.get("status", "?") for d in cells})
        rows.append(
            {
                "path": path,
                "device": dev,
                "speedups": per_model,
                "status": "/".join(statuses),
                "geomean": geomean(per_model.values()),
                "reasons": reasons,
            }
        )
    return rows


# ---------------------------------------------------------------- environment and method


def _true_flags(isa: dict[str, Any] | None) -> list[str]:
    return [k for k, v in (isa or {}).items() if v]


def environments(docs: Iterable[Doc]) -> list[dict[str, Any]]:
    """The distinct machines/stacks the documents were measured on, with their cell counts.

    Results merged from several machines (a CPU box and a GPU box) give several rows.
    """
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    for d in docs:
        env = d.get("environment") or {}
        cpu, gpu, kit = env.get("cpu") or {}, env.get("gpu"), env.get("kit") or {}
        pkgs = {k: v for k, v in (env.get("packages") or {}).items() if v}
        key = (
            cpu.get("model"),
            (gpu or {}).get("name"),
            kit.get("git_commit"),
            tuple(sorted(pkgs.items())),
            env.get("python"),
            env.get("os"),
        )
        if key not in groups:
            groups[key] = {
                "cpu_model": cpu.get("model") or "unknown",
                "cores": cpu.get("usable_cores") or cpu.get("logical_cores"),
                "isa": _true_flags(cpu.get("isa")),
                "isa_missing": [k for k, v in (cpu.get("isa") or {}).items() if not v],
                "gpu": _gpu_line(gpu),
                "cuda": _cuda_line(env.get("cuda")),
                "packages": pkgs,
                "python": env.get("python"),
                "os": env.get("os"),
                "kit": f"{kit.get('version', '?')} ({kit.get('git_commit') or 'no git commit recorded'})",
                "cells": 0,
                "devices": set(),
            }
        groups[key]["cells"] += 1
        groups[key]["devices"].add(d["cell"]["device"])
    out = list(groups.values())
    for g in out:
        g["devices"] = ordered(g["devices"], device_rank)
    return out


def _gpu_line(gpu: dict[str, Any] | None) -> str:
    if not gpu:
        return "none"
    parts = [gpu.get("name", "unknown GPU")]
    if gpu.get("memory_mb"):
        parts.append(f"{gpu['memory_mb'] / 1024:.0f} GiB")
    if gpu.get("capability"):
        parts.append(f"sm {gpu['capability']}")
    if gpu.get("driver"):
        parts.append(f"driver {gpu['driver']}")
    return ", ".join(parts)


def _cuda_line(cuda: dict[str, Any] | None) -> str:
    if not cuda:
        return "not recorded"
    build = cuda.get("torch_cuda_build") or "none (CPU-only torch)"
    if not cuda.get("available"):
        return f"torch CUDA build {build}; no CUDA device available"
    return f"torch CUDA build {build}, cuDNN {cuda.get('cudnn')}"


def thread_settings(docs: Iterable[Doc]) -> list[tuple[str, int]]:
    """Distinct thread settings of the ok cells (they change CPU numbers)."""
    vals = []
    for d in ok_docs(docs):
        math_ = d.get("math") or {}
        env = {k: v for k, v in (math_.get("env") or {}).items() if v}
        text = f"torch threads {math_.get('torch_num_threads')}, interop {math_.get('torch_num_interop_threads')}"
        if env:
            text += ", " + ", ".join(f"{k}={v}" for k, v in sorted(env.items()))
        vals.append(text)
    return distinct(vals)


def distinct(values: Iterable[Any]) -> list[tuple[Any, int]]:
    """Distinct values with how many cells have each, most common first."""
    counts = Counter(v for v in values if v is not None and v != "")
    return sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))


def _span(values: list[float], fmt: str = "{:g}") -> str:
    if not values:
        return "-"
    lo, hi = min(values), max(values)
    if lo == hi:
        return fmt.format(lo)
    return f"{fmt.format(lo)} to {fmt.format(hi)} (median {fmt.format(statistics.median(values))})"


# A reference names its model's weights fingerprint in parentheses; the method is the same for
# every model, so the fingerprint is dropped to show one line instead of one per model.
_PARENTHETICAL = re.compile(r"\s*\([^()]*\)\s*$")


def method_rows(docs: Iterable[Doc]) -> list[tuple[str, list[tuple[Any, int]]]]:
    """How things were measured, read from the ok documents: (what, [(value, cells), ...])."""
    ok = ok_docs(docs)
    lat = [d["latency"] for d in ok]

    def per_device(fn: Any) -> list[tuple[Any, int]]:
        return distinct(f"{fn(d)} ({d['cell']['device']})" for d in ok)

    rows: list[tuple[str, list[tuple[Any, int]]]] = [
        ("profile", distinct(d.get("profile") for d in ok)),
        ("timer", per_device(lambda d: d["latency"]["timer"])),
        ("warm-up iterations", distinct(x["warmup_iterations"] for x in lat)),
        ("warm-up time (s)", [(_span([x["warmup_s"] for x in lat], "{:.3g}"), len(lat))] if lat else []),
        (
            "stopping rule",
            distinct(
                f"at least {x['min_iterations']} iterations and {x['min_duration_s']:g} s"
                + (f", at most {x['max_duration_s']:g} s" if x.get("max_duration_s") is not None else ", no time cap")
                for x in lat
            ),
        ),
        ("stopped by", distinct(x.get("stopped_by") for x in lat)),
        ("timed iterations", [(_span([x["iterations"] for x in lat]), len(lat))] if lat else []),
        ("timed duration (s)", [(_span([x["duration_s"] for x in lat], "{:.3g}"), len(lat))] if lat else []),
        ("percentiles", distinct(x.get("percentile_method") for x in lat)),
        ("p50 confidence interval", distinct(x.get("ci_method") for x in lat)),
        ("throughput", [(THROUGHPUT_LABEL, len(ok))] if ok else []),
        ("speedup", [(SPEEDUP_LABEL, len(ok))] if ok else []),
        ("memory reduction", [(MEMORY_LABEL, len(ok))] if ok else []),
        ("peak memory", per_device(lambda d: d["memory"].get("peak_source"))),
        (
            f"{MEMORY_PHASE}-phase memory",
            per_device(
                lambda d: ((d["memory"].get("phases") or {}).get(MEMORY_PHASE) or {}).get("source", figures.NO_PHASES)
            ),
        ),
        ("weight memory", distinct(d["memory"].get("weights_source") for d in ok)),
        ("model size", distinct((d.get("size") or {}).get("method") for d in ok)),
        ("fidelity reference", distinct(_PARENTHETICAL.sub("", (d["fidelity"].get("reference") or "")) for d in ok)),
        ("fidelity inputs", distinct(d["fidelity"].get("inputs") for d in ok)),
        (
            "fidelity weights",
            distinct("trained weights" if figures.trained_weights(d) else figures.UNTRAINED_LABEL for d in ok),
        ),
        ("threads", thread_settings(ok)),
    ]
    return [(what, vals) for what, vals in rows if vals]


def noisy_cells(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r["noise_warnings"]]


# ---------------------------------------------------------------- verdicts and findings


def _first(d: dict[str, Any], *names: str, default: Any = None) -> Any:
    for n in names:
        if d.get(n) is not None:
            return d[n]
    return default


def verdict_list(data: Any) -> list[dict[str, Any]]:
    """The verdict objects of validate's JSON, whether it is a list or wraps one."""
    if isinstance(data, list):
        return [v for v in data if isinstance(v, dict)]
    if isinstance(data, dict):
        for key in ("verdicts", "results", "claims", "items"):
            if isinstance(data.get(key), list):
                return [v for v in data[key] if isinstance(v, dict)]
    return []


def finding_list(data: Any) -> list[dict[str, Any]]:
    if isinstance(data, list):
        return [v for v in data if isinstance(v, dict)]
    if isinstance(data, dict):
        for key in ("findings", "results", "items"):
            if isinstance(data.get(key), list):
                return [v for v in data[key] if isinstance(v, dict)]
    return []


def verdict_of(v: dict[str, Any]) -> str:
    return str(_first(v, "verdict", "status", "outcome", default="?"))


def verdict_row(v: dict[str, Any]) -> dict[str, Any]:
    """One verdict (schemas/verdicts.schema.json) flattened to what the report shows.

    Older or foreign spellings (``id``, ``status``, ``published``) are read too, so a report can
    still be built from a verdict file written by an earlier kit.
    """
    claim: dict[str, Any] = v["claim"] if isinstance(v.get("claim"), dict) else {}
    return {
        "claim": _first(v, "claim_id", "id", default=_first(claim, "id", default="?")),
        "verdict": verdict_of(v),
        "metric": _first(v, "metric", default=claim.get("metric")),
        "unit": _first(v, "unit", default=claim.get("unit")),
        "subject": _first(v, "subject", default=""),
        "claimed": _first(v, "claimed", "published", "expected", default=claim.get("value")),
        "measured": _first(v, "measured", "found"),
        "interval": _first(v, "ci95", "measured_ci95"),
        "allowed": _first(v, "allowed"),
        "tolerance": _first(v, "tolerance", default=claim.get("tolerance")),
        "comparability": _first(v, "comparability", default=claim.get("comparability")),
        "source": _first(v, "source_file", "source", default=claim.get("source_file")),
        "section": _first(v, "section", default=claim.get("section")),
        "text": _first(v, "text", default=claim.get("text")),
        "reason": _first(v, "reason", "message", default=""),
        "hardware": v.get("hardware"),
        "summary": v.get("summary") if isinstance(v.get("summary"), str) else None,
    }


def group_verdicts(verdicts: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    """(verdict, rows) in VERDICT_ORDER, then any verdict word this kit does not know."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for v in verdicts:
        row = verdict_row(v)
        groups.setdefault(row["verdict"], []).append(row)
    names = sorted(groups, key=lambda n: (VERDICT_ORDER.index(n) if n in VERDICT_ORDER else len(VERDICT_ORDER), n))
    return [(n, sorted(groups[n], key=lambda r: str(r["claim"]))) for n in names]


def finding_row(f: dict[str, Any]) -> dict[str, Any]:
    claims = _first(f, "claims", "claim_ids", default=[])
    if isinstance(claims, str):
        claims = [claims]
    return {
        "rule": str(_first(f, "rule", "rule_id", "id", default="?")),
        "severity": str(_first(f, "severity", "level", default="?")),
        "claims": [str(c.get("id", c)) if isinstance(c, dict) else str(c) for c in claims],
        "evidence": _first(f, "evidence", "arithmetic", default=""),
        "message": str(_first(f, "message", "summary", "title", default="")),
        "raw": f,
    }


def severity_rank(s: str) -> tuple[int, str]:
    return (SEVERITY_ORDER.index(s) if s in SEVERITY_ORDER else len(SEVERITY_ORDER), s)


def group_findings(findings: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for f in findings:
        row = finding_row(f)
        groups.setdefault(row["severity"], []).append(row)
    return [(s, sorted(groups[s], key=lambda r: (r["rule"], r["claims"]))) for s in sorted(groups, key=severity_rank)]


def as_number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def tolerance_interval(claimed: float, tolerance: Any) -> tuple[float, float] | None:
    """The accepted range around a published number, from the claim's tolerance."""
    if not isinstance(tolerance, dict):
        return None
    kind, t = tolerance.get("kind"), as_number(tolerance.get("value"))
    if t is None:
        return None
    if kind == "relative":
        lo, hi = claimed * (1 - t), claimed * (1 + t)
        return min(lo, hi), max(lo, hi)
    if kind == "absolute":
        return claimed - t, claimed + t
    if kind == "exact":
        return claimed, claimed
    return None


def _interval(value: Any) -> tuple[float, float] | None:
    if isinstance(value, (list, tuple)) and len(value) == 2:
        lo, hi = as_number(value[0]), as_number(value[1])
        if lo is not None and hi is not None:
            return (min(lo, hi), max(lo, hi))
    return None


def plottable_verdicts(verdicts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Points for a published-vs-measured plot: numeric published and measured values.

    A scalar claim gives one point, its band validate's ``allowed`` interval (else derived from
    the tolerance). A range claim ("0.88x to 2.50x") gives two points, its ends, each with the
    tolerance band of that end.
    """
    out = []
    for v in verdicts:
        row = verdict_row(v)
        base = {**row, "metric": row["metric"] or "value"}
        claimed, measured = as_number(row["claimed"]), as_number(row["measured"])
        if claimed is not None and measured is not None:
            band = _interval(row["allowed"]) or tolerance_interval(claimed, row["tolerance"])
            out.append({**base, "claimed": claimed, "measured": measured, "band": band})
            continue
        ends_c, ends_m = _interval(row["claimed"]), _interval(row["measured"])
        if ends_c and ends_m:
            for c, m in zip(ends_c, ends_m):
                out.append({**base, "claimed": c, "measured": m, "band": tolerance_interval(c, row["tolerance"])})
    return out


# ---------------------------------------------------------------- claims across machines

JUDGED = ("pass", "fail", "inconclusive")
VERDICT_SYMBOL = {
    "pass": "✓",
    "fail": "✗",
    "inconclusive": "~",
    "not-comparable": "≠",
    "not-measured": "–",
    "unsupported": "·",
    "error": "!",
}
MACHINE_ROWS = 200


def short_machine(label: str) -> str:
    """'NVIDIA GeForce RTX 4090 (cuda)' -> 'RTX 4090 (cuda)' (`kit.hardware.machine.short_name`)."""
    return short_name(label)


def _per_machine(v: dict[str, Any]) -> list[dict[str, Any]]:
    entries = v.get("per_machine")
    if not isinstance(entries, list):
        return []
    return [e for e in entries if isinstance(e, dict) and isinstance(e.get("machine"), str)]


def machines_named(raw: Any, verdicts: list[dict[str, Any]]) -> list[str]:
    """The machines of a verdict file: its ``machines`` section in order, then any only its verdicts name."""
    named: list[str] = []
    if isinstance(raw, dict) and isinstance(raw.get("machines"), list):
        named = [m["machine"] for m in raw["machines"] if isinstance(m, dict) and isinstance(m.get("machine"), str)]
    extra = {e["machine"] for v in verdicts for e in _per_machine(v)} - set(named)
    return list(dict.fromkeys(named)) + sorted(extra)


def machine_matrix(verdicts: list[dict[str, Any]], machines: list[str], max_rows: int = MACHINE_ROWS) -> dict[str, Any]:
    """Claims (rows) by machine (columns): each claim's verdict on each machine.

    Only claims judged (pass, fail or inconclusive) on at least two machines, failures first;
    at most ``max_rows`` of them. Columns are the machines those rows name, in ``machines`` order.
    """
    rows = []
    for v in verdicts:
        entries = _per_machine(v)
        if sum(1 for e in entries if e.get("verdict") in JUDGED) < 2:
            continue
        row = verdict_row(v)
        rows.append(
            {
                "claim": row["claim"],
                "verdict": row["verdict"],
                "summary": row["summary"] or "",
                "comparability": row["comparability"],
                "cells": {e["machine"]: str(e.get("verdict")) for e in entries},
            }
        )
    rank = {name: i for i, name in enumerate(VERDICT_ORDER)}
    rows.sort(key=lambda r: (rank.get(r["verdict"], len(rank)), str(r["claim"])))
    shown = rows[:max_rows]
    used = {m for r in shown for m in r["cells"]}
    order = [m for m in machines if m in used] + sorted(used - set(machines))
    return {"machines": order, "rows": shown, "total": len(rows)}
