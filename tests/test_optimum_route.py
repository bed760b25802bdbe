"""optimum's ONNX Runtime route (kit/export/optimum_route.py).

Two environments, each with tests that run there and can fail:
* the CPU venv (transformers 5, optimum not installable): the route says why it is unavailable,
  and refuses with that reason;
* the cuda-stack venv (`make docker-check-stack`: transformers 4.55.4, optimum 2.1.0 +
  optimum-onnx 0.1.0): a tiny ViT is exported, optimized and dynamically quantized by optimum,
  and the outputs are checked against the float model.
The tests of the other environment are skipped, each with the reason optimum_status gave.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support.prepare import prepare_context

from kit.export.onnx_export import run_on_cpu
from kit.export.optimum_route import (
    OptimumUnavailable,
    cosine,
    optimum_model,
    optimum_status,
    task_for,
)
from kit.models.build import build_model, example_inputs, output_of, weights_fingerprint
from kit.models.tiny import tiny_spec

OK, WHY = optimum_status()
needs_optimum = pytest.mark.skipif(not OK, reason=f"optimum's route is unavailable here: {WHY}")
without_optimum = pytest.mark.skipif(OK, reason="optimum is importable here (the cuda-stack venv)")


@dataclass
class Ctx:
    """The fields of kit.paths.base.PrepareContext that the route reads."""

    spec: Any
    work_dir: str
    cache_dir: str
    weights_fingerprint: str
    options: dict[str, Any] = field(default_factory=dict)

    def build_float_model(self) -> Any:
        return build_model(self.spec, weights="random", seed=0)[0]


def _ctx(family: str, tmp_path: Path) -> Ctx:
    spec = tiny_spec(family)
    return Ctx(spec, str(tmp_path / "work"), str(tmp_path / "cache"), weights_fingerprint(spec, "random", 0))


# --------------------------------------------------------------------------- everywhere


def test_task_for_each_primary_output() -> None:
    assert task_for(tiny_spec("vit"), "vit") == ("image-classification", False)
    assert task_for(tiny_spec("deit"), "deit") == ("image-classification", False)
    assert task_for(tiny_spec("dino"), "vit") == ("feature-extraction", True)  # CLS token
    assert task_for(tiny_spec("dinov2"), "dinov2") == ("feature-extraction", True)  # pooler = CLS
    with pytest.raises(OptimumUnavailable, match="pooler_output"):
        task_for(tiny_spec("dinov2"), "vit")  # a pooler that is a layer of its own


def test_cosine_is_the_worst_sample() -> None:
    a = np.array([[1.0, 0.0], [1.0, 1.0]])
    assert cosine(a, a) == pytest.approx(1.0)
    assert cosine(a, np.array([[0.0, 1.0], [1.0, 1.0]])) == pytest.approx(0.0)


def test_bad_kind_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown optimum model kind"):
        optimum_model(_ctx("vit", tmp_path), "int4", optimize=False)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- without optimum


@without_optimum
def test_status_names_why_when_missing(tmp_path: Path) -> None:
    import transformers

    assert OK is False
    assert WHY.startswith("optimum is not installed") or WHY.startswith("optimum does not import")
    assert f"transformers {transformers.__version__}" in WHY
    if int(transformers.__version__.split(".")[0]) >= 5:  # the CPU lock
        assert "optimum-onnx 0.1.0" in WHY and "transformers<4.58" in WHY
    with pytest.raises(OptimumUnavailable) as info:
        optimum_model(_ctx("vit", tmp_path), "int8-dynamic", optimize=True)
    assert str(info.value) == WHY
    assert not (tmp_path / "cache").exists()  # refused before anything was built


# --------------------------------------------------------------------------- with optimum


@needs_optimum
@pytest.mark.parametrize("optimize", [False, True])
def test_tiny_vit_fp32_and_int8(tmp_path: Path, optimize: bool) -> None:
    ctx = _ctx("vit", tmp_path)
    model = ctx.build_float_model()
    x = example_inputs(ctx.spec, 3, seed=7)
    import torch

    expected = output_of(model, ctx.spec, torch.from_numpy(x)).numpy()

    fp32, rec32 = optimum_model(ctx, "fp32", optimize=optimize)
    assert cosine(run_on_cpu(fp32, x), expected) > 0.9999
    assert rec32["route"] == "optimum" and rec32["cache_hit"] is False
    assert rec32["versions"]["optimum"] and rec32["versions"]["onnx"] and rec32["versions"]["transformers"]
    assert rec32["export"]["task"] == "image-classification"
    assert isinstance(rec32["opset"], int) and rec32["opset"] >= 11
    assert rec32["quantization"] is None
    if optimize:
        assert rec32["optimization"]["optimization_config"]["optimization_level"] == 2
    else:
        assert rec32["optimization"] is None

    if optimize:
        # onnxruntime 1.18's quantizer cannot type ORTOptimizer's fused (com.microsoft) graph: on the
        # pinned stack this is a skipped cell with the reason (a newer stack that can, fails here).
        with pytest.raises(OptimumUnavailable, match="cannot quantize ORTOptimizer's output"):
            optimum_model(ctx, "int8-dynamic", optimize=True)
        return
    int8, rec8 = optimum_model(ctx, "int8-dynamic", optimize=optimize)
    assert int8 != fp32
    q = rec8["quantization"]
    assert q["quantization_config"]["is_static"] is False
    assert q["quantization_config"]["per_channel"] is False
    assert q["quantization_config"]["operators_to_quantize"] == ["MatMul"]
    assert "avx512_vnni" in q["quantization_config_factory"]
    # The quantizer really ran: integer kernels in the graph, FP32 MatMuls replaced.
    assert {"DynamicQuantizeLinear", "MatMulInteger"} & set(q["ops"]), q["ops"]
    got = run_on_cpu(int8, x)
    assert got.shape == expected.shape
    # Random weights, 2 layers, 10 logits: INT8 stays close but not exact.
    assert 0.95 < cosine(got, expected) < 1.0
    assert rec8["cosine_vs_torch"] > 0.95

    again, rec_again = optimum_model(ctx, "int8-dynamic", optimize=optimize)
    assert again == int8 and rec_again["cache_hit"] is True


@needs_optimum
def test_cls_token_backbone_gets_one_output(tmp_path: Path) -> None:
    ctx = _ctx("dino", tmp_path)  # ViTModel, primary output = CLS token of last_hidden_state
    x = example_inputs(ctx.spec, 2, seed=3)
    import torch

    expected = output_of(ctx.build_float_model(), ctx.spec, torch.from_numpy(x)).numpy()
    path, rec = optimum_model(ctx, "fp32", optimize=False)
    got = run_on_cpu(path, x)
    assert got.shape == expected.shape == (2, 32)
    assert cosine(got, expected) > 0.9999
    assert rec["export"]["task"] == "feature-extraction"


@needs_optimum
def test_optimizer_refuses_model_types_it_does_not_know(tmp_path: Path) -> None:
    ctx = _ctx("deit", tmp_path)
    with pytest.raises(OptimumUnavailable, match="ORTOptimizer does not support model type deit"):
        optimum_model(ctx, "fp32", optimize=True)
    # Without the optimizer DeiT-with-teacher exports (its averaged logits).
    x = example_inputs(ctx.spec, 2, seed=5)
    import torch

    expected = output_of(ctx.build_float_model(), ctx.spec, torch.from_numpy(x)).numpy()
    path, _ = optimum_model(ctx, "fp32", optimize=False)
    assert cosine(run_on_cpu(path, x), expected) > 0.9999


def _optimum_ctx(tmp_path: Path) -> Any:
    return prepare_context(tiny_spec("vit"), tmp_path / "cache", tmp_path, route="optimum")


@without_optimum
def test_route_optimum_is_a_skipped_cell_with_the_reason_here(tmp_path: Path) -> None:
    from kit.paths.base import PathUnavailable, get_path

    with pytest.raises(PathUnavailable, match="optimum is not installed"):
        get_path("ort-int8-dynamic").prepare(_optimum_ctx(tmp_path))
    with pytest.raises(PathUnavailable, match="route=optimum offers ort-fp32 and ort-int8-dynamic"):
        get_path("ort-int8-static-qdq").prepare(_optimum_ctx(tmp_path))


@needs_optimum
def test_route_optimum_through_the_ort_path_records_the_route(tmp_path: Path) -> None:
    from kit.paths.base import get_path

    prepared = get_path("ort-int8-dynamic").prepare(_optimum_ctx(tmp_path))
    try:
        out = prepared.run(example_inputs(tiny_spec("vit"), 2, seed=1235))
    finally:
        prepared.close()
    details = prepared.details
    assert details["route"] == "optimum" and "ORTQuantizer" in details["method"]
    assert details["export"]["exporter_version"].startswith("optimum ")
    assert details["quantization"] and np.isfinite(out).all()
