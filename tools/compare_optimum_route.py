#!/usr/bin/env python3
"""The kit's ONNX Runtime route against optimum's, on one machine, in one process.

    .venv-cudastack/bin/python tools/compare_optimum_route.py [--models deit-small-distilled-224-edge,...]
        [--rounds 7] [--iters 20] [--out results/optimum-route.json]

Needs optimum (the cuda-stack venv that `make docker-check-stack` builds). Random seeded weights
(weights cannot be downloaded here), batch 1, ONNX Runtime's CPU provider, the same session
options for every variant. Variants per model:

* kit-fp32: `kit.export.onnx_export.get_or_export` (torch.onnx, checked against PyTorch)
* kit-int8: that export through `kit.quantize.ort_quant.quantize_dynamic_file` (kit's defaults)
* optimum-fp32: optimum's exporter (`kit.export.optimum_route`, no ORTOptimizer)
* optimum-fp32-O2: + ORTOptimizer at level 2, where optimum supports the model type
* optimum-int8: optimum's export through ORTQuantizer avx512_vnni dynamic (MatMul, per-tensor)

Latency: every variant's session is created first, then ``--rounds`` rounds each time every
variant ``--iters`` times in turn (interleaved, so drift on a shared machine hits all alike), with
one timer (time.perf_counter_ns around session.run). Reported: the median of all calls, and the
spread of the per-round medians (min-max). Fidelity: cosine of each variant's output with the
torch FP32 output on 8 seeded images (seed 1235, one image per run): the worst and the mean.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kit.export.optimum_route import (  # noqa: E402
    OptimumUnavailable,
    cosine,
    optimum_model,
    optimum_status,
    optimum_versions,
)
from kit.models.build import build_model, example_inputs, output_of, weights_fingerprint  # noqa: E402
from kit.models.registry import get_model  # noqa: E402

FIDELITY_SEED = 1235
LATENCY_SEED = 1234


class Ctx:
    def __init__(self, spec: Any, root: Path) -> None:
        self.spec = spec
        self.work_dir = str(root / "work")
        self.cache_dir = str(root / "cache")
        self.weights_fingerprint = weights_fingerprint(spec, "random", 0)
        self.options: dict[str, Any] = {}

    def build_float_model(self) -> Any:
        return build_model(self.spec, weights="random", seed=0)[0]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def variants(ctx: Ctx) -> tuple[dict[str, Path], dict[str, Any]]:
    from kit.export.onnx_export import get_or_export
    from kit.quantize.ort_quant import DynamicSettings, quantize_dynamic_file

    paths: dict[str, Path] = {}
    notes: dict[str, Any] = {}
    started = time.perf_counter()
    export = get_or_export(ctx.spec, ctx.build_float_model, ctx.cache_dir, ctx.weights_fingerprint)
    paths["kit-fp32"] = export.onnx_path
    notes["kit-fp32"] = {k: export.record.get(k) for k in ("exporter", "exporter_version", "opset", "check")}
    notes["kit-fp32"]["seconds"] = round(time.perf_counter() - started, 2)
    started = time.perf_counter()
    int8 = export.directory / "kit-int8.onnx"
    settings = DynamicSettings()
    notes["kit-int8"] = quantize_dynamic_file(export.onnx_path, int8, settings, export.external_data)
    notes["kit-int8"]["seconds"] = round(time.perf_counter() - started, 2)
    paths["kit-int8"] = int8
    for name, kind, optimize in (
        ("optimum-fp32", "fp32", False),
        ("optimum-fp32-O2", "fp32", True),
        ("optimum-int8", "int8-dynamic", False),
        ("optimum-int8-O2", "int8-dynamic", True),
    ):
        try:
            path, record = optimum_model(ctx, kind, optimize)  # type: ignore[arg-type]
        except OptimumUnavailable as exc:
            notes[name] = {"unavailable": str(exc)}
            continue
        paths[name] = path
        notes[name] = {
            "export": {k: record["export"].get(k) for k in ("task", "opset", "export_seconds", "check")},
            "optimization": record.get("optimization")
            and {k: record["optimization"].get(k) for k in ("fused_operators", "optimize_seconds")},
            "quantization": record.get("quantization")
            and {k: record["quantization"].get(k) for k in ("quantization_config_factory", "quantize_seconds")},
        }
    return paths, notes


def measure(ctx: Ctx, paths: dict[str, Path], rounds: int, iters: int) -> dict[str, Any]:
    import onnxruntime as ort
    import torch

    spec = ctx.spec
    model = ctx.build_float_model()
    fid = example_inputs(spec, 8, seed=FIDELITY_SEED)
    with torch.no_grad():
        ref = output_of(model, spec, torch.from_numpy(fid)).numpy()
    del model
    sessions = {}
    for name, path in paths.items():
        options = ort.SessionOptions()  # ORT's defaults: all graph optimizations, its thread count
        sessions[name] = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    out: dict[str, Any] = {}
    for name, sess in sessions.items():
        inp = sess.get_inputs()[0].name
        got = np.concatenate([sess.run(None, {inp: fid[i : i + 1]})[0] for i in range(len(fid))])
        a = np.asarray(got, dtype=np.float64).reshape(len(fid), -1)
        b = np.asarray(ref, dtype=np.float64).reshape(len(fid), -1)
        per = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        out[name] = {"cosine_min": cosine(got, ref), "cosine_mean": float(per.mean()), "times_ms": [], "rounds": []}
    x = example_inputs(spec, 1, seed=LATENCY_SEED)
    feeds = {name: {s.get_inputs()[0].name: x} for name, s in sessions.items()}
    for name, sess in sessions.items():  # warm-up
        for _ in range(5):
            sess.run(None, feeds[name])
    for r in range(rounds):
        order = list(sessions) if r % 2 == 0 else list(reversed(sessions))
        for name in order:
            sess, feed = sessions[name], feeds[name]
            times = []
            for _ in range(iters):
                t0 = time.perf_counter_ns()
                sess.run(None, feed)
                times.append((time.perf_counter_ns() - t0) / 1e6)
            out[name]["times_ms"].extend(times)
            out[name]["rounds"].append(statistics.median(times))
    for res in out.values():
        res["median_ms"] = statistics.median(res["times_ms"])
        res["round_median_min_ms"] = min(res["rounds"])
        res["round_median_max_ms"] = max(res["rounds"])
        res["calls"] = len(res.pop("times_ms"))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="deit-small-distilled-224-edge,vit-base-224-production")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--out", default=None, help="write the full result as JSON here")
    args = ap.parse_args(argv)
    ok, why = optimum_status()
    if not ok:
        print(f"compare_optimum_route: {why}", file=sys.stderr)
        return 2
    import onnxruntime as ort

    result: dict[str, Any] = {
        "cpu": cpu_model(),
        "threads_default": "ORT default intra-op threads",
        "versions": optimum_versions(),
        "ort_version": ort.__version__,
        "rounds": args.rounds,
        "iters": args.iters,
        "models": {},
    }
    print(f"CPU: {result['cpu']}; {result['versions']}")
    for model_id in args.models.split(","):
        spec = get_model(model_id)
        with tempfile.TemporaryDirectory(prefix="qkit-optimum-cmp-") as tmp:
            ctx = Ctx(spec, Path(tmp))
            paths, notes = variants(ctx)
            timings = measure(ctx, paths, args.rounds, args.iters)
        result["models"][model_id] = {"variants": notes, "measured": timings}
        print(f"\n{model_id} (batch 1, CPU provider, {args.rounds} rounds x {args.iters} calls, interleaved)")
        print(f"  {'variant':18s} {'median ms':>10s} {'round medians ms':>20s} {'cos min':>9s} {'cos mean':>9s}")
        for name, res in timings.items():
            spread = f"{res['round_median_min_ms']:.2f}-{res['round_median_max_ms']:.2f}"
            cos = f"{res['cosine_min']:9.5f} {res['cosine_mean']:9.5f}"
            print(f"  {name:18s} {res['median_ms']:10.2f} {spread:>20s} {cos}")
        for name, note in notes.items():
            if "unavailable" in note:
                print(f"  {name:18s} skipped: {note['unavailable']}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1, default=str) + "\n")
        print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
