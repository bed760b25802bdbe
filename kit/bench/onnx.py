"""The ONNX/INT8 benchmark behind the issue's targets (``python -m kit.bench.onnx``).

1. ViT-B/16 (vit-base-224-production), batch 1, CPU, one run through the library runner:
   torch FP32, ORT FP32 and every INT8 method; p50s, ratios to ORT FP32 and torch FP32,
   fidelity, file sizes. Targets: best INT8 >= 3.2x ORT FP32; INT8 file <= 0.27x FP32 file.
2. Static QDQ fidelity on every ViT-family model (cosine >= 0.995, no all-zero or NaN output),
   one child process per model so a large model's export and calibration memory is its own.
3. MobileViT-S: the same comparison, plus ORT's per-operator profile of FP32 and both INT8
   graphs, which says where INT8 loses time.
4. Fusions on/off (`fusion_comparison`): for each model (``--fusion-models``, default ViT-B/16
   only), batch 1, CPU: torch FP32 and ORT FP32 / dynamic INT8 / static QDQ INT8, each ORT path
   with ORT's transformer fusions (``fusion=true``, the default) and without, timed interleaved
   in one process so that load from elsewhere hits every variant alike; ratios of the best INT8
   to ORT FP32 with the same fusions (target >= 3.2x) and to torch FP32 (target >= 4x), the
   fused op counts, cosines against torch FP32, the CPU model, and ORT's per-op-type time
   share of each ORT graph (where a target is short, it says why).
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

VIT_B16 = "vit-base-224-production"
MOBILEVIT_S = "mobilevit-small-edge"
VIT_FAMILIES = ("vit", "deit", "dino", "dinov2", "beit")
TARGET_SPEEDUP = 3.2
TARGET_COSINE = 0.995
TARGET_SIZE_RATIO = 0.27
TARGET_SPEEDUP_VS_TORCH = 4.0
FUSION_PATHS = ("ort-fp32", "ort-int8-dynamic", "ort-int8-static-qdq")


def timing_table(model: str, out: Path, profile: str, executor: str = "process") -> list[dict[str, Any]]:
    """CPU rows of `kit.compare.int8` for ``model`` (the runner, resumable under ``out``)."""
    from kit.compare.int8 import run_comparison, write_outputs

    table = run_comparison(model, ["cpu"], out, profile=profile, executor_name=executor)
    write_outputs(model, 1, table, out)
    return table


def _by_path(table: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["path"]: r for r in table if r["device"] == "cpu"}


def print_timing(model: str, table: list[dict[str, Any]]) -> dict[str, Any]:
    rows = _by_path(table)
    ort_fp32 = rows.get("ort-fp32", {}).get("p50_ms")
    torch_fp32 = rows.get("torch-fp32", {}).get("p50_ms")
    print(f"\n== {model}, batch 1, CPU ==")
    print(
        f"{'path':22} {'p50 ms':>9} {'p99 ms':>9} {'x ORT FP32':>11} {'x torch FP32':>13} {'size MB':>9} "
        f"{'cosine':>9}  status"
    )
    best: tuple[float, str] | None = None
    for path, r in rows.items():
        if r["status"] != "ok":
            print(f"{path:22} {'-':>9} {'-':>9} {'-':>11} {'-':>13} {'-':>9} {'-':>9}  {r['status']}: {r['reason']}")
            continue
        x_ort = ort_fp32 / r["p50_ms"] if ort_fp32 else None
        x_torch = torch_fp32 / r["p50_ms"] if torch_fp32 else None
        if "int8" in path and x_ort and (best is None or x_ort > best[0]):
            best = (x_ort, path)
        print(
            f"{path:22} {r['p50_ms']:9.2f} {r['p99_ms']:9.2f} {_x(x_ort):>11} {_x(x_torch):>13} "
            f"{r['size_mb'] or 0:9.1f} {r['cosine'] or 0:9.5f}  ok"
        )
    return {"best_int8": best}


def _x(value: float | None) -> str:
    return f"{value:.2f}x" if value else "-"


def size_ratios(table: list[dict[str, Any]]) -> dict[str, float]:
    rows = _by_path(table)
    base = rows.get("ort-fp32", {}).get("size_mb")
    return {
        p: rows[p]["size_mb"] / base
        for p in ("ort-int8-dynamic", "ort-int8-static-qdq")
        if base and rows.get(p, {}).get("size_mb")
    }


# --------------------------------------------------------------------------- fidelity sweep


def static_fidelity(model_id: str, cache_dir: str, weights: str = "random", seed: int = 0) -> dict[str, Any]:
    """Static QDQ (default settings) of ``model_id`` against PyTorch FP32 on 4 seeded images."""
    import torch

    from kit.measure.fidelity import compare_outputs
    from kit.models.build import build_model, example_inputs, output_of, weights_fingerprint
    from kit.models.registry import get_model
    from kit.paths.base import PrepareContext, get_path

    spec = get_model(model_id)
    pixels = example_inputs(spec, 4, seed=1235)
    model, _ = build_model(spec, weights=weights, seed=seed)
    with torch.inference_mode():
        reference = output_of(model, spec, torch.from_numpy(pixels)).float().numpy()
    del model
    with tempfile.TemporaryDirectory() as work:
        ctx = PrepareContext(
            spec,
            "cpu",
            1,
            lambda: build_model(spec, weights=weights, seed=seed)[0],
            work,
            cache_dir,
            weights_fingerprint(spec, weights, seed),
            {},
        )
        prepared = get_path("ort-int8-static-qdq").prepare(ctx)
        candidate = prepared.run(pixels)
        details = prepared.details
        prepared.close()
    result = compare_outputs(reference, candidate, classifier=spec.head == "classifier")
    result.update(
        model=model_id,
        all_zero=not bool(abs(candidate).sum()),
        size_ratio=details["size_ratio_vs_fp32_file"],
        export_cosine=details["export"]["check"]["cosine"],
        external_data=details["export"]["external_data"],
        peak_rss_gb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    )
    return result


def fidelity_sweep(models: list[str], cache_dir: Path, executor: str = "process") -> list[dict[str, Any]]:
    from kit.run.executors import make_executor

    runner = make_executor(executor)
    results = []
    print(f"\n== static QDQ fidelity (cosine >= {TARGET_COSINE}, no all-zero / NaN) ==")
    for model in models:
        try:
            r = runner.call(static_fidelity, model, str(cache_dir), timeout_s=1800)
        except Exception as exc:  # TaskCrashed or the child's error: one line, the sweep goes on
            r = {"model": model, "error": str(exc)}
        results.append(r)
        if "error" in r:
            print(f"{model:32} FAILED: {r['error']}")
            continue
        verdict = "ok" if r["cosine"] >= TARGET_COSINE and r["finite"] and not r["all_zero"] else "BELOW TARGET"
        print(
            f"{model:32} cosine {r['cosine']:.5f} (worst image {r['cosine_min']:.5f}) top-1 "
            f"{_opt(r['top1_agreement'])} size {r['size_ratio']:.3f}x peak RSS {r['peak_rss_gb']:.1f} GB  {verdict}"
        )
    runner.close()
    return results


def _opt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def vit_family_models() -> list[str]:
    from kit.models.registry import MODELS

    return [m.id for m in MODELS.values() if m.family in VIT_FAMILIES]


# --------------------------------------------------------------------------- operator profile


def op_profile(onnx_path: str, model_id: str, runs: int = 10, top: int = 8) -> list[tuple[str, float, float]]:
    """(op type, ms per run, share of kernel time) from ORT's profiler, largest first."""
    import numpy as np

    from kit.export.onnx_export import open_session
    from kit.export.ort_runtime import session_options
    from kit.models.build import example_inputs
    from kit.models.registry import get_model

    options = session_options(record_assignment=False)
    options.enable_profiling = True
    options.profile_file_prefix = str(Path(tempfile.gettempdir()) / "qkit-ort-profile")
    session = open_session(onnx_path, options, ["CPUExecutionProvider"])
    x = example_inputs(get_model(model_id), 1, seed=1234)
    name = session.get_inputs()[0].name
    for _ in range(runs + 2):
        session.run(None, {name: np.ascontiguousarray(x)})
    trace = Path(session.end_profiling())
    events = json.loads(trace.read_text())
    trace.unlink()
    per_op: Counter[str] = Counter()
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            per_op[e["args"]["op_name"]] += e["dur"]
    total = sum(per_op.values()) or 1
    return [(op, us / 1000 / (runs + 2), us / total) for op, us in per_op.most_common(top)]


def print_profiles(model: str, directory: Path) -> dict[str, list[tuple[str, float, float]]]:
    """Per-operator profile of every ORT cell that ran for ``model`` under ``directory``."""
    from kit.results.store import load_results

    print(f"\n== {model}: where the time goes (ORT profiler, kernel time per run, CPU provider) ==")
    profiles = {}
    for doc in sorted(load_results(directory).docs, key=lambda d: d["cell"]["path"]):
        path = doc["cell"]["path"]
        if not path.startswith("ort-") or doc["status"] != "ok" or doc["cell"]["device"] != "cpu":
            continue
        ops = op_profile(doc["path_info"]["model_file"], model)
        profiles[path] = ops
        print(f"{path}: " + ", ".join(f"{op} {ms:.2f} ms ({share:.0%})" for op, ms, share in ops))
    return profiles


# --------------------------------------------------------------------------- fusion on / off


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo, else platform), with its core count."""
    import os
    import platform

    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name} ({os.cpu_count()} logical CPUs)"


def fusion_comparison(
    model_id: str, cache_dir: str, rounds: int = 7, iterations: int = 5, profile_runs: int = 5
) -> dict[str, Any]:
    """Torch FP32 and the ORT paths with fusions on and off, timed interleaved (see module doc).

    Method: every variant is prepared by its path (the library's own prepare, so the fused
    graph, quantizers, caches and session options are the cells'); then ``rounds`` rounds, each
    timing ``iterations`` back-to-back calls of every variant in turn after one warm-up call;
    a variant's figure is the median over all its timed calls (perf_counter_ns per call).
    """
    import statistics
    import time

    import torch

    from kit.measure.fidelity import compare_outputs
    from kit.models.build import build_model, example_inputs, output_of, weights_fingerprint
    from kit.models.registry import get_model
    from kit.paths.base import PrepareContext, get_path

    spec = get_model(model_id)
    x = example_inputs(spec, 1, seed=1234)
    pixels = example_inputs(spec, 4, seed=1235)
    model, _ = build_model(spec, weights="random", seed=0)
    with torch.inference_mode():
        reference = output_of(model, spec, torch.from_numpy(pixels)).float().numpy()
    tx = torch.from_numpy(x)

    def torch_call() -> None:
        with torch.inference_mode():
            model(pixel_values=tx)

    calls: dict[str, Any] = {"torch-fp32": torch_call}
    info: dict[str, dict[str, Any]] = {"torch-fp32": {"cosine": 1.0, "threads": torch.get_num_threads()}}
    closers = []
    with tempfile.TemporaryDirectory() as work:
        for fusion in (True, False):
            for path in FUSION_PATHS:
                ctx = PrepareContext(
                    spec,
                    "cpu",
                    1,
                    lambda: build_model(spec, weights="random", seed=0)[0],
                    work,
                    cache_dir,
                    weights_fingerprint(spec, "random", 0),
                    {"fusion": fusion},
                )
                prepared = get_path(path).prepare(ctx)
                name = f"{path} fusion={'on' if fusion else 'off'}"
                calls[name] = prepared.make_timed_call(x)
                fid = compare_outputs(reference, prepared.run(pixels), classifier=spec.head == "classifier")
                fu = prepared.details["fusion"]
                info[name] = {
                    "cosine": fid["cosine"],
                    "finite": fid["finite"],
                    "model_file": prepared.details["model_file"],
                    "fused_ops": fu.get("fused_ops_in_graph") if fu.get("applied") else None,
                    "fusion_check_cosine": (fu.get("check") or {}).get("cosine"),
                    "optimizer": fu.get("onnxruntime_version"),
                }
                closers.append(prepared.close)
        times: dict[str, list[float]] = {k: [] for k in calls}
        for _ in range(rounds):
            for name, call in calls.items():
                call()  # warm-up: the variant before it may have evicted its caches
                for _ in range(iterations):
                    t0 = time.perf_counter_ns()
                    call()
                    times[name].append((time.perf_counter_ns() - t0) / 1e6)
        for close in closers:
            close()
    rows = {name: {**info[name], "p50_ms": statistics.median(ts), "n": len(ts)} for name, ts in times.items()}
    result: dict[str, Any] = {
        "model": model_id,
        "cpu": cpu_model(),
        "method": f"interleaved: {rounds} rounds x {iterations} calls per variant after a warm-up call, "
        "median of perf_counter_ns per call; batch 1; ORT CPU provider with the kit's session options",
        "rows": rows,
    }
    for state in ("on", "off"):
        fp32 = rows[f"ort-fp32 fusion={state}"]["p50_ms"]
        best = min((p for p in FUSION_PATHS if "int8" in p), key=lambda p: rows[f"{p} fusion={state}"]["p50_ms"])
        best_ms = rows[f"{best} fusion={state}"]["p50_ms"]
        result[f"fusion_{state}"] = {
            "best_int8": best,
            "x_ort_fp32_same_fusions": fp32 / best_ms,
            "x_torch_fp32": rows["torch-fp32"]["p50_ms"] / best_ms,
        }
    result["op_profiles"] = {
        name: op_profile(r["model_file"], model_id, runs=profile_runs)
        for name, r in rows.items()
        if name != "torch-fp32"
    }
    return result


def print_fusion(result: dict[str, Any]) -> None:
    rows = result["rows"]
    print(f"\n== {result['model']}, batch 1, CPU: fusions on / off ({result['cpu']}) ==")
    print(f"method: {result['method']}")
    torch_ms = rows["torch-fp32"]["p50_ms"]
    for name, r in rows.items():
        fp32 = rows.get(f"ort-fp32 fusion={name.split('fusion=')[-1]}", {}).get("p50_ms") if "fusion=" in name else None
        print(
            f"{name:32} {r['p50_ms']:9.2f} ms  x ORT FP32 {_x(fp32 / r['p50_ms'] if fp32 else None):>7}  "
            f"x torch {_x(torch_ms / r['p50_ms']):>7}  cosine {r['cosine']:.5f}  fused {r.get('fused_ops')}"
        )
    for fusion in ("on", "off"):
        v = result[f"fusion_{fusion}"]
        a, b = v["x_ort_fp32_same_fusions"], v["x_torch_fp32"]
        print(
            f"fusion {fusion}: best INT8 {v['best_int8']} {a:.2f}x ORT FP32 (target >= {TARGET_SPEEDUP}x: "
            f"{'met' if a >= TARGET_SPEEDUP else 'short'}), {b:.2f}x torch FP32 (target >= "
            f"{TARGET_SPEEDUP_VS_TORCH}x: {'met' if b >= TARGET_SPEEDUP_VS_TORCH else 'short'})"
        )
    print("where the time goes (ORT profiler, kernel time share per op type):")
    for name, ops in result["op_profiles"].items():
        print(f"  {name}: " + ", ".join(f"{op} {share:.0%}" for op, _, share in ops))


def fusion_table(results: list[dict[str, Any]]) -> None:
    """Per model: best INT8 speedup over ORT FP32 with the same fusions, on and off."""
    print("\n== INT8 speedup per model, fusions on / off (x ORT FP32 with the same fusions; x torch FP32) ==")
    for r in results:
        if "error" in r:
            print(f"{r['model']:32} FAILED: {r['error']}")
            continue
        on, off = r["fusion_on"], r["fusion_off"]
        print(
            f"{r['model']:32} on: {on['best_int8']} {on['x_ort_fp32_same_fusions']:.2f}x / "
            f"{on['x_torch_fp32']:.2f}x   off: {off['best_int8']} {off['x_ort_fp32_same_fusions']:.2f}x / "
            f"{off['x_torch_fp32']:.2f}x"
        )


def fusion_sweep(models: list[str], cache_dir: Path, executor: str = "process") -> list[dict[str, Any]]:
    from kit.run.executors import make_executor

    runner = make_executor(executor)
    results = []
    for model in models:
        try:
            r = runner.call(fusion_comparison, model, str(cache_dir), timeout_s=3600)
            print_fusion(r)
        except Exception as exc:  # one model failing never stops the sweep
            r = {"model": model, "error": str(exc)}
        results.append(r)
    runner.close()
    fusion_table(results)
    return results


# --------------------------------------------------------------------------- entry point


def bench_onnx(
    out: str | Path = "results/bench-onnx",
    profile: str = "full",
    fidelity_models: list[str] | None = None,
    executor: str = "process",
    fusion_models: list[str] | None = None,
) -> dict[str, Any]:
    """Run the four parts and print the figures; returns them as a dict (also bench-onnx.json)."""
    out = Path(out)
    summary: dict[str, Any] = {}
    summary["fusion"] = fusion_sweep(fusion_models or [VIT_B16], out / "_fusion_cache", executor)
    vit = timing_table(VIT_B16, out / VIT_B16, profile, executor)
    summary["vit_b16"] = {"table": vit, **print_timing(VIT_B16, vit), "size_ratios": size_ratios(vit)}
    best = summary["vit_b16"]["best_int8"]
    print(f"best INT8: {best[1]} {best[0]:.2f}x ORT FP32 (target >= {TARGET_SPEEDUP}x)" if best else "no INT8 row ran")
    for path, ratio in summary["vit_b16"]["size_ratios"].items():
        print(f"{path} file = {ratio:.3f}x the FP32 file (target <= {TARGET_SIZE_RATIO})")
    mobile = timing_table(MOBILEVIT_S, out / MOBILEVIT_S, profile, executor)
    summary["mobilevit_s"] = {"table": mobile, **print_timing(MOBILEVIT_S, mobile)}
    summary["mobilevit_s"]["op_profiles"] = print_profiles(MOBILEVIT_S, out / MOBILEVIT_S)
    models = fidelity_models if fidelity_models is not None else vit_family_models()
    summary["static_qdq_fidelity"] = fidelity_sweep(models, out / "_fidelity_cache", executor)
    (out / "bench-onnx.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/bench-onnx")
    parser.add_argument("--profile", default="full")
    parser.add_argument(
        "--models",
        default=None,
        help="comma-separated models for the fidelity sweep (default: every ViT-family model; 'none' to skip)",
    )
    parser.add_argument("--executor", default="process", choices=["process", "inline"])
    parser.add_argument(
        "--fusion-models",
        default=VIT_B16,
        help="comma-separated models for the fusion on/off comparison (default: ViT-B/16 only)",
    )
    args = parser.parse_args(argv)
    models = None if args.models is None else [m for m in args.models.split(",") if m and m != "none"]
    fusion_models = [m for m in args.fusion_models.split(",") if m]
    bench_onnx(args.out, args.profile, models, args.executor, fusion_models)


if __name__ == "__main__":
    main()
