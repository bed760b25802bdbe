"""One cell measured in several fresh processes, merged into one document whose latency interval
includes process-to-process variation (``kit.measure.latency.across_processes``).

Why runs differ on a shared CPU machine: which cores the threads land on (and whether the two
intra-op threads share a physical core), ONNX Runtime's intra-op thread pool spinning against
other processes, the allocator's state (glibc arenas, ORT's arena) and page placement after the
model build, frequency and cache state left by the previous process. None of that changes within
one process, so the iterations of one process agree with each other far better than two processes
do; only fresh processes sample it.

The export, calibration and FP32 reference caches (``<out>/_cache``) are shared, so a repeat pays
for the process start, the model build and prepare, and the timing, not for exports. Processes
2..N only time the cell (``kit.run.cell.time_cell``): fidelity, memory and the batch sweep come
from the first process, which measures everything.

How many processes: ``--repeats N`` when given; else the profile's ``repeats`` within its budget
(``Profile.repeat_max_median_ms``): `processes_for` decides from the first process's document and
says why, and the reason is recorded in ``latency.processes_policy``, the number in
``latency.processes_planned``.

When: the sequential runner (`kit.run.reproduce`) runs a cell's processes in rounds over the
whole matrix, not back to back. This host's noise comes in episodes of a few seconds (another
tenant's burst: +20 % for 6 s), so consecutive processes share one episode: on DeiT-S FP32, 100
fresh processes in a row, a 3-process t-interval held the median of another 3 processes 70 % of
the time when the three were consecutive, and 87-91 % when they were 8-16 processes apart
(2026-12-05, reference 2-core Xeon). A document is written after each of its processes, with the
processes measured so far; a stopped run loses none of them and a resumed one adds the rest.
"""

from __future__ import annotations

import copy
from typing import Any

from kit.measure.latency import across_processes, mean_across_processes, summarize
from kit.results import figures


def processes_for(first: dict[str, Any], requested: int | None, profile: Any) -> tuple[int, str]:
    """How many fresh processes a cell gets in all, given its first process's document, and why.

    ``requested``: ``--repeats`` (None: the profile's default within its budget)."""
    if first.get("status") != "ok" or not first.get("latency"):
        # A failure in the first process is most often the same in every process; a skip is final.
        return 1, f"one process: the first process's cell is {first.get('status')}"
    if requested is not None:
        return requested, f"--repeats {requested}"
    policy = profile.repeats_policy()
    limit = profile.repeat_max_median_ms
    median = float(first["latency"]["p50"])
    if profile.repeats > 1 and limit is not None and median > limit:
        return 1, (
            f"{policy}; this cell's first median, {median:.0f} ms, is above that, so one process "
            "(the profile's wall-time budget): its CI is within one process only"
        )
    return profile.repeats, policy


def processes_attempted(doc: dict[str, Any]) -> int:
    """How many fresh processes ``doc`` stands for: its ok ones and the failed ones it records."""
    rep = (doc.get("latency") or {}).get("repeats")
    return 1 if not rep else int(rep["processes"]) + len(rep.get("failed") or [])


def processes_pending(doc: dict[str, Any]) -> int:
    """How many of ``doc``'s planned processes are still to run (0 for a finished cell)."""
    lat = doc.get("latency") or {}
    if doc.get("status") != "ok" or not lat.get("processes_planned"):
        return 0
    return max(0, int(lat["processes_planned"]) - processes_attempted(doc))


def finish(docs: list[dict[str, Any]], policy: str, seed: int = 0, planned: int | None = None) -> dict[str, Any]:
    """One process's document as is, or several merged; the policy recorded either way, and with
    ``planned`` the number planned and, while some are still to run, how many so far."""
    doc = docs[0] if len(docs) == 1 else merge_repeats(docs, seed=seed)
    lat = doc.get("latency")
    if lat:
        lat["processes_policy"] = policy
        if planned is not None:
            lat["processes_planned"] = planned
            done = processes_attempted(doc)
            if doc.get("status") == "ok" and done < planned:
                lat["processes_policy"] = policy + _so_far(done, planned)
    return doc


def _so_far(done: int, planned: int) -> str:
    return (
        f"; {done} of {planned} processes measured so far: the rest come in later rounds of the run "
        "(a stopped run resumes them)"
    )


def planned_policy(doc: dict[str, Any]) -> str:
    """The policy `finish` was given for ``doc``, without what it added while processes are pending."""
    lat = doc["latency"]
    text = str(lat.get("processes_policy") or "")
    return text.removesuffix(_so_far(processes_attempted(doc), int(lat.get("processes_planned") or 0)))


def process_groups(doc: dict[str, Any]) -> list[list[float]]:
    """Each fresh process's timed samples in ``doc`` (a merged document keeps their counts)."""
    lat = doc["latency"]
    samples = [float(x) for x in lat["samples"]]
    counts = (lat.get("repeats") or {}).get("process_iterations") or [len(samples)]
    if sum(counts) != len(samples):
        raise ValueError("the document's process_iterations do not add up to its samples")
    groups, start = [], 0
    for n in counts:
        groups.append(samples[start : start + n])
        start += n
    return groups


def merge_repeats(docs: list[dict[str, Any]], seed: int = 0) -> dict[str, Any]:
    """Merge the documents of one cell measured in ``len(docs)`` fresh processes (the first one
    measured everything; the others may be timing-only).

    Not-ok documents are dropped if at least one is ok (their reasons are kept under
    ``latency.repeats.failed``); with no ok document the first one is returned as is. Latency:
    the median of the process medians with the across-process CI; mean, std and percentiles over
    the pooled samples; the mean with a t-interval over process means (``mean_ci95``). Memory,
    fidelity and the rest: from the first ok process (the same method in each)."""
    if not docs:
        raise ValueError("no documents to merge")
    ok = [d for d in docs if d.get("status") == "ok" and d.get("latency")]
    if not ok:
        return docs[0]
    # A document may already be a merge (a resumed run adds processes to it): its processes and
    # failures count one by one.
    failed = [f for d in ok for f in ((d["latency"].get("repeats") or {}).get("failed") or [])]
    failed += [f"{d.get('status')}: {d.get('reason')}" for d in docs if d not in ok]
    merged = copy.deepcopy(ok[0])
    groups = [g for d in ok for g in process_groups(d)]
    pooled = [x for g in groups for x in g]
    stats = summarize(pooled, seed=seed)
    across = across_processes(groups, seed=seed)
    mean, mean_ci = mean_across_processes(groups)
    lat = merged["latency"]
    lat.update({k: stats[k] for k in ("std", "cv", "min", "p90", "p95", "p99", "max")})
    # One ok process among failed ones has no between-process interval: its CI stays the
    # within-process one (labelled so by `across_processes`), and no mean or rerun interval is
    # invented from a single process.
    lat.pop("mean_ci95", None)
    lat.pop("p50_rerun95", None)
    if across["processes"] > 1:
        lat.update({"mean_ci95": mean_ci, "p50_rerun95": across["p50_rerun95"]})
    lat.update(
        {
            "mean": mean,
            "p50": across["p50"],
            "p50_ci95": across["p50_ci95"],
            "ci_method": across["ci_method"],
            "iterations": len(pooled),
            "duration_s": sum(float(d["latency"]["duration_s"]) for d in ok),
            "noise_warnings": stats["noise_warnings"],
            "samples": [round(x, 6) for x in pooled],
            "repeats": {
                "processes": across["processes"],
                "process_medians": across["process_medians"],
                "process_means": [float(sum(g) / len(g)) for g in groups],
                "process_iterations": [len(g) for g in groups],
                "between_process_cv": across.get("between_process_cv"),
                "spread": across.get("spread"),
                "failed": failed,
            },
        }
    )
    if across["processes"] > 1 and (across.get("spread") or 0.0) >= 0.10:
        lat["noise_warnings"].append(
            f"process medians spread {across['spread']:.0%} across {across['processes']} fresh processes"
        )
    batch = int(merged["cell"]["batch_size"])
    merged["throughput"] = {
        "samples_per_s": figures.samples_per_s(batch, across["p50"]),
        "method": "batch_size / median latency (median of the process medians)",
    }
    merged["started_utc"] = min(str(d.get("started_utc")) for d in ok)
    merged["finished_utc"] = max(str(d.get("finished_utc")) for d in ok)
    merged["duration_s"] = round(sum(float(d.get("duration_s") or 0.0) for d in docs), 3)
    return merged
