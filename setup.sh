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
if [ ! -f .venv/.installed ] || [ pyproject.toml -nt .venv/.installed ] || [ setup.sh -nt .venv/.installed ] \
   || [ tests/clients/pyproject.toml -nt .venv/.installed ]; then
  .venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "is ignored" || true
  .venv/bin/python -m pip install -q "torch==2.13.0" 2>&1 | grep -v "is ignored" || true
  # the project, its dev tools and the test clients' libraries, torch pinned in the same resolution so nothing replaces it
  .venv/bin/python -m pip install -q -e ".[dev,clients]" "torch==2.13.0" 2>&1 | grep -v "is ignored" || true
  # memcnn's requirements (torchvision, SimpleITK) would pull another torch; its core needs neither
  .venv/bin/python -m pip install -q --no-deps "memcnn==1.5.2" 2>&1 | grep -v "is ignored" || true
  # the test client package: registers real library modules through the verify.architectures entry point
  .venv/bin/python -m pip install -q --no-deps -e tests/clients 2>&1 | grep -v "is ignored" || true
  .venv/bin/python -c "import torch, escnn, sympy, hypothesis, verify" || { echo "setup: import check failed"; exit 1; }
  .venv/bin/python -c "import torch, sys; sys.exit(0 if torch.__version__.split('+')[0] == '2.13.0' else 1)" \
    || { echo "setup: torch is not 2.13.0 (a package replaced it): pip install torch==2.13.0"; exit 1; }
  for lib in strupnet FrEIA memcnn torchdiffeq geotorch e3nn zuko verify_clients; do
    .venv/bin/python -c "import $lib" >/dev/null 2>&1 \
      || echo "setup: $lib does not import; tests/test_clients.py skips what needs it (the skip says how to install it)"
  done
  # geoopt 0.5.0 imports two helpers from a module scipy emptied; the models import it through geoopt_module(), which
  # points those names where scipy moved them
  .venv/bin/python -c "from verify.models.riemannian_layers import geoopt_module; geoopt_module()" >/dev/null 2>&1 \
    || echo "setup: geoopt does not import (pip install --no-deps geoopt==0.5.0); the geoopt-stiefel-* models need it"
  touch .venv/.installed
fi
