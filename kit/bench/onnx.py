"""The ONNX/INT8 benchmark behind the issue's targets (``python -m kit.bench.onnx``).

1. ViT-B/16 (vit-base-224-production), batch 1, CPU, one run through the library runner:
   torch FP32, ORT FP32 and every INT8 method; p50s, ratios to ORT FP32 and torch FP32,
   fidelity, file sizes. Targets: best INT8 >= 3.2x ORT FP32; INT8 file <= 0.27x FP32 file.
2. Static QDQ fidelity on every ViT-family model (cosine >= 0.995, no all-zero or NaN output),
   one child process per model so a large model's export and calibration memory is its own.
3. MobileViT-S: the same comparison, plus ORT's per-operator profile of FP32 and both INT8
   graphs, which says where INT8 loses time.
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


# --------------------------------------------------------------------------- entry point


def bench_onnx(
    out: str | Path = "results/bench-onnx",
    profile: str = "full",
    fidelity_models: list[str] | None = None,
    executor: str = "process",
) -> dict[str, Any]:
    """Run the three parts and print the figures; returns them as a dict (also bench-onnx.json)."""
    out = Path(out)
    summary: dict[str, Any] = {}
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
    args = parser.parse_args(argv)
    models = None if args.models is None else [m for m in args.models.split(",") if m and m != "none"]
    bench_onnx(args.out, args.profile, models, args.executor)


if __name__ == "__main__":
    main()
