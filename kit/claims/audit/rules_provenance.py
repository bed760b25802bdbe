"""Environment and provenance: versions that cannot coexist or did not exist yet, dates against
timestamps, row counts against experiment counts, iteration counts against the dispersion shown,
future-work periods already past, reproduction recipes that cannot give the stated stack or run
code nobody provides, figures claimed on hardware never measured, and a reproduction tolerance
tighter than the study's own noise.

Release facts (from the projects' release notes / PyPI upload dates and the wheel tags on
download.pytorch.org): PyTorch minor versions with their release date, the CPython versions
they ship wheels for and their CUDA builds; torchvision's matching minor; CPython, CUDA,
bitsandbytes and Ubuntu release dates.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from collections.abc import Iterator

from kit.claims.audit.claim import AuditClaim, Study, normalize_name, path_key
from kit.claims.audit.findings import Hit
from kit.claims.audit.numbers import Iv, fmt
from kit.claims.audit.registry import rule
from kit.hardware.gpus import find_gpu

# torch minor -> (release date, oldest CPython, newest CPython, CUDA builds)
TORCH: dict[str, tuple[str, str, str, tuple[str, ...]]] = {
    "1.12": ("2022-06-28", "3.7", "3.10", ("10.2", "11.3", "11.6")),
    "1.13": ("2022-10-28", "3.7", "3.10", ("11.6", "11.7")),
    "2.0": ("2023-03-15", "3.8", "3.11", ("11.7", "11.8")),
    "2.1": ("2023-10-04", "3.8", "3.11", ("11.8", "12.1")),
    "2.2": ("2024-01-30", "3.8", "3.12", ("11.8", "12.1")),
    "2.3": ("2024-04-24", "3.8", "3.12", ("11.8", "12.1")),
    "2.4": ("2024-07-24", "3.8", "3.12", ("11.8", "12.1", "12.4")),
    "2.5": ("2024-10-17", "3.9", "3.13", ("11.8", "12.1", "12.4")),
    "2.6": ("2025-01-29", "3.9", "3.13", ("11.8", "12.4", "12.6")),
    "2.7": ("2025-04-23", "3.9", "3.13", ("11.8", "12.6", "12.8")),
    "2.8": ("2025-08-06", "3.9", "3.13", ("12.6", "12.8", "12.9")),
}
TORCH_PATCH_DATES = {
    "2.0.1": "2023-05-08",
    "2.1.1": "2023-11-15",
    "2.1.2": "2023-12-14",
    "2.2.1": "2024-02-22",
    "2.2.2": "2024-03-27",
    "2.3.1": "2024-06-05",
    "2.4.1": "2024-09-04",
    "2.5.1": "2024-10-29",
}
TORCHVISION_FOR_TORCH = {
    "1.12": "0.13",
    "1.13": "0.14",
    "2.0": "0.15",
    "2.1": "0.16",
    "2.2": "0.17",
    "2.3": "0.18",
    "2.4": "0.19",
    "2.5": "0.20",
    "2.6": "0.21",
    "2.7": "0.22",
    "2.8": "0.23",
}
RELEASED: dict[tuple[str, str], str] = {
    ("python", "3.8"): "2019-10-14",
    ("python", "3.9"): "2020-10-05",
    ("python", "3.10"): "2021-10-04",
    ("python", "3.11"): "2022-10-24",
    ("python", "3.12"): "2023-10-02",
    ("python", "3.13"): "2024-10-07",
    ("cuda", "11.7"): "2022-05-11",
    ("cuda", "11.8"): "2022-10-03",
    ("cuda", "12.0"): "2022-12-08",
    ("cuda", "12.1"): "2023-02-28",
    ("cuda", "12.2"): "2023-06-28",
    ("cuda", "12.4"): "2024-03-05",
    ("cuda", "12.6"): "2024-08-01",
    ("bitsandbytes", "0.41"): "2023-07-11",
    ("bitsandbytes", "0.42"): "2024-01-08",
    ("bitsandbytes", "0.43"): "2024-03-08",
    ("bitsandbytes", "0.44"): "2024-09-27",
    ("bitsandbytes", "0.45"): "2024-12-05",
    ("os", "ubuntu 22.04"): "2022-04-21",
    ("os", "ubuntu 24.04"): "2024-04-25",
}
_ALIASES = {
    "pytorch": "torch",
    "torch": "torch",
    "python": "python",
    "cuda": "cuda",
    "torchvision": "torchvision",
    "bitsandbytes": "bitsandbytes",
    "bnb": "bitsandbytes",
    "os": "os",
    "ubuntu": "os",
}


def _pkg(c: AuditClaim) -> str | None:
    item = str(c.subject.get("item") or "").lower().strip()
    if item in _ALIASES:
        return _ALIASES[item]
    for word, pkg in _ALIASES.items():
        if word in item or word in c.id.lower().rsplit(".", 1)[-1]:
            return pkg
    return None


def _minor(v: str) -> str | None:
    m = re.search(r"(\d+)\.(\d+)", v)
    return f"{m.group(1)}.{m.group(2)}" if m else None


def _vt(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split("."))


def versions(study: Study) -> dict[str, dict[str, list[AuditClaim]]]:
    """group -> package -> claims (software_version)."""
    out: dict[str, dict[str, list[AuditClaim]]] = defaultdict(lambda: defaultdict(list))
    for c in study.metric("software_version"):
        pkg = _pkg(c)
        if pkg and isinstance(c.value, str):
            out[study.group_of(c.source_file)][pkg].append(c)
    return out


@rule(
    "provenance.version_compat",
    family="provenance",
    severity="error",
    convention="PyTorch wheels exist only for the CPython and CUDA versions listed per minor release; "
    "torchvision pairs with one torch minor; a lower bound ('3.8+') is compatible if any supported "
    "version satisfies it",
)
def version_compat(study: Study) -> Iterator[Hit]:
    """Software versions that cannot be installed together."""
    for _g, pkgs in sorted(versions(study).items()):
        # one check per distinct torch version: the same version stated in several files is one fact
        by_version: dict[str, list[AuditClaim]] = defaultdict(list)
        for t in pkgs.get("torch", []):
            by_version[t.value.strip()].append(t)
        for torch_claims in by_version.values():
            t = torch_claims[0]
            tm = _minor(t.value)
            if tm not in TORCH:
                continue
            _date, py_lo, py_hi, cudas = TORCH[tm]
            by_py: dict[str, list[AuditClaim]] = defaultdict(list)
            for p in pkgs.get("python", []):
                by_py[p.value.strip()].append(p)
            for pv, py_claims in by_py.items():
                pm = _minor(pv)
                if pm is None:
                    continue
                lower_bound_only = pv.endswith("+")
                if (lower_bound_only and _vt(pm) <= _vt(py_hi)) or (
                    not lower_bound_only and _vt(py_lo) <= _vt(pm) <= _vt(py_hi)
                ):
                    continue
                note = "3.12 support arrived in torch 2.2" if pm == "3.12" else f"no cp{pm.replace('.', '')} wheel"
                yield Hit(
                    f"Python {pv} with PyTorch {t.value}: torch {tm} ships wheels for Python {py_lo}-{py_hi} "
                    f"only ({note})",
                    f"torch {tm} (released {_date}) wheels: CPython {py_lo} to {py_hi}; Python {pv} stated in "
                    f"{', '.join(x.id for x in py_claims)}; torch {t.value} in "
                    f"{', '.join(x.id for x in torch_claims)}",
                    [*py_claims, *torch_claims],
                )
            for cu in pkgs.get("cuda", []):
                cm = _minor(cu.value)
                if cm and cm not in cudas:
                    yield Hit(
                        f"CUDA {cu.value} with PyTorch {t.value}: torch {tm} was built for CUDA "
                        f"{', '.join(cudas)} only",
                        f"torch {tm} CUDA builds: {', '.join(cudas)}; stated CUDA {cu.value}",
                        [t, cu],
                        severity="warning",
                    )
            for tv in pkgs.get("torchvision", []):
                want = TORCHVISION_FOR_TORCH.get(tm)
                if want and _minor(tv.value) != want:
                    yield Hit(
                        f"torchvision {tv.value} with PyTorch {t.value}: torch {tm} pairs with torchvision {want}",
                        f"torchvision {want}.x requires torch {tm}.x",
                        [t, tv],
                    )


def _to_date(c: AuditClaim) -> tuple[dt.date, str] | None:
    """(date, precision) of a timestamp/date claim: unix seconds, 'YYYY-MM-DD' or 'YYYY-MM'."""
    return _value_date(c.value)


def _value_date(v: object) -> tuple[dt.date, str] | None:
    """(date, precision) of a value: unix seconds, 'YYYY-MM-DD', 'YYYY-MM' or 'YYYY'."""
    if isinstance(v, (int, float)) and not isinstance(v, bool) and 9e8 < v < 5e9:
        return dt.datetime.fromtimestamp(float(v), tz=dt.timezone.utc).date(), "day"
    if isinstance(v, str):
        m = re.fullmatch(r"\s*(\d{4})-(\d{2})(?:-(\d{2}))?\s*", v)
        if m:
            y, mo, d = int(m.group(1)), int(m.group(2)), m.group(3)
            if 1 <= mo <= 12:
                return dt.date(y, mo, int(d) if d else 1), "day" if d else "month"
        m = re.fullmatch(r"\s*(\d{4})\s*", v)
        if m:
            return dt.date(int(m.group(1)), 1, 1), "year"
    return None


def _span(d: dt.date, prec: str) -> tuple[dt.date, dt.date]:
    if prec == "day":
        return d, d
    if prec == "month":
        nxt = dt.date(d.year + (d.month == 12), d.month % 12 + 1, 1)
        return d, nxt - dt.timedelta(days=1)
    return d, dt.date(d.year, 12, 31)


@rule(
    "provenance.dates",
    family="provenance",
    severity="error",
    convention="every date of one study (unix timestamps in UTC, 'Month YYYY' as the whole month) "
    "must be compatible: a document cannot be last updated before the data it describes was made",
)
def dates(study: Study) -> Iterator[Hit]:
    """Stated dates that contradict the study's own timestamps."""
    by_group: dict[str, list[tuple[AuditClaim, dt.date, dt.date]]] = defaultdict(list)
    for c in study.metric("timestamp", "date", "last_updated"):
        d = _to_date(c)
        if d:
            lo, hi = _span(*d)
            by_group[study.group_of(c.source_file)].append((c, lo, hi))
    for _g, items in sorted(by_group.items()):
        coarse = [x for x in items if x[1] != x[2]]
        exact = [x for x in items if x[1] == x[2]]
        for c, lo, hi in coarse:
            later = [(e, when) for e, when, _ in exact if when > hi]
            if not later:
                continue
            e, when = min(later, key=lambda t: t[1])
            days = (when - hi).days
            yield Hit(
                f"'{c.text.strip(' *')}' ({lo:%B %Y}) predates the study's own timestamp {e.value} "
                f"= {when.isoformat()} UTC by {days} days",
                f"{e.id}: {e.value} -> {when.isoformat()}; {c.id}: {c.value} -> {lo.isoformat()}..{hi.isoformat()}",
                [c, e],
            )


@rule(
    "provenance.release_dates",
    family="provenance",
    severity="error",
    convention="software and GPUs must have been released by the study's date (its latest stated "
    "date, so only impossible cases are flagged)",
)
def release_dates(study: Study) -> Iterator[Hit]:
    """Software or hardware that did not exist yet at the study's stated date."""
    stamps: dict[str, list[tuple[AuditClaim, dt.date]]] = defaultdict(list)
    for c in study.metric("timestamp", "date", "last_updated"):
        d = _to_date(c)
        if d:
            stamps[study.group_of(c.source_file)].append((c, _span(*d)[1]))
    for group, pkgs in sorted(versions(study).items()):
        if group not in stamps:
            continue
        anchor, latest = max(stamps[group], key=lambda t: t[1])
        for pkg, claims in pkgs.items():
            for c in claims:
                rel = _release_date(pkg, c.value)
                if rel and rel > latest:
                    yield Hit(
                        f"{pkg} {c.value} was released {rel.isoformat()}, after the study's latest date "
                        f"{latest.isoformat()}",
                        f"{c.id}: {pkg} {c.value} released {rel.isoformat()}; {anchor.id}: {anchor.value}",
                        [c, anchor],
                    )
        for c in study.metric("hardware"):
            if study.group_of(c.source_file) != group or not isinstance(c.value, str):
                continue
            gpu = find_gpu(c.value)
            if gpu and dt.date.fromisoformat(gpu.released) > latest:
                yield Hit(
                    f"{gpu.name} launched {gpu.released}, after the study's latest date {latest.isoformat()}",
                    f"{c.id}: {c.value}; {anchor.id}: {anchor.value}",
                    [c, anchor],
                )


def _release_date(pkg: str, version: str) -> dt.date | None:
    v = version.strip().lower()
    if pkg == "torch":
        full = re.search(r"\d+\.\d+\.\d+", v)
        if full and full.group(0) in TORCH_PATCH_DATES:
            return dt.date.fromisoformat(TORCH_PATCH_DATES[full.group(0)])
        m = _minor(v)
        return dt.date.fromisoformat(TORCH[m][0]) if m in TORCH else None
    key = ("os", re.sub(r"\s+", " ", v)) if pkg == "os" else (pkg, _minor(v) or "")
    return dt.date.fromisoformat(RELEASED[key]) if key in RELEASED else None


@rule(
    "provenance.row_count",
    family="provenance",
    severity="warning",
    convention="a results file of N experiments has N data rows (N + 1 lines with a header)",
)
def row_count(study: Study) -> Iterator[Hit]:
    """A data file's row count that does not match the number of experiments in it."""
    for c in study.metric("row_count"):
        if not c.is_number:
            continue
        exps = [
            e
            for e in study.metric("experiment_count")
            if e.is_number
            and e.source_file == c.source_file
            and (e.subject.get("item") == c.subject.get("item") or not e.subject.get("item"))
        ]
        if not exps:
            continue
        e = sorted(exps, key=lambda x: x.subject.get("item") != c.subject.get("item"))[0]
        if int(c.num) in (int(e.num), int(e.num) + 1):
            continue
        yield Hit(
            f"{c.subject.get('item') or 'data file'}: {fmt(c.num)} rows for {fmt(e.num)} experiments "
            f"({fmt(e.num + 1)} with a header row)",
            f"{c.id}: {fmt(c.num)} rows; {e.id}: {fmt(e.num)} experiments; {fmt(c.num - e.num)} rows unexplained",
            [c, e],
        )


@rule(
    "provenance.experiment_matrix",
    family="provenance",
    severity="warning",
    convention="experiments = models x precisions (x batch sizes when a batch sweep is claimed); "
    "a claimed sweep must show results at more than one batch size",
)
def experiment_matrix(study: Study) -> Iterator[Hit]:
    """Experiment counts that do not match the stated test matrix (e.g. a batch sweep never shown)."""
    for f in sorted({c.source_file for c in study.claims}):

        def one(metric: str, f: str = f) -> AuditClaim | None:
            return next(
                (c for c in study.metric(metric) if c.source_file == f and c.is_number and not c.subject.get("item")),
                None,
            )

        mc, pc, ec = one("model_count"), one("precision_count"), one("experiment_count")
        bs = next((c for c in study.metric("batch_sizes") if c.source_file == f and isinstance(c.value, list)), None)
        if mc is None or pc is None or ec is None:
            continue
        n = int(mc.num) * int(pc.num)
        if n != int(ec.num):
            yield Hit(
                f"{f}: {fmt(mc.num)} models x {fmt(pc.num)} precisions = {n}, but {fmt(ec.num)} experiments",
                f"{mc.id} x {pc.id} = {n}; {ec.id} = {fmt(ec.num)}",
                [mc, pc, ec],
            )
        if bs is not None and len(bs.value) > 1:
            reported = {
                c.batch_size for c in study.claims if c.kind == "cell" and c.batch_size and study.same_group(c, bs)
            }
            total = n * len(bs.value)
            if reported <= {1} or total != int(ec.num):
                yield Hit(
                    f"{f}: batch sizes {', '.join(str(b) for b in bs.value)} are claimed, but {fmt(ec.num)} "
                    f"experiments = {fmt(mc.num)} x {fmt(pc.num)} leaves no room for them and only batch "
                    f"{', '.join(str(b) for b in sorted(reported)) or '?'} results are reported",
                    f"{n} x {len(bs.value)} batch sizes = {total} cells vs {fmt(ec.num)} experiments; "
                    f"batch sizes with results: {sorted(reported)}",
                    [bs, ec],
                )


def _same_computation_pairs(study: Study, near: AuditClaim) -> list[tuple[str, AuditClaim, AuditClaim]]:
    """(model, int8 latency, nf4 latency) where the study's own memory shows the two are one run."""
    out = []
    for i8 in study.cells("latency_ms", kit_path="bnb-int8"):
        if not study.same_group(i8, near):
            continue
        n4 = next(
            (x for x in study.cells("latency_ms", model=i8.model, kit_path="bnb-nf4") if x.location == i8.location),
            None,
        )
        if n4 is None:
            continue
        mem8 = [
            x
            for x in study.cells("peak_memory_mb", model=i8.model, kit_path="bnb-int8")
            if x.source_file == i8.source_file
        ]
        mem4 = [
            x
            for x in study.cells("peak_memory_mb", model=i8.model, kit_path="bnb-nf4")
            if x.source_file == i8.source_file
        ]
        if any(a.location == b.location and a.iv.meets(b.iv) for a in mem8 for b in mem4):
            out.append((i8.model or "", i8, n4))
    return out


@rule(
    "provenance.iterations_vs_dispersion",
    family="provenance",
    severity="warning",
    convention="a mean of N >= 100 iterations quoted to 0.01 ms should repeat to ~1%; rows the study "
    "itself shows to be one computation (INT8/NF4 with identical memory) give the real run-to-run "
    "spread; flagged when it exceeds 2% and no std/CI is published",
)
def iterations_vs_dispersion(study: Study) -> Iterator[Hit]:
    """Claimed iteration counts and precision that the dispersion between repeated rows contradicts."""
    for it in study.metric("measured_iterations"):
        if not it.is_number or it.num < 100:
            continue
        pairs = [p for p in _same_computation_pairs(study, it) if p[1].num > 0 and p[2].num > 0]
        if not pairs:
            continue
        worst = max(pairs, key=lambda t: abs(t[1].num - t[2].num) / min(t[1].num, t[2].num))
        spread = abs(worst[1].num - worst[2].num) / min(worst[1].num, worst[2].num)
        if spread <= 0.02:
            continue
        has_std = any(c.aggregate == "std" and c.over.get("metric") == "latency_ms" for c in study.claims)
        over = sum(1 for _m, a, b in pairs if abs(a.num - b.num) / min(a.num, b.num) > 0.02)
        yield Hit(
            f"'{it.text.strip(' -*')}' yet rows that are one computation differ by up to {spread:.1%} "
            f"({worst[0]} INT8 {fmt(worst[1].num)} vs NF4 {fmt(worst[2].num)} ms, identical memory)"
            + ("; no latency std or CI is published" if not has_std else ""),
            f"{over} of {len(pairs)} INT8/NF4 pairs with identical peak memory differ by > 2% in latency; "
            + ", ".join(f"{m} {fmt(a.num)}/{fmt(b.num)}" for m, a, b in pairs[:8]),
            [it, worst[1], worst[2]],
        )
        return  # one finding per study is enough: the pairs are the same for every iteration claim


@rule(
    "provenance.distribution_claims",
    family="provenance",
    severity="warning",
    convention="a percentile/SLA or variance claim ('99.5% of requests under 10 ms', 'low variance') "
    "needs a latency distribution; the study publishes means only",
)
def distribution_claims(study: Study) -> Iterator[Hit]:
    """SLA or percentile claims with no latency distribution behind them."""
    has_dist = any(
        c.metric in ("latency_p99_ms", "latency_p95_ms", "latency_std_ms")
        or (c.aggregate in ("std", "percentile") and c.over.get("metric") == "latency_ms")
        for c in study.claims
    )
    if has_dist:
        return
    for c in study.claims:
        if c.metric.startswith("sla") or re.search(r"p9\d|percentile|variance", c.metric):
            yield Hit(
                f"'{c.text.strip(' -*')}': no latency distribution (percentiles, std) is published, "
                "only means, so this cannot follow from the measurements",
                f"{c.id}: {c.value}; no latency percentile or std claim anywhere in the study",
                [c],
            )


@rule(
    "provenance.success_rate",
    family="provenance",
    severity="warning",
    convention="a 100% success rate counts every row as a working run of its method; rows that the "
    "study's own numbers show to be another method (NF4 = INT8) are not successes",
)
def success_rate(study: Study) -> Iterator[Hit]:
    """'100% success' over rows whose own numbers show that their method did not run."""
    claims = [
        c
        for c in study.metric("success_rate_pct", "all_experiments_succeeded", "failed_experiment_count")
        if (c.metric == "success_rate_pct" and c.is_number and c.num >= 100)
        or (c.metric == "all_experiments_succeeded" and c.value is True)
        or (c.metric == "failed_experiment_count" and c.is_number and c.num == 0)
    ]
    if not claims:
        return
    pairs = _same_computation_pairs(study, claims[0])
    models = sorted({m for m, _a, _b in pairs})
    if len(models) < 4:
        return
    yield Hit(
        f"'100% success' / 'zero failed' counts the NF4 rows of {len(models)} models whose peak memory is "
        "identical to their INT8 rows: the 4-bit method did not run there",
        f"identical INT8/NF4 memory: {', '.join(models[:10])}{' ...' if len(models) > 10 else ''}; "
        f"success claims: {', '.join(c.id for c in claims[:6])}",
        claims[:6],
    )


# ------------------------------------------------------------------- plans, recipes, platforms

_QUARTER = re.compile(r"\s*(\d{4})-Q([1-4])\s*", re.I)


def _quote(text: str) -> str:
    """A claim's words for a message, without markdown emphasis and list bullets."""
    return re.sub(r"[*#`]+", "", text).strip(" -:")


def _period(v: object) -> tuple[dt.date, dt.date] | None:
    """First and last day of 'YYYY', 'YYYY-MM', 'YYYY-MM-DD' or 'YYYY-Qn' (a trailing '+' ignored)."""
    if not isinstance(v, str):
        return None
    s = v.strip().rstrip("+").strip()
    m = _QUARTER.fullmatch(s)
    if m:
        y, q = int(m.group(1)), int(m.group(2))
        return dt.date(y, 3 * q - 2, 1), _span(dt.date(y, 3 * q, 1), "month")[1]
    d = _value_date(s)
    return _span(*d) if d else None


def _anchors(study: Study) -> dict[str, tuple[AuditClaim, dt.date]]:
    """group -> (claim, date) of the latest day-precise date (a timestamp) the study states."""
    out: dict[str, tuple[AuditClaim, dt.date]] = {}
    for c in study.metric("timestamp", "date", "last_updated"):
        d = _to_date(c)
        if d and d[1] == "day":
            g = study.group_of(c.source_file)
            if g not in out or d[0] > out[g][1]:
                out[g] = (c, d[0])
    return out


@rule(
    "provenance.planned_dates",
    family="provenance",
    severity="warning",
    convention="a period presented as future work (roadmap, 'immediate', 'near-term') must not have "
    "ended its first stated period before the study's own latest timestamp (UTC); periods are whole "
    "quarters, months or years as printed ('Q1-Q2 2025' = 2025-01-01..2025-06-30)",
)
def planned_dates(study: Study) -> Iterator[Hit]:
    """Future-work periods that were already past at the study's own date."""
    anchors = _anchors(study)
    for c in study.metric("planned_period"):
        vals = c.value if isinstance(c.value, list) else [c.value]
        spans = [_period(v) for v in vals]
        g = study.group_of(c.source_file)
        if not spans or any(sp is None for sp in spans) or g not in anchors:
            continue
        anchor, day = anchors[g]
        (first_lo, first_hi), (_last_lo, last_hi) = spans[0], spans[-1]  # type: ignore[misc]
        if first_hi >= day:
            continue
        open_end = str(vals[-1]).strip().endswith("+")
        msg = (
            f"'{_quote(c.text)}' is presented as future work, but its first period ({vals[0]}) "
            f"ended {(day - first_hi).days} days before the study's own timestamp ({day.isoformat()} UTC)"
        )
        if not open_end:
            left = (last_hi - day).days
            msg += (
                f"; the whole window closes {left} days after that date"
                if left >= 0
                else f"; the whole window closed {-left} days before it"
            )
        heading = re.search(r"\b(20\d\d)\b[^/]*$", c.section)
        if heading and int(heading.group(1)) > first_lo.year:
            msg += f", under a heading that names {heading.group(1)} ('{c.section.rsplit(' / ', 1)[-1]}')"
        others = [
            x
            for x in study.metric("timestamp", "date", "last_updated")
            if study.group_of(x.source_file) == g and (d := _to_date(x)) and d[1] != "day"
        ]
        yield Hit(
            msg,
            f"{c.id}: {', '.join(map(str, vals))} -> {first_lo.isoformat()}.."
            f"{last_hi.isoformat() if not open_end else ''}"
            f"; {anchor.id}: {anchor.value} -> {day.isoformat()} UTC"
            + (
                f"; other stated dates: {', '.join(f'{x.id} {x.value!r}' for x in others)} (see provenance.dates)"
                if others
                else ""
            ),
            [c, anchor],
        )


_PIN = re.compile(r"==|>=|<=|~=|!=|<|>|@")
_SCRIPT = re.compile(r"\.(?:py|ipynb|sh)$")
_FILE_NAME = re.compile(r"[\w.-]+\.(?:py|ipynb|sh|csv|json|md|png|pt|pth|onnx|safetensors)\b")


def _install_tokens(cmd: str) -> list[str]:
    out: list[str] = []
    for seg in re.split(r"&&|;|\n", cmd):
        toks = seg.split()
        if "install" in toks:
            out.extend(t for t in toks[toks.index("install") + 1 :] if not t.startswith("-"))
    return out


@rule(
    "provenance.reproduction_recipe",
    family="provenance",
    severity="warning",
    convention="a reproduction recipe must pin the versions the study states (pip without a pin takes "
    "the newest release) and run only code the study provides (a file some part of the study names)",
)
def reproduction_recipe(study: Study) -> Iterator[Hit]:
    """Reproduction steps that cannot give the stated environment or run code that is not provided."""
    vers = versions(study)
    for c in study.metric("install_command"):
        if not isinstance(c.value, str):
            continue
        g = study.group_of(c.source_file)
        stated = vers.get(g, {})
        unpinned: list[tuple[str, str]] = []  # (name, package whose version the study states)
        unstated: list[tuple[str, str | None]] = []
        for tok in _install_tokens(c.value):
            name = re.split(r"[=<>~!@\[;]", tok)[0].lower()
            if _PIN.search(tok):
                continue
            pkg = _ALIASES.get(name)
            if pkg and stated.get(pkg):
                unpinned.append((name, pkg))
            else:
                unstated.append((name, pkg))
        if not unpinned:
            continue
        involved = [c, *(stated[p][0] for _n, p in unpinned if p)]
        msg = (
            f"'{c.value}' installs {', '.join(n for n, _p in unpinned + unstated)} without versions: pip takes "
            "the newest releases, not the stated " + ", ".join(f"{p} {stated[p][0].value}" for _n, p in unpinned)
        )
        torch_v = stated.get("torch", [None])[0]
        pys = [p for p in stated.get("python", []) if p.source_file == c.source_file and p.section == c.section]
        tm = _minor(torch_v.value) if torch_v is not None else None
        if pys and torch_v is not None and tm in TORCH:
            pm = _minor(pys[0].value)
            _d, py_lo, py_hi, _cu = TORCH[tm]
            if pm and not _vt(py_lo) <= _vt(pm) <= _vt(py_hi):
                msg += (
                    f"; with Python {pys[0].value} in the same recipe even a pinned torch=={torch_v.value} "
                    f"cannot install (torch {tm} wheels: CPython {py_lo}-{py_hi})"
                )
                involved.append(pys[0])
        if unstated:
            msg += f"; the version of {' and '.join(n for n, _p in unstated)} is stated nowhere in the study"
        yield Hit(
            msg,
            f"{c.id}: {c.value!r}; stated: "
            + "; ".join(f"{p} {', '.join(sorted({x.value for x in xs}))}" for p, xs in sorted(stated.items())),
            involved,
        )

    for c in study.metric("required_scripts"):
        scripts = [v for v in (c.value if isinstance(c.value, list) else [c.value]) if isinstance(v, str)]
        g = study.group_of(c.source_file)
        named: dict[str, AuditClaim] = {}
        for x in study.claims:
            if study.group_of(x.source_file) != g or x.metric in ("required_scripts", "install_command"):
                continue
            for blob in (x.text, str(x.subject.get("item") or ""), x.value if isinstance(x.value, str) else ""):
                for f in _FILE_NAME.findall(blob):
                    named.setdefault(f, x)
        missing = [s for s in scripts if s not in named]
        if not missing:
            continue
        says = [x for x in study.metric("reproducibility_statement") if x.source_file == c.source_file]
        code_files = sorted(f for f in named if _SCRIPT.search(f))
        yield Hit(
            f"{c.source_file}: the reproduction runs {', '.join(missing)}, which no file of the study provides "
            "or lists" + (f"; yet it says '{says[0].value}'" if says and isinstance(says[0].value, str) else ""),
            f"files the study names: {', '.join(sorted(named)) or 'none'}; code among them: "
            f"{', '.join(code_files) or 'none'}",
            [c, *says[:1]],
        )


# AWS instance type -> its GPUs (AWS instance-type pages); family fallback for other sizes
_INSTANCES = {
    "p4d.24xlarge": "8x NVIDIA A100 40GB",
    "p4de.24xlarge": "8x NVIDIA A100 80GB",
    "p5.48xlarge": "8x NVIDIA H100",
    "p3.2xlarge": "1x NVIDIA V100 16GB",
    "p3.8xlarge": "4x NVIDIA V100 16GB",
    "p3.16xlarge": "8x NVIDIA V100 16GB",
    "g4dn.xlarge": "1x NVIDIA T4",
    "g5.xlarge": "1x NVIDIA A10G",
    "g6.xlarge": "1x NVIDIA L4",
}
_INSTANCE_FAMILY = {
    "p4d": "NVIDIA A100",
    "p4de": "NVIDIA A100",
    "p5": "NVIDIA H100",
    "p3": "NVIDIA V100",
    "g4dn": "NVIDIA T4",
    "g5": "NVIDIA A10G",
    "g6": "NVIDIA L4",
}


def _study_gpus(study: Study, group: str) -> list[str]:
    out = {i.gpu for f, i in study.files.items() if i.gpu and study.group_of(f) == group}
    out |= {
        c.value
        for c in study.metric("hardware")
        if isinstance(c.value, str)
        and study.group_of(c.source_file) == group
        and c.subject.get("item") in (None, "gpu")
    }
    return sorted(out)


def _same_gpu(a: str, b: str) -> bool:
    ga, gb = find_gpu(a), find_gpu(b)
    if ga and gb:
        return ga.name == gb.name
    return normalize_name(a) in normalize_name(b) or normalize_name(b) in normalize_name(a)


@rule(
    "provenance.unmeasured_hardware",
    family="provenance",
    severity="warning",
    convention="a figure is a result only on hardware the study ran on (its published GPU); figures "
    "claimed on other platforms (mobile, edge devices) are warnings, cost tables sized on cloud "
    "GPUs the study never used are info",
)
def unmeasured_hardware(study: Study) -> Iterator[Hit]:
    """Results or costs stated for hardware the study never ran on."""
    for c in study.metric("claimed_platform"):
        if not isinstance(c.value, str):
            continue
        g = study.group_of(c.source_file)
        gpus = _study_gpus(study, g)
        if any(_same_gpu(c.value, x) for x in gpus):
            continue
        same = [
            x
            for x in study.claims
            if x.source_file == c.source_file
            and x.section == c.section
            and x is not c
            and x.kind == "aggregate"
            and x.text == c.text
        ]
        rows = []
        for x in same:
            paths = x.over.get("kit_path", x.over.get("kit_paths"))
            for path in paths if isinstance(paths, list) else [paths]:
                for m in x.over.get("models", []):
                    vals = sorted(
                        {
                            r.value
                            for r in study.cells(str(x.over.get("metric")), model=m, kit_path=path)
                            if study.same_group(r, c)
                        }
                    )
                    if vals:
                        rows.append(
                            f"{x.id}: {x.aggregate} {fmt(x.num) if x.is_number else x.value} {x.unit}; "
                            f"the study's own {m} {path} rows: {', '.join(fmt(v) for v in vals)} {x.unit}"
                        )
        yield Hit(
            f"'{_quote(c.text)}': the study measured on {', '.join(gpus) or 'its published GPU'} only; no "
            f"{c.value} was measured, so the figure is not a result of the study",
            "; ".join(rows) or f"{c.id}: {c.value}",
            [c, *same],
        )
    by_file: dict[str, list[tuple[str, str, AuditClaim]]] = defaultdict(list)
    for c in study.claims:
        item = str(c.subject.get("item") or "").strip().lower()
        fam = item.split(".", 1)[0]
        if c.kind != "study" or fam not in _INSTANCE_FAMILY or "." not in item:
            continue
        by_file[c.source_file].append((item, _INSTANCES.get(item, _INSTANCE_FAMILY[fam]), c))
    for f, items in sorted(by_file.items()):
        gpus = _study_gpus(study, study.group_of(f))
        kinds = {i: gpu for i, gpu, _c in items if not any(_same_gpu(gpu.split("x ", 1)[-1], x) for x in gpus)}
        if not kinds:
            continue
        counts_ = [c for i, _g, c in items if i in kinds and c.metric == "instances_required"]
        shown = counts_ or [c for i, _g, c in items if i in kinds]
        yield Hit(
            f"{f}: sizes fleets of {', '.join(f'{i} ({gpu})' for i, gpu in sorted(kinds.items()))}, but the study "
            f"ran only on {', '.join(gpus) or 'its published GPU'}: none of these GPUs was measured, so the "
            "instance counts and savings are extrapolations, not results",
            "; ".join(f"{c.id}: {c.metric} {c.value}" for c in shown)[:600],
            shown[:8],
            severity="info",
        )
    for c in study.metric("device_cost_usd"):
        gpus = _study_gpus(study, study.group_of(c.source_file))
        yield Hit(
            f"'{_quote(c.text)}': no edge device was measured or priced; the study ran only on "
            f"{', '.join(gpus) or 'its published GPU'}",
            f"{c.id}: {c.value} {c.unit}",
            [c],
            severity="info",
        )


@rule(
    "provenance.validation_tolerance",
    family="provenance",
    severity="warning",
    convention="a reproduction tolerance must exceed the study's own run-to-run spread (rows the study "
    "itself shows to be one computation: INT8/NF4 with identical memory) and the run-to-run "
    "variation of the figures it checks on one machine (qkit's tolerance for them)",
)
def validation_tolerance(study: Study) -> Iterator[Hit]:
    """A reproduction tolerance that the study's own repeated measurements would fail."""
    for t in study.metric("validation_tolerance"):
        if not t.is_number or t.num <= 0:
            continue
        tol = t.num / 100 if t.num > 1 else t.num
        parts: list[str] = []
        evidence: list[str] = []
        involved: list[AuditClaim] = [t]
        pairs = [p for p in _same_computation_pairs(study, t) if p[1].num > 0 and p[2].num > 0]
        if pairs:

            def rel(p: tuple[str, AuditClaim, AuditClaim]) -> float:
                return abs(p[1].num - p[2].num) / min(p[1].num, p[2].num)

            worst = max(pairs, key=rel)
            if rel(worst) > tol:
                n_over = sum(1 for p in pairs if rel(p) > tol)
                parts.append(
                    f"the study's own repeated measurements differ by up to {rel(worst):.1%} ({worst[0]} "
                    f"INT8 {fmt(worst[1].num)} vs NF4 {fmt(worst[2].num)} ms, one computation by their "
                    "identical memory), so its own run would fail the protocol"
                )
                evidence.append(
                    f"{n_over} of {len(pairs)} INT8/NF4 pairs with identical peak memory differ by more "
                    f"than {tol:.0%} in latency"
                )
                involved += [worst[1], worst[2]]
        checked = [
            x
            for x in study.claims
            if x.source_file == t.source_file
            and x.section == t.section
            and x is not t
            and x.raw.get("comparability") in ("relative", "hardware-bound")
        ]
        looser = [
            x
            for x in checked
            if isinstance(x.raw.get("tolerance"), dict)
            and x.raw["tolerance"].get("kind") == "relative"
            and float(x.raw["tolerance"].get("value", 0)) > tol
        ]
        if looser:
            parts.append(
                f"it checks GPU-dependent ratios ({', '.join(x.id.rsplit('.', 1)[-1] for x in looser)}) "
                "with no condition on the GPU, while they vary by more than that between runs on one machine"
            )
            evidence += [
                f"{x.id}: qkit tolerance {x.raw['tolerance']['value']:.0%} ({x.raw['tolerance'].get('reason')})"
                for x in looser
            ]
            involved += looser
        if parts:
            yield Hit(
                f"'{t.text.strip()}': a {tol:.0%} relative tolerance is tighter than the study's own noise: "
                + "; ".join(parts),
                "; ".join(evidence),
                involved,
            )


__all__ = ["Iv", "path_key", "versions"]


# ------------------------------------------------------------------------- document hygiene

_ESCAPE = re.compile(r"\\[ntr](?=[\s#*\-|A-Za-z0-9]|$)")
_CODE_LIKE = ("method_description", "code", "code_listing", "published_code", "install_command", "required_scripts")


@rule(
    "provenance.escape_sequences",
    family="provenance",
    severity="info",
    convention="literal escape sequences ('\\n', '\\t') in prose (code listings excepted) are an "
    "unrendered template: the document was not proof-read as published; one finding per file",
)
def escape_sequences(study: Study) -> Iterator[Hit]:
    """Literal escape sequences printed in a document's prose."""
    by_file: dict[str, list[AuditClaim]] = defaultdict(list)
    for c in study.claims:
        if c.metric in _CODE_LIKE:
            continue
        if _ESCAPE.search(c.text):
            by_file[c.source_file].append(c)
    for src, cs in sorted(by_file.items()):
        stated = [c for c in cs if c.metric == "literal_escape_sequences" and c.is_number]
        n = int(stated[0].num) if stated else sum(len(_ESCAPE.findall(c.text)) for c in cs)
        yield Hit(
            f"{src}: its prose prints {n} literal escape sequence(s) ('\\n') instead of line breaks, e.g. "
            f"'{cs[0].text.strip()[:60]}': an unrendered template, published unread",
            "; ".join(f"{c.id} ({c.section}): '{c.text.strip()[:80]}'" for c in cs[:6]),
            cs[:8],
        )


@rule(
    "provenance.epoch_date",
    family="provenance",
    severity="warning",
    convention="a value labelled as a date must read as one: a raw unix epoch (seconds since 1970, UTC) "
    "printed after 'Date' is a dump of a timestamp field",
)
def epoch_date(study: Study) -> Iterator[Hit]:
    """A raw epoch number presented as a date."""
    for c in study.metric("timestamp", "date"):
        if not c.is_number or not (9e8 < c.num < 5e9):
            continue
        if not re.search(r"\bdate\b", c.text, re.I):
            continue
        when = dt.datetime.fromtimestamp(c.num, tz=dt.timezone.utc)
        yield Hit(
            f"'{re.sub(r'[*]+', '', c.text).strip()[:80]}': the date is printed as a raw unix epoch; it stands for "
            f"{when:%Y-%m-%d %H:%M:%S} UTC",
            f"{c.id}: {c.value} s since 1970-01-01 UTC = {when.isoformat()}",
            [c],
        )


@rule(
    "provenance.complete_table",
    family="provenance",
    severity="warning",
    convention="a section titled 'complete' must give every model of the study (its stated model count, "
    "else the models any of its files name) for each quantity it tabulates",
)
def complete_table(study: Study) -> Iterator[Hit]:
    """A section titled complete whose tables omit models."""
    # file -> the tables (sub-sections) of one quantity under a 'complete' title -> models they give
    per_file: dict[str, dict[tuple[str, str], tuple[set[str], set[str]]]] = defaultdict(dict)
    firsts: dict[str, AuditClaim] = {}
    for c in study.claims:
        if c.kind != "cell" or not c.model:
            continue
        parts = [p.strip() for p in c.section.split("/")]
        idx = next((i for i, p in enumerate(parts) if re.search(r"\bcomplete\b", p, re.I)), None)
        if idx is None:
            continue
        title = " / ".join(parts[: idx + 1])
        models, sections = per_file[c.source_file].setdefault((title, c.metric), (set(), set()))
        models.add(c.model)
        sections.add(c.section)
        firsts.setdefault(c.source_file, c)
    for src, tables in sorted(per_file.items()):
        anchor = firsts[src]
        stated = [m for m in study.metric("model_count") if study.same_group(m, anchor) and m.is_number]
        stated.sort(key=lambda m: m.source_file != src)  # the file's own count first
        every = {x.model for x in study.claims if x.kind == "cell" and x.model and study.same_group(x, anchor)}
        total = int(stated[0].num) if stated else len(every)
        by_tables: dict[str, set[str]] = defaultdict(set)
        for (_title, _metric), (models, sections) in tables.items():
            by_tables[" + ".join(sorted(sections))].update(models)
        short = {where: models for where, models in sorted(by_tables.items()) if len(models) < total}
        if not short:
            continue
        yield Hit(
            f"{src}: a section titled complete omits models: "
            + "; ".join(f"'{where}' gives {len(models)} of {total}" for where, models in short.items()),
            "; ".join(f"{where}: missing {', '.join(sorted(every - models))}" for where, models in short.items())
            + (f"; model count {stated[0].id} = {total}" if stated else f"; {total} models named in the study"),
            [anchor, *stated[:1]],
        )
