"""The qkit command line: bad input is one line and exit 2; a tiny reproduce works end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from kit.cli import main


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (
            ["bench", "--model", "resnet-50", "--path", "torch-fp32"],
            "unknown model 'resnet-50'; valid models: vit-huge",
        ),
        (
            ["bench", "--model", "vit-base-224-production", "--path", "fp8"],
            "unknown path 'fp8'; valid paths: torch-fp32",
        ),
        (
            ["bench", "--model", "vit-base-224-production", "--path", "torch-fp32", "--device", "tpu"],
            "unknown device 'tpu'; valid devices: cpu, cuda",
        ),
        (["reproduce", "--models", "vit-base-224-production,nope"], "unknown model 'nope'"),
        (["reproduce", "--profile", "slow"], "unknown profile 'slow'"),
        (["reproduce", "--batch-sizes", "0"], "--batch-sweep sizes must be >= 1"),
        (["reproduce", "--weights", "/does/not/exist"], "neither 'random', 'hub' nor a directory"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], needle: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, [*args, "--out", str(tmp_path)] if args[0] != "bench" else args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], result.output


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        # unknown keys: for every family the selected paths belong to
        (
            ["bench", "--model", "tiny-vit", "--path", "bnb-int8", "--option", "bnb.treshold=5"],
            "unknown path option 'bnb.treshold'",
        ),
        (
            ["bench", "--model", "tiny-vit", "--path", "torch-fp32", "--option", "provider=cpu"],
            "unknown path option 'provider' for the selected paths (torch family); they take no options",
        ),
        (
            ["reproduce", "--models", "tiny-vit", "--paths", "ort-fp32", "--option", "calibration_sampels=4"],
            "did you mean 'calibration_samples'",
        ),
        # bad values
        (
            ["bench", "--model", "tiny-vit", "--path", "bnb-nf4", "--option", "bnb.compute_dtype=int3"],
            "path option bnb.compute_dtype='int3': expected one of float32, float16, bfloat16",
        ),
        (
            [
                "reproduce",
                "--models",
                "tiny-vit",
                "--paths",
                "ort-int8-static-qdq",
                "--option",
                "calibration_samples=0",
            ],
            "path option calibration_samples=0: expected >= 1",
        ),
        (
            ["reproduce", "--models", "tiny-vit", "--option", "provider=rocm"],
            "path option provider='rocm': unknown ONNX Runtime provider",
        ),
        (["compare-int8", "--model", "tiny-vit", "--devices", "cpu", "--option", "exporter=jit"], "exporter='jit'"),
    ],
)
def test_bad_path_options_stop_the_command_before_any_cell(args: list[str], needle: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(main, [*args, "--out", str(out)])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("qkit: error: ") and needle in lines[0], result.output
    assert not (out / "cells").exists()  # nothing was measured, skipped or failed


def test_path_options_of_the_selected_families_reach_the_cell(tmp_path: Path) -> None:
    # An executor's namespace (ray.) is not a path option; a valid option passes the check.
    result = CliRunner().invoke(
        main,
        [
            "bench",
            "--model",
            "tiny-vit",
            "--path",
            "torch-int8-dynamic",
            "--device",
            "cuda",
            "--option",
            "ray.num_cpus=1",
            "--out",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "skipped" in result.output and "has CPU kernels only" in result.output


def test_models_lists_all_sixteen() -> None:
    result = CliRunner().invoke(main, ["models", "--json"])
    assert result.exit_code == 0
    assert len(json.loads(result.output)) == 16


def test_env_reports_packages_and_cpu() -> None:
    result = CliRunner().invoke(main, ["env", "--json"])
    assert result.exit_code == 0
    data = json.loads(result.output)
    assert data["packages"]["torch"] and data["cpu"]["model"]
    assert "torch_num_threads" in data["math"]


def test_unavailable_path_is_a_skipped_cell_and_exit_0(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["bench", "--model", "tiny-vit", "--path", "torch-fp32", "--device", "cuda", "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    assert "skipped (CUDA unavailable" in result.output


def test_reproduce_tiny_inline_writes_documents_and_summary(tmp_path: Path) -> None:
    out = tmp_path / "m"
    result = CliRunner().invoke(
        main,
        [
            "reproduce",
            "--models",
            "tiny-deit",
            "--paths",
            "torch-fp32,torch-bf16",
            "--devices",
            "cpu",
            "--profile",
            "quick",
            "--executor",
            "inline",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "2 cells: 2 ok, 0 skipped, 0 failed" in result.output
    assert (out / "summary.csv").exists()
    assert (tmp_path / "latest").resolve() == out.resolve()
