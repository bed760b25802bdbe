"""Which paths apply to a model, and why the others do not: the path facts and availability on
this machine (`kit.paths.base`) joined with what the model is made of (`kit.models.user.module_facts`).

Used to tell a person bringing their own model (``qkit bench --model DIR``, ``--models-file``)
what the kit will do with it before any cell runs; a path that does not apply is still planned
and becomes a skipped or failed cell with its reason, never a made-up number.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from kit.models.spec import ModelSpec
from kit.paths.base import get_path, path_facts

__all__ = ["PathFit", "path_fit"]


@dataclass(frozen=True)
class PathFit:
    path: str
    device: str
    applies: bool
    reason: str

    def line(self) -> str:
        return f"  {self.path:<22} {self.device:<5} {'applies' if self.applies else 'no':<8} {self.reason}"


def _replaces_linear(family: str, runtime: str, precision: str) -> bool:
    """The path quantizes ``nn.Linear`` modules (torch dynamic INT8, bitsandbytes)."""
    return family == "bitsandbytes" or (runtime == "torch" and precision in ("int8", "int4"))


def path_fit(spec: ModelSpec, devices: Iterable[str] = ("cpu",), paths: Iterable[str] | None = None) -> list[PathFit]:
    """One `PathFit` per (path, device), in display order."""
    from kit.models.user import module_facts

    facts = path_facts()
    model = module_facts(spec)
    share = model["linear_params"] / model["params"] if model["params"] else 0.0
    out: list[PathFit] = []
    for name in paths if paths is not None else list(facts):
        f = facts[name]
        for device in devices:
            ok, why = get_path(name).available(device)
            if not ok:
                out.append(PathFit(name, device, False, why))
            elif f.family == "bitsandbytes" and model["linear_layers"] - model["head_linear_layers"] == 0:
                out.append(
                    PathFit(
                        name,
                        device,
                        False,
                        f"{f.method} leaves the classifier head in float (transformers skips it) and "
                        f"{spec.id} has no other nn.Linear: nothing would be quantized",
                    )
                )
            elif _replaces_linear(f.family, f.runtime, f.precision):
                if model["linear_layers"] == 0:
                    out.append(
                        PathFit(name, device, False, f"{f.method} replaces nn.Linear layers; {spec.id} has none")
                    )
                else:
                    kept = model["head_linear_layers"] if f.family == "bitsandbytes" else 0
                    rest = "the classifier head and the rest stay" if kept else "the rest stays"
                    out.append(
                        PathFit(
                            name,
                            device,
                            True,
                            f"{f.method}: replaces {model['linear_layers'] - kept} of {model['linear_layers']} "
                            f"nn.Linear layers ({share:.0%} of the parameters are in nn.Linear); "
                            f"{rest} in float",
                        )
                    )
            elif f.runtime == "onnxruntime":
                out.append(
                    PathFit(
                        name,
                        device,
                        True,
                        f"{f.method}: exported with torch.onnx per model (a failed export is a failed cell)",
                    )
                )
            else:
                out.append(PathFit(name, device, True, f.method))
    return out
