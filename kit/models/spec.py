"""What a model is to the kit: `ModelSpec`, validated on construction, and the vocabularies it uses.

A leaf module: the study's registry (`kit.models.registry`) and the tiny test models
(`kit.models.tiny`) both build specs from it, and neither imports the other's data to do so.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

FAMILIES: tuple[str, ...] = ("vit", "deit", "dino", "dinov2", "beit", "mobilevit")
# Where a spec comes from: the study's registry, the tiny test models, or a user's checkpoint
# directory / models file (`kit.models.user`). A user model's family is its config's
# ``model_type`` (``swin``, ``convnext`` ...), so it is not limited to `FAMILIES`.
ORIGINS: tuple[str, ...] = ("study", "tiny", "user")
_MODEL_TYPE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
HEADS: tuple[str, ...] = ("classifier", "backbone")
# What `kit.models.build.output_of` returns for a spec (see its docstring).
PRIMARY_OUTPUTS: tuple[str, ...] = ("logits", "pooler_output", "cls_token")

# Normalisation constants of the image processors the checkpoints ship with.
IMAGENET_STANDARD = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))  # Google ViT, BEiT
IMAGENET_DEFAULT = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))  # DeiT, DINO, DINOv2
NO_NORMALIZE = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))  # MobileViT: rescale to [0, 1] only


@dataclass(frozen=True)
class ModelSpec:
    """One model of the study. Treat ``config`` and ``model_kwargs`` as read-only.

    ``config`` holds the kwargs of ``config_class``; ``model_kwargs`` the extra constructor
    kwargs of ``model_class`` (e.g. ``add_pooling_layer=False``), passed to ``from_pretrained``
    as well so a local checkpoint loads into exactly the module counted in ``real_params``.
    """

    id: str
    checkpoint: str
    family: str
    config_class: str
    config: dict[str, Any] = field(hash=False)
    model_class: str
    head: str
    primary_output: str
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    published_params: int | None
    published_category: str | None
    published_architecture: str | None
    real_params: int
    real_params_source: str
    notes: str = ""
    model_kwargs: dict[str, Any] = field(default_factory=dict, hash=False)
    num_channels: int = 3
    origin: str = "study"
    # Where each derived fact came from (user models: config.json, preprocessor_config.json, the
    # models file, a default), keyed by the field name; empty for the study's hand-kept specs.
    sources: dict[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        # Fail at import time on a malformed entry rather than deep inside a run.
        if self.origin not in ORIGINS:
            raise ValueError(f"{self.id}: origin {self.origin!r} not in {ORIGINS}")
        if self.origin == "user":
            if not _MODEL_TYPE.match(self.family):
                raise ValueError(f"{self.id}: family {self.family!r} is not a model_type name")
        elif self.family not in FAMILIES:
            raise ValueError(f"{self.id}: family {self.family!r} not in {FAMILIES}")
        if self.head not in HEADS:
            raise ValueError(f"{self.id}: head {self.head!r} not in {HEADS}")
        if self.primary_output not in PRIMARY_OUTPUTS:
            raise ValueError(f"{self.id}: primary_output {self.primary_output!r} not in {PRIMARY_OUTPUTS}")
        if (self.head == "classifier") != (self.primary_output == "logits"):
            raise ValueError(f"{self.id}: a classifier returns logits, a backbone features")

    def input_shape(self, batch_size: int) -> tuple[int, int, int, int]:
        """NCHW shape of one input batch."""
        return (batch_size, self.num_channels, self.image_size, self.image_size)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (for result documents)."""
        return asdict(self)
