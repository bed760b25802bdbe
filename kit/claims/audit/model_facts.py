"""What the kit knows of a study model, as the rules use it: the registry's exact parameter count,
its ``nn.Linear`` share and FLOPs per forward (``kit.models.flops``), patch size, width, heads,
depth, input size, head and checkpoint.

Part of the rules' toolbox (physics and method both read it). The registry and the FLOPs model are
the kit's own modules and are imported plainly: a bug in either fails loudly (the runner reports
it as an ``error`` finding of the rule that asked) instead of switching rules off.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from kit.models.flops import model_flops
from kit.models.registry import get_model, model_ids


@dataclass(frozen=True)
class Arch:
    params: int
    linear: int
    flops: float  # per forward at batch 1, at the fed resolution
    patch_size: int | None
    hidden_size: int | None
    heads: int | None
    layers: int | None
    image_size: int
    head: str
    checkpoint: str


def is_study_model(model: str) -> bool:
    """A model id of the study's registry (claims may name models the kit does not know)."""
    return model in model_ids()


def real_params(model: str) -> int | None:
    """The registry's exact parameter count; None for a model the registry does not list."""
    return int(get_model(model).real_params) if is_study_model(model) else None


@cache
def arch(model: str) -> Arch | None:
    """Registry facts for a study model id; None for a model the registry does not list."""
    if not is_study_model(model):
        return None
    spec = get_model(model)
    fc = model_flops(model)
    cfg = spec.config
    layers = cfg.get("num_hidden_layers")
    return Arch(
        params=int(spec.real_params),
        linear=int(fc.linear_params),
        flops=float(fc.flops),
        patch_size=cfg.get("patch_size"),
        hidden_size=cfg.get("hidden_size") if isinstance(cfg.get("hidden_size"), int) else None,
        heads=cfg.get("num_attention_heads"),
        layers=layers if isinstance(layers, int) else None,
        image_size=int(spec.image_size),
        head=spec.head,
        checkpoint=spec.checkpoint,
    )
