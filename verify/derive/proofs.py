"""The symbolic stage: per-layer obligations reduced to zero, lifted by closure under composition."""
from __future__ import annotations

import functools
import time
from typing import Any, Sequence

import sympy as sp

from verify.properties.base import Property
from verify.properties.invertible import NoInverse
from verify.errors import SymbolicTimeout
from verify.evidence import BlockResult, Evidence, Failure, Proof, Refutation, Verdict
from verify.derive.polynomial import SPoly
from verify.derive.symbolic import SymbolicBlock, Traced, Undecidable, collect, float_parameters, trace_exact, trace_float
from verify.timelimit import within_limit

DEFAULT_TIME_LIMIT = 20.0
_MAX_TERMS = 12
_INSTANCE_SEEDS = (1, 2, 3, 4, 5)


@functools.lru_cache(maxsize=256)
def _traced(block: SymbolicBlock) -> Traced:
    return trace_exact(block)


def _readable(expr: Any, traced: Traced) -> tuple[str, dict[str, str]]:
    """LaTeX of a residual polynomial, with its abstract-function symbols renamed u_k plus a legend."""
    shown, total = expr, None
    if isinstance(expr, SPoly) and len(expr.t) > _MAX_TERMS:
        # printing a residual of thousands of terms costs seconds and helps nobody
        total = len(expr.t)
        shown = SPoly(dict(list(expr.t.items())[:_MAX_TERMS]))
    e = traced.to_expr(shown)
    legend, subs = {}, {}
    for sym in sorted(e.free_symbols, key=lambda s: s.name):
        if sym.name.startswith("_s"):
            k = sym.name[2:]
            new = sp.Symbol(f"u_{{{k}}}")
            subs[sym] = new
            legend[f"u_{{{k}}}"] = traced.meaning.get(sym.name, "?")
    latex = sp.latex(e.xreplace(subs))
    if total is not None:
        latex += rf" + \ldots\ \text{{({total - _MAX_TERMS} more of {total} terms)}}"
    return latex, legend


def _instance(prop: Property, block: SymbolicBlock) -> dict[str, Any]:
    """A concrete counterexample: seeded parameters, σ = tanh, a fixed potential; the largest residual."""
    best: dict[str, Any] = {}
    for seed in _INSTANCE_SEEDS:
        t = trace_float(block, seed)
        r = prop.float_residual(t)
        if not best or r > best["residual"]:
            params = float_parameters(t)
            best = {
                "activation": "tanh (any abstract σ is replaced by tanh)",
                "potential": "V(u) = log cosh(r·u) + ½ Σ cos u_i (abstract potentials)",
                "x": [params.pop(f"x_{i}") for i in range(block.dim)],
                "parameters": params,
                "residual": r,
                "seed": seed,
            }
        if r > 1e-6:
            break
    return best


EXACT_MAX_DIM = 1024  # coordinates: beyond, the exact Jacobian's n² polynomial entries cannot be built in any time limit


def prove_block(prop: Property, block: SymbolicBlock, time_limit: float) -> BlockResult:
    start = time.perf_counter()
    if block.dim > EXACT_MAX_DIM:
        # measured: a 256-coordinate gradient shear (K of 16 × 128) traces in ~4 s and the cost grows like n²·width, so
        # a 4096-coordinate one would need hours; say so at once instead of spending the time limit on every claim
        return BlockResult(block.name, Verdict.UNDECIDED, prop.obligation, "", time.perf_counter() - start,
                           message=f"block dim={block.dim}: expected at most {EXACT_MAX_DIM} coordinates for the exact "
                                   f"per-layer obligation (its Jacobian has {block.dim}² polynomial entries); the claim "
                                   "is judged numerically. Fix: prove the layer type at a smaller dimension (the same "
                                   "block program at, e.g., 2d = 256) or accept the numeric verdict")
    if prop.needs_inverse and block.inverse is None:
        # the obligation reads the inverse program, so without one nothing can be decided: say so at once rather than
        # trace the forward first (for a twin generated from a whole network that took the full time limit, 5 s, only
        # to end in this same verdict)
        return BlockResult(block.name, Verdict.UNDECIDED, prop.obligation, "", time.perf_counter() - start,
                           message="the symbolic block declares no inverse, so invertibility cannot be proved exactly; "
                                   "fix: give the SymbolicBlock an inverse program")

    def work() -> tuple[dict[str, Any], Traced]:
        traced = _traced(block)
        return prop.exact_residual(traced), traced

    try:
        residual, traced = within_limit(work, time_limit, f"{prop.name} of {block.name}")
    except SymbolicTimeout as exc:
        return BlockResult(block.name, Verdict.UNDECIDED, prop.obligation, "", time.perf_counter() - start,
                           message=str(exc))
    except NoInverse as exc:
        return BlockResult(block.name, Verdict.UNDECIDED, prop.obligation, "", time.perf_counter() - start,
                           message=f"{exc}; fix: give the SymbolicBlock an inverse program")
    except Undecidable as exc:  # the obligation has no exact decision here: undecided, with the reason and its fix
        return BlockResult(block.name, Verdict.UNDECIDED, prop.obligation, "", time.perf_counter() - start,
                           message=str(exc))
    except Exception as exc:  # a broken block program is the check failing, not a refutation
        return BlockResult(block.name, Verdict.ERROR, prop.obligation, "", time.perf_counter() - start,
                           message=f"the symbolic program of block {block.name!r} failed: {type(exc).__name__}: {exc}")
    seconds = time.perf_counter() - start
    if not residual:
        return BlockResult(block.name, Verdict.PROVED, prop.obligation, "0", seconds)
    position, first = next(iter(residual.items()))
    latex, legend = _readable(first, traced)
    instance = _instance(prop, block)
    return BlockResult(
        block.name, Verdict.VIOLATED, prop.obligation,
        f"\\text{{entry {position} of {len(residual)} non-zero}}: {latex}",
        seconds, instance=instance, legend=legend,
    )


def derive(prop: Property, blocks: Sequence[SymbolicBlock], time_limit: float = DEFAULT_TIME_LIMIT) -> Evidence | None:
    """Symbolic evidence for a claim, or None when the architecture gives no symbolic form."""
    if not blocks:
        return None
    start = time.perf_counter()
    results = [prove_block(prop, b, time_limit) for b in blocks]
    seconds = time.perf_counter() - start
    verdicts = {r.verdict for r in results}
    names = ", ".join(r.block for r in results)
    if Verdict.VIOLATED in verdicts:
        bad = [r for r in results if r.verdict is Verdict.VIOLATED]
        return Refutation(
            stage="symbolic", verdict=Verdict.VIOLATED, seconds=seconds, statement=prop.statement, blocks=results,
            summary=(f"layer {bad[0].block!r} does not satisfy {prop.name} for all parameters: its obligation has a "
                     f"non-zero residual, and a concrete instance gives {bad[0].instance['residual']:.3g}"),
        )
    if Verdict.ERROR in verdicts:
        msg = next(r.message for r in results if r.verdict is Verdict.ERROR)
        return Failure(stage="symbolic", verdict=Verdict.ERROR, seconds=seconds, summary=msg,
                       expected="a block program that maps R^n to R^n", fix="fix the SymbolicBlock program")
    if Verdict.UNDECIDED in verdicts:
        msg = next(r.message for r in results if r.verdict is Verdict.UNDECIDED)
        return Failure(stage="symbolic", verdict=Verdict.UNDECIDED, seconds=seconds, summary=msg,
                       expected="every layer obligation decided within its time limit", fix="see the message")
    return Proof(
        stage="symbolic", verdict=Verdict.PROVED, seconds=seconds, statement=prop.statement, lemma=prop.lemma,
        blocks=results,
        summary=f"every layer type ({names}) satisfies the {prop.name} obligation exactly (residual 0) for any "
                f"activation and any parameters; the network follows by the composition lemma",
    )


LATEX_MAX_DIM = 16  # a block of more coordinates is described, not printed: its map is pages of LaTeX nobody reads
LATEX_TIME_LIMIT = 5.0  # seconds: rendering runs before any claim, so it must never hold up the check


def block_latex(block: SymbolicBlock, time_limit: float = LATEX_TIME_LIMIT) -> str:
    """The block's map as LaTeX: output vector in terms of the input x.

    Bounded in size and time: a 256-coordinate G-SympNet block (K of 32 × 128) took minutes in sympy's printer alone
    before any proof started, so a block of more than LATEX_MAX_DIM coordinates, or one whose rendering exceeds the time
    limit, gets a one-line description instead."""
    if block.dim > LATEX_MAX_DIM:
        return (rf"\text{{{block.dim}-dimensional block, not printed (more than {LATEX_MAX_DIM} coordinates)"
                + (f": {block.description}" if block.description else "") + "}")

    def render() -> str:
        x, y, _ = collect(block)
        return sp.latex(sp.Matrix(x)) + r" \mapsto " + sp.latex(sp.Matrix(y))

    try:
        return within_limit(render, time_limit, f"rendering block {block.name}")
    except SymbolicTimeout:
        return rf"\text{{not printed: rendering took longer than {time_limit:g} s}}"


SCHEME_LEMMA = (
    r"\text{A symplectic (partitioned) Runge–Kutta method, or a composition of exact flows of Hamiltonians, applied to a"
    r" Hamiltonian field } X_H = \Omega^{-1}\nabla H \text{ gives a symplectic map (Hairer–Lubich–Wanner VI.4.3, VI.3);"
    r" the network's field is Hamiltonian by construction (a learned } H = T(p) + V(q)\text{)}"
)


def _pendulum_instance(scheme_name: str) -> dict[str, Any]:
    """The scheme applied to the pendulum H = p²/2 − cos q, h = 0.1, at x = (1, 0): its JᵀΩJ − Ω in float64."""
    import torch

    from verify.schemes.stepping import step

    h = 0.1

    def field(x: torch.Tensor) -> torch.Tensor:
        return torch.stack([x[..., 1], -torch.sin(x[..., 0])], dim=-1)

    def one_step(x: torch.Tensor) -> torch.Tensor:
        # the engine's own step from the exact tableau; an implicit scheme is solved to 1e-15 (relative)
        return step(scheme_name, field, x.unsqueeze(0), h, implicit_tol=1e-15).squeeze(0)

    x0 = torch.tensor([1.0, 0.0], dtype=torch.float64)
    J = torch.autograd.functional.jacobian(one_step, x0)
    om = torch.tensor([[0.0, 1.0], [-1.0, 0.0]], dtype=torch.float64)
    return {"activation": "pendulum H = p²/2 − cos q, h = 0.1", "x": [1.0, 0.0], "parameters": {},
            "residual": float((J.T @ om @ J - om).abs().max()), "seed": 0}


def derive_scheme(prop: Property, scheme_name: str, time_limit: float = DEFAULT_TIME_LIMIT) -> Evidence | None:
    """Symplecticity of a network that is one step of a catalogued scheme, derived from the scheme's exact tableau."""
    from verify.properties.symplectic import Symplectic
    from verify.schemes import catalogue
    from verify.schemes.properties import symplectic

    if not isinstance(prop, Symplectic):
        return None
    start = time.perf_counter()
    finding = symplectic(catalogue.get(scheme_name), limit=time_limit)
    seconds = time.perf_counter() - start
    obligation = r"b_i a_{ij} + b_j a_{ji} - b_i b_j = 0 \ \forall i,j \text{ (or: every factor an exact Hamiltonian flow)}"
    if finding.status == "undecided":
        return Failure(stage="symbolic", verdict=Verdict.UNDECIDED, seconds=seconds, summary=finding.derivation,
                       expected="a decided symplecticity condition", fix="raise the time limit")
    if finding.holds:
        block = BlockResult(f"scheme {scheme_name}", Verdict.PROVED, obligation, "0", seconds, message=finding.derivation)
        return Proof(stage="symbolic", verdict=Verdict.PROVED, seconds=seconds, statement=prop.statement,
                     lemma=SCHEME_LEMMA, blocks=[block],
                     summary=f"the scheme {scheme_name} is symplectic ({finding.derivation[:160]}); "
                             "applied to a Hamiltonian field it gives a symplectic map for any H and h")
    instance = _pendulum_instance(scheme_name)
    block = BlockResult(f"scheme {scheme_name}", Verdict.VIOLATED, obligation, finding.derivation, seconds,
                        instance=instance, message=finding.derivation)
    return Refutation(stage="symbolic", verdict=Verdict.VIOLATED, seconds=seconds, statement=prop.statement, blocks=[block],
                      summary=f"the scheme {scheme_name} is not symplectic: {finding.derivation[:160]}; on the pendulum "
                              f"(h = 0.1, x = (1, 0)) max|JᵀΩJ − Ω| = {instance['residual']:.3g}")
