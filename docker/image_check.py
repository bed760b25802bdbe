#!/usr/bin/env python3
"""Checks an image can make about itself while it is built (no GPU needed); exit 1 on a problem.

    python image_check.py --lock requirements-cuda.lock --cuda 12.1 --cudnn-major 8 \
        --provider CUDAExecutionProvider --provider TensorrtExecutionProvider
    python image_check.py --lock requirements-cpu.lock

1. Every pin of the lock is installed at its version, and nothing else but the kit (and pip).
2. (CUDA image) The native libraries the GPU paths load (ONNX Runtime's CUDA and TensorRT providers,
   bitsandbytes' CUDA library, TensorRT, torch's CUDA library) find every library they need,
   the NVIDIA driver's own (libcuda, libnvidia-*) excepted: those come with `--gpus` at run time.
3. ONNX Runtime's CUDA provider was built for the CUDA and cuDNN majors torch brings (the
   sonames it asks for), torch reports the expected CUDA and cuDNN, and ORT lists the providers.

Standard library only, apart from importing the packages it checks.
"""

from __future__ import annotations

import argparse
import glob
import importlib
import importlib.metadata as md
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from install_lock import canonical, parse_lock

DRIVER_LIBS = re.compile(r"^(libcuda\.so|libnvidia-|libnvcuvid|libnvoptix)")


def native_libraries(cuda: str) -> list[str]:
    """What the GPU paths dlopen, relative to site-packages (missing ones are skipped)."""
    tag = cuda.replace(".", "")
    return [
        "onnxruntime/capi/libonnxruntime_providers_cuda.so",
        "onnxruntime/capi/libonnxruntime_providers_tensorrt.so",
        f"bitsandbytes/libbitsandbytes_cuda{tag}.so",  # the one bitsandbytes picks for torch's CUDA
        f"bitsandbytes/libbitsandbytes_cuda{tag}_nocublaslt.so",
        "tensorrt_libs/libnvinfer.so.*",
        "torch/lib/libtorch_cuda.so",
    ]


def site_packages() -> str:
    return os.path.dirname(os.path.dirname(md.distribution("pip").locate_file("pip/__init__.py")))


def check_versions(lock: str, problems: list[str]) -> None:
    with open(lock, encoding="utf-8") as fh:
        pins = {p.key: p for p in parse_lock(fh.read())}
    installed = {canonical(d.metadata["Name"]): d.version for d in md.distributions()}
    for key, pin in pins.items():
        have = installed.get(key)
        if have != pin.version:
            problems.append(f"{pin.name}: lock pins {pin.version}, installed {have}")
    extra = sorted(set(installed) - set(pins) - {"qkit", "pip"})
    if extra:
        problems.append(f"installed but not in the lock: {', '.join(extra)}")


def missing_libs(path: str) -> list[str]:
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [os.path.dirname(path), env.get("LD_LIBRARY_PATH", "")]))
    out = subprocess.run(["ldd", path], capture_output=True, text=True, env=env, check=False).stdout
    missing = []
    for line in out.splitlines():
        name, _, where = line.strip().partition("=>")
        if "not found" in where and not DRIVER_LIBS.match(name.strip()):
            missing.append(name.strip())
    return missing


def sonames(path: str, stem: str) -> set[str]:
    """Majors of ``stem``.so.N that the library names (its dynamic string table)."""
    with open(path, "rb") as fh:
        data = fh.read()
    return {m.decode() for m in re.findall(rb"\b" + re.escape(stem.encode()) + rb"\.so\.(\d+)", data)}


def check_native(site: str, cuda: str, problems: list[str], notes: list[str]) -> None:
    for pattern in native_libraries(cuda):
        for path in sorted(glob.glob(os.path.join(site, pattern))):
            missing = missing_libs(path)
            rel = os.path.relpath(path, site)
            if missing:
                problems.append(f"{rel}: cannot find {', '.join(missing)}")
            else:
                notes.append(f"{rel}: all libraries found (driver excepted)")


def check_cuda_stack(site: str, cuda: str, cudnn_major: str, problems: list[str], notes: list[str]) -> None:
    import torch

    if torch.version.cuda != cuda:
        problems.append(f"torch is built for CUDA {torch.version.cuda}, expected {cuda}")
    try:
        v = torch.backends.cudnn.version()
    except Exception as exc:
        problems.append(f"torch cannot load cuDNN: {exc}")
        v = None
    if v is not None:
        major = str(v // 10000 if v >= 90000 else v // 1000)
        if major != cudnn_major:
            problems.append(f"torch loads cuDNN {v} (major {major}), expected major {cudnn_major}")
    ort_cuda = os.path.join(site, "onnxruntime/capi/libonnxruntime_providers_cuda.so")
    if not os.path.exists(ort_cuda):
        problems.append("onnxruntime has no CUDA provider library (CPU build installed?)")
        return
    want = {"libcudart": cuda.split(".")[0], "libcublas": cuda.split(".")[0], "libcudnn": cudnn_major}
    for stem, major in want.items():
        found = sonames(ort_cuda, stem)
        if found != {major}:
            problems.append(
                f"ORT's CUDA provider asks for {stem}.so.{'/'.join(sorted(found)) or '?'}, "
                f"the image provides {stem}.so.{major}"
            )
        else:
            notes.append(f"ORT's CUDA provider: {stem}.so.{major}, as torch")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lock", required=True)
    ap.add_argument("--cuda", help="expected torch.version.cuda, e.g. 12.1 (CUDA image)")
    ap.add_argument("--cudnn-major", default="8")
    ap.add_argument("--provider", action="append", default=[], help="ORT provider that must be listed")
    args = ap.parse_args(argv)

    problems: list[str] = []
    notes: list[str] = []
    check_versions(args.lock, problems)
    for module in ("torch", "transformers", "onnx", "onnxruntime", "kit.cli"):
        try:
            importlib.import_module(module)
        except Exception as exc:
            problems.append(f"import {module}: {type(exc).__name__}: {exc}")
    site = site_packages()
    if args.cuda:  # a CPU image has no CUDA libraries to find (bitsandbytes still ships its .so's)
        check_native(site, args.cuda, problems, notes)
        check_cuda_stack(site, args.cuda, args.cudnn_major, problems, notes)
    if args.provider:
        import onnxruntime

        listed = onnxruntime.get_available_providers()
        for p in args.provider:
            if p not in listed:
                problems.append(f"onnxruntime does not list {p} (lists {listed})")
    for n in notes:
        print(f"image_check: ok: {n}")
    for p in problems:
        print(f"image_check: PROBLEM: {p}", file=sys.stderr)
    print(f"image_check: {'FAIL' if problems else 'OK'} ({len(problems)} problems)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
