"""Environment and provenance: versions that cannot coexist or did not exist yet, dates against
timestamps, row counts against experiment counts, iteration counts against the dispersion shown.

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

from kit.claims.audit.engine import AuditClaim, Hit, Iv, Study, fmt, path_key, rule

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
TORCH_PATCH_DATES = {"2.0.1": "2023-05-08", "2.1.1": "2023-11-15", "2.1.2": "2023-12-14", "2.2.1": "2024-02-22",
                     "2.2.2": "2024-03-27", "2.3.1": "2024-06-05", "2.4.1": "2024-09-04", "2.5.1": "2024-10-29"}
TORCHVISION_FOR_TORCH = {"1.12": "0.13", "1.13": "0.14", "2.0": "0.15", "2.1": "0.16", "2.2": "0.17", "2.3": "0.18",
                         "2.4": "0.19", "2.5": "0.20", "2.6": "0.21", "2.7": "0.22", "2.8": "0.23"}
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
_ALIASES = {"pytorch": "torch", "torch": "torch", "python": "python", "cuda": "cuda", "torchvision": "torchvision",
            "bitsandbytes": "bitsandbytes", "bnb": "bitsandbytes", "os": "os", "ubuntu": "os"}


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
                        not lower_bound_only and _vt(py_lo) <= _vt(pm) <= _vt(py_hi)):
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
    v = c.value
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
            later = [(e, d) for e, d, _ in exact if d > hi]
            if not later:
                continue
            e, d = min(later, key=lambda t: t[1])
            days = (d - hi).days
            yield Hit(
                f"'{c.text.strip(' *')}' ({lo:%B %Y}) predates the study's own timestamp {e.value} "
                f"= {d.isoformat()} UTC by {days} days",
                f"{e.id}: {e.value} -> {d.isoformat()}; {c.id}: {c.value} -> {lo.isoformat()}..{hi.isoformat()}",
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
    from kit.claims.audit.gpus import find_gpu

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
        exps = [e for e in study.metric("experiment_count") if e.is_number and e.source_file == c.source_file
                and (e.subject.get("item") == c.subject.get("item") or not e.subject.get("item"))]
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
            return next((c for c in study.metric(metric) if c.source_file == f and c.is_number
                         and not c.subject.get("item")), None)

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
            reported = {c.batch_size for c in study.claims if c.kind == "cell" and c.batch_size
                        and study.same_group(c, bs)}
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
        n4 = next((x for x in study.cells("latency_ms", model=i8.model, kit_path="bnb-nf4")
                   if x.location == i8.location), None)
        if n4 is None:
            continue
        mem8 = [x for x in study.cells("peak_memory_mb", model=i8.model, kit_path="bnb-int8")
                if x.source_file == i8.source_file]
        mem4 = [x for x in study.cells("peak_memory_mb", model=i8.model, kit_path="bnb-nf4")
                if x.source_file == i8.source_file]
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
    convention="a percentile/SLA claim ('99.5% of requests under 10 ms') needs a latency "
    "distribution; the study publishes means only",
)
def distribution_claims(study: Study) -> Iterator[Hit]:
    """SLA or percentile claims with no latency distribution behind them."""
    has_dist = any(c.metric in ("latency_p99_ms", "latency_p95_ms", "latency_std_ms")
                   or (c.aggregate in ("std", "percentile") and c.over.get("metric") == "latency_ms")
                   for c in study.claims)
    if has_dist:
        return
    for c in study.claims:
        if c.metric.startswith("sla") or re.search(r"p9\d|percentile", c.metric):
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
    claims = [c for c in study.metric("success_rate_pct", "all_experiments_succeeded", "failed_experiment_count")
              if (c.metric == "success_rate_pct" and c.is_number and c.num >= 100)
              or (c.metric == "all_experiments_succeeded" and c.value is True)
              or (c.metric == "failed_experiment_count" and c.is_number and c.num == 0)]
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


__all__ = ["Iv", "path_key", "versions"]
