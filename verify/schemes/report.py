"""Markdown scheme pages with a stability-region plot."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional, Sequence, Union

from verify.files import atomic_path, atomic_write_text

from .properties import Finding, analyse, stability_function
from .tableau import ButcherTableau, Composition, Scheme


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "scheme"


def plot_stability_region(scheme: Scheme, path: Union[str, Path], extent: float = 6.0) -> Optional[Path]:
    """PNG of {z : |R(z)| <= 1}; None for schemes without a scalar stability function."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import sympy as sp

    f = stability_function(scheme)
    if f.status != "proved":
        return None
    z = sp.Symbol("z")
    R = sp.lambdify(z, f.value, "numpy")
    x = np.linspace(-extent, extent / 2, 401)
    y = np.linspace(-extent, extent, 401)
    X, Y = np.meshgrid(x, y)
    with np.errstate(all="ignore"):
        vals = np.abs(R(X + 1j * Y) * np.ones_like(X))
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.contourf(X, Y, vals, levels=[0, 1], colors=["#9ecae1"])
    ax.contour(X, Y, vals, levels=[1], colors=["#08519c"], linewidths=1)
    ax.axhline(0, color="k", lw=0.5)
    ax.axvline(0, color="k", lw=0.5)
    ax.set_xlabel("Re z")
    ax.set_ylabel("Im z")
    ax.set_title(f"stability region |R(z)| <= 1: {scheme.name}")
    ax.set_aspect("equal")
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=100, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def write_scheme_page(scheme: Scheme, directory: Union[str, Path],
                      findings: Optional[Sequence[Finding]] = None) -> Path:
    """Write ``<name>.md`` (and ``<name>-stability.png`` for RK methods) into ``directory``."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    slug = _slug(scheme.name)
    findings = list(findings) if findings is not None else analyse(scheme)
    lines = [f"# {scheme.name}", "", f"Kind: {scheme.kind}; stages: {scheme.stages}.", ""]
    if getattr(scheme, "note", ""):
        lines += [f"Note: {scheme.note}", ""]
    if getattr(scheme, "conversions", ()):
        lines += ["Float conversions:", ""] + [f"- {c}" for c in scheme.conversions] + [""]
    lines += ["## Coefficients", "", "$$", scheme.latex(), "$$", ""]
    lines += ["## Properties", "", "| property | value | status | time (ms) |", "|---|---|---|---|"]
    for f in findings:
        val = str(f.value).replace("|", "\\|")
        lines.append(f"| {f.name} | `{val}` | {f.status} | {f.seconds * 1000:.1f} |")
    lines += ["", "## Derivations", ""]
    for f in findings:
        lines += [f"### {f.name}", "", f.derivation, ""]
    rk_like = isinstance(scheme, ButcherTableau) or (
        isinstance(scheme, Composition) and isinstance(scheme.flatten(), ButcherTableau))
    if rk_like:
        png = plot_stability_region(scheme, d / f"{slug}-stability.png")
        if png is not None:
            lines += ["## Stability region", "", f"![stability region of {scheme.name}]({png.name})", ""]
    path = d / f"{slug}.md"
    atomic_write_text(path, "\n".join(lines))
    return path
