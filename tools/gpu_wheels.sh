#!/usr/bin/env bash
# Fetch, on this machine, the wheels a lent GPU machine lacks for qkit's CUDA run, into .whl/
# (git-ignored through .git/info/exclude). The device image has python3 3.12 with torch (CUDA),
# transformers, accelerate, onnx, onnxruntime (CPU), click, psutil, tqdm, matplotlib and
# nvidia-ml-py, and no package index; it lacks bitsandbytes and jsonschema (+ its dependencies).
# Versions come from the CPU lock, so both machines run the same bitsandbytes.
#
#   bash tools/gpu_wheels.sh        # then carry ".whl" in each device run (tools/gpu_session.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
NAMES=(bitsandbytes jsonschema jsonschema-specifications referencing rpds-py)
pins=()
for name in "${NAMES[@]}"; do
    pin=$(grep -i -E "^${name}==" constraints/cpu.txt) || { echo "gpu_wheels: $name is not pinned in constraints/cpu.txt" >&2; exit 2; }
    pins+=("$pin")
done
exclude=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$exclude")"
grep -qxF "/.whl/" "$exclude" 2>/dev/null || echo "/.whl/" >> "$exclude"
rm -rf .whl && mkdir .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl "${pins[@]}"
ls -la .whl
