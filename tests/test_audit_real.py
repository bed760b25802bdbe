"""audit on the repository's own expected/: the defects a careful reviewer finds in the five seed
files must be among the findings, no rule may crash, and the JSON must match its schema.

These track the transcription in expected/: if a claim they rely on is renamed, the test says
which finding went missing rather than passing silently.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kit import documents
from kit.claims.audit import Study, counts, findings_document, run_audit
from kit.claims.load import load_claims

EXPECTED = Path(__file__).resolve().parents[1] / "expected"


@pytest.fixture(scope="module")
def audited():
    # the committed claims ship with the kit: their absence is a broken checkout, not a skip
    assert sorted(EXPECTED.glob("*.json")), f"no claim files in {EXPECTED}"
    claims = load_claims(EXPECTED)
    return Study.from_input(claims), run_audit(claims)


def _has(findings, rule: str, *words: str) -> bool:
    return any(f.rule == rule and all(w in f.message + " " + f.evidence for w in words) for f in findings)


def test_no_rule_crashes_and_json_is_valid(audited) -> None:
    study, findings = audited
    assert not [f.message for f in findings if f.kind == "error"]
    assert documents.problem(findings_document(findings, study, str(EXPECTED)), "findings") is None
    assert counts(findings)["error"] > 0  # the seeds are not clean


@pytest.mark.parametrize(
    ("rule", "words"),
    [
        ("stats.std", ("0.56",)),  # FP16 speedup std: rows give 0.52 (population) / 0.53 (sample)
        ("stats.range", ("35.4",)),  # FP16 memory reduction range vs the 15.2% of MobileViT-XXS
        ("stats.range", ("48.2",)),  # INT8 range vs 18.83%
        ("stats.range", ("56.73", "59.48")),  # latency range max is BEiT-L NF4
        ("stats.bounds", ("70-75",)),  # "INT8 70-75% across all model sizes"
        ("stats.mixed_paths", ("torch-fp16", "bnb-int8")),  # category "avg speedup" pools precisions
        ("consistency.category_threshold", ("<25M",)),  # Edge <25M with 6 models / with DeiT-B 87M
        ("consistency.model_list", ("14",)),  # 002 lists 14 of 16 models
        ("consistency.cell_values", ("95.31",)),  # vit-base-224 INT8 memory 95.31 vs 94.95
        (
            "physics.nf4_vs_int8",
            ("beit-large-2021", "300.28"),
        ),  # NF4 above INT8 (the identical rows: indistinguishable)
        ("physics.model_size", ("86.4",)),  # 004: 86.4 MB for 86.6M FP32 parameters
        ("physics.architecture", ("14",)),  # DINOv2 is /14, not /16
        ("physics.param_count", ("vit-base-patch32",)),
        ("method.device_support", ("torch-int8-dynamic",)),  # quantize_dynamic on a T4
        ("method.label_conflict", ("quantize_dynamic",)),
        ("method.indistinguishable", ("bnb-nf4", "14 of 16")),  # NF4 == INT8 footprints
        ("stats.bounds", ("3 of 4", "1.96", "stated in 2 places")),  # '2x+' on 300M+ models: only ViT-H
        ("stats.bounds", ("66-75", "3 of 16")),  # a band of rounded ends: 65.99 prints as 66, inside
        ("stats.words_vs_numbers", ("viability", "0.13-0.34x")),  # edge INT8 is 3-7x slower
        ("stats.words_vs_numbers", ("universality", "7 of 16")),  # 'universal benefits' of FP16
        ("stats.words_vs_numbers", ("leadership", "0.98x")),  # a 'Leader' slower than FP32
        ("stats.words_vs_numbers", ("gain", "0.88-0.96x")),  # 'Conservative FP16 gains'
        ("stats.class_claim", ("2.12", "5 of its 6")),  # '86M models hit 2.12x'
        ("stats.ranked_order", ("beit-large-2021 (74.2829)",)),  # BEiT-L ranked 4th, 2nd by value
        ("consistency.row_pairs", ("bnb-int8 speedup 0.37", "memory_reduction_pct 72")),  # FP16 speed + INT8 memory
        ("physics.peak_vs_published_params", ("1,165.53", "1,169.13", "307M")),
        ("physics.pairwise_weights", ("deit-base-distilled-384-edge", "vit-base-384-production", "0.01 MB")),
        ("physics.shared_param_count", ("6 distinct models", "86M")),
        ("arith.stated_total", ("449,280", "500,000")),  # the cost table sums to 449,280/year
        ("arith.savings_vs_speedup", ("40-60%", "2.5x", "1.3288x")),
        ("method.deployment_target", ("mobilevit-xxs-edge", "mobile")),
        ("provenance.escape_sequences", ("25",)),
        ("method.calibration_without_method", ("recalibration", "torch-int8-dynamic")),
        ("provenance.epoch_date", ("2025-06-20 22:05:32",)),
        ("provenance.complete_table", ("10 of 16", "6 of 16")),
        ("provenance.complete_table", ("8 of 16",)),
        ("method.row_label", ("32",)),  # "Bitsandbytes Int8 Success: 32.0 models"
        ("provenance.version_compat", ("3.12", "2.1")),
        ("provenance.dates", ("June 2024", "2025-06-20")),
        ("provenance.row_count", ("66",)),
        ("placeholders.constant_metric", ("0.85",)),
    ],
)
def test_reviewer_findings_are_caught(audited, rule: str, words: tuple[str, ...]) -> None:
    _study, findings = audited
    assert _has(findings, rule, *words), f"missing {rule} {words}: " + "; ".join(
        f.message for f in findings if f.rule == rule
    )


@pytest.mark.parametrize(
    "holds",
    [
        ("arith.speedup", ""),  # every published speedup follows from its latencies (2.50 = 25.59/10.24)
        ("arith.memory_reduction", ""),
        ("arith.throughput", ""),
        ("physics.roofline", ""),  # ViT-H FP32 334 GFLOP in 25.59 ms = 13 TFLOP/s < 44 peak
        ("physics.peak_vs_weights", ""),  # fits once 'MB' is read as MiB
    ],
)
def test_what_holds_is_not_flagged(audited, holds: tuple[str, str]) -> None:
    _study, findings = audited
    assert not [f.message for f in findings if f.rule == holds[0]]


def test_the_full_audit_of_expected_runs_in_seconds() -> None:
    import time

    claims = load_claims(EXPECTED)
    t0 = time.perf_counter()
    run_audit(claims)
    assert time.perf_counter() - t0 < 20.0  # ~1-2 s on two shared cores; generous for CI
