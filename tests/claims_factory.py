"""Result documents for the claims tests: schema-valid, with plausible numbers the test chooses.

Kept apart from the runner on purpose: validate is tested against the result *schema*, not
against whatever the runner happens to write today.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

RTX = "NVIDIA GeForce RTX 4070 Ti SUPER"
H100 = "NVIDIA H100 80GB HBM3"
CPU = "Intel(R) Xeon(R) Platinum 8480+"


def environment(
    gpu: str | None = RTX,
    cpu: str = CPU,
    torch: str = "2.1.0+cu121",
    bnb: str | None = "0.42.0",
    python: str = "3.11.9",
) -> dict[str, Any]:
    return {
        "python": python,
        "packages": {"torch": torch, "bitsandbytes": bnb, "transformers": "4.40.0"},
        "os": "Linux-5.15.0-x86_64-with-glibc2.35",
        "cpu": {"model": cpu, "usable_cores": 16},
        "gpu": {
            "name": gpu,
            "memory_mb": 16376.0,
            "capability": "8.9",
            "nvml_error": "synthetic test document: no NVML reading",
        }
        if gpu
        else None,
        "cuda": {"available": bool(gpu), "torch_cuda_build": "12.1", "cudnn": 8902} if gpu else None,
        "kit": {"version": "0.1.0"},
        "utc": "2025-01-01T00:00:00Z",
    }


def latency(mean: float, cv: float = 0.01, iterations: int = 200) -> dict[str, Any]:
    std = mean * cv
    return {
        "unit": "ms",
        "timer": "cuda_event",
        "warmup_iterations": 10,
        "warmup_s": 0.5,
        "iterations": iterations,
        "duration_s": mean * iterations / 1000,
        "min_iterations": 100,
        "min_duration_s": 1.0,
        "max_duration_s": 60.0,
        "stopped_by": "min_iterations_and_duration",
        "mean": mean,
        "std": std,
        "cv": cv,
        "min": mean - std,
        "p50": mean,
        "p90": mean + std,
        "p95": mean + 1.5 * std,
        "p99": mean + 2 * std,
        "max": mean + 3 * std,
        "p50_ci95": [mean - std / 5, mean + std / 5],
        "ci_method": "bootstrap",
        "percentile_method": "linear",
        "noise_warnings": [],
        "samples": [mean - std, mean, mean + std],
    }


def ok_result(
    model: str,
    path: str,
    *,
    device: str = "cuda",
    batch: int = 1,
    latency_ms: float = 10.0,
    cv: float = 0.01,
    iterations: int = 200,
    peak_mb: float = 100.0,
    size_bytes: int = 4_000_000,
    parameters: int = 86_000_000,
    gpu: str | None = RTX,
    cpu: str = CPU,
    finished: str = "2025-01-01T00:10:00Z",
    env: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "schema_version": "1",
        "kind": "qkit-result",
        "cell": {"model": model, "path": path, "device": device, "batch_size": batch},
        "status": "ok",
        "reason": None,
        "model_info": {"param_count": parameters, "image_size": 224},
        "path_info": {"path": path},
        "latency": latency(latency_ms, cv, iterations),
        "throughput": {"samples_per_s": batch * 1000 / latency_ms, "method": "batch_size / median latency"},
        "memory": {
            "peak_mb": peak_mb,
            "peak_source": "torch.cuda.max_memory_allocated",
            # Memory by phase (kit.measure.memory); the synthetic peak stands for every phase.
            "phases": {
                "load": {"peak_mb": peak_mb, "net_mb": peak_mb, "source": "synthetic test document"},
                "steady": {"mb": peak_mb, "source": "synthetic test document"},
                "inference": {"peak_mb": peak_mb, "net_mb": peak_mb, "source": "synthetic test document"},
                "baseline_mb": 0.0,
            },
            **(
                {
                    "cuda": {
                        "max_memory_allocated_mb": peak_mb,
                        "max_memory_reserved_mb": peak_mb,
                        "source": "synthetic test document",
                    },
                    "nvml": {"error": "synthetic test document: no NVML reading"},
                }
                if device == "cuda"
                else {}
            ),
        },
        "math": {
            "tf32_matmul": False,
            "tf32_cudnn": False,
            "gpu_clocks_after_timing": {"nvml_error": "synthetic test document: no NVML reading"},
        }
        if device == "cuda"
        else None,
        "size": {"bytes": size_bytes, "mb": size_bytes / 2**20, "method": "safetensors"},
        "fidelity": {
            "reference": "torch-fp32",
            "inputs": "seeded",
            "max_abs_error": 0.0,
            "mean_abs_error": 0.0,
            "cosine": 1.0,
        },
        "environment": env or environment(gpu, cpu),
        "started_utc": "2025-01-01T00:00:00Z",
        "finished_utc": finished,
    }


def not_ok_result(
    model: str,
    path: str,
    status: str,
    reason: str,
    *,
    device: str = "cuda",
    batch: int = 1,
    gpu: str | None = RTX,
    cpu: str = CPU,
) -> dict[str, Any]:
    return {
        "schema_version": "1",
        "kind": "qkit-result",
        "cell": {"model": model, "path": path, "device": device, "batch_size": batch},
        "status": status,
        "reason": reason,
        "environment": environment(gpu, cpu),
        "started_utc": "2025-01-01T00:00:00Z",
        "finished_utc": "2025-01-01T00:00:01Z",
    }


def accuracy_doc(
    model: str, path: str, top1: float, top5: float, *, images: int = 10_000, device: str = "cpu"
) -> dict[str, Any]:
    return {
        "schema_version": "1",
        "kind": "qkit-accuracy",
        "model": model,
        "path": path,
        "device": device,
        "status": "ok",
        "reason": None,
        "dataset": {"dir": "/data/tiny-imagenet/val"},
        "weights": "/w",
        "environment": {},
        "top1_pct": top1,
        "top5_pct": top5,
        "images": images,
        "top1_ci95": [top1 - 0.8, top1 + 0.8],
        "top5_ci95": [top5 - 0.4, top5 + 0.4],
        "started_utc": "2025-01-01T00:00:00Z",
        "finished_utc": "2025-01-01T00:00:01Z",
    }


LABEL_PATH = {"fp32": "torch-fp32", "fp16": "torch-fp16", "int8_bitsandbytes": "bnb-int8", "int4_nf4": "bnb-nf4"}


def published_results(expected_dir: Path, gpu: str = RTX) -> list[dict[str, Any]]:
    """The study's own 64 rows (001's architecture summary) as if measured here on ``gpu``.

    Validating the claims against these shows which claims the study's own data supports.
    """
    data = json.loads(next(expected_dir.glob("001_*.json")).read_text(encoding="utf-8"))
    rows: dict[tuple[str, str], dict[str, float]] = {}
    for claim in data["claims"]:
        if claim["id"].startswith("001.arch.") and claim.get("table_cell"):
            key = (claim["subject"]["model"], claim["kit_path"])
            rows.setdefault(key, {})[claim["table_cell"]["column"]] = claim["value"]
    docs = []
    for (model, path), row in rows.items():
        # size: weights at the row's precision, for the storage claims
        bytes_per = {"torch-fp32": 4, "torch-fp16": 2, "bnb-int8": 1, "bnb-nf4": 0.5}[path]
        docs.append(
            ok_result(
                model,
                path,
                latency_ms=row["latency_ms"],
                cv=0.005,
                iterations=1000,
                peak_mb=row["peak_memory_mb"],
                parameters=int(row["parameters"]),
                size_bytes=int(row["parameters"] * bytes_per),
                gpu=gpu,
            )
        )
    return docs


def deep_copy(doc: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(doc)
