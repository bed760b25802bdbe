"""The study's GPU paths end to end: torch FP32/FP16/BF16 and bitsandbytes INT8/NF4 on CUDA.

`cuda`-marked tests skip without a CUDA device (conftest.py); run them on a GPU machine with
``pytest -m cuda``. Without CUDA the GPU benchmark must say it skipped, and why.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from kit.bench.gpu import bench_fp16_peak, bench_gpu
from kit.paths.base import get_path
from kit.results.store import load_results
from kit.run.cell import RunOptions
from kit.run.executors import ProcessExecutor
from kit.run.reproduce import plan_matrix, reproduce

GPU_PATHS = ["torch-fp32", "torch-fp16", "torch-bf16", "bnb-int8", "bnb-nf4"]


def _cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def test_gpu_bench_without_cuda_says_skipped_with_the_reason() -> None:
    if _cuda():
        pytest.skip("CUDA present: the benchmark would run")
    out = io.StringIO()
    figures = bench_gpu(out=out)
    assert figures["fp16_peak"]["status"] == "skipped" and "CUDA" in figures["fp16_peak"]["reason"]
    assert figures["bnb"]["status"] == "skipped"
    assert "skipped: CUDA unavailable" in out.getvalue() and "TFLOP/s" not in out.getvalue()


@pytest.mark.cuda
def test_gpu_bench_reports_a_fraction_of_peak(tmp_path: Path) -> None:
    out = io.StringIO()
    r = bench_fp16_peak("tiny-vit", batch_size=4, seconds=0.2, out=out)
    assert r["status"] == "ok" and r["timer"] == "cuda_event" and r["p50_ms"] > 0
    c = r["compute"]
    assert c["math_class"] == "fp16" and c["achieved_tflops"] > 0
    # The card must be in the datasheet: a GPU session on a card the table lacks has to add it,
    # or the fraction of peak (the benchmark's target) is never judged.
    assert c["peak_tflops"] is not None, f"{c.get('reason')}: add this card to kit/hardware/gpus.py"
    assert 0 < c["fraction_of_peak"] < 1
    # The target verdict is the fraction against the 50% target, not any boolean.
    assert r["target_met"] is (c["fraction_of_peak"] >= r["target_fraction"])


@pytest.mark.cuda
def test_tiny_matrix_on_cuda_writes_complete_gpu_records(tmp_path: Path) -> None:
    cells = plan_matrix(["tiny-vit"], GPU_PATHS, ["cuda"], [2])
    opts = RunOptions(out_dir=str(tmp_path), profile="quick", command="pytest -m cuda")
    summary = reproduce(cells, opts, ProcessExecutor())  # the schema checks every document written
    docs = {d["cell"]["path"]: d for d in load_results(tmp_path).docs}
    assert set(docs) == set(GPU_PATHS)
    for path, doc in docs.items():
        if doc["status"] == "skipped":  # e.g. bitsandbytes not installed: a reason, never a number
            ok, why = get_path(path).available("cuda")
            assert not ok and doc["reason"] == why
            continue
        assert doc["status"] == "ok", (path, doc["reason"])
        assert doc["latency"]["timer"] == "cuda_event"
        assert doc["memory"]["peak_source"].startswith("torch.cuda.max_memory_allocated")
        assert doc["memory"]["after_prepare"]["cuda_allocated_mb"] > 0
        assert doc["environment"]["gpu"]["name"] and doc["environment"]["cuda"]["cudnn"]
        assert doc["compute"]["achieved_tflops"] > 0
        assert (
            "sm_clock_mhz" in doc["math"]["gpu_clocks_after_timing"]
            or "nvml_error" in doc["math"]["gpu_clocks_after_timing"]
        )
    fp32 = docs["torch-fp32"]
    assert fp32["status"] == "ok"
    assert fp32["math"]["tf32_matmul"] is False and fp32["path_info"]["tf32"]["matmul"] is False
    assert fp32["compute"]["math_class"] == "fp32"
    assert docs["torch-fp16"]["fidelity"]["cosine"] > 0.999
    assert summary.failed == 0
