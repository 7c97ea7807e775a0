"""A user's package, as the verifier's tests see it: architectures built from real libraries (strupnet, FrEIA,
memcnn, torchdiffeq, geotorch, e3nn, zuko), each declared with true and false claims and registered through the
``verify.architectures`` entry point (pyproject.toml). Nothing here is special-cased by the verifier.

Each module imports its library and registers its architectures only when the library is installed; a missing one
is listed in MISSING with the command that installs it (tests/test_clients.py skips with that reason).
"""
from __future__ import annotations

import importlib
import warnings

# library import name -> the command that installs it without replacing the pinned torch (see setup.sh)
INSTALL = {
    "strupnet": "pip install strupnet",
    "FrEIA": "pip install FrEIA",
    "memcnn": "pip install --no-deps memcnn  (its torchvision/SimpleITK requirements would replace torch; the core needs neither)",
    "torchdiffeq": "pip install torchdiffeq",
    "geotorch": "pip install geotorch",
    "e3nn": "pip install e3nn  (pulls opt_einsum and opt_einsum_fx only)",
    "zuko": "pip install zuko==1.6.0  (needs only numpy and torch, which it leaves as pinned)",
}
MISSING: dict[str, str] = {}


def available(library: str) -> bool:
    """Whether `library` imports; if not, it is recorded in MISSING (with the exception) and nothing is registered."""
    try:
        with warnings.catch_warnings():  # a library's own deprecation notices at import (memcnn's torch.cuda.amp)
            warnings.simplefilter("ignore", category=FutureWarning)
            warnings.simplefilter("ignore", category=DeprecationWarning)
            importlib.import_module(library)
    except Exception as exc:  # not installed, or broken: the tests say which, and how to install it
        MISSING[library] = f"{type(exc).__name__}: {exc}"
        return False
    return True
