"""Result schema and store: real documents pass, broken ones are rejected, writes are atomic."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest

from kit.documents import DocumentError, atomic_write_text, check
from kit.results.store import Cell, cell_file, done_cells, load_results, write_result
from kit.run.cell import RunOptions, failed_document, skipped_document


def check_result(doc: dict) -> None:
    check(doc, "result")


def _ok_doc(tmp_path: Path) -> dict:
    """A complete ok document, shaped like the runner's (its numbers are placeholders for schema tests)."""
    doc = skipped_document(Cell("tiny-vit", "torch-fp32", "cpu", 1), RunOptions(out_dir=str(tmp_path)), "x")
    samples = [1.0, 1.1, 0.9, 1.05]
    doc.update(
        status="ok",
        reason=None,
        model_info={"parameters": 1000},
        path_info={"path": "torch-fp32"},
        latency={
            "unit": "ms",
            "timer": "perf_counter_ns",
            "warmup_iterations": 1,
            "warmup_s": 0.1,
            "iterations": 4,
            "duration_s": 0.01,
            "min_iterations": 3,
            "min_duration_s": 0.0,
            "max_duration_s": 1.0,
            "stopped_by": "min_iterations_and_duration",
            "mean": 1.01,
            "std": 0.08,
            "cv": 0.08,
            "min": 0.9,
            "p50": 1.025,
            "p90": 1.08,
            "p95": 1.09,
            "p99": 1.1,
            "max": 1.1,
            "p50_ci95": [0.9, 1.1],
            "ci_method": "bootstrap",
            "percentile_method": "linear",
            "noise_warnings": [],
            "samples": samples,
        },
        throughput={"samples_per_s": 975.6, "method": "batch_size / median latency"},
        memory={"peak_mb": 300.0, "peak_source": "ru_maxrss"},
        size={"bytes": 4000, "mb": 0.004, "method": "safetensors"},
        fidelity={
            "reference": "fp32",
            "inputs": "seeded",
            "max_abs_error": 0.0,
            "mean_abs_error": 0.0,
            "cosine": 1.0,
            "top1_agreement": 1.0,
            "finite": True,
        },
    )
    return doc


def test_schema_accepts_ok_skipped_and_failed_documents(tmp_path: Path) -> None:
    opts = RunOptions(out_dir=str(tmp_path))
    check_result(_ok_doc(tmp_path))
    check_result(skipped_document(Cell("m", "p", "cuda", 1), opts, "CUDA unavailable"))
    check_result(failed_document(Cell("m", "p", "cpu", 4), opts, "child process killed by SIGKILL"))


@pytest.mark.parametrize(
    "breakage",
    [
        ("missing field", lambda d: d.pop("cell")),
        ("wrong type", lambda d: d["cell"].__setitem__("batch_size", "one")),
        ("negative latency", lambda d: d["latency"].__setitem__("p50", -1.0)),
        ("unknown device", lambda d: d["cell"].__setitem__("device", "tpu")),
        ("ok without latency", lambda d: d.__setitem__("latency", None)),
        ("ok with a reason", lambda d: d.__setitem__("reason", "why")),
        ("skipped without reason", lambda d: (d.__setitem__("status", "skipped"), d.__setitem__("reason", None))),
        ("unknown top-level field", lambda d: d.__setitem__("simulated_accuracy", 0.85)),
        ("cosine out of range", lambda d: d["fidelity"].__setitem__("cosine", 3.0)),
    ],
    ids=lambda b: b[0] if isinstance(b, tuple) else str(b),
)
def test_schema_rejects_broken_documents(tmp_path: Path, breakage: tuple) -> None:
    doc = copy.deepcopy(_ok_doc(tmp_path))
    breakage[1](doc)
    with pytest.raises(DocumentError) as info:
        check_result(doc)
    assert "\n" not in str(info.value)


def test_write_refuses_an_invalid_document_and_leaves_nothing(tmp_path: Path) -> None:
    doc = _ok_doc(tmp_path)
    doc["latency"]["mean"] = -5
    with pytest.raises(DocumentError):
        write_result(tmp_path, doc)
    assert not list(tmp_path.rglob("*.json"))


def test_killed_write_leaves_no_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "cells" / "m" / "doc.json"
    atomic_write_text(target, '{"old": true}')

    real_fsync = os.fsync

    def interrupted_fsync(fd: int) -> None:
        real_fsync(fd)
        raise KeyboardInterrupt  # Ctrl-C between writing the temporary file and renaming it

    monkeypatch.setattr(os, "fsync", interrupted_fsync)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_text(target, '{"new": true, "long": "' + "x" * 100000 + '"}')
    assert json.loads(target.read_text()) == {"old": True}  # the old document survives whole
    assert [p.name for p in target.parent.iterdir()] == ["doc.json"]  # no temporary left behind


def test_corrupt_documents_are_listed_by_name_and_not_done(tmp_path: Path) -> None:
    good = _ok_doc(tmp_path)
    write_result(tmp_path, good)
    bad_cell = Cell("tiny-vit", "torch-fp16", "cpu", 1)
    bad = cell_file(tmp_path, bad_cell)
    bad.write_text('{"schema_version": "1", "truncated')
    loaded = load_results(tmp_path)
    assert len(loaded.docs) == 1
    assert [Path(f).name for f, _ in loaded.corrupt] == [bad.name]
    assert "not JSON" in loaded.corrupt[0][1]
    done, corrupt = done_cells(tmp_path)
    assert Cell.from_dict(good["cell"]) in done and bad_cell not in done and len(corrupt) == 1


def test_what_is_not_a_document_in_cells_is_listed_not_read(tmp_path: Path) -> None:
    """A FIFO, /dev/zero or a 200 MB file named *.json would hang or fill memory if read: each is refused."""
    write_result(tmp_path, _ok_doc(tmp_path))
    junk = tmp_path / "cells" / "junk"
    junk.mkdir(parents=True)
    os.mkfifo(junk / "fifo.json")
    (junk / "zero.json").symlink_to("/dev/zero")
    with open(junk / "huge.json", "wb") as fh:
        fh.truncate(200 * 2**20)
    (junk / "nan.json").write_text('{"latency": {"mean": NaN}}')
    loaded = load_results(tmp_path)
    assert len(loaded.docs) == 1
    reasons = {Path(f).name: why for f, why in loaded.corrupt}
    assert reasons.keys() == {"fifo.json", "zero.json", "huge.json", "nan.json"}
    assert reasons["fifo.json"] == reasons["zero.json"] == "not a regular file"
    assert "byte limit" in reasons["huge.json"] and "NaN" in reasons["nan.json"]
    done, corrupt = done_cells(tmp_path)
    assert len(done) == 1 and len(corrupt) == 4
