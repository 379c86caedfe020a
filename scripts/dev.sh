#!/usr/bin/env bash
# Set up .venv (once) and run a job in it.
#   bash scripts/dev.sh train [overrides...]   # default: experiment=toy_reverse
#   bash scripts/dev.sh test  [pytest args...] # ruff, mypy, import-linter, pytest
# Needs only python3 (>= 3.10) and bash. torch 2.13.0 is installed first where no torch is
# importable, so pip never pulls a multi-GB CUDA build of torch on a CPU machine.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${SEQ2SEQ_VENV:-.venv}"
python="$venv/bin/python"

setup() {
    if [ ! -x "$python" ]; then
        python3 -m venv "$venv"
    fi
    stamp="$venv/.seq2seq-installed"
    if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ]; then
        return
    fi
    "$python" -m pip install --quiet --upgrade pip 2>/dev/null || true
    if ! "$python" -c "import torch" 2>/dev/null; then
        "$python" -m pip install --quiet "torch==2.13.0"
    fi
    "$python" -m pip install --quiet -e ".[dev,sweep]"
    touch "$stamp"
}

command="${1:-}"
shift || true
case "$command" in
    train)
        setup
        if [ $# -eq 0 ]; then set -- experiment=toy_reverse; fi
        exec "$venv/bin/seq2seq-train" "$@"
        ;;
    test)
        setup
        "$venv/bin/ruff" check .
        "$venv/bin/ruff" format --check .
        "$venv/bin/mypy"
        "$venv/bin/lint-imports" --no-cache
        # One worker per core; a file's tests stay on one worker (module fixtures once).
        exec "$venv/bin/pytest" -q -n auto --dist loadfile "$@"
        ;;
    *)
        echo "usage: bash scripts/dev.sh {train|test} [args...]" >&2
        exit 2
        ;;
esac
