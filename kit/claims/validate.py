"""Check every claim against qkit's result documents: one verdict per claim.

Verdicts:

* ``pass`` / ``fail``: the claim was measured and compared; a fail gives measured, claimed,
  deviation and tolerance.
* ``inconclusive``: the measurement's 95% confidence interval straddles a tolerance edge.
* ``not-comparable``: a hardware-bound claim (absolute time or rate) measured on other hardware
  (or a version/hardware statement that differs from our environment): ours shown, not judged.
* ``not-measured``: a cell is missing, skipped or failed (its reason), or was measured only on
  another device. A CUDA claim is never compared with a CPU measurement unless the claim itself
  says why (``compare_device``, seed 004's CPU-only dynamic quantization).
* ``unsupported``: the claim cannot be a measurement (simulated accuracy, labels, file counts).

Conventions. Latency is our mean (the study "averaged" its iterations) with the 95% CI of the
mean (mean ± 1.96·std/√n). Relative claims are recomputed on one machine against ``torch-fp32``
on the same device: speedup = fp32 latency / path latency; memory reduction = 1 - path peak /
fp32 peak. Aggregates use the rows and statistic each claim's ``subject.how`` states, all cells
from one machine.

Several machines. Results merged from several machines (``qkit merge``: one sub-directory per
machine) are kept apart by ``Machine`` (device + GPU name, or CPU model). A claim measured on more
than one machine of its device is judged on each of them by the same rules (a hardware-bound
claim only where the GPU/CPU model is the claimed one; ``not-comparable`` on the others), and a
machine that measured cells on that device but not this claim's is ``not-measured`` there, with
its reason. The verdict then carries ``per_machine`` (one entry per machine) and a one-line
``summary`` ("holds on 2 of 3 GPUs (fails on T4)"), and its overall verdict is:

* ``fail`` if it fails on any machine that could judge it (pass/fail/inconclusive there);
* ``pass`` if it passes on every machine that could judge it;
* ``inconclusive`` otherwise (some inconclusive, none failed);
* only when no machine could judge it: the verdict today's single-machine choice gives
  (``not-comparable`` or ``not-measured``).

The other fields (measured, deviation, reason, hardware, ...) are those of one machine with the
overall verdict: the claimed hardware first, then the machine that measured most. With a single
machine nothing of this applies and the verdict is the single-machine one, field for field.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from kit.claims.accuracy import ACCURACY_KIND, accuracy_problem
from kit.claims.load import Claim, ClaimSet, one_line, schema_problem, schemas_dir

VERDICTS: tuple[str, ...] = ("pass", "fail", "inconclusive", "not-comparable", "not-measured", "unsupported")
CLASSES: tuple[str, ...] = ("portable", "relative", "hardware-bound")
BASELINE_PATH = "torch-fp32"
Z95 = 1.96


# ================================================================================ data


@dataclass(frozen=True, order=True)
class Machine:
    """Where a number was measured: the device and the GPU (cuda) or CPU (cpu) model."""

    device: str
    name: str

    def label(self) -> str:
        return f"{self.name} ({self.device})"


# Device-independent quantities (serialized size, parameters, accuracy) are "measured anywhere".
ANYWHERE = Machine("any", "any machine")


@dataclass(frozen=True)
class Measured:
    value: Any
    ci95: tuple[float, float] | None = None
    cv: float | None = None
    convention: str = ""
    cells: tuple[str, ...] = ()


@dataclass(frozen=True)
class Missing:
    reason: str


@dataclass
class Verdict:
    claim_id: str
    source_file: str
    section: str
    text: str
    comparability: str
    metric: str
    subject: str
    unit: str
    verdict: str
    claimed: Any
    reason: str
    measured: Any = None
    deviation: float | None = None
    deviation_relative: float | None = None
    tolerance: dict[str, Any] = field(default_factory=dict)
    allowed: list[float] | None = None
    ci95: list[float] | None = None
    cv: float | None = None
    convention: str | None = None
    hardware: dict[str, str | None] | None = None
    cells: list[str] = field(default_factory=list)
    # Only when several machines could speak to the claim (see the module doc); else absent from the JSON.
    summary: str | None = None
    per_machine: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if not self.per_machine:
            del out["summary"], out["per_machine"]
        return out


@dataclass
class Screened:
    """Result documents split into usable results, accuracy documents and rejected ones."""

    results: list[dict[str, Any]] = field(default_factory=list)
    accuracy: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Summary:
    total: int
    by_verdict: dict[str, int]
    by_class: dict[str, dict[str, int]]
    by_file: dict[str, dict[str, int]]
    rejected: int = 0

    @property
    def failed(self) -> int:
        return self.by_verdict.get("fail", 0)

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def line(self) -> str:
        counts = ", ".join(f"{self.by_verdict.get(v, 0)} {v}" for v in VERDICTS)
        extra = f"; {self.rejected} result document(s) rejected" if self.rejected else ""
        return f"validate: {self.total} claims: {counts}{extra}"


# ============================================================================ screening


@functools.cache
def _result_validator() -> Draft202012Validator:
    schema = json.loads((schemas_dir() / "result.schema.json").read_text(encoding="utf-8"))
    return Draft202012Validator(schema)


def result_problem(doc: Any) -> str | None:
    """One line saying why ``doc`` is not a valid result document, or None."""
    return schema_problem(doc, _result_validator())


def screen_results(docs: Iterable[Any], names: list[str] | None = None) -> Screened:
    """Sort documents into results and accuracy documents; every other one is rejected with its reason."""
    out = Screened()
    for i, doc in enumerate(docs):
        name = names[i] if names and i < len(names) else f"document #{i}"
        is_accuracy = isinstance(doc, dict) and doc.get("kind") == ACCURACY_KIND
        problem = accuracy_problem(doc) if is_accuracy else result_problem(doc)
        if problem:
            out.rejected.append((name, one_line(problem)))
        elif is_accuracy:
            out.accuracy.append(doc)
        else:
            out.results.append(doc)
    return out


# ============================================================================ numbers


def _num(x: Any) -> float | None:
    """A finite number, or None (JSON from Python may carry NaN/Infinity, and bools are ints)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return float(x) if math.isfinite(x) else None


def _dig(doc: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(key)
    return doc


def fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, (int, float)):
        return f"{value:.4g}" if abs(value) < 1e6 else f"{value / 1e6:.5g}M"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(fmt(v) for v in value) + "]"
    return str(value)


# ============================================================================ the index


def machine_of(doc: dict[str, Any]) -> Machine:
    device = _dig(doc, "cell", "device") or "?"
    if device == "cuda":
        name = _dig(doc, "environment", "gpu", "name")
        return Machine("cuda", name if isinstance(name, str) and name else "unknown GPU")
    name = _dig(doc, "environment", "cpu", "model")
    return Machine(device, name if isinstance(name, str) and name else "unknown CPU")


def _cell_key(doc: dict[str, Any]) -> tuple[str, str, str, int]:
    c = doc["cell"]
    return (c["model"], c["path"], c["device"], c["batch_size"])


def _cell_name(doc: dict[str, Any]) -> str:
    model, path, device, batch = _cell_key(doc)
    return f"{model}/{path}/{device}/bs{batch}"


class ResultIndex:
    """Result and accuracy documents, looked up by cell; remembers which machine measured what."""

    def __init__(self, results: list[dict[str, Any]], accuracy: list[dict[str, Any]] | None = None) -> None:
        self.by_cell: dict[tuple[str, str, str, int], list[dict[str, Any]]] = defaultdict(list)
        for doc in results:
            self.by_cell[_cell_key(doc)].append(doc)
        self.accuracy: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for doc in accuracy or []:
            self.accuracy[(doc["model"], doc["path"])].append(doc)
        # The machine that measured the most cells is the run's main machine: preferred on ties.
        self.rank = Counter(machine_of(d) for d in results if d.get("status") == "ok")
        self.machines = Counter(machine_of(d) for d in results)
        self.environments = [d.get("environment") for d in results if isinstance(d.get("environment"), dict)]

    def docs(self, model: str, path: str, device: str | None, batch: int | None) -> list[dict[str, Any]]:
        return [
            doc
            for (m, p, d, b), docs in self.by_cell.items()
            if m == model and p == path and (device is None or d == device) and (batch is None or b == batch)
            for doc in docs
        ]

    def ok_by_machine(
        self, model: str, path: str, device: str | None, batch: int | None
    ) -> dict[Machine, dict] | Missing:
        """The newest ok document per machine for the cell, or why there is none."""
        docs = self.docs(model, path, device, batch)
        ok = [d for d in docs if d.get("status") == "ok"]
        if not ok:
            return Missing(self._why_missing(model, path, device, batch, docs))
        best: dict[Machine, dict] = {}
        # Least preferred first, so the last one kept per machine is batch 1 and the newest: a rerun
        # supersedes an older document of the same cell.
        for doc in sorted(ok, key=lambda d: (d["cell"]["batch_size"] == 1, str(d.get("finished_utc")))):
            best[machine_of(doc)] = doc
        return best

    def _why_missing(
        self, model: str, path: str, device: str | None, batch: int | None, docs: list[dict[str, Any]]
    ) -> str:
        cell = f"{model} {path} on {device or 'any device'}" + (f" batch {batch}" if batch else "")
        if docs:
            reasons = sorted({f"{d.get('status')}: {one_line(str(d.get('reason')), 160)}" for d in docs})
            return f"{cell} was not measured ({'; '.join(reasons[:2])})"
        others = sorted({d for (m, p, d, _b) in self.by_cell if m == model and p == path and d != device})
        if device and others:
            return f"{cell}: measured on {', '.join(others)} only, which is not used for a {device} comparison"
        return f"no result for {cell}"

    def pick(self, machines: Iterable[Machine], claimed: str | None) -> Machine:
        """Prefer the claimed hardware, then the run's main machine, then the name."""
        return min(machines, key=lambda m: (not same_hardware_name(claimed, m.name), -self.rank[m], m.name))

    def measuring(self, device: str) -> list[Machine]:
        """The machines that measured at least one cell on ``device`` (a box that only skipped them does not count)."""
        return sorted(m for m, n in self.rank.items() if n and m.device == device)

    def absent_reason(self, machine: Machine, cells: Iterable[tuple[str, str]], device: str, batch: int | None) -> str:
        """Why ``machine`` gives no measurement for a claim that needs ``cells`` (model, path)."""
        cells = list(dict.fromkeys(cells))
        problems = []
        for model, path in cells:
            docs = [d for d in self.docs(model, path, device, batch) if machine_of(d) == machine]
            if any(d.get("status") == "ok" for d in docs):
                continue
            what = f"{model} {path}"
            if docs:
                d = max(docs, key=lambda d: str(d.get("finished_utc")))
                problems.append(f"{what}: {d.get('status')}: {one_line(str(d.get('reason')), 120)}")
            else:
                problems.append(f"{what}: no result")
        if not problems:
            return f"not measured on {machine.label()}: its results for these cells lack a usable value"
        head = (
            f"not measured on {machine.label()}"
            if len(cells) == 1
            else f"{len(problems)} of the {len(cells)} cells needed are not measured on {machine.label()}"
        )
        more = f"; ... (+{len(problems) - 2} more)" if len(problems) > 2 else ""
        return f"{head} ({'; '.join(problems[:2])}{more})"


def machine_list(results: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The machines the result documents come from, with how many documents (and ok ones) each."""
    docs = list(results)
    total = Counter(machine_of(d) for d in docs)
    ok = Counter(machine_of(d) for d in docs if d.get("status") == "ok")
    return [
        {"machine": m.label(), "name": m.name, "device": m.device, "documents": n, "ok": ok[m]}
        for m, n in sorted(total.items())
    ]


# ======================================================================= hardware names

_VENDOR_WORDS = {"nvidia", "geforce", "tesla", "quadro", "corporation", "r", "tm"}
_FORM_WORDS = re.compile(r"^(\d+gb|pcie|sxm\d*|hbm\d*e?|nvl|gb|gddr\d*x?)$")


def _hardware_tokens(name: str) -> tuple[str, ...]:
    tokens = re.sub(r"[^a-z0-9]+", " ", name.lower()).split()
    return tuple(t for t in tokens if t not in _VENDOR_WORDS and not _FORM_WORDS.match(t))


def same_hardware_name(claimed: str | None, ours: str) -> bool:
    """'NVIDIA RTX 4070 Ti SUPER' == 'NVIDIA GeForce RTX 4070 Ti SUPER'; a 4070 Ti is not a 4070 Ti SUPER."""
    return bool(claimed) and _hardware_tokens(str(claimed)) == _hardware_tokens(ours)


def claimed_hardware(claim: Claim) -> str | None:
    key = "cpu" if claim.device == "cpu" else "gpu"
    value = claim.hardware.get(key)
    return value if isinstance(value, str) else None


# ===================================================================== single-doc metrics


def _latency(doc: dict[str, Any]) -> Measured | Missing:
    lat = doc.get("latency") if isinstance(doc.get("latency"), dict) else {}
    mean, std = _num(lat.get("mean")), _num(lat.get("std"))
    n = lat.get("iterations") if isinstance(lat.get("iterations"), int) else None
    if mean is None or mean <= 0:
        return Missing(f"{_cell_name(doc)}: latency.mean missing or not positive")
    ci = None
    if std is not None and n and n >= 2:
        half = Z95 * std / math.sqrt(n)
        ci = (mean - half, mean + half)
    convention = f"our mean of {n} timed iterations (the study averaged 1000); 95% CI of the mean = mean ± 1.96·std/√n"
    return Measured(mean, ci, _num(lat.get("cv")), convention, (_cell_name(doc),))


Extractor = Callable[[dict[str, Any]], Measured | Missing]


def _simple(getter: Callable[[dict[str, Any]], Any], what: str, convention: str) -> Extractor:
    def extract(doc: dict[str, Any]) -> Measured | Missing:
        value = _num(getter(doc))
        if value is None:
            return Missing(f"{_cell_name(doc)}: {what} not recorded")
        return Measured(value, None, None, convention, (_cell_name(doc),))

    return extract


def _size_mib(doc: dict[str, Any]) -> float | None:
    size = _num(_dig(doc, "size", "bytes"))
    return size / 2**20 if size is not None else None


def _parameters(doc: dict[str, Any]) -> Any:
    info = doc.get("model_info") if isinstance(doc.get("model_info"), dict) else {}
    return info.get("param_count", info.get("parameters"))


_throughput = _simple(
    lambda d: _dig(d, "throughput", "samples_per_s"),
    "throughput.samples_per_s",
    "our throughput.samples_per_s (its method is recorded in the result)",
)
_peak = _simple(
    lambda d: _dig(d, "memory", "peak_mb"), "memory.peak_mb", "our memory.peak_mb (MiB) at the cell's batch size"
)
_size = _simple(_size_mib, "size.bytes", "our serialized size (size.bytes / 2^20, MiB; the study's 'MB' is ambiguous)")
_params = _simple(
    _parameters,
    "model_info.param_count",
    "parameters of the model as built (model_info.param_count): a property of the model, which "
    "the study repeats on every precision's row",
)


def _arch_value(doc: dict[str, Any], key: str) -> Any:
    info = doc.get("model_info") if isinstance(doc.get("model_info"), dict) else {}
    if key in info:
        return info[key]
    config = info.get("config") if isinstance(info.get("config"), dict) else {}
    if key in config:
        return config[key]
    try:
        from kit.models.registry import get_model

        return get_model(doc["cell"]["model"]).config.get(key)
    except (ImportError, KeyError):
        return None


def _arch(key: str) -> Extractor:
    return _simple(
        lambda d: _arch_value(d, key),
        key,
        f"{key} of the model as run (result model_info, else the kit registry's copy of the "
        "checkpoint config.json, which is checked against the real config when weights load)",
    )


SINGLE: dict[str, Extractor] = {
    "latency_ms": _latency,
    "throughput_sps": _throughput,
    "peak_memory_mb": _peak,
    "model_size_mb": _size,
    "parameters": _params,
    **{k: _arch(k) for k in ("image_size", "patch_size", "hidden_size", "num_attention_heads", "num_hidden_layers")},
}
# Quantities that do not depend on the machine: looked up on any device, compared as "anywhere".
MACHINE_FREE = {
    "model_size_mb",
    "parameters",
    "image_size",
    "patch_size",
    "hidden_size",
    "num_attention_heads",
    "num_hidden_layers",
}
# A model property: read from the fp32 result whatever precision's row repeats it.
MODEL_PROPERTY = {"parameters", "image_size", "patch_size", "hidden_size", "num_attention_heads", "num_hidden_layers"}


def _accuracy(index: ResultIndex, model: str, path: str, key: str) -> Measured | Missing:
    docs = index.accuracy.get((model, path), [])
    ok = [d for d in docs if d.get("status") == "ok"]
    if not ok:
        if docs:
            return Missing(f"accuracy of {model} {path}: {docs[-1].get('status')}: {docs[-1].get('reason')}")
        return Missing(
            f"no accuracy result for {model} {path}: run `qkit accuracy --model {model} --weights DIR "
            "--dataset DIR` (needs the checkpoint and the labelled images)"
        )
    doc = max(ok, key=lambda d: str(d.get("finished_utc")))
    ci = doc.get(f"{key}_ci95")
    ci95 = None
    if isinstance(ci, list) and len(ci) == 2 and all(_num(c) is not None for c in ci):
        ci95 = (float(ci[0]), float(ci[1]))
    return Measured(
        float(doc[f"{key}_pct"]),
        ci95,
        None,
        f"{key} accuracy over {doc['images']} images of {_dig(doc, 'dataset', 'dir')} ({doc['device']})",
        (f"accuracy:{model}/{path}/{doc['device']}",),
    )


# ======================================================================== paired metrics


@dataclass(frozen=True)
class Pair:
    """A metric computed from a path's value and the fp32 baseline's, on one machine."""

    source: str  # the per-cell metric both sides are read as
    combine: Callable[[float, float], float]
    convention: str
    # Accuracy of two paths comes from the same images: a paired difference, whose uncertainty
    # the two unpaired intervals would overstate many times, so no CI is derived for it (and a
    # difference, unlike a ratio, is defined at 0).
    paired_difference: bool = False


PAIRS: dict[str, Pair] = {
    "speedup": Pair("latency_ms", lambda b, p: b / p, "speedup = fp32 mean latency / path mean latency, one machine"),
    "inference_improvement_pct": Pair(
        "latency_ms", lambda b, p: 100 * (1 - p / b), "100·(1 - path mean latency / fp32 mean latency), one machine"
    ),
    "memory_reduction_pct": Pair(
        "peak_memory_mb", lambda b, p: 100 * (1 - p / b), "100·(1 - path peak / fp32 peak), one machine"
    ),
    "memory_reduction_fraction": Pair(
        "peak_memory_mb", lambda b, p: 1 - p / b, "1 - path peak / fp32 peak, one machine, as a fraction"
    ),
    "throughput_change_pct": Pair(
        "throughput_sps", lambda b, p: 100 * (p / b - 1), "100·(path throughput / fp32 throughput - 1), one machine"
    ),
    "size_reduction_pct": Pair(
        "model_size_mb", lambda b, p: 100 * (1 - p / b), "100·(1 - path serialized size / fp32 serialized size)"
    ),
    "top1_accuracy_delta_pp": Pair("top1_accuracy_pct", lambda b, p: p - b, "path top-1 - fp32 top-1 (pp)", True),
    "top5_accuracy_delta_pp": Pair("top5_accuracy_pct", lambda b, p: p - b, "path top-5 - fp32 top-5 (pp)", True),
    "top1_accuracy_drop_pp": Pair("top1_accuracy_pct", lambda b, p: b - p, "fp32 top-1 - path top-1 (pp)", True),
    "top5_accuracy_drop_pp": Pair("top5_accuracy_pct", lambda b, p: b - p, "fp32 top-5 - path top-5 (pp)", True),
}
ACCURACY_METRICS = {"top1_accuracy_pct": "top1", "top5_accuracy_pct": "top5"}


def _pair_ci(pair: Pair, base: Measured, path: Measured) -> tuple[float, float] | None:
    """First-order error propagation: the two sides' CI half-widths combined in quadrature
    (independent measurements), around the combined value."""
    if pair.paired_difference or (base.ci95 is None and path.ci95 is None):
        return None
    b, p = float(base.value), float(path.value)
    hb = (max(base.ci95) - min(base.ci95)) / 2 if base.ci95 else 0.0
    hp = (max(path.ci95) - min(path.ci95)) / 2 if path.ci95 else 0.0
    if b - hb <= 0 or p - hp <= 0:
        return None
    value = pair.combine(b, p)
    half = math.hypot(pair.combine(b + hb, p) - value, pair.combine(b, p + hp) - value)
    return (value - half, value + half)


def _combine(pair: Pair, base: Measured, path: Measured) -> Measured | Missing:
    if not pair.paired_difference and (base.value == 0 or path.value == 0):
        return Missing(f"a {pair.source} of 0 cannot form a ratio ({', '.join(base.cells + path.cells)})")
    cv = max((c for c in (base.cv, path.cv) if c is not None), default=None)
    return Measured(
        pair.combine(base.value, path.value),
        _pair_ci(pair, base, path),
        cv,
        f"{pair.convention}; {base.convention}",
        base.cells + path.cells,
    )


# ====================================================================== cell measurement

Found = dict[Machine, Measured] | Missing


def measure_single(
    index: ResultIndex, metric: str, model: str, path: str, device: str | None, batch: int | None
) -> Found:
    """One metric of one cell, per machine that measured it."""
    if metric in ACCURACY_METRICS:
        m = _accuracy(index, model, path, ACCURACY_METRICS[metric])
        return m if isinstance(m, Missing) else {ANYWHERE: m}
    free = metric in MACHINE_FREE
    docs = index.ok_by_machine(model, path, None if free else device, None if free else batch)
    if isinstance(docs, Missing):
        return docs
    found: dict[Machine, Measured] = {}
    problems = []
    for machine, doc in docs.items():
        m = SINGLE[metric](doc)
        if isinstance(m, Missing):
            problems.append(m.reason)
        else:
            found[ANYWHERE if free else machine] = m
    return found or Missing("; ".join(problems[:2]))


def measure_pair(
    index: ResultIndex, metric: str, model: str, path: str, device: str | None, batch: int | None
) -> Found:
    pair = PAIRS[metric]
    base = measure_single(index, pair.source, model, BASELINE_PATH, device, batch)
    if isinstance(base, Missing):
        return Missing(f"baseline: {base.reason}")
    other = measure_single(index, pair.source, model, path, device, batch)
    if isinstance(other, Missing):
        return other
    shared = set(base) & set(other)
    if not shared:
        return Missing(
            f"{BASELINE_PATH} and {path} of {model} were measured on different machines "
            f"({', '.join(m.label() for m in base)} vs {', '.join(m.label() for m in other)}); "
            "a ratio needs one machine"
        )
    found: dict[Machine, Measured] = {}
    problem: Missing | None = None
    for machine in sorted(shared):
        m = _combine(pair, base[machine], other[machine])
        if isinstance(m, Missing):
            problem = problem or m  # that machine gives no value; the others still do
        else:
            found[machine] = m
    return found or problem or Missing("no value")


def measure(index: ResultIndex, metric: str, model: str, path: str, device: str | None, batch: int | None) -> Found:
    if metric in PAIRS:
        return measure_pair(index, metric, model, path, device, batch)
    if metric in SINGLE or metric in ACCURACY_METRICS:
        if metric in MODEL_PROPERTY:
            found = measure_single(index, metric, model, BASELINE_PATH, device, batch)
            if not isinstance(found, Missing):
                return found
        return measure_single(index, metric, model, path, device, batch)
    return Missing(f"qkit has no rule to measure {metric!r}")


# ============================================================================ comparing


def allowed_interval(claimed: float, kind: str, tol: float) -> tuple[float, float]:
    if kind == "relative":
        half = abs(claimed) * tol
    elif kind == "absolute":
        half = tol
    else:
        half = 0.0
    return (claimed - half, claimed + half)


def classify(value: float, ci: tuple[float, float] | None, low: float, high: float) -> str:
    """pass/fail by the point value; inconclusive when the CI reaches across a tolerance edge."""
    inside = low <= value <= high
    if ci is not None:
        ci_lo, ci_hi = min(ci), max(ci)
        straddles = (ci_lo < low <= ci_hi) or (ci_lo <= high < ci_hi)
        if straddles:
            return "inconclusive"
    return "pass" if inside else "fail"


def _one_sided(value: float, ci: tuple[float, float] | None, edge: float, at_least: bool) -> str:
    ok = value >= edge if at_least else value <= edge
    if ci is not None and min(ci) < edge < max(ci):
        return "inconclusive"
    return "pass" if ok else "fail"


_SEVERITY = {"fail": 2, "inconclusive": 1, "pass": 0}


def _worst(*outcomes: str) -> str:
    return max(outcomes, key=_SEVERITY.__getitem__)


# ============================================================================ verdicts


def _base_verdict(claim: Claim, verdict: str, reason: str, **kw: Any) -> Verdict:
    return Verdict(
        claim_id=claim.id,
        source_file=claim.source_file,
        section=claim.section,
        text=claim.text,
        comparability=claim.comparability,
        metric=claim.metric,
        subject=_subject_text(claim),
        unit=claim.unit,
        verdict=verdict,
        claimed=claim.value,
        reason=reason,
        tolerance={"kind": claim.tolerance.kind, "value": claim.tolerance.value, "reason": claim.tolerance.reason},
        **kw,
    )


def _subject_text(claim: Claim) -> str:
    bits = [claim.subject.describe()]
    if claim.subject.kind == "cell" and claim.kit_path:
        bits.append(claim.kit_path)
    if claim.measure_device:
        bits.append(claim.measure_device)
    if claim.batch_size:
        bits.append(f"bs{claim.batch_size}")
    return " ".join(bits)


def _device_note(claim: Claim) -> str:
    return f" ({claim.device_note})" if claim.device_note else ""


def _hardware_field(claim: Claim, machine: Machine) -> dict[str, str | None]:
    return {"claimed": claimed_hardware(claim), "ours": machine.label()}


def _not_comparable(claim: Claim, m: Measured, machine: Machine) -> Verdict:
    claimed = claimed_hardware(claim) or "unstated hardware"
    why = f"hardware-bound: claimed on {claimed} ({claim.device}), measured on {machine.label()}"
    return _base_verdict(
        claim,
        "not-comparable",
        f"{why}: ours {fmt(m.value)} {claim.unit} vs claimed {fmt(claim.value)} {claim.unit}, shown, not judged"
        + _device_note(claim),
        measured=m.value,
        ci95=list(m.ci95) if m.ci95 else None,
        cv=m.cv,
        convention=m.convention,
        hardware=_hardware_field(claim, machine),
        cells=list(m.cells),
    )


def _scalar_verdict(claim: Claim, m: Measured, machine: Machine) -> Verdict:
    claimed = float(claim.value)
    low, high = allowed_interval(claimed, claim.tolerance.kind, claim.tolerance.value)
    outcome = classify(float(m.value), m.ci95, low, high)
    dev = float(m.value) - claimed
    rel = dev / abs(claimed) if claimed else None
    where = "" if machine == ANYWHERE else f" on {machine.label()}"
    numbers = (
        f"measured {fmt(m.value)} {claim.unit}{where} vs claimed {fmt(claimed)} {claim.unit}: "
        f"deviation {dev:+.4g}" + (f" ({rel:+.1%})" if rel is not None else "")
    )
    tol = f"tolerance {claim.tolerance.describe()} ({claim.tolerance.reason})"
    if outcome == "inconclusive":
        edge = low if m.ci95 and min(m.ci95) < low <= max(m.ci95) else high
        cv = f", CV {m.cv:.1%}" if m.cv is not None else ""
        ci = f"[{fmt(min(m.ci95))}, {fmt(max(m.ci95))}]"
        reason = (
            f"{numbers}; the 95% CI {ci} straddles the tolerance edge {fmt(edge)}{cv} "
            f"(tolerance {claim.tolerance.describe()})"
        )
    else:
        reason = f"{numbers}, {'within' if outcome == 'pass' else 'outside'} {tol}"
    return _base_verdict(
        claim,
        outcome,
        reason + _device_note(claim),
        measured=m.value,
        deviation=dev,
        deviation_relative=rel,
        allowed=[low, high],
        ci95=list(m.ci95) if m.ci95 else None,
        cv=m.cv,
        convention=m.convention,
        hardware=None if machine == ANYWHERE else _hardware_field(claim, machine),
        cells=list(m.cells),
    )


def _judge_found(
    claim: Claim,
    found: Found,
    index: ResultIndex,
    compare: Callable[[Measured, Machine], Verdict],
    needs: list[tuple[str, str]],
) -> Verdict:
    if isinstance(found, Missing):
        return _base_verdict(claim, "not-measured", found.reason + _device_note(claim))

    def on(machine: Machine) -> Verdict:
        m = found[machine]
        if claim.comparability == "hardware-bound" and not _comparable_machine(claim, machine):
            return _not_comparable(claim, m, machine)
        return compare(m, machine)

    return across_machines(
        claim, index, {machine: on(machine) for machine in found}, claim.measure_device, needs, claim.batch_size
    )


def _needs(metric: str, model: str, path: str) -> list[tuple[str, str]]:
    """The (model, path) cells a metric of one row is computed from."""
    return [(model, BASELINE_PATH), (model, path)] if metric in PAIRS else [(model, path)]


# ========================================================================= across machines

JUDGED = ("pass", "fail", "inconclusive")
_VENDOR_PREFIX = re.compile(r"^(?:(?:nvidia|geforce|tesla)\s+)+", re.IGNORECASE)


def overall_verdict(verdicts: Iterable[str]) -> str | None:
    """The claim's verdict from its verdicts per machine (module doc); None when no machine could judge it."""
    judged = [v for v in verdicts if v in JUDGED]
    if not judged:
        return None
    if "fail" in judged:
        return "fail"
    return "pass" if all(v == "pass" for v in judged) else "inconclusive"


def _short_names(machines: list[Machine]) -> dict[Machine, str]:
    """'NVIDIA GeForce RTX 4090' -> 'RTX 4090', 'Tesla T4' -> 'T4'; full labels where that would be ambiguous."""
    one_device = len({m.device for m in machines}) == 1
    short = {m: _VENDOR_PREFIX.sub("", m.name) or m.name for m in machines}
    if not one_device or len(set(short.values())) < len(short):
        return {m: m.label() for m in machines}
    return short


_SUMMARY_WORDS = (
    ("fail", "fails on"),
    ("inconclusive", "inconclusive on"),
    ("not-comparable", "not comparable on"),
    ("not-measured", "not measured on"),
)


def machines_summary(outcomes: dict[Machine, str], device: str | None) -> str:
    """'holds on 2 of 3 GPUs (fails on T4; not measured on A10)'."""
    names = _short_names(sorted(outcomes))
    judged = [m for m, v in outcomes.items() if v in JUDGED]
    held = sum(1 for m in judged if outcomes[m] == "pass")
    noun = "GPU" if device == "cuda" else "machine"
    if judged:
        head = f"holds on {held} of {len(judged)} {noun}{'s' if len(judged) != 1 else ''}"
    else:
        head = f"judged on none of {len(outcomes)} {noun}s"
    rest = [
        "{} {}".format(words, ", ".join(names[m] for m in sorted(outcomes) if outcomes[m] == verdict))
        for verdict, words in _SUMMARY_WORDS
        if verdict in outcomes.values()
    ]
    return head + (f" ({'; '.join(rest)})" if rest else "")


def across_machines(
    claim: Claim,
    index: ResultIndex,
    per: dict[Machine, Verdict],
    device: str | None,
    needs: list[tuple[str, str]],
    batch: int | None,
) -> Verdict:
    """One verdict from the claim's verdict on each machine that measured it (module doc).

    Machines that measured other cells on ``device`` but not these are counted as not-measured
    there. With one machine in all, its verdict is returned unchanged.
    """
    claimed = claimed_hardware(claim)
    absent: dict[Machine, str] = {}
    if device and ANYWHERE not in per:
        absent = {m: index.absent_reason(m, needs, device, batch) for m in index.measuring(device) if m not in per}
    if len(per) + len(absent) < 2:
        return per[index.pick(per, claimed)]
    outcomes = {**{m: v.verdict for m, v in per.items()}, **{m: "not-measured" for m in absent}}
    overall = overall_verdict(outcomes.values())
    pool = [m for m, v in per.items() if v.verdict == overall] if overall else list(per)
    chosen = per[index.pick(pool, claimed)]
    entries = [
        {"machine": m.label(), "verdict": v.verdict, "measured": v.measured, "reason": v.reason} for m, v in per.items()
    ]
    entries += [
        {"machine": m.label(), "verdict": "not-measured", "measured": None, "reason": why} for m, why in absent.items()
    ]
    order = {m.label(): m for m in outcomes}
    chosen.per_machine = sorted(entries, key=lambda e: order[e["machine"]])
    chosen.summary = machines_summary(outcomes, device)
    return chosen


def _comparable_machine(claim: Claim, machine: Machine) -> bool:
    return machine.device == claim.device and same_hardware_name(claimed_hardware(claim), machine.name)


def judge_cell(claim: Claim, index: ResultIndex) -> Verdict:
    model = claim.subject.model or ""
    path = claim.kit_path or (BASELINE_PATH if claim.metric in MODEL_PROPERTY else None)
    if path is None:
        return _base_verdict(claim, "unsupported", f"no kit path to measure {claim.metric} on")
    if not isinstance(claim.value, (int, float)) or isinstance(claim.value, bool):
        return _base_verdict(claim, "unsupported", f"qkit has no rule to compare a {type(claim.value).__name__} value")
    found = measure(index, claim.metric, model, path, claim.measure_device, claim.batch_size)
    return _judge_found(
        claim, found, index, lambda m, machine: _scalar_verdict(claim, m, machine), _needs(claim.metric, model, path)
    )


# ============================================================================ aggregates


def _percentile(values: list[float], q: float, method: str) -> float:
    import numpy as np

    return float(np.percentile(np.asarray(values, dtype=float), q, method=method))


def _std(values: list[float], ddof: int) -> float:
    n = len(values)
    if n - ddof <= 0:
        return 0.0
    mean = sum(values) / n
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (n - ddof))


def _median(values: list[float]) -> float:
    return _percentile(values, 50, "linear")


def _statistic(kind: str, params: dict[str, Any]) -> tuple[Callable[[list[float]], float], bool]:
    """The statistic and whether it is monotone in every value (so a CI can be pushed through it)."""
    table: dict[str, tuple[Callable[[list[float]], float], bool]] = {
        "mean": (lambda v: sum(v) / len(v), True),
        "median": (_median, True),
        "min": (min, True),
        "max": (max, True),
        "at_least": (min, True),
        "at_most": (max, True),
        "std": (lambda v: _std(v, int(params.get("ddof", 1))), False),
        "percentile": (
            lambda v: _percentile(v, float(params.get("percentile", 50)), str(params.get("method", "linear"))),
            True,
        ),
    }
    return table[kind]


def _stat_measured(kind: str, params: dict[str, Any], rows: dict[tuple[str, str], Measured]) -> Measured:
    stat, monotone = _statistic(kind, params)
    values = [m.value for m in rows.values()]
    ci = None
    if monotone and all(m.ci95 for m in rows.values()):
        ci = (stat([min(m.ci95) for m in rows.values()]), stat([max(m.ci95) for m in rows.values()]))  # type: ignore[arg-type]
    cvs = [m.cv for m in rows.values() if m.cv is not None]
    return Measured(
        stat(values),
        ci,
        max(cvs) if cvs else None,
        _rows_convention(rows),
        tuple(c for m in rows.values() for c in m.cells),
    )


def _rows_convention(rows: dict[tuple[str, str], Measured]) -> str:
    first = next(iter(rows.values()))
    return f"{len(rows)} rows; each: {first.convention}"


def measure_rows(index: ResultIndex, claim: Claim) -> dict[Machine, dict[tuple[str, str], Measured]] | Missing:
    """Every (model, path) row an aggregate needs, from one machine that measured all of them."""
    over = claim.subject.over
    assert over is not None
    device = over.device or claim.measure_device
    per_row: dict[tuple[str, str], dict[Machine, Measured]] = {}
    missing = []
    for model in over.models:
        for path in over.kit_paths:
            found = measure(index, over.metric, model, path, device, claim.batch_size)
            if isinstance(found, Missing):
                missing.append(found.reason)
            else:
                per_row[(model, path)] = found
    total = len(over.models) * len(over.kit_paths)
    if missing:
        shown = "; ".join(missing[:3]) + (f"; ... (+{len(missing) - 3} more)" if len(missing) > 3 else "")
        what = f"{len(missing)} of the {total} rows this {claim.subject.aggregate} needs"
        return Missing(f"{what} are not measured: {shown}")
    machines = set.intersection(*(set(found) for found in per_row.values()))
    if not machines:
        return Missing(f"no single machine measured all {total} rows; an aggregate is computed on one machine")
    return {machine: {row: found[machine] for row, found in per_row.items()} for machine in machines}


def _range_verdict(claim: Claim, rows: dict[tuple[str, str], Measured], machine: Machine) -> Verdict:
    lo_m = _stat_measured("min", {}, rows)
    hi_m = _stat_measured("max", {}, rows)
    c_lo, c_hi = (float(x) for x in claim.value)
    kind, tol = claim.tolerance.kind, claim.tolerance.value
    if claim.subject.aggregate == "all_within":
        edge_lo = allowed_interval(c_lo, kind, tol)[0]
        edge_hi = allowed_interval(c_hi, kind, tol)[1]
        outcome = _worst(
            _one_sided(lo_m.value, lo_m.ci95, edge_lo, True), _one_sided(hi_m.value, hi_m.ci95, edge_hi, False)
        )
        rule = (
            f"every row within [{fmt(edge_lo)}, {fmt(edge_hi)}] "
            f"([{fmt(c_lo)}, {fmt(c_hi)}] {claim.tolerance.describe()})"
        )
    else:
        a_lo, a_hi = allowed_interval(c_lo, kind, tol), allowed_interval(c_hi, kind, tol)
        outcome = _worst(classify(lo_m.value, lo_m.ci95, *a_lo), classify(hi_m.value, hi_m.ci95, *a_hi))
        rule = f"min within [{fmt(a_lo[0])}, {fmt(a_lo[1])}] and max within [{fmt(a_hi[0])}, {fmt(a_hi[1])}]"
    measured = [lo_m.value, hi_m.value]
    reason = (
        f"measured [min, max] = {fmt(measured)} {claim.unit} on {machine.label()} over {len(rows)} rows vs "
        f"claimed {fmt(claim.value)}: {rule}: {outcome}"
    )
    return _base_verdict(
        claim,
        outcome,
        reason,
        measured=measured,
        convention=f"{claim.subject.how}; {lo_m.convention}",
        hardware=_hardware_field(claim, machine),
        cells=list(lo_m.cells),
        ci95=[list(lo_m.ci95), list(hi_m.ci95)] if lo_m.ci95 and hi_m.ci95 else None,
    )


def _bound_verdict(claim: Claim, rows: dict[tuple[str, str], Measured], machine: Machine) -> Verdict:
    at_least = claim.subject.aggregate == "at_least"
    m = _stat_measured(claim.subject.aggregate or "", {}, rows)
    low, high = allowed_interval(float(claim.value), claim.tolerance.kind, claim.tolerance.value)
    edge = low if at_least else high
    outcome = _one_sided(m.value, m.ci95, edge, at_least)
    word = "smallest" if at_least else "largest"
    reason = (
        f"{word} of {len(rows)} rows is {fmt(m.value)} {claim.unit} on {machine.label()}; the claim needs it "
        f"{'>=' if at_least else '<='} {fmt(edge)} ({fmt(claim.value)} {claim.tolerance.describe()}): {outcome}"
    )
    return _base_verdict(
        claim,
        outcome,
        reason,
        measured=m.value,
        deviation=m.value - float(claim.value),
        ci95=list(m.ci95) if m.ci95 else None,
        cv=m.cv,
        convention=f"{claim.subject.how}; {m.convention}",
        hardware=_hardware_field(claim, machine),
        cells=list(m.cells),
    )


def _overlap(a: Measured, b: Measured) -> bool:
    return bool(a.ci95 and b.ci95 and min(a.ci95) <= max(b.ci95) and min(b.ci95) <= max(a.ci95))


def _ranking_outcome(ok: bool, close: bool) -> str:
    return "pass" if ok else ("inconclusive" if close else "fail")


def _leader_verdict(claim: Claim, ranked: list[tuple[tuple[str, str], Measured]], machine: Machine) -> Verdict:
    (model, path), best = ranked[0]
    ok = model == claim.value and (not claim.kit_path or path == claim.kit_path)
    claimed_row = next(
        (row for row in ranked if row[0][0] == claim.value and (not claim.kit_path or row[0][1] == claim.kit_path)),
        None,
    )
    close = claimed_row is not None and _overlap(claimed_row[1], best)
    outcome = _ranking_outcome(ok, close)
    detail = f"our leader is {model} ({path}) at {fmt(best.value)}"
    if claimed_row is not None and not ok:
        detail += f"; the claimed {claimed_row[0][0]} ({claimed_row[0][1]}) has {fmt(claimed_row[1].value)}"
    return _ranking_result(claim, outcome, detail, model, ranked, machine)


def _top_verdict(claim: Claim, ranked: list[tuple[tuple[str, str], Measured]], machine: Machine) -> Verdict:
    n = len(claim.value)
    measured = [model for (model, _), _ in ranked[:n]]
    ok = set(measured) == set(claim.value)
    close = len(ranked) > n and _overlap(ranked[n - 1][1], ranked[n][1])
    detail = f"our top {n}: " + ", ".join(f"{model} ({path}) {fmt(m.value)}" for (model, path), m in ranked[:n])
    return _ranking_result(claim, _ranking_outcome(ok, close), detail, measured, ranked, machine)


def _ranking_result(
    claim: Claim,
    outcome: str,
    detail: str,
    measured: Any,
    ranked: list[tuple[tuple[str, str], Measured]],
    machine: Machine,
) -> Verdict:
    if outcome == "inconclusive":
        detail += "; the 95% CIs at the rank boundary overlap, so the order is within noise"
    reason = f"{detail} on {machine.label()} vs claimed {fmt(claim.value)}: {outcome}"
    return _base_verdict(
        claim,
        outcome,
        reason,
        measured=measured,
        convention=claim.subject.how,
        hardware=_hardware_field(claim, machine),
        cells=[c for _, m in ranked for c in m.cells],
    )


def _ranking_verdict(claim: Claim, rows: dict[tuple[str, str], Measured], machine: Machine) -> Verdict:
    ranked = sorted(rows.items(), key=lambda kv: kv[1].value, reverse=True)
    if claim.subject.aggregate == "leader":
        return _leader_verdict(claim, ranked, machine)
    return _top_verdict(claim, ranked, machine)


def _aggregate_compare(claim: Claim, rows: dict[tuple[str, str], Measured], machine: Machine) -> Verdict:
    kind = claim.subject.aggregate
    if kind in ("range", "all_within"):
        return _range_verdict(claim, rows, machine)
    if kind in ("at_least", "at_most"):
        return _bound_verdict(claim, rows, machine)
    if kind in ("top", "leader"):
        return _ranking_verdict(claim, rows, machine)
    m = _stat_measured(kind or "", claim.subject.params, rows)
    m = Measured(m.value, m.ci95, m.cv, f"{claim.subject.how}; {m.convention}", m.cells)
    return _scalar_verdict(claim, m, machine)


def _aggregate_not_comparable(claim: Claim, rows: dict[tuple[str, str], Measured], machine: Machine) -> Verdict:
    m = _stat_measured("min", {}, rows) if claim.subject.aggregate in ("range", "all_within") else None
    shown = [m.value, _stat_measured("max", {}, rows).value] if m else None
    claimed = claimed_hardware(claim) or "unstated hardware"
    return _base_verdict(
        claim,
        "not-comparable",
        f"hardware-bound: claimed on {claimed}, measured on {machine.label()}"
        + (f": ours {fmt(shown)} {claim.unit} vs claimed {fmt(claim.value)}" if shown else ""),
        measured=shown,
        hardware=_hardware_field(claim, machine),
    )


def judge_aggregate(claim: Claim, index: ResultIndex) -> Verdict:
    found = measure_rows(index, claim)
    if isinstance(found, Missing):
        return _base_verdict(claim, "not-measured", found.reason + _device_note(claim))

    def on(machine: Machine) -> Verdict:
        if claim.comparability == "hardware-bound" and not _comparable_machine(claim, machine):
            return _aggregate_not_comparable(claim, found[machine], machine)
        return _aggregate_compare(claim, found[machine], machine)

    over = claim.subject.over
    assert over is not None
    needs = [cell for model in over.models for path in over.kit_paths for cell in _needs(over.metric, model, path)]
    return across_machines(
        claim,
        index,
        {machine: on(machine) for machine in found},
        over.device or claim.measure_device,
        needs,
        claim.batch_size,
    )


# =============================================================== study-level statements


def _env_values(index: ResultIndex, item: str) -> list[str]:
    getters: dict[str, Callable[[dict[str, Any]], Any]] = {
        "torch": lambda e: _dig(e, "packages", "torch"),
        "bitsandbytes": lambda e: _dig(e, "packages", "bitsandbytes"),
        "torchvision": lambda e: _dig(e, "packages", "torchvision"),
        "transformers": lambda e: _dig(e, "packages", "transformers"),
        "cuda": lambda e: _dig(e, "cuda", "torch_cuda_build") or _dig(e, "cuda", "version"),
        "python": lambda e: e.get("python"),
        "os": lambda e: e.get("os"),
    }
    getter = getters.get(item)
    if getter is None:
        return []
    return sorted({str(v) for e in index.environments if (v := getter(e)) not in (None, "")})


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", text)[:3])


def version_matches(claimed: str, ours: str) -> bool:
    """'2.1.0' matches '2.1.0+cu121'; '3.8+' matches any 3.8 or newer; 'Ubuntu 22.04' matches text containing it."""
    claimed, ours = claimed.strip(), ours.strip()
    if claimed.endswith("+"):
        return _version_tuple(ours) >= _version_tuple(claimed[:-1])
    if ours == claimed or any(ours.startswith(claimed + sep) for sep in ".+-_ "):
        return True
    return " " in claimed and claimed.lower() in ours.lower()


def judge_version(claim: Claim, index: ResultIndex) -> Verdict:
    item = claim.subject.item or ""
    ours = _env_values(index, item)
    if not index.environments:
        return _base_verdict(claim, "not-measured", "no result documents, so no environment to compare with")
    if not ours:
        return _base_verdict(
            claim, "not-measured", f"our results record no {item} version (not installed or not captured)"
        )
    matched = all(version_matches(str(claim.value), v) for v in ours)
    reason = f"the study used {item} {claim.value}; ours: {', '.join(ours)}"
    if matched:
        return _base_verdict(claim, "pass", reason, measured=", ".join(ours))
    return _base_verdict(
        claim, "not-comparable", reason + ": our numbers may differ for that reason alone", measured=", ".join(ours)
    )


def judge_hardware(claim: Claim, index: ResultIndex) -> Verdict:
    if not index.environments:
        return _base_verdict(claim, "not-measured", "no result documents, so no hardware to compare with")
    item = claim.subject.item or "gpu"
    key = ("gpu", "name") if item == "gpu" else ("cpu", "model")
    ours = sorted({str(v) for e in index.environments if (v := _dig(e, *key))})
    if not ours:
        return _base_verdict(
            claim,
            "not-comparable",
            f"the study ran on {claim.value}; our results ran without a {item}",
            hardware={"claimed": str(claim.value), "ours": None},
        )
    same = all(same_hardware_name(str(claim.value), name) for name in ours)
    reason = f"the study ran on {claim.value}; ours: {', '.join(ours)}"
    verdict = "pass" if same else "not-comparable"
    return _base_verdict(
        claim,
        verdict,
        reason + ("" if same else ": hardware-bound claims are shown, not judged"),
        measured=", ".join(ours),
        hardware={"claimed": str(claim.value), "ours": ", ".join(ours)},
    )


def judge_study(claim: Claim, index: ResultIndex) -> Verdict:
    if claim.metric == "hardware":
        return judge_hardware(claim, index)
    if claim.metric == "software_version":
        return judge_version(claim, index)
    return _base_verdict(claim, "unsupported", f"qkit has no rule to check the study statement {claim.metric!r}")


# ================================================================================ entry


def judge(claim: Claim, index: ResultIndex) -> Verdict:
    if not claim.supported:
        return _base_verdict(claim, "unsupported", claim.unsupported_reason or "not a measurement")
    try:
        if claim.subject.kind == "study":
            return judge_study(claim, index)
        if claim.subject.kind == "aggregate":
            return judge_aggregate(claim, index)
        return judge_cell(claim, index)
    except Exception as exc:  # one claim's bug must not hide the other verdicts
        return _base_verdict(
            claim,
            "not-measured",
            f"internal error while judging this claim: {type(exc).__name__}: {one_line(str(exc))}",
        )


def validate(
    claims: ClaimSet | Iterable[Claim], results: list[Any], *, accuracy: list[Any] | None = None
) -> list[Verdict]:
    """One verdict per claim, in claim order. Documents that are not valid results are ignored
    here; use `screen_results` first to list them (the CLI does)."""
    screened = screen_results([*results, *(accuracy or [])])
    index = ResultIndex(screened.results, screened.accuracy)
    return [judge(claim, index) for claim in claims]


def summarize(verdicts: list[Verdict], rejected: int = 0) -> Summary:
    by_verdict = Counter(v.verdict for v in verdicts)
    by_class: dict[str, dict[str, int]] = {
        c: dict(Counter(v.verdict for v in verdicts if v.comparability == c)) for c in CLASSES
    }
    by_file: dict[str, dict[str, int]] = defaultdict(dict)
    for v in verdicts:
        by_file[v.source_file][v.verdict] = by_file[v.source_file].get(v.verdict, 0) + 1
    return Summary(len(verdicts), {k: by_verdict.get(k, 0) for k in VERDICTS}, by_class, dict(by_file), rejected)


def verdict_document(
    verdicts: list[Verdict],
    summary: Summary,
    *,
    expected_dir: str,
    results_dir: str | None,
    rejected: list[tuple[str, str]],
    generated_utc: str,
    documents: int,
    machines: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The JSON verdict file (schema: schemas/verdicts.schema.json). ``machines``: `machine_list` of the results."""
    return {
        "schema_version": "1",
        "kind": "qkit-verdicts",
        "generated_utc": generated_utc,
        "expected_dir": expected_dir,
        "results_dir": results_dir,
        "results": {"documents": documents, "rejected": [{"file": f, "reason": r} for f, r in rejected]},
        "machines": list(machines or []),
        "summary": {
            "total": summary.total,
            "by_verdict": summary.by_verdict,
            "by_class": summary.by_class,
            "by_file": summary.by_file,
            "failed": summary.failed,
            "exit_code": summary.exit_code,
            "line": summary.line(),
        },
        "verdicts": [_jsonable(v.to_dict()) for v in verdicts],
    }


def _jsonable(obj: Any) -> Any:
    # Measured values come from documents that may hold NaN; JSON cannot.
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


def verdicts_problem(doc: Any) -> str | None:
    return schema_problem(doc, _verdicts_validator())


@functools.cache
def _verdicts_validator() -> Draft202012Validator:
    return Draft202012Validator(json.loads((schemas_dir() / "verdicts.schema.json").read_text(encoding="utf-8")))


def load_accuracy_docs(results_dir: Path) -> tuple[list[dict[str, Any]], list[str], list[tuple[str, str]]]:
    """Accuracy documents (``*.accuracy.json`` anywhere under the results dir): docs, names, unreadable."""
    docs, names, bad = [], [], []
    for file in sorted(results_dir.rglob("*.accuracy.json")):
        try:
            docs.append(json.loads(file.read_text(encoding="utf-8")))
            names.append(str(file))
        except (OSError, ValueError, RecursionError) as exc:
            bad.append((str(file), f"not JSON: {one_line(str(exc), 160)}"))
    return docs, names, bad
