"""validate over result sets from several machines: a verdict per machine, a summary, one overall verdict.

Three machines of synthetic documents: an RTX 4070 Ti SUPER (the study's GPU), an H100 and a
CPU-only box. The speedup of ViT-H fp16 holds on the RTX and fails on the H100; its latency is
hardware-bound, so it is judged on the RTX only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import pytest
from claims_factory import H100, RTX, not_ok_result, ok_result
from click.testing import CliRunner
from support.transcribe_check import STUDY_IDS

from kit.claims.load import ClaimSet, default_expected_dir, load_claims
from kit.claims.validate import (
    Verdict,
    machine_list,
    overall_verdict,
    summarize,
    validate,
    verdict_document,
    verdicts_problem,
)
from kit.commands import claims as commands

HUGE = "vit-huge-patch14-2020"
DINO = "dinov2-base-2023"
EPYC = "AMD EPYC 7763 64-Core Processor"
T4 = "Tesla T4"
SPEEDUP = "001.speedup.vit-huge-patch14-2020.fp16"  # 2.5x ±15%, relative
LAT = "001.latency.vit-huge-patch14-2020.fp16"  # 10.24 ms ±10%, hardware-bound on the RTX 4070 Ti SUPER
CPU_CLAIM = "004.perf.latency.improvement"  # 36.6 % ±9.5 pp, relative, measured on cpu
RTX_COL, H100_COL = "RTX 4070 Ti SUPER (cuda)", "H100 80GB HBM3 (cuda)"


@pytest.fixture(scope="module")
def claims() -> ClaimSet:
    return load_claims(default_expected_dir())


def rtx_docs() -> list[dict[str, Any]]:
    return [
        ok_result(HUGE, "torch-fp32", latency_ms=25.59, gpu=RTX),
        ok_result(HUGE, "torch-fp16", latency_ms=10.24, gpu=RTX),
    ]


def h100_docs() -> list[dict[str, Any]]:
    # speedup 25.59 / 20 = 1.28x: outside 2.5x ±15%
    return [
        ok_result(HUGE, "torch-fp32", latency_ms=25.59, gpu=H100),
        ok_result(HUGE, "torch-fp16", latency_ms=20.0, gpu=H100),
    ]


def cpu_docs() -> list[dict[str, Any]]:
    return [
        ok_result(DINO, "torch-fp32", device="cpu", latency_ms=45.0, peak_mb=342.0, gpu=None, cpu=EPYC),
        ok_result(DINO, "torch-int8-dynamic", device="cpu", latency_ms=29.0, peak_mb=127.0, gpu=None, cpu=EPYC),
    ]


def three_machines() -> list[dict[str, Any]]:
    return [*rtx_docs(), *h100_docs(), *cpu_docs()]


def verdict_of(claims: ClaimSet, claim_id: str, docs: list[dict[str, Any]]) -> Verdict:
    (verdict,) = validate([claims.by_id()[claim_id]], docs)
    return verdict


def by_machine(v: Verdict) -> dict[str, str]:
    return {e["machine"]: e["verdict"] for e in v.per_machine}


# ============================================================================ per machine


def test_a_relative_claim_that_fails_on_one_gpu_fails_overall(claims: ClaimSet) -> None:
    v = verdict_of(claims, SPEEDUP, three_machines())
    assert v.verdict == "fail"
    assert v.summary == "holds on 1 of 2 GPUs (fails on H100 80GB HBM3)"
    assert by_machine(v) == {f"{RTX} (cuda)": "pass", f"{H100} (cuda)": "fail"}  # the CPU box has no cuda cells
    # the top-level numbers are those of the machine it failed on
    assert v.measured == pytest.approx(25.59 / 20.0) and H100 in v.reason and v.hardware["ours"] == f"{H100} (cuda)"
    rtx = next(e for e in v.per_machine if e["machine"] == f"{RTX} (cuda)")
    assert rtx["measured"] == pytest.approx(25.59 / 10.24) and "within" in rtx["reason"]


def test_a_hardware_bound_claim_is_judged_only_on_the_matching_gpu(claims: ClaimSet) -> None:
    v = verdict_of(claims, LAT, three_machines())
    assert v.verdict == "pass" and v.measured == 10.24
    assert by_machine(v) == {f"{RTX} (cuda)": "pass", f"{H100} (cuda)": "not-comparable"}
    assert v.summary == "holds on 1 of 1 GPU (not comparable on H100 80GB HBM3)"
    h100 = next(e for e in v.per_machine if e["machine"] == f"{H100} (cuda)")
    assert h100["measured"] == 20.0 and "shown, not judged" in h100["reason"]
    # the matching GPU failing makes the claim fail, whatever the H100 says
    slow = [*three_machines(), ok_result(HUGE, "torch-fp16", latency_ms=13.0, gpu=RTX, finished="2025-02-01T00:00:00Z")]
    assert verdict_of(claims, LAT, slow).verdict == "fail"


def test_no_matching_gpu_is_not_comparable_on_every_machine(claims: ClaimSet) -> None:
    docs = [*h100_docs(), ok_result(HUGE, "torch-fp16", latency_ms=30.0, gpu=T4)]
    v = verdict_of(claims, LAT, docs)
    assert v.verdict == "not-comparable" and H100 in v.reason  # the machine that measured most, as before
    assert v.summary == "judged on none of 2 GPUs (not comparable on H100 80GB HBM3, T4)"


def test_inconclusive_when_one_machine_passes_and_another_is_within_noise(claims: ClaimSet) -> None:
    # 25.59 / 12.5 = 2.05x with a wide CI reaching across the lower edge 2.125
    noisy = [
        ok_result(HUGE, "torch-fp32", latency_ms=25.59, gpu=H100, cv=0.3, iterations=20),
        ok_result(HUGE, "torch-fp16", latency_ms=12.5, gpu=H100, cv=0.3, iterations=20),
    ]
    v = verdict_of(claims, SPEEDUP, [*rtx_docs(), *noisy])
    assert v.verdict == "inconclusive" and v.summary == "holds on 1 of 2 GPUs (inconclusive on H100 80GB HBM3)"
    assert overall_verdict(["pass", "not-comparable", "pass"]) == "pass"
    assert overall_verdict(["pass", "inconclusive", "fail"]) == "fail"
    assert overall_verdict(["not-measured", "not-comparable"]) is None


def test_a_machine_that_did_not_measure_the_cell_is_not_measured_there(claims: ClaimSet) -> None:
    t4 = [
        ok_result(HUGE, "torch-fp32", latency_ms=70.0, gpu=T4),
        not_ok_result(HUGE, "torch-fp16", "failed", "CUDA out of memory", gpu=T4),
    ]
    v = verdict_of(claims, SPEEDUP, [*rtx_docs(), *t4])
    assert v.verdict == "pass" and v.measured == pytest.approx(25.59 / 10.24)
    assert v.summary == "holds on 1 of 1 GPU (not measured on T4)"
    t4_entry = next(e for e in v.per_machine if e["machine"] == f"{T4} (cuda)")
    assert t4_entry["verdict"] == "not-measured" and t4_entry["measured"] is None
    assert "failed: CUDA out of memory" in t4_entry["reason"]
    # a box that only skipped its cuda cells (no GPU) is not a GPU that could have judged anything
    skipped = not_ok_result(HUGE, "torch-fp16", "skipped", "CUDA unavailable: no GPU", gpu=None, cpu=EPYC)
    assert verdict_of(claims, SPEEDUP, [*rtx_docs(), skipped]).per_machine == []


def _speedup_docs(ratio: float, gpu: str) -> list[dict[str, Any]]:
    return [
        doc
        for m in STUDY_IDS
        for doc in (
            ok_result(m, "torch-fp32", latency_ms=10.0 * ratio, gpu=gpu),
            ok_result(m, "torch-fp16", latency_ms=10.0, gpu=gpu),
        )
    ]


def test_aggregates_are_judged_per_machine_too(claims: ClaimSet) -> None:
    docs = [*_speedup_docs(1.33, RTX), *_speedup_docs(1.0, H100)]
    v = verdict_of(claims, "001.summary.fp16.speedup", docs)
    assert v.verdict == "fail" and v.measured == pytest.approx(1.0)
    assert v.summary == "holds on 1 of 2 GPUs (fails on H100 80GB HBM3)"
    # an H100 missing one of the 16 rows cannot compute the aggregate: not measured there
    partial = [d for d in _speedup_docs(1.0, H100) if d["cell"]["model"] != HUGE]
    v = verdict_of(claims, "001.summary.fp16.speedup", [*_speedup_docs(1.33, RTX), *partial])
    assert v.verdict == "pass" and v.summary == "holds on 1 of 1 GPU (not measured on H100 80GB HBM3)"
    entry = next(e for e in v.per_machine if e["verdict"] == "not-measured")
    assert "2 of the 32 cells" in entry["reason"] and HUGE in entry["reason"]


# ============================================================================ one machine


def test_single_machine_output_is_unchanged(claims: ClaimSet) -> None:
    subset = [c for c in claims if c.subject.model in (HUGE, DINO) or c.id == CPU_CLAIM]
    alone = validate(subset, rtx_docs())
    assert all(not v.per_machine and v.summary is None for v in alone)
    assert all("per_machine" not in v.to_dict() and "summary" not in v.to_dict() for v in alone)
    v = next(v for v in alone if v.claim_id == SPEEDUP)
    assert v.verdict == "pass" and v.measured == pytest.approx(25.59 / 10.24) and RTX in v.reason
    # claims only one machine could speak to come out exactly as if the others were not there
    mixed = {v.claim_id: v.to_dict() for v in validate(subset, three_machines())}
    for v in validate(subset, cpu_docs()):
        if v.claim_id.startswith("004."):
            assert mixed[v.claim_id] == v.to_dict(), v.claim_id
    assert mixed[CPU_CLAIM]["verdict"] == "pass"


# ==================================================================== JSON, CLI, report


def test_verdict_document_carries_machines_and_per_machine(claims: ClaimSet) -> None:
    docs = three_machines()
    verdicts = validate(claims, docs)
    doc = verdict_document(
        verdicts,
        summarize(verdicts),
        expected_dir="e",
        results_dir="r",
        rejected=[],
        generated_utc="2025-01-01T00:00:00Z",
        documents=len(docs),
        machines=machine_list(docs),
    )
    assert verdicts_problem(doc) is None
    assert [(m["name"], m["device"], m["documents"]) for m in doc["machines"]] == [
        (EPYC, "cpu", 2),
        (RTX, "cuda", 2),
        (H100, "cuda", 2),
    ]
    speedup = next(v for v in doc["verdicts"] if v["claim_id"] == SPEEDUP)
    assert speedup["summary"].startswith("holds on 1 of 2") and len(speedup["per_machine"]) == 2
    # files written before per-machine verdicts (no machines, per_machine, summary) still validate
    old = json.loads(json.dumps(doc))
    del old["machines"]
    for v in old["verdicts"]:
        v.pop("per_machine", None)
        v.pop("summary", None)
    assert verdicts_problem(old) is None
    broken = json.loads(json.dumps(doc))
    at = next(i for i, v in enumerate(broken["verdicts"]) if v["claim_id"] == SPEEDUP)
    broken["verdicts"][at].pop("summary")
    # per_machine comes with its summary
    assert verdicts_problem(broken) == (
        f"at #/verdicts/{at}: 'summary' is a dependency of 'per_machine' (rule: dependentRequired)"
    )


def _write_merged(root: Path, docs: list[dict[str, Any]]) -> None:
    """The layout `qkit merge` writes: <root>/<machine-tag>/cells/..."""
    from kit.results.store import write_result
    from kit.run.merge import machine_tag_of

    for doc in docs:
        write_result(root / machine_tag_of(doc), doc)


@pytest.fixture
def small_expected(tmp_path: Path) -> Path:
    """001's claims about ViT-H and all of 004: quick to load, and both GPU and CPU claims."""
    out = tmp_path / "expected"
    out.mkdir()
    for src in sorted(default_expected_dir().glob("00[14]_*.json")):
        doc = json.loads(src.read_text(encoding="utf-8"))
        if src.name.startswith("001_"):
            doc["claims"] = [c for c in doc["claims"] if c["subject"].get("model") == HUGE]
        (out / src.name).write_text(json.dumps(doc), encoding="utf-8")
    return out


@pytest.fixture
def merged(tmp_path: Path, small_expected: Path) -> tuple[Path, Path, Any]:
    res, out = tmp_path / "merged", tmp_path / "merged" / "verdicts.json"
    _write_merged(res, three_machines())
    group = click.Group()
    group.add_command(commands.validate)
    result = CliRunner().invoke(
        group, ["validate", "--results", str(res), "--expected", str(small_expected), "--json", str(out)]
    )
    return res, out, result


def test_cli_over_merged_machines(merged: tuple[Path, Path, Any]) -> None:
    _res, out, result = merged
    assert result.exit_code == 1, result.output  # the speedup fails on the H100
    assert "machines: 3 (" in result.output and f"{H100} (cuda) 2/2" in result.output
    row = next(line for line in result.output.splitlines() if SPEEDUP in line)
    assert row.lstrip().startswith("fail") and "[holds on 1 of 2 GPUs (fails on H100 80GB HBM3)]" in row
    doc = json.loads(out.read_text())
    assert verdicts_problem(doc) is None and len(doc["machines"]) == 3
    assert next(v for v in doc["verdicts"] if v["claim_id"] == SPEEDUP)["verdict"] == "fail"


def test_report_has_a_claim_by_machine_table(merged: tuple[Path, Path, Any], tmp_path: Path) -> None:
    from kit.report.markdown import build_report

    res, out, _result = merged
    text = build_report(res, tmp_path / "report", verdicts_file=out).report.read_text()
    assert "### Across machines" in text
    header = next(line for line in text.splitlines() if line.startswith("| claim | overall |"))
    assert header == f"| claim | overall | {RTX_COL} | {H100_COL} | summary |"  # the CPU box judged nothing twice
    assert f"| `{SPEEDUP}` | fail | ✓ | ✗ | holds on 1 of 2 GPUs (fails on H100 80GB HBM3) |" in text
    assert f"| `{LAT}` |" in text  # in its verdict group ...
    table = text[text.index(header) : text.index("\n\n", text.index(header))]
    assert f"`{LAT}`" not in table  # ... but not in the matrix: judged on one GPU only
    # the verdict tables' "why" starts with the summary, then the numbers of the machine it failed on
    assert f"holds on 1 of 2 GPUs (fails on H100 80GB HBM3): measured 1.28 x on {H100} (cuda)" in text
    assert "these verdicts were computed on" not in text and "validate read" not in text


def test_one_machine_report_has_no_machine_table(tmp_path: Path, small_expected: Path) -> None:
    from kit.report.markdown import SideInput, section_machine_matrix

    verdicts = validate(load_claims(small_expected), rtx_docs())
    doc = verdict_document(
        verdicts,
        summarize(verdicts),
        expected_dir="e",
        results_dir="r",
        rejected=[],
        generated_utc="2025-01-01T00:00:00Z",
        documents=2,
        machines=machine_list(rtx_docs()),
    )
    side = SideInput("validate", tmp_path / "v.json", items=doc["verdicts"], raw=doc)
    assert section_machine_matrix(side) == ""


def test_machine_table_is_capped_with_a_note(tmp_path: Path) -> None:
    from kit.report import data
    from kit.report.markdown import SideInput, section_machine_matrix

    def verdict(i: int, overall: str) -> dict[str, Any]:
        return {
            "claim_id": f"c.{i:03d}",
            "verdict": overall,
            "summary": "holds on 1 of 2 GPUs",
            "per_machine": [
                {"machine": "NVIDIA A100 (cuda)", "verdict": "pass", "measured": 1, "reason": "r"},
                {"machine": "Tesla T4 (cuda)", "verdict": overall, "measured": 2, "reason": "r"},
            ],
        }

    items = [verdict(i, "fail" if i % 50 == 7 else "pass") for i in range(250)]
    items.append(
        {
            "claim_id": "one",
            "verdict": "pass",
            "summary": "holds on 1 of 1 GPU",
            "per_machine": [
                {"machine": "NVIDIA A100 (cuda)", "verdict": "pass", "measured": 1, "reason": "r"},
                {"machine": "Tesla T4 (cuda)", "verdict": "not-comparable", "measured": 2, "reason": "r"},
            ],
        }
    )
    matrix = data.machine_matrix(items, data.machines_named(None, items))
    assert matrix["total"] == 250 and len(matrix["rows"]) == data.MACHINE_ROWS
    assert matrix["machines"] == ["NVIDIA A100 (cuda)", "Tesla T4 (cuda)"]
    assert [r["verdict"] for r in matrix["rows"][:5]] == ["fail"] * 5  # failures first
    text = section_machine_matrix(SideInput("validate", tmp_path / "v.json", items=items, raw={"verdicts": items}))
    assert "250 claims were judged on two or more machines; the first 200 are shown" in text
    assert "| claim | overall | A100 (cuda) | T4 (cuda) | summary |" in text and "`one`" not in text
