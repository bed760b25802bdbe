"""expected/: the study's claims as data: complete, schema-checked, transcribed faithfully."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from collections import Counter
from pathlib import Path

import pytest
from claims_factory import published_results
from support.transcribe_check import STUDY_IDS, check_transcription

from kit.claims.load import ClaimsError, ClaimSet, default_expected_dir, load_claims, parse_claim_file
from kit.claims.validate import validate

REPO = Path(__file__).resolve().parents[1]
SEEDS = Path(os.environ.get("QKIT_SEEDS", REPO.parent / "shared" / "seeds"))
LABEL_PATH = {"fp32": "torch-fp32", "fp16": "torch-fp16", "int8_bitsandbytes": "bnb-int8", "int4_nf4": "bnb-nf4"}
needs_seeds = pytest.mark.skipif(not SEEDS.is_dir(), reason=f"seed files not found at {SEEDS} (set QKIT_SEEDS)")


@pytest.fixture(scope="module")
def claims() -> ClaimSet:
    return load_claims(default_expected_dir())


def _doc(name: str) -> dict:
    return json.loads(next((REPO / "expected").glob(f"{name}_*.json")).read_text(encoding="utf-8"))


# ------------------------------------------------------------------------------ coverage


def test_every_seed_file_contributes_claims(claims: ClaimSet) -> None:
    counts = claims.counts()
    assert len(claims.files) == 5
    for prefix in ("000", "001", "002", "003", "004"):
        name = next(n for n in counts if n.startswith(prefix))
        assert counts[name]["total"] >= 30, name
        assert counts[name]["total"] - counts[name]["unsupported"] >= 10, f"{name} has few checkable claims"


@needs_seeds
def test_every_seed_file_has_its_claim_file(claims: ClaimSet) -> None:
    assert sorted(p.name for p in SEEDS.glob("*.txt")) == sorted(f.source_file for f in claims.files)


def test_all_three_classes_are_used(claims: ClaimSet) -> None:
    assert set(Counter(c.comparability for c in claims)) == {"portable", "relative", "hardware-bound"}


@pytest.mark.parametrize(
    "metric", ["latency_ms", "speedup", "peak_memory_mb", "memory_reduction_pct", "parameters", "simulated_accuracy"]
)
def test_the_64_rows_are_all_there(claims: ClaimSet, metric: str) -> None:
    rows = {
        (c.subject.model, c.published_label)
        for c in claims
        if c.source_file.startswith("001") and c.id.startswith("001.arch.") and c.metric == metric
    }
    assert rows == {(m, label) for m in STUDY_IDS for label in LABEL_PATH}


def test_throughput_and_memory_tables_of_003(claims: ClaimSet) -> None:
    by_metric = Counter(c.metric for c in claims if c.source_file.startswith("003") and c.table_cell)
    assert by_metric["throughput_sps"] == 24 and by_metric["throughput_change_pct"] == 12
    assert by_metric["peak_memory_mb"] == 40 and by_metric["latency_ms"] == 64


def test_dinov2_dynamic_int8_table_of_004(claims: ClaimSet) -> None:
    metrics = {c.metric for c in claims if c.source_file.startswith("004") and c.subject.model == "dinov2-base-2023"}
    assert {
        "latency_ms",
        "inference_improvement_pct",
        "peak_memory_mb",
        "memory_reduction_pct",
        "model_size_mb",
        "size_reduction_pct",
        "top1_accuracy_pct",
        "top5_accuracy_pct",
        "top1_accuracy_delta_pp",
    } <= metrics


def test_same_figure_in_several_files_is_a_claim_in_each(claims: ClaimSet) -> None:
    # "FP16 average speedup 1.33x" is published in 000, 001 and 003: each file keeps its own claim.
    files = {
        c.source_file[:3] for c in claims if c.subject.aggregate == "mean" and c.metric == "speedup" and c.value == 1.33
    }
    assert files == {"000", "001", "003"}


# ------------------------------------------------------------------------------- mapping


def test_precision_labels_map_to_kit_paths(claims: ClaimSet) -> None:
    for c in claims:
        if c.subject.kind == "cell" and c.published_label in LABEL_PATH:
            assert c.kit_path == LABEL_PATH[c.published_label], c.id
            assert c.device == "cuda", c.id


def test_dynamic_quantization_is_measured_on_cpu_and_says_why(claims: ClaimSet) -> None:
    dyn = [c for c in claims if c.kit_path == "torch-int8-dynamic" and c.measure_device]
    assert dyn
    for c in dyn:
        assert c.device == "cuda", "the device the seed claims (a T4) is kept"
        assert c.compare_device == "cpu" and "CPU" in (c.device_note or ""), c.id


def test_simulated_accuracy_is_unsupported(claims: ClaimSet) -> None:
    sims = [c for c in claims if c.metric == "simulated_accuracy"]
    assert len(sims) == 64
    assert all(not c.supported and c.value == 0.85 and "constant" in (c.unsupported_reason or "") for c in sims)


def test_tolerances_carry_reasons(claims: ClaimSet) -> None:
    for c in claims:
        assert len(c.tolerance.reason) > 10, c.id
    lat = next(c for c in claims if c.id == "001.latency.vit-huge-patch14-2020.fp16")
    assert (lat.tolerance.kind, lat.tolerance.value, lat.comparability) == ("relative", 0.10, "hardware-bound")
    mred = next(c for c in claims if c.id == "001.arch.memory_reduction_pct.vit-huge-patch14-2020.fp16")
    assert (mred.tolerance.kind, mred.tolerance.value, mred.comparability) == ("absolute", 2.0, "relative")
    par = next(c for c in claims if c.id == "003.selection.mobilevit-xxs-edge.parameters")
    assert par.comparability == "portable" and par.tolerance.value > 0.04  # 1.3M is rounded to 0.1M


# ------------------------------------------------------------------------ transcription


@needs_seeds
def test_transcription_matches_the_seed_tables(claims: ClaimSet) -> None:
    assert check_transcription(claims, SEEDS) == []


@needs_seeds
def test_transcription_check_catches_a_wrong_value_and_a_wrong_model(claims: ClaimSet) -> None:
    wrong = []
    for c in claims:
        if c.id == "001.latency.vit-huge-patch14-2020.fp16":
            c = dataclasses.replace(c, value=10.42)
        elif c.id == "003.latency.dinov2-base-2023.fp32":
            c = dataclasses.replace(c, subject=dataclasses.replace(c.subject, model="dinov2-large-2023"))
        wrong.append(c)
    problems = check_transcription(wrong, SEEDS)
    assert len(problems) == 2
    assert "10.24" in problems[0] and "10.42" in problems[0]
    assert "dinov2-large-2023" in problems[1]


# ------------------------------------------------------------------------------- schema


def _one_claim_file() -> tuple[str, dict]:
    doc = _doc("004")
    doc["claims"] = doc["claims"][:12]
    return "004_65dbea4d430e66d7.json", doc


BREAKAGES = [
    ("claims/0/tolerance/kind", lambda d: d["claims"][0]["tolerance"].__setitem__("kind", "percent"), "enum"),
    ("claims/5/comparability", lambda d: d["claims"][5].__setitem__("comparability", "universal"), "enum"),
    ("claims/2", lambda d: d["claims"][2].pop("unit"), "required"),
    ("claims/3/value", lambda d: d["claims"][3].__setitem__("value", {"x": 1}), ""),
    ("claims/0", lambda d: d["claims"][0].__setitem__("stability_score", 0.95), "additionalProperties"),
    ("claims/4/tolerance/value", lambda d: d["claims"][4]["tolerance"].__setitem__("value", -1), "minimum"),
    ("claims/1/unsupported_reason", lambda d: d["claims"][1].__setitem__("unsupported_reason", None), "type"),
    ("claims/6/device", lambda d: d["claims"][6].__setitem__("device", "tpu"), "enum"),
    ("schema_version", lambda d: d.__setitem__("schema_version", "2"), "const"),
    ("claims", lambda d: d.__setitem__("claims", []), "minItems"),
]


@pytest.mark.parametrize("pointer,breakage,rule", BREAKAGES, ids=[b[0] for b in BREAKAGES])
def test_schema_rejects_malformed_claims(pointer: str, breakage, rule: str) -> None:
    name, doc = _one_claim_file()
    broken = copy.deepcopy(doc)
    breakage(broken)
    with pytest.raises(ClaimsError) as info:
        parse_claim_file(name, json.dumps(broken))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{name}: at #/{pointer}")
    assert "(rule: " in message and rule in message


def test_semantic_rules(tmp_path: Path) -> None:
    name, doc = _one_claim_file()
    dup = copy.deepcopy(doc)
    dup["claims"][1]["id"] = dup["claims"][0]["id"]
    with pytest.raises(ClaimsError, match=r"#/claims/1/id: .* repeats #/claims/0/id \(rule: unique-id\)"):
        parse_claim_file(name, json.dumps(dup))
    with pytest.raises(ClaimsError, match=r"rule: source-file"):
        parse_claim_file("001_5dfa280a2efa7106.json", json.dumps(doc))
    with pytest.raises(ClaimsError, match=r"at #: not JSON: .* line 1 column 2 \(rule: json\)"):
        parse_claim_file(name, "{oops")
    with pytest.raises(ClaimsError, match=r"NaN is not standard JSON \(rule: json\)"):
        parse_claim_file(name, json.dumps(doc).replace('"value": 224', '"value": NaN', 1))


def test_load_claims_directory_errors(tmp_path: Path) -> None:
    with pytest.raises(ClaimsError, match="not a directory"):
        load_claims(tmp_path / "missing")
    with pytest.raises(ClaimsError, match=r"no \*\.json"):
        load_claims(tmp_path)
    name, doc = _one_claim_file()
    (tmp_path / name).write_text(json.dumps(doc))
    other = copy.deepcopy(doc)
    other["source_file"] = "005_aa.txt"
    for c in other["claims"]:
        c["id"] = "005" + c["id"][3:]
    other["claims"][0]["id"] = "005.x"
    (tmp_path / "005_aa.json").write_text(json.dumps(other))
    assert len(load_claims(tmp_path)) == 24
    other["claims"][1]["id"] = doc["claims"][1]["id"]  # a 004 id inside the 005 file
    (tmp_path / "005_aa.json").write_text(json.dumps(other))
    with pytest.raises(ClaimsError, match="id-prefix"):
        load_claims(tmp_path)


def test_expected_dir_is_found_from_the_package_and_overridable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("QKIT_EXPECTED", raising=False)
    assert default_expected_dir() == REPO / "kit" / "data" / "expected"
    assert (REPO / "expected").resolve() == default_expected_dir().resolve()  # the top-level link
    monkeypatch.setenv("QKIT_EXPECTED", str(tmp_path))
    assert default_expected_dir() == tmp_path


# ------------------------------------------------- the study's own rows against its claims


def test_aggregate_conventions_reproduce_the_published_figures(claims: ClaimSet) -> None:
    """Validated against the study's own 64 rows (as if measured on its GPU), the aggregates whose
    convention we inferred must pass, and the only failures are the study's internal contradictions."""
    verdicts = {v.claim_id: v for v in validate(claims, published_results(REPO / "expected"))}
    for cid in (
        "001.summary.fp16.speedup",
        "001.summary.int8.memred",
        "001.methods.bnb.speedup",
        "003.stats.fp16_speedup.p95",
        "003.stats.fp16_speedup.median",
        "003.patterns.production.fp16_range",
        "003.patterns.edge.fp16_range",
        "003.patterns.foundation.avg_fp16_speedup",
        "003.validation.average_memory_reduction_int8",
        "000.ranges.latency.range",
        *(
            f"001.categories.{cat}.avg_speedup"
            for cat in (
                "foundation_transformer",
                "self_supervised_2023",
                "masked_autoencoder_2021",
                "production_ready",
                "edge_optimized",
                "specialized_efficient",
            )
        ),
        *(f"001.leaders.{cat}" for cat in ("foundation_transformer", "production_ready", "specialized_efficient")),
        "000.top_fp16_speedup.list",
        "000.top_int8_memred.list",
        "002.top.list",
    ):
        assert verdicts[cid].verdict == "pass", (cid, verdicts[cid].reason)
    failing = sorted(cid for cid, v in verdicts.items() if v.verdict == "fail")
    assert failing == [
        "002.benefits.fp16_large_2x",
        "002.insights.fp16_large_2x",
        "002.insights.int8_70_75",
        "002.memory_efficiency.fp16",
        "002.memory_efficiency.int4",
        "002.memory_efficiency.int8",
        "003.stats.fp16_memred.range",
        "003.stats.fp16_memred.std",
        "003.stats.int8_memred.range",
        "003.stats.int8_memred.std",
        "004.model.patch",
        "004.perf.size.original",
    ]
