"""validate: every claim gets a verdict with its numbers; the CLI's exit codes; accuracy helpers."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import numpy as np
import pytest
from claims_factory import CPU, H100, accuracy_doc, environment, not_ok_result, ok_result
from click.testing import CliRunner
from support.transcribe_check import STUDY_IDS

from kit.claims.accuracy import (
    AccuracyError,
    accuracy_document,
    accuracy_problem,
    count_hits,
    image_folder,
    label_index,
    load_image,
    preprocess_for,
    topk_hits,
    wilson_ci95,
    write_accuracy,
)
from kit.claims.load import ClaimSet, default_expected_dir, load_claims
from kit.claims.validate import (
    Verdict,
    load_accuracy_docs,
    same_hardware_name,
    screen_results,
    summarize,
    validate,
    verdict_document,
    verdicts_problem,
    version_matches,
)

HUGE = "vit-huge-patch14-2020"
DINO = "dinov2-base-2023"


@pytest.fixture(scope="module")
def claims() -> ClaimSet:
    return load_claims(default_expected_dir())


def verdict_of(claims: ClaimSet, claim_id: str, docs: list[dict[str, Any]], **kw: Any) -> Verdict:
    claim = claims.by_id()[claim_id]
    (verdict,) = validate([claim], docs, **kw)
    return verdict


# ================================================================ pass / fail / inconclusive

LAT = "001.latency.vit-huge-patch14-2020.fp16"  # 10.24 ms, ±10%, hardware-bound on the RTX 4070 Ti SUPER


def test_a_claim_passes_within_tolerance(claims: ClaimSet) -> None:
    v = verdict_of(claims, LAT, [ok_result(HUGE, "torch-fp16", latency_ms=10.5, cv=0.001)])
    assert v.verdict == "pass", v.reason
    assert v.measured == 10.5 and v.claimed == 10.24
    assert v.allowed == pytest.approx([9.216, 11.264])
    assert "within" in v.reason


def test_a_claim_fails_outside_tolerance_with_its_numbers(claims: ClaimSet) -> None:
    v = verdict_of(claims, LAT, [ok_result(HUGE, "torch-fp16", latency_ms=12.0, cv=0.001)])
    assert v.verdict == "fail"
    assert (v.measured, v.claimed) == (12.0, 10.24)
    assert v.deviation == pytest.approx(1.76) and v.deviation_relative == pytest.approx(0.171875)
    assert v.tolerance["kind"] == "relative" and v.tolerance["value"] == 0.10
    assert "12 ms" in v.reason and "10.24 ms" in v.reason and "outside" in v.reason


def test_inconclusive_when_the_ci_straddles_the_tolerance_edge(claims: ClaimSet) -> None:
    # mean 11.2 is inside [9.216, 11.264]; its CI 11.2 ± 1.96·2.24/√20 reaches past 11.264.
    v = verdict_of(claims, LAT, [ok_result(HUGE, "torch-fp16", latency_ms=11.2, cv=0.2, iterations=20)])
    assert v.verdict == "inconclusive", v.reason
    assert "straddles the tolerance edge 11.26" in v.reason and "CV 20.0%" in v.reason
    assert v.ci95[0] < 11.264 < v.ci95[1]


def test_a_tight_ci_outside_the_edge_is_a_fail_not_inconclusive(claims: ClaimSet) -> None:
    v = verdict_of(claims, LAT, [ok_result(HUGE, "torch-fp16", latency_ms=11.4, cv=0.001, iterations=1000)])
    assert v.verdict == "fail"


# ======================================================================== not-comparable


def test_hardware_bound_claim_on_other_hardware_is_not_comparable(claims: ClaimSet) -> None:
    v = verdict_of(claims, LAT, [ok_result(HUGE, "torch-fp16", latency_ms=4.1, gpu=H100)])
    assert v.verdict == "not-comparable"
    assert "NVIDIA RTX 4070 Ti SUPER" in v.reason and H100 in v.reason
    assert v.measured == 4.1 and v.hardware == {"claimed": "NVIDIA RTX 4070 Ti SUPER", "ours": f"{H100} (cuda)"}


def test_the_claimed_gpu_is_preferred_when_several_machines_measured(claims: ClaimSet) -> None:
    docs = [ok_result(HUGE, "torch-fp16", latency_ms=4.1, gpu=H100), ok_result(HUGE, "torch-fp16", latency_ms=10.3)]
    assert verdict_of(claims, LAT, docs).verdict == "pass"


def test_gpu_names_match_by_model_not_by_vendor_words() -> None:
    assert same_hardware_name("NVIDIA RTX 4070 Ti SUPER", "NVIDIA GeForce RTX 4070 Ti SUPER")
    assert same_hardware_name("NVIDIA T4", "Tesla T4")
    assert not same_hardware_name("NVIDIA RTX 4070 Ti SUPER", "NVIDIA GeForce RTX 4070 Ti")
    assert not same_hardware_name("NVIDIA H100", "NVIDIA H200")
    assert same_hardware_name("NVIDIA H100", "NVIDIA H100 80GB HBM3")


def test_model_matching_and_the_datasheet_lookup_answer_different_questions() -> None:
    """Why kit.hardware.gpus keeps two matchers: the datasheet tells H100 PCIe from SXM (other peaks),
    validate judges them as one model; validate matches GPUs and CPUs the datasheet does not list."""
    from kit.hardware.gpus import find_gpu

    assert same_hardware_name("NVIDIA H100 PCIe", "NVIDIA H100 80GB HBM3")
    assert find_gpu("NVIDIA H100 PCIe") != find_gpu("NVIDIA H100 80GB HBM3")
    assert same_hardware_name("NVIDIA A10", "NVIDIA A10") and find_gpu("NVIDIA A10") is None
    assert same_hardware_name("Intel(R) Xeon(R) Processor", "Intel Xeon Processor")


def test_hardware_bound_aggregate_on_other_hardware(claims: ClaimSet) -> None:
    docs = [
        ok_result(m, p, latency_ms=5.0, gpu=H100)
        for m in STUDY_IDS
        for p in ("torch-fp32", "torch-fp16", "bnb-int8", "bnb-nf4")
    ]
    v = verdict_of(claims, "000.ranges.latency.range", docs)
    assert v.verdict == "not-comparable" and H100 in v.reason and v.measured == [5.0, 5.0]


# ========================================================================== not-measured


def test_missing_cell_is_not_measured(claims: ClaimSet) -> None:
    v = verdict_of(claims, LAT, [])
    assert v.verdict == "not-measured" and "no result for vit-huge-patch14-2020 torch-fp16 on cuda" in v.reason


def test_skipped_cell_gives_its_reason(claims: ClaimSet) -> None:
    v = verdict_of(claims, LAT, [not_ok_result(HUGE, "torch-fp16", "skipped", "CUDA unavailable: no GPU")])
    assert v.verdict == "not-measured" and "skipped: CUDA unavailable: no GPU" in v.reason


def test_cuda_claim_with_cpu_results_only_is_not_measured(claims: ClaimSet) -> None:
    v = verdict_of(claims, LAT, [ok_result(HUGE, "torch-fp16", device="cpu", latency_ms=10.24, gpu=None)])
    assert v.verdict == "not-measured" and "measured on cpu only" in v.reason


def test_nan_in_a_result_is_not_measured_not_a_crash(claims: ClaimSet) -> None:
    doc = ok_result(HUGE, "torch-fp16")
    doc["latency"]["mean"] = float("nan")
    v = verdict_of(claims, LAT, [doc])
    assert v.verdict == "not-measured" and "latency.mean" in v.reason


# ============================================================================ relative


def test_speedup_is_recomputed_on_one_machine_whatever_the_gpu(claims: ClaimSet) -> None:
    docs = [
        ok_result(HUGE, "torch-fp32", latency_ms=25.59, gpu=H100),
        ok_result(HUGE, "torch-fp16", latency_ms=10.24, gpu=H100),
    ]
    v = verdict_of(claims, "001.speedup.vit-huge-patch14-2020.fp16", docs)
    assert v.verdict == "pass" and v.measured == pytest.approx(25.59 / 10.24)
    assert "ratio of means" in v.convention and "latency.mean" in v.convention and H100 in v.reason


def test_a_ratio_across_two_machines_is_not_measured(claims: ClaimSet) -> None:
    docs = [ok_result(HUGE, "torch-fp32", latency_ms=25.59, gpu=H100), ok_result(HUGE, "torch-fp16", latency_ms=10.24)]
    v = verdict_of(claims, "001.speedup.vit-huge-patch14-2020.fp16", docs)
    assert v.verdict == "not-measured" and "different machines" in v.reason


def test_memory_reduction(claims: ClaimSet) -> None:
    docs = [ok_result(HUGE, "torch-fp32", peak_mb=2420.56), ok_result(HUGE, "bnb-nf4", peak_mb=330.0)]
    v = verdict_of(claims, "001.arch.memory_reduction_pct.vit-huge-patch14-2020.int4_nf4", docs)
    assert v.verdict == "fail" and v.measured == pytest.approx(100 * (1 - 330 / 2420.56))
    assert v.tolerance == {"kind": "absolute", "value": 2.0, "reason": v.tolerance["reason"]}


def _speedup_docs(ratio: float, models: tuple[str, ...] = STUDY_IDS, gpu: str = H100) -> list[dict[str, Any]]:
    return [
        doc
        for m in models
        for doc in (
            ok_result(m, "torch-fp32", latency_ms=10.0 * ratio, gpu=gpu),
            ok_result(m, "torch-fp16", latency_ms=10.0, gpu=gpu),
        )
    ]


def test_aggregate_is_recomputed_from_our_rows(claims: ClaimSet) -> None:
    v = verdict_of(claims, "001.summary.fp16.speedup", _speedup_docs(1.33))
    assert v.verdict == "pass" and v.measured == pytest.approx(1.33)
    assert "mean over the 16 models" in v.convention


def test_aggregate_with_a_missing_row_is_not_measured(claims: ClaimSet) -> None:
    v = verdict_of(claims, "001.summary.fp16.speedup", _speedup_docs(1.33, STUDY_IDS[1:]))
    assert v.verdict == "not-measured" and "1 of the 16 rows" in v.reason and HUGE in v.reason


def test_leader_and_top_lists(claims: ClaimSet) -> None:
    newer = "2025-02-01T00:00:00Z"
    docs = [*_speedup_docs(1.0), ok_result(HUGE, "torch-fp16", latency_ms=4.0, gpu=H100, finished=newer)]
    docs += [ok_result(m, p, latency_ms=50.0, gpu=H100) for m in STUDY_IDS for p in ("bnb-int8", "bnb-nf4")]
    assert verdict_of(claims, "001.leaders.foundation_transformer", docs).verdict == "pass"
    docs.append(
        ok_result("vit-large-patch16-2020", "torch-fp16", latency_ms=2.0, gpu=H100, finished="2025-02-01T00:00:00Z")
    )
    v = verdict_of(claims, "001.leaders.foundation_transformer", docs)
    assert v.verdict == "fail" and v.measured == "vit-large-patch16-2020"
    top = verdict_of(claims, "000.top_fp16_speedup.list", docs)
    # ranks 3-5 are ties at 1.0x: which two of them make the top 4 is noise, not a finding
    assert top.verdict == "inconclusive" and "within noise" in top.reason and "vit-large-patch16-2020" in top.measured


def test_newest_document_of_a_cell_wins(claims: ClaimSet) -> None:
    docs = [
        ok_result(HUGE, "torch-fp16", latency_ms=20.0, finished="2025-01-01T00:00:00Z"),
        ok_result(HUGE, "torch-fp16", latency_ms=10.3, finished="2025-03-01T00:00:00Z"),
    ]
    assert verdict_of(claims, LAT, docs).verdict == "pass"


# =========================================================================== portable


def test_parameters_are_compared_on_any_hardware(claims: ClaimSet) -> None:
    v = verdict_of(
        claims,
        "003.selection.vit-base-patch32-specialized.parameters",
        [ok_result("vit-base-patch32-specialized", "torch-fp32", parameters=88_045_824, gpu=H100)],
    )
    assert v.verdict == "fail" and v.measured == 88_045_824 and v.hardware is None


def test_dynamic_int8_claims_of_004(claims: ClaimSet) -> None:
    cpu = [
        ok_result(DINO, "torch-fp32", device="cpu", latency_ms=45.0, peak_mb=342.0, gpu=None),
        ok_result(DINO, "torch-int8-dynamic", device="cpu", latency_ms=29.0, peak_mb=127.0, gpu=None),
    ]
    lat = verdict_of(claims, "004.perf.latency.quantized", cpu)
    assert lat.verdict == "not-comparable" and "NVIDIA T4" in lat.reason and CPU in lat.reason
    assert "CPU kernels only" in lat.reason
    imp = verdict_of(claims, "004.perf.latency.improvement", cpu)
    assert imp.verdict == "pass" and imp.measured == pytest.approx(100 * (1 - 29 / 45))


def test_accuracy_claims_need_accuracy_documents(claims: ClaimSet) -> None:
    v = verdict_of(claims, "004.accuracy.top1.quantized", [])
    assert v.verdict == "not-measured" and "qkit accuracy" in v.reason
    acc = [accuracy_doc(DINO, "torch-fp32", 81.2, 95.5), accuracy_doc(DINO, "torch-int8-dynamic", 80.8, 95.3)]
    assert verdict_of(claims, "004.accuracy.top1.original", [], accuracy=acc).verdict == "pass"
    delta = verdict_of(claims, "004.accuracy.top1.difference", [], accuracy=acc)
    assert delta.verdict == "pass" and delta.measured == pytest.approx(-0.4) and delta.ci95 is None
    assert verdict_of(claims, "004.findings.top1_within_0_3", [], accuracy=acc).verdict == "pass"


def test_unsupported_claims(claims: ClaimSet) -> None:
    v = verdict_of(claims, "001.arch.simulated_accuracy.vit-huge-patch14-2020.fp16", [ok_result(HUGE, "torch-fp16")])
    assert v.verdict == "unsupported" and "constant 0.85" in v.reason
    assert verdict_of(claims, "000.columns.stability_score", []).verdict == "unsupported"


def test_versions_and_hardware_against_our_environment(claims: ClaimSet) -> None:
    same = [ok_result(HUGE, "torch-fp16")]
    assert verdict_of(claims, "000.software.pytorch", same).verdict == "pass"
    assert verdict_of(claims, "000.hardware.gpu", same).verdict == "pass"
    other = [ok_result(HUGE, "torch-fp16", gpu=H100, env=environment(H100, torch="2.5.1+cu124"))]
    v = verdict_of(claims, "000.software.pytorch", other)
    assert v.verdict == "not-comparable" and "2.5.1+cu124" in v.reason
    assert verdict_of(claims, "000.hardware.gpu", other).verdict == "not-comparable"
    assert version_matches("3.8+", "3.11.7") and not version_matches("3.12", "3.11.7")
    assert version_matches("2.1.0", "2.1.0+cu121") and not version_matches("2.1.0", "2.1.01")


# ====================================================================== whole-set checks


def test_every_claim_gets_exactly_one_verdict_and_the_document_is_schema_valid(claims: ClaimSet) -> None:
    docs = [*_speedup_docs(1.3), not_ok_result(HUGE, "bnb-nf4", "failed", "OOM")]
    verdicts = validate(claims, docs)
    assert [v.claim_id for v in verdicts] == [c.id for c in claims]
    assert not [v for v in verdicts if "internal error" in v.reason]
    summary = summarize(verdicts)
    assert summary.total == len(claims) and sum(summary.by_verdict.values()) == len(claims)
    doc = verdict_document(
        verdicts,
        summary,
        expected_dir="e",
        results_dir="r",
        rejected=[("x.json", "bad")],
        generated_utc="2025-01-01T00:00:00Z",
        documents=len(docs) + 1,
    )
    assert verdicts_problem(doc) is None
    assert summary.exit_code == (1 if summary.by_verdict["fail"] else 0)


def test_screening_rejects_bad_documents_by_name() -> None:
    good = ok_result(HUGE, "torch-fp16")
    bad = {**good, "status": "maybe"}
    screened = screen_results([good, bad, "text", accuracy_doc(DINO, "torch-fp32", 80, 95)], ["a", "b", "c", "d"])
    assert len(screened.results) == 1 and len(screened.accuracy) == 1
    assert [name for name, _ in screened.rejected] == ["b", "c"]
    assert "#/status" in screened.rejected[0][1]


# ================================================================== the kit's own failures

SUBSET_PREFIXES = ("000.", "001.")


@pytest.mark.parametrize(
    ("judge_name", "claim_id"),
    [("judge_cell", LAT), ("judge_aggregate", "001.summary.fp16.speedup"), ("judge_study", "000.software.pytorch")],
)
def test_a_bug_while_judging_one_claim_is_an_error_verdict_and_the_rest_are_judged(
    claims: ClaimSet, monkeypatch: pytest.MonkeyPatch, judge_name: str, claim_id: str
) -> None:
    from kit.claims.validate import judge as judging

    subset = [c for c in claims if c.id.startswith(SUBSET_PREFIXES)]
    docs = [*_speedup_docs(1.3), ok_result(HUGE, "torch-fp16")]
    clean = validate(subset, docs)
    before = [v.to_dict() for v in clean]
    real = getattr(judging, judge_name)

    def buggy(claim: Any, index: Any) -> Any:
        if claim.id == claim_id:
            raise ZeroDivisionError("float division by zero")
        return real(claim, index)

    monkeypatch.setattr(judging, judge_name, buggy)
    after = validate(subset, docs)
    (error,) = [v for v in after if v.verdict == "error"]
    assert error.claim_id == claim_id
    assert error.reason == f"internal error while judging {claim_id}: ZeroDivisionError: float division by zero"
    assert [v.to_dict() for v in after if v.claim_id != claim_id] == [v for v in before if v["claim_id"] != claim_id]
    summary = summarize(after)
    # an error outranks a failed claim: exit 3, and the summary line names it
    assert summary.errors == 1 and summary.failed > 0 and summary.exit_code == 3
    assert summary.line().endswith(", 1 error")
    assert "error" not in summarize(clean).line() and summarize(clean).exit_code == 1


def test_cli_exit_3_when_the_kit_fails_while_judging(
    tmp_path: Path, small_expected: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import kit.cli
    from kit.claims.validate import judge as judging

    real = judging.judge_cell

    def buggy(claim: Any, index: Any) -> Any:
        if claim.id == LAT:
            raise KeyError("latency")
        return real(claim, index)

    monkeypatch.setattr(judging, "judge_cell", buggy)
    for doc in _huge_docs(10.24):
        _write_doc(tmp_path / "res", doc)
    out = tmp_path / "v.json"
    args = ["validate", "--results", str(tmp_path / "res"), "--expected", str(small_expected), "--json", str(out)]
    result = CliRunner().invoke(kit.cli.main, args)
    assert result.exit_code == 3, result.output
    assert f"qkit: internal error while judging {LAT}: KeyError: 'latency'" in result.stderr
    doc = json.loads(out.read_text())
    assert verdicts_problem(doc) is None
    summary = doc["summary"]
    assert (summary["exit_code"], summary["errors"], summary["by_verdict"]["error"]) == (3, 1, 1)
    assert summary["by_verdict"]["pass"] > 20  # every other claim was still judged
    (error,) = [v for v in doc["verdicts"] if v["verdict"] == "error"]
    assert error["claim_id"] == LAT and error["reason"].endswith("KeyError: 'latency'")


def test_cli_exit_3_and_no_file_when_the_verdict_document_breaks_its_schema(
    tmp_path: Path, small_expected: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import kit.cli
    from kit.commands import claims as commands

    real = commands.verdict_document
    monkeypatch.setattr(commands, "verdict_document", lambda *a, **kw: {**real(*a, **kw), "kind": "oops"})
    for doc in _huge_docs(10.24):
        _write_doc(tmp_path / "res", doc)
    out = tmp_path / "v.json"
    args = ["validate", "--results", str(tmp_path / "res"), "--expected", str(small_expected), "--json", str(out)]
    result = CliRunner().invoke(kit.cli.main, args)
    assert result.exit_code == 3, result.output
    assert "internal error: not a valid verdicts document: at #/kind: 'qkit-verdicts' was expected" in result.stderr
    assert not out.exists()


VALIDATE_DIR = Path(__file__).resolve().parents[1] / "kit" / "claims" / "validate"
SUBMODULES = sorted(p.stem for p in VALIDATE_DIR.glob("*.py") if p.stem != "__init__")


def test_validate_is_a_package_of_small_modules() -> None:
    assert not (VALIDATE_DIR.parent / "validate.py").exists()
    assert {"index", "metrics", "judge", "machines", "document"} <= set(SUBMODULES)


@pytest.mark.parametrize("name", SUBMODULES)
def test_each_validate_module_imports_alone(name: str) -> None:
    # A bare package object stands in for kit.claims.validate, so its __init__ (which imports every
    # module in a working order) cannot hide a module that only imports after another one.
    code = "\n".join(
        [
            "import importlib, sys, types",
            "import kit.claims",
            "pkg = types.ModuleType('kit.claims.validate')",
            f"pkg.__path__ = [{str(VALIDATE_DIR)!r}]",
            "sys.modules['kit.claims.validate'] = pkg",
            f"importlib.import_module('kit.claims.validate.{name}')",
        ]
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr


def _package_imports(file: Path) -> set[str]:
    """The kit.claims.validate modules ``file`` imports, at any level (function-level ones included)."""
    found = set()
    for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("kit.claims.validate"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("kit.claims.validate"))
    return found


def test_no_import_cycles_inside_validate() -> None:
    graph = {}
    for name in SUBMODULES:
        imported = _package_imports(VALIDATE_DIR / f"{name}.py")
        assert "kit.claims.validate" not in imported, f"{name} imports the package that imports it"
        graph[name] = {m.rsplit(".", 1)[1] for m in imported}
    done: list[str] = []
    while len(done) < len(graph):  # peel off modules whose imports are all done: stalls on a cycle
        ready = [m for m in graph if m not in done and graph[m] <= set(done)]
        assert ready, f"import cycle among {sorted(set(graph) - set(done))}"
        done.extend(sorted(ready))


# ==================================================================================== CLI


def _group() -> click.Group:
    # The real command group: it is what turns the library's BadInput into one line and exit 2.
    from kit.cli import main

    return main


def _write_doc(root: Path, doc: dict[str, Any]) -> Path:
    c = doc["cell"]
    file = root / "cells" / c["model"] / f"{c['path']}__{c['device']}__bs{c['batch_size']}.json"
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(json.dumps(doc))
    return file


@pytest.fixture
def small_expected(tmp_path: Path) -> Path:
    """001's claims about vit-huge only: fast to load, enough for exit codes."""
    src = next(default_expected_dir().glob("001_*.json"))
    doc = json.loads(src.read_text(encoding="utf-8"))
    doc["claims"] = [c for c in doc["claims"] if c["subject"].get("model") == HUGE]
    out = tmp_path / "expected"
    out.mkdir()
    (out / src.name).write_text(json.dumps(doc), encoding="utf-8")
    return out


def _huge_docs(fp16_latency: float) -> list[dict[str, Any]]:
    # The study's own vit-huge rows, so that every claim about it passes except what the test changes.
    rows = {
        "torch-fp32": (25.59, 2420.56),
        "torch-fp16": (fp16_latency, 1214.34),
        "bnb-int8": (56.14, 615.82),
        "bnb-nf4": (56.54, 615.82),
    }
    return [ok_result(HUGE, p, latency_ms=lat, peak_mb=peak, parameters=632_000_000) for p, (lat, peak) in rows.items()]


def test_cli_exit_0_when_no_claim_failed(tmp_path: Path, small_expected: Path) -> None:
    for doc in _huge_docs(10.24):
        _write_doc(tmp_path / "res", doc)
    out = tmp_path / "verdicts.json"
    result = CliRunner().invoke(
        _group(),
        [
            "validate",
            "--results",
            str(tmp_path / "res"),
            "--expected",
            str(small_expected),
            "--json",
            str(out),
            "--all",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "== portable" in result.output and "== relative" in result.output and "== hardware-bound" in result.output
    assert result.output.strip().splitlines()[-2].startswith("validate: ")
    doc = json.loads(out.read_text())
    assert verdicts_problem(doc) is None and doc["summary"]["failed"] == 0 and doc["summary"]["by_verdict"]["pass"] > 20


def test_cli_exit_1_when_a_claim_failed(tmp_path: Path, small_expected: Path) -> None:
    for doc in _huge_docs(20.0):
        _write_doc(tmp_path / "res", doc)
    result = CliRunner().invoke(
        _group(), ["validate", "--results", str(tmp_path / "res"), "--expected", str(small_expected), "--only", "fail"]
    )
    assert result.exit_code == 1, result.output
    assert "fail            001.latency.vit-huge-patch14-2020.fp16" in result.output


def test_cli_lists_corrupt_documents_and_validates_the_rest(tmp_path: Path, small_expected: Path) -> None:
    for doc in _huge_docs(10.24):
        _write_doc(tmp_path / "res", doc)
    broken = tmp_path / "res" / "cells" / HUGE / "torch-bf16__cuda__bs1.json"
    broken.write_text('{"schema_version": "1", "kind": "qkit-res')
    out = tmp_path / "v.json"
    result = CliRunner().invoke(
        _group(),
        ["validate", "--results", str(tmp_path / "res"), "--expected", str(small_expected), "--json", str(out)],
    )
    assert result.exit_code == 0, result.output
    assert f"rejected result document {broken}" in result.output
    doc = json.loads(out.read_text())
    assert doc["results"]["rejected"][0]["file"] == str(broken) and doc["summary"]["by_verdict"]["pass"] > 20


def test_cli_exit_2_on_a_malformed_expected_file(tmp_path: Path, small_expected: Path) -> None:
    file = next(small_expected.glob("*.json"))
    doc = json.loads(file.read_text())
    doc["claims"][3]["tolerance"]["kind"] = "loose"
    file.write_text(json.dumps(doc))
    (tmp_path / "res").mkdir()
    result = CliRunner().invoke(
        _group(), ["validate", "--results", str(tmp_path / "res"), "--expected", str(small_expected)]
    )
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert str(file) in lines[0] and "#/claims/3/tolerance/kind" in lines[0] and "(rule: enum)" in lines[0]


def test_cli_exit_2_on_a_missing_results_dir(tmp_path: Path, small_expected: Path) -> None:
    result = CliRunner().invoke(
        _group(), ["validate", "--results", str(tmp_path / "nope"), "--expected", str(small_expected)]
    )
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1


def test_cli_claims_lists_counts(small_expected: Path) -> None:
    result = CliRunner().invoke(_group(), ["claims", "--expected", str(small_expected)])
    assert result.exit_code == 0
    assert "001.latency.vit-huge-patch14-2020.fp16" in result.output
    assert result.output.strip().splitlines()[-1].split()[0] == "all"


def test_cli_accuracy_bad_input(tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["accuracy", "--model", DINO, "--dataset", str(tmp_path), "--out", str(tmp_path / "o")]
    missing = runner.invoke(_group(), [*args, "--weights", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "not a directory" in missing.output
    (tmp_path / "w").mkdir()
    no_config = runner.invoke(_group(), [*args, "--weights", str(tmp_path / "w")])
    assert no_config.exit_code == 2 and "config.json" in no_config.output


# ============================================================================== accuracy


def test_label_mapping_from_id2label() -> None:
    id2label = {"0": "tench, Tinca tinca", "1": "goldfish, Carassius auratus", "2": "great white shark"}
    assert label_index(["tench", "Goldfish", "great_white_shark"], id2label) == {
        "tench": 0,
        "Goldfish": 1,
        "great_white_shark": 2,
    }
    assert label_index(["0", "2"], {"0": "a", "1": "b", "2": "c"}) == {"0": 0, "2": 2}
    with pytest.raises(AccuracyError, match="1 class folder"):
        label_index(["tench", "n01440764"], id2label)


def test_topk_and_counting() -> None:
    logits = np.array([[0.1, 0.9, 0.0], [0.8, 0.05, 0.15], [0.2, 0.3, 0.5]], dtype=np.float32)
    labels = np.array([1, 2, 0])
    assert topk_hits(logits, labels, 1) == 1 and topk_hits(logits, labels, 2) == 2 and topk_hits(logits, labels, 5) == 3
    run = lambda x: np.eye(3, dtype=np.float32)[: len(x)]  # noqa: E731
    data = iter([(np.zeros((3, 3, 2, 2), np.float32), np.array([0, 1, 2]))])
    assert count_hits(run, data, 3) == (3, 3, 3)
    with pytest.raises(AccuracyError, match="not a classifier"):
        count_hits(run, iter([(np.zeros((2, 3, 2, 2), np.float32), np.array([0, 1]))]), 1000)


def test_wilson_interval() -> None:
    lo, hi = wilson_ci95(8124, 10_000)
    assert 80.4 < lo < 81.24 < hi < 82.1
    assert wilson_ci95(0, 10)[0] == 0.0 and wilson_ci95(10, 10)[1] == 100.0


def test_image_folder_and_preprocessing(tmp_path: Path) -> None:
    from PIL import Image

    for cls in ("tench", "goldfish"):
        (tmp_path / "data" / cls).mkdir(parents=True)
        Image.new("RGB", (40, 30), (255, 0, 0)).save(tmp_path / "data" / cls / "a.png")
    items = image_folder(tmp_path / "data")
    assert [name for _, name in items] == ["goldfish", "tench"]
    prep = preprocess_for(tmp_path, 16, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    pixels = load_image(items[0][0], prep)
    assert pixels.shape == (3, 16, 16)
    assert pixels[0].mean() == pytest.approx(1.0) and pixels[1].mean() == pytest.approx(-1.0)
    (tmp_path / "empty" / "tench").mkdir(parents=True)
    with pytest.raises(AccuracyError, match="no images"):
        image_folder(tmp_path / "empty")


def test_accuracy_document_check() -> None:
    good = accuracy_doc(DINO, "torch-fp32", 81.0, 95.0)
    assert accuracy_problem(good) is None
    assert accuracy_problem({**good, "top1_pct": 181.0}) == (
        "at #/top1_pct: 181.0 is greater than the maximum of 100 (rule: maximum)"
    )
    assert accuracy_problem({**good, "status": "failed", "reason": "OOM"}) is None
    assert accuracy_problem({**good, "status": "failed", "reason": None}) == (
        "at #/reason: None is not of type 'string' (rule: type)"
    )
    no_images = {k: v for k, v in good.items() if k != "images"}
    assert accuracy_problem(no_images) == "at #: 'images' is a required property (rule: required)"
    assert accuracy_problem([]) == "at #: [] is not of type 'object' (rule: type)"


def _written_accuracy_docs() -> list[dict[str, Any]]:
    """What `qkit accuracy` writes: `accuracy_document` for an ok, a skipped and a failed path."""
    info = {
        "dir": "/data/val",
        "images_found": 6,
        "classes": 2,
        "labels": "class folders matched to config.json id2label",
        "preprocess": "resize to 8x8",
        "limit": None,
        "model_class": "MobileViTForImageClassification",
    }
    env = {"python": "3.12.0", "os": "Linux"}
    start = "2025-01-01T00:00:00Z"
    return [
        accuracy_document(DINO, "torch-fp32", "cpu", (5, 6, 6), info, "/w", env, start),
        accuracy_document(DINO, "bnb-int8", "cpu", None, info, "/w", env, start, reason="unavailable: CUDA only"),
        accuracy_document(DINO, "torch-int8-dynamic", "cpu", None, info, "/w", env, start, reason="OOM"),
    ]


def test_the_accuracy_schema_accepts_what_qkit_accuracy_writes_and_refuses_a_broken_one(tmp_path: Path) -> None:
    from kit import documents

    ok, skipped, failed = _written_accuracy_docs()
    assert (ok["status"], skipped["status"], failed["status"]) == ("ok", "skipped", "failed")
    for doc in (ok, skipped, failed):
        file = write_accuracy(tmp_path / "acc", doc)
        assert documents.read(file, "accuracy") == doc
    broken = {**ok, "top5_ci95": [97.0]}
    with pytest.raises(documents.DocumentError, match=r"at #/top5_ci95: \[97.0\] is too short \(rule: minItems\)"):
        write_accuracy(tmp_path / "broken", broken)
    assert not (tmp_path / "broken").exists() or not list((tmp_path / "broken").iterdir())
    # one broken file under the results is listed by name; the good ones are still read
    bad = tmp_path / "acc" / "x__torch-fp16__cpu.accuracy.json"
    bad.write_text(json.dumps({**ok, "path": "torch-fp16", "surprise": 1}))
    docs, names, refused = load_accuracy_docs(tmp_path / "acc")
    assert len(docs) == 3 and len(names) == 3
    assert refused == [
        (
            str(bad),
            "not a valid accuracy document: at #: Additional properties are not allowed ('surprise' was unexpected) "
            "(rule: additionalProperties)",
        )
    ]


def test_processor_settings_are_followed(tmp_path: Path) -> None:
    from PIL import Image

    (tmp_path / "preprocessor_config.json").write_text(
        json.dumps({"size": {"height": 8, "width": 8}, "do_normalize": False, "do_flip_channel_order": True})
    )
    prep = preprocess_for(tmp_path, 16, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert prep.resize_exact == (8, 8) and prep.mean == (0.0, 0.0, 0.0) and prep.flip_channels
    Image.new("RGB", (20, 10), (255, 0, 0)).save(tmp_path / "red.png")
    pixels = load_image(tmp_path / "red.png", prep)
    assert pixels.shape == (3, 8, 8) and pixels[2].mean() == pytest.approx(1.0) and pixels[0].mean() == 0.0


def test_a_backbone_spec_is_read_as_a_classifier() -> None:
    from kit.claims.accuracy import classifier_spec
    from kit.models.registry import get_model

    spec = classifier_spec(get_model(DINO))
    assert spec.model_class == "Dinov2ForImageClassification"
    assert (spec.head, spec.primary_output) == ("classifier", "logits")
    assert classifier_spec(get_model("mobilevit-xxs-edge")) == get_model("mobilevit-xxs-edge")


def test_accuracy_command_end_to_end(tmp_path: Path, small_expected: Path) -> None:
    """A tiny real checkpoint (MobileViT-XXS, random weights, default LABEL_i labels) and six images:
    the command writes one accuracy document per path, and validate reads them from the results dir."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from PIL import Image

    from kit.models.build import build_model
    from kit.models.registry import get_model

    model, _ = build_model(get_model("mobilevit-xxs-edge"), "random", seed=0)
    model.save_pretrained(tmp_path / "w", safe_serialization=True)
    rng = np.random.default_rng(0)
    for cls in ("LABEL_3", "LABEL_7"):
        (tmp_path / "data" / cls).mkdir(parents=True)
        for i in range(2):
            pixels = (rng.random((40, 50, 3)) * 255).astype("uint8")
            Image.fromarray(pixels).save(tmp_path / "data" / cls / f"{i}.png")
    out = tmp_path / "results" / "accuracy"
    args = [
        "accuracy",
        "--model",
        "mobilevit-xxs-edge",
        "--weights",
        str(tmp_path / "w"),
        "--dataset",
        str(tmp_path / "data"),
        "--paths",
        "torch-fp32",
        "--out",
        str(out),
        "--batch-size",
        "4",
    ]
    result = CliRunner().invoke(_group(), args)
    assert result.exit_code == 0, result.output
    (file,) = out.glob("*.accuracy.json")
    doc = json.loads(file.read_text())
    assert accuracy_problem(doc) is None and doc["images"] == 4 and 0 <= doc["top1_pct"] <= doc["top5_pct"] <= 100
    run = CliRunner().invoke(
        _group(), ["validate", "--results", str(tmp_path / "results"), "--expected", str(small_expected)]
    )
    assert run.exit_code == 0 and "1 accuracy documents" in run.output


# ---------------------------------------------------------------- what a reviewer reads (output formats)

REFERENCE_RUN = Path(__file__).resolve().parents[1] / "results" / "reference" / "cpu-intel-xeon-2core"
reference_only = pytest.mark.skipif(not (REFERENCE_RUN / "cells").is_dir(), reason="no committed reference run")


@pytest.fixture(scope="module")
def reference_outputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    if not (REFERENCE_RUN / "cells").is_dir():
        pytest.skip("no committed reference run")
    tmp = tmp_path_factory.mktemp("screen")
    runner = CliRunner(env={"COLUMNS": "160"})
    base = ["validate", "--results", str(REFERENCE_RUN)]
    out = {
        "screen": runner.invoke(_group(), [*base, "--json", str(tmp / "v.json")]),
        "all": runner.invoke(_group(), [*base, "--all"]),
        "json": runner.invoke(_group(), [*base, "--format", "json"]),
        "md": runner.invoke(_group(), [*base, "--format", "md"]),
        "file": tmp / "v.json",
    }
    return out


@reference_only
def test_validate_fits_one_screen_on_the_reference_run(reference_outputs: dict[str, Any]) -> None:
    res = reference_outputs["screen"]
    assert res.exit_code == 1, res.output  # exit codes unchanged: claims fail on the reference run
    lines = res.output.splitlines()
    assert len(lines) <= 60, len(lines)
    doc = json.loads(reference_outputs["file"].read_text())
    assert doc["summary"]["line"] in lines
    listed = [v for v in doc["verdicts"] if v["verdict"] in ("fail", "inconclusive", "error")]
    for v in listed:  # each fail and inconclusive on a line of its own, with claimed and measured
        line = next(x for x in lines if f" {v['claim_id']} " in x)
        assert line.lstrip().startswith(v["verdict"]) and "claimed" in line and "measured" in line
    assert any("need a CUDA GPU: run `make reproduce DEVICES=cuda` on one" in x for x in lines)
    assert any("need the checkpoint's weights and a labelled image folder: `qkit accuracy" in x for x in lines)
    assert lines[-1] == f"every verdict: {reference_outputs['file']} (or `qkit validate --all`)"
    # the groups of claims not judged add up to every unjudged verdict
    unjudged = sum(1 for v in doc["verdicts"] if v["verdict"] in ("not-measured", "not-comparable", "unsupported"))
    assert f"{unjudged} claims could not be judged here:" in lines


@reference_only
def test_every_verdict_with_all_and_in_the_json(reference_outputs: dict[str, Any]) -> None:
    doc = json.loads(reference_outputs["file"].read_text())
    full = reference_outputs["all"]
    assert full.exit_code == 1
    for v in doc["verdicts"]:
        assert f" {v['claim_id']} " in full.output
    printed = json.loads(reference_outputs["json"].output)
    assert verdicts_problem(printed) is None
    assert [v["claim_id"] for v in printed["verdicts"]] == [v["claim_id"] for v in doc["verdicts"]]
    assert reference_outputs["json"].exit_code == 1
    md = reference_outputs["md"].output
    assert md.startswith(f"**{doc['summary']['line']}**") and "| class |" in md
    assert all(f"`{v['claim_id']}`" in md for v in doc["verdicts"] if v["verdict"] == "fail")


def test_audit_fits_one_screen_and_all_lists_every_finding(tmp_path: Path) -> None:
    runner = CliRunner(env={"COLUMNS": "160"})
    res = runner.invoke(_group(), ["audit", "--json", str(tmp_path / "f.json")])
    assert res.exit_code in (0, 1), res.output
    doc = json.loads((tmp_path / "f.json").read_text())
    lines = res.output.splitlines()
    assert len(lines) <= 60, len(lines)
    assert any(x.startswith("audit: ") for x in lines)
    for f in doc["findings"]:  # each rule of an error or warning on a line, the notes' rules on one line
        assert any(f["rule"] in x for x in lines), f["rule"]
    full = runner.invoke(_group(), ["audit", "--all"])
    assert full.exit_code == res.exit_code
    assert all(f["message"][:40] in full.output.replace("\n", " ") or f["rule"] in full.output for f in doc["findings"])
    printed = json.loads(runner.invoke(_group(), ["audit", "--format", "json"]).output)
    assert len(printed["findings"]) == len(doc["findings"])


def test_unjudged_claims_are_grouped_by_what_would_judge_them() -> None:
    from kit.claims.validate.screen import blockers, screen

    def v(verdict: str, reason: str, metric: str = "latency_ms", **kw: Any) -> dict[str, Any]:
        return {"claim_id": f"x.{len(reason)}.{verdict}", "verdict": verdict, "reason": reason, "metric": metric, **kw}

    verdicts = [
        v("not-measured", "m torch-fp16 on cuda batch 1 was not measured (skipped: CUDA unavailable: CPU-only build)"),
        v("not-measured", "baseline: m torch-fp32 on cuda batch 1 was not measured (skipped: CUDA unavailable)"),
        v(
            "not-measured",
            "no accuracy result for m torch-fp32: run `qkit accuracy --model m --weights DIR --dataset DIR`",
        ),
        v("not-comparable", "hardware-bound: claimed on NVIDIA T4", hardware={"claimed": "NVIDIA T4", "ours": "CPU"}),
        v("not-comparable", "the study used torch 2.1.0; ours: 2.13", metric="software_version"),
        v("unsupported", "a label the study assigns, not a measurement"),
        v("pass", "within tolerance"),
    ]
    groups = {b.key: b for b in blockers(verdicts)}
    assert len(groups["cuda"].claims) == 2 and "make reproduce DEVICES=cuda" in groups["cuda"].line()
    assert "qkit accuracy --model m" in groups["accuracy"].line()
    assert "NVIDIA T4" in groups["hardware:NVIDIA T4"].line() and "docker-reproduce" in groups["stack"].line()
    assert list(groups)[-1] == "unsupported"  # what no run can judge comes last
    assert sum(len(b.claims) for b in groups.values()) == 6
    lines = screen(verdicts, summary_line="validate: 7 claims", verdict_file=None)
    assert "6 claims could not be judged here:" in lines and "no claim failed or was inconclusive" in lines
