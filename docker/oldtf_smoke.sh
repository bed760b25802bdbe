#!/usr/bin/env bash
# The kit's own code against the CUDA image's Python stack, without that image (no engine here).
#
#   bash docker/oldtf_smoke.sh              # "oldtf": the oldest pinned transformers (quick)
#   bash docker/oldtf_smoke.sh cuda-stack   # the CUDA image's whole Python stack on the CPU (slow)
#
# oldtf (part of `make test` via tests/test_docker.py, and `make docker-check`): .venv-oldtf with
#   - the CPU torch wheel (torch==2.13.0, pinned: an unpinned torch would pull GBs of CUDA),
#   - transformers and its dependencies at the CUDA lock's versions (the lock as constraints),
#   - the kit's light dependencies, pytest and hypothesis, and the kit (editable, no deps).
# cuda-stack (`make docker-check-stack`): .venv-cudastack on CPython 3.10 with every PyPI pin of
#   the CUDA lock, --no-deps: torch 2.1.0 (the cu121 wheel and its nvidia-* wheels, ~5 GB; it runs
#   on the CPU), transformers 4.55.4, NumPy 1.26.4, bitsandbytes 0.42.0, ONNX 1.16.2; the pins from
#   other indexes through their PyPI stand-ins (onnxruntime-gpu 1.18.0: PyPI's CUDA 11.8 build,
#   same Python API, CPU provider only); TensorRT left out. This catches what a newer torch hides
#   (e.g. transformers refusing attn_implementation="sdpa" on torch < 2.1.1).
#
# Both then run the smoke tests: every kit module imports (a module that needs a package the venv
# leaves out is reported and skipped), `qkit --help`, and `pytest -m 'not slow'` on the tests in
# OLDTF_TESTS that exist (default tests/test_models.py; cuda-stack adds tests/test_optimum_route.py).
# A venv is rebuilt only when what goes into it changes (OLDTF_REBUILD=1 forces it); the kit is
# reinstalled when pyproject.toml changes.
# Environment: OLDTF_VENV, OLDTF_PYTHON, OLDTF_TORCH (oldtf only), OLDTF_TESTS, OLDTF_REBUILD.
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=${1:-oldtf}
LOCK=docker/requirements-cuda.lock
# cuda-stack also runs optimum's route: optimum is in the CUDA lock only (it cannot install beside
# the CPU lock's transformers 5), so this venv is where its export/quantize test really runs.
case "$MODE" in
    cuda-stack) TESTS=${OLDTF_TESTS:-tests/test_models.py tests/test_optimum_route.py} ;;
    *) TESTS=${OLDTF_TESTS:-tests/test_models.py} ;;
esac

find_python() {  # find_python 3.11 -> an interpreter of that version (a pyenv shim may lie)
    local v=$1 exe
    for exe in "$(command -v "python$v" 2>/dev/null)" "$HOME"/.pyenv/versions/"$v".*/bin/"python$v" \
               "/usr/bin/python$v" "/usr/local/bin/python$v"; do
        if [[ -n "$exe" && -x "$exe" ]] && "$exe" -c "import sys; assert '%d.%d' % sys.version_info[:2] == '$v'" \
               2>/dev/null; then
            echo "$exe"; return 0
        fi
    done
    return 1
}

TF_PIN=$(grep -E '^transformers==' "$LOCK" | cut -d' ' -f1)
[[ -n "$TF_PIN" ]] || { echo "oldtf: no transformers pin in $LOCK" >&2; exit 2; }

req=$(mktemp)
trap 'rm -f "$req"' EXIT
case "$MODE" in
    oldtf)
        VENV_DIR=${OLDTF_VENV:-.venv-oldtf}
        TORCH_PIN=${OLDTF_TORCH:-torch==2.13.0}
        PYTHON=${OLDTF_PYTHON:-$(find_python 3.11 || command -v python3)}
        # Constraints: the CUDA lock without torch's CUDA stack, the GPU-only packages and the
        # pins from other indexes (they don't apply to a CPU venv).
        grep -E '^[A-Za-z0-9]' "$LOCK" | grep -v '# index:' \
            | grep -v -E '^(torch|triton|nvidia-[a-z0-9-]+|tensorrt[a-z0-9-]*|bitsandbytes|onnxruntime-gpu)==' \
            | cut -d' ' -f1 > "$req"
        install() {
            "${pip[@]}" "$TORCH_PIN"
            "${pip[@]}" -c "$VENV_DIR/qkit-requirements.txt" "$TF_PIN" numpy safetensors click \
                jsonschema psutil tqdm setuptools pytest hypothesis pillow
        }
        ;;
    cuda-stack)
        VENV_DIR=${OLDTF_VENV:-.venv-cudastack}
        TORCH_PIN=$(grep -E '^torch==' "$LOCK" | cut -d' ' -f1)
        # No CPython 3.10 here: uv (when on PATH) finds or installs a standalone build of it.
        PYTHON=${OLDTF_PYTHON:-$(find_python 3.10 \
                  || { command -v uv >/dev/null && { uv python find 3.10 2>/dev/null \
                       || { uv python install 3.10 >&2 && uv python find 3.10; }; }; })} \
            || { echo "oldtf: cuda-stack needs a CPython 3.10 (set OLDTF_PYTHON, or put uv on PATH)" >&2; exit 2; }
        # The lock's PyPI pins, TensorRT left out; pins from other indexes through their stand-in
        # when it is the same package (same version, PyPI's build).
        grep -E '^[A-Za-z0-9]' "$LOCK" | grep -v '# index:' | grep -v -E '^tensorrt' \
            | cut -d' ' -f1 > "$req"
        sed -n -E 's/^([A-Za-z0-9._-]+)==[^ ]+ .*resolve-as: (\1==[^ ;]+).*/\2/p' "$LOCK" >> "$req"
        install() {
            "${pip[@]}" --no-deps --only-binary=:all: -r "$VENV_DIR/qkit-requirements.txt"
            "${pip[@]}" pytest hypothesis
        }
        ;;
    *)
        echo "usage: $0 [oldtf|cuda-stack]" >&2; exit 2 ;;
esac

# One build at a time (two test runs at once would race on the venv).
mkdir -p .cache/qkit-docker
if command -v flock >/dev/null; then
    exec 9>".cache/qkit-docker/$MODE.lock"
    flock 9
fi

STAMP="$VENV_DIR/.qkit-smoke-stamp"
KIT_STAMP="$VENV_DIR/.qkit-smoke-kit-stamp"
want=$(cat "$0" "$req" <(echo "$MODE $TORCH_PIN $PYTHON") | sha256sum | cut -c1-16)
want_kit=$(sha256sum < pyproject.toml | cut -c1-16)
pip=("$VENV_DIR/bin/python" -m pip install --disable-pip-version-check -q)
if [[ "${OLDTF_REBUILD:-0}" == 1 || ! -f "$STAMP" || "$(cat "$STAMP")" != "$want" ]]; then
    echo "oldtf: building $VENV_DIR ($MODE: $TF_PIN, $TORCH_PIN, $("$PYTHON" -V))"
    rm -rf "$VENV_DIR"
    "$PYTHON" -m venv "$VENV_DIR"
    cp "$req" "$VENV_DIR/qkit-requirements.txt"
    install
    rm -f "$KIT_STAMP"
    echo "$want" > "$STAMP"
else
    echo "oldtf: $VENV_DIR is up to date"
fi
if [[ ! -f "$KIT_STAMP" || "$(cat "$KIT_STAMP")" != "$want_kit" ]]; then
    "${pip[@]}" --no-deps --no-build-isolation -e .
    echo "$want_kit" > "$KIT_STAMP"
fi

PY="$VENV_DIR/bin/python"
"$PY" - "$TF_PIN" <<'EOF'
import importlib, pkgutil, sys, traceback

import torch, transformers

want = sys.argv[1].split("==")[1]
assert transformers.__version__ == want, f"transformers {transformers.__version__}, expected {want}"
print(f"oldtf: transformers {transformers.__version__}, torch {torch.__version__}, "
      f"Python {sys.version.split()[0]}")

import kit

# Packages a smoke venv may leave out on purpose; a kit module that needs one at import is skipped.
OPTIONAL = {"bitsandbytes", "accelerate", "onnx", "onnxruntime", "onnxscript", "matplotlib",
            "pynvml", "ray", "PIL", "tensorrt"}
failed, skipped, ok = [], [], 0
for mod in pkgutil.walk_packages(kit.__path__, "kit."):
    try:
        importlib.import_module(mod.name)
        ok += 1
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] in OPTIONAL:
            skipped.append(f"{mod.name} (needs {exc.name})")
        else:
            failed.append((mod.name, traceback.format_exc(limit=3)))
    except Exception:
        failed.append((mod.name, traceback.format_exc(limit=3)))
for name in skipped:
    print(f"oldtf: skipped {name}")
for name, tb in failed:
    print(f"oldtf: FAILED import {name}\n{tb}", file=sys.stderr)
print(f"oldtf: {ok} kit modules import, {len(skipped)} skipped, {len(failed)} failed")
sys.exit(1 if failed else 0)
EOF

"$VENV_DIR/bin/qkit" --help > /dev/null
echo "oldtf: qkit --help runs"

present=()
for t in $TESTS; do [[ -e "$t" ]] && present+=("$t"); done
if (( ${#present[@]} )); then
    "$PY" -m pytest -q -p no:cacheprovider -m 'not slow' "${present[@]}"
else
    echo "oldtf: none of $TESTS exists yet; import smoke only"
fi
echo "oldtf: OK ($MODE)"
