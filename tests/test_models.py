"""kit.models: the registry of the study's 16 models, building them, tiny specs.

Full-size models are only built on the meta device (no memory, no init) except MobileViT-XXS
(1.3M params), whose random init is the one that needed care.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from kit.models import build  # noqa: E402
from kit.models.build import (  # noqa: E402
    WeightsUnavailable,
    build_model,
    count_subnormal,
    example_inputs,
    output_of,
    primary_output_module,
    weights_fingerprint,
)
from kit.models.registry import MODELS, get_model, model_ids  # noqa: E402
from kit.models.tiny import TINY_FAMILIES, get_tiny, tiny_ids, tiny_spec  # noqa: E402

STUDY_IDS = {
    "vit-huge-patch14-2020",
    "vit-large-patch16-2020",
    "dinov2-large-2023",
    "dinov2-base-2023",
    "beit-large-2021",
    "beit-base-pt22k-2021",
    "vit-base-384-production",
    "vit-base-224-production",
    "dino-vitb16-production",
    "dino-vits16-production",
    "deit-base-distilled-384-edge",
    "deit-small-distilled-224-edge",
    "mobilevit-small-edge",
    "mobilevit-xxs-edge",
    "deit-tiny-ultra-efficient",
    "vit-base-patch32-specialized",
}
# Seed 001, "Model Size Performance": how many models each group holds.
STUDY_GROUPS = {
    "foundation_transformer": 2,
    "self_supervised_2023": 2,
    "masked_autoencoder_2021": 2,
    "production_ready": 4,
    "edge_optimized": 4,
    "specialized_efficient": 2,
}


# ------------------------------------------------------------------------------ registry


def test_registry_holds_exactly_the_study_ids():
    assert set(MODELS) == STUDY_IDS
    assert model_ids() == list(MODELS)
    assert len({spec.checkpoint for spec in MODELS.values()}) == 16


def test_unknown_id_lists_the_valid_ones():
    with pytest.raises(KeyError) as err:
        get_model("vit-gigantic")
    message = str(err.value)
    assert "vit-gigantic" in message
    assert all(model_id in message for model_id in STUDY_IDS)


def test_categories_follow_the_seed_groups():
    counts: dict[str, int] = {}
    for spec in MODELS.values():
        counts[spec.published_category] = counts.get(spec.published_category, 0) + 1
    assert counts == STUDY_GROUPS


@pytest.mark.parametrize("model_id", sorted(STUDY_IDS))
def test_spec_is_coherent(model_id):
    spec = get_model(model_id)
    assert spec.id == model_id
    assert len(spec.mean) == len(spec.std) == spec.num_channels == 3
    assert all(s > 0 for s in spec.std)
    assert spec.real_params_source and spec.published_architecture
    # The real checkpoint and the study's rounded figure agree to a few percent (the largest gap
    # is ViT-B/32: 88.0M vs the study's generic ViT-Base 86M).
    assert abs(spec.real_params / spec.published_params - 1) < 0.03
    spec.to_dict()  # JSON-able for result documents
    hash(spec)


@pytest.mark.parametrize("model_id", sorted(STUDY_IDS))
def test_built_param_count_matches_registry(model_id):
    spec = get_model(model_id)
    count = build.meta_param_count(spec)
    assert count == pytest.approx(spec.real_params, rel=0.01)
    assert count == spec.real_params, f"{model_id}: built {count:,}, registry says {spec.real_params:,}"


# ------------------------------------------------------------------------------ tiny specs


def test_tiny_families_and_lookup():
    assert set(TINY_FAMILIES) == {"vit", "deit", "dino", "dinov2", "beit", "mobilevit"}
    assert tiny_ids() == [f"tiny-{family}" for family in TINY_FAMILIES]
    assert get_tiny("tiny-beit") is tiny_spec("beit")
    with pytest.raises(KeyError, match="mobilevit"):
        tiny_spec("resnet")
    with pytest.raises(KeyError, match="tiny-vit"):
        get_tiny("tiny-resnet")


def _check_output(out, spec, batch):
    width = spec.config["num_labels"] if spec.head == "classifier" else None
    assert out.shape[0] == batch and out.ndim == 2
    if width is not None:
        assert out.shape[1] == width
    assert torch.isfinite(out).all()
    assert count_subnormal(out) == 0
    assert 0.1 < float(out.std()) < 10
    # Different images must give different outputs, or fidelity would measure nothing.
    assert float((out[0] - out[1]).abs().max()) > 1e-3


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_tiny_builds_and_gives_sane_output(family):
    spec = tiny_spec(family)
    model, info = build_model(spec, seed=0)
    assert info["param_count"] == spec.real_params < 300_000
    assert not model.training
    assert all(p.dtype == torch.float32 and p.device.type == "cpu" for p in model.parameters())
    pixels = torch.from_numpy(example_inputs(spec, 3, seed=1))
    out = output_of(model, spec, pixels)
    _check_output(out, spec, 3)
    assert torch.equal(primary_output_module(model, spec)(pixels), out)


def test_build_info_records_how():
    spec = tiny_spec("beit")
    _model, info = build_model(spec, seed=3)
    for key in (
        "weights",
        "weights_source",
        "seed",
        "init",
        "param_count",
        "attn_implementation",
        "transformers_version",
        "config_class",
        "model_class",
        "weights_fingerprint",
    ):
        assert key in info, key
    assert info["weights"] == "random" and info["seed"] == 3
    assert info["init"] == build.INIT_METHOD
    assert info["attn_implementation"] in ("sdpa", "eager")
    assert info["model_class"] == "BeitForImageClassification"
    assert info["transformers_version"] == transformers.__version__


def test_attn_implementation_override_gives_same_numbers():
    spec = tiny_spec("beit")
    pixels = torch.from_numpy(example_inputs(spec, 2, seed=0))
    eager, info = build_model(spec, seed=0, attn_implementation="eager")
    assert info["attn_implementation"] == "eager"
    chosen, _ = build_model(spec, seed=0)
    torch.testing.assert_close(output_of(eager, spec, pixels), output_of(chosen, spec, pixels))


# ------------------------------------------------------------------------------ determinism


@pytest.mark.parametrize("family", ["vit", "mobilevit"])
def test_random_build_is_deterministic_per_seed(family):
    spec = tiny_spec(family)
    state_before = torch.random.get_rng_state()
    a, _ = build_model(spec, seed=7)
    b, _ = build_model(spec, seed=7)
    c, _ = build_model(spec, seed=8)
    assert torch.equal(torch.random.get_rng_state(), state_before), "build moved the global RNG"
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa if sa[k].is_floating_point())


def test_weights_fingerprint():
    spec = tiny_spec("vit")
    fp = weights_fingerprint(spec, "random", 0)
    assert fp == weights_fingerprint(spec, "random", 0)
    assert fp != weights_fingerprint(spec, "random", 1)
    assert fp != weights_fingerprint(tiny_spec("deit"), "random", 0)
    assert fp.startswith("random-") and fp.replace("-", "").isalnum()
    assert weights_fingerprint(spec, "hub", 0).startswith("hub-")
    with pytest.raises(ValueError, match="random"):
        weights_fingerprint(spec, "/no/such/dir", 0)


# ------------------------------------------------------------------------------ inputs/outputs


def test_example_inputs():
    spec = get_model("vit-base-384-production")
    x = example_inputs(spec, 2, seed=5)
    assert x.dtype == np.float32 and x.shape == (2, 3, 384, 384) and x.flags.c_contiguous
    np.testing.assert_array_equal(x, example_inputs(spec, 2, seed=5))
    assert not np.array_equal(x, example_inputs(spec, 2, seed=6))
    assert x.min() >= -1.0 and x.max() <= 1.0  # mean=std=0.5 maps [0, 1] onto [-1, 1]
    raw = example_inputs(get_model("mobilevit-xxs-edge"), 1, seed=5)
    assert raw.min() >= 0.0 and raw.max() <= 1.0  # MobileViT: no normalisation


def test_output_of_selects_the_documented_tensor():
    deit = tiny_spec("deit")
    model, _ = build_model(deit)
    pixels = torch.from_numpy(example_inputs(deit, 2, seed=0))
    with torch.no_grad():
        full = model(pixel_values=pixels)
    torch.testing.assert_close(output_of(model, deit, pixels), (full.cls_logits + full.distillation_logits) / 2)

    dino = tiny_spec("dino")
    model, _ = build_model(dino)
    assert model.pooler is None
    with torch.no_grad():
        hidden = model(pixel_values=pixels).last_hidden_state
    out = output_of(model, dino, pixels)
    assert out.shape == (2, dino.config["hidden_size"])
    torch.testing.assert_close(out, hidden[:, 0])

    dinov2 = tiny_spec("dinov2")
    model, _ = build_model(dinov2)
    assert output_of(model, dinov2, pixels).shape == (2, dinov2.config["hidden_size"])


def test_mobilevit_xxs_random_init_is_not_denormal():
    spec = get_model("mobilevit-xxs-edge")
    model, info = build_model(spec, seed=0)
    assert info["param_count"] == spec.real_params
    out = output_of(model, spec, torch.from_numpy(example_inputs(spec, 2, seed=1)))
    assert out.shape == (2, 1000)
    _check_output(out, spec, 2)


# ------------------------------------------------------------------------------ pretrained


def _save(model, directory) -> str:
    model.save_pretrained(str(directory), safe_serialization=True)
    return str(directory)


def test_local_directory_round_trip(tmp_path):
    spec = tiny_spec("mobilevit")
    original, _ = build_model(spec, seed=4)
    directory = _save(original, tmp_path / "ckpt")
    loaded, info = build_model(spec, weights=directory)
    assert info["weights"] == "directory" and info["weights_source"] == str((tmp_path / "ckpt").resolve())
    assert info["seed"] is None and info["param_count_matches_registry"]
    assert info["loading"]["missing_keys"] == [] and info["loading"]["unexpected_keys"] == []
    pixels = torch.from_numpy(example_inputs(spec, 2, seed=0))
    torch.testing.assert_close(output_of(loaded, spec, pixels), output_of(original, spec, pixels))
    fingerprint = weights_fingerprint(spec, directory)
    assert fingerprint.startswith("directory-") and fingerprint == info["weights_fingerprint"]
    assert weights_fingerprint(spec, directory, content=True) != fingerprint  # other method, other id


def test_local_directory_of_another_architecture_is_refused(tmp_path):
    spec = tiny_spec("vit")
    original, _ = build_model(spec)
    directory = _save(original, tmp_path / "ckpt")
    wider = dataclasses.replace(spec, config={**spec.config, "hidden_size": 64})
    with pytest.raises(ValueError, match="hidden_size"):
        build_model(wider, weights=directory)


def test_local_directory_without_safetensors_is_refused(tmp_path):
    spec = tiny_spec("vit")
    build.make_config(spec).save_pretrained(str(tmp_path))
    with pytest.raises(WeightsUnavailable, match="safetensors"):
        build_model(spec, weights=str(tmp_path))
    with pytest.raises(ValueError, match="existing directory"):
        build_model(spec, weights=str(tmp_path / "missing"))


def test_hub_offline_gives_a_clean_error(monkeypatch):
    constants = pytest.importorskip("huggingface_hub.constants")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True, raising=False)
    spec = get_model("deit-tiny-ultra-efficient")
    with pytest.raises(WeightsUnavailable, match="facebook/deit-tiny-patch16-224"):
        build_model(spec, weights="hub")


def test_random_init_sets_layer_scale_and_norms_like_the_config():
    dinov2, _ = build_model(tiny_spec("dinov2"))
    beit, _ = build_model(tiny_spec("beit"))
    dinov2_scales = [p for n, p in dinov2.named_parameters() if n.endswith("lambda1")]
    beit_scales = [p for n, p in beit.named_parameters() if n.endswith(("lambda_1", "lambda_2"))]
    assert dinov2_scales and all(torch.all(p == 1.0) for p in dinov2_scales)
    assert beit_scales and all(torch.allclose(p, torch.full_like(p, 0.1)) for p in beit_scales)
    for model in (dinov2, beit):
        for module in model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                assert torch.all(module.weight == 1) and torch.all(module.bias == 0)


def test_specs_survive_pickling():
    import pickle

    for spec in [*MODELS.values(), tiny_spec("mobilevit")]:
        assert pickle.loads(pickle.dumps(spec)) == spec


@pytest.mark.parametrize("family", ["vit", "mobilevit"])
def test_cached_random_weights_are_the_built_ones_and_a_bad_file_is_rebuilt(family, tmp_path):
    spec = tiny_spec(family)
    built, info_built = build_model(spec, seed=3)
    first, info_first = build_model(spec, seed=3, cache_dir=tmp_path)
    again, info_again = build_model(spec, seed=3, cache_dir=tmp_path)
    assert "built and saved" in info_first["weights_cache"] and "loaded" in info_again["weights_cache"]
    assert "weights_cache" not in info_built
    ref = built.state_dict()
    for model in (first, again):
        state = model.state_dict()
        assert state.keys() == ref.keys() and all(torch.equal(state[k], ref[k]) for k in ref)
        assert not any(p.requires_grad or p.is_meta for p in model.parameters())
        assert not model.training
    x = torch.from_numpy(example_inputs(spec, 2, seed=0))
    with torch.inference_mode():
        assert torch.equal(output_of(built, spec, x), output_of(again, spec, x))
    # Another seed is another file; a truncated file is built again and replaced.
    target = build.random_weights_file(tmp_path, spec, 3)
    assert target.exists() and not build.random_weights_file(tmp_path, spec, 4).exists()
    target.write_bytes(target.read_bytes()[:100])
    rebuilt, info = build_model(spec, seed=3, cache_dir=tmp_path)
    assert "built and saved" in info["weights_cache"]
    assert all(torch.equal(rebuilt.state_dict()[k], ref[k]) for k in ref)
    assert "loaded" in build_model(spec, seed=3, cache_dir=tmp_path)[1]["weights_cache"]
    # A cache that cannot be written (here a file where its folder should be) costs the save only.
    blocked = tmp_path / "blocked"
    blocked.write_text("not a folder")
    model, info = build_model(spec, seed=3, cache_dir=blocked)
    assert "could not keep it" in info["weights_cache"]
    assert all(torch.equal(model.state_dict()[k], ref[k]) for k in ref)
