"""The runner on tiny models: real measurements, resume, crashes, hangs, Ctrl-C, corrupt files."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from kit.results.store import Cell, cell_file, load_results
from kit.run.cell import RunOptions
from kit.run.executors import InlineExecutor, ProcessExecutor
from kit.run.reproduce import plan_matrix, reproduce

MODEL = "tiny-vit"


def _opts(out: Path) -> RunOptions:
    return RunOptions(out_dir=str(out), profile="quick", command="pytest")


def _docs_by_path(out: Path) -> dict[tuple[str, str], dict]:
    return {(d["cell"]["path"], d["cell"]["device"]): d for d in load_results(out).docs}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run")
    cells = plan_matrix([MODEL], ["torch-fp32", "torch-bf16", "torch-int8-dynamic"], ["cpu", "cuda"], [2])
    summary = reproduce(cells, _opts(out), InlineExecutor())
    assert summary.planned == 6 and summary.failed == 0, summary
    return out


def test_a_real_tiny_run_measures_every_cpu_cell(tiny_run: Path) -> None:
    docs = _docs_by_path(tiny_run)
    assert len(docs) == 6
    fp32 = docs[("torch-fp32", "cpu")]
    assert fp32["status"] == "ok"
    assert fp32["latency"]["iterations"] >= 3 and fp32["latency"]["p50"] > 0
    assert fp32["fidelity"]["cosine"] == pytest.approx(1.0, abs=1e-6)  # the reference against itself
    assert "high-water mark" in fp32["memory"]["peak_source"]
    assert fp32["memory"]["phases"]["inference"]["source"].startswith("VmHWM reset after prepare")
    assert fp32["environment"]["packages"]["torch"]
    bf16 = docs[("torch-bf16", "cpu")]
    assert bf16["status"] == "ok" and 0.99 < bf16["fidelity"]["cosine"] < 1.0  # lossy, but close
    assert bf16["size"]["bytes"] < fp32["size"]["bytes"] * 0.6  # half the bytes per weight
    int8 = docs[("torch-int8-dynamic", "cpu")]
    assert int8["status"] == "ok" and int8["path_info"]["replaced_linear_layers"] > 0


def test_unavailable_cells_are_skipped_with_a_reason(tiny_run: Path) -> None:
    docs = _docs_by_path(tiny_run)
    for path in ("torch-fp32", "torch-bf16"):
        doc = docs[(path, "cuda")]
        assert doc["status"] == "skipped" and "CUDA unavailable" in doc["reason"]
    assert docs[("torch-int8-dynamic", "cuda")]["status"] == "skipped"
    assert "CPU" in docs[("torch-int8-dynamic", "cuda")]["reason"]


def test_resume_skips_done_cells_and_force_redoes_them(tiny_run: Path) -> None:
    files = sorted(tiny_run.rglob("cells/**/*.json"))
    before = {f: f.stat().st_mtime_ns for f in files}
    cells = plan_matrix([MODEL], ["torch-fp32", "torch-bf16", "torch-int8-dynamic"], ["cpu", "cuda"], [2])
    summary = reproduce(cells, _opts(tiny_run), InlineExecutor())
    assert summary.resumed == 6 and summary.ok == summary.skipped == 0
    assert {f: f.stat().st_mtime_ns for f in files} == before
    forced = reproduce(cells[:1], _opts(tiny_run), InlineExecutor(), force=True)
    assert forced.resumed == 0 and forced.ok == 1


def test_corrupt_document_met_on_resume_is_reported_and_redone(tiny_run: Path) -> None:
    cell = Cell(MODEL, "torch-bf16", "cpu", 2)
    target = cell_file(tiny_run, cell)
    target.write_text(target.read_text()[:100])  # a truncated document
    summary = reproduce([cell], _opts(tiny_run), InlineExecutor())
    assert [Path(f).name for f, _ in summary.corrupt] == [target.name]
    assert summary.ok == 1
    assert _docs_by_path(tiny_run)[("torch-bf16", "cpu")]["status"] == "ok"


def test_a_crashing_cell_does_not_stop_the_run(tmp_path: Path) -> None:
    from cell_doubles import crash_on_fp16

    cells = plan_matrix([MODEL], ["torch-fp16", "torch-fp32"], ["cpu"], [1])
    summary = reproduce(cells, _opts(tmp_path), ProcessExecutor(), measure_fn=crash_on_fp16)
    docs = _docs_by_path(tmp_path)
    assert docs[("torch-fp16", "cpu")]["status"] == "failed"
    assert "SIGKILL" in docs[("torch-fp16", "cpu")]["reason"]
    assert docs[("torch-fp32", "cpu")]["status"] == "ok"  # the run went on after the crash
    assert summary.failed == 1 and summary.ok == 1


def test_a_hanging_cell_times_out_and_the_run_goes_on(tmp_path: Path) -> None:
    from cell_doubles import hang_on_bf16

    cells = plan_matrix([MODEL], ["torch-bf16", "torch-fp32"], ["cpu"], [1])
    summary = reproduce(cells, _opts(tmp_path), ProcessExecutor(), measure_fn=hang_on_bf16, timeout_s=20)
    docs = _docs_by_path(tmp_path)
    assert "timed out after 20 s" in docs[("torch-bf16", "cpu")]["reason"]
    assert docs[("torch-fp32", "cpu")]["status"] == "ok"
    assert summary.failed == 1


def test_ctrl_c_keeps_finished_cells(tmp_path: Path) -> None:
    from cell_doubles import interrupt_on_bf16

    cells = plan_matrix([MODEL], ["torch-fp32", "torch-bf16", "torch-int8-dynamic"], ["cpu"], [1])
    summary = reproduce(cells, _opts(tmp_path), InlineExecutor(), measure_fn=interrupt_on_bf16)
    assert summary.interrupted
    docs = _docs_by_path(tmp_path)
    assert set(docs) == {("torch-fp32", "cpu")}  # finished cell kept, nothing half-written
    assert not [p for p in tmp_path.rglob("*.tmp")]


def test_summary_csv_has_the_study_columns_and_no_made_up_ones(tiny_run: Path) -> None:
    from kit.results.summary import STUDY_COLUMNS, write_summary_csv

    target = write_summary_csv(tiny_run, load_results(tiny_run).docs)
    rows = list(csv.DictReader(target.open()))
    assert list(rows[0])[: len(STUDY_COLUMNS)] == STUDY_COLUMNS
    assert "simulated_accuracy" not in rows[0] and "stability_score" not in rows[0]
    bf16 = next(r for r in rows if r["precision"] == "torch-bf16" and r["device"] == "cpu")
    assert float(bf16["speedup"]) > 0 and bf16["status"] == "ok"
    skipped = next(r for r in rows if r["device"] == "cuda")
    assert skipped["latency_ms"] == "" and "CUDA" in skipped["reason"]


def test_bench_run_reads_a_run_and_judges_only_the_full_matrix(
    tiny_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from kit.bench.suite import bench_run

    figures = bench_run(tiny_run)
    out = capsys.readouterr().out
    assert figures["cells"] == 3 and figures["peak_rss_mb"] > 0
    assert figures["sum_cell_s"] > 0 and figures["wall_s"] > 0
    assert "n/a, not the full matrix" in out  # 3 cells: the 30-minute target is not judged
    assert "3 CUDA cells, none measured: CUDA unavailable" in out


def test_an_ort_cells_artifacts_are_made_before_its_measured_process(tmp_path: Path) -> None:
    # On a cold cache, the export and the quantized model are made by the artifacts process, so
    # the measured process only loads them: its memory phases do not depend on the cache's state.
    cell = Cell(MODEL, "ort-int8-dynamic", "cpu", 1)
    summary = reproduce([cell], _opts(tmp_path), ProcessExecutor())
    assert summary.ok == 1, summary
    (doc,) = load_results(tmp_path).docs
    assert doc["path_info"]["made_in_this_cell"] == {"export": False, "fusion": False, "model": False}
    assert (tmp_path / "_cache" / "onnx" / MODEL).is_dir()
    # Without the artifacts step (a stand-in measure function skips it) the cell makes them itself.
    from kit.run.cell import measure_cell

    def measure(c: Cell, o: RunOptions) -> dict:
        return measure_cell(c, o)

    fresh = tmp_path / "fresh"
    reproduce([cell], _opts(fresh), InlineExecutor(), measure_fn=measure)
    (doc,) = load_results(fresh).docs
    assert doc["path_info"]["made_in_this_cell"]["export"] is True


def test_a_cell_process_freezes_what_it_inherited_and_still_collects_its_own_garbage() -> None:
    # The forkserver's preloaded modules are ~490k objects; scanning them made each gc.collect in
    # a cell cost 0.2 s (about 1.4 s of a 3.6 s ViT-B/16 ORT INT8 process).
    from cell_doubles import gc_state_in_child

    state = ProcessExecutor().call(gc_state_in_child, timeout_s=120)
    assert state["frozen"] > 10_000
    assert state["collected"] >= 2
