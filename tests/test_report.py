"""The report builds from a real tiny run: figures open, are not blank, links resolve, skips are listed.

The module fixture runs the library runner in-process on a tiny model (three CPU paths plus CUDA
cells, which become skipped documents on a CPU-only machine). Tests that only need documents
reuse that run; a few pure-function tests need no run at all.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from kit.cli import main
from kit.report import data
from kit.report.markdown import build_report, cell_text, num

TINY_MODEL = "tiny-vit"
CPU_PATHS = ["torch-fp32", "torch-bf16", "torch-int8-dynamic"]
STUDY_FIGURES = ("speedup_vs_memory", "memory_efficiency", "speedup_heatmap")
RUN_FIGURES = (*STUDY_FIGURES, "latency_distributions", "int8_cpu_vs_gpu")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _tiny_ids_resolve() -> str | None:
    try:
        from kit.models.registry import get_model

        get_model(TINY_MODEL)
    except KeyError:
        return (
            f"kit.models.registry.get_model does not resolve tiny ids ({TINY_MODEL!r}) yet; "
            "the report's real-run tests wait for it"
        )
    return None


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Results of a real run: tiny-vit x 3 paths on cpu (ok) and on cuda (skipped without a GPU)."""
    why = _tiny_ids_resolve()
    if why:
        pytest.skip(why)
    from kit.run.cell import RunOptions
    from kit.run.executors import InlineExecutor
    from kit.run.reproduce import plan_matrix, reproduce

    out = tmp_path_factory.mktemp("tiny-run")
    cells = plan_matrix([TINY_MODEL], CPU_PATHS, ["cpu", "cuda"], [1])
    summary = reproduce(cells, RunOptions(out_dir=str(out), profile="quick"), InlineExecutor())
    assert summary.ok == len(CPU_PATHS), summary.line()
    return out


@pytest.fixture()
def results(tiny_run: Path, tmp_path: Path) -> Path:
    """A private copy of the run, so a test may add files (verdicts, a corrupt document)."""
    copy = tmp_path / "results"
    shutil.copytree(tiny_run, copy, ignore=shutil.ignore_patterns("_cache"))
    return copy


@pytest.fixture(scope="module")
def built(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One report of the untouched run, shared by the tests that only read it (figures are slow)."""
    out = tmp_path_factory.mktemp("built") / "report"
    return build_report(tiny_run, out)


def _docs(root: Path) -> list[dict[str, Any]]:
    from kit.results.store import load_results

    return load_results(root).docs


def _assert_png_ok(file: Path, size_px: tuple[int, int]) -> None:
    assert file.is_file(), file
    with Image.open(file) as img:
        img.load()
        assert img.format == "PNG"
        assert img.size == size_px, (file.name, img.size, size_px)
        grey = np.asarray(img.convert("L"), dtype=np.float64)
    # A blank (all-white) or near-blank image has almost no variance; a drawn chart has plenty.
    assert grey.std() > 10.0, f"{file.name} looks blank (pixel std {grey.std():.1f})"
    assert (grey < 128).mean() > 0.005, f"{file.name} has almost no dark pixels (text, axes)"


def _all_text(res: Any) -> str:
    """report.md and its companion details.md (every cell, verdict and finding)."""
    return res.report.read_text() + "\n" + res.details.read_text()


def _assert_links_resolve(report: Path) -> list[str]:
    targets = LINK.findall(report.read_text())
    for target in targets:
        if re.match(r"^[a-z]+://|^#|^mailto:", target):
            continue
        assert not Path(target).is_absolute(), f"absolute link {target} will not work on GitHub"
        file, _, anchor = target.partition("#")
        assert (report.parent / file).exists(), f"broken link {target} in {report}"
        if anchor:  # a heading of that file (GitHub's anchor: lower case, spaces to hyphens)
            heads = re.findall(r"^#+ (.*)$", (report.parent / file).read_text(), re.M)
            assert anchor in {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-") for h in heads}, target
    return targets


# ---------------------------------------------------------------- from the real run


def test_report_builds_with_every_figure(built: Any) -> None:
    res, out = built, built.report.parent
    drawn = {f.name: f for f in res.figures if f.file}
    assert set(RUN_FIGURES) <= set(drawn), {f.name: f.why_not for f in res.figures}
    for fig in drawn.values():
        assert fig.file.parent == out
        _assert_png_ok(fig.file, fig.size_px)
    text = res.report.read_text()
    links = _assert_links_resolve(res.report)
    assert {f"{n}.png" for n in RUN_FIGURES} <= set(links)
    for heading in ("At a glance", "Claims: what holds here", "Environment", "Measured matrix", "Figures"):
        assert f"## {heading}" in text
    details = res.details.read_text()
    for heading in ("Every measured cell", "Every verdict", "Every finding", "Skipped and failed cells"):
        assert f"## {heading}" in details
    assert "## How things were measured" in details
    assert res.html.is_file() and "report.html" in text


def test_report_without_validate_or_audit_says_so(built: Any) -> None:
    res = built
    text = res.report.read_text()
    assert "validate not run" in text.lower()
    assert "audit not run" in text.lower()
    pvm = next(f for f in res.figures if f.name == "published_vs_measured")
    assert pvm.file is None and "validate not run" in pvm.why_not
    assert "Not drawn: validate not run" in text


def test_matrix_environment_and_method_come_from_the_documents(tiny_run: Path, built: Any) -> None:
    docs = _docs(tiny_run)
    text = _all_text(built)
    ok = [d for d in docs if d["status"] == "ok"]
    for d in ok:
        row = f"| {d['cell']['model']} | {d['cell']['path']} | 1 | {num(d['latency']['p50'])} ["
        assert row in text
    env = ok[0]["environment"]
    assert env["cpu"]["model"] in text
    assert env["packages"]["torch"] in text
    assert env["kit"]["git_commit"] in text if env["kit"].get("git_commit") else True
    assert "| GPU | none |" in text
    lat = ok[0]["latency"]
    assert f"{lat['timer']} (cpu)" in text
    assert f"at least {lat['min_iterations']} iterations and {lat['min_duration_s']:g} s" in text
    assert cell_text(ok[0]["memory"]["peak_source"]) in text
    assert cell_text(lat["ci_method"]) in text


def test_speedups_use_the_same_device_fp32_baseline(tiny_run: Path) -> None:
    docs = _docs(tiny_run)
    rows = {r["path"]: r for r in data.measured_rows(docs)}
    base = rows["torch-fp32"]
    assert base["speedup"] == pytest.approx(1.0)
    for path in CPU_PATHS[1:]:
        assert rows[path]["speedup"] == pytest.approx(base["p50_ms"] / rows[path]["p50_ms"])
        assert rows[path]["memory_reduction_pct"] == pytest.approx(
            100 * (1 - rows[path]["inference_mb"] / base["inference_mb"])
        )


def test_skipped_cells_are_listed_with_their_reasons(tiny_run: Path, built: Any) -> None:
    docs = _docs(tiny_run)
    skipped = [d for d in docs if d["status"] != "ok"]
    assert skipped, "the cuda cells should be skipped documents on this machine"
    text = built.details.read_text()
    section = text.split("## Skipped and failed cells", 1)[1]
    for d in skipped:
        c = d["cell"]
        assert f"{c['model']} · {c['path']} · {c['device']} · bs{c['batch_size']}" in section
        assert cell_text(d["reason"]) in section


def test_report_with_only_skipped_cells_still_builds(results: Path, tmp_path: Path) -> None:
    for f in (results / "cells").rglob("*__cpu__*.json"):
        f.unlink()
    res = build_report(results, tmp_path / "r")
    text = res.report.read_text()
    assert "No cell was measured" in text
    assert not any(f.file for f in res.figures)
    assert all(f.why_not for f in res.figures)
    assert text.count("*Not drawn:") == len(res.figures)
    _assert_links_resolve(res.report)


def test_corrupt_document_is_listed_not_fatal(results: Path, tmp_path: Path) -> None:
    bad = results / "cells" / TINY_MODEL / "broken__cpu__bs1.json"
    bad.write_text("{ not json")
    res = build_report(results, tmp_path / "r")
    assert res.corrupt and res.corrupt[0][0] == str(bad)
    assert "corrupt result file" in res.report.read_text()


def _verdicts_doc(docs: list[dict[str, Any]], results_dir: Path) -> dict[str, Any]:
    """A verdict file as `qkit validate` writes it (schemas/verdicts.schema.json), on our numbers."""
    rows = {r["path"]: r for r in data.measured_rows(docs)}
    bf16 = rows["torch-bf16"]

    def verdict(claim_id: str, verdict: str, claimed: Any, measured: Any, **kw: Any) -> dict[str, Any]:
        v = {
            "claim_id": claim_id,
            "source_file": "001_5dfa280a2efa7106.txt",
            "section": "test",
            "text": claim_id,
            "comparability": "relative",
            "metric": "speedup",
            "subject": f"{TINY_MODEL} torch-bf16 cpu bs1",
            "unit": "x",
            "verdict": verdict,
            "claimed": claimed,
            "reason": f"{verdict} because",
            "measured": measured,
            "deviation": None,
            "deviation_relative": None,
            "tolerance": {"kind": "relative", "value": 0.15, "reason": "two latencies"},
            "allowed": None,
            "ci95": None,
            "cv": None,
            "convention": None,
            "hardware": None,
            "cells": [],
        }
        v.update(kw)
        return v

    s = bf16["speedup"]
    verdicts = [
        verdict("t.pass", "pass", s, s, allowed=[s * 0.85, s * 1.15], ci95=[s * 0.95, s * 1.05]),
        verdict("t.fail", "fail", s * 3, s, allowed=[s * 2.55, s * 3.45]),
        verdict("t.range", "inconclusive", [s * 0.5, s * 2], [s, s], ci95=[[s * 0.9, s * 1.1], [s * 0.9, s * 1.1]]),
        verdict(
            "t.latency",
            "not-comparable",
            5.67,
            bf16["p50_ms"],
            comparability="hardware-bound",
            metric="latency_ms",
            unit="ms",
            hardware={"claimed": "NVIDIA RTX 4070 Ti SUPER", "ours": None},
        ),
        verdict("t.accuracy", "unsupported", 0.85, None, metric="simulated_accuracy", unit=""),
        verdict("t.missing", "not-measured", 2.5, None),
    ]
    counts = {k: sum(v["verdict"] == k for v in verdicts) for k in data.VERDICT_ORDER}
    return {
        "schema_version": "1",
        "kind": "qkit-verdicts",
        "generated_utc": "2026-01-01T00:00:00+00:00",
        "expected_dir": "expected",
        "results_dir": str(results_dir),
        "results": {"documents": len(docs), "rejected": []},
        "summary": {
            "total": len(verdicts),
            "by_verdict": counts,
            "by_class": {},
            "by_file": {},
            "failed": 1,
            "exit_code": 1,
            "line": "test",
        },
        "verdicts": verdicts,
    }


def _finding(rule: str, severity: str, message: str, evidence: str, claims: list[str]) -> dict[str, Any]:
    return {
        "rule": rule,
        "family": "arithmetic" if rule.startswith("arith") else "statistics",
        "severity": severity,
        "message": message,
        "evidence": evidence,
        "convention": "",
        "claims": [{"id": c, "source_file": "001_5dfa280a2efa7106.txt", "section": "s", "text": "t"} for c in claims],
    }


# A findings file as `qkit audit --json` writes it (schemas/findings.schema.json).
FINDINGS = {
    "schema_version": "1",
    "kind": "qkit-findings",
    "generated_utc": "2026-01-01T00:00:00+00:00",
    "expected_dir": "expected",
    "claim_count": 2,
    "files": ["001_5dfa280a2efa7106.json"],
    "summary": {"error": 1, "warning": 1, "info": 0, "total": 2, "rules_run": 2, "exit_code": 1},
    "rules": [
        {
            "id": "arith.speedup_ratio",
            "family": "arithmetic",
            "severity": "error",
            "summary": "a published speedup equals the published latencies' ratio",
            "convention": "",
        },
        {
            "id": "stats.mean",
            "family": "statistics",
            "severity": "warning",
            "summary": "means recompute",
            "convention": "",
        },
    ],
    "findings": [
        _finding(
            "arith.speedup_ratio",
            "error",
            "speedup 2.50 is not 25.59 / 10.24",
            "25.59 / 10.24 = [2.4985, 2.4995]",
            ["001.speedup.x"],
        ),
        _finding("stats.mean", "warning", "mean | of 16 is 1.32", "mean = 1.3206", []),
    ],
}


def test_verdicts_and_findings_are_shown_grouped_with_counts(results: Path, tmp_path: Path) -> None:
    docs = _docs(results)
    verdicts = _verdicts_doc(docs, results)
    from kit.documents import problem

    for doc, kind in ((verdicts, "verdicts"), (FINDINGS, "findings")):
        assert problem(doc, kind) is None, kind  # keep these samples in validate's and audit's real formats
    (results / "verdicts.json").write_text(json.dumps(verdicts))
    (results / "findings.json").write_text(json.dumps(FINDINGS))
    res = build_report(results, tmp_path / "r")
    text = _all_text(res)
    assert "| fail | 1 |" in text and "| pass | 1 |" in text and "| not-comparable | 1 |" in text
    assert text.index("### fail (1)") < text.index("### pass (1)")  # failures first
    for v in verdicts["verdicts"]:
        assert f"`{v['claim_id']}`" in text
    assert "| error | 1 |" in text and "`arith.speedup_ratio`" in text
    assert "a published speedup equals the published latencies' ratio" in text  # what the rule checks
    assert "does not match" not in text
    assert "mean \\| of 16 is 1.32" in text  # a pipe inside a cell does not break the table
    assert "these verdicts were computed on" not in text
    pvm = next(f for f in res.figures if f.name == "published_vs_measured")
    assert pvm.file is not None, pvm.why_not
    _assert_png_ok(pvm.file, pvm.size_px)
    _assert_links_resolve(res.report)
    _assert_links_resolve(res.details)
    page = res.report.read_text()  # the one page: the failure and the audit's error, not the pass list's reasons
    assert "### fail (1)" in page and "`arith.speedup_ratio`" in page


def test_stale_verdicts_are_flagged(tiny_run: Path, tmp_path: Path) -> None:
    from kit.report.markdown import stale_note

    docs = _docs(tiny_run)
    assert stale_note(_verdicts_doc(docs, tiny_run), tiny_run, len(docs)) is None
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert "computed on" in stale_note(_verdicts_doc(docs, elsewhere), tiny_run, len(docs))
    verdicts = _verdicts_doc(docs, tiny_run)
    verdicts["results"]["documents"] += 1  # validate ran before a cell was removed
    assert "validate read" in stale_note(verdicts, tiny_run, len(docs))


def test_cli_writes_the_report_and_rejects_bad_input(results: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(main, ["report", "--results", str(results)])
    assert res.exit_code == 0, res.output
    out = results / "report"  # the default: beside the results
    assert (out / "report.md").is_file() and "report:" in res.output
    assert f"{len(_docs(results))} result documents" in res.output  # its own files are not taken for results
    res = runner.invoke(main, ["report", "--results", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "does not exist" in res.output
    res = runner.invoke(main, ["report", "--results", str(results), "--verdicts", str(tmp_path / "missing.json")])
    assert res.exit_code == 2


# ---------------------------------------------------------------- pure functions, no run needed


def test_empty_results_directory_builds(tmp_path: Path) -> None:
    res = build_report(tmp_path / "empty-results", tmp_path / "r")
    text = res.report.read_text()
    assert "0 result documents" in text and "No result documents" in text
    assert not any(f.file for f in res.figures)


def test_unreadable_verdicts_file_is_reported(tmp_path: Path) -> None:
    bad = tmp_path / "verdicts.json"
    bad.write_text("{")
    text = build_report(tmp_path, tmp_path / "r", verdicts_file=bad).report.read_text()
    assert "unreadable" in text


def test_tolerance_interval_and_plot_points() -> None:
    assert data.tolerance_interval(2.0, {"kind": "relative", "value": 0.1}) == pytest.approx((1.8, 2.2))
    assert data.tolerance_interval(50, {"kind": "absolute", "value": 2.5}) == (47.5, 52.5)
    assert data.tolerance_interval(3, {"kind": "exact", "value": 0}) == (3, 3)
    points = data.plottable_verdicts(
        [
            {"claim_id": "a", "verdict": "pass", "claimed": 2.0, "measured": 2.1, "allowed": [1.7, 2.3], "metric": "m"},
            {
                "claim_id": "b",
                "verdict": "fail",
                "claimed": [1, 2],
                "measured": [1.5, 3.0],
                "metric": "m",
                "tolerance": {"kind": "relative", "value": 0.1},
            },
            {"claim_id": "c", "verdict": "unsupported", "claimed": "text", "measured": None, "metric": "m"},
        ]
    )
    assert [(p["claim"], p["claimed"], p["band"]) for p in points] == [
        ("a", 2.0, (1.7, 2.3)),
        ("b", 1.0, pytest.approx((0.9, 1.1))),
        ("b", 2.0, pytest.approx((1.8, 2.2))),
    ]


def test_not_ok_groups_put_failures_first() -> None:
    rows = [
        {"model": "m", "path": "p", "device": "cuda", "batch_size": 1, "status": "skipped", "reason": "no GPU"},
        {"model": "m", "path": "q", "device": "cuda", "batch_size": 1, "status": "skipped", "reason": "no GPU"},
        {"model": "m", "path": "r", "device": "cpu", "batch_size": 1, "status": "failed", "reason": "boom"},
    ]
    groups = data.group_not_ok(rows)
    assert [(g["status"], len(g["cells"])) for g in groups] == [("failed", 1), ("skipped", 2)]


def test_markdown_cells_and_numbers() -> None:
    assert cell_text("a|b\nc") == "a\\|b c"
    assert cell_text("<class 'X'> & y") == "&lt;class 'X'&gt; &amp; y"
    assert num(1234.5678) == "1235" and num(0.000123) == "1.23e-04" and num(123456.0) == "123,456"


# ---------------------------------------------------------------- the committed reference run

REFERENCE = Path(__file__).resolve().parents[1] / "results" / "reference" / "cpu-intel-xeon-2core"


@pytest.mark.skipif(not (REFERENCE / "verdicts.json").is_file(), reason="no committed reference run")
def test_reference_report_fits_a_page(tmp_path: Path) -> None:
    res = build_report(REFERENCE, tmp_path / "r", REFERENCE / "verdicts.json", REFERENCE / "findings.json")
    text = res.report.read_text()
    assert len(text.splitlines()) < 400, len(text.splitlines())
    verdicts = json.loads((REFERENCE / "verdicts.json").read_text())["verdicts"]
    for v in verdicts:
        if v["verdict"] in ("fail", "inconclusive"):
            assert f"`{v['claim_id']}`" in text  # every fail and inconclusive on the page
    assert "need a CUDA GPU: run `make reproduce DEVICES=cuda` on one" in text
    details = res.details.read_text()
    assert all(f"`{v['claim_id']}`" in details for v in verdicts)  # every verdict in the companion
    findings = json.loads((REFERENCE / "findings.json").read_text())["findings"]
    assert all(f"`{f['rule']}`" in details for f in findings)
    _assert_links_resolve(res.report)
    _assert_links_resolve(res.details)
