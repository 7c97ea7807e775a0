"""OnManifold(M, tensor=...): a named tensor of the model lies on the manifold M.

The tensor is found by its attribute path on the model: a parameter or buffer (`"linear.weight"`), or the output of
a parametrisation registered on it (torch's `parametrizations.orthogonal`, a geotorch constraint, our own module:
`"linear.weight"` then reads the parametrised value, and `"linear.parametrizations.weight"` names the same).

* Symbolic stage (verify/derive/parametrisations.py): the parametrisation is recognised, its declared form is
  bound to the code (the float64 twin, from the module's own raw parameter, reproduces the module's float64 output),
  and its obligations are proved exactly with sympy: Q = g(X) lands on M for *every* raw X. A form whose obligation
  fails is refuted with an exact rational instance; an SO(n) claim on a form whose determinant is −1 (an odd number of
  reflections, a base that is a reflection) is refuted with the determinant. A stored tensor (no parametrisation),
  or a parametrisation whose form is not known, has no symbolic form: it is judged numerically only.
* Numeric stage: the manifold's defect (verify/declare/manifolds.py) of the tensor in the model's dtype, against
  the tolerance c·eps·(√n + m) with m the parametrisation's own error; and of the tensor recomputed by the model's
  float64 copy, against the float64 tolerance plus what the precision of the stored numbers explains (the storage
  draws of verify/precision.py: a weight orthogonal to float32 precision is not a structural violation in float64).

Not a map property: OnManifold has no inputs, so its domain is None and the engine's map machinery (layers, search,
binding stage) is not involved; the property carries its own binding in its proof (`bound_by`).
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

import torch
from torch.nn.utils import parametrize

from verify.declare.manifolds import SO, SPD, Manifold, Sphere, Stiefel, parse  # noqa: F401 (re-exported)
from verify.errors import InputError, VerifyError
from verify.evidence import BlockResult, Failure, Measurement, Proof, Refutation, Verdict
from verify.properties.base import NO_FORM, Property

FORMS_FOR = {"stiefel": ("matrix_exp", "cayley", "householder", "reflections", "qr", "polar", "column_normalise"),
             "so": ("matrix_exp", "cayley", "householder", "reflections"),
             "sphere": ("normalise",), "spd": ("llt",)}

LEMMAS = {
    "matrix_exp": r"\exp(A)^\top\exp(A) = \exp(A^\top)\exp(A) = \exp(-A)\exp(A) = I\ (A, -A\text{ commute});\ "
                  r"\det\exp(A) = e^{\operatorname{tr}A} = 1",
    "cayley": r"Q = M^{-1}P:\ Q^\top Q = P^\top (MM^\top)^{-1} P = P^\top (PP^\top)^{-1} P = I;\ \det Q = \det M^\top/\det M = 1",
    "householder": r"Q = H_1\cdots H_k D,\ H_i^\top H_i = I,\ D = \operatorname{diag}(\pm 1):\ Q^\top Q = I;\ "
                   r"\det Q = (-1)^k \prod_i d_i",
    "reflections": r"Q = H(v_1)\cdots H(v_r),\ H^\top H = I:\ Q^\top Q = I;\ \det Q = (-1)^r",
    "llt": r"x^\top S x = \|L^\top x\|^2 + \varepsilon\|x\|^2 \ge \varepsilon\|x\|^2 > 0\ (x \ne 0,\ \varepsilon > 0)",
    "normalise": r"\|x/\|x\|\| = 1\ (x \ne 0)",
    "qr": r"Q = XR^{-1},\ R^\top R = X^\top X\ (\text{Cholesky, } \operatorname{diag} R > 0):\ "
          r"Q^\top Q = R^{-\top}X^\top X R^{-1} = R^{-\top}R^\top R R^{-1} = I\ (X \text{ of full column rank})",
    "polar": r"Q = XS^{-1},\ S = S^\top,\ S^2 = X^\top X:\ Q^\top Q = S^{-1}S^2S^{-1} = I\ (X \text{ of full column rank})",
    "column_normalise": r"Q = X\operatorname{diag}(1/\|x_j\|):\ (Q^\top Q)_{ij} = x_i^\top x_j/(\|x_i\|\|x_j\|)",
}


LEMMA_WORDS = {
    "matrix_exp": "exp(A)ᵀexp(A) = exp(−A)exp(A) = I, det exp(A) = e^{tr A} = 1",
    "cayley": "QᵀQ = Pᵀ(MMᵀ)⁻¹P = Pᵀ(PPᵀ)⁻¹P = I, det Q = det Mᵀ/det M = 1",
    "householder": "a product of orthogonal reflectors times diag(±1) is orthogonal",
    "reflections": "a product of orthogonal reflectors is orthogonal, det = (−1)^r",
    "llt": "xᵀSx = ‖Lᵀx‖² + ε‖x‖² > 0",
    "normalise": "‖x/‖x‖‖ = 1",
    "qr": "Q = XR⁻¹ with RᵀR = XᵀX (Cholesky, diag R > 0): QᵀQ = R⁻ᵀXᵀXR⁻¹ = I for X of full column rank",
    "polar": "Q = XS⁻¹ with S = Sᵀ, S² = XᵀX: QᵀQ = S⁻¹S²S⁻¹ = I for X of full column rank",
    "column_normalise": "unit columns only: (QᵀQ)_ij = x_iᵀx_j/(‖x_i‖‖x_j‖)",
}


def _vs(a: float, b: float) -> str:
    """`a ≤ b` / `a > b` from the printed numbers themselves (a message never contradicts its numbers)."""
    for digits in (3, 6, 17):
        ta, tb = f"{a:.{digits}g}", f"{b:.{digits}g}"
        if ta != tb or digits == 17:
            return f"{ta} {'≤' if a <= b else '>'} {tb}"
    return ""


# --------------------------------------------------------------------------- the tensor, by its name
@dataclass
class Located:
    path: str
    parent: torch.nn.Module
    name: str
    value: torch.Tensor
    raw: torch.Tensor | None = None  # the raw parameter of a parametrisation
    params: list[torch.nn.Module] = field(default_factory=list)


def available_tensors(model: torch.nn.Module) -> list[str]:
    """The names OnManifold(tensor=...) accepts on this model: parametrised tensors, parameters and buffers."""
    names: list[str] = []
    for mname, m in model.named_modules():
        if parametrize.is_parametrized(m):
            names += [f"{mname + '.' if mname else ''}{t}" for t in m.parametrizations.keys()]
    for n, _ in list(model.named_parameters()) + list(model.named_buffers()):
        if ".parametrizations." not in f".{n}" and not n.startswith("parametrizations."):
            names.append(n)
    return sorted(set(names))


def locate(model: torch.nn.Module, path: str) -> Located:
    """The tensor named `path` on the model (a parametrisation's output is computed, in the model's dtype)."""
    parts = path.split(".")
    if len(parts) >= 2 and parts[-2] == "parametrizations":
        parent_parts, name = parts[:-2], parts[-1]
    else:
        parent_parts, name = parts[:-1], parts[-1]

    def missing(what: str) -> InputError:
        names = available_tensors(model)
        return InputError(f"OnManifold(tensor={path!r})", what, f"the name of a tensor of {type(model).__name__}: one of "
                          f"{names[:20]}{' …' if len(names) > 20 else ''}",
                          "name a parameter, a buffer or a parametrised tensor by its attribute path (e.g. 'linear.weight')")

    obj: Any = model
    for p in parent_parts:
        obj = getattr(obj, p, None)
        if not isinstance(obj, torch.nn.Module):
            raise missing(f"no submodule {p!r}")
    parent = obj
    if parametrize.is_parametrized(parent, name):
        plist = parent.parametrizations[name]
        value = getattr(parent, name)
        raw = getattr(plist, "original", None)
        return Located(path, parent, name, value, raw if isinstance(raw, torch.Tensor) else None, list(plist))
    value = getattr(parent, name, None)
    if not isinstance(value, torch.Tensor):
        raise missing(f"no tensor {name!r} on {type(parent).__name__}")
    return Located(path, parent, name, value)


def _finite(T: torch.Tensor, path: str, where: str) -> None:
    bad = ~torch.isfinite(T.detach())
    if bool(bad.any()):
        idx = [int(i) for i in bad.nonzero()[0].tolist()]
        raise InputError(f"{path} ({where})", f"{int(bad.sum())} non-finite entries, first at {idx}: {float(T.detach()[tuple(idx)])}",
                         "a finite tensor (a NaN or inf cannot lie on a manifold, and its defect cannot be measured)",
                         "find where training diverged (lower the learning rate) or where the parametrisation divides "
                         "by zero (x/‖x‖ at x = 0, a singular Cayley solve)")


def _model_of(subject: Any) -> torch.nn.Module | None:
    if subject.model is not None:
        return subject.model
    arch = subject.architecture
    return arch.build(subject.size).eval() if arch is not None else None


def _base_judgement(found: Any) -> dict[str, Any] | None:
    """The stored base B of Q = B·g(X) (torch's trivialisation, geotorch): its float64 defect against the tolerance
    of an orthogonal factor computed in its own dtype (QR, backward stable: c·eps·(√n + √n)); None without a base."""
    if found is None or found.base is None:
        return None
    from verify.declare.manifolds import Orthogonal

    B = found.base.detach()
    nB = int(B.shape[-1])
    MB = Orthogonal(nB)
    d = MB.reading(B.to(torch.float64)).value  # the stored numbers' own defect, exactly as stored
    tolB = MB.tolerance(B.dtype, math.sqrt(nB), "a stored orthogonal factor computed in its dtype (QR: backward stable)")
    off = d > tolB.value
    return {"defect64": d, "tolerance": tolB.value, "off": off,
            "text": f"d64(B) = {_vs(d, tolB.value)} (its {str(B.dtype).replace('torch.', '')} tolerance {tolB.formula})"}


# --------------------------------------------------------------------------- evidence
@dataclass(frozen=True)
class ManifoldMeasurement(Measurement):
    """The defect of one named tensor on one manifold, in the model's dtype and in float64, with its witness."""

    tensor: str = ""
    manifold: str = ""
    source: str = ""  # the parametrisation that produces the tensor, or "stored tensor"
    parts: Mapping[str, float] = field(default_factory=dict)
    parts_float64: Mapping[str, float] = field(default_factory=dict)
    witness_text: str = ""
    storage_allowance: float = 0.0

    @property
    def kind(self) -> str:
        return "measurement"  # the index and reports read it as a measurement (max defect / tolerance)

    def extra_markdown(self) -> list[str]:
        rows = [f"Tensor `{self.tensor}` ({self.source}) on {self.manifold}: {self.witness_text}.", "",
                "| part | model dtype | float64 copy |", "|---|---|---|"]
        for k in self.parts:
            rows.append(f"| {k} | {self.parts[k]:.6g} | {self.parts_float64.get(k, math.nan):.6g} |")
        rows += ["", f"Float64 allowance for the stored numbers' precision: {self.storage_allowance:.3g}.", ""]
        drift = self.search.get("drift") if isinstance(self.search, Mapping) else None
        if drift:
            rows += [f"Along training (every {drift['every']} step(s), {drift['points']} iterates recorded): "
                     f"{drift['text']}. Figure: drift.png.", ""]
        return rows


@dataclass(frozen=True, init=False)
class OnManifold(Property):
    """A named tensor of the model (parameter, buffer, or a parametrisation's output) lies on the manifold M."""

    manifold: Manifold | None = None
    tensor: str = "weight"
    every_iterate: bool = False  # the claim is about every optimiser iterate, not only the trained tensor
    record_every: int | None = None  # K of the drift record (None: every iterate for every_iterate, else ~100 points)

    name: ClassVar[str] = "OnManifold"
    binds_itself: ClassVar[bool] = True  # the proof's bound_by: the float64 twin against the module's own output
    statement: ClassVar[str] = r"T \in \mathcal{M}\ \text{for every value of the raw parameters}"
    lemma: ClassVar[str] = r"\text{a parametrisation that lands on } \mathcal{M} \text{ for every raw } X"
    defect_text: ClassVar[str] = (r"\|Q^\top Q - I\|_2\ (\text{and } \max(0, -\det Q) \text{ for } SO(n));\ "
                                  r"|\|x\|_2 - 1|;\ \max(\|S - S^\top\|_{\max}, \max(0, -\lambda_{\min}))/\|S\|_2")

    def __init__(self, manifold: Manifold, tensor: str = "weight", *, within: float | None = None,
                 every_iterate: bool = False, record_every: int | None = None) -> None:
        M = parse(manifold)
        ok = isinstance(tensor, str) and tensor and all(p.isidentifier() or p.isdigit() for p in tensor.split("."))
        if not ok:
            raise InputError("OnManifold(tensor=...)", tensor, "an attribute path such as 'weight' or 'linear.weight'",
                             "name the tensor by the path you would write after `model.`")
        if not isinstance(every_iterate, bool):
            raise InputError("OnManifold(every_iterate=...)", every_iterate, "True or False",
                             "write every_iterate=True to claim that every optimiser iterate lies on M")
        if record_every is not None and not (isinstance(record_every, int) and not isinstance(record_every, bool)
                                             and record_every >= 1):
            raise InputError("OnManifold(record_every=...)", record_every, "a whole number ≥ 1 (record every K steps)",
                             "write record_every=10, or leave it out (every iterate for every_iterate=True, else ~100 "
                             "points over the training)")
        if every_iterate and record_every not in (None, 1):
            raise InputError("OnManifold(every_iterate=True, record_every=...)", record_every,
                             "1 (a claim about every iterate is judged on every iterate)",
                             "leave record_every out, or claim every_iterate=False and read the drift record as data")
        object.__setattr__(self, "manifold", M)
        object.__setattr__(self, "tensor", tensor)
        object.__setattr__(self, "every_iterate", every_iterate)
        object.__setattr__(self, "record_every", record_every)
        object.__setattr__(self, "dim", None)
        object.__setattr__(self, "where", None)
        object.__setattr__(self, "within", within)
        # one claim per (manifold, tensor): an architecture may claim O(n) of one tensor and SO(n) of it falsely
        object.__setattr__(self, "name", f"OnManifold({M.name}, {tensor}{', every iterate' if every_iterate else ''})")
        self.__post_init__()

    def __str__(self) -> str:
        return self.name if self.within is None else f"{self.name[:-1]}, within={self.within:g})"

    def domain(self, subject: Any) -> None:
        return None  # no inputs: the claim is about a tensor

    # -- symbolic ---------------------------------------------------------------------------------------------------
    def symbolic(self, subject: Any) -> Any:
        from verify.derive import parametrisations as pz
        from verify.precision import float64_copy
        from verify.timelimit import within_limit

        model = _model_of(subject)
        if model is None:
            return None
        start = time.perf_counter()
        M = self.manifold
        loc = locate(model, self.tensor)
        M.validate(tuple(loc.value.shape), self.tensor)

        def no_form(why: str, fix: str) -> Failure:
            return Failure(stage="symbolic", verdict=Verdict.UNDECIDED, seconds=time.perf_counter() - start,
                           summary=f"{NO_FORM}: {why}; the claim is checked numerically only",
                           expected="a parametrisation whose form is known (torch's orthogonal, geotorch SO/Stiefel, or a "
                                    "module declaring manifold_form = Parametrisation(...))", fix=fix)

        if not loc.params:
            return no_form(f"{self.tensor} is a stored tensor (a parameter or buffer), not the output of a "
                           "parametrisation: its value is whatever the optimiser made it",
                           "parametrise it (torch.nn.utils.parametrizations.orthogonal, geotorch) to have it proved")
        if len(loc.params) != 1 or loc.raw is None:
            return no_form(f"{self.tensor} is produced by a chain of {len(loc.params)} parametrisations",
                           "register one parametrisation, or declare the composite's form")
        found = pz.recognise(loc.params[0], loc.raw)
        if found is None:
            return no_form(f"the parametrisation {type(loc.params[0]).__name__} has no known form",
                           f"declare manifold_form = Parametrisation(kind=..., generator=...) on {type(loc.params[0]).__name__}")
        kind = found.form.kind
        if kind not in FORMS_FOR[M.kind]:
            return no_form(f"a {kind} parametrisation proves membership of another manifold than {M.name}",
                           "claim the manifold the parametrisation lands on")
        rank_note = ""
        if kind in ("qr", "polar"):
            # the lemma covers X of full column rank (XᵀX SPD); read σ_min of the module's own raw X in float64. A
            # rank-deficient X is outside the lemma, not a refutation: Householder QR still returns orthonormal columns
            Xr = found.raw.detach().to(torch.float64).cpu()
            Xr = Xr.mT if found.transposed else Xr
            sv = torch.linalg.svdvals(Xr)
            floor = max(Xr.shape) * float(torch.finfo(torch.float64).eps) * float(sv[0])
            if not float(sv[-1]) > floor:
                return no_form(f"the {kind} lemma needs a raw X of full column rank, and the module's is rank-deficient "
                               f"(σ_min(X) = {float(sv[-1]):.3g} ≤ {floor:.3g} = n·eps64·σ_max)",
                               "keep the raw parameter of full column rank (re-initialise it, or retract it in place)")
            rank_note = (f"the module's raw X has full column rank: σ_min(X) = {float(sv[-1]):.3g}, κ(X) = "
                         f"{float(sv[0] / sv[-1]):.3g} (float64); the proof covers every X of full column rank")
        # the binding: the twin in float64 from the module's own raw numbers against the module's float64 output
        m64 = float64_copy(model)
        loc64 = locate(m64, self.tensor)
        found64 = pz.recognise(loc64.params[0], loc64.raw)
        if found64 is None:
            return no_form("the float64 copy's parametrisation could not be recognised", "make the module deep-copyable")
        bound, _, _, bind_text = pz.bind(found64, loc64.value)
        if not bound:
            return Failure(stage="symbolic", verdict=Verdict.UNDECIDED, seconds=time.perf_counter() - start,
                           summary=f"the declared form does not describe the module: {bind_text}; no proof is made, the "
                                   "numeric stage decides",
                           expected="a declared form that computes what the module computes",
                           fix="correct manifold_form (kind, generator, alpha) to the formula the module implements")
        n = M.size
        obs, secs, n_check = within_limit(lambda: pz.check_form(found.form, n), subject.time_limit,
                                          f"{kind} obligations of {self.tensor}")
        blocks = [BlockResult(block=f"{found.source}: {ob.name}", verdict=Verdict.PROVED if ob.holds else Verdict.VIOLATED,
                              obligation=ob.latex, residual=pz.residual_latex(ob), seconds=secs / max(1, len(obs)),
                              instance=None if ob.holds else ob.instance,
                              message=f"exact at n = {n_check}" + (f" (the identity is matrix algebra, valid at every n; "
                                                                    f"the tensor's n = {n})" if n_check != n else ""))
                  for ob in obs]
        # conditions on the module's own numbers
        refuted: list[str] = []
        notes: list[str] = []
        det_sign = 1
        if kind == "householder":
            signs = found.notes.get("signs", [])
            bad = [(i, d) for i, d in enumerate(signs) if d not in (1, -1)]
            if bad:
                refuted.append(f"column signs d_i = int(X_ii) must be ±1; d_{bad[0][0]} = {bad[0][1]} zeroes column "
                               f"{bad[0][0]} of Q")
            det_sign = (-1) ** int(found.columns or loc.raw.shape[-1]) * math.prod(s for s in signs if s in (1, -1))
            notes.append(f"det g(X) = (−1)^{found.columns or loc.raw.shape[-1]}·∏d_i = {det_sign:+d} (signs read from the raw parameter)")
        elif kind == "reflections":
            r = int(loc.raw.shape[0])
            det_sign = (-1) ** r
            notes.append(f"{r} reflections: det Q = (−1)^{r} = {det_sign:+d}")
        elif kind in ("qr", "polar"):
            notes.append(rank_note)
        elif kind == "llt":
            if not (found.eps is not None and found.eps > 0):
                refuted.append(f"ε = {found.eps} is not > 0: LLᵀ + εI is only positive semidefinite")
            else:
                notes.append(f"ε = {found.eps:g} > 0 (the module's number): λ_min(S) ≥ ε")
        if found.base is not None:
            B = found.base.detach().to(torch.float64).cpu()
            det_B = float(torch.linalg.det(B)) if B.shape[-1] == B.shape[-2] else math.nan
            notes.append(f"Q = B·g(X) with B a stored buffer, det B = {det_B:.6g} (float64 of the stored numbers); B's "
                         "orthogonality is measured by the numeric stage")
            if math.isfinite(det_B):
                det_sign *= 1 if det_B > 0 else -1
        if isinstance(M, SO) and det_sign < 0:
            refuted.append(f"det Q = {det_sign:+d} for every raw X, so Q ∈ O({M.n}) but not SO({M.n}) ({'; '.join(notes)})")
        seconds = time.perf_counter() - start
        failed = [b for b in blocks if b.verdict is Verdict.VIOLATED]
        if failed or refuted:
            if refuted and not failed:
                blocks.append(BlockResult(block=f"{found.source}: determinant / stored numbers", verdict=Verdict.VIOLATED,
                                          obligation=r"\det Q = +1" if isinstance(M, SO) else r"\text{conditions on the numbers}",
                                          residual=(rf"\det Q = {det_sign:+d}" if isinstance(M, SO) and det_sign < 0
                                                    else r"\text{see the summary}"), seconds=0.0,
                                          instance={"activation": "none (a parametrisation)", "x": [], "seed": 0,
                                                    "parameters": {"det_sign": det_sign, "notes": notes},
                                                    "residual": float(abs(det_sign - 1)) if isinstance(M, SO) else 1.0}))
            why = (f"obligation '{failed[0].block}' has a non-zero residual; at the exact instance X = "
                   f"{failed[0].instance['parameters']['X'] if failed[0].instance else '?'} "
                   f"the largest |QᵀQ − I| entry is {failed[0].instance['residual']:.4g}" if failed and failed[0].instance
                   else (failed[0].block if failed else refuted[0]))
            return Refutation(stage="symbolic", verdict=Verdict.VIOLATED, seconds=seconds, statement=M.statement(),
                              blocks=blocks, summary=f"{self.tensor} ({found.source}) does not land on {M.name}: {why}")
        summary = (f"{self.tensor} = {found.source} lands on {M.name} for every raw parameter: "
                   f"{len(obs)} obligations reduced to 0 exactly (sympy, n = {n_check}) and the lemma "
                   f"{LEMMA_WORDS[kind]}"
                   + (f"; {'; '.join(notes)}" if notes else ""))
        return Proof(stage="symbolic", verdict=Verdict.PROVED, seconds=seconds, statement=M.statement(),
                     lemma=LEMMAS[kind], blocks=blocks, summary=summary, bound_by=bind_text)

    # -- numeric ----------------------------------------------------------------------------------------------------
    def numeric(self, subject: Any, domain: Any, settings: Any) -> Any:
        start = time.perf_counter()
        try:
            return self._numeric(subject, settings, start)
        except Exception as exc:  # bad input or the model's own exception: error evidence, never a pass
            from verify.errors import describe, explain

            summary, expected, fix = explain(exc, "numeric", subject.name)
            return Failure(stage="numeric", verdict=Verdict.ERROR, summary=summary, seconds=time.perf_counter() - start,
                           expected=expected, fix=fix, exception="" if isinstance(exc, VerifyError) else describe(exc))

    def measure(self, model: torch.nn.Module, seed: int = 0) -> "ManifoldMeasurement":
        """The numeric stage on a bare module (raises InputError on bad input; check() turns that into `error`)."""
        return self._measure(model, seed, time.perf_counter())

    def _numeric(self, subject: Any, settings: Any, start: float) -> Any:
        if subject.model is None:
            raise InputError("model", None, "a trained module", "pass model=... or let check() train it")
        m = self._measure(subject.model, settings.seed, start)
        record = (getattr(subject, "training_records", None) or {}).get(self.name)
        if self.every_iterate:
            return judge_iterates(self, m, record, start)
        if record is not None and not record.get("error"):
            # a claim about the trained tensor: the record informs (where it left M, how fast it drifts), the verdict
            # is the trained tensor's
            nums = drift_numbers(record)
            return dataclasses.replace(m, summary=f"{m.summary}; along training (data, not the verdict): "
                                                  f"{nums['text']}", search={**m.search, "drift": nums})
        return m

    def _tolerances(self, loc: Located, dtype: torch.dtype) -> tuple[Any, Any, str, float, str, Any, dict[str, Any] | None]:
        """(tolerance in the dtype, in float64, the tensor's source, map units, their words, the recognised form, the
        stored base's judgement) for the tensor `loc` as it is now (the exponential's units grow with ‖A‖₂)."""
        from verify.derive import parametrisations as pz

        M = self.manifold
        found = pz.recognise(loc.params[0], loc.raw) if len(loc.params) == 1 and loc.raw is not None else None
        n = M.size
        if found is not None:
            units, utext = found.map_units(n)
            source = found.source
        else:
            units, utext = math.sqrt(n), "√n: stored numbers rounded to the dtype (no parametrisation of a known form)"
            source = "stored tensor" if not loc.params else f"parametrisation {type(loc.params[0]).__name__} (form unknown)"
        tol = M.tolerance(dtype, units, utext)
        tol64 = M.tolerance(torch.float64, units, utext)
        base = _base_judgement(found)
        if base is not None and not base["off"]:
            # Q = B·g(X): QᵀQ − I = gᵀ(BᵀB − I)g + (gᵀg − I), so the stored base's own defect d(B) (within its
            # tolerance) adds to what Q may show, in every dtype: ‖QᵀQ − I‖ ≤ d(B)(1 + tol) + d(g)
            add = base["defect64"] * (1 + tol.value)
            tol = type(tol)(tol.value + add, f"{tol.formula} + d(B) = {add:.3g} (the stored base B, {base['text']})")
            add64 = base["defect64"] * (1 + tol64.value)
            tol64 = type(tol64)(tol64.value + add64, f"{tol64.formula} + d(B) = {add64:.3g} (the stored base B)")
        if self.within is not None:
            tol = tol64 = type(tol)(float(self.within), f"stated by the claim: within={self.within:g} (round-off alone "
                                                          f"would allow {tol.value:.3g}: {tol.formula})")
        return tol, tol64, source, units, utext, found, base

    # -- along training: the drift record ---------------------------------------------------------------------------
    def training_recorder(self, model: torch.nn.Module, steps: int) -> "DriftRecorder":
        """The hook the trainer calls once per claim before the first step: a recorder of this tensor's defect at step
        0 and every K optimiser steps (and after the last), kept with the trained model (its checkpoint record)."""
        every = 1 if self.every_iterate else (self.record_every or max(1, steps // 100))
        return DriftRecorder(self, every=every, steps_planned=int(steps), every64=max(every, steps // 100, 1))

    def _measure(self, model: torch.nn.Module, seed: int, start: float) -> "ManifoldMeasurement":
        from verify.derive import parametrisations as pz
        from verify.precision import (LAMBDA_STORAGE, STORAGE_DRAWS, copy_path, float64_copy, stored_precision)

        M = self.manifold
        with torch.no_grad():
            loc = locate(model, self.tensor)
            T = loc.value
            M.validate(tuple(T.shape), self.tensor)
            _finite(T, self.tensor, str(T.dtype).replace("torch.", ""))
            dtype = T.dtype
            tol, tol64, source, units, utext, found, base = self._tolerances(loc, dtype)
            r = M.reading(T)
            m64 = float64_copy(model)
            T64 = locate(m64, self.tensor).value
            _finite(T64, self.tensor, "float64 copy")
            r64 = M.reading(T64)
            stored = stored_precision(model)
            coarser = {k: v for k, v in stored.items() if k != "float64"}
            changes = []
            if coarser:
                for i in range(STORAGE_DRAWS):
                    g = torch.Generator().manual_seed(seed * 1000 + i)
                    drawn = locate(float64_copy(model, g), self.tensor).value
                    changes.append(abs(M.reading(drawn).value - r64.value))
            allowance = LAMBDA_STORAGE * max(changes) if changes else 0.0
        dt = str(dtype).replace("torch.", "")
        limit64 = tol64.value + allowance
        # a stored tensor in a coarser dtype (no parametrisation to recompute in float64) is what the optimiser's own
        # arithmetic in that dtype made (a projection, a retraction: an SVD or a solve in float32), not the rounding of
        # exact numbers: its float64 reading removes only the QᵀQ product's rounding, and is bounded by the dtype's
        # tolerance, not by float64's plus the rounding of the stored numbers
        stored_in_dtype = not loc.params and dtype != torch.float64 and tol.value > limit64
        if stored_in_dtype:
            limit64 = tol.value
        structural = r64.value > limit64 or (base is not None and base["off"])
        exceeded = r.value > tol.value
        if structural:
            verdict, cls = Verdict.VIOLATED, "structural"
        elif exceeded:
            verdict, cls = Verdict.VIOLATED, "round-off"
        else:
            verdict, cls = Verdict.HOLDS, "none"
        ce = ce_defect = None
        ce_dtype = dt
        if verdict is Verdict.VIOLATED:
            if exceeded:
                ce, ce_defect = r.witness, r.value
            else:
                ce, ce_defect, ce_dtype = r64.witness, r64.value, "float64"
        oracle = (f"float64 copy ({copy_path(m64)}): defect {_vs(r64.value, limit64)} = float64 tolerance "
                  f"{tol64.value:.3g} + storage allowance {allowance:.3g}"
                  + (f" ({', '.join(f'{v} {k}' for k, v in coarser.items())} stored numbers, {STORAGE_DRAWS} draws)"
                     if coarser else " (every stored number is float64)"))
        if stored_in_dtype:
            oracle = (f"float64 reading of the stored {dt} numbers: defect {_vs(r64.value, limit64)} = the {dt} "
                      f"tolerance (a stored tensor is what the optimiser's {dt} arithmetic made; float64 removes only "
                      f"the rounding of QᵀQ; float64 tolerance {tol64.value:.3g} + storage allowance {allowance:.3g} "
                      f"would bound only the rounding of exact numbers)")
        head = f"{self.tensor} ({source}) on {M.name}: defect {_vs(r.value, tol.value)} (tolerance, {dt})"
        if base is not None and base["off"]:
            head += f"; the stored base B is itself off O(n): {base['text']}"
        if verdict is Verdict.HOLDS:
            summary = f"{head}; {oracle}"
        elif cls == "structural":
            summary = (f"{head} (structural: {oracle}); {r.witness_text if exceeded else r64.witness_text}")
        else:
            summary = (f"{head} (round-off: the {dt} value is off {M.name} beyond the error model, the float64 copy is "
                       f"not: {oracle}); {r.witness_text}")
        spectrum = torch.tensor(r.spectrum or [r.value], dtype=torch.float64)
        q = torch.quantile(spectrum, torch.tensor([0.5, 0.9, 0.99], dtype=torch.float64))
        return ManifoldMeasurement(
            stage="numeric", verdict=verdict, summary=summary, seconds=time.perf_counter() - start, property=self.name,
            defect=M.defect_latex or self.defect_text, dtype=dt, device=str(T.device), seed=seed, n_inputs=1,
            max_defect=r.value, quantiles={"50%": float(q[0]), "90%": float(q[1]), "99%": float(q[2])},
            worst_input=list(r.witness), tolerance=tol.value, tolerance_formula=tol.formula,
            max_defect_float64=r64.value, tolerance_float64=tol64.value, classification=cls,
            counterexample=ce, counterexample_defect=ce_defect,
            search={"counterexample_dtype": ce_dtype, "tensor": self.tensor, "form": source, "oracle": copy_path(m64),
                    "storage_allowance": allowance, "storage_draws": len(changes), "stored": stored,
                    "calibration_ratio": tol.value / r.value if r.value > 0 else math.inf,
                    "map_error_units": units, "map_error_model": utext, "domain": {},
                    **({"base": base} if base is not None else {})},
            defects_sample=list(r.spectrum), defects_sample_float64=list(r64.spectrum),
            tensor=self.tensor, manifold=M.name, source=source, parts=dict(r.parts), parts_float64=dict(r64.parts),
            witness_text=r.witness_text if verdict is Verdict.HOLDS or exceeded else r64.witness_text,
            storage_allowance=allowance)


# --------------------------------------------------------------------------- along training
FLOAT64_MEANING = {
    "twin": "recomputed in float64 from the raw parameter by the independent twin (verify.derive.parametrisations.twin)",
    "stored": "the stored numbers read exactly in float64 (only the product QᵀQ's rounding is removed)",
    "none": "not meaningful: a parametrisation whose form is unknown has no float64 twin",
}


@dataclass
class DriftRecorder:
    """The defect of one claimed tensor at step 0 and every `every` optimiser steps, as the trainer calls `record`.

    Per recorded iterate: the defect in the model's dtype, the float64 defect (FLOAT64_MEANING; NaN between the points
    of its ~100-step grid, except at an iterate off M, where it classifies the violation), and the tolerance of
    that iterate (the exponential's allowance grows with ‖A‖₂, so it is recomputed). A recorder never raises into the
    trainer: a failure is kept as `error` and the claim's numeric stage reports it (`error`, never `holds`)."""

    prop: "OnManifold"
    every: int
    steps_planned: int
    every64: int = 1  # the float64 value every `every64` steps (and at every iterate off M)
    step: list[int] = field(default_factory=list)
    defect: list[float] = field(default_factory=list)
    defect_float64: list[float] = field(default_factory=list)
    tolerance: list[float] = field(default_factory=list)
    dtype: str = ""
    source: str = ""
    float64_meaning: str = "none"
    seconds: float = 0.0
    error: str | None = None

    def due(self, step: int) -> bool:
        return step % self.every == 0 or step == self.steps_planned

    def record(self, step: int, model: torch.nn.Module) -> None:
        if self.error is not None:
            return
        t0 = time.perf_counter()
        M = self.prop.manifold
        try:
            with torch.no_grad():
                loc = locate(model, self.prop.tensor)
                T = loc.value
                M.validate(tuple(T.shape), self.prop.tensor)
                tol, _, source, _, _, found, _ = self.prop._tolerances(loc, T.dtype)
                if not bool(torch.isfinite(T).all()):
                    d = d64 = math.inf  # not on M, and not measurable: judged `error` (judge_iterates)
                else:
                    d = M.reading(T).value
                    # the float64 value (an expm or solve in float64: 20× the cost of the step's own reading at n = 32)
                    # on a grid of ~100 steps, and wherever the dtype's defect exceeds its tolerance (it classifies that)
                    wanted = step % self.every64 == 0 or step == self.steps_planned or d > tol.value
                    if not wanted:
                        d64 = math.nan
                    elif found is not None:
                        from verify.derive.parametrisations import twin

                        d64, self.float64_meaning = M.reading(twin(found)).value, "twin"
                    elif not loc.params:
                        d64, self.float64_meaning = M.reading(T.detach().to(torch.float64)).value, "stored"
                    else:
                        d64 = math.nan
            self.step.append(int(step))
            self.defect.append(float(d))
            self.defect_float64.append(float(d64))
            self.tolerance.append(float(tol.value))
            self.dtype, self.source = str(T.dtype).replace("torch.", ""), source
        except Exception as exc:  # noqa: BLE001 - kept for the claim's verdict (error), training goes on
            self.error = f"at step {step}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        self.seconds += time.perf_counter() - t0

    def result(self) -> dict[str, Any]:
        """JSON-ready: what the checkpoint record keeps and the claim's numeric stage judges."""
        return {"kind": "on_manifold_drift", "claim": self.prop.name, "tensor": self.prop.tensor,
                "manifold": self.prop.manifold.name, "every": self.every, "steps_planned": self.steps_planned,
                "every_iterate": self.prop.every_iterate, "every_float64": self.every64, "dtype": self.dtype, "source": self.source,
                "float64_meaning": FLOAT64_MEANING[self.float64_meaning], "step": self.step, "defect": self.defect,
                "defect_float64": self.defect_float64, "tolerance": self.tolerance, "seconds": self.seconds,
                "error": self.error}


def drift_numbers(record: Mapping[str, Any]) -> dict[str, Any]:
    """Where the tensor left M (the first recorded step whose defect exceeds that step's tolerance) and how fast it
    drifts: the least-squares slope of log10(defect) against the step, in decades per 1000 steps, over the iterates
    whose defect is not exactly 0 (an exactly orthogonal start has no logarithm)."""
    steps = [int(s) for s in record.get("step", [])]
    d = [float(v) for v in record.get("defect", [])]
    tol = [float(v) for v in record.get("tolerance", [])]
    out: dict[str, Any] = {"every": record.get("every"), "points": len(steps), "left_at": None, "slope": math.nan,
                           "first": math.nan, "last": math.nan, "max": math.nan, "max_step": None, "worst_ratio": math.nan,
                           "worst_step": None}
    if not steps:
        out["text"] = "no iterate recorded"
        return out
    finite = [i for i, v in enumerate(d) if math.isfinite(v)]
    over = [i for i in range(len(d)) if not (d[i] <= tol[i])]  # a NaN or inf defect counts as off M
    out["left_at"] = steps[over[0]] if over else None
    out["first"], out["last"] = d[0], d[-1]
    if finite:
        j = max(finite, key=lambda i: d[i])
        out["max"], out["max_step"] = d[j], steps[j]
        k = max(finite, key=lambda i: d[i] / tol[i] if tol[i] > 0 else math.inf)
        out["worst_ratio"], out["worst_step"] = d[k] / tol[k] if tol[k] > 0 else math.inf, steps[k]
    positive = [i for i in finite if d[i] > 0]  # an exactly orthogonal start (defect 0) has no logarithm: left out
    if len(positive) >= 2:
        xs = [steps[i] for i in positive]
        ys = [math.log10(d[i]) for i in positive]
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        sxx = sum((x - mx) ** 2 for x in xs)
        out["slope"] = 1000 * sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx > 0 else math.nan
    where = (f"left M at step {out['left_at']} (defect {d[steps.index(out['left_at'])]:.3g} > tolerance "
             f"{tol[steps.index(out['left_at'])]:.3g})" if out["left_at"] is not None
             else f"every recorded iterate within its tolerance (worst defect/tolerance {out['worst_ratio']:.3g} at step "
                  f"{out['worst_step']})")
    out["text"] = (f"defect {out['first']:.3g} at step {steps[0]} → {out['last']:.3g} at step {steps[-1]} (max "
                   f"{out['max']:.3g} at step {out['max_step']}), log10 slope {out['slope']:.3g} decades per 1000 steps; "
                   f"{where}")
    return out


def judge_iterates(prop: "OnManifold", m: "ManifoldMeasurement", record: Mapping[str, Any] | None,
                   start: float) -> Any:
    """The verdict of a claim about every optimiser iterate (OnManifold(..., every_iterate=True)).

    Rule: `holds` only if the drift record is present and complete (steps 0, 1, …, N: every iterate the trainer made),
    every recorded defect is finite and within that iterate's tolerance, and the trained tensor's own measurement holds.
    `violated` if some iterate's defect exceeds its tolerance (the first such step is where it left M; structural when the
    float64 value of that iterate is beyond the tolerance as well, round-off when only the dtype's value is), or the
    trained tensor is violated. `error` if the record is missing (a module passed as model=..., a checkpoint saved without
    it), the recorder failed, the record has gaps, or an iterate is not finite. Never `holds` without the record."""
    def error(summary: str, expected: str, fix: str) -> Failure:
        return Failure(stage="numeric", verdict=Verdict.ERROR, seconds=time.perf_counter() - start,
                       summary=f"{prop.name}: {summary}", expected=expected, fix=fix)

    if record is None:
        return error("no drift record: the claim is about every optimiser iterate, and this model came without the "
                     "record of its training (a module passed as model=..., a checkpoint saved without 'records', or "
                     "a claim passed to check() that is not among the architecture's declared claims: the trainer "
                     "records the declared ones)",
                     "a model trained by the verifier, whose trainer records the tensor's defect at every step",
                     "let check() train the architecture (or `verify train NAME` to write a checkpoint with the record)")
    if record.get("error"):
        return error(f"the drift recorder failed {record['error']}", "a tensor the recorder can read at every step",
                     "fix the tensor name or shape the message names")
    steps = [int(s) for s in record.get("step", [])]
    planned = int(record.get("steps_planned", -1))
    if planned < 1 or steps != list(range(planned + 1)):
        gaps = sorted(set(range(max(planned, 0) + 1)) - set(steps))
        return error(f"the drift record is incomplete: {len(steps)} iterates recorded of the {planned + 1} the training "
                     f"made (missing steps {gaps[:5]}{' …' if len(gaps) > 5 else ''})",
                     "steps 0, 1, …, N: every iterate", "retrain (the record is written by the trainer at every step)")
    d = [float(v) for v in record["defect"]]
    d64 = [float(v) for v in record["defect_float64"]]
    tol = [float(v) for v in record["tolerance"]]
    bad = [i for i, v in enumerate(d) if not math.isfinite(v)]
    if bad:
        return error(f"iterate {steps[bad[0]]} is not finite (NaN or inf entries): its defect cannot be measured",
                     "finite iterates", "lower the learning rate; find where training diverged")
    nums = drift_numbers(record)
    search = {**m.search, "drift": nums, "iterate_rule": "every recorded iterate (steps 0..N) within its tolerance, "
                                                         "and the trained tensor's measurement holds"}
    over = [i for i in range(len(d)) if d[i] > tol[i]]
    if not over:
        summary = (f"every one of the {len(steps)} iterates (steps 0..{planned}) lies on {prop.manifold.name} within its "
                   f"tolerance: {nums['text']}; trained tensor: {m.summary}" if m.verdict is Verdict.HOLDS else
                   f"the {len(steps)} recorded iterates are within their tolerances ({nums['text']}), but the trained "
                   f"tensor's measurement is not: {m.summary}")
        k = max(range(len(d)), key=lambda j: d[j] / tol[j] if tol[j] > 0 else math.inf)
        worst = {}
        if tol[k] > 0 and m.tolerance > 0 and d[k] / tol[k] > m.max_defect / m.tolerance:
            # the claim is about every iterate: its headline numbers are the worst iterate's (defect / tolerance)
            worst = {"max_defect": d[k], "tolerance": tol[k]}
            # and so is its calibration ratio (tolerance / observed defect): the trained tensor alone can read 0 (an
            # exactly normalised vector) where an iterate read one ulp
            search["calibration_ratio"] = tol[k] / d[k] if d[k] > 0 else math.inf
        return dataclasses.replace(m, summary=summary, search=search, seconds=time.perf_counter() - start, **worst)
    i = over[0]
    structural = math.isfinite(d64[i]) and d64[i] > tol[i]
    cls = "structural" if structural else "round-off"
    k = max(range(len(d)), key=lambda j: d[j] / tol[j] if tol[j] > 0 else math.inf)
    summary = (f"{prop.tensor} left {prop.manifold.name} at step {steps[i]}: defect {_vs(d[i], tol[i])} (tolerance, "
               f"{record.get('dtype')}), float64 {d64[i]:.3g} ({cls}: "
               f"{'the float64 value is off M too' if structural else 'the float64 value is on M'}); "
               f"{len(over)} of {len(steps)} iterates off M; {nums['text']}")
    # the counterexample of a claim about iterates is an iterate: the optimiser step of the worst one (largest
    # defect/tolerance), in the record's dtype; where the tensor first left M is `left_at` in search["drift"]
    search.update(counterexample_dtype=record.get("dtype", m.dtype),
                  counterexample_kind=f"[optimiser step] of the worst iterate (first off M: step {steps[i]})")
    return dataclasses.replace(m, verdict=Verdict.VIOLATED, summary=summary, classification=cls, search=search,
                               max_defect=d[k], tolerance=tol[k], max_defect_float64=d64[k],
                               counterexample=[float(steps[k])], counterexample_defect=d[k],
                               seconds=time.perf_counter() - start)


__all__ = ["OnManifold", "DriftRecorder", "drift_numbers", "judge_iterates", "ManifoldMeasurement", "locate", "available_tensors", "Stiefel", "SO", "Sphere", "SPD"]
