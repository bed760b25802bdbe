#!/usr/bin/env bash
# qkit's GPU reference run, on a lent device machine (runs there, in the repository root).
#
# Here, once:       bash tools/gpu_wheels.sh   (.whl/ and .gpu-results/ are git-ignored: carry them)
# There, per call:  bash tools/gpu_session.sh STEP      (carry ".whl"; results come back under $OUT)
#
# STEP (each fits one 10-minute device call; run them in this order, the machine kept warm):
#   check   torch, CUDA, bitsandbytes and `qkit env --check`; the cuda-marked tests
#   run     the 16 models x torch FP32/FP16/BF16 + bnb INT8/NF4 on cuda (profile full) into
#           results/<machine>/ (git-ignored, so it stays on a warm machine between calls); stops
#           cleanly before RUN_S seconds (default 500) and resumes where it stopped when called
#           again; packs the documents into $OUT/cells-<machine>.tgz as results/reference/<machine>/.
#           If the machine went back in between, carry that tarball in ".gpu-results/" and the
#           next call unpacks it first and resumes from it.
#   bench   `python -m kit.bench.gpu` (FP16 ViT-H/14 batch 32 against the card's peak, bnb on CUDA)
# Then, here: `tar xzf cells-<machine>.tgz` in the repository root, `qkit validate --results
# results/reference/<machine>`, `qkit report`, commit.
set -euo pipefail
cd "$(dirname "$0")/.."
STEP=${1:?usage: tools/gpu_session.sh check|run|bench}
OUT=${OUT:-/tmp/qkit-out}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
qkit() { python3 -m kit.cli "$@"; }
TAG=$(python3 -c 'from kit.run.reproduce import machine_tag; print(machine_tag())')
DEST=results/$TAG
PATHS=torch-fp32,torch-fp16,torch-bf16,bnb-int8,bnb-nf4

case $STEP in
check)
    nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv || true
    python3 -c 'import torch, bitsandbytes, transformers; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0), bitsandbytes.__version__, transformers.__version__)' || true
    qkit env --check || true
    python3 -m pytest -q -p no:cacheprovider -m cuda tests 2>&1 | tee "$OUT/cuda-tests.log"
    ;;
run)
    if [[ ! -d "$DEST/cells" ]] && compgen -G ".gpu-results/cells-$TAG.tgz" > /dev/null; then
        mkdir -p "$DEST"
        tar xzf ".gpu-results/cells-$TAG.tgz" -C "$DEST" --strip-components=3
    fi
    # A cell in flight when the budget ends is killed and redone on the next call (resume).
    # REPEATS: fresh processes per cell. 1 by default here: the full profile's 3 (every GPU cell is
    # under its 300 ms budget line) would triple the 80 cells' build and prepare time, which the
    # 15 device-minutes cannot pay; the documents then say their CI is within one process.
    timeout --signal=INT --kill-after=60 "${RUN_S:-500}" python3 -m kit.cli reproduce --devices cuda --paths "$PATHS" \
        --profile "${PROFILE:-full}" --repeats "${REPEATS:-1}" --out "$DEST" 2>&1 | tee "$OUT/run.log" || true
    tar czf "$OUT/cells-$TAG.tgz" --exclude=_cache --transform "s,^$DEST,results/reference/$TAG," "$DEST"
    ;;
bench)
    python3 -m kit.bench.gpu --json "$OUT/bench_gpu.json" 2>&1 | tee "$OUT/bench.log" || true
    python3 -m kit.bench.bnb --device cuda --json "$OUT/bench_bnb_cuda.json" 2>&1 | tee -a "$OUT/bench.log"
    ;;
*)
    echo "gpu_session: unknown step $STEP (check|run|bench)" >&2
    exit 2
    ;;
esac
