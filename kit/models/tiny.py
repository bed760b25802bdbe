"""Tiny specs, one per family, for everyone's tests: same classes and code paths as the study's
models, a few tens of thousands of parameters, 32-64 px inputs, built in well under a second.

They are not in `MODELS` (the study has exactly 16); ask for them with `tiny_spec(family)` or
`get_tiny(id)`. ``real_params`` is the count of ``model_class`` built from ``config`` with
transformers 5.23.0; tests/test_models.py rebuilds and checks it.
"""

from __future__ import annotations

from typing import Any

from kit.models.spec import IMAGENET_DEFAULT, IMAGENET_STANDARD, NO_NORMALIZE, ModelSpec

TINY_FAMILIES: tuple[str, ...] = ("vit", "deit", "dino", "dinov2", "beit", "mobilevit")

_SOURCE = "computed: {cls} built from this config with transformers 5.23.0 (tests re-check it)"
# Width/depth shared by the transformer families: 2 layers, 2 heads, hidden 32.
_TRANSFORMER = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
    "image_size": 32,
    "patch_size": 8,
    "num_channels": 3,
}
_NUM_LABELS = 10


def _tiny(family: str, **kw: Any) -> ModelSpec:
    return ModelSpec(
        id=f"tiny-{family}",
        checkpoint="(none: tiny test config)",
        family=family,
        published_params=None,
        published_category=None,
        published_architecture=None,
        real_params_source=_SOURCE.format(cls=kw["model_class"]),
        origin="tiny",
        **kw,
    )


_TINY: dict[str, ModelSpec] = {
    "vit": _tiny(
        "vit",
        config_class="ViTConfig",
        config={**_TRANSFORMER, "qkv_bias": True, "layer_norm_eps": 1e-12, "num_labels": _NUM_LABELS},
        model_class="ViTForImageClassification",
        head="classifier",
        primary_output="logits",
        image_size=32,
        mean=IMAGENET_STANDARD[0],
        std=IMAGENET_STANDARD[1],
        real_params=24_234,
        notes="Like vit-base-224-production (ViTForImageClassification).",
    ),
    "deit": _tiny(
        "deit",
        config_class="DeiTConfig",
        config={**_TRANSFORMER, "qkv_bias": True, "layer_norm_eps": 1e-12, "num_labels": _NUM_LABELS},
        model_class="DeiTForImageClassificationWithTeacher",
        head="classifier",
        primary_output="logits",
        image_size=32,
        mean=IMAGENET_DEFAULT[0],
        std=IMAGENET_DEFAULT[1],
        real_params=24_628,
        notes="Like the distilled DeiTs: CLS + distillation token, averaged logits.",
    ),
    "dino": _tiny(
        "dino",
        config_class="ViTConfig",
        config={**_TRANSFORMER, "qkv_bias": True, "layer_norm_eps": 1e-12},
        model_class="ViTModel",
        model_kwargs={"add_pooling_layer": False},
        head="backbone",
        primary_output="cls_token",
        image_size=32,
        mean=IMAGENET_DEFAULT[0],
        std=IMAGENET_DEFAULT[1],
        real_params=23_904,
        notes="Like the DINO models: ViTModel without pooler, CLS token output.",
    ),
    "dinov2": _tiny(
        "dinov2",
        config_class="Dinov2Config",
        config={k: v for k, v in _TRANSFORMER.items() if k != "intermediate_size"}
        | {
            "mlp_ratio": 2,
            "image_size": 48,
            "layerscale_value": 1.0,
            "layer_norm_eps": 1e-6,
            "qkv_bias": True,
            "use_swiglu_ffn": False,
            "drop_path_rate": 0.0,
        },
        model_class="Dinov2Model",
        head="backbone",
        primary_output="pooler_output",
        image_size=32,
        mean=IMAGENET_DEFAULT[0],
        std=IMAGENET_DEFAULT[1],
        real_params=24_704,
        notes=(
            "Like the DINOv2 models: config image_size (48) larger than the 32 px fed, so the "
            "position-embedding interpolation path runs as it does at 518 vs 224."
        ),
    ),
    "beit": _tiny(
        "beit",
        config_class="BeitConfig",
        config={
            **_TRANSFORMER,
            "layer_norm_eps": 1e-12,
            "use_absolute_position_embeddings": False,
            "use_relative_position_bias": True,
            "use_shared_relative_position_bias": False,
            "use_mask_token": False,
            "use_mean_pooling": True,
            "layer_scale_init_value": 0.1,
            "num_labels": _NUM_LABELS,
        },
        model_class="BeitForImageClassification",
        head="classifier",
        primary_output="logits",
        image_size=32,
        mean=IMAGENET_STANDARD[0],
        std=IMAGENET_STANDARD[1],
        real_params=23_962,
        notes="Like beit-large-2021: per-layer relative position bias, mean pooling, classifier.",
    ),
    "mobilevit": _tiny(
        "mobilevit",
        config_class="MobileViTConfig",
        config={
            "num_channels": 3,
            "image_size": 64,
            "patch_size": 2,
            "hidden_sizes": [16, 24, 32],
            "neck_hidden_sizes": [8, 8, 16, 16, 24, 32, 64],
            "num_attention_heads": 2,
            "mlp_ratio": 2.0,
            "expand_ratio": 2.0,
            "hidden_act": "silu",
            "conv_kernel_size": 3,
            "output_stride": 32,
            "qkv_bias": True,
            "layer_norm_eps": 1e-5,
            "num_labels": _NUM_LABELS,
        },
        model_class="MobileViTForImageClassification",
        head="classifier",
        primary_output="logits",
        image_size=64,
        mean=NO_NORMALIZE[0],
        std=NO_NORMALIZE[1],
        real_params=117_666,
        notes="Like the MobileViTs: BatchNorm convs + transformer blocks, 7 neck sizes.",
    ),
}


def tiny_spec(family: str) -> ModelSpec:
    """The tiny spec of ``family`` (one of `TINY_FAMILIES`); ``KeyError`` listing them otherwise."""
    try:
        return _TINY[family]
    except KeyError:
        raise KeyError(f"unknown family {family!r}; tiny families: {', '.join(TINY_FAMILIES)}") from None


def tiny_ids() -> list[str]:
    """``tiny-<family>`` for every family."""
    return [spec.id for spec in _TINY.values()]


def get_tiny(model_id: str) -> ModelSpec:
    """The tiny spec named ``model_id`` (``tiny-vit`` ...); ``KeyError`` listing them otherwise."""
    for spec in _TINY.values():
        if spec.id == model_id:
            return spec
    raise KeyError(f"unknown tiny model {model_id!r}; tiny models: {', '.join(tiny_ids())}")
