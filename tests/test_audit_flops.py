"""kit.models.flops: analytic FLOPs against torch's own counter, parameters against the registry,
and the GPU table audit uses with them."""

from __future__ import annotations

import pytest

from kit.hardware.gpus import GPUS, find_gpu
from kit.models.flops import UnsupportedArchitecture, forward_flops, model_flops
from kit.models.registry import MODELS, get_model


@pytest.mark.parametrize("model_id", sorted(MODELS))
def test_analytic_parameter_count_matches_registry(model_id: str) -> None:
    # the registry's real_params is the exact count of the built module; ours is analytic
    assert model_flops(model_id).params == get_model(model_id).real_params


def test_convention_one_mac_is_two_flops_and_batch_scales() -> None:
    one = model_flops("vit-huge-patch14-2020")
    assert one.flops == 2 * one.macs
    assert one.gflops == pytest.approx(334.6, rel=2e-3)  # ~167 GMACs: what fvcore calls "167 GFLOPs"
    assert one.tokens == 257
    eight = model_flops("vit-huge-patch14-2020", batch_size=8)
    assert eight.flops == 8 * one.flops


def test_resolution_fed_not_config_resolution() -> None:
    # DINOv2's config says 518 px (position-embedding grid); the processor feeds 224
    at224 = model_flops("dinov2-large-2023")
    at518 = model_flops("dinov2-large-2023", image_size=518)
    assert at224.image_size == 224 and at518.gflops > 5 * at224.gflops


def test_unknown_family_is_refused() -> None:
    with pytest.raises(UnsupportedArchitecture):
        forward_flops("resnet", {}, "ResNetModel")
    with pytest.raises(ValueError):
        forward_flops("vit", {}, "ViTModel", batch_size=0)


@pytest.mark.parametrize(
    "model_id",
    [
        "vit-base-224-production",
        "deit-base-distilled-384-edge",
        "dinov2-base-2023",
        "beit-base-pt22k-2021",
        "dino-vits16-production",
        "mobilevit-xxs-edge",
    ],
)
def test_flops_match_torch_flop_counter(model_id: str) -> None:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from torch.utils.flop_counter import FlopCounterMode

    spec = get_model(model_id)
    config = getattr(transformers, spec.config_class)(**spec.config)
    config._attn_implementation = "eager"  # plain matmuls the counter sees
    with torch.device("meta"):
        model = getattr(transformers, spec.model_class)(config, **spec.model_kwargs).eval()
        x = torch.empty(1, 3, spec.image_size, spec.image_size)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(pixel_values=x)
    assert model_flops(model_id).flops == pytest.approx(counter.get_total_flops(), rel=1e-3)


def test_gpu_table_has_sources_and_lookup() -> None:
    names = {g.name for g in GPUS}
    for want in ("4070 Ti SUPER", "T4", "A100", "H100", "H200", "L4", "4090"):
        assert any(want in n for n in names), want
    for g in GPUS:
        assert g.source and g.fp32_tflops > 0 and g.bandwidth_gbs > 0 and g.memory_gb > 0
        assert g.fp16_tensor_tflops >= g.fp32_tflops
    assert find_gpu("NVIDIA RTX 4070 Ti SUPER (16GB VRAM)").bandwidth_gbs == 672.0
    assert find_gpu("NVIDIA T4").memory_gb == 16
    assert find_gpu("GeForce RTX 4090").name.endswith("4090")
    assert find_gpu("Tesla T4").name == "NVIDIA T4"
    assert find_gpu("an unknown card") is None
    assert find_gpu(None) is None
