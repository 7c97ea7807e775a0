"""OnManifold figures: the exact proof time per parametrisation at n = 8, and the tolerance against the observed defect
per parametrisation, size and dtype (raw parameters drawn at two scales over four seeds; one process).

    python -m benchmarks.manifold [--sizes 16 64] [--json out.json]
    python -m benchmarks.manifold --drift [--n 256] [--steps 2000] [--every 20] [--json drift.json] [--markdown drift.md]
    python -m benchmarks.manifold --drift --ours-only --json reports/manifold_drift.json   # refresh our StiefelSGD rows

The first form with `--json reports/manifold_proofs.json` saves the proof times and defect table that `verify bench`
folds into reports/benchmarks.md beside the saved drift section.

--drift: the orthogonality drift along training. A 256×256 `nn.Linear` with torch's parametrizations.orthogonal
(matrix_exp, cayley, householder), started at the identity, trained by Adam (lr 1e-3, torch's default) for 2000 steps
on y = W* x (W* a fixed random rotation, fresh x ~ N(0, I) batches of 128), in float32 and float64; the defect
‖QᵀQ − I‖₂ every 20 steps through OnManifold's own training recorder (the same hook the trainer calls), with the
float64 value recomputed from the raw parameter by the twin, and the tolerance of each iterate. Then the geoopt
St(16, 8) layer (RiemannianSGD / RiemannianAdam, stabilize none / 1 / 10, float32 / float64, 1000 steps, every
iterate), and our own StiefelSGD (models/riemannian_optim.py; retractions qr, polar, and the wrong column_normalise and
none; float32 / float64; 1000 steps, every iterate). Seconds are wall-clock on one thread (a shared CPU: say so when
quoting them).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import parametrizations, parametrize

from verify.declare.manifolds import SPD, Orthogonal, Stiefel
from verify.derive import parametrisations as pz
from verify.properties import OnManifold


def proof_times(n: int = 8, repeats: int = 3) -> list[dict]:
    rows = []
    for form in (pz.Parametrisation("matrix_exp", "skew_tril"), pz.Parametrisation("cayley", "skew_tril"),
                 pz.Parametrisation("householder"), pz.Parametrisation("reflections"), pz.Parametrisation("llt"),
                 pz.Parametrisation("normalise"), pz.Parametrisation("cayley", "symmetric"), pz.Parametrisation("qr"),
                 pz.Parametrisation("polar"), pz.Parametrisation("column_normalise")):
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            obs, _, _ = pz.check_form(form, n)
            best = min(best, time.perf_counter() - start)
        rows.append({"kind": form.kind, "generator": form.generator, "n": n, "seconds": best,
                     "proved": all(o.holds for o in obs)})
    return rows


def _module(kind: str, n: int, seed: int, scale: float, dtype: torch.dtype) -> tuple[nn.Module, object]:
    torch.manual_seed(seed)
    if kind == "geotorch-stiefel":
        import geotorch

        lin = nn.Linear(n // 2, n, bias=False).to(dtype)
        geotorch.orthogonal(lin, "weight")
        with torch.no_grad():
            lin.parametrizations.weight.original.add_(scale * torch.randn_like(lin.parametrizations.weight.original))
        return lin, Stiefel(n, n // 2)
    if kind == "spd-llt":
        from verify.models.manifold_layers import LowerCholesky

        lin = nn.Linear(n, n, bias=False).to(dtype)
        with torch.no_grad():
            lin.weight.copy_(scale * torch.randn(n, n, dtype=dtype))
        parametrize.register_parametrization(lin, "weight", LowerCholesky(1e-2))
        return lin, SPD(n)
    lin = nn.Linear(n, n, bias=False).to(dtype)
    with torch.no_grad():
        lin.weight.copy_(torch.eye(n, dtype=dtype))
    parametrizations.orthogonal(lin, orthogonal_map=kind)
    with torch.no_grad():
        noise = scale * torch.randn(n, n, dtype=dtype)
        if kind == "householder":
            noise.fill_diagonal_(0.0)  # torch keeps its column signs ±1 there
        lin.parametrizations.weight.original.add_(noise)
    return lin, Orthogonal(n)


def defects(sizes: list[int]) -> list[dict]:
    rows = []
    for kind in ("matrix_exp", "cayley", "householder", "geotorch-stiefel", "spd-llt"):
        for n in sizes:
            for dtype in (torch.float32, torch.float64):
                for scale in (0.3, 1.0):
                    worst, tol_at, verdicts = 0.0, 0.0, set()
                    for seed in range(4):
                        model, M = _module(kind, n, seed, scale, dtype)
                        m = OnManifold(M, "weight").measure(model, seed=seed)
                        verdicts.add(m.verdict.value)
                        if m.max_defect >= worst:
                            worst, tol_at = m.max_defect, m.tolerance
                    rows.append({"map": kind, "n": n, "dtype": str(dtype).replace("torch.", ""), "raw scale": scale,
                                 "worst defect": worst, "tolerance there": tol_at,
                                 "ratio": tol_at / worst if worst > 0 else float("inf"), "verdicts": sorted(verdicts)})
    return rows


def _rotation(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    Q, R = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    Q = Q * torch.sign(torch.diagonal(R))
    if torch.linalg.det(Q) < 0:
        Q[:, 0] = -Q[:, 0]
    return Q


def drift_run(kind: str, n: int, dtype: torch.dtype, steps: int, every: int, lr: float = 1e-3, batch: int = 128,
              seed: int = 0) -> dict:
    """One training run of the n×n orthogonal layer, its drift record and numbers (properties.on_manifold)."""
    from verify.properties.on_manifold import drift_numbers

    torch.manual_seed(seed)
    lin = nn.Linear(n, n, bias=False).to(dtype)
    with torch.no_grad():
        lin.weight.copy_(torch.eye(n, dtype=dtype))
    parametrizations.orthogonal(lin, orthogonal_map=kind)
    target = _rotation(n, 20_261_130).to(dtype)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(lin.parameters(), lr=lr)
    rec = OnManifold(Orthogonal(n), "weight", record_every=every).training_recorder(lin, steps)
    rec.record(0, lin)
    train_s = 0.0
    for step in range(1, steps + 1):
        t0 = time.perf_counter()
        x = torch.randn(batch, n, generator=g, dtype=dtype)
        loss = torch.mean((lin(x) - x @ target.T) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        train_s += time.perf_counter() - t0
        if rec.due(step):
            rec.record(step, lin)
    r = rec.result()
    nums = drift_numbers(r)
    d64 = [v for v in r["defect_float64"] if v == v]
    return {"map": kind, "n": n, "dtype": str(dtype).replace("torch.", ""), "steps": steps, "every": every, "lr": lr,
            "defect_start": r["defect"][0], "defect_end": r["defect"][-1], "defect_max": nums["max"],
            "defect64_end": d64[-1] if d64 else float("nan"), "tolerance_end": r["tolerance"][-1],
            "left_at": nums["left_at"], "slope_decades_per_1000": nums["slope"], "final_loss": float(loss),
            "train_seconds": train_s, "record_seconds": r["seconds"], "record": r}


def geoopt_drift(steps: int = 1000) -> list[dict]:
    """The geoopt St(16, 8) layer by the Riemannian optimisers, every iterate (the registered layers' set-up)."""
    from verify.models.riemannian_layers import geoopt_module, stiefel_start
    from verify.models.manifold_layers import target
    from verify.properties.on_manifold import drift_numbers

    geoopt = geoopt_module()
    rows = []
    for opt_name, lr in (("RiemannianSGD", 0.1), ("RiemannianAdam", 2e-2)):
        for dtype in (torch.float32, torch.float64):
            for stab in (None, 1, 10):
                torch.manual_seed(0)
                lin = nn.Linear(8, 16, bias=False)
                lin.weight = geoopt.ManifoldParameter(stiefel_start(dtype), manifold=geoopt.Stiefel())
                opt = getattr(geoopt.optim, opt_name)([lin.weight], lr=lr, stabilize=stab)
                sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=lr / 20)
                W = target("stiefel", 16, 8).to(dtype)
                g = torch.Generator().manual_seed(0)
                x_all = torch.randn(512, 8, generator=g, dtype=torch.float64).to(dtype)
                rec = OnManifold(Stiefel(16, 8), "weight", every_iterate=True).training_recorder(lin, steps)
                rec.record(0, lin)
                failed = None
                t0 = time.perf_counter()
                for step in range(1, steps + 1):
                    idx = torch.randint(0, 512, (128,), generator=g)
                    loss = torch.mean((lin(x_all[idx]) - x_all[idx] @ W.T) ** 2)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    try:
                        opt.step()
                    except Exception as exc:  # noqa: BLE001 - geoopt's own failure is a row of the table
                        failed = f"step {step}: {type(exc).__name__}: {str(exc).splitlines()[0][:80]}"
                        break
                    sched.step()
                    rec.record(step, lin)
                r = rec.result()
                nums = drift_numbers(r)
                rows.append({"optimizer": opt_name, "lr": lr, "dtype": str(dtype).replace("torch.", ""),
                             "stabilize": stab, "steps": steps, "failed": failed, "final_loss": float(loss),
                             "defect_start": r["defect"][0], "defect_end": r["defect"][-1], "defect_max": nums["max"],
                             "tolerance": r["tolerance"][-1], "left_at": nums["left_at"],
                             "slope_decades_per_1000": nums["slope"], "seconds": time.perf_counter() - t0})
    return rows


def ours_drift(steps: int = 1000) -> list[dict]:
    """Our StiefelSGD (models/riemannian_optim.py) on the same St(16, 8) set-up as geoopt_drift: each retraction
    (qr, polar, and the wrong column_normalise / none), float32 and float64, every iterate."""
    from verify.models.manifold_layers import target
    from verify.models.riemannian_layers import stiefel_start
    from verify.models.riemannian_optim import StiefelSGD
    from verify.properties.on_manifold import drift_numbers

    rows = []
    for retraction in ("qr", "polar", "column_normalise", "none"):
        for dtype in (torch.float32, torch.float64):
            torch.manual_seed(0)
            lr = 2e-2
            lin = nn.Linear(8, 16, bias=False)
            lin.weight = nn.Parameter(stiefel_start(dtype))
            opt = StiefelSGD([lin.weight], lr=lr, momentum=0.9, retraction=retraction)
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=lr / 20)
            W = target("stiefel", 16, 8).to(dtype)
            g = torch.Generator().manual_seed(0)
            x_all = torch.randn(512, 8, generator=g, dtype=torch.float64).to(dtype)
            rec = OnManifold(Stiefel(16, 8), "weight", every_iterate=True).training_recorder(lin, steps)
            rec.record(0, lin)
            t0 = time.perf_counter()
            for step in range(1, steps + 1):
                idx = torch.randint(0, 512, (128,), generator=g)
                loss = torch.mean((lin(x_all[idx]) - x_all[idx] @ W.T) ** 2)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                rec.record(step, lin)
            r = rec.result()
            nums = drift_numbers(r)
            rows.append({"optimizer": f"StiefelSGD(retraction={retraction!r})", "lr": lr,
                         "dtype": str(dtype).replace("torch.", ""), "stabilize": "—", "steps": steps, "failed": None,
                         "final_loss": float(loss), "defect_start": r["defect"][0], "defect_end": r["defect"][-1],
                         "defect_max": nums["max"], "tolerance": r["tolerance"][-1], "left_at": nums["left_at"],
                         "slope_decades_per_1000": nums["slope"], "worst_ratio": nums["worst_ratio"],
                         "seconds": time.perf_counter() - t0})
    return rows


def _drift_cells(r: dict) -> str:
    """The cells every drift table shares: where the tensor left M (or never) and the log10 slope of its defect."""
    return f"{r['left_at'] if r['left_at'] is not None else 'never'} | {r['slope_decades_per_1000']:.3g}"


def drift_markdown(runs: list[dict], geo: list[dict], command: str, ours: list[dict] | None = None) -> str:
    lines = [f"Orthogonality drift along training (`{command}`; one thread, a shared CPU).", "",
             "| map | n | dtype | Adam steps | ‖QᵀQ − I‖₂ at start | at end | max | float64 (twin) at end | tolerance "
             "at end | left M at step | log10 slope (decades / 1000 steps) | final loss | train s | record s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        lines.append(f"| {r['map']} | {r['n']} | {r['dtype']} | {r['steps']} | {r['defect_start']:.3g} | "
                     f"{r['defect_end']:.3g} | {r['defect_max']:.3g} | {r['defect64_end']:.3g} | {r['tolerance_end']:.3g} | "
                     f"{_drift_cells(r)} | {r['final_loss']:.3g} | {r['train_seconds']:.1f} | {r['record_seconds']:.1f} |")
    if geo:
        lines += ["", "geoopt 0.5.0, St(16, 8) ManifoldParameter, linear-stiefel-16x8 data, cosine schedule, every "
                  "iterate recorded:", "",
                  "| optimiser | lr | dtype | stabilize | steps | ‖WᵀW − I‖₂ at start | at end | max | tolerance | left M "
                  "at step | log10 slope | final loss | failed |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in geo:
            lines.append(f"| {r['optimizer']} | {r['lr']} | {r['dtype']} | {r['stabilize']} | {r['steps']} | "
                         f"{r['defect_start']:.3g} | {r['defect_end']:.3g} | {r['defect_max']:.3g} | {r['tolerance']:.3g} | "
                         f"{_drift_cells(r)} | {r['final_loss']:.3g} | {r['failed'] or '—'} |")
    if ours:
        lines += ["", "Our StiefelSGD (models/riemannian_optim.py: projected gradient, momentum 0.9 transported by "
                  "projection, lr 2e-2, cosine schedule), the same St(16, 8) set-up, every iterate recorded:", "",
                  "| retraction | dtype | steps | ‖WᵀW − I‖₂ at start | at end | max | tolerance | worst / tolerance | "
                  "left M at step | log10 slope | final loss |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in ours:
            lines.append(f"| {r['optimizer']} | {r['dtype']} | {r['steps']} | {r['defect_start']:.3g} | "
                         f"{r['defect_end']:.3g} | {r['defect_max']:.3g} | {r['tolerance']:.3g} | {r['worst_ratio']:.3g} | "
                         f"{_drift_cells(r)} | {r['final_loss']:.3g} |")
    return "\n".join(lines) + "\n"


def drift_main(args: argparse.Namespace) -> None:
    import sys

    if args.ours_only:
        # the 256×256 runs take ~10 minutes: refresh only our optimiser's rows in the saved file, keep the rest
        path = Path(args.json)
        if not path.is_file():
            raise SystemExit(f"--ours-only: --json {args.json!r} does not exist; expected a saved drift file "
                             f"(run `python -m benchmarks.manifold --drift --json {args.json}` first)")
        saved = json.loads(path.read_text())
        saved["ours"] = ours_drift()
        saved["ours_command"] = "python -m benchmarks.manifold " + " ".join(sys.argv[1:])
        path.write_text(json.dumps(saved, indent=1))
        print(drift_markdown(saved["drift"], saved.get("geoopt", []), saved.get("command", ""), saved["ours"]))
        return
    runs = []
    for dtype in (torch.float32, torch.float64):
        for kind in args.maps:
            r = drift_run(kind, args.n, dtype, args.steps, args.every)
            runs.append(r)
            print(f"{kind} {r['dtype']}: {r['defect_start']:.3g} → {r['defect_end']:.3g} (max {r['defect_max']:.3g}), "
                  f"left at {r['left_at']}, train {r['train_seconds']:.1f} s, record {r['record_seconds']:.1f} s",
                  flush=True)
    geo = geoopt_drift() if not args.no_geoopt else []
    ours = ours_drift()
    command = "python -m benchmarks.manifold " + " ".join(sys.argv[1:])
    md = drift_markdown(runs, geo, command, ours)
    print(md)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(md)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"command": command, "drift": runs, "geoopt": geo, "ours": ours}, f, indent=1)
        drift_figure(runs, Path(args.json).with_suffix(".png"))


DRIFT_JSON = "manifold_drift.json"
PROOFS_JSON = "manifold_proofs.json"


def drift_figure(runs: list[dict], path: Path) -> None:
    """log10 ‖QᵀQ − I‖₂ against the Adam step, one line per map, a panel per dtype, each run's last tolerance dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dtypes = sorted({r["dtype"] for r in runs}, reverse=True)
    fig, axes = plt.subplots(1, len(dtypes), figsize=(5.5 * len(dtypes), 3.6), squeeze=False)
    for ax, dt in zip(axes[0], dtypes):
        for r, colour in zip([r for r in runs if r["dtype"] == dt], ("tab:blue", "tab:orange", "tab:green")):
            rec = r["record"]
            pts = [(s, d) for s, d in zip(rec["step"], rec["defect"]) if d > 0]
            ax.semilogy([p[0] for p in pts], [p[1] for p in pts], color=colour, lw=0.9, label=r["map"])
            ax.semilogy(rec["step"], rec["tolerance"], "--", color=colour, lw=0.6)
        ax.set_title(f"{runs[0]['n']}×{runs[0]['n']} orthogonal layer, Adam, {dt} (dashed: tolerance)", fontsize=8)
        ax.set_xlabel("Adam step")
        ax.set_ylabel("‖QᵀQ − I‖₂")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def section(out: Path) -> str:
    """The saved drift section for reports/benchmarks.md (empty when `--drift --json OUT/manifold_drift.json` has not
    been run): the run takes ~10 minutes on one thread, so `verify bench` folds in the saved numbers."""
    text = ""
    proofs = Path(out) / PROOFS_JSON
    if proofs.is_file():
        p = json.loads(proofs.read_text())
        text += ("### OnManifold: exact proofs per parametrisation and tolerance against observed defect\n\n"
                 f"Command: `python -m benchmarks.manifold --json {proofs}` (one thread). Each proof is exact at the "
                 "size n given (qr and polar: a size-free lemma, premises checked at n).\n\n"
                 + "\n".join(proof_markdown(p["proof_times"], p["defects"])) + "\n\n")
    path = Path(out) / DRIFT_JSON
    if not path.is_file():
        return text
    r = json.loads(path.read_text())
    fig = path.with_suffix(".png")
    return text + "### OnManifold: orthogonality drift along training\n\n" + drift_markdown(
        r["drift"], r.get("geoopt", []), r.get("command", f"python -m benchmarks.manifold --drift --json {path}"),
        r.get("ours", [])) + (
        f"\n![drift]({fig.name})\n" if fig.is_file() else "")


def proof_markdown(pt: list[dict], df: list[dict]) -> list[str]:
    """The proof-time table and the tolerance-against-defect table, as markdown lines."""
    lines = ["| parametrisation | generator | n | exact proof, best of 3 (s) | proved |", "|---|---|---|---|---|"]
    lines += [f"| {r['kind']} | {r['generator']} | {r['n']} | {r['seconds']:.3f} | {r['proved']} |" for r in pt]
    lines += ["", "| map | n | dtype | raw scale | worst defect (4 seeds) | tolerance there | tolerance / defect | verdicts |",
              "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['map']} | {r['n']} | {r['dtype']} | {r['raw scale']} | {r['worst defect']:.3g} | "
              f"{r['tolerance there']:.3g} | {r['ratio']:.3g} | {', '.join(r['verdicts'])} |" for r in df]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", type=int, nargs="+", default=[16, 64])
    ap.add_argument("--json", default="")
    ap.add_argument("--drift", action="store_true", help="the drift along training (see the module docstring)")
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--every", type=int, default=20)
    ap.add_argument("--maps", nargs="+", default=["matrix_exp", "cayley", "householder"])
    ap.add_argument("--no-geoopt", action="store_true")
    ap.add_argument("--ours-only", action="store_true", help="with --drift --json FILE: refresh only the StiefelSGD rows")
    ap.add_argument("--markdown", default="")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.drift:
        drift_main(args)
        return
    pt = proof_times()
    df = defects(args.sizes)
    print("\n".join(proof_markdown(pt, df)))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"proof_times": pt, "defects": df}, f, indent=1)


if __name__ == "__main__":
    main()
