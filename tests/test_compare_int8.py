"""``qkit compare-int8``: the table's arithmetic on made-up documents, then one real tiny run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from kit.cli import main
from kit.compare.int8 import (
    CHART_FILE,
    JSON_FILE,
    TABLE_FILE,
    Row,
    baseline_of,
    build_table,
    markdown_table,
    plan_rows,
    write_outputs,
)


def _doc(p50: float, size: int, cosine: float = 1.0, provider: str | None = None) -> dict[str, Any]:
    return {
        "status": "ok",
        "reason": None,
        "latency": {"p50": p50, "p99": p50 * 1.2, "noise_warnings": []},
        "size": {"bytes": size, "method": "test"},
        "fidelity": {"cosine": cosine, "max_abs_error": 0.1, "top1_agreement": 1.0, "finite": True},
        "path_info": {"execution_provider": provider},
    }


def _rows_by_label(table: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["label"]: r for r in table}


def test_every_int8_method_is_planned_beside_its_baseline() -> None:
    rows = plan_rows(["cpu", "cuda"])
    paths = {(r.path, r.device, r.provider) for r in rows}
    for expected in [
        ("ort-int8-dynamic", "cpu", None),
        ("ort-int8-static-qdq", "cpu", None),
        ("torch-int8-dynamic", "cpu", None),
        ("bnb-int8", "cpu", None),
        ("bnb-int8", "cuda", None),
        ("ort-int8-static-qdq", "cuda", None),
        ("ort-int8-static-qdq", "cuda", "tensorrt"),
    ]:
        assert expected in paths
    for row in rows:
        assert baseline_of(row) in rows  # every row's FP32 baseline is run too
    assert baseline_of(Row("ort-int8-static-qdq", "cuda", "tensorrt")) == Row(
        "ort-fp32", "cuda", "tensorrt", role="baseline"
    )


def test_speedups_are_against_fp32_of_the_same_runtime_and_slower_rows_say_so() -> None:
    rows = plan_rows(["cpu"])
    docs = {
        Row("torch-fp32", "cpu", role="baseline"): _doc(100.0, 400),
        Row("ort-fp32", "cpu", role="baseline"): _doc(80.0, 400, provider="CPUExecutionProvider"),
        Row("torch-int8-dynamic", "cpu"): _doc(50.0, 120, 0.999),
        Row("ort-int8-dynamic", "cpu"): _doc(20.0, 100, 0.998, "CPUExecutionProvider"),
        Row("ort-int8-static-qdq", "cpu"): _doc(160.0, 100, 0.997, "CPUExecutionProvider"),
        Row("bnb-int8", "cpu"): {"status": "skipped", "reason": "bitsandbytes is not installed"},
    }
    known = {r.path for r in rows}
    table = _rows_by_label(build_table(rows, docs, known))
    dyn = table["ort-int8-dynamic [cpu]"]
    assert dyn["speedup"] == pytest.approx(4.0) and dyn["speedup_vs_torch_fp32"] == pytest.approx(5.0)
    assert dyn["size_ratio"] == pytest.approx(0.25) and dyn["provider"] == "CPUExecutionProvider"
    assert table["torch-int8-dynamic [cpu]"]["speedup"] == pytest.approx(2.0)
    static = table["ort-int8-static-qdq [cpu]"]
    assert static["speedup"] == pytest.approx(0.5)
    assert static["notes"][0].startswith("SLOWER than ort-fp32")
    bnb = table["bnb-int8 [cpu]"]
    assert bnb["status"] == "skipped" and bnb["reason"] == "bitsandbytes is not installed"
    text = markdown_table("m", 1, list(table.values()))
    assert "SLOWER" in text and "bnb-int8 [cpu]: skipped: bitsandbytes is not installed" in text


def test_a_path_missing_from_the_kit_is_a_row_with_its_reason() -> None:
    rows = [Row("torch-fp32", "cpu", role="baseline"), Row("bnb-int8", "cpu")]
    table = build_table(rows, {rows[0]: _doc(10.0, 4)}, known={"torch-fp32"})
    assert table[1]["status"] == "skipped" and "not available in this build" in table[1]["reason"]


def test_outputs_are_written_with_a_chart(tmp_path: Path) -> None:
    rows = plan_rows(["cpu"])[:2]
    table = build_table(
        rows,
        {rows[0]: _doc(10.0, 4), rows[1]: _doc(5.0, 4, provider="CPUExecutionProvider")},
        known={r.path for r in rows},
    )
    files = write_outputs("m", 1, table, tmp_path)
    assert files["chart"] is not None and files["chart"].stat().st_size > 5000
    assert json.loads(files["json"].read_text())["rows"][1]["speedup_vs_torch_fp32"] == pytest.approx(2.0)


def test_compare_int8_on_a_tiny_model_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    result = CliRunner().invoke(
        main, ["compare-int8", "--model", "tiny-vit", "--devices", "cpu,cuda", "--out", str(out), "--profile", "quick"]
    )
    assert result.exit_code == 0, result.output
    rows = _rows_by_label(json.loads((out / JSON_FILE).read_text())["rows"])
    for label in ("ort-fp32 [cpu]", "ort-int8-dynamic [cpu]", "ort-int8-static-qdq [cpu]", "torch-fp32 [cpu]"):
        assert rows[label]["status"] == "ok", rows[label]
        assert rows[label]["p50_ms"] > 0 and rows[label]["p99_ms"] >= rows[label]["p50_ms"]
    for label in ("ort-int8-dynamic [cpu]", "ort-int8-static-qdq [cpu]"):
        assert rows[label]["provider"] == "CPUExecutionProvider"
        assert rows[label]["speedup"] > 0 and rows[label]["cosine"] > 0.95
        slower = rows[label]["speedup"] < 1
        assert slower == any(n.startswith("SLOWER") for n in rows[label]["notes"])
    # Every planned row is in the table, ran or not; one that did not run keeps its reason.
    assert len(rows) == len(plan_rows(["cpu", "cuda"]))
    for row in rows.values():
        assert row["status"] == "ok" or row["reason"]
    assert (out / CHART_FILE).stat().st_size > 5000 and (out / TABLE_FILE).is_file()
    assert "ort-int8-static-qdq [cpu]" in result.output


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["compare-int8", "--model", "no-such-model", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1 and "no-such-model" in result.output
