"""Turn a `ModelSpec` into a runnable FP32 CPU module: random seeded weights, a local directory, or the hub.

Works on transformers 4.40+ and 5.x: only APIs present in both are used (``_from_config`` with
``attn_implementation``, ``from_pretrained`` with ``output_loading_info``, ``no_init_weights``
from whichever module holds it, the class attribute ``_supports_sdpa``).

Random weights (``weights="random"``)
-------------------------------------
Built from the config kept in the registry, no download. transformers' own init is skipped
(no double init; it is also version-dependent, and for MobileViT it draws BatchNorm scales from
N(0, 0.02), which shrinks activations by ~50x per block until they are denormal: slow on CPU and
logits of ~1e-40 that make fidelity NaN). Instead `INIT_METHOD`:

* Linear / Conv weights ~ N(0, 1/fan_in) ("LeCun normal": keeps each layer's output variance
  equal to its input's), biases 0;
* every norm layer (LayerNorm, BatchNorm, ...): weight 1, bias 0;
* layer-scale vectors (DINOv2 ``lambda1``, BEiT ``lambda_1/2``): the config's init value;
* every other parameter (CLS/distillation/mask tokens, position embeddings, relative position
  bias tables): N(0, 0.02), transformers' own ``initializer_range``;
* BatchNorm running statistics: set from one forward pass over 8 seeded synthetic images, as in
  a trained network, whose running stats match its activations. Without this, eval-mode
  BatchNorm is the identity and SiLU stacks either shrink MobileViT's logits (~0.1, nearly the
  same for every input) or, with a larger gain, blow them up.

All draws come from one ``torch.Generator`` seeded with ``seed``, in ``named_modules`` order, so
a build is a pure function of (spec, seed, transformers/torch versions). With it every one of the
16 models gives finite, non-denormal primary outputs with std between ~0.2 and ~1 that change
from image to image (see tests/test_models.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kit.models.spec import ModelSpec

if TYPE_CHECKING:
    import torch

INIT_METHOD = (
    "qkit-lecun-v1: Linear/Conv weight ~ N(0, 1/fan_in), bias 0; norm weight 1, bias 0; "
    "layer-scale = config init value; other params (tokens, position embeddings, relative "
    "position tables) ~ N(0, 0.02); BatchNorm running stats from one train-mode pass over 8 "
    "seeded synthetic images; one torch.Generator(seed), named_modules order; transformers' "
    "own init skipped"
)
BN_CALIBRATION_IMAGES = 8
# Offsets the calibration images' seed from the measurement inputs' seed space.
_BN_CALIBRATION_SEED_SALT = 0xB17C
_LAYER_SCALE = re.compile(r"^(lambda_?\d|gamma_?\d|layer_scale)")
_SAFETENSORS_GLOB = "*.safetensors"


class WeightsUnavailable(RuntimeError):
    """The weights asked for cannot be had here (hub unreachable, directory without safetensors)."""


# --------------------------------------------------------------------------------- inputs


def example_inputs(spec: ModelSpec, batch_size: int, seed: int = 0) -> np.ndarray:
    """Seeded synthetic images: uniform pixels in [0, 1], normalised with the model's mean/std.

    float32, NCHW, C-contiguous, shape ``spec.input_shape(batch_size)``.
    """
    rng = np.random.default_rng(seed)
    pixels = rng.random(spec.input_shape(batch_size), dtype=np.float32)
    mean = np.asarray(spec.mean, dtype=np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(spec.std, dtype=np.float32).reshape(1, -1, 1, 1)
    return np.ascontiguousarray((pixels - mean) / std, dtype=np.float32)


# --------------------------------------------------------------------------------- outputs


def select_output(spec: ModelSpec, outputs: Any) -> torch.Tensor:
    """The primary output of a transformers model output object (see `output_of`)."""
    if spec.primary_output == "logits":
        return outputs.logits
    if spec.primary_output == "pooler_output":
        return outputs.pooler_output
    return outputs.last_hidden_state[:, 0]


def output_of(model: Any, spec: ModelSpec, pixel_values: torch.Tensor) -> torch.Tensor:
    """Run ``model`` and return its primary output, the tensor fidelity is measured on.

    * classifiers: ``logits``; for DeiT-with-teacher that is the mean of the CLS and
      distillation heads, which is what the model predicts with at inference;
    * backbones with a pooler in the checkpoint: ``pooler_output`` (ViT in21k: pre-trained
      dense+tanh on CLS; DINOv2: layer-normed CLS; BEiT: LayerNorm of mean patch token);
    * backbones without one (DINO): the CLS token of ``last_hidden_state`` (after the final
      LayerNorm), the feature DINO is evaluated on.

    ``spec.primary_output`` says which; gradients are not tracked.
    """
    import torch

    with torch.no_grad():
        return select_output(spec, model(pixel_values=pixel_values))


def primary_output_module(model: Any, spec: ModelSpec) -> torch.nn.Module:
    """``model`` wrapped so ``forward(pixel_values)`` returns only the primary output tensor.

    For exporters and tracers (ONNX, torch.compile) that want one tensor, not a ModelOutput.
    """
    import torch

    class PrimaryOutput(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
            return select_output(spec, self.model(pixel_values=pixel_values))

    return PrimaryOutput().eval()


def count_subnormal(tensor: torch.Tensor) -> int:
    """How many elements are denormal (non-zero and below the dtype's smallest normal)."""
    import torch

    if not tensor.is_floating_point():
        return 0
    tiny = torch.finfo(tensor.dtype).tiny
    return int(((tensor != 0) & (tensor.abs() < tiny)).sum().item())


def param_count(model: Any) -> int:
    """Number of parameters (shared ones once), as ``model.parameters()`` yields them."""
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------------- classes


def config_class(spec: ModelSpec) -> Any:
    import transformers

    return getattr(transformers, spec.config_class)


def model_class(spec: ModelSpec) -> Any:
    import transformers

    return getattr(transformers, spec.model_class)


def make_config(spec: ModelSpec) -> Any:
    """A fresh transformers config from the kwargs kept in the registry."""
    return config_class(spec)(**json.loads(json.dumps(spec.config)))  # deep copy: lists stay ours


def choose_attn_implementation(spec: ModelSpec) -> str:
    """``sdpa`` where this transformers supports it for the class, else ``eager``.

    The class attribute ``_supports_sdpa`` exists in 4.x and 5.x; e.g. ViT and BEiT gained SDPA
    after 4.40 and MobileViT (convolutions + its own attention) never did. BEiT with SDPA passes
    its relative position bias as a float ``attn_mask`` to ``scaled_dot_product_attention``; the
    value used is recorded in the build info so an exporter knows which graph it got.
    """
    if not getattr(model_class(spec), "_supports_sdpa", False):
        return "eager"
    try:
        # transformers 4.x refuses an explicit "sdpa" where torch is older than 2.1.1 (the study's
        # torch 2.1.0 image): ask it, and fall back to eager there. 5.x dropped the helper.
        from transformers.utils import is_torch_sdpa_available  # type: ignore[attr-defined]
    except ImportError:
        return "sdpa"
    return "sdpa" if is_torch_sdpa_available() else "eager"


# --------------------------------------------------------------------------------- random init


@contextlib.contextmanager
def _skip_hf_init() -> Iterator[None]:
    """transformers' ``no_init_weights`` (module moved in 5.x): no torch nor HF init at build."""
    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # transformers 4.x
        from transformers.modeling_utils import no_init_weights  # type: ignore[attr-defined,no-redef]
    with no_init_weights():
        yield


def _layer_scale_value(config: Any) -> float:
    for key in ("layerscale_value", "layer_scale_init_value"):
        value = getattr(config, key, None)
        if value is not None:
            return float(value)
    return 1.0


def _is_norm(module: Any) -> bool:
    import torch

    norm_types = (torch.nn.LayerNorm, torch.nn.GroupNorm, torch.nn.modules.batchnorm._BatchNorm)
    # Class-name test too, for custom norms (RMSNorm-like) a future version may introduce.
    return isinstance(module, norm_types) or "Norm" in type(module).__name__


def _init_module(module: Any, generator: Any, layer_scale: float) -> None:
    import torch

    if isinstance(module, (torch.nn.Linear, torch.nn.modules.conv._ConvNd)):
        fan_in = module.weight[0].numel()
        module.weight.normal_(0.0, 1.0 / math.sqrt(fan_in), generator=generator)
        if module.bias is not None:
            module.bias.zero_()
        return
    if _is_norm(module):
        for name, param in module.named_parameters(recurse=False):
            param.fill_(1.0 if name == "weight" else 0.0)
        if getattr(module, "running_mean", None) is not None:
            module.reset_running_stats()
        return
    for name, param in module.named_parameters(recurse=False):
        if _LAYER_SCALE.match(name):
            param.fill_(layer_scale)
        else:
            param.normal_(0.0, 0.02, generator=generator)


def _calibrate_batchnorm(model: Any, spec: ModelSpec, seed: int) -> bool:
    """Set BatchNorm running stats from one pass over seeded images; False if the model has none."""
    import torch

    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return False
    images = example_inputs(spec, BN_CALIBRATION_IMAGES, seed=seed + _BN_CALIBRATION_SEED_SALT)
    momenta = [m.momentum for m in norms]
    model.eval()
    for m in norms:
        m.train()
        m.momentum = None  # cumulative average: after one batch, the batch's own statistics
    with torch.no_grad():
        model(pixel_values=torch.from_numpy(images))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    model.eval()
    return True


def init_random_weights(model: Any, spec: ModelSpec, seed: int) -> None:
    """Apply `INIT_METHOD` in place (see the module docstring)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    layer_scale = _layer_scale_value(model.config)
    with torch.no_grad():
        for module in model.modules():
            _init_module(module, generator, layer_scale)
    _calibrate_batchnorm(model, spec, seed)


def construct_uninitialised(spec: ModelSpec, attn: str | None = None, *, parameters_on_meta: bool = False) -> Any:
    """``spec``'s module from its registry config, transformers' own init skipped: parameters
    allocated but not set, or on the meta device (no memory; buffers stay real either way).
    ``attn``: None is `choose_attn_implementation`."""
    import torch

    on_meta = _parameters_on_meta() if parameters_on_meta else contextlib.nullcontext()
    # fork_rng: constructors that call torch.randn must not move the caller's global RNG.
    with torch.random.fork_rng(devices=[]), _skip_hf_init(), on_meta:
        return model_class(spec)._from_config(
            make_config(spec), attn_implementation=attn or choose_attn_implementation(spec), **spec.model_kwargs
        )


def _build_random(spec: ModelSpec, seed: int, attn: str) -> Any:
    model = construct_uninitialised(spec, attn)
    init_random_weights(model, spec, seed)
    return model


def random_weights_file(cache_dir: str | os.PathLike[str], spec: ModelSpec, seed: int) -> Path:
    """Where a run keeps the seeded FP32 weights of ``spec`` (`build_model` with ``cache_dir``)."""
    return Path(cache_dir) / "weights" / f"{weights_fingerprint(spec, 'random', seed)}.pt"


def _build_random_cached(spec: ModelSpec, seed: int, attn: str, cache_dir: str | os.PathLike[str]) -> tuple[Any, str]:
    """The seeded model, its tensors loaded from the run's cache when an earlier process made them.

    A seeded init is a pure function of (spec, seed, versions) but costs: ViT-H/14 took 8.0 s to
    build on the reference 2-core Xeon against 1.2 s to load, and a matrix run builds each model
    once per torch cell process, export and reference (about 4 minutes in all). The file is keyed
    by `weights_fingerprint`; the loaded tensors are the same (tests/test_models.py), in ordinary
    process memory (read whole, not memory-mapped), so the memory phases are those of a build."""
    import torch

    from kit.documents import atomic_write_with

    target = random_weights_file(cache_dir, spec, seed)
    if target.exists():
        try:
            model = construct_uninitialised(spec, attn, parameters_on_meta=True)
            state = torch.load(target, map_location="cpu", weights_only=True, mmap=False)
            model.load_state_dict(state, strict=True, assign=True)
            return model, f"loaded from the run's cache ({target.name}), made by an earlier build"
        except Exception:  # a truncated or foreign file: build, and replace it below
            pass
    model = _build_random(spec, seed, attn)
    try:
        atomic_write_with(target, lambda fh: torch.save(model.state_dict(), fh))
    except OSError as exc:  # a full disk or a read-only results folder costs time, not the cell
        return model, f"built; the run's cache could not keep it ({type(exc).__name__}: {exc})"
    return model, f"built and saved to the run's cache ({target.name})"


@contextlib.contextmanager
def _parameters_on_meta() -> Iterator[None]:
    """Every parameter registered inside is moved to the meta device at once (buffers stay real).

    The same trick as accelerate's ``init_empty_weights(include_buffers=False)``, without the
    dependency; unlike ``with torch.device("meta")`` it lets constructors compute on real
    tensors (transformers 4.x BEiT calls ``.item()`` on a linspace in ``__init__``).
    """
    import torch

    register = torch.nn.Module.register_parameter

    def register_on_meta(module: Any, name: str, param: Any) -> None:
        register(module, name, param)
        if param is not None:
            moved = module._parameters[name].to("meta")
            module._parameters[name] = type(param)(moved, requires_grad=param.requires_grad)

    torch.nn.Module.register_parameter = register_on_meta  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        torch.nn.Module.register_parameter = register  # type: ignore[method-assign]


def meta_param_count(spec: ModelSpec) -> int:
    """Parameters of ``spec``'s module without allocating or initialising them (ViT-H: < 1 s)."""
    return param_count(construct_uninitialised(spec, parameters_on_meta=True))


# --------------------------------------------------------------------------------- pretrained

# Config fields that do not change the architecture: a differing value is recorded, not refused.
_NON_STRUCTURAL = frozenset(
    {
        "hidden_dropout_prob",
        "attention_probs_dropout_prob",
        "classifier_dropout_prob",
        "drop_path_rate",
        "initializer_range",
        "layer_norm_eps",
        "layerscale_value",
        "layer_scale_init_value",
    }
)


def _normalise(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def config_differences(spec: ModelSpec, config: Any) -> dict[str, dict[str, Any]]:
    """Fields of ``spec.config`` whose value differs in ``config`` -> {field: {expected, found}}."""
    diffs = {}
    for key, expected in spec.config.items():
        found = _normalise(getattr(config, key, None))
        if found != _normalise(expected):
            diffs[key] = {"expected": expected, "found": found}
    return diffs


def _check_directory(spec: ModelSpec, directory: Path) -> dict[str, dict[str, Any]]:
    if not (directory / "config.json").is_file():
        raise WeightsUnavailable(f"{directory}: no config.json")
    if not list(directory.glob(_SAFETENSORS_GLOB)):
        raise WeightsUnavailable(f"{directory}: no *.safetensors file (pickled weights are not loaded)")
    config = config_class(spec).from_pretrained(str(directory), local_files_only=True)
    diffs = config_differences(spec, config)
    structural = {k: v for k, v in diffs.items() if k not in _NON_STRUCTURAL}
    if structural:
        detail = ", ".join(f"{k}: expected {v['expected']!r}, found {v['found']!r}" for k, v in structural.items())
        raise ValueError(f"{directory} is not {spec.checkpoint} ({spec.id}): {detail}")
    return diffs


def _load_pretrained(spec: ModelSpec, source: str, attn: str, local: bool) -> tuple[Any, dict[str, Any]]:
    kwargs: dict[str, Any] = {
        "use_safetensors": True,
        "trust_remote_code": False,
        "attn_implementation": attn,
        "output_loading_info": True,
        **spec.model_kwargs,
    }
    if local:
        kwargs["local_files_only"] = True
    model, loading = model_class(spec).from_pretrained(source, **kwargs)
    return model, {k: sorted(v) if isinstance(v, (list, set)) else v for k, v in loading.items()}


def _build_hub(spec: ModelSpec, attn: str) -> tuple[Any, dict[str, Any]]:
    # HF_HUB_OFFLINE and the hub cache are read by transformers/huggingface_hub themselves.
    try:
        return _load_pretrained(spec, spec.checkpoint, attn, local=False)
    except Exception as exc:  # hub errors have no common base across versions; keep the chain
        offline = os.environ.get("HF_HUB_OFFLINE", "")
        raise WeightsUnavailable(
            f"cannot load {spec.checkpoint} for {spec.id} from the hub (HF_HUB_OFFLINE={offline!r}): "
            f"{type(exc).__name__}: {exc}"
        ) from exc


# --------------------------------------------------------------------------------- public


WEIGHTS_MODES: tuple[str, ...] = ("random", "hub", "checkpoint")


def resolve_weights(spec: ModelSpec, weights: str) -> str:
    """``"checkpoint"``: each model's own weights, i.e. its local checkpoint directory when
    ``spec.checkpoint`` is one (a user model), else the hub; any other value is returned as is."""
    if weights != "checkpoint":
        return weights
    return spec.checkpoint if os.path.isdir(spec.checkpoint) else "hub"


def _weights_mode(weights: str) -> str:
    if weights in ("random", "hub"):
        return weights
    if os.path.isdir(weights):
        return "directory"
    raise ValueError(f"weights must be 'random', 'hub' or an existing directory; got {weights!r}")


def build_model(
    spec: ModelSpec,
    weights: str = "random",
    seed: int = 0,
    attn_implementation: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Build ``spec`` as an FP32 CPU module in eval mode, and say how it was built.

    ``weights``: ``"random"`` (seeded, from the registry config, no download), ``"checkpoint"``
    (`resolve_weights`: a user model's own directory, else the hub), a local directory
    (``from_pretrained`` with ``local_files_only``, safetensors only, no remote code; its
    config.json must match the spec's architecture), or ``"hub"`` (``from_pretrained`` of
    ``spec.checkpoint``; honours ``HF_HUB_OFFLINE``; `WeightsUnavailable` if it can't be had).
    ``attn_implementation`` overrides `choose_attn_implementation` (e.g. ``"eager"`` for an
    exporter). ``cache_dir``: random weights are saved there by the first build and loaded by
    the next (`_build_random_cached`). The returned dict is meant to go into every result as is.
    """
    import torch
    import transformers

    weights = resolve_weights(spec, weights)
    mode = _weights_mode(weights)
    attn = attn_implementation or choose_attn_implementation(spec)
    started = time.perf_counter()
    info: dict[str, Any] = {"weights": mode, "seed": seed if mode == "random" else None}
    if mode == "random":
        if cache_dir is None:
            model = _build_random(spec, seed, attn)
        else:
            model, info["weights_cache"] = _build_random_cached(spec, seed, attn, cache_dir)
        info.update(weights_source="random", init=INIT_METHOD)
    elif mode == "directory":
        directory = Path(weights).resolve()
        info["config_differences"] = _check_directory(spec, directory)
        model, info["loading"] = _load_pretrained(spec, str(directory), attn, local=True)
        info.update(weights_source=str(directory), init="pretrained (from_pretrained, local directory)")
    else:
        model, info["loading"] = _build_hub(spec, attn)
        info.update(weights_source=f"hub:{spec.checkpoint}", init="pretrained (from_pretrained, hub)")
    model = model.to(device="cpu", dtype=torch.float32).eval()
    # Inference only: no autograd bookkeeping even where a caller forgets no_grad.
    model.requires_grad_(False)
    count = param_count(model)
    info.update(
        model_id=spec.id,
        checkpoint=spec.checkpoint,
        param_count=count,
        param_count_matches_registry=count == spec.real_params,
        attn_implementation=getattr(model.config, "_attn_implementation", None) or attn,
        transformers_version=transformers.__version__,
        torch_version=torch.__version__,
        config_class=type(model.config).__name__,
        model_class=type(model).__name__,
        model_kwargs=dict(spec.model_kwargs),
        dtype="float32",
        device="cpu",
        build_seconds=round(time.perf_counter() - started, 3),
        weights_fingerprint=weights_fingerprint(spec, weights, seed),
    )
    if spec.origin == "user":  # a model derived from a config: say where each fact came from
        info.update(model_origin="user", model_sources=dict(spec.sources))
    return model, info


def _digest(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 24), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _directory_manifest(directory: Path, content: bool) -> list[list[Any]]:
    files = sorted(directory.glob(_SAFETENSORS_GLOB))
    if not files:
        raise WeightsUnavailable(f"{directory}: no *.safetensors file to fingerprint")
    files.append(directory / "config.json")
    manifest = []
    for path in files:
        stat = path.stat()
        ident = _file_sha256(path) if content else stat.st_mtime_ns
        manifest.append([path.name, stat.st_size, ident])
    return manifest


def _hub_revision(checkpoint: str) -> str | None:
    """The commit of the locally cached snapshot, if any (never contacts the hub)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(checkpoint, "config.json")
    except Exception:  # old huggingface_hub, odd cache: treat as unknown
        return None
    return Path(cached).parent.name if isinstance(cached, str) else None


def weights_fingerprint(spec: ModelSpec, weights: str = "random", seed: int = 0, content: bool = False) -> str:
    """A stable, filename-safe id of the weights a `build_model` call would produce.

    random: hash of the architecture part of the spec, the seed, transformers/torch versions and
    `INIT_METHOD`. directory: hash of the safetensors files' and config.json's names, sizes and
    mtimes (``content=True``: their sha256 instead, slower but copy-proof). hub: checkpoint and
    the cached snapshot's commit (``unresolved`` when nothing is cached).
    """
    import torch
    import transformers

    weights = resolve_weights(spec, weights)
    mode = _weights_mode(weights)
    arch = {k: getattr(spec, k) for k in ("id", "config_class", "config", "model_class", "model_kwargs")}
    if mode == "random":
        payload: Any = [arch, seed, transformers.__version__, torch.__version__, INIT_METHOD]
    elif mode == "directory":
        payload = [arch, _directory_manifest(Path(weights).resolve(), content)]
    else:
        payload = [arch, spec.checkpoint, _hub_revision(spec.checkpoint) or "unresolved"]
    return f"{mode}-{_digest(payload)}"
