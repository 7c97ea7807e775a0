"""OnManifold figures: the exact proof time per parametrisation at n = 8, and the tolerance against the observed defect
per parametrisation, size and dtype (raw parameters drawn at two scales over four seeds; one process).

    python -m benchmarks.manifold [--sizes 16 64] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import time

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
                 pz.Parametrisation("normalise"), pz.Parametrisation("cayley", "symmetric")):
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", type=int, nargs="+", default=[16, 64])
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    torch.set_num_threads(1)
    pt = proof_times()
    print("| parametrisation | generator | n | exact proof, best of 3 (s) | proved |\n|---|---|---|---|---|")
    for r in pt:
        print(f"| {r['kind']} | {r['generator']} | {r['n']} | {r['seconds']:.3f} | {r['proved']} |")
    df = defects(args.sizes)
    print("\n| map | n | dtype | raw scale | worst defect (4 seeds) | tolerance there | tolerance / defect | verdicts |")
    print("|---|---|---|---|---|---|---|---|")
    for r in df:
        print(f"| {r['map']} | {r['n']} | {r['dtype']} | {r['raw scale']} | {r['worst defect']:.3g} | "
              f"{r['tolerance there']:.3g} | {r['ratio']:.3g} | {', '.join(r['verdicts'])} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"proof_times": pt, "defects": df}, f, indent=1)


if __name__ == "__main__":
    main()
