"""Merging result sets: shards of a tiny run merge back into the unsharded set of cells; machines
stay apart; duplicates count once; conflicts are reported and nothing measured is lost."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from kit.cli import main
from kit.results.store import Cell, cell_file, load_results, read_result, write_result
from kit.run.cell import RunOptions
from kit.run.executors import InlineExecutor
from kit.run.merge import CONFLICTS_DIR, MERGE_RECORD, MergeInputError, machine_tag_of, merge_results
from kit.run.reproduce import machine_tag, plan_matrix, reproduce
from kit.run.shard import shard_cells, write_shard_manifest

MODELS = ["tiny-vit", "tiny-deit", "tiny-dino"]
N_SHARDS = 3
H100 = "NVIDIA H100 80GB HBM3"


def _opts(out: Path) -> RunOptions:
    return RunOptions(out_dir=str(out), profile="quick", command="pytest")


def _cells() -> list[Cell]:
    return plan_matrix(MODELS, ["torch-fp32", "torch-int8-dynamic"], ["cpu", "cuda"], [1])


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("merge")
    cells = _cells()
    whole = reproduce(cells, _opts(root / "whole"), InlineExecutor())
    assert whole.failed == 0 and whole.ok == 6 and whole.skipped == 6, whole
    out = {"whole": root / "whole", "root": root}
    for k in range(1, N_SHARDS + 1):
        part = shard_cells(cells, k, N_SHARDS, "quick")
        target = root / f"shard-{k}"
        reproduce(part, _opts(target), InlineExecutor())
        write_shard_manifest(target, cells, k, N_SHARDS, part, "quick")
        out[f"shard-{k}"] = target
    return out


def _cells_by_machine(root: Path) -> set[tuple[str, Cell]]:
    loaded = load_results(root)
    assert not loaded.corrupt
    return {(f.relative_to(root).parts[0], Cell.from_dict(d["cell"])) for d, f in zip(loaded.docs, loaded.files)}


def _shards(runs: dict[str, Path]) -> list[Path]:
    return [runs[f"shard-{k}"] for k in range(1, N_SHARDS + 1)]


def test_merging_the_shards_gives_the_unsharded_set_of_cells(runs: dict[str, Path], tmp_path: Path) -> None:
    report = merge_results(_shards(runs), tmp_path / "merged")
    whole = {Cell.from_dict(d["cell"]) for d in load_results(runs["whole"]).docs}
    merged = _cells_by_machine(tmp_path / "merged")
    assert {c for _, c in merged} == whole == set(_cells())
    assert {m for m, _ in merged} == {machine_tag()}  # one machine, laid out under its tag
    assert report.read == len(whole) and report.written == len(whole)
    assert report.duplicates == 0 and not report.conflicts and not report.corrupt
    assert not report.shard_problems and not report.missing_cells and report.clean
    assert report.machines == {machine_tag(): len(whole)}
    assert (tmp_path / "merged" / machine_tag() / "summary.csv").is_file()
    record = json.loads((tmp_path / "merged" / MERGE_RECORD).read_text())
    assert record["written"] == len(whole) and record["conflicts"] == []
    # Documents are copied unchanged.
    cell = Cell("tiny-vit", "torch-fp32", "cpu", 1)
    src = next(s for s in _shards(runs) if cell_file(s, cell).exists())
    assert read_result(cell_file(tmp_path / "merged" / machine_tag(), cell)) == read_result(cell_file(src, cell))


def test_machine_tag_of_a_document_matches_the_runs_machine_tag(runs: dict[str, Path]) -> None:
    for doc in load_results(runs["whole"]).docs:
        assert machine_tag_of(doc) == machine_tag()
    doc = copy.deepcopy(load_results(runs["whole"]).docs[0])
    doc["environment"]["gpu"] = {"name": H100}
    assert machine_tag_of(doc) == "nvidia-h100-80gb-hbm3"
    doc["environment"]["gpu"], doc["environment"]["cpu"] = None, {}
    assert machine_tag_of(doc) == "unknown"


def test_duplicates_are_counted_once_and_a_second_merge_changes_nothing(runs: dict[str, Path], tmp_path: Path) -> None:
    copy_of_1 = tmp_path / "copy-of-shard-1"
    shutil.copytree(runs["shard-1"], copy_of_1)
    n1 = len(load_results(runs["shard-1"]).docs)
    report = merge_results([*_shards(runs), copy_of_1], tmp_path / "merged")
    assert report.duplicates == n1 and not report.conflicts
    assert len(_cells_by_machine(tmp_path / "merged")) == len(_cells())
    again = merge_results(_shards(runs), tmp_path / "merged")
    assert again.written == 0 and again.unchanged == len(_cells()) and not again.conflicts


def _rewrite(src: Path, dest: Path, change: object) -> list[Cell]:
    """Copy every document of ``src`` into ``dest`` after ``change(doc)`` (kept schema-valid)."""
    cells = []
    for doc in load_results(src).docs:
        doc = copy.deepcopy(doc)
        change(doc)  # type: ignore[operator]
        write_result(dest, doc)
        cells.append(Cell.from_dict(doc["cell"]))
    return cells


def test_two_machines_are_kept_apart(runs: dict[str, Path], tmp_path: Path) -> None:
    def on_h100(doc: dict) -> None:
        doc["environment"]["gpu"] = {"name": H100, "count": 1}

    other = _rewrite(runs["whole"], tmp_path / "h100-run", on_h100)
    report = merge_results([runs["whole"], tmp_path / "h100-run"], tmp_path / "merged")
    merged = _cells_by_machine(tmp_path / "merged")
    assert not report.conflicts and report.duplicates == 0
    assert report.machines == {machine_tag(): len(other), "nvidia-h100-80gb-hbm3": len(other)}
    assert {c for m, c in merged if m == "nvidia-h100-80gb-hbm3"} == {c for m, c in merged if m == machine_tag()}
    assert (tmp_path / "merged" / "nvidia-h100-80gb-hbm3" / "cells").is_dir()


def test_a_conflict_is_reported_and_the_newer_ok_document_kept(runs: dict[str, Path], tmp_path: Path) -> None:
    cell = Cell("tiny-vit", "torch-fp32", "cpu", 1)
    original = read_result(cell_file(runs["whole"], cell))
    rerun = copy.deepcopy(original)
    rerun["started_utc"] = "2099-01-01T00:00:00+00:00"
    rerun["latency"]["p50"] = original["latency"]["p50"] * 2
    write_result(tmp_path / "rerun", rerun)
    # An even newer attempt that failed must not displace an ok measurement.
    failed = copy.deepcopy(original)
    failed.update(status="failed", reason="child process killed by SIGKILL", started_utc="2099-06-01T00:00:00+00:00")
    write_result(tmp_path / "failed-rerun", failed)

    report = merge_results([runs["whole"], tmp_path / "rerun", tmp_path / "failed-rerun"], tmp_path / "merged")
    assert len(report.conflicts) == 1
    conflict = report.conflicts[0]
    assert conflict.machine == machine_tag() and conflict.cell == cell
    assert conflict.kept.doc == rerun and len(conflict.set_aside) == 2
    assert "conflict" in conflict.line() and cell.key() in conflict.line()
    kept = read_result(cell_file(tmp_path / "merged" / machine_tag(), cell))
    assert kept == rerun
    # The losers are set aside, not lost, and not read back as results.
    aside = sorted((tmp_path / "merged" / machine_tag() / CONFLICTS_DIR).rglob("*.json"))
    assert sorted(json.loads(p.read_text())["started_utc"] for p in aside) == sorted(
        [original["started_utc"], failed["started_utc"]]
    )
    assert len(load_results(tmp_path / "merged").docs) == len(_cells())
    assert not report.clean


def test_corrupt_documents_and_missing_shards_are_reported(runs: dict[str, Path], tmp_path: Path) -> None:
    broken = tmp_path / "shard-2-broken"
    shutil.copytree(runs["shard-2"], broken)
    victim = sorted(broken.rglob("cells/**/*.json"))[0]
    victim.write_text(victim.read_text()[:50])
    report = merge_results([runs["shard-1"], broken], tmp_path / "merged")
    assert [Path(f).name for f, _ in report.corrupt] == [victim.name]
    assert any("shard(s) 3 of 3 not among the sources" in p for p in report.shard_problems)
    planned_3 = {c.key() for c in shard_cells(_cells(), 3, N_SHARDS, "quick")}
    assert planned_3 | {_key_of(victim, broken)} == set(report.missing_cells)


def _key_of(file: Path, root: Path) -> str:
    model = file.relative_to(root).parts[1]
    path, device, bs = file.name.removesuffix(".json").split("__")
    return Cell(model, path, device, int(bs.removeprefix("bs"))).key()


@pytest.mark.parametrize(
    ("make_args", "message"),
    [
        (lambda t: [str(t / "nope"), "--out", str(t / "m")], "does not exist"),
        (lambda t: [str(t / "a"), "--out", str(t / "a" / "m")], "inside source"),
        (lambda t: [str(t / "a")], "--out DIR is required"),
        (lambda t: ["--out", str(t / "m")], "at least one"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path: Path, make_args: object, message: str) -> None:
    (tmp_path / "a").mkdir()
    result = CliRunner().invoke(main, ["merge", *make_args(tmp_path)])  # type: ignore[operator]
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and lines[0].startswith("qkit: error:")


def test_cli_merges_lists_conflicts_and_strict_exits_1(runs: dict[str, Path], tmp_path: Path) -> None:
    cell = Cell("tiny-deit", "torch-int8-dynamic", "cpu", 1)
    rerun = read_result(cell_file(runs["whole"], cell))
    rerun["started_utc"] = "2099-01-01T00:00:00+00:00"
    write_result(tmp_path / "rerun", rerun)
    args = ["merge", *map(str, _shards(runs)), str(tmp_path / "rerun"), "--out", str(tmp_path / "m")]
    ok = CliRunner().invoke(main, args)
    assert ok.exit_code == 0, ok.output
    assert ok.output.startswith("merged 4 source(s)") and "1 conflict(s)" in ok.output
    assert f"conflict {machine_tag()}/{cell.key()}" in ok.output
    strict = CliRunner().invoke(main, [*args, "--strict", "--json", str(tmp_path / "r.json")])
    assert strict.exit_code == 1
    assert len(json.loads((tmp_path / "r.json").read_text())["conflicts"]) == 1


def test_merge_refuses_a_destination_that_is_not_a_merge(runs: dict[str, Path]) -> None:
    with pytest.raises(MergeInputError, match="not laid out by machine"):
        merge_results([runs["shard-1"]], runs["whole"])
