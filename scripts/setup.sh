#!/usr/bin/env bash
# Create .venv/ at the repository root and install posekit with every extra.
# Safe to re-run: an existing .venv is reused.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# PyPI's Linux torch is a CUDA build: about 7 GB once installed with its NVIDIA libraries,
# plus the downloads while pip works. Say so before pip fails halfway with "No space left".
free_kb=$(df -Pk . | awk 'NR==2 {print $4}')
if [ "${free_kb:-0}" -lt $((9 * 1024 * 1024)) ] && ! .venv/bin/python -c "import torch" 2>/dev/null; then
  echo "setup: only $((free_kb / 1024)) MiB free on $(df -P . | awk 'NR==2 {print $6}');" \
       "torch with its CUDA libraries needs about 9 GiB while installing." \
       "If pip stops with 'No space left on device', free space (old virtual environments," \
       "pip caches) and run this again." >&2
fi
# torch first, pinned to the builds this machine carries (see README, "Stack").
.venv/bin/python -m pip install -q --no-cache-dir "torch>=2.4,<=2.14.1" "torchvision>=0.19,<=0.29.1"
.venv/bin/python -m pip install -q -e ".[all]"
