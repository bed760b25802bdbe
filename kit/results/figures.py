"""One definition per figure: speedup, memory reduction and throughput, each naming its statistic.

Every consumer (validate's metrics, the report's tables, compare-int8, summary.csv) computes these
figures here and prints the label that comes with them, so "speedup" is never two numbers.

- Latency statistic: ``median`` (p50) or ``mean``. The report, compare-int8 and summary.csv's
  extra columns use the median (robust to the outliers a shared machine adds); validate uses the
  statistic a claim states (the study averaged its iterations: the mean) and says so.
- Speedup = FP32 latency / path latency, both with the same statistic, same model, device and
  batch size.
- Throughput = batch size / latency, with the same statistic.
- Memory is read by phase (``kit.measure.memory``): ``load`` (prepare peak), ``steady`` (the
  prepared model at rest) and ``inference`` (peak from the first warm-up to the end of timing).
  On CPU each is the amount above the process baseline (interpreter and libraries before the
  model is built), the host analogue of torch's allocator count on CUDA. Memory reduction =
  1 - path / FP32 in one phase. A document written before phases were recorded has none: its
  whole-cell peak includes model build and quantization, so no phase is read from it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

Doc = dict[str, Any]

LATENCY_KEYS: dict[str, str] = {"median": "p50", "mean": "mean"}
REPORT_STATISTIC = "median"
MEMORY_PHASES: tuple[str, ...] = ("load", "steady", "inference")
DEFAULT_MEMORY_PHASE = "inference"

PHASE_WORDS: dict[str, str] = {
    "load": "load/prepare-phase peak",
    "steady": "steady footprint once prepared",
    "inference": "inference-phase peak (warm-up and timed loop)",
}
NO_PHASES = (
    "recorded before memory phases (its only figure is the whole-cell peak, which includes model "
    "build and quantization): rerun the cell"
)


@dataclass(frozen=True)
class MemoryReading:
    mb: float
    phase: str
    source: str

    def describe(self) -> str:
        return f"memory phase {self.phase} ({PHASE_WORDS[self.phase]}): {self.source}"


def _check_statistic(statistic: str) -> str:
    if statistic not in LATENCY_KEYS:
        raise ValueError(f"unknown latency statistic {statistic!r}; one of {', '.join(LATENCY_KEYS)}")
    return LATENCY_KEYS[statistic]


def _ok(doc: Doc | None) -> bool:
    return isinstance(doc, dict) and doc.get("status") == "ok"


def latency_ms(doc: Doc | None, statistic: str = REPORT_STATISTIC) -> float | None:
    key = _check_statistic(statistic)
    if not _ok(doc):
        return None
    assert doc is not None
    value = (doc.get("latency") or {}).get(key)
    return float(value) if isinstance(value, (int, float)) and value > 0 else None


def speedup(doc: Doc | None, base: Doc | None, statistic: str = REPORT_STATISTIC) -> float | None:
    """FP32 latency / path latency, the same statistic on both sides."""
    p, b = latency_ms(doc, statistic), latency_ms(base, statistic)
    return b / p if p and b else None


def throughput_sps(doc: Doc | None, statistic: str = REPORT_STATISTIC) -> float | None:
    """Batch size / latency (the statistic named)."""
    lat = latency_ms(doc, statistic)
    if lat is None or doc is None:
        return None
    return samples_per_s(int(doc["cell"]["batch_size"]), lat)


def samples_per_s(batch_size: int, latency: float) -> float:
    """Samples per second of a batch taking ``latency`` ms: the one throughput formula (0 for no time)."""
    return batch_size / (latency / 1000.0) if latency > 0 else 0.0


def speedup_label(statistic: str = REPORT_STATISTIC) -> str:
    key = _check_statistic(statistic)
    return f"speedup = ratio of {statistic}s: torch-fp32 latency.{key} / path latency.{key}"


def throughput_label(statistic: str = REPORT_STATISTIC) -> str:
    key = _check_statistic(statistic)
    return f"throughput = batch size / {statistic} latency (latency.{key})"


def memory_label(phase: str = DEFAULT_MEMORY_PHASE) -> str:
    if phase not in PHASE_WORDS:
        raise ValueError(f"unknown memory phase {phase!r}; one of {', '.join(MEMORY_PHASES)}")
    return f"memory reduction = 1 - path / torch-fp32, {PHASE_WORDS[phase]} (phase {phase})"


def memory(doc: Doc | None, phase: str = DEFAULT_MEMORY_PHASE) -> MemoryReading | str:
    """The cell's memory in ``phase`` with its source, or why there is none."""
    if phase not in PHASE_WORDS:
        raise ValueError(f"unknown memory phase {phase!r}; one of {', '.join(MEMORY_PHASES)}")
    if not _ok(doc):
        return "cell not ok"
    assert doc is not None
    mem = doc.get("memory") or {}
    phases = mem.get("phases")
    if not isinstance(phases, dict):
        return NO_PHASES
    entry = phases.get(phase)
    if not isinstance(entry, dict):
        return f"no {phase} phase recorded"
    if entry.get("unavailable"):
        return f"{phase} phase unavailable: {entry['unavailable']}"
    on_cpu = doc["cell"]["device"] == "cpu"
    key = "mb" if phase == "steady" else "net_mb" if on_cpu else "peak_mb"
    value = entry.get(key)
    if not isinstance(value, (int, float)):
        return f"{phase} phase has no value"
    source = str(entry.get("source", "unlabelled"))
    if on_cpu and phase != "steady":
        source += "; above the process baseline"
    return MemoryReading(float(value), phase, source)


def memory_mb(doc: Doc | None, phase: str = DEFAULT_MEMORY_PHASE) -> float | None:
    reading = memory(doc, phase)
    return reading.mb if isinstance(reading, MemoryReading) else None


def reduction_pct(value: float | None, base_value: float | None) -> float | None:
    """100 * (1 - value / base): the one formula every reduction uses."""
    if value is None or not base_value:
        return None
    return 100.0 * (1.0 - value / base_value)


def memory_reduction_pct(doc: Doc | None, base: Doc | None, phase: str = DEFAULT_MEMORY_PHASE) -> float | None:
    return reduction_pct(memory_mb(doc, phase), memory_mb(base, phase))


# ---------------------------------------------------------------- fidelity

UNTRAINED_LABEL = "the method's error on untrained (seeded random) weights, not the checkpoint's"


def trained_weights(doc: Doc) -> bool:
    """Whether the cell ran trained weights (a local checkpoint or the hub), not seeded random ones."""
    fid = doc.get("fidelity") or {}
    if isinstance(fid.get("trained_weights"), bool):
        return bool(fid["trained_weights"])
    weights = (doc.get("model_info") or {}).get("weights")
    return weights not in (None, "random")


@dataclass(frozen=True)
class Agreement:
    """Top-1 agreement with FP32: the share, its n and its Wilson 95% interval."""

    value: float
    n: int | None
    ci95: tuple[float, float] | None
    trained: bool

    def describe(self) -> str:
        n = f"n={self.n}" if self.n else "n unrecorded"
        ci = f", 95% CI [{self.ci95[0]:.0%}, {self.ci95[1]:.0%}] (Wilson)" if self.ci95 else ""
        what = "" if self.trained else f"; {UNTRAINED_LABEL}"
        return f"{self.value:.0%} ({n}{ci}){what}"


def top1_agreement(doc: Doc) -> Agreement | None:
    fid = doc.get("fidelity") or {}
    value = fid.get("top1_agreement")
    if not isinstance(value, (int, float)):
        return None
    n = fid.get("n")
    if not isinstance(n, int):
        m = re.match(r"(\d+) ", str(fid.get("inputs", "")))
        n = int(m.group(1)) if m else None
    ci = fid.get("top1_agreement_ci95")
    interval = (float(ci[0]), float(ci[1])) if isinstance(ci, list) and len(ci) == 2 else None
    if interval is None and n:
        interval = wilson_interval(round(value * n), n)
    return Agreement(float(value), n, interval, trained_weights(doc))


def wilson_interval(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval for a proportion; (0, 1) when n is 0."""
    if n <= 0:
        return (0.0, 1.0)
    if not 0 <= successes <= n:
        raise ValueError(f"successes {successes} not in [0, {n}]")
    p = successes / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    lo = 0.0 if successes == 0 else max(0.0, centre - half)
    hi = 1.0 if successes == n else min(1.0, centre + half)
    return (lo, hi)
