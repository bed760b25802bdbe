"""Benchmark: bitsandbytes LLM.int8 and NF4 against FP32 on one model (default ViT-B/16, batch 1).

Prints, per path: median latency and its ratio to FP32, weight bytes and their ratio to FP32
(targets: INT8 <= 0.27x, NF4 <= 0.15x), fidelity against FP32 (cosine, worst row, top-1
agreement) and what replaced what. Paths are prepared one at a time
(one float model built at a time) and timed in interleaved blocks, so load from other processes
on a shared machine falls on every path alike.

    python -m kit.bench.bnb [--model ID] [--device cpu|cuda] [--batch N] [--seconds S]

Weights are the kit's seeded random ones (no download): latency and bytes do not depend on the
values; fidelity on random weights is a lower bound on what trained weights give (no learned
outlier structure for LLM.int8 to exploit, nearly flat logits that make top-1 noisy).
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from typing import Any

WEIGHT_TARGETS = {"bnb-int8": 0.27, "bnb-nf4": 0.15, "bnb-fp4": 0.15}
DEFAULT_PATHS = ("torch-fp32", "bnb-int8", "bnb-nf4")
# Extra rows on CPU: bitsandbytes' fused CPU 4-bit kernel computes in bf16; on a CPU whose bf16
# GEMM is slower than its FP32 one (AVX512-BF16 without AMX), FP32 compute through the generic
# dequantize + matmul can be the faster NF4. Shown beside the default, never instead of it.
CPU_VARIANTS = ("bnb-nf4:bnb.compute_dtype=float32",)


def parse_entry(entry: str) -> tuple[str, dict[str, str]]:
    """``PATH`` or ``PATH:KEY=VALUE[;KEY=VALUE]`` -> (path name, options of that row)."""
    name, _, rest = entry.partition(":")
    options: dict[str, str] = {}
    for item in filter(None, rest.split(";")):
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise ValueError(f"bench entry {entry!r}: expected PATH:KEY=VALUE[;KEY=VALUE]")
        options[key.strip()] = value.strip()
    return name.strip(), options


def _prepare_path(
    path_name: str, spec: Any, device: str, batch: int, seed: int, work: str, fid_images: Any, options: dict[str, Any]
) -> dict[str, Any]:
    """Prepare one path and run the fidelity images; the prepared model stays alive for timing."""
    import os

    from kit.models.build import build_model, example_inputs
    from kit.paths.base import PathFailed, PathUnavailable, PrepareContext, get_path

    label = path_name
    path_name, row_options = parse_entry(label)
    options = {**options, **row_options}
    path = get_path(path_name)
    ok, why = path.available(device)
    if not ok:
        return {"path": label, "status": "skipped", "reason": why}
    work_dir = os.path.join(work, f"row-{len(os.listdir(work))}-{path_name}")
    os.makedirs(work_dir)
    ctx = PrepareContext(
        spec=spec,
        device=device,
        batch_size=batch,
        build_float_model=lambda: build_model(spec, weights="random", seed=seed)[0],
        work_dir=work_dir,
        cache_dir=work,
        weights_fingerprint=f"random-{seed}",
        options=dict(options),
    )
    t0 = time.perf_counter()
    try:
        prepared = path.prepare(ctx)
    except (PathUnavailable, PathFailed) as exc:
        return {
            "path": label,
            "status": "skipped" if isinstance(exc, PathUnavailable) else "failed",
            "reason": str(exc),
        }
    row: dict[str, Any] = {
        "path": label,
        "path_name": path_name,
        "options": row_options,
        "status": "ok",
        "prepare_s": time.perf_counter() - t0,
        "weight_bytes": prepared.weight_bytes,
        "weight_bytes_by_dtype": prepared.weight_bytes_by_dtype,
        "serialized_bytes": prepared.serialized_bytes,
        "outputs": prepared.run(fid_images),
        "_prepared": prepared,
        "_call": prepared.make_timed_call(example_inputs(spec, batch, seed=1234)),
        "_samples": [],
    }
    proof = prepared.details.get("proof")
    if proof:
        row["replaced"] = proof["replaced_linear_layers"]
        row["float_left"] = proof["float_linear_modules"]
        row["layer_ratio"] = proof["replaced_weight_bytes"]["ratio_vs_fp32"]
        row["settings"] = prepared.details.get("settings")
        row["cpu_4bit_kernel_as_run"] = prepared.details.get("cpu_4bit_kernel_as_run")
    return row


def _time_interleaved(rows: list[dict[str, Any]], device: str, seconds: float, block: int, seed: int) -> None:
    """Time the live paths in alternating blocks, so load from other processes on a shared machine
    falls on every path alike; stops once each path has >= 20 samples and >= ``seconds`` of them."""
    from kit.measure.latency import LatencyConfig, LatencyTracker, summarize

    live = [r for r in rows if r["status"] == "ok"]
    warm = LatencyConfig(warmup_iterations=3, warmup_s=1.0, min_iterations=1, min_duration_s=0.0)
    for r in live:
        LatencyTracker(warm, device=device, seed=seed).run(r["_call"])
    cfg = LatencyConfig(
        warmup_iterations=1, warmup_s=0.0, min_iterations=block, min_duration_s=0.0, max_duration_s=None
    )
    rounds = 0
    while live and not all(len(r["_samples"]) >= 20 and sum(r["_samples"]) / 1000.0 >= seconds for r in live):
        order = live[rounds % len(live) :] + live[: rounds % len(live)]
        for r in order:
            r["_samples"].extend(LatencyTracker(cfg, device=device, seed=seed).run(r["_call"]).samples_ms)
        rounds += 1
    for r in live:
        stats = summarize(r["_samples"], seed=seed)
        r.update(
            p50_ms=stats["p50"],
            p50_ci95=stats["p50_ci95"],
            min_ms=stats["min"],
            iterations=len(r["_samples"]),
            noise_warnings=stats["noise_warnings"],
            rounds=rounds,
            block=block,
        )


def default_paths(device: str) -> tuple[str, ...]:
    return DEFAULT_PATHS + (CPU_VARIANTS if device == "cpu" else ())


def bench_bnb(
    model_id: str = "vit-base-224-production",
    device: str = "cpu",
    batch_size: int = 1,
    paths: tuple[str, ...] | None = None,
    seconds: float = 5.0,
    fidelity_images: int = 8,
    seed: int = 0,
    options: dict[str, Any] | None = None,
    block: int = 5,
    out: Any = None,
) -> dict[str, Any]:
    """Run the benchmark, print the table to ``out`` (stdout) and return the figures.

    Paths are prepared one after the other (one float model built at a time), then timed in
    interleaved blocks of ``block`` iterations (see `_time_interleaved`).
    """
    import torch

    from kit.measure.fidelity import compare_outputs
    from kit.models.build import example_inputs
    from kit.models.registry import get_model
    from kit.run.child import quiet_library_output

    quiet_library_output()
    out = out or sys.stdout
    spec = get_model(model_id)
    fid = example_inputs(spec, fidelity_images, seed=1235)
    paths = default_paths(device) if paths is None else tuple(paths)
    for entry in paths:
        parse_entry(entry)  # a malformed row fails before any model is built
    paths = paths if "torch-fp32" in paths else ("torch-fp32", *paths)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="qkit-bench-") as work:
        try:
            for name in paths:
                rows.append(_prepare_path(name, spec, device, batch_size, seed, work, fid, options or {}))
                gc.collect()
            _time_interleaved(rows, device, seconds, block, seed)
        finally:
            for r in rows:
                r.pop("_call", None)
                r.pop("_samples", None)
                prepared = r.pop("_prepared", None)
                if prepared is not None:
                    prepared.close()
    base = next((r for r in rows if r["path"] == "torch-fp32" and r["status"] == "ok"), None)
    for r in rows:
        if r["status"] != "ok" or base is None:
            continue
        r["latency_ratio"] = r["p50_ms"] / base["p50_ms"]
        r["min_latency_ratio"] = r["min_ms"] / base["min_ms"]
        r["speedup"] = base["p50_ms"] / r["p50_ms"]
        r["weight_ratio"] = r["weight_bytes"] / base["weight_bytes"]
        target = WEIGHT_TARGETS.get(r["path_name"])
        if target is not None:
            r["weight_target"] = target
            r["weight_target_met"] = r["weight_ratio"] <= target
        if r["path"] != "torch-fp32":
            r["fidelity"] = compare_outputs(base["outputs"], r["outputs"], classifier=spec.head == "classifier")
    for r in rows:
        r.pop("outputs", None)
    result = {
        "model": model_id,
        "device": device,
        "batch_size": batch_size,
        "weights": f"random seed {seed}",
        "fidelity_images": fidelity_images,
        "torch_threads": torch.get_num_threads(),
        "timing": f"interleaved blocks of {block} iterations after a warm-up; median of all samples",
        "rows": rows,
    }
    _print(result, out)
    return result


def _print(result: dict[str, Any], out: Any) -> None:
    mib = 2**20
    print(
        f"bitsandbytes vs FP32: {result['model']} on {result['device']}, batch {result['batch_size']}, "
        f"{result['weights']} weights, fidelity on {result['fidelity_images']} seeded images, "
        f"{result['torch_threads']} torch threads; {result['timing']}",
        file=out,
    )
    width = max([11, *(len(r["path"]) for r in result["rows"])])
    head = (
        f"{'path':<{width}} {'p50 ms':>9} {'x FP32':>7} {'min ms':>9} {'x FP32':>7} {'weights MiB':>12} "
        f"{'x FP32':>7} {'target':>8} {'cosine':>8} {'min cos':>8} {'top1':>5}  replaced / float"
    )
    print(head, file=out)
    for r in result["rows"]:
        if r["status"] != "ok":
            print(f"{r['path']:<{width}} {r['status']}: {r['reason']}", file=out)
            continue
        f = r.get("fidelity") or {}
        target = r.get("weight_target")
        tgt = "" if target is None else f"<={target}{' ok' if r['weight_target_met'] else ' NO'}"
        top1 = f.get("top1_agreement")
        print(
            f"{r['path']:<{width}} {r['p50_ms']:9.2f} {r.get('latency_ratio', 1.0):7.3f} "
            f"{r['min_ms']:9.2f} {r.get('min_latency_ratio', 1.0):7.3f} "
            f"{r['weight_bytes'] / mib:12.2f} {r.get('weight_ratio', 1.0):7.3f} {tgt:>8} "
            f"{f.get('cosine', 1.0):8.5f} {f.get('cosine_min', 1.0):8.5f} "
            f"{'' if top1 is None else f'{top1:.2f}':>5}  "
            + (f"{r['replaced']} / {', '.join(r['float_left']) or '-'}" if "replaced" in r else ""),
            file=out,
        )
        for w in r.get("noise_warnings") or []:
            print(f"{'':<{width}} warning: {w}", file=out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="vit-base-224-production")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=5.0, help="minimum timed duration per path")
    ap.add_argument(
        "--paths",
        default=None,
        help="comma-separated PATH or PATH:KEY=VALUE[;KEY=VALUE] rows (default: "
        f"{','.join(DEFAULT_PATHS)}, plus {','.join(CPU_VARIANTS)} on cpu)",
    )
    ap.add_argument("--json", default=None, help="also write the figures here")
    args = ap.parse_args(argv)
    paths = None if args.paths is None else tuple(p for p in args.paths.split(",") if p)
    result = bench_bnb(args.model, args.device, args.batch, paths, seconds=args.seconds)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=1, default=str)
    return 0 if all(r["status"] == "ok" for r in result["rows"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
