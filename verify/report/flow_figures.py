"""The flow section of a report: samples against data, reconstruction error against input norm, and the reported
log-determinant against log|det J| of the Jacobian (forward and inverse).

Drawn for any trained model whose task is a density (it defines `model_loss`) and that has `inverse` and `log_det`;
every other report is unchanged. These figures inform; the verdicts are the claims'.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import torch

FIGURE = "flow.png"
N_SAMPLES = 1000
N_LOGDET = 128  # Jacobians computed for the agreement panel (full Jacobians: the flows reported here have n ≤ 64)


def _is_flow(result: Any) -> bool:
    arch, trained = getattr(result, "architecture", None), getattr(result, "trained", None)
    if arch is None or trained is None or arch.task is None:
        return False
    from verify.declare.registry import get_task

    task = get_task(arch.task)
    model = trained.model
    return callable(getattr(task, "model_loss", None)) and callable(getattr(model, "log_det", None)) \
        and callable(getattr(model, "inverse", None))


def _jacobian_log_det(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    J = torch.func.vmap(torch.func.jacrev(lambda v: fn(v.unsqueeze(0)).squeeze(0)))(x)
    return torch.linalg.slogdet(J.detach().double())[1]


def flow_section(result: Any, folder: Path, save: Callable[[Any, Path], None]) -> list[str]:
    """Markdown lines (and flow.png in `folder`) for a trained flow; [] for anything else."""
    if not _is_flow(result):
        return []
    try:
        return _draw(result, folder, save)
    except Exception as exc:  # a figure is information, not a verdict: say why it is missing
        return ["## Flow: samples, reconstruction, log-det", "", f"The flow figures could not be drawn: "
                f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}", ""]


def _draw(result: Any, folder: Path, save: Callable[[Any, Path], None]) -> list[str]:
    import matplotlib.pyplot as plt

    from verify.declare.registry import get_task

    model = result.trained.model.eval()
    task = get_task(result.architecture.task)
    dtype = next(p.dtype for p in model.parameters())
    device = next(p.device for p in model.parameters())
    data, _ = task.dataset(N_SAMPLES, 4242)
    data = data.to(device, dtype)
    n = data.shape[1]
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        z = torch.randn(N_SAMPLES, n, generator=gen, dtype=dtype).to(device)
        samples = model.inverse(z.clone())
        # reconstruction over input norms from 10⁻² to 10³ times the data (the claim is made everywhere)
        scales = torch.logspace(-2, 3, 16, dtype=dtype)
        xs = torch.cat([data[:64] * s for s in scales]).to(device)
        back = model.inverse(model(xs.clone()))
        err = (back - xs).abs().amax(-1).cpu()
        norm = xs.abs().amax(-1).cpu()
    probe = data[:N_LOGDET].clone()
    with torch.no_grad():
        reported = model.log_det(probe.clone()).detach().double().cpu()
        y = model(probe.clone())
        reported_inv = model.inverse_log_det(y.clone()).detach().double().cpu() if callable(
            getattr(model, "inverse_log_det", None)) else None
    actual = _jacobian_log_det(model, probe).cpu()
    actual_inv = _jacobian_log_det(model.inverse, y).cpu() if reported_inv is not None else None

    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    image = getattr(model, "image_shape", None)
    if n == 2:
        d, s = data.cpu().numpy(), samples.cpu().numpy()
        axes[0].scatter(d[:, 0], d[:, 1], s=3, alpha=0.5, label="data")
        axes[0].scatter(s[:, 0], s[:, 1], s=3, alpha=0.5, label="samples f⁻¹(z)")
        lim = 1.2 * max(abs(float(task.low[0])), abs(float(task.high[0])))
        axes[0].set_xlim(-lim, lim)
        axes[0].set_ylim(-lim, lim)
        axes[0].legend(markerscale=4, fontsize=8)
    elif image is not None and math.prod(image) == n:
        c, h, w = image
        rows = [data[:8].cpu(), samples[:8].cpu()]
        grid = torch.cat([torch.cat([r[i].reshape(c, h, w)[:3].permute(1, 2, 0) for i in range(8)], 1) for r in rows], 0)
        grid = grid.clamp(float(task.low[0]), float(task.high[0]))
        axes[0].imshow((grid - grid.min()) / (grid.max() - grid.min() + 1e-12) if c >= 3 else grid[..., 0], cmap="gray")
        axes[0].set_axis_off()
    axes[0].set_title("data (top / blue) vs samples f⁻¹(z), z ~ N(0, I)", fontsize=9)
    axes[1].loglog(norm.numpy(), err.clamp_min(1e-18).numpy(), ".", ms=3)
    axes[1].set_xlabel("|x|∞")
    axes[1].set_ylabel("|f⁻¹(f(x)) − x|∞")
    axes[1].set_title("reconstruction error vs input norm", fontsize=9)
    axes[2].plot(actual.numpy(), reported.numpy(), ".", ms=4, label="forward")
    if actual_inv is not None:
        axes[2].plot(actual_inv.numpy(), reported_inv.numpy(), ".", ms=4, label="inverse")
    lo = float(min(actual.min(), reported.min(), *(() if actual_inv is None else (actual_inv.min(), reported_inv.min()))))
    hi = float(max(actual.max(), reported.max(), *(() if actual_inv is None else (actual_inv.max(), reported_inv.max()))))
    axes[2].plot([lo, hi], [lo, hi], "k-", lw=0.5)
    axes[2].set_xlabel("log|det J| (slogdet of the Jacobian)")
    axes[2].set_ylabel("reported log-det")
    axes[2].legend(fontsize=8)
    axes[2].set_title("log-det agreement", fontsize=9)
    fig.tight_layout()
    save(fig, folder / FIGURE)
    gap = float((reported - actual).abs().max())
    gap_inv = float((reported_inv - actual_inv).abs().max()) if actual_inv is not None else math.nan
    return [
        "## Flow: samples, reconstruction, log-det", "",
        f"Samples f⁻¹(z) of {N_SAMPLES} standard normal z beside {N_SAMPLES} data points; the round trip "
        f"|f⁻¹(f(x)) − x|∞ over data scaled ×10⁻² … ×10³ (largest {float(err.max()):.3g} at |x|∞ = "
        f"{float(norm[int(err.argmax())]):.3g}); reported log-det against log|det J| on {N_LOGDET} data points "
        f"(largest gap {gap:.3g} forward, {gap_inv:.3g} inverse). Informative; the verdicts are the claims' above.", "",
        f"![flow]({FIGURE})", "",
    ]
