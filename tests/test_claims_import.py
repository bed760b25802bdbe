"""Claims a person can write: CSV / YAML tables -> claims files (`qkit claims import`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from kit import documents
from kit.claims.authoring import import_table, table_rows, write_table
from kit.claims.load import load_claims
from kit.cli import main
from kit.errors import BadInput

HEADER = "model,path,device,batch,metric,value,unit,tolerance,tolerance_reason,class,source,text"
ROWS = [
    "my-vit,torch-fp32,cpu,1,model_size_mb,330,MB,5%,rounded to whole MB,portable,Table 2,FP32 330 MB",
    "my-vit,torch-int8-dynamic,cpu,1,speedup,1.9,x,0.2,one machine,relative,Table 2,INT8 1.9x",
    "my-vit,torch-fp32,cpu,1,latency_ms,12.5,ms,10%,unnamed CPU,hardware-bound,Table 3,12.5 ms",
    ",,,,software_version,2.1,,exact,a version string,portable,Setup,torch 2.1",
]
YAML = """\
number: 7
title: A small paper
source: https://example.org/paper
hardware: {cpu: Some CPU}
claims:
  - model: my-vit
    path: torch-fp32
    device: cpu
    batch: 1
    metric: model_size_mb
    value: 330
    unit: MB
    tolerance: 5%
    tolerance_reason: rounded to whole MB
    class: portable
    source: Table 2
  - model: my-vit
    path: torch-int8-dynamic
    metric: size_reduction_pct
    value: 74
    unit: "%"
    tolerance: 2
    tolerance_reason: two rounded sizes
    class: portable
    source: Table 2
    supported: false
    unsupported_reason: a reason given by hand
"""


def _csv(tmp_path: Path, rows: list[str], name: str = "claims.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    return path


def test_csv_import_gives_a_schema_valid_claims_file(tmp_path: Path) -> None:
    stem, doc = import_table(_csv(tmp_path, ROWS), number=12, title="T", source="https://example.org/x")
    assert documents.problem(doc, "claims") is None
    assert stem.startswith("012_") and doc["source_file"] == f"{stem}.txt"
    first, speedup, latency, version = doc["claims"]
    assert first["id"] == "012.model_size_mb.my-vit.torch-fp32.cpu.bs1"
    assert first["tolerance"] == {"kind": "relative", "value": 0.05, "reason": "rounded to whole MB"}
    assert speedup["tolerance"]["kind"] == "absolute" and speedup["comparability"] == "relative"
    assert latency["comparability"] == "hardware-bound"
    assert version["subject"] == {"kind": "study"} and version["tolerance"]["kind"] == "exact"
    (tmp_path / "out").mkdir()
    documents.write(tmp_path / "out" / f"{stem}.json", doc, "claims")
    assert len(load_claims(tmp_path / "out")) == 4


@pytest.mark.parametrize("suffix", [".csv", ".yaml"])
def test_import_round_trips(tmp_path: Path, suffix: str) -> None:
    source = tmp_path / "claims.yaml"
    source.write_text(YAML)
    stem, doc = import_table(source)
    assert doc["published_hardware"] == {"gpu": None, "cpu": "Some CPU"}
    back = write_table(doc, tmp_path / f"back{suffix}")
    header = {"number": 7, "title": "A small paper", "source": "https://example.org/paper"} if suffix == ".csv" else {}
    if suffix == ".csv":
        header["hardware"] = {"cpu": "Some CPU"}
    stem2, doc2 = import_table(back, **header)
    assert (stem2, doc2) == (stem, doc)
    assert table_rows(doc2) == table_rows(doc)


@pytest.mark.parametrize(
    ("row", "words"),
    [
        ("my-vit,torch-fp32,cpu,1,model_size_mb,330,MB,5%,rounded,portable-ish,Table 2,t", "class 'portable-ish'"),
        ("my-vit,torch-fp32,gpu,1,model_size_mb,330,MB,5%,rounded,portable,Table 2,t", "device 'gpu'"),
        ("my-vit,torch-fp32,cpu,0,model_size_mb,330,MB,5%,rounded,portable,Table 2,t", "batch must be"),
        ("my-vit,torch-fp32,cpu,1,model_size_mb,330,MB,lots,rounded,portable,Table 2,t", "tolerance must be a number"),
        ("my-vit,torch-fp32,cpu,1,model_size_mb,330,MB,5%,,portable,Table 2,t", "missing tolerance_reason"),
        ("my-vit,torch-fp32,cpu,1,model_size_mb,330,MB,150%,rounded,portable,Table 2,t", "#/claims/1/tolerance"),
        ("My Vit,torch-fp32,cpu,1,model_size_mb,330,MB,5%,rounded,portable,Table 2,t", "#/claims/1/subject"),
        (",torch-fp32,cpu,1,model_size_mb,330,MB,5%,rounded,portable,Table 2,t", "needs a model"),
    ],
)
def test_a_bad_row_names_its_line(tmp_path: Path, row: str, words: str) -> None:
    path = _csv(tmp_path, [ROWS[0], row, ROWS[1]])
    with pytest.raises(BadInput) as info:
        import_table(path, number=1, title="T", source="s")
    message = str(info.value)
    assert f"{path}: line 3: " in message and words in message, message
    assert "\n" not in message


def test_duplicate_ids_and_bad_yaml_rows_name_their_line(tmp_path: Path) -> None:
    path = _csv(tmp_path, [ROWS[0], ROWS[0]])
    with pytest.raises(BadInput, match=r"line 3: .*repeats"):
        import_table(path, number=1, title="T", source="s")
    yaml_file = tmp_path / "bad.yaml"
    yaml_file.write_text(
        YAML.replace(
            "    class: portable\n    source: Table 2\n  - model", "    class: nope\n    source: Table 2\n  - model", 1
        )
    )
    with pytest.raises(BadInput, match=r"bad.yaml: line 6: class 'nope'"):
        import_table(yaml_file)
    unknown = tmp_path / "unknown.csv"
    unknown.write_text(HEADER + ",colour\n")
    with pytest.raises(BadInput, match="line 1: unknown column 'colour'"):
        import_table(unknown, number=1, title="T", source="s")
    with pytest.raises(BadInput, match="need a title"):
        import_table(_csv(tmp_path, ROWS[:1], "x.csv"), number=1, source="s")


def test_cli_import_writes_the_file_and_bad_rows_exit_2(tmp_path: Path) -> None:
    table = _csv(tmp_path, ROWS)
    out = tmp_path / "claims"
    out.mkdir()
    args = ["claims", "import", str(table), "--out", str(out), "--number", "12", "--title", "T", "--source", "s"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    [written] = out.glob("012_*.json")
    assert json.loads(written.read_text())["claims"][0]["id"].startswith("012.")
    res = CliRunner().invoke(main, ["claims", "--expected", str(out), "--counts"])
    assert res.exit_code == 0 and "4" in res.output
    bad = _csv(tmp_path, [ROWS[0].replace("portable", "sometimes")], "bad.csv")
    res = CliRunner().invoke(main, ["claims", "import", str(bad), "--number", "1", "--title", "T", "--source", "s"])
    assert res.exit_code == 2
    assert [line for line in res.output.splitlines() if line] == [
        f"qkit: error: {bad}: line 2: class 'sometimes' is not one of portable, relative, hardware-bound"
    ]


def test_claims_without_subcommand_lists_the_bundled_study() -> None:
    res = CliRunner().invoke(main, ["claims", "--counts"])
    assert res.exit_code == 0, res.output
    assert "5 files" in res.output  # the studies/ subfolder is not part of the bundled study


def test_init_scaffolds_a_study_folder(tmp_path: Path) -> None:
    from kit.models.user import load_models_file

    folder = tmp_path / "new-paper"
    res = CliRunner().invoke(main, ["init", str(folder), "--number", "42"])
    assert res.exit_code == 0, res.output
    assert {p.name for p in folder.iterdir()} == {"models.yaml", "claims.yaml", "claims.csv", "README.md"}
    [spec] = load_models_file(folder / "models.yaml")  # the example model loads as is
    assert spec.id == "example-vit-b16"
    res = CliRunner().invoke(main, ["claims", "import", str(folder / "claims.yaml")])
    assert res.exit_code == 2 and "no claim rows" in res.output  # the template has no claims yet
    assert CliRunner().invoke(main, ["init", str(folder)]).exit_code == 2  # never overwrites
