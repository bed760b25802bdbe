"""Analytic FLOPs (and parameter split) per forward pass, from a transformers config.

Convention
----------
* **1 multiply-add (MAC) = 2 FLOPs.** Many papers and model cards quote *MACs* and call them
  FLOPs (fvcore, ptflops: "ViT-H/14 = 167 GFLOPs"); here ``flops == 2 * macs`` always, which is
  also what ``torch.utils.flop_counter`` and vendor peak-FLOP/s figures count. So ViT-H/14 at
  224 px is ~167 GMACs = ~334 GFLOPs.
* Only matrix products and convolutions are counted: patch embedding, Q/K/V/output projections,
  the two attention matmuls (QK^T and AV), the MLP, poolers and heads. Norms, softmax, GELU,
  residual adds, position-embedding interpolation and BatchNorm are left out: together they are
  under 1-2% of the total for these models, and leaving them out makes the count a *lower bound*
  on the work, which is what the roofline checks in ``kit.claims.audit`` need (a lower bound on
  work gives a lower bound on time, so a claimed time below it is impossible).
* Batch size multiplies everything (no batch-shared work is counted).

Nothing here imports torch or transformers (like ``kit.models.registry``): the audit runs without
building a model. ``tests/test_audit_flops.py`` checks the counts against
``torch.utils.flop_counter.FlopCounterMode`` on meta-device models and the parameter totals
against the registry's ``real_params``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FlopCount", "UnsupportedArchitecture", "forward_flops", "model_flops"]

VIT_LIKE = ("vit", "deit", "dino", "dinov2", "beit")


class UnsupportedArchitecture(ValueError):
    """The family/config is not one this module knows how to count."""


@dataclass(frozen=True)
class FlopCount:
    """Work of one forward pass.

    ``linear_params`` are the weights and biases of ``nn.Linear`` layers: what bitsandbytes
    replaces with 8-bit or 4-bit layers; everything else (convolutions, embeddings, norms) stays
    in 16/32-bit. ``params`` is the analytic total (checked against the registry's exact count).
    """

    macs: int
    image_size: int
    batch_size: int
    params: int
    linear_params: int
    tokens: int | None = None
    breakdown: dict[str, int] = field(default_factory=dict)  # MACs per component

    @property
    def flops(self) -> int:
        # 1 multiply-add = 2 FLOPs (see module docstring).
        return 2 * self.macs

    @property
    def gflops(self) -> float:
        return self.flops / 1e9


def _get(config: Mapping[str, Any], key: str, default: Any) -> Any:
    value = config.get(key, default)
    return default if value is None else value


def _num_labels(config: Mapping[str, Any]) -> int:
    # transformers' PretrainedConfig defaults to 2 labels when neither num_labels nor id2label is set.
    if "num_labels" in config and config["num_labels"] is not None:
        return int(config["num_labels"])
    id2label = config.get("id2label")
    return len(id2label) if isinstance(id2label, Mapping) and id2label else 2


def _vit_like(
    family: str,
    config: Mapping[str, Any],
    model_class: str,
    image_size: int,
    model_kwargs: Mapping[str, Any],
) -> tuple[int, int, int, int, dict[str, int]]:
    d = int(_get(config, "hidden_size", 768))
    layers = int(_get(config, "num_hidden_layers", 12))
    p = int(_get(config, "patch_size", 16))
    c = int(_get(config, "num_channels", 3))
    if family == "dinov2":
        inter = int(d * float(_get(config, "mlp_ratio", 4)))
    else:
        inter = int(_get(config, "intermediate_size", 4 * d))
    grid = image_size // p
    patches = grid * grid
    distilled = "WithTeacher" in model_class or "Distill" in model_class
    tokens = patches + 1 + (1 if distilled else 0)

    # MACs ---------------------------------------------------------------------------------
    patch_macs = patches * (c * p * p) * d
    proj_macs = layers * 4 * tokens * d * d  # Q, K, V and output projections
    attn_macs = layers * 2 * tokens * tokens * d  # QK^T and attention x V, all heads together
    mlp_macs = layers * 2 * tokens * d * inter
    head_macs = 0
    labels = _num_labels(config)
    has_pooler = False
    if model_class.endswith("ForImageClassification"):
        head_macs = (2 * d if family == "dinov2" else d) * labels  # DINOv2 head sees [CLS, mean]
    elif distilled:
        head_macs = 2 * d * labels  # class head + distillation head
    elif model_class in ("ViTModel", "DeiTModel"):
        has_pooler = bool(model_kwargs.get("add_pooling_layer", True))
        head_macs = d * d if has_pooler else 0
    breakdown = {
        "patch_embed": patch_macs,
        "attention_proj": proj_macs,
        "attention_matmul": attn_macs,
        "mlp": mlp_macs,
        "head": head_macs,
    }
    macs = sum(breakdown.values())

    # Parameters (for the bitsandbytes weight split and a cross-check of the registry) --------
    qkv_bias = bool(_get(config, "qkv_bias", True))
    # BEiT has q and v biases but no k bias
    qkv_b = 2 * d if family == "beit" else (3 * d if qkv_bias else 0)
    block_linear = 4 * d * d + qkv_b + d + 2 * d * inter + inter + d
    linear = layers * block_linear
    other = c * p * p * d + d  # patch embedding conv
    other += d * (2 if distilled else 1)  # CLS (+ distillation) token
    if family != "beit" or bool(_get(config, "use_absolute_position_embeddings", False)):
        if family == "dinov2":
            cfg_grid = int(_get(config, "image_size", 518)) // p
            other += (cfg_grid * cfg_grid + 1) * d
        else:
            cfg_grid = int(_get(config, "image_size", image_size)) // p
            other += (cfg_grid * cfg_grid + 1 + (1 if distilled else 0)) * d
    if family == "dinov2" or bool(_get(config, "use_mask_token", False)):
        other += d
    other += layers * 4 * d  # two LayerNorms per block
    if family == "dinov2" or (family == "beit" and float(_get(config, "layer_scale_init_value", 0.1)) > 0):
        other += layers * 2 * d  # layer scale
    if family == "beit":
        window = int(_get(config, "image_size", 224)) // p
        table = (2 * window - 1) ** 2 + 3
        heads = int(_get(config, "num_attention_heads", 12))
        if bool(_get(config, "use_relative_position_bias", False)):
            other += layers * table * heads
        if bool(_get(config, "use_shared_relative_position_bias", False)):
            other += table * heads
        other += 2 * d  # final LayerNorm (pooler LN with mean pooling, or the encoder's)
    else:
        other += 2 * d  # final LayerNorm
    if model_class.endswith("ForImageClassification"):
        linear += (2 * d if family == "dinov2" else d) * labels + labels
    elif distilled:
        linear += 2 * (d * labels + labels)
    elif has_pooler:
        linear += d * d + d
    return macs, linear + other, linear, tokens, breakdown


def _make_divisible(value: float, divisor: int = 8) -> int:
    # Same rule as transformers' MobileViT (and MobileNetV2) channel rounding.
    new_value = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if new_value < 0.9 * value:
        new_value += divisor
    return int(new_value)


class _ConvCounter:
    """Accumulates MACs/params of a MobileViT forward, tracking the feature-map size."""

    def __init__(self, size: int) -> None:
        self.h = self.w = size
        self.macs: dict[str, int] = {}
        self.params = 0  # everything but nn.Linear
        self.linear = 0

    def _add(self, key: str, macs: int) -> None:
        self.macs[key] = self.macs.get(key, 0) + macs

    def conv(self, key: str, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, norm: bool = True) -> None:
        pad = (k - 1) // 2
        self.h = (self.h + 2 * pad - k) // stride + 1
        self.w = (self.w + 2 * pad - k) // stride + 1
        self._add(key, self.h * self.w * cout * (cin // groups) * k * k)
        self.params += cout * (cin // groups) * k * k + (2 * cout if norm else 0)

    def inverted_residual(self, key: str, cin: int, cout: int, stride: int, expand: float) -> None:
        hidden = _make_divisible(round(cin * expand), 8)
        self.conv(key, cin, hidden, 1)
        self.conv(key, hidden, hidden, 3, stride=stride, groups=hidden)
        self.conv(key, hidden, cout, 1)

    def transformer(self, key: str, dim: int, stages: int, patch: int, heads_mlp_ratio: float) -> None:
        # Unfold: (H, W, dim) -> patch_area sequences of num_patches tokens each.
        ph = -(-self.h // patch)
        pw = -(-self.w // patch)
        seqs = patch * patch
        tokens = ph * pw
        inter = int(dim * heads_mlp_ratio)
        per = 4 * tokens * dim * dim + 2 * tokens * tokens * dim + 2 * tokens * dim * inter
        self._add(key, seqs * per * stages)
        block_linear = 4 * dim * dim + 4 * dim + 2 * dim * inter + inter + dim
        self.linear += stages * block_linear
        self.params += stages * 4 * dim + 2 * dim  # LayerNorms (the Linear weights are in .linear)


def _mobilevit(config: Mapping[str, Any], model_class: str, image_size: int) -> tuple[int, int, int, dict[str, int]]:
    neck = list(_get(config, "neck_hidden_sizes", [16, 32, 64, 96, 128, 160, 640]))
    hidden = list(_get(config, "hidden_sizes", [144, 192, 240]))
    expand = float(_get(config, "expand_ratio", 4.0))
    k = int(_get(config, "conv_kernel_size", 3))
    patch = int(_get(config, "patch_size", 2))
    mlp_ratio = float(_get(config, "mlp_ratio", 2.0))
    if int(_get(config, "output_stride", 32)) != 32:
        raise UnsupportedArchitecture("MobileViT with output_stride != 32 (dilated) is not counted")
    cc = _ConvCounter(image_size)
    cc.conv("stem", int(_get(config, "num_channels", 3)), neck[0], 3, stride=2)
    cc.inverted_residual("mv2", neck[0], neck[1], 1, expand)
    for i in range(3):
        cc.inverted_residual("mv2", neck[1] if i == 0 else neck[2], neck[2], 2 if i == 0 else 1, expand)
    for cin, cout, dim, stages in (
        (neck[2], neck[3], hidden[0], 2),
        (neck[3], neck[4], hidden[1], 4),
        (neck[4], neck[5], hidden[2], 3),
    ):
        cc.inverted_residual("mv2", cin, cout, 2, expand)  # downsampling layer
        cc.conv("mobilevit_local", cout, cout, k)
        cc.conv("mobilevit_local", cout, dim, 1, norm=False)
        cc.transformer("mobilevit_transformer", dim, stages, patch, mlp_ratio)
        cc.conv("mobilevit_fusion", dim, cout, 1)
        cc.conv("mobilevit_fusion", 2 * cout, cout, k)
    cc.conv("expand", neck[5], neck[6], 1)
    if model_class.endswith("ForImageClassification"):
        labels = _num_labels(config)
        cc._add("head", neck[6] * labels)
        cc.linear += neck[6] * labels + labels
    return sum(cc.macs.values()), cc.params + cc.linear, cc.linear, dict(cc.macs)


def forward_flops(
    family: str,
    config: Mapping[str, Any],
    model_class: str,
    image_size: int | None = None,
    batch_size: int = 1,
    model_kwargs: Mapping[str, Any] | None = None,
) -> FlopCount:
    """FLOPs of one forward pass of a model described by a transformers config dict.

    ``image_size`` is the size actually fed (it can differ from ``config['image_size']``:
    DINOv2's config says 518 but its processor crops 224); defaults to the config's.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    size = int(image_size if image_size is not None else _get(config, "image_size", 224))
    kwargs = model_kwargs or {}
    if family in VIT_LIKE:
        macs, params, linear, tokens, breakdown = _vit_like(family, config, model_class, size, kwargs)
    elif family == "mobilevit":
        macs, params, linear, breakdown = _mobilevit(config, model_class, size)
        tokens = None
    else:
        raise UnsupportedArchitecture(f"no FLOP model for family {family!r}")
    return FlopCount(
        macs=macs * batch_size,
        image_size=size,
        batch_size=batch_size,
        params=params,
        linear_params=linear,
        tokens=tokens,
        breakdown={k: v * batch_size for k, v in breakdown.items()},
    )


def model_flops(model_id: str, image_size: int | None = None, batch_size: int = 1) -> FlopCount:
    """FLOPs of a registry model at the resolution the registry says is fed (``spec.image_size``)."""
    from kit.models.registry import get_model

    spec = get_model(model_id)
    return forward_flops(
        spec.family,
        spec.config,
        spec.model_class,
        image_size=image_size if image_size is not None else spec.image_size,
        batch_size=batch_size,
        model_kwargs=getattr(spec, "model_kwargs", None),
    )
