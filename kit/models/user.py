"""User models: any Hugging Face image model, given as a local checkpoint directory or a models file.

A user model is a `ModelSpec` like the study's 16 (origin ``user``), derived from its
``config.json`` (and ``preprocessor_config.json`` when there is one) instead of being kept in
code, and registered with `kit.models.registry.register_user_model` so every ``get_model`` in
this process resolves it. Child processes that measure cells get the same sources through
``RunOptions.user_models`` and call `load_sources` again (derivation is deterministic).

Sources
-------
* a checkpoint directory: ``config.json`` (+ ``*.safetensors`` to load its weights with
  ``--weights checkpoint``); the id is the directory's name, made id-safe (`directory_id`);
* a models file (YAML or JSON): ``{"models": [ENTRY, ...]}`` or a bare list; ENTRY keys are
  `ENTRY_KEYS`: ``id`` and one of ``checkpoint`` (a directory) or ``config`` (a config.json file,
  or the config as a mapping), plus optional overrides (``image_size``, ``head``, ``output``,
  ``normalization`` or ``mean``/``std``, ``model_class``, ``model_kwargs``, ``checkpoint_id``,
  ``notes``). Relative paths are relative to the models file.

Every derived fact records where it came from in ``spec.sources`` (the models file, config.json,
preprocessor_config.json, a count on the meta device, or a stated default). A bad entry or an
architecture qkit cannot run is `kit.errors.BadInput`: one line naming the entry and what is
missing.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from kit.errors import BadInput
from kit.models.registry import get_model, register_user_model
from kit.models.spec import IMAGENET_DEFAULT, IMAGENET_STANDARD, NO_NORMALIZE, ModelSpec

__all__ = [
    "ENTRY_KEYS",
    "NORMALIZATIONS",
    "directory_id",
    "load_models_file",
    "load_sources",
    "module_facts",
    "spec_from_directory",
    "spec_from_entry",
]

ENTRY_KEYS: tuple[str, ...] = (
    "id",
    "checkpoint",
    "config",
    "checkpoint_id",
    "image_size",
    "head",
    "output",
    "normalization",
    "mean",
    "std",
    "model_class",
    "model_kwargs",
    "notes",
)
NORMALIZATIONS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "imagenet-default": IMAGENET_DEFAULT,
    "imagenet-standard": IMAGENET_STANDARD,
    "none": NO_NORMALIZE,
}
OUTPUTS = ("logits", "pooler_output", "cls_token")
_ID = re.compile(r"^[a-z0-9]+([._-][a-z0-9]+)*$")
# config.json keys that describe the file, not the architecture (and would not round-trip).
_META_KEYS = frozenset(
    {"architectures", "transformers_version", "model_type", "torch_dtype", "dtype", "_name_or_path", "auto_map"}
)
_MAX_CONFIG_BYTES = 4 << 20

# Sources already loaded in this process -> the ids they registered.
_LOADED: dict[str, list[str]] = {}
_FACTS: dict[str, dict[str, Any]] = {}


# ------------------------------------------------------------------------------- reading


def _read_json(path: Path, what: str) -> Any:
    try:
        if path.stat().st_size > _MAX_CONFIG_BYTES:
            raise BadInput(f"{path}: {what} is larger than {_MAX_CONFIG_BYTES >> 20} MiB")
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BadInput(f"{path}: cannot read {what}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInput(f"{path}: {what} is not JSON: {exc}") from None


def _read_models_file(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"models file {path}: cannot read it: {exc}") from None
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise BadInput(f"models file {path}: not JSON: {exc}") from None
    import yaml  # type: ignore[import-untyped]  # transformers depends on PyYAML; no stubs installed

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise BadInput(f"models file {path}: not YAML: {' '.join(str(exc).split())}") from None


def directory_id(directory: str | os.PathLike[str]) -> str:
    """An id for a checkpoint directory: its name, lower-cased, runs of other characters -> ``-``."""
    name = re.sub(r"[^a-z0-9]+", "-", Path(directory).resolve().name.lower()).strip("-")
    return name or "user-model"


# ------------------------------------------------------------------------------- deriving


def _config_class(model_type: str, where: str) -> Any:
    from transformers import CONFIG_MAPPING

    try:
        return CONFIG_MAPPING[model_type]
    except KeyError:
        import transformers

        raise BadInput(
            f"{where}: unsupported architecture: model_type {model_type!r} has no config class in "
            f"transformers {transformers.__version__} (missing: a transformers architecture for it)"
        ) from None


def _default_model_class(model_type: str, head: str | None) -> str | None:
    from transformers.models.auto import modeling_auto

    classifier = modeling_auto.MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES.get(model_type)
    backbone = modeling_auto.MODEL_MAPPING_NAMES.get(model_type)
    name = backbone if head == "backbone" else classifier or (backbone if head is None else None)
    return name if isinstance(name, str) else None


def _model_class(config: Mapping[str, Any], entry: Mapping[str, Any], where: str) -> tuple[str, str]:
    import inspect

    import transformers

    model_type = str(config["model_type"])
    if entry.get("model_class"):
        name, source = str(entry["model_class"]), "models file"
    elif isinstance(config.get("architectures"), list) and config["architectures"]:
        name, source = str(config["architectures"][0]), "config.json architectures[0]"
    else:
        name = _default_model_class(model_type, entry.get("head"))  # type: ignore[assignment]
        source = f"transformers' auto mapping for model_type {model_type!r}"
        if name is None:
            raise BadInput(
                f"{where}: unsupported architecture: no image-classification or backbone class for "
                f"model_type {model_type!r} (missing: 'architectures' in config.json or model_class)"
            )
    cls = getattr(transformers, name, None)
    if cls is None:
        raise BadInput(
            f"{where}: unsupported architecture: transformers {transformers.__version__} has no class "
            f"{name!r} (missing: that model class)"
        )
    if "pixel_values" not in inspect.signature(cls.forward).parameters:
        raise BadInput(f"{where}: unsupported architecture: {name} does not take pixel_values (not an image model)")
    return name, source


def _head(model_class: str, entry: Mapping[str, Any], where: str) -> tuple[str, str, str]:
    """(head, primary_output, source)."""
    derived = "classifier" if "ForImageClassification" in model_class else None
    if derived is None and model_class.endswith(("Model", "Backbone")):
        derived = "backbone"
    head = entry.get("head") or derived
    if head not in ("classifier", "backbone"):
        raise BadInput(
            f"{where}: unsupported architecture: {model_class} is neither an image classifier "
            "(*ForImageClassification) nor a backbone (*Model) (missing: head: classifier|backbone)"
        )
    source = "models file" if entry.get("head") else f"model class {model_class}"
    output = entry.get("output") or ("logits" if head == "classifier" else "pooler_output")
    if output not in OUTPUTS:
        raise BadInput(f"{where}: output {output!r} is not one of {', '.join(OUTPUTS)}")
    if (head == "classifier") != (output == "logits"):
        raise BadInput(f"{where}: a classifier's output is logits, a backbone's pooler_output or cls_token")
    return str(head), str(output), source


def _edge(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, list) and value and isinstance(value[0], int):
        return int(value[0])
    if isinstance(value, Mapping):
        for key in ("height", "shortest_edge"):
            if isinstance(value.get(key), int):
                return int(value[key])
    return None


def _image_size(
    config_obj: Any, preprocessor: Mapping[str, Any] | None, entry: Mapping[str, Any], where: str
) -> tuple[int, str]:
    if entry.get("image_size") is not None:
        size, source = _edge(entry["image_size"]), "models file"
    elif preprocessor and (_edge(preprocessor.get("crop_size")) or _edge(preprocessor.get("size"))):
        key = "crop_size" if _edge(preprocessor.get("crop_size")) else "size"
        size, source = _edge(preprocessor.get(key)), f"preprocessor_config.json {key}"
    elif _edge(getattr(config_obj, "image_size", None)):
        size, source = _edge(config_obj.image_size), "config image_size"
    else:
        raise BadInput(
            f"{where}: no input size in config.json or preprocessor_config.json "
            "(missing: image_size, which a models file entry can give)"
        )
    if size is None or size < 8:
        raise BadInput(f"{where}: image_size must be a whole number >= 8, got {entry.get('image_size')!r}")
    return size, source


def _triple(value: Any, what: str, where: str) -> tuple[float, float, float]:
    if isinstance(value, (list, tuple)) and len(value) == 3 and all(isinstance(v, (int, float)) for v in value):
        return (float(value[0]), float(value[1]), float(value[2]))
    raise BadInput(f"{where}: {what} must be three numbers, got {value!r}")


def _normalisation(
    preprocessor: Mapping[str, Any] | None, entry: Mapping[str, Any], where: str
) -> tuple[tuple[float, float, float], tuple[float, float, float], str]:
    named = entry.get("normalization")
    if named is not None:
        if named not in NORMALIZATIONS:
            raise BadInput(f"{where}: normalization {named!r} is not one of {', '.join(NORMALIZATIONS)}")
        mean, std = NORMALIZATIONS[named]
        return mean, std, f"models file ({named})"
    if entry.get("mean") is not None or entry.get("std") is not None:
        return _triple(entry.get("mean"), "mean", where), _triple(entry.get("std"), "std", where), "models file"
    if preprocessor:
        if preprocessor.get("do_normalize") is False:
            return *NO_NORMALIZE, "preprocessor_config.json (do_normalize false: rescale only)"
        if preprocessor.get("image_mean") is not None:
            mean = _triple(preprocessor.get("image_mean"), "image_mean", where)
            std = _triple(preprocessor.get("image_std"), "image_std", where)
            return mean, std, "preprocessor_config.json image_mean/image_std"
    return *IMAGENET_DEFAULT, "default: ImageNet mean/std (no preprocessor_config.json, none in the models file)"


def _clean_config(config: Mapping[str, Any], config_cls: Any) -> dict[str, Any]:
    """The architecture kwargs of ``config``: file metadata dropped, labels as ``num_labels``, and
    only keys the config class gives back unchanged (so a checkpoint's own config never differs)."""
    raw = {k: v for k, v in config.items() if k not in _META_KEYS and k not in ("id2label", "label2id")}
    if isinstance(config.get("id2label"), Mapping) and "num_labels" not in raw:
        raw["num_labels"] = len(config["id2label"])
    obj = config_cls(**json.loads(json.dumps(raw)))
    kept = {}
    for key, value in raw.items():
        found = getattr(obj, key, None)
        found = list(found) if isinstance(found, tuple) else found
        if found == value:
            kept[key] = value
    return kept


def module_facts(spec: ModelSpec) -> dict[str, Any]:
    """Counted on the meta device (no weights allocated): parameters, ``nn.Linear`` layers and
    their parameters (what dynamic INT8 and bitsandbytes replace), the classifier head's ``nn.Linear``
    layers, convolutions. Cached per spec."""
    key = json.dumps([spec.id, spec.config_class, spec.config, spec.model_class, spec.model_kwargs], sort_keys=True)
    if key in _FACTS:
        return _FACTS[key]
    import torch

    from kit.models.build import construct_uninitialised, param_count

    model = construct_uninitialised(spec, parameters_on_meta=True)
    linear = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    convs = [m for m in model.modules() if isinstance(m, torch.nn.modules.conv._ConvNd)]
    heads = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and "classifier" in n.split(".")[0]]
    facts = {
        "params": param_count(model),
        "linear_layers": len(linear),
        "head_linear_layers": len(heads),  # classifier heads: transformers keeps them in float for bitsandbytes
        "linear_params": sum(p.numel() for m in linear for p in m.parameters(recurse=False)),
        "conv_layers": len(convs),
    }
    _FACTS[key] = facts
    return facts


def _flops_source(family: str) -> str:
    from kit.models.flops import VIT_LIKE

    if family in VIT_LIKE or family == "mobilevit":
        return f"analytic (kit.models.flops, family {family}); each cell also counts them"
    return f"counted per cell by torch.utils.flop_counter (no analytic FLOP model for {family!r})"


def _derive(
    model_id: str,
    config: Mapping[str, Any],
    entry: Mapping[str, Any],
    *,
    checkpoint: str,
    config_source: str,
    preprocessor: Mapping[str, Any] | None,
    where: str,
) -> ModelSpec:
    import transformers

    if not _ID.match(model_id):
        raise BadInput(f"{where}: id {model_id!r} must be lower-case letters, digits and . _ - (e.g. my-vit-b16)")
    if config.get("auto_map"):
        raise BadInput(
            f"{where}: unsupported architecture: config.json needs remote code (auto_map), which qkit never runs"
        )
    if not isinstance(config.get("model_type"), str):
        raise BadInput(f"{where}: unsupported architecture: config has no model_type (missing: model_type)")
    model_type = config["model_type"]
    config_cls = _config_class(model_type, where)
    cls_name, cls_source = _model_class(config, entry, where)
    head, output, head_source = _head(cls_name, entry, where)
    try:
        kept = _clean_config(config, config_cls)
        config_obj = config_cls(**json.loads(json.dumps(kept)))
    except (TypeError, ValueError) as exc:
        raise BadInput(f"{where}: {config_cls.__name__} refuses this config: {exc}") from None
    size, size_source = _image_size(config_obj, preprocessor, entry, where)
    mean, std, norm_source = _normalisation(preprocessor, entry, where)
    kwargs = entry.get("model_kwargs") or {}
    if not isinstance(kwargs, Mapping):
        raise BadInput(f"{where}: model_kwargs must be a mapping")
    sources = {
        "config": config_source,
        "family": f"{config_source} model_type",
        "config_class": f"transformers.CONFIG_MAPPING[{model_type!r}]",
        "model_class": cls_source,
        "head": head_source,
        "image_size": size_source,
        "normalization": norm_source,
    }
    spec = ModelSpec(
        id=model_id,
        checkpoint=checkpoint,
        family=model_type,
        config_class=config_cls.__name__,
        config=kept,
        model_class=cls_name,
        head=head,
        primary_output=output,
        image_size=size,
        mean=mean,
        std=std,
        published_params=None,
        published_category=None,
        published_architecture=None,
        real_params=0,
        real_params_source="",
        notes=str(entry.get("notes") or ""),
        model_kwargs=dict(kwargs),
        num_channels=int(getattr(config_obj, "num_channels", 3) or 3),
        origin="user",
        sources=sources,
    )
    try:
        facts = module_facts(spec)
    except Exception as exc:  # transformers raises many kinds for a config it cannot build
        raise BadInput(f"{where}: {cls_name} cannot be built from this config: {type(exc).__name__}: {exc}") from None
    sources["real_params"] = (
        f"counted: {cls_name} built from {config_source} on the meta device with transformers "
        f"{transformers.__version__}"
    )
    sources["flops"] = _flops_source(model_type)
    sources["linear_layers"] = f"{facts['linear_layers']} nn.Linear layers, {facts['linear_params']} parameters"
    return replace(spec, real_params=int(facts["params"]), real_params_source=sources["real_params"], sources=sources)


def _preprocessor(directory: Path | None) -> dict[str, Any] | None:
    if directory is None or not (directory / "preprocessor_config.json").is_file():
        return None
    doc = _read_json(directory / "preprocessor_config.json", "preprocessor_config.json")
    return doc if isinstance(doc, dict) else None


def spec_from_directory(
    directory: str | os.PathLike[str], model_id: str | None = None, entry: Mapping[str, Any] | None = None
) -> ModelSpec:
    """The spec of a checkpoint directory (``config.json``, optional preprocessor_config.json)."""
    path = Path(directory).resolve()
    where = f"model {model_id or directory_id(path)} ({path})"
    if not path.is_dir():
        raise BadInput(f"{where}: checkpoint {str(directory)!r} is not a directory")
    if not (path / "config.json").is_file():
        raise BadInput(f"{where}: no config.json in the checkpoint directory (missing: config.json)")
    config = _read_json(path / "config.json", "config.json")
    if not isinstance(config, dict):
        raise BadInput(f"{where}: config.json is not a JSON object")
    return _derive(
        model_id or directory_id(path),
        config,
        entry or {},
        checkpoint=str(path),
        config_source=f"{path / 'config.json'}",
        preprocessor=_preprocessor(path),
        where=where,
    )


def spec_from_entry(entry: Any, base: Path, where: str) -> ModelSpec:
    """One entry of a models file (relative paths are relative to ``base``)."""
    if not isinstance(entry, Mapping):
        raise BadInput(f"{where}: an entry must be a mapping with at least id and checkpoint or config")
    unknown = sorted(set(entry) - set(ENTRY_KEYS))
    if unknown:
        raise BadInput(f"{where}: unknown key {unknown[0]!r}; valid keys: {', '.join(ENTRY_KEYS)}")
    model_id = entry.get("id")
    if not isinstance(model_id, str) or not model_id:
        raise BadInput(f"{where}: missing id")
    where = f"{where} (id {model_id})"
    if ("checkpoint" in entry) == ("config" in entry):
        raise BadInput(f"{where}: give exactly one of checkpoint (a directory) or config (a config.json)")
    if "checkpoint" in entry:
        directory = base / str(entry["checkpoint"])
        if not directory.is_dir():
            raise BadInput(f"{where}: checkpoint {str(entry['checkpoint'])!r} is not a directory")
        return spec_from_directory(directory, model_id, entry)
    raw = entry["config"]
    if isinstance(raw, Mapping):
        config, config_source = dict(raw), "models file (inline config)"
    else:
        config_path = (base / str(raw)).resolve()
        if not config_path.is_file():
            raise BadInput(f"{where}: config {str(raw)!r} is not a file")
        config, config_source = _read_json(config_path, "config"), str(config_path)
        if not isinstance(config, dict):
            raise BadInput(f"{where}: config {str(raw)!r} is not a JSON object")
    label = entry.get("checkpoint_id")
    checkpoint = f"(config only: {label or config_source}; random weights)"
    return _derive(
        model_id, config, entry, checkpoint=checkpoint, config_source=config_source, preprocessor=None, where=where
    )


def load_models_file(path: str | os.PathLike[str]) -> list[ModelSpec]:
    """Every entry of a models file as a spec (not registered); `BadInput` on the first bad one."""
    file = Path(path)
    if not file.is_file():
        raise BadInput(f"models file {path} does not exist")
    doc = _read_models_file(file)
    entries = doc.get("models") if isinstance(doc, Mapping) else doc
    if isinstance(doc, Mapping) and set(doc) - {"models"}:
        raise BadInput(f"models file {path}: unknown top-level key {sorted(set(doc) - {'models'})[0]!r}; use models:")
    if not isinstance(entries, list) or not entries:
        raise BadInput(f"models file {path}: expected a non-empty list of models (models: [...])")
    specs: list[ModelSpec] = []
    seen: set[str] = set()
    for i, entry in enumerate(entries, start=1):
        spec = spec_from_entry(entry, file.resolve().parent, f"models file {path}, entry {i}")
        if spec.id in seen:
            raise BadInput(f"models file {path}, entry {i}: id {spec.id!r} repeats an earlier entry")
        seen.add(spec.id)
        specs.append(spec)
    return specs


def _register(spec: ModelSpec) -> str:
    try:
        return register_user_model(spec).id
    except ValueError as exc:
        raise BadInput(str(exc)) from None


def load_sources(sources: Iterable[str]) -> list[str]:
    """Register the user models of each source (a checkpoint directory or a models file) in this
    process, once per source; returns their ids in order. Used by the CLI and by each cell's child."""
    ids: list[str] = []
    for source in sources:
        key = str(Path(source).resolve())
        if key not in _LOADED:
            specs = [spec_from_directory(key)] if Path(key).is_dir() else load_models_file(key)
            _LOADED[key] = [_register(s) for s in specs]
        ids.extend(_LOADED[key])
    return ids


def describe(model_id: str) -> list[str]:
    """Lines for a person: what the kit derived for a model and where each fact came from."""
    spec = get_model(model_id)
    lines = [
        f"{spec.id}: {spec.model_class} ({spec.config_class}, family {spec.family}), {spec.head} "
        f"-> {spec.primary_output}, {spec.image_size} px, {spec.real_params / 1e6:.2f}M parameters",
        f"  checkpoint: {spec.checkpoint}",
    ]
    lines += [f"  {k}: {v}" for k, v in spec.sources.items()]
    return lines
