#!/usr/bin/env bash
# Creates .venv and installs v2v-migrate with its test extras.
# torch is installed first and on purpose: a bare `torch` requirement on a machine without a GPU pulls a
# multi-GB CUDA build. Order of preference:
#   1. a torch already importable in .venv: kept;
#   2. torch==2.13.0 from the machine's local wheel store (pip's find-links; no download);
#   3. no GPU: the CPU build from PyTorch's CPU index (override with TORCH_INDEX_URL);
#   4. a GPU (nvidia-smi lists one): the default CUDA build from PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=".venv/bin/python -m pip"
export PIP_DISABLE_PIP_VERSION_CHECK=1

if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  # --no-deps: the local store holds torch alone; its small pure-Python deps come from the index next.
  if $PIP install -q --no-index --no-deps torch==2.13.0 2>/dev/null; then
    echo "install: torch 2.13.0 (CPU build) from the local wheel store"
    $PIP install -q torch==2.13.0
  elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "install: GPU found, installing the CUDA build of torch"
    $PIP install -q "torch>=2.2"
  else
    echo "install: no GPU, installing the CPU build of torch"
    $PIP install -q "torch>=2.2" --index-url "${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}"
  fi
fi
$PIP install -q -e ".[dev${V2V_EXTRAS:+,$V2V_EXTRAS}]"
touch .venv/.installed
echo "install: done ($(.venv/bin/python -c 'import torch, faiss; print("torch", torch.__version__, "faiss", faiss.__version__)'))"
