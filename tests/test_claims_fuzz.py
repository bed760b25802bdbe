"""Property-based: malformed claim files and result documents never give a traceback.

2,000+ generated documents in all (1,000+ claim files, 1,000+ result documents); a malformed claim
file is one `ClaimsError` line naming file, JSON pointer and rule; a malformed or odd result
document is rejected or judged, never a crash and never an "internal error" verdict.
"""

from __future__ import annotations

import copy
import json
import math
import tempfile
from pathlib import Path
from typing import Any

from claims_factory import accuracy_doc, ok_result
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kit.claims.load import ClaimsError, default_expected_dir, load_claims, parse_claim_file
from kit.claims.validate import VERDICTS, screen_results, summarize, validate, verdict_document

HUGE = "vit-huge-patch14-2020"
NAME = "004_65dbea4d430e66d7.json"
FUZZ = settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _base_claim_doc() -> dict[str, Any]:
    """004's claims plus a table claim, an aggregate and a leader from 001, all renamed into 004."""
    expected = default_expected_dir()
    doc = json.loads(next(expected.glob("004_*.json")).read_text(encoding="utf-8"))
    extra = json.loads(next(expected.glob("001_*.json")).read_text(encoding="utf-8"))["claims"]
    picked = [
        c
        for c in extra
        if c["id"]
        in ("001.latency.vit-huge-patch14-2020.fp16", "001.summary.fp16.speedup", "001.leaders.foundation_transformer")
    ]
    for c in picked:
        c["id"] = "004.x" + c["id"][3:]
    # Every claim kind once (a study statement, portable and relative cells, a CPU-compared cell,
    # an aggregate, a leader) and no more: each generated file is schema-checked in full.
    keep = (
        "004.model.source",
        "004.model.patch",
        "004.perf.latency.quantized",
        "004.perf.size.reduction",
        "004.accuracy.top1.difference",
        "004.software.python",
        "004.findings.top1_within_0_3",
    )
    doc["claims"] = [c for c in doc["claims"] if c["id"] in keep] + picked
    return doc


BASE_CLAIMS = _base_claim_doc()
BASE_TEXT = json.dumps(BASE_CLAIMS)

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**15), 10**15),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _paths(value, (*prefix, i))
    return out


def _parent(doc: Any, path: tuple) -> Any:
    for key in path[:-1]:
        doc = doc[key]
    return doc


@st.composite
def mutated(draw: st.DrawFn, base: dict[str, Any]) -> dict[str, Any]:
    """``base`` with 1-3 random deletions, replacements or additions anywhere in the tree."""
    doc = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(doc)[1:]))
        parent, key = _parent(doc, path), path[-1]
        op = draw(st.sampled_from(["delete", "replace", "replace", "add"]))
        if op == "delete":
            del parent[key]
        elif op == "replace":
            parent[key] = draw(JSON_VALUES)
        elif isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=8))] = draw(JSON_VALUES)
        else:
            parent.insert(int(key), draw(JSON_VALUES))
    return doc


def _check_claims_error(text: str) -> None:
    try:
        claim_file = parse_claim_file(NAME, text)
    except ClaimsError as exc:
        message = str(exc)
        assert "\n" not in message and message.startswith(f"{NAME}: at #"), message
        assert "(rule: " in message, message
        return
    # It parsed: then validate must cope with whatever the (schema-valid) claims say.
    verdicts = validate(claim_file.claims, [ok_result(HUGE, "torch-fp16")])
    assert all(v.verdict in VERDICTS and "internal error" not in v.reason for v in verdicts)


# ==================================================================== claim files (1,000+)


@FUZZ
@given(mutated(BASE_CLAIMS))
def test_mutated_claim_files_fail_in_one_line(doc: dict[str, Any]) -> None:
    _check_claims_error(json.dumps(doc))


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(BASE_TEXT) - 1), st.integers(0, 40), st.text(max_size=6))
def test_corrupted_claim_text_fails_in_one_line(at: int, cut: int, insert: str) -> None:
    _check_claims_error(BASE_TEXT[:at] + insert + BASE_TEXT[at + cut :])


@settings(max_examples=150, deadline=None)
@given(JSON_VALUES)
def test_arbitrary_json_is_not_a_claim_file(value: Any) -> None:
    _check_claims_error(json.dumps(value))


@settings(max_examples=30, deadline=None)
@given(mutated(BASE_CLAIMS))
def test_cli_exit_2_on_any_malformed_claim_file(doc: dict[str, Any]) -> None:
    from kit.cli import main as group

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / NAME).write_text(json.dumps(doc), encoding="utf-8")
        result = CliRunner().invoke(group, ["claims", "--counts", "--expected", tmp])
    assert result.exit_code in (0, 2), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    if result.exit_code == 2:
        assert len(result.output.strip().splitlines()) == 1 and "(rule: " in result.output


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300) | st.sampled_from([b"[" * 100_000, b"[NaN]", b"[1e999]", BASE_TEXT.encode("utf-16")]))
def test_any_bytes_on_disk_are_a_claim_file_or_one_line_naming_it(data: bytes) -> None:
    """Through the strict reader (`kit.documents.read_json`): the file on disk, not only its text."""
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / NAME
        file.write_bytes(data)
        try:
            load_claims(tmp)
        except ClaimsError as exc:
            message = str(exc)
            assert "\n" not in message and message.startswith(f"{file}: at #") and "(rule: " in message, message
            return
    raise AssertionError(f"{data[:60]!r} was accepted as a claim file")


# ================================================================ result documents (1,000+)

CLAIMS = [
    c
    for c in load_claims(default_expected_dir())
    if c.id.startswith(
        (
            "001.latency.vit-huge",
            "001.speedup.vit-huge",
            "001.peak_memory.vit-huge",
            "001.arch.parameters.vit-huge-patch14-2020.fp16",
            "000.software",
            "000.hardware",
            "004.",
        )
    )
    or c.id in ("001.summary.fp16.speedup", "000.ranges.latency.range", "001.leaders.foundation_transformer")
]
BASE_RESULT = ok_result(HUGE, "torch-fp16", latency_ms=10.3)
COMPANIONS = [
    ok_result(HUGE, "torch-fp32", latency_ms=25.6),
    accuracy_doc("dinov2-base-2023", "torch-fp32", 81.0, 95.6),
]
ODD_NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(10**20), 10**20),
    st.booleans(),
    st.just(0),
    st.just(0.0),
    st.just(-0.0),
    st.just(1e-300),
)
NUMERIC_FIELDS = [
    ("latency", "mean"),
    ("latency", "std"),
    ("latency", "cv"),
    ("latency", "iterations"),
    ("latency", "p50_ci95"),
    ("memory", "peak_mb"),
    ("throughput", "samples_per_s"),
    ("size", "bytes"),
    ("model_info", "param_count"),
    ("cell", "batch_size"),
]


def _check_results(generated: list[Any]) -> None:
    screened = screen_results(generated)
    assert all("\n" not in why for _, why in screened.rejected)
    verdicts = validate(CLAIMS, [*generated, *COMPANIONS])
    assert len(verdicts) == len(CLAIMS)
    assert all(v.verdict in VERDICTS for v in verdicts)
    assert not [v.reason for v in verdicts if "internal error" in v.reason]
    # The verdict file must stay writable as strict JSON (NaN from a document must not leak into it);
    # its schema is checked on whole runs in test_validate.py, here it would only cost time.
    doc = verdict_document(
        verdicts,
        summarize(verdicts, len(screened.rejected)),
        expected_dir="e",
        results_dir=None,
        rejected=screened.rejected,
        generated_utc="t",
        documents=len(generated),
    )
    json.dumps(doc, allow_nan=False)


@FUZZ
@given(mutated(BASE_RESULT))
def test_mutated_result_documents_never_crash(doc: dict[str, Any]) -> None:
    _check_results([doc])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(NUMERIC_FIELDS), ODD_NUMBERS), min_size=1, max_size=4))
def test_odd_numbers_in_valid_looking_documents(changes: list) -> None:
    doc = copy.deepcopy(BASE_RESULT)
    for (section, key), value in changes:
        doc[section][key] = value
    _check_results([doc])


@settings(max_examples=150, deadline=None)
@given(st.lists(JSON_VALUES, max_size=3))
def test_arbitrary_json_values_as_result_documents(values: list[Any]) -> None:
    _check_results(values)


def test_nan_everywhere_is_handled() -> None:
    """NaN passes the schema's ``minimum`` (NaN < 0 is false): the judge must still refuse it."""
    doc = copy.deepcopy(BASE_RESULT)
    doc["latency"].update(mean=math.nan, std=math.inf, p50_ci95=[math.nan, math.inf])
    doc["memory"]["peak_mb"] = math.nan
    _check_results([doc])
