"""The drift section of a report: a constrained tensor's defect along training (log defect against the optimiser
step, its tolerance as a line), one panel per record, with where it left its manifold and how fast it drifts.

Generic: it draws any record that the trainer kept (Trained.records, written by a property's `training_recorder`
hook) with `step`, `defect` and `tolerance` lists; `defect_float64` is drawn where it is finite. A record's numbers
(`drift_numbers`) are the property's; this module only draws and tabulates. The figure informs; the verdicts are the
claims'.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

FIGURE = "drift.png"
FLOOR = 1e-18  # an exactly orthogonal start (defect 0) is drawn here on the log axis


def _records(result: Any) -> list[tuple[str, dict[str, Any]]]:
    trained = getattr(result, "trained", None)
    recs = getattr(trained, "records", None) or {}
    return [(name, r) for name, r in recs.items()
            if isinstance(r, dict) and r.get("step") and r.get("defect") and r.get("tolerance")]


def drift_section(result: Any, folder: Path, save: Callable[[Any, Path], None]) -> list[str]:
    """Markdown lines (and drift.png in `folder`) for a model whose training recorded a drift; [] otherwise."""
    recs = _records(result)
    failed = [(name, r["error"]) for name, r in (getattr(getattr(result, "trained", None), "records", None) or {}).items()
              if isinstance(r, dict) and r.get("error")]
    if not recs and not failed:
        return []
    lines = ["## Drift along training", ""]
    for name, err in failed:
        lines += [f"- `{name}`: the recorder failed {err} (the claim's verdict says so).", ""]
    if not recs:
        return lines
    try:
        lines += _draw(recs, folder, save)
    except Exception as exc:  # a figure is information, not a verdict: say why it is missing
        lines += [f"The drift figure could not be drawn: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}", ""]
    return lines


def _draw(recs: list[tuple[str, dict[str, Any]]], folder: Path, save: Callable[[Any, Path], None]) -> list[str]:
    import matplotlib.pyplot as plt

    from verify.properties.on_manifold import drift_numbers

    fig, axes = plt.subplots(1, len(recs), figsize=(5.2 * len(recs), 3.4), squeeze=False)
    rows = ["| claim | tensor | dtype | every K steps | iterates | defect at 0 → at end | max | left M at step | "
            "log10 slope (decades / 1000 steps) | float64 defect |", "|---|---|---|---|---|---|---|---|---|---|"]
    for ax, (name, r) in zip(axes[0], recs):
        steps = r["step"]
        d = [max(float(v), FLOOR) if math.isfinite(float(v)) else math.nan for v in r["defect"]]
        ax.semilogy(steps, d, lw=0.8, color="tab:blue", label=f"defect ({r.get('dtype', '?')})")
        d64 = [float(v) for v in r.get("defect_float64", [])]
        pts = [(s, max(v, FLOOR)) for s, v in zip(steps, d64) if math.isfinite(v)]  # float64 is on a coarser grid
        if pts:
            ax.semilogy([p[0] for p in pts], [p[1] for p in pts], lw=0.8, marker=".", ms=2, color="tab:orange",
                        label="float64 recomputed")
        ax.semilogy(steps, r["tolerance"], "--", color="tab:red", lw=0.8, label="tolerance")
        nums = drift_numbers(r)
        if nums["left_at"] is not None:
            ax.axvline(nums["left_at"], color="grey", lw=0.6, linestyle=":", label=f"left M at {nums['left_at']}")
        ax.set_xlabel("optimiser step")
        ax.set_ylabel("defect")
        ax.set_title(name if len(name) < 48 else name[:45] + "…", fontsize=8)
        ax.legend(fontsize=6)
        fin64 = [v for v in d64 if math.isfinite(v)]
        rows.append(f"| {name} | `{r.get('tensor')}` | {r.get('dtype')} | {r.get('every')} | {len(steps)} | "
                    f"{nums['first']:.3g} → {nums['last']:.3g} | {nums['max']:.3g} (step {nums['max_step']}) | "
                    f"{nums['left_at'] if nums['left_at'] is not None else 'never'} | {nums['slope']:.3g} | "
                    f"{f'{fin64[0]:.3g} → {fin64[-1]:.3g}' if fin64 else 'not meaningful'} |")
    fig.tight_layout()
    save(fig, folder / FIGURE)
    meaning = {r.get("float64_meaning", "") for _, r in recs} - {""}
    return (rows + [""] + [f"Float64 column: {m}." for m in sorted(meaning)] + ["",
            "Left M: the first recorded step whose defect exceeds that step's tolerance. Slope: least squares of "
            "log10(defect) against the step.", "", f"![drift]({FIGURE})", ""])
