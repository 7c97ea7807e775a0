"""Speed figures, measured as ratios against a baseline run in the same process.

1. Symbolic: per-layer proof time per layer type for 2d = 2..16; time for a network
   proved layer by layer as a function of depth (linear); the monolithic baseline
   (sympy.simplify of JᵀΩJ − Ω for two composed tanh shears) under a time limit;
   the whole registry's symbolic stage.
2. Numeric: batched symplecticity defect (vmap ∘ jacrev) against a per-sample
   torch.autograd.functional.jacobian loop, 4096 inputs at 2d = 16, float64, and
   their agreement.
3. Equivariance: our enumeration of C8 and D8 against escnn's check_equivariance, and the
   whole numeric stage of every registered equivariance claim (benchmarks/equivariance.py).

`verify bench` writes reports/benchmarks.{json,md}.
"""
from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import sympy as sp
import torch

from verify.models.henonnet import henon_block
from verify.models.shears import activation_shear_block, gradient_shear_block, linear_shear_block
from verify.properties import Symplectic
from verify.properties.symplectic import omega_matrix
from verify.derive.proofs import derive, prove_block
from verify.errors import SymbolicTimeout
from verify.derive.symbolic import Builder, SymbolicBlock, Vec
from verify.declare.subject import Subject
from verify.timelimit import within_limit


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def _verlet_kick(d: int) -> SymbolicBlock:
    def kick(b: Builder, x: Vec) -> Vec:
        return Builder.concat(x[:d], x[d:] - b.grad("V", x[:d]).scale(b.scalar("h")))

    return SymbolicBlock("Verlet kick", 2 * d, kick)


LAYER_TYPES: dict[str, Callable[[int], SymbolicBlock]] = {
    "gradient kick (width 2d)": lambda d: gradient_shear_block(d, 2 * d, True),
    "linear kick": lambda d: linear_shear_block(d, True),
    "activation kick": lambda d: activation_shear_block(d, True),
    "Hénon map (width 2d)": lambda d: henon_block(d, 2 * d),
    "Verlet kick (abstract V)": _verlet_kick,
}


def bench_layer_types(dims: tuple[int, ...] = (1, 2, 4, 8), repeats: int = 3) -> list[dict[str, Any]]:
    """Median of `repeats` proofs per layer type and size, each on a fresh block (no cached trace)."""
    rows = []
    for name, make in LAYER_TYPES.items():
        for d in dims:
            runs = [prove_block(Symplectic(), make(d), time_limit=30.0) for _ in range(repeats)]
            times = sorted(r.seconds for r in runs)
            rows.append({"layer": name, "2d": 2 * d, "seconds": times[len(times) // 2], "max_seconds": times[-1],
                         "verdict": runs[0].verdict.value})
    return rows


def _renamed(block: SymbolicBlock, tag: str) -> SymbolicBlock:
    """The same layer with its own parameter names: a distinct layer instance of a deep network."""

    class Tagged(Builder):
        def __init__(self, inner: Builder) -> None:
            self.__dict__.update(inner.__dict__)

        def scalar(self, name: str) -> Any:
            return super().scalar(f"{name}{tag}")

        def vector(self, name: str, n: int) -> list[Any]:
            return super().vector(f"{name}{tag}", n)

        def matrix(self, name: str, rows: int, cols: int):
            return super().matrix(f"{name}{tag}", rows, cols)

    return SymbolicBlock(f"{block.name} #{tag}", block.dim, lambda b, x: block.forward(Tagged(b), x))


def bench_depth(d: int = 8, depths: tuple[int, ...] = (1, 2, 4, 8, 16)) -> list[dict[str, Any]]:
    """Prove every layer instance separately (no reuse of a layer type's proof): time ∝ depth."""
    rows = []
    for depth in depths:
        blocks = [_renamed(gradient_shear_block(d, 2 * d, i % 2 == 0), f"L{i}") for i in range(depth)]
        seconds, ev = _timed(lambda: derive(Symplectic(), blocks, time_limit=60.0))
        rows.append({"depth": depth, "2d": 2 * d, "seconds": seconds, "per_layer": seconds / depth, "verdict": ev.verdict.value})
    return rows


def monolithic_two_shears(time_limit: float, d: int = 2) -> dict[str, Any]:
    """The naive baseline: sympy.simplify of JᵀΩJ − Ω for a tanh gradient kick then drift (2d = 4, width 1), one expression.

    (At 2d = 2 the identity reduces to det J = 1 and simplify finishes at once, which
    measures nothing; at 2d = 4 it does not finish within minutes.)
    """
    q, p = sp.Matrix(sp.symbols(f"q0:{d}")), sp.Matrix(sp.symbols(f"p0:{d}"))
    K, L = sp.Matrix(1, d, sp.symbols(f"k0:{d}")), sp.Matrix(1, d, sp.symbols(f"l0:{d}"))
    a, b, c, e = sp.symbols("a b c e")
    p1 = p + K.T * sp.Matrix([a * sp.tanh((K * q)[0] + b)])  # kick
    q2 = q + L.T * sp.Matrix([c * sp.tanh((L * p1)[0] + e)])  # drift
    J = sp.Matrix(list(q2) + list(p1)).jacobian(list(q) + list(p))
    omega = sp.zeros(2 * d)
    for i in range(d):
        omega[i, d + i], omega[d + i, i] = 1, -1

    def work() -> bool:
        return sp.simplify(J.T * omega * J - omega) == sp.zeros(2 * d, 2 * d)

    t = time.perf_counter()
    try:
        zero = within_limit(work, time_limit, "monolithic simplify")
        return {"2d": 2 * d, "seconds": time.perf_counter() - t, "finished": True, "proved": bool(zero)}
    except SymbolicTimeout:
        return {"2d": 2 * d, "seconds": time.perf_counter() - t, "finished": False, "proved": None, "time_limit": time_limit}


def registry_symbolic(size: str = "full") -> dict[str, Any]:
    from verify.derive.proofs import _traced
    from verify.declare.registry import all_architectures

    _traced.cache_clear()
    per_arch, t0 = {}, time.perf_counter()
    for arch in all_architectures():
        blocks = arch.symbolic_blocks(size)
        t = time.perf_counter()
        subject = Subject(name=arch.name, architecture=arch, size=size, blocks=blocks, scheme=arch.scheme, time_limit=60.0)
        for claim in arch.claims:
            # as check() does it, less the decisions that need trained weights (StableStep's exact h_max)
            claim.property.symbolic(subject)
        per_arch[arch.name] = time.perf_counter() - t
    return {"size": size, "seconds": time.perf_counter() - t0, "per_architecture": per_arch}


def bench_numeric(n: int = 4096, d: int = 8, repeats: int = 3) -> dict[str, Any]:
    from verify.models.sympnets import GSympNet
    from verify.checking.numeric import batched_jacobian, loop_jacobian

    torch.manual_seed(0)
    model = GSympNet(2 * d, layers=4, width=16).double().eval()
    x = torch.randn(n, 2 * d, dtype=torch.float64)
    om = omega_matrix(2 * d, torch.float64, x.device)

    def defect(J: torch.Tensor) -> torch.Tensor:
        return (J.transpose(-1, -2) @ om @ J - om).abs().amax(dim=(-1, -2))

    batched_jacobian(model, x[:8])  # warm-up (vmap tracing)
    t_batched = min(_timed(lambda: defect(batched_jacobian(model, x)))[0] for _ in range(repeats))
    d_batched = defect(batched_jacobian(model, x))
    t_loop, d_loop = _timed(lambda: defect(loop_jacobian(model, x)))
    return {
        "inputs": n, "2d": 2 * d, "dtype": "float64", "model": "G-SympNet, 4 layers, width 16",
        "batched_seconds": t_batched, "loop_seconds": t_loop, "speedup": t_loop / t_batched,
        "max_disagreement": float((d_batched - d_loop).abs().max().detach()),
        "threads": torch.get_num_threads(),
    }


SEARCH_ARCHS = ("g-sympnet", "g-sympnet-hh", "henonnet", "hnn-verlet-hh", "la-sympnet", "hnn-yoshida4")


def bench_search_cost(names: Sequence[str] = SEARCH_ARCHS, repeats: int = 3) -> list[dict[str, Any]]:
    """The whole numeric stage of a claim: the default search against the previous engine's settings, same process.

    Baseline (the numeric stage before the one search engine): 2048 seeded inputs, half in the data box and half in
    the box ×2, 150 hypothesis examples, float64 replay; run here through the same engine with those settings (no
    ascent, scales ×1 and ×2, no resolution stage). New: the default Budget (8192 samples at 7 scales, the data-scale
    resolution stage where the dimension needs it, 32 ascent starts × 16 steps, 60 hypothesis examples). Quick sizes, untrained weights, medians of `repeats`, after one warm-up call.
    """
    from verify.checking.domains import Box
    from verify.checking.numeric import measure
    from verify.declare.registry import get, get_task
    from verify.checking.search import Budget

    old = Budget(n_inputs=2048, starts=0, steps=0, examples=150, resolution_cap=0)  # the previous engine had no resolution stage
    rows = []
    for name in names:
        arch = get(name)
        torch.manual_seed(0)
        model = arch.build("quick").eval()
        task = get_task(arch.task)
        dim = arch.size("quick").config.get("dim") or task.dim
        depth = getattr(model, "depth", 1)
        prop = arch.claims[0].property
        new_box, old_box = Box(task.low, task.high), Box(task.low, task.high, scale_list=(1.0, 2.0))
        measure(prop, model, dim=dim, depth=depth, domain=new_box, budget=Budget(n_inputs=256, starts=2, steps=2, examples=2))
        t_old = sorted(_timed(lambda: measure(prop, model, dim=dim, depth=depth, domain=old_box, budget=old))[0]
                       for _ in range(repeats))[repeats // 2]
        t_new = sorted(_timed(lambda: measure(prop, model, dim=dim, depth=depth, domain=new_box))[0]
                       for _ in range(repeats))[repeats // 2]
        no_res = Budget(resolution_cap=0)
        t_nores = sorted(_timed(lambda: measure(prop, model, dim=dim, depth=depth, domain=new_box, budget=no_res))[0]
                         for _ in range(repeats))[repeats // 2]
        rows.append({"architecture": name, "property": prop.name, "dim": dim, "old_seconds": t_old, "new_seconds": t_new,
                     "ratio": t_new / t_old, "new_without_resolution_seconds": t_nores,
                     "ratio_without_resolution": t_nores / t_old})
    return rows


def run(quick: bool = False) -> dict[str, Any]:
    dims = (1, 2, 4) if quick else (1, 2, 4, 8)
    result: dict[str, Any] = {
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
                    "sympy": sp.__version__, "cpu_threads": torch.get_num_threads()},
    }
    result["layer_types"] = bench_layer_types(dims)
    result["depth"] = bench_depth(d=4 if quick else 8, depths=(1, 2, 4) if quick else (1, 2, 4, 8, 16))
    result["monolithic"] = monolithic_two_shears(5.0 if quick else 60.0)
    result["registry_symbolic"] = registry_symbolic("quick" if quick else "full")
    result["numeric"] = bench_numeric(n=256 if quick else 4096, d=2 if quick else 8, repeats=1 if quick else 3)
    result["search_cost"] = bench_search_cost(SEARCH_ARCHS[:2] if quick else SEARCH_ARCHS, repeats=1 if quick else 3)
    if not quick:
        from benchmarks import schemes as scheme_bench

        result["schemes"] = scheme_bench.run()
        from benchmarks import equivariance as bench_equivariance

        result["equivariance"] = bench_equivariance.run()
        result["equivariance_stage"] = bench_equivariance.stage()
    return result


def to_markdown(r: dict[str, Any]) -> str:
    lines = ["# Benchmarks", "", "Command: `verify bench` (one process; ratios against baselines run in the same process).", "",
             f"Machine: {r['machine']}", "", "## Per-layer symbolic proofs (Symplectic)", "",
             "| layer type | 2d | median seconds (of 3) | slowest of 3 | verdict |", "|---|---|---|---|---|"]
    lines += [f"| {x['layer']} | {x['2d']} | {x['seconds']:.4f} | {x['max_seconds']:.4f} | {x['verdict']} |" for x in r["layer_types"]]
    worst16 = max((x["seconds"] for x in r["layer_types"] if x["2d"] == max(y["2d"] for y in r["layer_types"])), default=0)
    lines += ["", f"Slowest layer type at the largest 2d: {worst16:.4f} s (target ≤ 0.1 s at 2d = 16).", "",
              "## Depth: every layer instance proved separately", "", "| depth | 2d | seconds | per layer |", "|---|---|---|---|"]
    lines += [f"| {x['depth']} | {x['2d']} | {x['seconds']:.3f} | {x['per_layer']:.4f} |" for x in r["depth"]]
    mono = r["monolithic"]
    per_layer = sum(x["seconds"] for x in r["layer_types"] if x["2d"] == mono["2d"] and x["layer"].startswith("gradient"))
    mono_text = (f"{mono['seconds']:.1f} s" if mono["finished"] else f"did not finish within {mono['time_limit']:.0f} s (undecided)")
    lines += ["", "## Monolithic baseline", "",
              f"sympy.simplify of JᵀΩJ − Ω for a tanh gradient kick composed with a drift (2d = {mono['2d']}, width 1): "
              f"{mono_text}; the per-layer lemma for the gradient layer type at 2d = {mono['2d']} (width {mono['2d']}): "
              f"{per_layer:.4f} s; ratio ≥ {mono['seconds'] / per_layer:.0f}×.", "",
              "## Whole registry, symbolic stage", "",
              f"{r['registry_symbolic']['seconds']:.2f} s for every claim of every registered architecture "
              f"({r['registry_symbolic']['size']} sizes; target < 30 s); slowest: "
              + ", ".join(f"{k} {v:.2f} s" for k, v in sorted(r["registry_symbolic"]["per_architecture"].items(),
                                                            key=lambda kv: -kv[1])[:3]) + ".", "",
              "## Batched numeric symplecticity defect", ""]
    n = r["numeric"]
    lines += [f"{n['inputs']} inputs, 2d = {n['2d']}, {n['dtype']}, {n['model']}: batched (vmap∘jacrev) {n['batched_seconds']:.3f} s, "
              f"per-sample autograd.functional.jacobian loop {n['loop_seconds']:.3f} s, speed-up **{n['speedup']:.1f}×** "
              f"(target ≥ 20×); max disagreement {n['max_disagreement']:.2e} (target ≤ 1e-12); {n['threads']} threads.", ""]
    lines += ["", "## Cost of the search (the whole numeric stage of one claim)", "",
              "Previous engine's settings (2048 samples in the box and ×2, 150 hypothesis examples) against the default "
              "search (8192 samples at 7 scales from 10⁻⁶ to 10³, 32 × 16 gradient and smoothed ascent on the float64 "
              "defect, 60 hypothesis examples, and in 4-D and up the data-scale resolution stage that finds a ball of "
              "radius 0.1 of the half-width: 2¹⁷ more float64 samples in 4-D), both with the float64 replay; quick "
              "sizes, medians. The last columns show the default search without its resolution stage.", "",
              "| architecture | claim | dim | previous settings (s) | default search (s) | ratio | without resolution (s) | ratio |",
              "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {x['architecture']} | {x['property']} | {x.get('dim', '')} | {x['old_seconds']:.3f} | {x['new_seconds']:.3f} | "
              f"{x['ratio']:.2f} | {x.get('new_without_resolution_seconds', float('nan')):.3f} | "
              f"{x.get('ratio_without_resolution', float('nan')):.2f} |"
              for x in r.get("search_cost", [])]
    lines.append("")
    if "schemes" in r:
        lines += ["## Schemes (exact order, symplecticity)", "", "| measurement | value |", "|---|---|"]
        lines += [f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in r["schemes"].items()]
        lines.append("")
    if "equivariance" in r:
        from benchmarks import equivariance as bench_equivariance

        lines += bench_equivariance.to_markdown(r["equivariance"])
        if "equivariance_stage" in r:
            lines += bench_equivariance.stage_markdown(r["equivariance_stage"])
    return "\n".join(lines)


def _chunks(text: str) -> list[tuple[str, str]]:
    """(heading line, block) pairs of a markdown text, a block running to the next heading line."""
    out: list[tuple[str, str]] = []
    for line in text.splitlines(keepends=True):
        if line.startswith("#") or not out:
            out.append((line.strip() if line.startswith("#") else "", line))
        else:
            out[-1] = (out[-1][0], out[-1][1] + line)
    return out


def splice(existing: str, section: str) -> str:
    """`existing` with each heading block of `section` in place of the block under the same heading (appended when it
    has none): the hand-written tables of benchmarks.md stay, the saved sections are refreshed."""
    blocks = _chunks(existing)
    for heading, block in _chunks(section.strip("\n") + "\n\n"):
        at = [i for i, (h, _) in enumerate(blocks) if heading and h == heading]
        if at:
            blocks[at[0]] = (heading, block)
        else:
            if blocks and not blocks[-1][1].endswith("\n\n"):
                blocks[-1] = (blocks[-1][0], blocks[-1][1].rstrip("\n") + "\n\n")
            blocks.append((heading, block))
    return "".join(b for _, b in blocks).rstrip("\n") + "\n"


def main(out: Path, quick: bool = False, fold: bool = False) -> int:
    """Measure and write OUT/benchmarks.{json,md} with the saved sections of the slower benchmarks folded in; with
    `fold`, measure nothing: refresh the optimiser and manifold sections of the existing OUT/benchmarks.md in place."""
    from verify.errors import InputError
    from verify.files import atomic_write_text
    # the slower figures take minutes each (their own commands save them): their saved sections are folded in
    from benchmarks import manifold as bench_manifold
    from benchmarks import matrix_free as bench_matrix_free
    from benchmarks import optimizers as bench_optimizers

    name = "benchmarks-quick" if quick else "benchmarks"
    if fold:
        md = out / f"{name}.md"
        if not md.is_file():
            raise InputError("verify bench --fold", str(md), "an existing benchmarks.md from an earlier `verify bench`",
                             "run `verify bench` once (it measures and writes it), then --fold refreshes the sections")
        text = md.read_text()
        for extra in (bench_optimizers.section(out), bench_manifold.section(out)):
            if extra:
                text = splice(text, extra)
        atomic_write_text(md, text)
        print(f"refreshed the optimiser and manifold sections of {md}")
        return 0
    r = run(quick=quick)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / f"{name}.json", json.dumps(r, indent=1))
    text = to_markdown(r)
    for extra in (bench_matrix_free.section(out), bench_optimizers.section(out), bench_manifold.section(out)):
        if extra:
            text += "\n\n" + extra
    atomic_write_text(out / f"{name}.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    main(Path("reports"))
