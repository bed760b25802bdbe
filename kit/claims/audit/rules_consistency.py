"""Cross-document consistency: the same quantity stated in several files or sections.

Only files of the same study are compared (same published GPU: seed 004, a one-model T4 report,
is a different study from the RTX 4070 Ti SUPER files). Per-model values are compared on the
intervals of their printed rounding; category membership on the study's own parameter counts.

Category thresholds are read from the category's own label as printed ("Edge Models (<25M
params)", "Foundation Models (300M+ parameters)", "Production Models (~86M parameters)",
"(50-100M params)"). ``~`` and a bare "86M" are read as +/-5%. A model's size is the study's
own published parameter count (its rounding interval); the registry's exact count is shown
beside it.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from kit.claims.audit.claim import AuditClaim, Study, path_key
from kit.claims.audit.findings import Hit
from kit.claims.audit.model_facts import real_params
from kit.claims.audit.numbers import Iv, fmt
from kit.claims.audit.registry import rule

# ------------------------------------------------------------------------- per-model values


@rule(
    "consistency.cell_values",
    family="consistency",
    severity="warning",
    convention="the same (model, precision, metric, batch) printed in two places must agree within "
    "both printings' rounding; a coarser print within one of its units is a truncation (fine); "
    "same-precision prints under 0.1% apart are info (a re-rounded or zero-padded copy); more "
    "than 5% apart an error; one finding per model and pair of tables",
)
def cell_values(study: Study) -> Iterator[Hit]:
    """One measurement printed with different values in different tables or files."""
    groups: dict[tuple, list[AuditClaim]] = defaultdict(list)
    for c in study.claims:
        if c.kind != "cell" or not c.is_number or not c.model:
            continue
        # The device is part of the measurement: a CPU and a CUDA latency of one path are two figures.
        key = (study.group_of(c.source_file), c.model, c.metric, path_key(c), c.device or "any", c.batch_size or 1)
        groups[key].append(c)
    real: dict[tuple[str, str, str], list[tuple[AuditClaim, AuditClaim, float]]] = defaultdict(list)
    minor: dict[tuple[str, str], list[tuple[AuditClaim, AuditClaim]]] = defaultdict(list)
    for (_g, model, _metric, _path, _d, _b), claims in sorted(groups.items(), key=lambda kv: str(kv[0])):
        worst: tuple[AuditClaim, AuditClaim] | None = None
        for i, a in enumerate(claims):
            for b in claims[i + 1 :]:
                if a.location == b.location or a.iv.meets(b.iv):
                    continue
                if worst is None or a.iv.rel_gap(b.iv) > worst[0].iv.rel_gap(worst[1].iv):
                    worst = (a, b)
        if worst is None:
            continue
        a, b = sorted(worst, key=lambda c: c.location)
        unit = 2 * max(a.iv.half, b.iv.half)  # one unit in the last digit of the coarser printing
        rel = abs(a.num - b.num) / max(abs(a.num), abs(b.num), 1e-12)
        same_precision = math.isclose(a.iv.half, b.iv.half, rel_tol=1e-6)
        if abs(a.num - b.num) < unit - 1e-12 and not same_precision:
            continue  # "262 samples/s" for 262.86: a coarser figure truncated, not a different one
        if abs(a.num - b.num) < unit - 1e-12 or rel < 1e-3:
            minor[(a.location, b.location)].append((a, b))
            continue
        real[(model, a.location, b.location)].append((a, b, rel))
    for (model, loc_a, loc_b), items in sorted(real.items()):
        rel = max(r for _a, _b, r in items)
        parts = [f"{path_key(a)} {a.metric} {fmt(a.num)} vs {fmt(b.num)} ({r:.2%})" for a, b, r in items]
        yield Hit(
            f"{model}: {loc_a} and {loc_b} print different values for the same measurement: {'; '.join(parts)}",
            "; ".join(f"{a.id} {a.iv} vs {b.id} {b.iv}" for a, b, _r in items) + ": the intervals do not meet",
            [x for a, b, _r in items for x in (a, b)],
            severity="error" if rel > 0.05 else "warning",
        )
    for (loc_a, loc_b), pairs in sorted(minor.items()):
        sample = ", ".join(f"{a.model} {path_key(a)} {a.metric} {fmt(a.num)} vs {fmt(b.num)}" for a, b in pairs[:6])
        yield Hit(
            f"{len(pairs)} value(s) printed to the same precision differ between {loc_a} and {loc_b} by "
            "less than 0.1% (one table looks re-rounded and zero-padded from the other)",
            f"{sample}{' ...' if len(pairs) > 6 else ''}; outside both roundings",
            [c for pair in pairs[:6] for c in pair],
            severity="info",
        )


# ------------------------------------------------------------------------ study-level values


def _item_key(c: AuditClaim) -> str:
    item = c.subject.get("item")
    return re.sub(r"[^a-z0-9]+", " ", str(item).lower()).strip() if item else ""


_STUDY_METRICS_SAME = (
    "model_count",
    "experiment_count",
    "precision_count",
    "measured_iterations",
    "warmup_iterations",
    "software_version",
    "hardware",
    "gpu_memory_gb",
    "success_rate_pct",
    "failed_experiment_count",
)


@rule(
    "consistency.study_values",
    family="consistency",
    severity="error",
    convention="study-level facts (counts, iteration counts, versions, hardware, success rate) must "
    "be stated the same way in every file of the study; values compared exactly (strings "
    "case- and space-insensitively)",
)
def study_values(study: Study) -> Iterator[Hit]:
    """A study-level fact (count, version, hardware ...) stated differently in two places."""
    groups: dict[tuple, list[AuditClaim]] = defaultdict(list)
    for c in study.claims:
        if c.kind != "study" or c.metric not in _STUDY_METRICS_SAME:
            continue
        item = _item_key(c)
        if c.metric in ("model_count", "experiment_count", "precision_count") and item:
            continue  # counts of one file or category, not of the study
        groups[(study.group_of(c.source_file), c.metric, item)].append(c)
    for (_g, metric, item), claims in sorted(groups.items()):
        norm: dict[object, list[AuditClaim]] = {}
        for c in claims:
            v = c.value
            key = (
                re.sub(r"\s+", " ", v.strip().lower())
                if isinstance(v, str)
                else (float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else repr(v))
            )
            norm.setdefault(key, []).append(c)
        if len(norm) < 2:
            continue
        listing = "; ".join(
            f"{cs[0].value!r} in {', '.join(sorted({c.source_file for c in cs}))}" for cs in norm.values()
        )
        yield Hit(
            f"{metric}{' (' + item + ')' if item else ''} is stated differently across the study: {listing}",
            listing,
            claims,
        )


# ----------------------------------------------------------------------------- categories

_KEYWORDS = (
    ("foundation", "foundation"),
    ("production", "production"),
    ("edge", "edge"),
    ("self supervised", "self-supervised"),
    ("self-supervised", "self-supervised"),
    ("masked", "masked-autoencoder"),
    ("specialized", "specialized"),
    ("specialised", "specialized"),
)
# The three size tiers (000, 002, 003's model list): the taxonomy whose memberships must agree.
SIZE_TIERS = ("foundation", "production", "edge")


def category_key(label: str | None) -> str | None:
    if not label:
        return None
    low = label.lower().replace("_", " ")
    for word, key in _KEYWORDS:
        if word in low:
            return key
    return None


@dataclass(frozen=True)
class Threshold:
    lo: float  # params, inclusive unless lo_open
    hi: float
    lo_open: bool = False
    hi_open: bool = False
    text: str = ""

    def admits(self, iv: Iv) -> bool | None:
        """True: certainly inside; False: certainly outside; None: the rounding straddles an edge."""
        lo_ok_all = iv.lo > self.lo if self.lo_open else iv.lo >= self.lo
        hi_ok_all = iv.hi < self.hi if self.hi_open else iv.hi <= self.hi
        if lo_ok_all and hi_ok_all:
            return True
        lo_ok_any = iv.hi > self.lo if self.lo_open else iv.hi >= self.lo
        hi_ok_any = iv.lo < self.hi if self.hi_open else iv.lo <= self.hi
        if not (lo_ok_any and hi_ok_any):
            return False
        return None


_M = r"(\d+(?:\.\d+)?)\s*(M|B)\b"


def _num(x: str, unit: str) -> float:
    return float(x) * (1e9 if unit.upper() == "B" else 1e6)


def parse_threshold(text: str | None) -> Threshold | None:
    """A parameter-count band from a category label: '<25M', '300M+', '>300M', '50-100M', '~86M'."""
    if not text:
        return None
    t = text.replace("≥", ">=").replace("≤", "<=")
    m = re.search(r"(\d+(?:\.\d+)?)\s*(M|B)?\s*[-–]\s*" + _M, t)
    if m:
        unit = m.group(4)
        return Threshold(_num(m.group(1), m.group(2) or unit), _num(m.group(3), unit), text=m.group(0))
    m = re.search(r"(<=|<|under|below|less than)\s*" + _M, t, re.IGNORECASE)
    if m:
        return Threshold(-math.inf, _num(m.group(2), m.group(3)), hi_open=m.group(1) != "<=", text=m.group(0))
    m = re.search(r"(>=|>|over|above|more than)\s*" + _M, t, re.IGNORECASE)
    if m:
        return Threshold(_num(m.group(2), m.group(3)), math.inf, lo_open=m.group(1) not in (">=",), text=m.group(0))
    m = re.search(_M + r"\s*\+", t)
    if m:
        return Threshold(_num(m.group(1), m.group(2)), math.inf, text=m.group(0))
    m = re.search(r"~\s*" + _M, t) or re.search(r"\(\s*" + _M + r"\s*param", t, re.IGNORECASE)
    if m:
        v = _num(m.group(1), m.group(2))
        return Threshold(v * 0.95, v * 1.05, text=f"~{m.group(1)}{m.group(2)}")
    return None


@dataclass
class Category:
    """One statement of a category in one file: its label, threshold, members and/or count.

    ``source`` says where it came from, most explicit first: ``count`` (a stated number of
    models), ``members`` (a list), ``label`` (per-model category labels), ``section`` (a heading
    that groups rows, e.g. "Production Models Performance"), ``aggregate`` (a statistic whose
    own wording names a band)."""

    source_file: str
    label: str
    key: str | None
    threshold: Threshold | None
    source: str
    members: set[str] | None = None
    count: int | None = None
    claims: list[AuditClaim] = field(default_factory=list)


SOURCE_RANK = {"count": 0, "members": 1, "label": 2, "section": 3, "aggregate": 4}


def _section_tail(section: str) -> str:
    return section.split("/")[-1].strip()


_TIER_HEADING = re.compile(r"^(foundation|production|edge)\b[\w\s()+<>~.-]*models?\b", re.IGNORECASE)


def categories(study: Study) -> list[Category]:
    """Every category statement of every file (see ``Category``)."""
    out: dict[tuple[str, str, str], Category] = {}

    def get(src: str, label: str, source: str, thr_text: str | None = None) -> Category:
        k = (src, label, source)
        if k not in out:
            out[k] = Category(src, label, category_key(label), parse_threshold(thr_text or label), source)
        return out[k]

    for c in study.claims:
        item = c.subject.get("item")
        if c.metric == "category_model_count" and isinstance(item, str) and c.is_number:
            cat = get(c.source_file, item, "count")
            cat.count = int(c.num)
            cat.claims.append(c)
        elif c.metric == "category_members" and isinstance(item, str) and isinstance(c.value, list):
            cat = get(c.source_file, item, "members")
            cat.members = (cat.members or set()) | {m for m in c.value if isinstance(m, str)}
            cat.claims.append(c)
        elif c.metric == "size_category" and c.model and isinstance(c.value, str):
            cat = get(c.source_file, c.value, "label")
            cat.members = (cat.members or set()) | {c.model}
            cat.claims.append(c)
        if c.kind == "cell" and c.model:
            tail = _section_tail(c.section)
            if _TIER_HEADING.match(tail):
                cat = get(c.source_file, tail, "section")
                cat.members = (cat.members or set()) | {c.model}
                if not any(x.model == c.model for x in cat.claims):
                    cat.claims.append(c)
        if c.kind == "aggregate":
            spec_models = c.over.get("models")
            if not isinstance(spec_models, list) or len(spec_models) >= 16:
                continue
            thr = parse_threshold(c.how) or parse_threshold(c.text) or parse_threshold(_section_tail(c.section))
            if thr is None:
                continue
            cat = get(c.source_file, c.id, "aggregate", thr.text)
            cat.threshold = thr
            cat.key = category_key(c.id.split(".", 1)[-1])  # the tier the transcriber named, if any
            cat.members = {m for m in spec_models if isinstance(m, str)}
            cat.claims.append(c)
    return sorted(out.values(), key=lambda k: (k.source_file, SOURCE_RANK[k.source], k.label))


def published_params(study: Study, model: str, near: AuditClaim | None = None) -> tuple[Iv, AuditClaim] | None:
    """The study's own parameter count for ``model`` (nearest file first) as a rounding interval."""
    cands = study.cells("parameters", model=model)
    if near is not None:
        cands = [c for c in cands if study.same_group(c, near)]
        cands.sort(key=lambda c: c.source_file != near.source_file)
    if not cands:
        return None
    return cands[0].iv, cands[0]


def _p(x: float) -> str:
    return f"{x / 1e6:.4g}M"


def _study_models(study: Study, near: AuditClaim) -> set[str]:
    return {c.model for c in study.cells("parameters") if c.model and study.same_group(c, near)}


def _file_bands(cats: Iterable[Category]) -> dict[tuple[str, str], Category]:
    """(file, tier key) -> the most explicit category statement carrying a band for that tier."""
    out: dict[tuple[str, str], Category] = {}
    for cat in cats:  # sorted most explicit first
        if cat.key and cat.threshold is not None:
            out.setdefault((cat.source_file, cat.key), cat)
    return out


def _band_of(cat: Category, bands: dict[tuple[str, str], Category]) -> Threshold | None:
    """A category's own band, else the band its file states for that tier."""
    if cat.threshold is not None:
        return cat.threshold
    band_cat = bands.get((cat.source_file, cat.key)) if cat.key else None
    return band_cat.threshold if band_cat else None


def _out_of_band(study: Study, cat: Category, model: str, bands: dict[tuple[str, str], Category]) -> bool:
    """Whether ``model`` certainly lies outside the band of ``cat`` (category_threshold's finding)."""
    thr = _band_of(cat, bands)
    got = published_params(study, model, cat.claims[0]) if cat.claims else None
    return thr is not None and got is not None and thr.admits(got[0]) is False


def _threshold_flagged(study: Study, cat: Category, bands: dict[tuple[str, str], Category]) -> bool:
    """Whether category_threshold reports this statement (an out-of-band member or a wrong count)."""
    thr = _band_of(cat, bands)
    if thr is None or not cat.claims:
        return False
    if cat.members and any(_out_of_band(study, cat, m, bands) for m in cat.members):
        return True
    if cat.count is not None and cat.source == "count":
        inside = maybe = 0
        for m in _study_models(study, cat.claims[0]):
            got = published_params(study, m, cat.claims[0])
            verdict = thr.admits(got[0]) if got else None
            inside += verdict is True
            maybe += verdict is None and got is not None
        return not (inside <= cat.count <= inside + maybe)
    return False


@rule(
    "consistency.category_threshold",
    family="consistency",
    severity="error",
    convention="a category's stated parameter band ('<25M', '300M+', '~86M' = +/-5%) must admit "
    "every member (by the study's own published counts, with their rounding) and, where a count "
    "is given, the number of study models inside the band must equal it; a bare label ('Edge') "
    "takes the band its own file states for that tier",
)
def category_threshold(study: Study) -> Iterator[Hit]:
    """Category members (or counts) that contradict the category's own parameter band."""
    cats = categories(study)
    bands = _file_bands(cats)
    merged: dict[tuple[str, str, tuple], dict] = {}
    for cat in cats:
        if not cat.claims:
            continue
        anchor = cat.claims[0]
        thr = cat.threshold
        band_cat: Category | None = cat
        if thr is None and cat.key:
            band_cat = bands.get((cat.source_file, cat.key))
            thr = band_cat.threshold if band_cat else None
        if thr is None or band_cat is None:
            continue
        if cat.members:
            for m in sorted(cat.members):
                got = published_params(study, m, anchor)
                if got is None or thr.admits(got[0]) is not False:
                    continue
                k = (cat.source_file, cat.key or cat.label, (thr.lo, thr.hi))
                entry = merged.setdefault(k, {"thr": thr, "labels": [], "bad": {}, "claims": []})
                if cat.label not in entry["labels"]:
                    entry["labels"].append(cat.label)
                entry["bad"][m] = got
                # the statements that place the offender in the category, then where the band is stated
                mine = [x for x in cat.claims if x.model == m or x.kind != "cell"][:2]
                entry["claims"].extend(x for x in mine if x not in entry["claims"])
                if band_cat is not cat:
                    entry["claims"].extend(x for x in band_cat.claims[:1] if x not in entry["claims"])
        listed = any(o.source == "members" and o.source_file == cat.source_file and o.label == cat.label for o in cats)
        if cat.count is not None and cat.source == "count" and not listed:
            # (a count beside a member list is the list's length: the list is checked above)
            models = _study_models(study, anchor)
            inside, maybe = [], []
            for m in sorted(models):
                got = published_params(study, m, anchor)
                if got is None:
                    continue
                verdict = thr.admits(got[0])
                if verdict is True:
                    inside.append(m)
                elif verdict is None:
                    maybe.append(m)
            if not (len(inside) <= cat.count <= len(inside) + len(maybe)):
                yield Hit(
                    f"{cat.source_file}: '{cat.label}' claims {cat.count} models, but {len(inside)} of the "
                    f"study's {len(models)} models have {thr.text} parameters",
                    f"inside {thr.text}: {', '.join(inside) or 'none'}"
                    + (f"; on the edge: {', '.join(maybe)}" if maybe else "")
                    + "; by the study's own published parameter counts",
                    cat.claims,
                )
    for (src, _key, _band), e in sorted(merged.items(), key=lambda kv: str(kv[0])):
        bad = e["bad"]
        listing = ", ".join(
            f"{m} {_p(iv.mid)}" + (f" (registry {_p(r)})" if (r := real_params(m)) else "")
            for m, (iv, _pc) in sorted(bad.items())
        )
        yield Hit(
            f"{src}: '{' / '.join(_shown_labels(e['labels'])[:3])}' ({e['thr'].text}) includes {len(bad)} model(s) "
            f"outside that band: {listing}",
            f"band {e['thr'].text}; "
            + "; ".join(f"{m}: published {_p(iv.mid)} ({pc.id})" for m, (iv, pc) in sorted(bad.items())),
            [
                *(pc for _iv, pc in bad.values()),
                *(x for x in e["claims"][:6] if x not in [pc for _iv, pc in bad.values()]),
            ],
        )


def _shown_labels(labels: list[str]) -> list[str]:
    """Category labels as printed; a statistic's claim id stands in only when nothing else names it."""
    printed = [x for x in labels if not re.match(r"^\d{3}\.", x)]
    return printed or labels


@rule(
    "consistency.category_membership",
    family="consistency",
    severity="warning",
    convention="a model belongs to one size tier (foundation / production / edge) across all files "
    "of the study; tiers from category labels, member lists and group headings (not from how "
    "a statistic was reconstructed)",
)
def category_membership(study: Study) -> Iterator[Hit]:
    """A model placed in different size tiers by different files (or twice in one file)."""
    cats = [c for c in categories(study) if c.key in SIZE_TIERS and c.members and c.source != "aggregate"]
    bands = _file_bands(categories(study))
    where: dict[tuple[str, str], dict[str, list[Category]]] = defaultdict(lambda: defaultdict(list))
    for cat in cats:
        group = study.group_of(cat.source_file)
        for m in cat.members or ():
            where[(group, m)][cat.key or ""].append(cat)
    for (_g, model), by_key in sorted(where.items()):
        if len(by_key) < 2:
            continue
        # one root cause, one finding: a placement outside the tier's own band is category_threshold's
        # finding; the conflict is this rule's only if two placements remain that each fit their band
        fitting = [k for k, cs in by_key.items() if not all(_out_of_band(study, c, model, bands) for c in cs)]
        if len(fitting) < 2:
            continue
        parts = []
        claims: list[AuditClaim] = []
        for key, cs in sorted(by_key.items()):
            parts.append(f"{key} in " + ", ".join(sorted({f"{c.source_file} ('{c.label}')" for c in cs})))
            for c in cs:
                claims.extend(x for x in c.claims if (x.model == model or x.kind != "cell") and x not in claims)
        files_per_key = [{c.source_file for c in cs} for cs in by_key.values()]
        in_one = sorted({f for fs in files_per_key for f in fs if sum(f in o for o in files_per_key) > 1})
        yield Hit(
            f"{model} is put in {len(by_key)} size tiers: {'; '.join(parts)}"
            + (f" (more than one within {', '.join(in_one)})" if in_one else ""),
            "; ".join(parts),
            claims[:10],
        )


@rule(
    "consistency.category_bands",
    family="consistency",
    severity="warning",
    convention="the same size tier must have the same parameter band and the same number of models "
    "in every file of the study (count stated > members listed > labels > group headings)",
)
def category_bands(study: Study) -> Iterator[Hit]:
    """One size tier defined with different bands or model counts in different files."""
    cats = [c for c in categories(study) if c.key in SIZE_TIERS]
    by_key: dict[tuple[str, str], list[Category]] = defaultdict(list)
    for c in cats:
        by_key[(study.group_of(c.source_file), c.key or "")].append(c)
    for (_g, key), cs in sorted(by_key.items()):
        bands: list[tuple[Threshold, list[Category]]] = []
        for c in cs:
            if c.threshold is None:
                continue
            for thr, members in bands:
                if (thr.lo, thr.hi) == (c.threshold.lo, c.threshold.hi):
                    members.append(c)
                    break
            else:
                bands.append((c.threshold, [c]))
        if len(bands) > 1:
            listing = "; ".join(f"{t.text} ({', '.join(sorted({c.source_file for c in v}))})" for t, v in bands)
            yield Hit(
                f"the '{key}' tier is bounded differently across files: {listing}",
                listing,
                [x for _t, v in bands for c in v for x in c.claims[:1]],
            )
    # counts: compared between statements of the *same* category name ("Edge Models" in 000 and
    # 002), not across taxonomies ("Foundation Transformer" in 001 is not "Foundation Models")
    by_name: dict[tuple[str, str], dict[str, tuple[int, Category]]] = defaultdict(dict)
    file_bands = _file_bands(categories(study))
    for c in categories(study):
        if c.source == "aggregate" or not c.key:
            continue
        if _threshold_flagged(study, c, file_bands):
            continue  # a count or list that contradicts its own band: category_threshold's finding
        n = c.count if c.count is not None else (len(c.members) if c.members else None)
        if n is None:
            continue
        per_file = by_name[(study.group_of(c.source_file), label_name(c.label))]
        per_file.setdefault(c.source_file, (n, c))  # most explicit statement per file first
    for (_g, name), per_file in sorted(by_name.items()):
        if len({n for n, _ in per_file.values()}) > 1:
            listing = "; ".join(f"{n} in {f} ('{c.label}', {c.source})" for f, (n, c) in sorted(per_file.items()))
            yield Hit(
                f"'{name}' has a different number of models in different files: {listing}",
                listing,
                [c.claims[0] for _n, c in per_file.values() if c.claims],
            )


def label_name(label: str) -> str:
    """'Edge Models (<25M params)', 'edge_optimized', 'Edge-Optimized Models' -> 'edge', 'edge optimized'."""
    low = re.sub(r"\(.*?\)", " ", label.lower())
    low = re.sub(r"[^a-z0-9]+", " ", low)
    words = [w for w in low.split() if w not in ("models", "model", "performance")]
    return " ".join(words)


@rule(
    "consistency.model_list",
    family="consistency",
    severity="warning",
    convention="category counts and member lists of one file must add up to the study's model count, "
    "each model listed once",
)
def model_list(study: Study) -> Iterator[Hit]:
    """Category lists or counts of a file that do not add up to the stated number of models."""
    model_counts = [c for c in study.metric("model_count") if c.kind == "study" and c.is_number]
    if not model_counts:
        return
    cats = categories(study)
    for f in sorted({c.source_file for c in cats}):
        listed = [c for c in cats if c.source_file == f and c.source == "members"]
        counted = [c for c in cats if c.source_file == f and c.source == "count"]
        mc = next((c for c in model_counts if c.source_file == f), None) or next(
            (c for c in model_counts if study.group_of(c.source_file) == study.group_of(f)), None
        )
        if mc is None:
            continue
        n = int(mc.num)
        if listed:
            members = [m for c in listed for m in sorted(c.members or ())]
            union = set(members)
            dup = sorted({m for m in members if members.count(m) > 1})
            if len(union) != n or dup:
                missing = sorted(_study_models(study, mc) - union)
                yield Hit(
                    f"{f}: its category lists name {len(union)} models, but the study has {n}"
                    + (f"; missing {', '.join(missing)}" if missing else "")
                    + (f"; listed twice: {', '.join(dup)}" if dup else ""),
                    " + ".join(f"{len(c.members or ())} ('{c.label}')" for c in listed) + f" = {len(members)}; "
                    f"model_count {n} ({mc.id})",
                    [*(c.claims[0] for c in listed), mc],
                )
        elif counted:
            total = sum(c.count or 0 for c in counted)
            if total != n:
                yield Hit(
                    f"{f}: category counts add up to {total}, but the study has {n} models",
                    " + ".join(f"{c.count} ('{c.label}')" for c in counted) + f" = {total}; model_count {n}",
                    [*(c.claims[0] for c in counted), mc],
                )


@rule(
    "consistency.method_row_count",
    family="consistency",
    severity="warning",
    convention="a per-method count of 'models' cannot exceed the number of models; rows per path "
    "counted from the per-model tables",
)
def method_row_count(study: Study) -> Iterator[Hit]:
    """A method's count of 'models' that exceeds the study's models (rows counted as models)."""
    mcs = [c for c in study.metric("model_count") if c.kind == "study" and c.is_number]
    for c in study.metric("method_row_count"):
        if not c.is_number:
            continue
        mc = next((m for m in mcs if study.same_group(m, c)), None)
        if mc is None or c.num <= mc.num or mc.num <= 0:
            continue
        if float(c.num / mc.num).is_integer():
            continue  # the rows of whole paths under one label: method.row_label's finding (one root cause)
        yield Hit(
            f"'{c.subject.get('item') or c.text}': {fmt(c.num)} models, but the study has "
            f"{fmt(mc.num)}: the count is of result rows, not models",
            f"{fmt(c.num)} > model_count {fmt(mc.num)} ({mc.id}); {fmt(c.num)} = {fmt(c.num / mc.num)} rows per model",
            [c, mc],
        )


_IMPLIED = re.compile(r"compute", re.IGNORECASE)


def _fp16_speedups(study: Study, near: AuditClaim) -> list[float]:
    vals: dict[str, float] = {}
    for c in study.cells("speedup", kit_path="torch-fp16"):
        if study.same_group(c, near) and c.model:
            vals.setdefault(c.model, c.num)
    return list(vals.values())


@rule(
    "consistency.implied_speedup",
    family="consistency",
    severity="warning",
    convention="'N instances at FP32 -> M at FP16' implies an N/M throughput gain, 'X% less compute "
    "with FP16' a 1/(1-X) gain; compared with the study's own per-model FP16 speedups (mean, "
    "and how many models reach it)",
)
def implied_speedup(study: Study) -> Iterator[Hit]:
    """Cost and capacity claims whose implied FP16 speedup the study's own speedups do not show."""
    pairs: dict[tuple[str, str], list[AuditClaim]] = defaultdict(list)
    for c in study.metric("instances_required"):
        if c.is_number and isinstance(c.subject.get("item"), str):
            pairs[(c.source_file, c.subject["item"])].append(c)
    rows: dict[str, list[tuple[str, AuditClaim, AuditClaim, float]]] = defaultdict(list)
    for (f, item), cs in sorted(pairs.items()):
        fp32 = next((c for c in cs if "fp32" in c.id.lower() or "fp32" in c.text.lower().split("[")[-1]), None)
        fp16 = next((c for c in cs if c is not fp32 and ("fp16" in c.id.lower() or "fp16" in c.text.lower())), None)
        if fp32 is None or fp16 is None or fp16.num <= 0:
            continue
        rows[f].append((item, fp32, fp16, fp32.num / fp16.num))
    for _f, items in sorted(rows.items()):  # one finding per table of instance counts
        implied = min(r[3] for r in items)
        what = "; ".join(f"{item}: {fmt(a.num)} FP32 -> {fmt(b.num)} FP16 instances" for item, a, b, _ in items)
        yield from _against_speedups(study, items[0][1], [x for r in items for x in r[1:3]], implied, what)
    for c in study.metric("hardware_reduction_pct"):
        if c.is_number and _IMPLIED.search(c.text) and "fp16" in c.text.lower() and 0 < c.num < 100:
            yield from _against_speedups(study, c, [c], 1 / (1 - c.num / 100), f"'{c.text.strip(' -')}'")


def _against_speedups(
    study: Study, anchor: AuditClaim, claims: list[AuditClaim], implied: float, what: str
) -> Iterator[Hit]:
    sp = _fp16_speedups(study, anchor)
    if not sp:
        return
    mean = sum(sp) / len(sp)
    reach = sum(1 for s in sp if s >= implied - 0.005)
    if mean >= implied - 0.005:
        return
    yield Hit(
        f"{what} implies a {fmt(implied)}x FP16 throughput gain, but the study's FP16 speedups average "
        f"{fmt(mean)}x and only {reach} of {len(sp)} models reach {fmt(implied)}x",
        f"implied {fmt(implied)}x; published FP16 speedups: mean {fmt(mean)}x over {len(sp)} models, "
        f"{reach} >= {fmt(implied)}x",
        claims,
    )


# ------------------------------------------------------------------ figures presented together


@rule(
    "consistency.row_pairs",
    family="consistency",
    severity="warning",
    convention="figures presented together for one model in one statement (a speedup and a memory "
    "reduction) must come from one (model, precision) row; the FP32 baseline of a ratio is exempt, and "
    "table rows (one column per precision) are not statements",
)
def row_pairs(study: Study) -> Iterator[Hit]:
    """A speedup and a memory reduction shown together for one model but taken from different precisions."""
    stmts: dict[tuple[str, str, str, str], list[AuditClaim]] = defaultdict(list)
    for c in study.claims:
        if (
            c.kind != "cell"
            or not c.model
            or not c.is_number
            or c.raw.get("table_cell")
            or c.text.lstrip().startswith("|")
        ):
            continue
        if not path_key(c) or path_key(c) in ("torch-fp32", "ort-fp32"):
            continue
        stmts[(c.source_file, c.section, c.text.strip(), c.model)].append(c)
    found: dict[str, list[tuple[str, list[AuditClaim]]]] = defaultdict(list)
    for (src, _sec, _text, model), cs in sorted(stmts.items()):
        paths = {path_key(c) for c in cs}
        metrics = {c.metric for c in cs}
        if len(paths) < 2 or len(metrics) < 2:
            continue
        found[src].append((model, cs))
    for src, items in sorted(found.items()):
        parts = []
        for model, cs in items:
            other = []
            for c in cs:  # what the same row would have said for the other metrics
                for o in cs:
                    if o.metric == c.metric:
                        continue
                    same_row = [
                        x for x in study.cells(o.metric, model=model, kit_path=path_key(c)) if study.same_group(x, c)
                    ]
                    if same_row:
                        best = min(same_row, key=lambda x: x.iv.half)  # the most precisely printed copy
                        other.append(f"{path_key(c)} {o.metric} {fmt(best.num)}")
            parts.append(
                f"{model}: "
                + " with ".join(f"{c.metric} {fmt(c.num)} ({path_key(c)})" for c in cs)
                + (f" (one row would give {', '.join(sorted(set(other)))})" if other else "")
            )
        yield Hit(
            f"{src}: {len(items)} statement(s) pair figures of different precisions as one model's result, "
            "though no single configuration delivers both: " + "; ".join(parts),
            "; ".join(f"'{cs[0].text.strip()[:90]}' ({cs[0].section})" for _m, cs in items),
            [c for _m, cs in items for c in cs],
        )
