#!/usr/bin/env bash
# Idempotent set-up on a fresh machine: gfortran (for escnn's py3nj), a virtual
# environment, torch first (the local CPU build; a bare `torch` requirement would
# pull several GB of CUDA wheels), then this project in editable mode.
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v gfortran >/dev/null 2>&1; then
  echo "setup: installing gfortran (escnn -> py3nj compiles Fortran)"
  SUDO=""; [ "$(id -u)" != 0 ] && SUDO="sudo"
  $SUDO apt-get install -y -qq gfortran >/dev/null 2>&1 || { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq gfortran; }
fi
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if [ ! -f .venv/.installed ] || [ pyproject.toml -nt .venv/.installed ] || [ setup.sh -nt .venv/.installed ]; then
  .venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "is ignored" || true
  .venv/bin/python -m pip install -q "torch==2.13.0" 2>&1 | grep -v "is ignored" || true
  .venv/bin/python -m pip install -q -e ".[dev]" 2>&1 | grep -v "is ignored" || true
  .venv/bin/python -c "import torch, escnn, sympy, hypothesis, verify" || { echo "setup: import check failed"; exit 1; }
  touch .venv/.installed
fi
