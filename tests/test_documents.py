"""The strict document reader and the one atomic writer (`kit.documents`), alone and through every
command that reads documents.

A bad document (NaN or Infinity, a number beyond a double, nested 100,000 deep, 200 MB, a FIFO or
/dev/zero named ``*.json``, not UTF-8) is refused with one line naming the file; through the
commands, each one is listed by name and not counted, the command goes on, no traceback, and
reading it never loads it into memory.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from kit import documents
from kit.cli import main
from kit.documents import MAX_BYTES, MAX_DEPTH, DocumentError
from kit.errors import BadInput

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "results" / "reference" / "cpu-intel-xeon-2core"
SMALL_MODEL = "deit-tiny-ultra-efficient"  # 16 documents: enough for every command, cheap to report
CLAIMS_004 = next((REPO / "kit" / "data" / "expected").glob("004_*.json"))
HUGE_BYTES = 200 * 2**20


def _ok_result() -> dict[str, Any]:
    return json.loads((REFERENCE / "cells" / SMALL_MODEL / "torch-fp32__cpu__bs1.json").read_text(encoding="utf-8"))


def _sparse(file: Path, size: int = HUGE_BYTES) -> Path:
    with open(file, "wb") as fh:
        fh.truncate(size)  # sparse: costs no disk, but claims 200 MB
    return file


def _refusal(file: Path) -> str:
    with pytest.raises(DocumentError) as info:
        documents.read_json(file)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{file}: "), message
    return info.value.problem


# ============================================================================ the strict reader


@pytest.mark.parametrize(
    "text,needle",
    [
        ('{"a": NaN}', "NaN is not standard JSON"),
        ('{"a": Infinity}', "Infinity is not standard JSON"),
        ("[-Infinity]", "-Infinity is not standard JSON"),
        ('{"a": 1e400}', "beyond a double"),
        ('{"a": -1e999}', "beyond a double"),
        ("[" + "9" * 400 + "]", "beyond a double"),
        ("[" * 100_000, f"nested deeper than {MAX_DEPTH} levels"),
        ("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), f"nested deeper than {MAX_DEPTH} levels"),
        ('{"a": 1,}', "not JSON"),
        ("", "not JSON"),
        ('{"a": 1} trailing', "not JSON"),
    ],
    ids=[
        *("nan", "infinity", "-infinity", "float-overflow", "-float-overflow", "huge-int"),
        *("deep", "65-deep", "comma", "empty", "trailing"),
    ],
)
def test_each_non_standard_json_is_refused_in_one_line(tmp_path: Path, text: str, needle: str) -> None:
    file = tmp_path / "doc.json"
    file.write_text(text, encoding="utf-8")
    assert needle in _refusal(file)


def test_the_bounds_themselves_are_accepted(tmp_path: Path) -> None:
    file = tmp_path / "edge.json"
    doc = {"deep": json.loads("[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1)), "max": 1.7976931348623157e308}
    doc["int"] = 2**1023
    file.write_text(json.dumps(doc), encoding="utf-8")
    assert documents.read_json(file) == doc
    exactly = tmp_path / "exactly.json"
    exactly.write_text('"' + "x" * 98 + '"', encoding="utf-8")
    assert documents.read_json(exactly, max_bytes=100) == "x" * 98
    assert "over the 99-byte limit" in _refusal_with(exactly, max_bytes=99)


def _refusal_with(file: Path, **bounds: int) -> str:
    with pytest.raises(DocumentError) as info:
        documents.read_json(file, **bounds)
    return info.value.problem


def test_not_utf8_is_refused(tmp_path: Path) -> None:
    file = tmp_path / "latin1.json"
    file.write_bytes('{"name": "café"}'.encode("latin-1"))
    assert "not UTF-8" in _refusal(file)


def test_what_is_not_a_regular_file_is_refused_without_reading(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)  # opening it blocking would hang until a writer came
    assert _refusal(fifo) == "not a regular file"
    zero = tmp_path / "zero.json"
    zero.symlink_to("/dev/zero")  # endless: reading it would fill memory
    assert _refusal(zero) == "not a regular file"
    folder = tmp_path / "folder.json"
    folder.mkdir()
    assert _refusal(folder) == "not a regular file"
    assert _refusal(tmp_path / "missing.json").startswith("unreadable: ")
    dangling = tmp_path / "dangling.json"
    dangling.symlink_to(tmp_path / "nowhere")
    assert _refusal(dangling).startswith("unreadable: ")


def test_a_huge_file_is_refused_by_its_size_with_memory_bounded(tmp_path: Path) -> None:
    huge = _sparse(tmp_path / "huge.json")
    tracemalloc.start()
    try:
        problem = _refusal(huge)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert problem == f"{HUGE_BYTES} bytes, over the {MAX_BYTES}-byte limit"
    assert peak < 2**20, f"refusing a {HUGE_BYTES}-byte file allocated {peak} bytes"


def test_read_checks_the_schema_and_names_the_rule(tmp_path: Path) -> None:
    doc = _ok_result()
    good = tmp_path / "good.json"
    good.write_text(json.dumps(doc), encoding="utf-8")
    assert documents.read(good, "result") == doc
    del doc["cell"]["device"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(DocumentError) as info:
        documents.read(bad, "result")
    assert str(info.value).startswith(f"{bad}: not a valid result document: at #/cell: ")
    assert "(rule: required)" in str(info.value)


def test_a_document_error_is_the_kits_one_line_bad_input() -> None:
    exc = DocumentError("some/file.json", "first line\nsecond line")
    assert isinstance(exc, BadInput) and exc.exit_code == 2
    assert str(exc) == "some/file.json: first line second line"


def test_read_many_lists_each_bad_file_by_name_and_keeps_the_rest(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps(_ok_result()), encoding="utf-8")
    nan = tmp_path / "nan.json"
    nan.write_text(json.dumps(_ok_result()).replace('"p50": ', '"p50": NaN, "x": ', 1), encoding="utf-8")
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    loaded = documents.read_many([good, nan, fifo, _sparse(tmp_path / "huge.json")], "result")
    assert loaded.files == [good] and len(loaded.docs) == 1
    assert [Path(f).name for f, _ in loaded.rejected] == ["nan.json", "fifo.json", "huge.json"]
    assert all("\n" not in why for _, why in loaded.rejected)


# ----------------------------------------------------------------------------- property-based

FINITE = st.floats(allow_nan=False, allow_infinity=False)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**64), 2**64) | FINITE | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=20,
)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(JSON_VALUES)
def test_standard_json_round_trips(value: Any) -> None:
    assert documents.loads(documents.dumps(value)) == value


@FUZZ
@given(st.binary(max_size=200))
def test_arbitrary_bytes_are_read_or_refused_in_one_line(data: bytes) -> None:
    try:
        documents.loads(data, "fuzz.json")
    except DocumentError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("fuzz.json: ")


@FUZZ
@given(JSON_VALUES, st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-1e400", "1" + "0" * 400]))
@example({"NaN": None}, "NaN")  # a key spelled like the token must stay a key
def test_a_non_standard_number_beside_any_value_is_refused(value: Any, token: str) -> None:
    for text in (
        # Unquote the token's own (last) occurrence only: a key spelled "NaN" inside value stays a string.
        token.join(json.dumps([value, token]).rsplit(f'"{token}"', 1)),
        json.dumps({"v": value, "bad": 0})[:-2] + token + "}",
    ):
        with pytest.raises(DocumentError, match="not standard JSON"):
            documents.loads(text, "fuzz.json")


@settings(max_examples=60, deadline=None)
@given(st.integers(MAX_DEPTH + 1, 5000), st.sampled_from(["[", '{"a":']))
def test_nesting_past_the_bound_is_refused_whether_closed_or_not(depth: int, opener: str) -> None:
    closer = "]" if opener == "[" else "}"
    with pytest.raises(DocumentError, match="nested deeper"):
        documents.loads(opener * depth + "1" + closer * depth, "deep.json")
    with pytest.raises(DocumentError) as info:  # unclosed: not JSON, or too deep to parse at all
        documents.loads(opener * depth, "deep.json")
    assert "\n" not in str(info.value)


# ============================================================================ the atomic writer


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_a_write_killed_midway_leaves_the_old_document_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "doc.json"
    documents.write_json(target, {"v": 1})

    def killed(*_args: Any) -> None:
        raise KeyboardInterrupt  # Ctrl-C between the fsync and the rename

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        documents.write_json(target, {"v": 2, "pad": "x" * 100_000})
    monkeypatch.undo()
    assert documents.read_json(target) == {"v": 1}
    assert _leftovers(tmp_path) == []


def test_a_failed_write_midway_leaves_no_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "new.json"

    def full_disk(_fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError):
        documents.atomic_write_text(target, "{}")
    assert not target.exists() and _leftovers(tmp_path) == []


def test_writing_refuses_nan_and_schema_violations_before_touching_the_file(tmp_path: Path) -> None:
    target = tmp_path / "doc.json"
    with pytest.raises(ValueError):
        documents.write_json(target, {"x": math.nan})
    assert not target.exists()
    doc = _ok_result()
    doc["status"] = "great"
    with pytest.raises(DocumentError, match="not a valid result document"):
        documents.write(target, doc, "result")
    assert not target.exists() and _leftovers(tmp_path) == []
    documents.write(target, _ok_result(), "result")
    assert documents.read(target, "result") == _ok_result()


def test_there_is_one_atomic_writer() -> None:
    """Every rename-into-place of a file goes through kit.documents (kit.export.cache_entry publishes folders)."""
    offenders = []
    for file in sorted((REPO / "kit").rglob("*.py")):
        if file.name == "documents.py":
            continue
        text = file.read_text(encoding="utf-8")
        if "mkstemp" in text or ("os.replace(" in text and file.name != "cache_entry.py"):
            offenders.append(str(file.relative_to(REPO)))
    assert offenders == []


# ============================================================================ through the commands


def _bad_documents(folder: Path) -> dict[str, str]:
    """Every kind of bad document, named ``*.json``, in ``folder``; name -> a word its line must hold."""
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps(_ok_result())
    (folder / "nan.json").write_text(text.replace('"p50": ', '"p50": NaN, "was": ', 1), encoding="utf-8")
    (folder / "infinity.json").write_text(text.replace('"p50": ', '"p50": Infinity, "was": ', 1), encoding="utf-8")
    (folder / "deep.json").write_text("[" * 100_000, encoding="utf-8")
    _sparse(folder / "huge.json")
    os.mkfifo(folder / "fifo.json")
    (folder / "zero.json").symlink_to("/dev/zero")
    (folder / "latin1.json").write_bytes(text.replace("torch-fp32", "torch-fp32é").encode("latin-1"))
    return {
        "nan.json": "NaN",
        "infinity.json": "Infinity",
        "deep.json": "nested",
        "huge.json": "limit",
        "fifo.json": "regular file",
        "zero.json": "regular file",
        "latin1.json": "UTF-8",
    }


@pytest.fixture()
def bad_results(tmp_path: Path) -> tuple[Path, dict[str, str], int]:
    """One model's reference documents plus every kind of bad one beside them."""
    root = tmp_path / "results"
    shutil.copytree(REFERENCE / "cells" / SMALL_MODEL, root / "cells" / SMALL_MODEL)
    good = len(list((root / "cells").rglob("*.json")))
    bad = _bad_documents(root / "cells" / "junk")
    return root, bad, good


def _invoke(args: list[str]) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def _assert_listed_once_each(result: Result, bad: dict[str, str]) -> None:
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = result.output.splitlines()
    for name, word in bad.items():
        naming = [line for line in lines if f"/{name}" in line]
        assert len(naming) == 1, (name, naming or result.output[-2000:])
        assert word in naming[0], naming[0]


def test_report_lists_each_bad_document_and_counts_the_rest(bad_results: tuple, tmp_path: Path) -> None:
    root, bad, good = bad_results
    result = _invoke(["report", "--results", root, "--out", tmp_path / "report"])
    assert result.exit_code == 0, result.output
    _assert_listed_once_each(result, bad)
    assert f"({good} result documents" in result.output
    text = (tmp_path / "report" / "report.md").read_text(encoding="utf-8")
    assert f"from {good} result documents" in text


def test_report_shows_a_bad_verdicts_or_findings_file_as_unreadable(tmp_path: Path) -> None:
    root = tmp_path / "results"
    shutil.copytree(REFERENCE / "cells" / SMALL_MODEL, root / "cells" / SMALL_MODEL)
    os.mkfifo(root / "verdicts.json")
    (root / "findings.json").write_text('{"findings": [' * 50_000, encoding="utf-8")
    result = _invoke(["report", "--results", root, "--out", tmp_path / "report"])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert "verdicts: validate output" in result.output and "not a regular file" in result.output
    assert "findings: audit output" in result.output and "nested deeper" in result.output


def test_merge_lists_each_bad_document_and_merges_the_rest(bad_results: tuple, tmp_path: Path) -> None:
    root, bad, good = bad_results
    merged = tmp_path / "merged"
    result = _invoke(["merge", root, "--out", merged])
    assert result.exit_code == 0, result.output
    _assert_listed_once_each(result, bad)
    assert f"{good} documents read, {good} written" in result.output and f"{len(bad)} corrupt" in result.output
    record = documents.read_json(merged / "merge.json")
    assert sorted(Path(c["file"]).name for c in record["corrupt"]) == sorted(bad)
    assert len(list(merged.rglob("cells/**/*.json"))) == good
    strict = _invoke(["merge", root, "--out", tmp_path / "strict", "--strict"])
    assert strict.exit_code == 1 and "Traceback" not in strict.output


def test_merge_reports_a_bad_shard_manifest_in_one_line(tmp_path: Path) -> None:
    root = tmp_path / "shard"
    shutil.copytree(REFERENCE / "cells" / SMALL_MODEL, root / "cells" / SMALL_MODEL)
    (root / "shard.json").write_text('{"plan": "p", "shard": 1, "of": Infinity, "planned": []}', encoding="utf-8")
    result = _invoke(["merge", root, "--out", tmp_path / "merged", "--strict"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if "shard.json" in line]
    assert len(lines) == 1 and "Infinity is not standard JSON" in lines[0], result.output


def test_merge_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = _invoke(["merge", tmp_path / "missing", "--out", tmp_path / "m"])
    assert result.exit_code == 2 and result.output.strip().count("\n") == 0
    assert result.output.startswith("qkit: error: ") and "does not exist" in result.output


def test_validate_lists_each_bad_document_and_judges_the_rest(bad_results: tuple, tmp_path: Path) -> None:
    """CLI behaviour only: validate's internals are being restructured elsewhere."""
    root, bad, good = bad_results
    result = _invoke(["validate", "--results", root, "--json", tmp_path / "v.json"])
    assert result.exit_code in (0, 1), result.output[-3000:]
    _assert_listed_once_each(result, bad)
    assert f"{good} result" in result.output
    assert documents.problem(documents.read_json(tmp_path / "v.json"), "verdicts") is None


def _bad_claims(tmp_path: Path) -> dict[str, Path]:
    """Claim folders, each holding one bad copy of 004's claims (or something posing as it)."""
    text = CLAIMS_004.read_text(encoding="utf-8")
    folders: dict[str, Path] = {}

    def folder(kind: str) -> Path:
        folders[kind] = tmp_path / f"expected-{kind}"
        folders[kind].mkdir()
        return folders[kind] / CLAIMS_004.name

    folder("nan").write_text(text.replace('"value": 224', '"value": NaN', 1), encoding="utf-8")
    folder("infinity").write_text(text.replace('"value": 224', '"value": Infinity', 1), encoding="utf-8")
    folder("deep").write_text("[" * 100_000, encoding="utf-8")
    _sparse(folder("huge"))
    os.mkfifo(folder("fifo"))
    folder("zero").symlink_to("/dev/zero")
    folder("schema").write_text(text.replace('"comparability": "portable"', '"comparability": "sometimes"', 1))
    return folders


@pytest.mark.parametrize("command", ["claims", "audit", "validate"])
def test_a_bad_claims_file_is_one_line_and_exit_2(command: str, tmp_path: Path) -> None:
    for kind, folder in _bad_claims(tmp_path).items():
        args = [command, "--expected", folder]
        if command == "validate":
            args += ["--results", REFERENCE / "cells" / SMALL_MODEL]
        result = _invoke(args)
        assert result.exit_code == 2, (kind, result.output[-2000:])
        assert "Traceback" not in result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1, (kind, lines)
        assert lines[0].startswith(f"qkit: error: {folder / CLAIMS_004.name}: at #"), (kind, lines[0])
        assert "(rule: " in lines[0], (kind, lines[0])


def test_reproduce_resume_lists_each_bad_document_and_keeps_the_finished_cells(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["reproduce", "--models", "tiny-vit", "--paths", "torch-fp32", "--devices", "cpu"]
    args += ["--profile", "quick", "--executor", "inline", "--out", out]
    first = _invoke(args)
    assert first.exit_code == 0, first.output[-3000:]
    cell = out / "cells" / "tiny-vit" / "torch-fp32__cpu__bs1.json"
    before = cell.stat().st_mtime_ns
    bad = _bad_documents(out / "cells" / "junk")
    again = _invoke(args)
    assert again.exit_code == 0, again.output[-3000:]
    _assert_listed_once_each(again, bad)
    assert "1 already done (resumed)" in again.output
    assert cell.stat().st_mtime_ns == before  # the finished cell was kept, not redone
    assert documents.read(cell, "result")["status"] == "ok"
