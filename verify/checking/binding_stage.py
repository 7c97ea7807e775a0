"""The binding stage: does the symbolic form that was proved describe the module that runs?

A proof is about a symbolic form: layer twins (hand-written, or generated from the code by torch.fx)
or the scheme a network declares. Before that proof can make a claim `proved`, the form is
instantiated with the module's own parameters and functions and compared with the module in float64,
over inputs found by the same search engine as every property (growing scales, ascent on the
mismatch, hypothesis): a mismatch beyond round-off is a violation of the claim as declared.
"""
from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Callable

import torch

from verify.checking.domains import Domain
from verify.errors import InputError
from verify.evidence import Binding, Verdict
from verify.checking.search import Objective, search
from verify.declare.subject import Settings, Subject


def binding_search(ratio64: Callable[[torch.Tensor], torch.Tensor], tolerance_at: Callable[[torch.Tensor], float],
                   formula: str, domain: Domain | None, settings: Settings, *, method: str, layers: list[str],
                   locate: Callable[[torch.Tensor], str] | None = None, device: torch.device | str = "cpu") -> Binding:
    """Search the domain for the worst mismatch/tolerance ratio between a symbolic form and the module (float64)."""
    start = time.perf_counter()
    if domain is None:
        raise InputError("domain", None, "a domain to draw inputs from (the phase-space dimension)",
                         "pass dim=n or a domain to check()")
    # float64 against float64: no round-off to see through, so a lighter search than a property's (half the samples,
    # half the ascent, half the hypothesis examples) still finds a structural mismatch wherever it is. No extra samples
    # for the data-scale resolution: the twin runs layer by layer with per-layer Jacobian norms for its tolerance
    # (~10⁴ inputs/s, against ~10⁵ for a property), so 2¹⁷ more would cost seconds per architecture; the coverage
    # states the resolution its own samples reach instead
    b = settings.budget
    budget = dataclasses.replace(b, n_inputs=max(1, b.n_inputs // 2), starts=b.starts // 2, steps=b.steps // 2,
                                 examples=b.examples // 2, resolution_cap=0)
    objective = Objective(ratio=ratio64, ratio64=None, differentiable=True)
    found = search(objective, domain, seed=settings.seed, budget=budget, device=device)
    worst_r, worst_x = found.worst()
    tolerance = tolerance_at(worst_x) if math.isfinite(worst_r) else math.nan
    worst = worst_r * tolerance
    n = int(found.x.shape[0] + found.candidates.shape[0]) + int(found.methods.get("hypothesis", {}).get("examples", 0))
    where = locate(worst_x) if (locate is not None and worst_r > 1.0) else ""
    if not math.isfinite(worst_r):
        verdict = Verdict.ERROR
        summary = (f"the {method} or the module is not finite at x={worst_x.cpu().tolist()}; the binding could not be "
                   "checked there")
    elif worst_r > 1.0:
        verdict = Verdict.VIOLATED
        summary = (f"the declared symbolic form does not describe the module: max relative mismatch {worst:.3g} > "
                   f"round-off tolerance {tolerance:.3g} at x={[round(v, 6) for v in worst_x.cpu().tolist()][:8]}"
                   + (f" ({where})" if where else "") + "; the proof is about another map than the code")
    else:
        verdict = Verdict.HOLDS
        summary = (f"{method}: the symbolic form instantiated with the module's own parameters agrees with the module to "
                   f"{worst:.3g} ≤ {tolerance:.3g} (float64) over {n} inputs at scales ×{', '.join(found.methods['sampling']['scales'])}")
    return Binding(stage="binding", verdict=verdict, summary=summary, seconds=time.perf_counter() - start,
                   method=method, layers=layers, n_inputs=n, max_mismatch=worst, tolerance=tolerance,
                   tolerance_formula=formula, worst_input=worst_x.cpu().tolist(), where=where,
                   search={"domain": domain.describe(), "methods": found.coverage()})


def module_to_bind(subject: Subject, arch: Any, size: str) -> torch.nn.Module:
    """The trained module when there is one; else a freshly built one (a symbolic-only run still binds the code)."""
    if subject.model is not None:
        return subject.model
    if arch is None:
        raise InputError("model", None, "a module to bind the symbolic form to", "pass model=... to check()")
    return arch.build(size).eval()


def bind_stage(subject: Subject, arch: Any, size: str, domain: Domain | None, settings: Settings,
               log_det: tuple[str, str | None] | None = None, twin: Binding | None = None) -> Binding | None:
    """Bind the subject's proved symbolic form to its module; None when there is no form to bind. `log_det` (a LogDet
    claim's (method, inverse_method)): the twins' reported log-dets are compared with the module's too. `twin`: the
    forward/inverse binding already searched for this subject's module and this domain (bind_layers_stage)."""
    if subject.scheme is not None:  # a scheme reports no log-det: its one binding is the shared one
        return twin if twin is not None else bind_scheme_stage(subject, arch, size, domain, settings)
    layers = subject.notes.get("layers")
    if layers is None:
        return None
    if isinstance(layers, Exception):
        raise layers  # the layers could not be bound: the message says which symbol, and the fix
    return bind_layers_stage(subject.notes["model64"], layers, subject.notes.get("layers_how", ""), domain, settings,
                             log_det=log_det, twin=twin)


def resolve_layers(subject: Subject, arch: Any, size: str, wants_layers: bool = True) -> None:
    """Bind the subject's symbolic blocks to its module's layers (before the symbolic stage, which then proves
    exactly the blocks the module's layers are bound to). Records the outcome in subject.notes."""
    from verify.derive import binding
    from verify.derive.proofs import EXACT_MAX_DIM

    if subject.blocks and all(b.dim > EXACT_MAX_DIM for b in subject.blocks):
        # no block this size can be proved (prove_block says so at once), and a binding only serves a proof: binding
        # a 4096-coordinate G-SympNet's layers builds 4·10⁵ symbolic parameters (20 s of a 2-core CPU) for nothing
        subject.notes["layers_skipped"] = (f"every symbolic block has more than {EXACT_MAX_DIM} coordinates: no proof, "
                                           "so no binding")
        return
    try:
        model = module_to_bind(subject, arch, size)
    except Exception as exc:
        subject.notes["layers"] = exc
        return
    declared = bool(subject.blocks) or callable(getattr(model, "symbolic_layers", None))
    if not declared:
        if subject.scheme is None and subject.dim is not None and wants_layers:
            generate_from_code(subject, model)
        return
    try:
        model64, layers = binding.bind(model, subject.blocks or None, subject.dim)
    except Exception as exc:  # recorded: every claim whose proof needs the binding gets this as an error
        subject.notes["layers"] = exc
        return
    subject.notes.update(layers=layers, model64=model64,
                         layers_how="hand-written twin bound by name (Bound layers: block, module parameters, functions)")
    subject.blocks = binding.blocks_to_prove(layers)


def generate_from_code(subject: Subject, model: torch.nn.Module) -> None:
    """No declared symbolic form: generate the twins from the module's own code (torch.fx), per layer.

    An untraceable forward leaves the claims to the numeric stage, and subject.notes["untraceable"] says why
    (the property's symbolic evidence then reads: hand-written twin or numeric only)."""
    from verify.derive import binding
    from verify.derive.fx_twin import Untraceable, generate_layers

    try:
        model64 = binding.float64_copy(model)
    except Exception as exc:  # no float64 copy by any path: no twin to bind, the claims are checked numerically
        subject.notes["untraceable"] = f"no float64 copy of {type(model).__name__} to generate a twin on: {exc}"
        return
    try:
        twins = generate_layers(model64, subject.dim)
    except Untraceable as exc:
        subject.notes["untraceable"] = str(exc)
        return
    except Exception as exc:  # torch.fx itself failed on this module: the same outcome, with the reason
        subject.notes["untraceable"] = f"torch.fx could not trace {type(model).__name__}: {type(exc).__name__}: {exc}"
        return
    layers = []
    for t in twins:
        mod = model64.get_submodule(t.path) if t.path else model64
        params = {base: mod.get_parameter(dotted) if dotted in dict(mod.named_parameters()) else mod.get_buffer(dotted)
                  for base, dotted in t.parameters.items()}
        layers.append(binding.Bound(t.block, module=mod, parameters=params,
                                    label=f"{t.path or type(mod).__name__} ({t.layer_type}, generated from its code)"))
    subject.notes.update(layers=layers, model64=model64,
                         layers_how="twin generated from the module's code (torch.fx), bound to its own parameters")
    subject.blocks = binding.blocks_to_prove(layers)


def bind_layers_stage(model64: torch.nn.Module, layers: list, how: str, domain: Domain | None,
                      settings: Settings, log_det: tuple[str, str | None] | None = None,
                      twin: Binding | None = None) -> Binding:
    """Layer twins against the module, forward and (where both have one) inverse, per input against a round-off
    tolerance that follows each layer's own Jacobian (verify/derive/binding.py, TOLERANCE_FORMULA).

    `log_det`: the twins' reported log-dets against the module's methods too. With `twin` (the forward/inverse binding
    of the same float64 copy, layers and domain, searched once for every claim of the model that binds it), only the
    log-det part is searched here and the two are stated side by side (bind_log_dets); without it, one search climbs
    the larger of the two ratios."""
    from verify.derive import binding
    from verify.checking.numeric import model_device

    if log_det is not None and twin is not None:
        return bind_log_dets(model64, layers, how, domain, settings, log_det, twin)

    sides = [False] + ([True] if not binding._has_inverse(model64, layers) else [])
    parts = [(binding.mismatch_defects(model64, layers, inverse=inv), binding.mismatch_tolerance(model64, layers, inverse=inv))
             for inv in sides]

    def ratio(x: torch.Tensor) -> torch.Tensor:
        out = None
        for defects, tol in parts:
            try:
                r = defects(x) / tol(x).clamp_min(1e-300)
            except NotImplementedError:  # an inverse() that only says it has none
                continue
            out = r if out is None else torch.maximum(out, r)
        return out

    # a LogDet proof is about the log-dets the twins report: compare them with what the module's methods return
    reports = [] if log_det is None else [(m, inv, binding.log_det_parts(model64, layers, m, inverse=inv))
                                          for m, inv in ((log_det[0], False), (log_det[1], True)) if m is not None]
    if reports:
        forward_ratio = ratio

        def ratio(x: torch.Tensor) -> torch.Tensor:  # noqa: F811 - the same ratio, with the reported log-dets
            out = forward_ratio(x)
            for _, _, ld in reports:
                d, t, _, _ = ld(x)
                out = torch.maximum(out, d / t)
            return out

    def tolerance_at(x: torch.Tensor) -> float:
        return float(parts[0][1](x.unsqueeze(0))[0])

    def locate(x: torch.Tensor) -> str:
        return _log_det_location(reports, x) or binding.mismatch(model64, layers, x.unsqueeze(0))["summary"]

    names = [layer.describe() for layer in layers]
    what = " (forward and inverse)" if len(parts) > 1 else " (forward)"
    if reports:
        what += " and the reported log-det" + ("s" if len(reports) > 1 else "") + " (" + \
            ", ".join(m for m, _, _ in reports) + ")"
    return binding_search(ratio, tolerance_at, binding.TOLERANCE_FORMULA, domain, settings,
                          method=how + what, layers=names, locate=locate, device=model_device(model64))


def bind_log_dets(model64: torch.nn.Module, layers: list, how: str, domain: Domain | None, settings: Settings,
                  log_det: tuple[str, str | None], twin: Binding) -> Binding:
    """The reported log-dets of the twins against the module's methods, searched on their own (their ratio reads no
    Jacobian: cheap), beside the forward/inverse binding `twin` already searched for the same module and domain. The
    claim's binding holds only if both do; the evidence states each part, its inputs and its worst ratio."""
    from verify.derive import binding
    from verify.checking.numeric import model_device

    start = time.perf_counter()
    reports = [(m, inv, binding.log_det_parts(model64, layers, m, inverse=inv))
               for m, inv in ((log_det[0], False), (log_det[1], True)) if m is not None]

    def ratio(x: torch.Tensor) -> torch.Tensor:
        out = None
        for _, _, ld in reports:
            d, t, _, _ = ld(x)
            out = d / t if out is None else torch.maximum(out, d / t)
        return out

    def tolerance_at(x: torch.Tensor) -> float:
        worst = None
        for _, _, ld in reports:
            d, t, _, _ = (v[0] for v in ld(x.unsqueeze(0)))
            if worst is None or float(d / t) > worst[0]:
                worst = (float(d / t), float(t))
        return worst[1]

    def locate(x: torch.Tensor) -> str:
        return _log_det_location(reports, x)

    names = ", ".join(m for m, _, _ in reports)
    part = binding_search(ratio, tolerance_at, binding.LOG_DET_TOLERANCE_FORMULA, domain, settings,
                          method=f"the twins' reported log-dets ({names}) against the module's", layers=list(twin.layers),
                          locate=locate, device=model_device(model64))
    twin_ratio = twin.max_mismatch / twin.tolerance if twin.tolerance and twin.tolerance > 0 else math.nan
    part_ratio = part.max_mismatch / part.tolerance if part.tolerance and part.tolerance > 0 else math.nan
    verdicts = (twin.verdict, part.verdict)
    verdict = (Verdict.VIOLATED if Verdict.VIOLATED in verdicts else Verdict.ERROR if Verdict.ERROR in verdicts
               else Verdict.UNDECIDED if Verdict.UNDECIDED in verdicts else Verdict.HOLDS)
    worse = part if not (twin_ratio >= part_ratio) else twin  # NaN (not computed) counts as the worse part
    summary = (f"forward and inverse (the binding searched once for this module and domain, shared by every claim that "
               f"binds it): {twin.summary}; reported log-dets: {part.summary}")
    method = (f"{twin.method}, searched once for the module and shared; and {part.method}, searched for this claim "
              f"({part.n_inputs} inputs)")
    return Binding(stage="binding", verdict=verdict, summary=summary, seconds=time.perf_counter() - start,
                   method=method, layers=list(twin.layers), n_inputs=twin.n_inputs + part.n_inputs,
                   max_mismatch=worse.max_mismatch, tolerance=worse.tolerance,
                   tolerance_formula=f"forward and inverse: {twin.tolerance_formula}; reported log-dets: "
                                     f"{part.tolerance_formula}",
                   worst_input=list(worse.worst_input), where=part.where or twin.where,
                   search={"domain": part.search.get("domain"), "methods": part.search.get("methods"),
                           "forward_inverse": {"shared": True, "n_inputs": twin.n_inputs, "seconds": twin.seconds,
                                               "max_mismatch": twin.max_mismatch, "tolerance": twin.tolerance,
                                               "verdict": twin.verdict.value, "methods": twin.search.get("methods")},
                           "log_det": {"n_inputs": part.n_inputs, "seconds": part.seconds,
                                       "max_mismatch": part.max_mismatch, "tolerance": part.tolerance,
                                       "verdict": part.verdict.value}})


def bind_scheme_stage(subject: Subject, arch: Any, size: str, domain: Domain | None, settings: Settings) -> Binding:
    """A scheme-declared network: its forward against the engine's own steps of its own vector field (verify/schemes/stepping.py)."""
    from verify.checking.numeric import model_device
    from verify.precision import float64_copy
    from verify.schemes import stepping

    model = module_to_bind(subject, arch, size)
    model64 = float64_copy(model).eval()  # CopyError (an InputError) says why no path could copy it
    steps = int(getattr(model64, "steps", 1))
    fn = stepping.scheme_mismatch_defects(model64, subject.scheme)
    tol = stepping.tolerance(subject.scheme, steps)
    return binding_search(lambda x: fn(x) / tol, lambda x: tol, stepping.TOLERANCE_FORMULA, domain, settings,
                          method=f"scheme {subject.scheme} stepped by the engine on the module's own vector field "
                                 "(and, where the module has hamiltonian(), the field checked to be Ω⁻¹∇H and separable)",
                          layers=[f"{steps} step(s) of {subject.scheme}"], device=model_device(model64))


def _log_det_location(reports: list, x: torch.Tensor) -> str:
    """Where a reported log-det differs from its twins' at x (the first method beyond its tolerance), or ""."""
    from verify.derive import binding

    for method, _, ld in reports:
        d, t, twin, code = (v[0] for v in ld(x.unsqueeze(0)))
        if float(d) > float(t):
            return (f"{method}(x) = {float(code):.8g} but the twins report {float(twin):.8g} (differ by "
                    f"{float(d):.3g} > {float(t):.3g}: {binding.LOG_DET_TOLERANCE_FORMULA})")
    return ""
