"""The audit's machinery: intervals on published rounding, the rule registry and runner (every
rule runs; a rule that fails is an ``error`` finding and exit 3), the module layout (no import
cycles), bad input, the CLI (exit codes, table, schema-checked JSON) and hypothesis-generated
claim sets."""

from __future__ import annotations

import copy
import json
import string
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kit import documents
from kit.claims.audit import (
    RULES,
    AuditInputError,
    Hit,
    Rule,
    RuleSkipped,
    Study,
    exit_code,
    findings_document,
    load_rules,
    model_facts,
    optional_module,
    rule,
    run_audit,
    run_rules,
)
from kit.claims.audit.numbers import Iv, fmt, rounding_half_width
from kit.claims.load import ClaimFile, ClaimsError, ClaimSet, parse_claim_file
from kit.cli import main

sys.path.insert(0, str(Path(__file__).parent))
from test_audit_synth import synthetic_docs

# ------------------------------------------------------------------------------- intervals


def test_rounding_half_width_reads_the_printed_figure() -> None:
    assert rounding_half_width(2.5, "vit 2.50x speedup") == pytest.approx(0.005)
    assert rounding_half_width(2.5, "2.5x") == pytest.approx(0.05)
    assert rounding_half_width(632e6, "ViT-Huge (632M)") == pytest.approx(0.5e6)
    assert rounding_half_width(0.658, "reduction 65.8%") == pytest.approx(0.0005)
    # a float print of a rounded count carries no precision in its zeros
    assert rounding_half_width(86e6, "ViT-Base 86000000.0") == pytest.approx(0.5e6)
    # no text: the JSON number's own digits (never narrower than published)
    assert rounding_half_width(10.24) == pytest.approx(0.005)
    assert rounding_half_width(300000000) == pytest.approx(0.5e8)
    assert rounding_half_width(16) == pytest.approx(0.5)


def test_interval_arithmetic_accepts_published_rounding() -> None:
    lat32, lat16 = Iv.around(25.59, 0.005), Iv.around(10.24, 0.005)
    ratio = lat32 / lat16
    assert ratio.lo < 2.499 < ratio.hi
    assert Iv.around(2.50, 0.005).meets(ratio)  # 2.50 published for 2.499: rounding, not a defect
    assert not Iv.around(2.48, 0.005).meets(ratio)
    assert (1 - Iv(0.4, 0.5)).lo == pytest.approx(0.5)
    assert Iv(1, 2).gap(Iv(3, 4)) == pytest.approx(1)
    with pytest.raises(ZeroDivisionError):
        Iv(1, 2) / Iv(-1, 1)


def test_fmt_is_compact() -> None:
    assert fmt(2.4990234) == "2.499"
    assert fmt(2420.56) == "2,420.56"
    assert fmt(None) == "n/a"


# ------------------------------------------------------------------------------ registry


def test_rules_are_registered_with_family_severity_and_convention() -> None:
    rules = load_rules()
    assert len(rules) >= 40
    families = {r.family for r in rules.values()}
    assert families == {"arithmetic", "statistics", "consistency", "physics", "method", "provenance", "placeholders"}
    for r in rules.values():
        assert r.summary and r.convention, r.id
        assert r.id.split(".")[0] in (
            "arith",
            "stats",
            "consistency",
            "physics",
            "method",
            "provenance",
            "placeholders",
        )


def _broken(study: Study):
    yield Hit("first", "ok", [])
    raise RuntimeError("boom")


def _fine(study: Study):
    yield Hit("a defect of the claims", "arithmetic", [], severity="error")


BROKEN = Rule("test.broken", "arithmetic", "warning", "none", _broken, "broken")
FINE = Rule("test.fine", "physics", "warning", "none", _fine, "fine")


def test_a_rule_that_raises_becomes_an_error_finding_and_the_others_still_run() -> None:
    findings = run_rules(Study.from_input([]), [BROKEN, FINE])
    # the kit's failure first, then the other rule's finding, and what the broken rule yielded before failing
    assert [(f.rule, f.kind, f.severity) for f in findings] == [
        ("test.broken", "error", "error"),
        ("test.fine", "claim", "error"),
        ("test.broken", "claim", "warning"),
    ]
    assert findings[0].message == (
        "rule test.broken failed (a bug in the kit, not a defect of the claims): RuntimeError: boom"
    )
    assert exit_code(findings) == 3
    assert exit_code(findings[1:]) == 1 and exit_code(findings[2:]) == 0


def test_a_bug_in_a_kit_module_under_a_rule_is_loud(monkeypatch: pytest.MonkeyPatch) -> None:
    """A broken FLOPs model used to switch the physics rules off silently; now each rule that
    needs it reports the failure."""

    def broken_flops(model_id: str, *args: Any, **kwargs: Any) -> Any:
        raise ZeroDivisionError("a bug in the FLOPs model")

    monkeypatch.setattr(model_facts, "model_flops", broken_flops)
    model_facts.arch.cache_clear()
    try:
        findings = run_audit(_python_313(synthetic_docs()))
    finally:
        model_facts.arch.cache_clear()
    failed = {f.rule for f in findings if f.kind == "error"}
    assert {"physics.peak_vs_weights", "physics.roofline"} <= failed, failed
    assert all("ZeroDivisionError: a bug in the FLOPs model" in f.message for f in findings if f.kind == "error")
    # a rule that does not need the FLOPs model still ran and found its defect
    assert "provenance.version_compat" in {f.rule for f in findings if f.kind == "claim"}
    assert exit_code(findings) == 3


def test_a_missing_optional_package_is_a_recorded_skip() -> None:
    def needs_optional(study: Study):
        optional_module("qkit_no_such_package_xyz", "test.optional's check")
        yield Hit("never", "never", [])

    r = Rule("test.optional", "statistics", "warning", "none", needs_optional, "optional")
    [f] = run_rules(Study.from_input([]), [r])
    assert (f.rule, f.kind, f.severity) == ("test.optional", "skipped", "info")
    assert f.message == (
        "rule test.optional skipped: test.optional's check needs the optional package "
        "'qkit_no_such_package_xyz', which is not installed"
    )
    assert exit_code([f]) == 0


def test_optional_module_is_only_for_third_party_packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert optional_module("json", "x").__name__ == "json"
    with pytest.raises(RuleSkipped, match=r"'qkit_no_such_package_xyz\.sub', which is not installed"):
        optional_module("qkit_no_such_package_xyz.sub", "x")
    with pytest.raises(ValueError, match="part of the kit"):
        optional_module("kit.models.flops", "x")
    # an installed package that is itself broken (its own import fails) is not a skip
    (tmp_path / "qkit_broken_pkg").mkdir()
    (tmp_path / "qkit_broken_pkg" / "__init__.py").write_text("import qkit_missing_dependency_abc\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match="qkit_missing_dependency_abc"):
        optional_module("qkit_broken_pkg", "x")


def test_registering_an_unknown_family_or_severity_fails() -> None:
    with pytest.raises(ValueError, match="unknown rule family 'nonsense'"):
        rule("x.y", family="nonsense", severity="error")
    with pytest.raises(ValueError, match="unknown severity 'fatal'"):
        rule("x.y", family="physics", severity="fatal")
    assert "x.y" not in RULES


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "bad",
    [
        42,
        [{"id": "001.a"}],  # no metric
        [{"id": "001.a", "metric": "x", "source_file": "001_a.txt", "subject": {"kind": "cell"}}],  # no value
        [{"id": "001.a", "metric": "x", "value": 1, "subject": {"kind": "cell"}}],  # no source file
        [{"id": "001.a", "metric": "x", "value": 1, "source_file": "f", "subject": "cell"}],
        [
            {
                "id": "001.a",
                "metric": "x",
                "value": 1,
                "source_file": "f",
                "subject": {"kind": "cell"},
                "batch_size": "one",
            }
        ],
        {"source_file": "001_a.txt", "claims": "nope"},
    ],
)
def test_malformed_claims_raise_one_line_input_errors(bad: Any) -> None:
    with pytest.raises(AuditInputError) as info:
        run_audit(bad)
    assert "\n" not in str(info.value)


def test_duplicate_ids_are_bad_input() -> None:
    c = {"id": "001.a", "metric": "x", "value": 1, "source_file": "001_a.txt", "subject": {"kind": "study"}}
    with pytest.raises(AuditInputError, match="duplicate"):
        run_audit([c, dict(c)])


def test_run_audit_accepts_documents_and_claim_lists() -> None:
    docs = synthetic_docs()
    a = run_audit(docs)
    b = run_audit([{**c, "source_file": d["source_file"]} for d in docs for c in d["claims"]])
    # without file metadata the hardware is unknown, so fewer physics rules apply; none may crash
    assert not [f for f in a + b if f.kind == "error"]


# ------------------------------------------------------------------------------------ CLI


def _write(tmp: Path, docs: list[dict[str, Any]]) -> Path:
    d = tmp / "expected"
    d.mkdir(exist_ok=True)
    for doc in docs:
        (d / (doc["source_file"][:-4] + ".json")).write_text(json.dumps(doc), encoding="utf-8")
    return d


def test_cli_clean_study_exits_0_and_writes_valid_json(tmp_path: Path) -> None:
    d = _write(tmp_path, synthetic_docs())
    out = tmp_path / "out" / "findings.json"
    res = CliRunner().invoke(main, ["audit", "--expected", str(d), "--json", str(out)])
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    assert documents.problem(doc, "findings") is None  # the schema, formats included
    assert doc["summary"]["error"] == 0 and doc["summary"]["exit_code"] == 0
    assert "audit:" in res.output


def _python_313(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A defect for provenance.version_compat: Python 3.13 with the study's torch 2.1."""
    for c in docs[1]["claims"]:
        if c["id"] == "101.sw.python":
            c["value"], c["text"] = "3.13", "Python 3.13"
    return docs


def test_cli_defect_exits_1_with_table_and_sources(tmp_path: Path) -> None:
    d = _write(tmp_path, _python_313(synthetic_docs()))
    out = tmp_path / "f.json"
    res = CliRunner().invoke(main, ["audit", "--expected", str(d), "--json", str(out)])
    assert res.exit_code == 1, res.output
    assert "provenance.version_compat" in res.output
    assert "101.sw.python [101_bbbb.txt / Software]" in res.output  # claim id + seed file + section
    doc = json.loads(out.read_text())
    f = next(f for f in doc["findings"] if f["rule"] == "provenance.version_compat")
    assert f["severity"] == "error" and f["kind"] == "claim" and f["claims"][0]["source_file"] == "101_bbbb.txt"
    assert documents.problem(doc, "findings") is None
    assert doc["summary"]["exit_code"] == 1 and doc["summary"]["kit_errors"] == 0


def test_cli_a_rule_that_raises_exits_3_and_every_other_rule_still_reports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = Rule("arith.zz_broken", "arithmetic", "warning", "none", _broken, "broken")
    monkeypatch.setitem(RULES, broken.id, broken)
    d = _write(tmp_path, _python_313(synthetic_docs()))
    out = tmp_path / "f.json"
    res = CliRunner().invoke(main, ["audit", "--expected", str(d), "--json", str(out)])
    assert res.exit_code == 3, res.output
    assert "RuntimeError: boom" in res.output
    assert "1 rule(s) failed, a bug in the kit: arith.zz_broken" in res.output
    doc = json.loads(out.read_text())
    assert documents.problem(doc, "findings") is None
    first = doc["findings"][0]
    assert (first["rule"], first["kind"], first["severity"]) == ("arith.zz_broken", "error", "error")
    assert first["message"] == (
        "rule arith.zz_broken failed (a bug in the kit, not a defect of the claims): RuntimeError: boom"
    )
    assert "provenance.version_compat" in {f["rule"] for f in doc["findings"] if f["kind"] == "claim"}
    assert doc["summary"]["exit_code"] == 3 and doc["summary"]["kit_errors"] == 1
    assert doc["summary"]["rules_run"] == len(RULES)


@pytest.mark.parametrize("content", ["{not json", json.dumps({"schema_version": "1"}), "[]"])
def test_cli_bad_input_is_one_line_exit_2(tmp_path: Path, content: str) -> None:
    d = tmp_path / "expected"
    d.mkdir()
    (d / "001_ab.json").write_text(content)
    res = CliRunner().invoke(main, ["audit", "--expected", str(d)])
    assert res.exit_code == 2
    assert res.output.count("\n") == 1 and res.output.startswith(f"qkit: error: {d / '001_ab.json'}: ")


def test_cli_missing_directory_exit_2(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["audit", "--expected", str(tmp_path / "nope")])
    assert res.exit_code == 2 and res.output.count("\n") == 1
    assert (
        res.output == f"qkit: error: {tmp_path / 'nope'}: at #: not a directory of claim files (rule: expected-dir)\n"
    )


def test_cli_unwritable_json_exit_2(tmp_path: Path) -> None:
    d = _write(tmp_path, synthetic_docs())
    blocker = tmp_path / "file"
    blocker.write_text("x")
    res = CliRunner().invoke(main, ["audit", "--expected", str(d), "--json", str(blocker / "sub" / "f.json")])
    assert res.exit_code == 2
    assert res.output.splitlines()[-1] == f"qkit: error: cannot write {blocker / 'sub' / 'f.json'}: Not a directory"


def test_findings_document_rejects_a_multi_line_message() -> None:
    study = Study.from_input(synthetic_docs())
    doc = findings_document([], study, "x")
    assert documents.problem(doc, "findings") is None
    bad = copy.deepcopy(doc)
    bad["findings"] = [
        {
            "rule": "a.b",
            "family": "physics",
            "severity": "error",
            "message": "two\nlines",
            "evidence": "",
            "convention": "",
            "claims": [],
        }
    ]
    assert documents.problem(bad, "findings") == (
        "at #/findings/0/message: 'two\\nlines' does not match '^[^\\\\n]*$' (rule: pattern)"
    )
    # a kit failure is always severity error, a skip always info
    bad["findings"][0].update(message="one line", kind="error", severity="warning")
    assert documents.problem(bad, "findings") == "at #/findings/0/severity: 'error' was expected (rule: const)"


# ----------------------------------------------------------------------------- hypothesis

METRICS = [
    "latency_ms",
    "throughput_sps",
    "peak_memory_mb",
    "model_size_mb",
    "speedup",
    "memory_reduction_pct",
    "parameters",
    "size_category",
    "simulated_accuracy",
    "top1_accuracy_pct",
    "top1_accuracy_delta_pp",
    "throughput_change_pct",
    "experiment_count",
    "model_count",
    "row_count",
    "measured_iterations",
    "software_version",
    "hardware",
    "timestamp",
    "category_members",
    "category_model_count",
    "method_description",
    "method_row_count",
    "instances_required",
    "savings_usd_per_month",
    "savings_usd_per_year",
    "roi_pct",
    "cost_usd",
    "patch_size",
    "architecture_label",
    "column_names",
    "batch_sizes",
    "success_rate_pct",
    "dataset",
    "center_crop_px",
    "sla_pct_under_10ms",
]
MODELS = ["vit-huge-patch14-2020", "dinov2-base-2023", "mobilevit-xxs-edge", "deit-tiny-ultra-efficient", "nope"]
PATHS = ["torch-fp32", "torch-fp16", "bnb-int8", "bnb-nf4", "torch-int8-dynamic", "mystery"]
AGGS = [
    "mean",
    "median",
    "std",
    "min",
    "max",
    "percentile",
    "range",
    "all_within",
    "at_least",
    "at_most",
    "top",
    "leader",
]

finite = st.floats(min_value=-1e9, max_value=1e12, allow_nan=False, allow_infinity=False)
scalar = st.one_of(finite, st.integers(-10, 10**9), st.text(string.printable, max_size=12), st.booleans())
words = st.text(string.ascii_letters + string.digits + " -_.()<>~+%/", min_size=1, max_size=30)


@st.composite
def claims_strategy(draw: Any, source: str) -> dict[str, Any]:
    kind = draw(st.sampled_from(["cell", "aggregate", "study"]))
    metric = draw(st.sampled_from(METRICS))
    if kind == "cell":
        subject: dict[str, Any] = {"kind": "cell", "model": draw(st.sampled_from(MODELS))}
        value = draw(scalar)
    elif kind == "study":
        subject = {"kind": "study"}
        if draw(st.booleans()):
            subject["item"] = draw(words)
        value = draw(st.one_of(scalar, st.lists(scalar, min_size=1, max_size=5)))
    else:
        a = draw(st.sampled_from(AGGS))
        paths = draw(
            st.one_of(st.sampled_from(PATHS), st.lists(st.sampled_from(PATHS), min_size=1, max_size=3, unique=True))
        )
        subject = {
            "kind": "aggregate",
            "aggregate": a,
            "how": "generated",
            "over": {
                "metric": draw(st.sampled_from(METRICS)),
                "kit_path": paths,
                "models": draw(st.lists(st.sampled_from(MODELS), min_size=1, max_size=4, unique=True)),
            },
        }
        if a == "std":
            subject["params"] = {"ddof": draw(st.sampled_from([0, 1]))}
        if a == "percentile":
            subject["params"] = {"percentile": draw(st.floats(0, 100)), "method": "linear"}
        if a in ("range", "all_within"):
            lo, hi = sorted([draw(finite), draw(finite)])
            value: Any = [lo, hi]
        elif a == "top":
            value = draw(st.lists(st.sampled_from(MODELS), min_size=1, max_size=3))
        elif a == "leader":
            value = draw(st.sampled_from(subject["over"]["models"]))
        else:
            value = draw(finite)
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    return {
        "id": f"{source[:3]}.c{draw(st.integers(0, 10**9))}",
        "section": draw(words),
        "text": draw(words),
        "subject": subject,
        "metric": metric,
        "value": value,
        "unit": "",
        "published_label": draw(st.one_of(st.none(), words)),
        "kit_path": draw(st.one_of(st.none(), st.sampled_from(PATHS))),
        "device": draw(st.sampled_from([None, "cpu", "cuda"])),
        "batch_size": draw(st.sampled_from([None, 1, 8])),
        "tolerance": {"kind": "relative", "value": 0.1, "reason": "gen"}
        if numeric
        else {"kind": "exact", "value": 0, "reason": "gen"},
        "comparability": "portable",
        "supported": True,
        "unsupported_reason": None,
    }


@st.composite
def claim_docs(draw: Any) -> list[dict[str, Any]]:
    docs = []
    for source, gpu in (
        ("100_aa.txt", "NVIDIA GeForce RTX 4090"),
        ("101_bb.txt", draw(st.sampled_from(["NVIDIA GeForce RTX 4090", "NVIDIA T4", "unknown card"]))),
    ):
        claims = draw(st.lists(claims_strategy(source), min_size=1, max_size=12, unique_by=lambda c: c["id"]))
        docs.append(
            {
                "schema_version": "1",
                "source_file": source,
                "title": "t",
                "published_hardware": {"gpu": gpu},
                "claims": claims,
            }
        )
    return docs


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(claim_docs())
def test_generated_claim_sets_never_crash_a_rule(docs: list[dict[str, Any]]) -> None:
    files = []
    for doc in docs:
        try:
            files.append(parse_claim_file(doc["source_file"][:-4] + ".json", json.dumps(doc)))
        except ClaimsError as exc:  # malformed: the one-line error is the whole story
            assert "\n" not in str(exc)
            return
    findings = run_audit(ClaimSet(Path("."), tuple(files)))
    crashed = [f.message for f in findings if f.kind == "error"]
    assert not crashed


json_values = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8)
    ),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=20,
)


def _mutate(doc: Any, path: list[Any], value: Any) -> Any:
    if not path:
        return value
    out = copy.deepcopy(doc)
    cur = out
    for key in path[:-1]:
        cur = cur[key]
    cur[path[-1]] = value
    return out


BASE = synthetic_docs()[1]
TARGETS = [
    [],
    ["claims"],
    ["claims", 0],
    ["claims", 0, "subject"],
    ["claims", 0, "value"],
    ["claims", 0, "subject", "over"],
    ["claims", 3, "subject", "params"],
    ["published_hardware"],
    ["claims", 0, "id"],
    ["claims", 0, "subject", "over", "models"],
    ["claims", 1, "batch_size"],
]


@settings(max_examples=700, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(TARGETS), json_values)
def test_malformed_documents_give_one_line_never_a_traceback(target: list[Any], value: Any) -> None:
    doc = _mutate({**BASE, "claims": BASE["claims"][:6]}, target, value)
    # through the loader (what the CLI does) ...
    try:
        cf = parse_claim_file("101_bbbb.json", json.dumps(doc))
    except ClaimsError as exc:
        assert "\n" not in str(exc)
    else:
        assert isinstance(cf, ClaimFile)
        assert not [f for f in run_audit(ClaimSet(Path("."), (cf,))) if f.kind == "error"]
    # ... and straight into the library, unchecked
    try:
        findings = run_audit(doc)
    except AuditInputError as exc:
        assert "\n" not in str(exc)
    else:
        assert isinstance(findings, list)


def test_percentile_and_std_tolerate_degenerate_rows() -> None:
    docs = synthetic_docs()
    for c in docs[1]["claims"]:
        if c["id"] == "101.sp.std":
            c["subject"]["over"]["models"] = c["subject"]["over"]["models"][:1]
    findings = run_audit(docs)
    assert not [f for f in findings if f.kind == "error"]


def test_integral_float_batch_size_passes_the_loader_and_the_audit() -> None:
    # JSON Schema's "integer" admits 1.0; the loader must hand the audit the int it means
    # (hypothesis found this: the loader accepted it and the audit then refused the claim).
    doc = copy.deepcopy({**BASE, "claims": BASE["claims"][:6]})
    doc["claims"][1]["batch_size"] = 1.0
    cf = parse_claim_file("101_bbbb.json", json.dumps(doc))
    assert cf.claims[1].batch_size == 1 and isinstance(cf.claims[1].batch_size, int)
    assert not [f for f in run_audit(ClaimSet(Path("."), (cf,))) if f.kind == "error"]
