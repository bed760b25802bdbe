"""`qkit diagnose`: per-layer error attribution of a quantized path against FP32.

The core check plants ONE broken layer in tiny-vit: fc2 of the first block gets a huge weight on an
input feature that GELU always zeroes (fc1's bias for that feature is -30), so FP32 is untouched
but per-tensor INT8 (torch.ao dynamic) scales that weight matrix by the outlier and rounds every
other weight to zero. Diagnose must rank that layer first, and keeping it in float must bring the
final output back to the target, measured by re-quantizing.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from kit.cli import main
from kit.diagnose import SUPPORTED_PATHS, diagnose
from kit.diagnose.metrics import cosine, sqnr_db
from kit.documents import check
from kit.models.build import build_model
from kit.models.registry import get_model

MODEL = "tiny-vit"
BROKEN = "vit.layers.0.mlp.fc2"
DEAD_FEATURE = 5
OUTLIER = 100.0  # ~800x the LeCun std of a 64-wide layer (1/8)
TARGET = 0.995


def broken_model() -> Any:
    import torch

    model, _ = build_model(get_model(MODEL))
    layer = model.vit.layers[0].mlp
    with torch.no_grad():
        layer.fc1.bias[DEAD_FEATURE] = -30.0  # GELU(-30 + w.x) is exactly 0 in float32
        layer.fc2.weight[:, DEAD_FEATURE] = OUTLIER
    return model


@pytest.fixture(scope="module")
def broken_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("broken") / "weights"
    broken_model().save_pretrained(target, safe_serialization=True)
    return target


def test_metrics_definitions() -> None:
    r = np.array([3.0, 4.0])
    assert sqnr_db(r, r) == math.inf
    assert sqnr_db(r, r * 0.9) == pytest.approx(20.0)  # noise is 10 % of the signal
    assert cosine(r, -r) == pytest.approx(-1.0)
    assert cosine(r, np.zeros(2)) == 0.0


def test_broken_layer_ranked_first_and_keeping_it_recovers() -> None:
    intact = diagnose(MODEL, "torch-int8-dynamic", target_cosine=None)
    d = diagnose(
        MODEL, "torch-int8-dynamic", target_cosine=TARGET, build_float_model=broken_model, fingerprint="broken"
    )
    worst = d.worst_first()
    assert worst[0].name == BROKEN
    # The planted outlier crushes that layer alone: far below every other layer's local SQNR.
    assert worst[0].local_sqnr_db < 10.0 < worst[1].local_sqnr_db
    # The weight's SQNR looks fine (the outliers dominate its norm and survive): only the layer's
    # output on real activations shows the damage, which is why the ranking uses it.
    assert worst[0].weight_sqnr_db is not None and worst[0].weight_sqnr_db > 30.0
    assert d.final["cosine"] < TARGET < intact.final["cosine"]
    keep = d.keep_in_float
    assert keep is not None and keep.reached
    assert keep.layers == [BROKEN]
    assert keep.verified_cosine >= TARGET
    # Verified by measurement: the step for one layer kept is the re-quantized model's output.
    assert [s.kept for s in keep.steps][:2] == [0, 1]
    assert keep.steps[1].cosine == keep.verified_cosine
    # Accumulated error never beats local error at the first quantized layer (nothing upstream).
    first = d.by_depth()[0]
    assert first.accumulated_sqnr_db == pytest.approx(first.local_sqnr_db)


def test_cli_end_to_end_on_a_broken_checkpoint(broken_dir: Path, tmp_path: Path) -> None:
    out_json, fig = tmp_path / "d.json", tmp_path / "d.png"
    args = ["diagnose", "--model", MODEL, "--path", "torch-int8-dynamic", "--weights", str(broken_dir)]
    result = CliRunner().invoke(main, [*args, "--top", "3", "--json", str(out_json), "--figure", str(fig)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    rank1 = next(line for line in lines if line.strip().startswith("1 "))
    assert BROKEN in rank1
    assert sum(1 for line in lines if line[:4].strip().isdigit()) == 3  # --top 3 rows
    assert "target reached" in result.output
    doc = json.loads(out_json.read_text())
    check(doc, "diagnosis")
    assert doc["layers_worst_first"][0]["name"] == BROKEN
    assert doc["keep_in_float"]["layers"] == [BROKEN]
    assert doc["fidelity_meaning"] == f"the method's error on the weights from {broken_dir}"
    assert doc["inputs"]["images"] == 8 and doc["inputs"]["metrics"]["sqnr_db"]
    assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert doc["figure"] == str(fig)


def test_random_weights_are_labelled_untrained(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        ["diagnose", "--model", MODEL, "--path", "torch-int8-dynamic", "--no-keep-search", "--out", str(tmp_path)],
    )
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / f"{MODEL}__torch-int8-dynamic.diagnosis.json").read_text())
    assert "untrained" in doc["fidelity_meaning"]
    assert doc["keep_in_float"] is None
    assert (tmp_path / f"{MODEL}__torch-int8-dynamic.png").is_file()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--model", MODEL, "--path", "torch-fp16"], "supported paths: " + ", ".join(SUPPORTED_PATHS)),
        (["--model", MODEL, "--path", "no-such-path"], "diagnose does not support path"),
        (["--model", "no-such-model", "--path", "torch-int8-dynamic"], "unknown model 'no-such-model'"),
    ],
)
def test_bad_input_is_one_line_exit_2(args: list[str], needle: str) -> None:
    result = CliRunner().invoke(main, ["diagnose", *args])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("qkit: error: ") and needle in lines[0], result.output


def test_ort_static_qdq_diagnosis(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    d = diagnose(MODEL, "ort-int8-static-qdq", target_cosine=0.9999, cache_dir=str(tmp_path))
    by_name = {layer.name: layer for layer in d.layers}
    # Linears named by the torch module the exporter recorded; every one of them quantized.
    assert {"vit.layers.0.attention.q_proj", "vit.layers.1.mlp.fc2", "classifier"} <= set(by_name)
    assert all(layer.node for layer in d.layers)
    for layer in d.layers:
        assert 10.0 < layer.local_sqnr_db < 80.0, layer
        assert -1.0 <= layer.accumulated_cosine <= 1.0
    first = d.by_depth()[0]
    assert first.accumulated_sqnr_db == pytest.approx(first.local_sqnr_db, abs=0.5)
    keep = d.keep_in_float
    assert keep is not None
    assert keep.nodes and len(keep.nodes) == len(keep.layers)
    # Verified: the kept set's cosine is a measured re-quantization that beats the full model's.
    assert keep.verified_cosine > d.final["cosine"]
    assert keep.reached == (keep.verified_cosine >= 0.9999)


def test_ort_requantizing_with_nothing_kept_remakes_the_same_model(tmp_path: Path) -> None:
    """Keep-in-float re-quantization with nothing kept gives exactly the diagnosed QDQ graph."""
    pytest.importorskip("onnxruntime")
    from kit.diagnose.ort_qdq import OrtStaticBackend
    from kit.models.build import example_inputs

    spec = get_model(MODEL)
    model, _ = build_model(spec)
    backend = OrtStaticBackend(spec, lambda: model, "adapter-check", str(tmp_path))
    try:
        x = example_inputs(spec, 4, seed=7)
        np.testing.assert_array_equal(backend.quantized_output([], x), backend._run(backend.qdq_path, x))
    finally:
        backend.close()


def test_diagnose_a_trained_checkpoint(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    from support.trained_vit import trained_checkpoint

    weights, _, _ = trained_checkpoint(tmp_path_factory.getbasetemp() / "trained-digits-vit")
    out = tmp_path / "t.json"
    args = ["diagnose", "--model", MODEL, "--path", "bnb-nf4", "--weights", str(weights)]
    result = CliRunner().invoke(main, [*args, "--target-cosine", "0.999", "--json", str(out)])
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert doc["weights"] == str(weights) and "untrained" not in doc["fidelity_meaning"]
    keep = doc["keep_in_float"]
    assert keep["verified_cosine"] >= doc["final_output"]["cosine"]
    assert keep["reached"] == (keep["verified_cosine"] >= 0.999)
    print("trained tiny-vit, bnb-nf4:", doc["final_output"]["cosine"], "->", keep["verified_cosine"], keep["layers"])
