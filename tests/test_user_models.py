"""User models: a local checkpoint directory or a models file is a model like the study's 16."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from kit.cli import main
from kit.errors import BadInput
from kit.models import registry
from kit.models.user import directory_id, load_models_file, load_sources, spec_from_directory

TINY_VIT = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "image_size": 32,
    "patch_size": 8,
    "num_labels": 10,
}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny ViT classifier and a tiny ConvNeXt backbone saved with save_pretrained (safetensors)."""
    import torch
    from transformers import (
        ConvNextConfig,
        ConvNextModel,
        ResNetConfig,
        ResNetForImageClassification,
        ViTConfig,
        ViTForImageClassification,
    )

    root = tmp_path_factory.mktemp("checkpoints")
    torch.manual_seed(0)
    vit = root / "My_Tiny-ViT"
    ViTForImageClassification(ViTConfig(**TINY_VIT)).save_pretrained(vit)
    (vit / "preprocessor_config.json").write_text(
        json.dumps({"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "size": {"height": 32, "width": 32}})
    )
    convnext = root / "convnext-tiny-test"
    ConvNextModel(ConvNextConfig(hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 1, 1], image_size=32)).save_pretrained(
        convnext
    )
    resnet = root / "resnet-test"
    ResNetForImageClassification(ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1])).save_pretrained(
        resnet
    )
    return {"vit": vit, "convnext": convnext, "resnet": resnet}


def test_spec_derived_from_a_checkpoint_directory(checkpoints: dict[str, Path]) -> None:
    from transformers import ViTConfig, ViTForImageClassification

    spec = spec_from_directory(checkpoints["vit"])
    assert spec.id == directory_id(checkpoints["vit"]) == "my-tiny-vit"
    assert (spec.origin, spec.family, spec.config_class, spec.model_class) == (
        "user",
        "vit",
        "ViTConfig",
        "ViTForImageClassification",
    )
    assert (spec.head, spec.primary_output, spec.image_size) == ("classifier", "logits", 32)
    assert (spec.mean, spec.std) == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert spec.real_params == sum(p.numel() for p in ViTForImageClassification(ViTConfig(**TINY_VIT)).parameters())
    assert spec.sources["image_size"] == "preprocessor_config.json size"
    assert spec.sources["normalization"].startswith("preprocessor_config.json")
    assert spec.sources["model_class"] == "config.json architectures[0]"
    assert "analytic" in spec.sources["flops"]
    convnext = spec_from_directory(checkpoints["convnext"])
    assert (convnext.family, convnext.head, convnext.primary_output) == ("convnext", "backbone", "pooler_output")
    assert "counted per cell" in convnext.sources["flops"]  # no analytic FLOP model for ConvNeXt
    assert convnext.sources["normalization"].startswith("default")


def test_directory_model_runs_through_every_cpu_path_that_applies(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    from kit.paths.applies import path_fit
    from kit.results.store import cell_file, read_result
    from kit.run.cell import RunOptions
    from kit.run.executors import make_executor
    from kit.run.reproduce import plan_matrix, reproduce

    [model_id] = load_sources([str(checkpoints["vit"])])
    fits = path_fit(registry.get_model(model_id), ["cpu"])
    applies = [f.path for f in fits if f.applies]
    assert {"torch-fp32", "torch-int8-dynamic", "ort-fp32", "ort-int8-dynamic", "bnb-int8"} <= set(applies)
    assert all(f.reason for f in fits if not f.applies)
    opts = RunOptions(
        out_dir=str(tmp_path),
        profile="quick",
        weights="checkpoint",
        user_models=(str(checkpoints["vit"]),),
    )
    cells = plan_matrix([model_id], applies, ["cpu"], [1])
    # A child process (the default executor) knows the model only through RunOptions.user_models;
    # the other paths run inline to keep the test short.
    first, rest = [c for c in cells if c.path == "torch-fp32"], [c for c in cells if c.path != "torch-fp32"]
    reproduce(first, opts, make_executor("process"), force=True)
    reproduce(rest, opts, make_executor("inline"), force=True)
    for cell in cells:
        doc = read_result(cell_file(tmp_path, cell))
        assert doc["status"] in ("ok", "skipped"), (cell.path, doc["reason"])
        if doc["status"] == "skipped":
            assert doc["reason"]
            continue
        assert doc["model_info"]["fingerprint"].startswith("directory-")  # the checkpoint's own weights
    statuses = {c.path: read_result(cell_file(tmp_path, c))["status"] for c in cells}
    assert statuses["torch-fp32"] == statuses["torch-int8-dynamic"] == statuses["ort-int8-dynamic"] == "ok"
    fp32 = read_result(cell_file(tmp_path, first[0]))["model_info"]
    assert fp32["weights_source"] == str(checkpoints["vit"].resolve())
    assert fp32["param_count_matches_registry"] is True
    assert fp32["model_origin"] == "user" and "image_size" in fp32["model_sources"]


def test_bench_accepts_a_checkpoint_directory(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    res = CliRunner().invoke(
        main,
        [
            *("bench", "--model", str(checkpoints["convnext"]), "--path", "torch-fp32"),
            *("--profile", "quick", "--out", str(tmp_path), "--inline"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "convnext-tiny-test: ConvNextModel" in res.output
    assert "torch-int8-dynamic" in res.output  # which paths apply, said before running
    assert "convnext-tiny-test torch-fp32 cpu bs1: ok" in res.output


def _models_file(tmp_path: Path, entries: list[dict], name: str = "models.yaml") -> Path:
    import yaml

    path = tmp_path / name
    path.write_text(yaml.safe_dump({"models": entries}))
    return path


def test_which_paths_apply_and_why_not(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    from kit.paths.applies import path_fit

    with pytest.raises(BadInput, match=r"missing: image_size"):  # ResNet's config has no input size
        spec_from_directory(checkpoints["resnet"])
    path = _models_file(tmp_path, [{"id": "resnet-32", "checkpoint": str(checkpoints["resnet"]), "image_size": 32}])
    [model_id] = load_sources([str(path)])
    fits = {(f.path, f.device): f for f in path_fit(registry.get_model(model_id), ["cpu", "cuda"])}
    assert fits["torch-int8-dynamic", "cpu"].applies  # the classifier head is one nn.Linear
    assert not fits["bnb-int8", "cpu"].applies and "no other nn.Linear" in fits["bnb-int8", "cpu"].reason
    assert not fits["torch-int8-dynamic", "cuda"].applies and "cpu" in fits["torch-int8-dynamic", "cuda"].reason
    assert fits["ort-fp32", "cpu"].applies


def test_models_file_loads_config_only_and_directory_entries(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    config = tmp_path / "cfg.json"
    config.write_text(json.dumps({"model_type": "vit", "architectures": ["ViTModel"], **TINY_VIT}))
    path = _models_file(
        tmp_path,
        [
            {"id": "cfg-only", "config": "cfg.json", "normalization": "imagenet-standard", "output": "cls_token"},
            {"id": "from-dir", "checkpoint": str(checkpoints["vit"]), "image_size": 48},
        ],
    )
    cfg_only, from_dir = load_models_file(path)
    assert cfg_only.checkpoint.startswith("(config only")
    assert (cfg_only.head, cfg_only.primary_output, cfg_only.sources["normalization"]) == (
        "backbone",
        "cls_token",
        "models file (imagenet-standard)",
    )
    assert (from_dir.image_size, from_dir.sources["image_size"]) == (48, "models file")


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ({"id": "x", "checkpoint": "nowhere"}, "is not a directory"),
        ({"id": "x", "config": "cfg.json", "colour": "red"}, "unknown key 'colour'"),
        ({"config": "cfg.json"}, "missing id"),
        ({"id": "Bad Id", "config": "cfg.json"}, "must be lower-case"),
        ({"id": "x", "config": {"model_type": "no-such-arch"}}, "unsupported architecture"),
        ({"id": "x", "config": {"model_type": "bert"}}, "does not take pixel_values"),
        ({"id": "vit-base-224-production", "config": "cfg.json"}, "taken by the kit's own models"),
    ],
)
def test_a_bad_models_file_entry_is_one_line_and_exit_2(tmp_path: Path, entry: dict, words: str) -> None:
    (tmp_path / "cfg.json").write_text(json.dumps({"model_type": "vit", **TINY_VIT}))
    path = _models_file(tmp_path, [{"id": "good", "config": "cfg.json"}, entry], name=f"m{abs(hash(words))}.yaml")
    res = CliRunner().invoke(
        main,
        ["reproduce", "--models-file", str(path), "--paths", "torch-fp32", "--devices", "cpu", "--out", str(tmp_path)],
    )
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.splitlines() if line.startswith("qkit: error:")]
    assert len(lines) == 1 and words in lines[0], res.output
    if words != "taken by the kit's own models":
        assert "entry 2" in lines[0]


def test_unknown_model_still_names_the_valid_ones() -> None:
    with pytest.raises(KeyError, match="unknown model"):
        registry.get_model("no-such-model")
    with pytest.raises(BadInput, match="does not exist"):
        load_models_file("/nonexistent/models.yaml")
