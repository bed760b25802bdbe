"""Benchmark (``make bench`` on a machine with CUDA): how close the GPU paths get to the card.

- ``fp16_peak``: torch-fp16 ViT-H/14 at batch 32, timed with CUDA events; achieved TFLOP/s
  (FLOPs counted once with ``torch.utils.flop_counter``) against the card's dense FP16 tensor
  peak from ``kit.hardware.gpus``. Target: >= 50% of peak.
- ``bnb``: bitsandbytes LLM.int8 and NF4 against FP32 on ViT-B/16, batch 1, on CUDA
  (`kit.bench.bnb`): latency ratio, weight-bytes ratio, fidelity.

Where torch sees no CUDA device, each part prints ``skipped`` with the reason and returns it: no
figure is made up. Weights are the kit's seeded random ones; neither latency nor bytes depend on
their values.

    python -m kit.bench.gpu [--model ID] [--batch N] [--seconds S]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from typing import Any

FP16_PEAK_MODEL = "vit-huge-patch14-2020"
FP16_PEAK_BATCH = 32
TARGET_FRACTION = 0.5


def _cuda_status() -> tuple[bool, str]:
    from kit.paths.torch_paths import cuda_available

    return cuda_available()


def bench_fp16_peak(
    model_id: str = FP16_PEAK_MODEL,
    batch_size: int = FP16_PEAK_BATCH,
    seconds: float = 5.0,
    seed: int = 0,
    out: Any = None,
) -> dict[str, Any]:
    """Achieved FP16 TFLOP/s of ``model_id`` at ``batch_size`` against the card's dense FP16 peak."""
    out = out or sys.stdout
    label = f"[gpu] torch-fp16 {model_id} batch {batch_size}"
    ok, why = _cuda_status()
    if not ok:
        print(f"{label}: skipped: {why}", file=out)
        return {"status": "skipped", "reason": why}

    import torch

    from kit.measure.compute import compute_section
    from kit.measure.environment import math_settings
    from kit.measure.latency import LatencyConfig, LatencyTracker
    from kit.models.build import build_model, example_inputs
    from kit.models.registry import get_model
    from kit.paths.base import PrepareContext, get_path

    spec = get_model(model_id)
    with tempfile.TemporaryDirectory(prefix="qkit-bench-gpu-") as work:
        ctx = PrepareContext(
            spec=spec,
            device="cuda",
            batch_size=batch_size,
            build_float_model=lambda: build_model(spec, weights="random", seed=seed)[0],
            work_dir=work,
            cache_dir=work,
            weights_fingerprint=f"random-{seed}",
        )
        prepared = None
        try:
            prepared = get_path("torch-fp16").prepare(ctx)
            call = prepared.make_timed_call(example_inputs(spec, batch_size, seed=1234))
            cfg = LatencyConfig(warmup_iterations=10, warmup_s=2.0, min_iterations=30, min_duration_s=seconds)
            timed = LatencyTracker(cfg, device="cuda", seed=seed).run(call)
            section = compute_section(
                spec,
                None,
                batch_size,
                timed.stats["p50"],
                torch.cuda.get_device_name(),
                declared_math=get_path("torch-fp16").math_class,
                details=prepared.details,
                math=math_settings(),
                cache_dir=work,
            )
        except torch.cuda.OutOfMemoryError as exc:
            reason = f"CUDA out of memory at batch {batch_size}: {str(exc).splitlines()[0]}"
            print(f"{label}: failed: {reason}", file=out)
            return {"status": "failed", "reason": reason}
        finally:
            if prepared is not None:
                prepared.close()
    fraction = section["fraction_of_peak"]
    met = None if fraction is None else fraction >= TARGET_FRACTION
    verdict = "unknown (no peak for this card)" if met is None else ("MET" if met else "NOT MET")
    peak = section["peak_tflops"]
    print(
        f"{label} on {section['gpu']}: p50 {timed.stats['p50']:.2f} ms ({timed.timer}, {len(timed.samples_ms)} "
        f"iterations), {section['gflops_per_forward']:.0f} GFLOP per forward, achieved "
        f"{section['achieved_tflops']:.1f} TFLOP/s"
        + (
            f" = {fraction:.1%} of {peak:.1f} ({section['peak_kind']}, {section['gpu_table_entry']})"
            if fraction is not None
            else f" ({section.get('reason')})"
        )
        + f"; target >= {TARGET_FRACTION:.0%}: {verdict}",
        file=out,
    )
    return {
        "status": "ok",
        "model": model_id,
        "batch_size": batch_size,
        "p50_ms": timed.stats["p50"],
        "timer": timed.timer,
        "iterations": len(timed.samples_ms),
        "compute": section,
        "target_fraction": TARGET_FRACTION,
        "target_met": met,
    }


def bench_gpu(out: Any = None) -> dict[str, Any]:
    """``make bench`` entry (kit.bench looks it up): both GPU benchmarks, or their skip reasons."""
    out = out or sys.stdout
    figures: dict[str, Any] = {"fp16_peak": bench_fp16_peak(out=out)}
    ok, why = _cuda_status()
    if not ok:
        print(f"[gpu] bitsandbytes vs FP32 on CUDA: skipped: {why}", file=out)
        figures["bnb"] = {"status": "skipped", "reason": why}
    else:
        from kit.bench.bnb import bench_bnb

        figures["bnb"] = bench_bnb(device="cuda", out=out)
    return figures


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=FP16_PEAK_MODEL)
    ap.add_argument("--batch", type=int, default=FP16_PEAK_BATCH)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--json", default=None, help="also write the figures here")
    args = ap.parse_args(argv)
    result = bench_fp16_peak(args.model, args.batch, args.seconds)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=1, default=str)
    return 0 if result["status"] == "ok" else 1


if __name__ == "__main__":
    raise SystemExit(main())
