"""Shards of the matrix: exactly once, balanced by expected cost, deterministic, models kept whole."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from kit.models.registry import model_ids
from kit.paths.base import DEVICES, path_names
from kit.results.store import Cell
from kit.run.reproduce import plan_matrix
from kit.run.shard import (
    SHARD_MANIFEST,
    cell_cost,
    model_gflops,
    parse_shard,
    plan_fingerprint,
    reference_cost,
    shard_cells,
    shard_loads,
    write_shard_manifest,
)

# The ONNX Runtime paths are planned too, should their module not be in this build.
ORT_PATHS = ["ort-fp32", "ort-int8-dynamic", "ort-int8-static-qdq"]


def _full_matrix(batch_sizes: tuple[int, ...] = (1,)) -> list[Cell]:
    """What ``qkit reproduce`` plans with no --models/--paths/--devices."""
    paths = path_names() + [p for p in ORT_PATHS if p not in path_names()]
    return plan_matrix(model_ids(), paths, list(DEVICES), list(batch_sizes), defaults_only=True)


@pytest.mark.parametrize(("text", "expected"), [("1/1", (1, 1)), ("3/8", (3, 8)), (" 2 / 5 ", (2, 5))])
def test_parse_shard_accepts_k_of_n(text: str, expected: tuple[int, int]) -> None:
    assert parse_shard(text) == expected


@pytest.mark.parametrize("text", ["", "3", "0/4", "5/4", "a/b", "1/0", "-1/3", "1/2/3", "2.5/4"])
def test_parse_shard_rejects_bad_input_in_one_line(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_shard(text)
    assert "\n" not in str(info.value) and "shard" in str(info.value)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_shards_cover_the_full_matrix_exactly_once(n: int) -> None:
    cells = _full_matrix()
    assert len(cells) == len(set(cells)) >= 16 * 7
    assert {c.model for c in cells} == set(model_ids())
    shards = [shard_cells(cells, k, n) for k in range(1, n + 1)]
    flat = [c for s in shards for c in s]
    assert len(flat) == len(cells)
    assert set(flat) == set(cells)
    for s in shards:  # each shard keeps the plan's order (model by model)
        assert s == [c for c in cells if c in set(s)]


@pytest.mark.parametrize("n", [2, 3, 4])
def test_shards_are_balanced_by_expected_cost(n: int) -> None:
    cells = _full_matrix()
    loads = shard_loads(cells, n)
    assert max(loads) / (sum(loads) / n) <= 1.5
    # Balanced by cost, not by count: cutting the plan into n equal runs of cells does worse.
    size = -(-len(cells) // n)
    by_count = [cells[i * size : (i + 1) * size] for i in range(n)]
    naive = [
        sum(cell_cost(c) for c in part) + sum(reference_cost(m) for m in {c.model for c in part}) for part in by_count
    ]
    assert max(loads) / (sum(loads) / n) < max(naive) / (sum(naive) / n)


@pytest.mark.parametrize("profile", ["quick", "study"])
def test_balance_holds_for_other_profiles_and_batch_sizes(profile: str) -> None:
    cells = _full_matrix((1, 8))
    for n in (2, 3, 4):
        loads = shard_loads(cells, n, profile)
        assert max(loads) / (sum(loads) / n) <= 1.5


@pytest.mark.parametrize("n", [2, 3, 4])
def test_models_are_kept_together_where_balance_permits(n: int) -> None:
    cells = _full_matrix()
    shards = [shard_cells(cells, k, n) for k in range(1, n + 1)]
    pairs = sum(len({c.model for c in s}) for s in shards)
    # 16 models; at most n - 1 of them cut across shards (each cut pays its reference again).
    assert pairs <= 16 + n - 1


def test_partition_is_deterministic_and_independent_of_input_order() -> None:
    cells = _full_matrix()
    first = [shard_cells(cells, k, 4) for k in range(1, 5)]
    again = [shard_cells(cells, k, 4) for k in range(1, 5)]
    shuffled = list(cells)
    random.Random(7).shuffle(shuffled)
    assert first == again
    assert [set(s) for s in first] == [set(shard_cells(shuffled, k, 4)) for k in range(1, 5)]


def test_partition_does_not_depend_on_the_hash_seed() -> None:
    """Each job of an array is a separate process: str hashing (set order) must not matter."""
    code = (
        "from kit.run.shard import shard_cells; from kit.run.reproduce import plan_matrix;"
        "from kit.models.registry import model_ids; from kit.paths.base import path_names;"
        "cells = plan_matrix(model_ids(), path_names(), ['cpu', 'cuda'], [1]);"
        "print([[c.key() for c in shard_cells(cells, k, 5)] for k in range(1, 6)])"
    )
    outs = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        outs.add(
            subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
        )
    assert len(outs) == 1


def test_more_shards_than_cells_leaves_some_empty() -> None:
    cells = plan_matrix(["tiny-vit"], ["torch-fp32", "torch-bf16"], ["cpu"], [1])
    shards = [shard_cells(cells, k, 5) for k in range(1, 6)]
    assert sorted(len(s) for s in shards) == [0, 0, 0, 1, 1]
    assert {c for s in shards for c in s} == set(cells)


def test_shard_cells_rejects_k_outside_1_to_n() -> None:
    cells = plan_matrix(["tiny-vit"], ["torch-fp32"], ["cpu"], [1])
    for k, n in ((0, 2), (3, 2), (1, 0)):
        with pytest.raises(ValueError):
            shard_cells(cells, k, n)


def test_cost_model_orders_cells_sensibly() -> None:
    huge = cell_cost(Cell("vit-huge-patch14-2020", "torch-fp32", "cpu", 1))
    tiny = cell_cost(Cell("deit-tiny-ultra-efficient", "torch-fp32", "cpu", 1))
    # The full profile's fixed minimum time and a small cell's three processes keep it from
    # vanishing: measured on the reference run 33.8 s against 7.8 s.
    assert 3 * tiny < huge < 6 * tiny
    assert model_gflops("vit-huge-patch14-2020") > 100 * model_gflops("deit-tiny-ultra-efficient")
    # Batch and path weigh in; a path that cannot run on the device is a quick skip.
    assert cell_cost(Cell("vit-huge-patch14-2020", "torch-fp32", "cpu", 8)) > huge
    assert cell_cost(Cell("vit-huge-patch14-2020", "bnb-int8", "cpu", 1)) > huge
    assert cell_cost(Cell("vit-huge-patch14-2020", "ort-int8-static-qdq", "cpu", 1)) > cell_cost(
        Cell("vit-huge-patch14-2020", "ort-fp32", "cpu", 1)
    )
    assert cell_cost(Cell("vit-huge-patch14-2020", "torch-int8-dynamic", "cuda", 1)) < 0.1
    assert cell_cost(Cell("vit-huge-patch14-2020", "torch-fp16", "cuda", 1)) < huge
    assert reference_cost("vit-huge-patch14-2020") > reference_cost("deit-tiny-ultra-efficient") > 0
    # Unknown paths and the tiny test models still get a finite, positive cost.
    assert 0 < cell_cost(Cell("tiny-vit", "some-new-path", "cpu", 1)) < tiny


def test_cost_falls_back_to_params_times_tokens_without_flops(monkeypatch: pytest.MonkeyPatch) -> None:
    import kit.models.flops as flops

    def unsupported(*_a: object, **_k: object) -> object:
        raise flops.UnsupportedArchitecture("not counted")

    model_gflops.cache_clear()
    monkeypatch.setattr(flops, "model_flops", unsupported)
    try:
        approx = model_gflops("vit-base-224-production")
        # 2 x 86.6 M params x 197 tokens = 34.1 GFLOPs; the analytic count is 35.1.
        assert approx == pytest.approx(2 * 86_567_656 * 197 / 1e9)
    finally:
        model_gflops.cache_clear()


def test_shard_manifest_names_the_plan(tmp_path: Path) -> None:
    cells = plan_matrix(["tiny-vit", "tiny-deit"], ["torch-fp32"], ["cpu"], [1])
    part = shard_cells(cells, 1, 2, "quick")
    target = write_shard_manifest(tmp_path, cells, 1, 2, part, "quick")
    assert target == tmp_path / SHARD_MANIFEST
    man = json.loads(target.read_text())
    assert (man["shard"], man["of"], man["plan_cells"]) == (1, 2, 2)
    assert man["plan"] == plan_fingerprint(list(reversed(cells)), "quick") != plan_fingerprint(cells, "full")
    assert [Cell.from_dict(c) for c in man["cells"]] == part


def test_the_cost_model_predicts_the_reference_runs_wall_time() -> None:
    """The matrix's cost model against the committed CPU reference run (the machine its constants
    are priced on): the run's wall time from its first cell's start to its last cell's end, and each
    model's share of the time its cells' processes took (a cell's later processes run in rounds over
    the matrix, so a model has no stretch of its own). Cells skipped here cost a skip: the model
    cannot know what is available (it must not depend on the planning machine)."""
    import datetime as dt
    from collections import defaultdict

    from kit.results.store import load_results
    from kit.run.shard import SKIP_COST_S, cell_cost, reference_cost

    docs = load_results(Path(__file__).resolve().parents[1] / "results/reference/cpu-intel-xeon-2core").docs
    assert len(docs) == 256

    def span(ds: list[dict]) -> float:
        start = min(dt.datetime.fromisoformat(d["started_utc"]) for d in ds)
        return (max(dt.datetime.fromisoformat(d["finished_utc"]) for d in ds) - start).total_seconds()

    def predicted(d: dict) -> float:
        return cell_cost(Cell.from_dict(d["cell"])) if d["status"] == "ok" else SKIP_COST_S

    by_model: dict[str, list[dict]] = defaultdict(list)
    for d in docs:
        by_model[d["cell"]["model"]].append(d)
    total = sum(predicted(d) for d in docs) + sum(reference_cost(m) for m in by_model)
    assert 0.8 <= total / span(docs) <= 1.2, (total, span(docs))

    # Per model, the measured processes' time (duration_s: the artifacts processes and process
    # starts are outside it, so only the model's ratio against the run's overall ratio counts).
    def measured(ds: list[dict]) -> float:
        return sum(float(d["duration_s"]) for d in ds if d["status"] == "ok")

    overall = sum(predicted(d) for d in docs) / measured(docs)
    for model, ds in by_model.items():
        ratio = sum(predicted(d) for d in ds) / measured(ds) / overall
        assert 0.5 <= ratio <= 1.5, (model, ratio)
