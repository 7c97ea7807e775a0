"""Long rollouts of a trained flow map and the true energy error along them.

"Energy is conserved" is the wrong pass/fail test for a learned symplectic map: its
energy error is model error and oscillates. What tells a symplectic map from a
non-symplectic one is whether that error stays bounded or drifts, so this reports
the growth of the error envelope and a linear drift, as numbers and a series for
a figure, and passes no verdict on a claim.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from verify.evidence import Note
from verify.checking.numeric import model_device, model_dtype


def _short(x0: "tuple[float, ...]") -> str:
    """x0 as written in the summary: in full up to 8 coordinates (a 64-dimensional chain's start is a table, not a line;
    the data keeps all of it)."""
    vals = list(x0)
    if len(vals) <= 8:
        return str(vals)
    return f"[{', '.join(f'{v:.4g}' for v in vals[:4])}, … ({len(vals)} coordinates)]"


def rollout(model: torch.nn.Module, task, steps: int = 10_000, keep: int = 2000) -> Note:
    start = time.perf_counter()
    dtype, device = model_dtype(model), model_device(model)
    x = torch.tensor([task.x0], dtype=dtype, device=device)
    traj = np.empty((steps + 1, len(task.x0)))
    traj[0] = task.x0
    diverged_at = None
    from torch.nn.utils import parametrize

    # parametrised weights (geotorch, torch's parametrizations) computed once, not once per step. Only here, where one
    # module runs: torch keys its cache by the module the parametrization was first registered on, which a deepcopy
    # (the float64 oracle) shares with the original, so the cache must never be on while both run
    with torch.inference_mode(), parametrize.cached():
        for k in range(1, steps + 1):
            x = model(x.clone())  # a fresh copy: some modules free the tensor they are given (memcnn)
            traj[k] = x[0].double().cpu().numpy()
            if not np.isfinite(traj[k]).all() or np.abs(traj[k]).max() > 1e6:
                diverged_at = k
                traj = traj[:k]
                break
    energy = task.energy(traj)
    err = energy - energy[0]
    n = len(err)
    tenth = max(n // 10, 1)
    first, last = np.abs(err[1 : tenth + 1]).max(initial=0.0), np.abs(err[-tenth:]).max(initial=0.0)
    t = np.arange(n) * task.h
    slope = float(np.polyfit(t, err, 1)[0]) if n > 2 else float("nan")
    growth = float(last / first) if first > 0 else float("inf")
    drift_over_run = slope * t[-1] if n > 1 else 0.0
    # drift ratio: how far the linear trend moves the energy over the whole run, in units
    # of the error already seen in the first tenth; a symplectic map's error oscillates
    # around a modified Hamiltonian, so its trend is a small fraction of that (rule: < 0.1)
    drift_ratio = abs(drift_over_run) / first if first > 0 else float("inf")
    bounded = diverged_at is None and drift_ratio < 0.1 and growth < 2.0
    stride = max(n // keep, 1)
    summary = (
        f"{n - 1} steps from x0={_short(task.x0)}: max |ΔH| = {np.abs(err).max():.3g}; envelope growth "
        f"(last tenth / first tenth) = {growth:.3g}; linear drift {slope:.3g} per unit time, "
        f"{drift_ratio:.3g} of the first tenth's error over the run → "
        + ("bounded oscillation" if bounded else ("diverged" if diverged_at else "drift"))
    )
    return Note(
        stage="rollout", verdict=None, summary=summary, seconds=time.perf_counter() - start,
        data={
            "steps": n - 1,
            "h": task.h,
            "x0": list(task.x0),
            "max_abs_energy_error": float(np.abs(err).max()),
            "envelope_first_tenth": float(first),
            "envelope_last_tenth": float(last),
            "envelope_growth": growth,
            "drift_per_unit_time": slope,
            "drift_over_run": drift_over_run,
            "drift_ratio": drift_ratio,
            "rule": "bounded when drift_ratio < 0.1 and envelope_growth < 2",
            "classification": "bounded" if bounded else ("diverged" if diverged_at else "drift"),
            "diverged_at": diverged_at,
            "dtype": str(dtype).replace("torch.", ""),
            "time": t[::stride].tolist(),
            "energy_error": err[::stride].tolist(),
        },
    )
