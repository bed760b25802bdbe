"""FLOPs per forward (FlopCounterMode, cached), achieved TFLOP/s and the peak for the path's math."""

from __future__ import annotations

import json
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from kit.measure import compute  # noqa: E402
from kit.models.flops import forward_flops  # noqa: E402
from kit.models.registry import get_model  # noqa: E402
from kit.models.tiny import tiny_spec  # noqa: E402


def _analytic(spec: Any) -> int:
    return forward_flops(
        spec.family, spec.config, spec.model_class, image_size=spec.image_size, model_kwargs=spec.model_kwargs
    ).flops


@pytest.mark.parametrize("family", ["vit", "deit", "mobilevit"])
def test_counted_flops_match_the_analytic_count(family: str, tmp_path: Any) -> None:
    spec = tiny_spec(family)
    counted = compute.count_flops(spec, cache_dir=tmp_path)
    assert counted["flops_per_sample"] == _analytic(spec)
    assert counted["counted_on"].startswith("FP32 model built on the meta device")
    assert counted["cached"] is False


def test_counts_are_cached_once_per_model(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = get_model("vit-base-224-production")
    first = compute.count_flops(spec, cache_dir=tmp_path)
    assert first["flops_per_sample"] == _analytic(spec)  # ViT-B/16: 35.13 GFLOPs
    assert round(first["flops_per_sample"] / 1e9, 2) == 35.13
    data = json.loads((tmp_path / compute.CACHE_FILE).read_text())
    assert compute.cache_key(spec) in data["entries"]

    def boom(_spec: Any) -> Any:
        raise AssertionError("counted twice")

    monkeypatch.setattr(compute, "_count_meta", boom)
    again = compute.count_flops(spec, cache_dir=tmp_path)
    assert again["cached"] is True and again["flops_per_sample"] == first["flops_per_sample"]


def test_fallback_counts_the_float_model_and_refuses_a_quantized_one(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kit.models.build import build_model

    spec = tiny_spec("vit")

    def no_meta(_spec: Any) -> Any:
        raise RuntimeError("meta build unsupported")

    monkeypatch.setattr(compute, "_count_meta", no_meta)
    model, _ = build_model(spec, weights="random", seed=0)
    counted = compute.count_flops(spec, model, cache_dir=tmp_path / "a")
    assert counted["flops_per_sample"] == _analytic(spec)
    assert "cell's float model" in counted["counted_on"]

    qmodel = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    counted = compute.count_flops(spec, qmodel, cache_dir=tmp_path / "b")
    assert counted["flops_per_sample"] is None and "quantized" in counted["error"]


def test_achieved_rate() -> None:
    assert compute.achieved(1e12, 1000.0) == pytest.approx(1.0)
    assert compute.achieved(35.13e9, 1.0) == pytest.approx(35.13)
    assert compute.achieved(1e12, 0.0) is None


def test_math_class_follows_the_declared_class_and_tf32() -> None:
    assert compute.math_class("fp16")[0] == "fp16"
    assert compute.math_class("bf16")[0] == "bf16"
    assert compute.math_class("int8")[0] == "int8"
    assert compute.math_class("int4", {"settings": {"compute_dtype": "float16"}})[0] == "fp16"
    assert compute.math_class("int4", {"settings": {"compute_dtype": "bfloat16"}})[0] == "bf16"
    assert compute.math_class("fp32", math={"tf32_matmul": True})[0] == "tf32"
    assert compute.math_class("fp32", math={"tf32_matmul": False, "float32_matmul_precision": "highest"})[0] == "fp32"
    assert compute.math_class(None)[0] is None and compute.math_class("fp8")[0] is None


def test_every_registered_path_has_a_math_class_compute_knows() -> None:
    # The class comes from the path's declaration, not from its name: a path named without any
    # dtype in it still gets its peak, and every declared class maps to a peak kind.
    from kit.paths.base import MATH_CLASSES, path_facts

    for declared in MATH_CLASSES:
        assert compute.math_class(declared, math={"tf32_matmul": False})[0] is not None, declared
    for name, facts in path_facts().items():
        cls, _ = compute.math_class(facts.math_class, {"settings": {"compute_dtype": "bfloat16"}})
        expected = {"int4": "bf16"}.get(facts.math_class, facts.math_class)
        assert cls in (expected, "tf32"), name


def test_compute_section_scales_by_batch_and_takes_the_card_peak(tmp_path: Any) -> None:
    spec = get_model("vit-huge-patch14-2020")
    section = compute.compute_section(
        spec, None, 32, 100.0, "NVIDIA H100 80GB HBM3", declared_math="fp16", cache_dir=tmp_path
    )
    per_sample = _analytic(spec)
    assert section["method"] == "torch.utils.flop_counter.FlopCounterMode, 1 MAC = 2 FLOPs"
    assert section["flops_per_sample"] == per_sample
    assert section["flops_per_forward"] == 32 * per_sample
    assert section["achieved_tflops"] == pytest.approx(32 * per_sample / 0.1 / 1e12)
    assert "H100" in section["gpu_table_entry"]
    assert section["peak_kind"] == "FP16 tensor dense"
    assert section["fraction_of_peak"] == pytest.approx(section["achieved_tflops"] / section["peak_tflops"])


def test_compute_section_on_cpu_and_unknown_gpu(tmp_path: Any) -> None:
    spec = tiny_spec("vit")
    cpu = compute.compute_section(spec, None, 4, 2.0, None, declared_math="int8", cache_dir=tmp_path)
    assert cpu["achieved_tflops"] > 0
    assert cpu["peak_tflops"] is None and cpu["fraction_of_peak"] is None and "CPU" in cpu["reason"]
    odd = compute.compute_section(spec, None, 4, 2.0, "Imaginary GPU 9000", declared_math="fp16", cache_dir=tmp_path)
    assert odd["peak_tflops"] is None and odd["reason"]


@pytest.mark.cuda
def test_compute_section_on_this_gpu(tmp_path: Any) -> None:
    name = torch.cuda.get_device_name(0)
    section = compute.compute_section(tiny_spec("vit"), None, 1, 1.0, name, declared_math="fp16", cache_dir=tmp_path)
    assert section["flops_per_forward"] > 0
    if section["gpu_table_entry"] is not None:
        assert section["peak_tflops"] > 0
