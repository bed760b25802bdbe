"""The second study shipped with the kit (PyTorch's ViT deployment tutorial): claims, models file,
committed reference run and verdicts; validate and audit on a claims folder other than the bundled one."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from kit import documents
from kit.claims.authoring import import_table
from kit.claims.load import load_claims
from kit.cli import main

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "kit" / "data" / "expected" / "studies" / "pytorch-vt-tutorial"
RUN = ROOT / "results" / "reference" / "studies" / "pytorch-vt-tutorial" / "cpu-intel-xeon-2core"


def test_the_claims_file_is_the_import_of_its_table() -> None:
    stem, doc = import_table(STUDY / "claims.yaml")
    committed = json.loads((STUDY / f"{stem}.json").read_text())
    assert committed == doc
    assert [p.name for p in STUDY.glob("*.json")] == [f"{stem}.json"]  # the folder is a claims folder
    for claim in doc["claims"]:  # every claim quotes the tutorial and names its section
        assert claim["text"] and claim["section"]
        assert claim["supported"] or claim["unsupported_reason"]


def test_the_bundled_study_does_not_pick_up_the_studies_folder() -> None:
    names = {f.source_file for f in load_claims().files}
    assert len(names) == 5 and not any(n.startswith("101_") for n in names)


def test_the_models_file_is_deit_base() -> None:
    from kit.models.registry import get_model
    from kit.models.user import load_models_file

    [spec] = load_models_file(STUDY / "models.yaml")
    assert (spec.id, spec.model_class, spec.image_size, spec.head) == (
        "deit-base-patch16-224",
        "ViTForImageClassification",
        224,
        "classifier",
    )
    # DeiT-base without distillation is ViT-B/16 at 224 px with 1000 classes.
    assert spec.real_params == get_model("vit-base-224-production").real_params
    assert spec.mean == (0.485, 0.456, 0.406)


def test_committed_verdicts_are_schema_valid_and_nothing_failed() -> None:
    doc = documents.read(RUN / "verdicts.json", "verdicts")
    assert doc["summary"]["failed"] == 0 and doc["summary"]["errors"] == 0
    by_id = {v["claim_id"]: v["verdict"] for v in doc["verdicts"]}
    assert by_id["101.size.fp32"] == by_id["101.size.int8-dynamic"] == "pass"
    assert by_id["101.latency.original"] == "not-comparable"


def test_validate_and_audit_work_on_the_second_claims_folder(tmp_path: Path) -> None:
    out = tmp_path / "verdicts.json"
    res = CliRunner().invoke(main, ["validate", "--expected", str(STUDY), "--results", str(RUN), "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert documents.problem(json.loads(out.read_text()), "verdicts") is None
    findings = tmp_path / "findings.json"
    res = CliRunner().invoke(main, ["audit", "--expected", str(STUDY), "--json", str(findings)])
    assert res.exit_code in (0, 1), res.output  # 3 would mean a rule crashed on a non-bundled study
    assert documents.problem(json.loads(findings.read_text()), "findings") is None
