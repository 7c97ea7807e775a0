"""The property protocol: what every property provides, and the map-property base (defect + tolerance model)."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from verify.derive.symbolic import Traced

if TYPE_CHECKING:
    from verify.declare.claims import Claim
    from verify.checking.domains import Domain
    from verify.evidence import Evidence
    from verify.declare.subject import Settings, Subject
    from verify.checking.matrix_free import Plan


@dataclass(frozen=True)
class Tolerance:
    """A tolerance with the error model that produced it, printed beside every defect."""

    value: float
    formula: str

    def __str__(self) -> str:
        return f"{self.value:.3g} ({self.formula})"


HALF_PRECISION = (torch.float16, torch.bfloat16)


def eps(dtype: torch.dtype) -> float:
    return float(torch.finfo(dtype).eps)


class Probe:
    """A model evaluated on a batch of inputs; Jacobians are computed once, on demand, batched.

    `strict` (the default) refuses non-finite values with a message; the search engine probes with
    strict=False, so that an overflow far out becomes a NaN defect it can report rather than an exception.
    """

    def __init__(self, model: torch.nn.Module, x: torch.Tensor, strict: bool = True) -> None:
        self.model = model
        self.x = x
        self.strict = strict
        self._y: torch.Tensor | None = None
        self._J: torch.Tensor | None = None
        self._cache: dict[Any, Any] = {}

    def call(self, x: torch.Tensor, method: str = "forward") -> torch.Tensor:
        from verify.checking.numeric import forward

        return forward(self.model, x, method=method, strict=self.strict)

    @property
    def y(self) -> torch.Tensor:
        if self._y is None:
            self._y = self.call(self.x)
        return self._y

    @property
    def J(self) -> torch.Tensor:
        if self._J is None:
            from verify.checking.numeric import batched_jacobian

            J = batched_jacobian(self.model, self.x, strict=self.strict)
            # torch.linalg has no half-precision kernels (norms, det, cond, eigvals): the Jacobian the model's own
            # dtype produced is widened to float32 for the defect's linear algebra; the tolerance stays the model's
            self._J = J.float() if J.dtype in HALF_PRECISION else J
        return self._J

    # -- matrix-free operations (verify/checking/matrix_free.py) ----------------------------------------------------
    # Every Jacobian property asks the probe, not J: below Policy.full_max_dim the answers come from the full J (the
    # historical numbers, unchanged); above it from Jacobian-vector products, with memory linear in n (log|det J|:
    # J assembled in column blocks, n² per input, while the plan says it is affordable).
    @property
    def n(self) -> int:
        return int(self.x.shape[-1])

    def plan(self, kind: str) -> "Plan":
        """The method `kind` of Jacobian work takes on this batch (chosen before computing; MemoryRefused if none fits)."""
        from verify.checking import matrix_free as mf

        key = ("plan", kind)
        if key not in self._cache:
            self._cache[key] = mf.plan(kind, self.n, self.x.dtype, self.x.device, graph=self.x.requires_grad)
        return self._cache[key]

    def full(self, kind: str) -> bool:
        return self.plan(kind).method == "full"

    def jvp(self, v: torch.Tensor) -> torch.Tensor:
        """J_f(x_i)·v_i per input (v: (B, n), or (B, k, n) for k tangents per input)."""
        from verify.checking import matrix_free as mf

        return mf.jvp(self.model, self.x, v)

    def vjp(self, w: torch.Tensor) -> torch.Tensor:
        """J_f(x_i)ᵀ·w_i per input (shapes as jvp)."""
        from verify.checking import matrix_free as mf

        return mf.vjp(self.model, self.x, w)

    def _chunks(self, kind: str) -> list[slice]:
        at_once = self.plan(kind).inputs_at_once
        B = int(self.x.shape[0])
        return [slice(i, min(i + at_once, B)) for i in range(0, B, at_once)]

    def _linearization(self, sl: slice) -> Any:
        """J at the inputs of one chunk as products (one forward, shared by the symplectic and the norm runs)."""
        from verify.checking import matrix_free as mf

        key = ("lin", sl.start, sl.stop)
        if key not in self._cache:
            self._cache[key] = mf.Linearization(self.model, self.x[sl])
        return self._cache[key]

    def _linear_dtype(self) -> torch.dtype:
        return torch.float32 if self.x.dtype in HALF_PRECISION else self.x.dtype

    def _exact(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(sign, log|det J|, max(1, κ̂₂)) from J assembled in column blocks, as many inputs at a time as fit."""
        from verify.checking import matrix_free as mf

        if "exact" not in self._cache:
            pol = mf.policy()
            signs, logs, kappas = [], [], []
            for sl in self._chunks(mf.LOGDET):
                J = mf.jacobian_blocks(self.model, self.x[sl], min(pol.block, self.n)).to(self._linear_dtype())
                sign, logabs = torch.linalg.slogdet(J)
                signs.append(sign), logs.append(logabs)
                # κ̂₂ from Lanczos on JᵀJ with J in hand (products are O(n²) here, far cheaper than an SVD's O(n³))
                kappas.append(_kappa_scale(lambda v, J=J: (J.transpose(-1, -2) @ (J @ v.unsqueeze(-1))).squeeze(-1),
                                           J.shape[0], self.n, J.dtype, J.device, pol))
            self._cache["exact"] = (torch.cat(signs), torch.cat(logs), torch.cat(kappas))
        return self._cache["exact"]

    def slogdet(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(sign, log|det J|) per input: torch.linalg.slogdet of the full J, or of J assembled in column blocks."""
        from verify.checking import matrix_free as mf
        from verify.errors import InputError

        pl = self.plan(mf.LOGDET)
        if pl.method == "full":
            return torch.linalg.slogdet(self.J)
        if pl.method == "exact":
            sign, logabs, _ = self._exact()
            return sign, logabs
        raise InputError(f"log|det J| at n={self.n}", pl.method, "an exact method (no sound bound exists for the "
                         "estimate at this size)", pl.statement)

    def condition(self) -> torch.Tensor:
        """max(1, κ₂(J)) per input (the round-off amplification of det and inverse); above full size a Lanczos estimate
        κ̂₂ ≤ κ₂, so dividing by it never excuses more than the exact κ₂ would (condition_scale's rules apply)."""
        from verify.checking import matrix_free as mf

        if self.full(mf.CONDITION):
            return condition_scale(self.J)
        if self.plan(mf.LOGDET).method == "exact" and "exact" in self._cache:
            return self._cache["exact"][2]
        if "kappa" not in self._cache:
            pol = mf.policy()
            parts = []
            for sl in self._chunks(mf.CONDITION):
                x = self.x[sl]
                lin = self._linearization(sl)  # one forward, re-used by every product of the run
                parts.append(_kappa_scale(lambda v, lin=lin: lin.vjp(lin.jvp(v)),
                                          int(x.shape[0]), self.n, self._linear_dtype(), x.device, pol))
            self._cache["kappa"] = torch.cat(parts)
        return self._cache["kappa"]

    def norm2(self) -> torch.Tensor:
        """‖J‖₂ per input: exact from the full J, else the largest Lanczos Ritz value of JᵀJ (never above ‖J‖₂)."""
        from verify.checking import matrix_free as mf

        if self.full(mf.CONDITION):
            return torch.linalg.matrix_norm(self.J, ord=2)
        if "norm2" not in self._cache:
            pol = mf.policy()
            parts = []
            for sl in self._chunks(mf.CONDITION):
                x = self.x[sl]
                lin = self._linearization(sl)
                v0 = mf.start_vectors(int(x.shape[0]), self.n, self._linear_dtype(), x.device, pol.seed + 1)
                theta = mf.lanczos(lambda v, lin=lin: lin.vjp(lin.jvp(v)), v0, pol.condition_steps)
                parts.append(theta[..., -1].clamp_min(torch.finfo(theta.dtype).tiny).sqrt())
            self._cache["norm2"] = torch.cat(parts)
        return self._cache["norm2"]

    def symplectic_norm(self, factor: float = 1.0) -> torch.Tensor:
        """‖JᵀΩJ − factor·Ω‖₂ per input, as the upper confidence bound σ̂/√(1−ε) of k Lanczos steps on RᵀR (P(true norm
        above it) ≤ Policy.confidence per input, Kuczyński–Woźniakowski); exact spectral norm from the full J. `factor`
        is the conformal factor e^{−γh} of ConformalSymplectic (1: symplectic)."""
        from verify.checking import matrix_free as mf

        if self.full(mf.SYMPLECTIC):
            n = self.n
            d = n // 2
            om = torch.zeros(n, n, dtype=self.J.dtype, device=self.J.device)
            om[:d, d:] = torch.eye(d, dtype=om.dtype, device=om.device)
            om[d:, :d] = -torch.eye(d, dtype=om.dtype, device=om.device)
            return torch.linalg.matrix_norm(self.J.transpose(-1, -2) @ om @ self.J - factor * om, ord=2)
        key = ("symplectic", factor)
        if key not in self._cache:
            pol = mf.policy()
            d = self.n // 2

            def omega(v: torch.Tensor) -> torch.Tensor:
                return torch.cat([v[..., d:], -v[..., :d]], dim=-1)

            parts = []
            k = min(pol.lanczos_steps, self.n)
            eps_kw = min(mf.kw_epsilon(self.n, k, pol.confidence), 0.75)
            for sl in self._chunks(mf.SYMPLECTIC):
                x = self.x[sl]
                lin = self._linearization(sl)

                def residual(v: torch.Tensor, lin: Any = lin) -> torch.Tensor:  # R·v = Jᵀ(Ω·J·v) − factor·Ω·v
                    return lin.vjp(omega(lin.jvp(v))) - factor * omega(v)

                v0 = mf.start_vectors(int(x.shape[0]), self.n, self._linear_dtype(), x.device, pol.seed)
                theta = mf.lanczos(lambda v: -residual(residual(v)), v0, k)  # RᵀR = −R² (R is antisymmetric)
                sigma = theta[..., -1].clamp_min(torch.finfo(theta.dtype).tiny).sqrt()
                parts.append(sigma / math.sqrt(1.0 - eps_kw))
            self._cache[key] = torch.cat(parts)
        return self._cache[key]


def _kappa_scale(matvec: Any, B: int, n: int, dtype: torch.dtype, device: torch.device, pol: Any) -> torch.Tensor:
    """max(1, κ̂₂) from Lanczos on JᵀJ: the Ritz values lie inside [λ_min, λ_max], so κ̂ = √(θ_max/θ_min) ≤ κ₂; where
    θ_min is not positive or κ̂ is beyond 1/eps the scale is 1 (as condition_scale: nothing is excused there)."""
    from verify.checking import matrix_free as mf

    v0 = mf.start_vectors(B, n, dtype, device, pol.seed + 1)
    theta = mf.lanczos(matvec, v0, pol.condition_steps)
    lo, hi = theta[..., 0], theta[..., -1]
    kappa = (hi / lo).sqrt()
    ok = (lo > 0) & torch.isfinite(kappa) & (kappa <= 1.0 / eps(dtype))
    return torch.where(ok, kappa.clamp_min(1.0), torch.ones_like(hi))


# how a symbolic stage that had no form to work on begins its summary (an `undecided` that is not a timeout: the claim
# is judged numerically only)
NO_FORM = "no symbolic form"

GENERATED_TIME_LIMIT = 5.0  # seconds per layer obligation for twins generated from the code (torch.fx)

Region = tuple  # (low corner, high corner) of the set where a claim is made; None: everywhere


@dataclass(frozen=True)
class Property:
    """A mathematical structure a model can have, behind one small protocol that the engine calls.

    * `symbolic(subject)`: exact evidence from the architecture's symbolic form (or None when there is none);
    * `numeric(subject, domain, settings)`: evidence from the trained model, searched over a domain;
    * `domain(subject)`: where the claim is made and how its inputs are drawn.

    `dim`, when given, is the phase-space dimension the claim is about; the checker refuses a model of
    another dimension rather than guess. `where` restricts the claim to a box (low, high); the default,
    None, claims it everywhere, so the search grows outward from the data. `within` states the size of
    defect the claim allows (a network trained to be approximately symplectic, say); by default only
    round-off is allowed, with the tolerance derived from the property's error model.
    """

    def __post_init__(self) -> None:
        from verify.errors import InputError

        if self.within is not None:
            ok = isinstance(self.within, (int, float)) and not isinstance(self.within, bool) and 0 < self.within < float("inf")
            if not ok:
                raise InputError(f"{self.name}(within=...)", self.within, "a positive finite number (the defect the claim allows)",
                                 f"write {self.name}(within=1e-4), or leave within out to allow round-off only")

    dim: int | None = None
    where: Region | None = None
    within: float | None = None  # a tolerance the claim states ("symplectic to within 1e-4"); None: round-off only

    name: ClassVar[str] = "property"
    statement: ClassVar[str] = ""  # LaTeX of what is claimed, for every x and every parameter
    obligation: ClassVar[str] = ""  # LaTeX of the per-layer identity that is reduced to 0
    lemma: ClassVar[str] = ""  # why the layer lemmas lift to the network (closure under composition)
    defect_text: ClassVar[str] = ""  # LaTeX of the normalised numeric defect
    needs_inverse: ClassVar[bool] = False
    # the Jacobian work the numeric defect needs (verify/checking/matrix_free.py: "symplectic", "logdet", "condition"),
    # None when it needs no Jacobian: the numeric stage plans the method, and scales the search to its cost, from it
    jacobian_kind: ClassVar[str | None] = None
    # a property whose proof is bound to the code by the property itself (its Proof carries bound_by), so the engine's
    # binding of map twins over input domains does not apply to it (OnManifold: a tensor, no inputs)
    binds_itself: ClassVar[bool] = False

    # -- the protocol -----------------------------------------------------------
    def symbolic(self, subject: "Subject") -> "Evidence | None":
        """Exact evidence for the claim on this subject, or None when it has no symbolic form."""
        return None

    def numeric(self, subject: "Subject", domain: "Domain | None", settings: "Settings") -> "Evidence":
        """Evidence from the trained model over `domain`; never raises on a bad model (returns a Failure)."""
        raise NotImplementedError

    def domain(self, subject: "Subject") -> "Domain | None":
        """Where the claim is made: by default the task's data box, grown outward and clipped to `where`."""
        from verify.checking.domains import Box

        task, dim = subject.task, subject.dim
        if task is not None and hasattr(task, "low"):
            low, high = list(task.low), list(task.high)
        elif dim is not None:
            low, high = [-1.0] * dim, [1.0] * dim
        else:
            return None
        region = None if self.where is None else (tuple(self.where[0]), tuple(self.where[1]))
        return Box(low, high, region=region)

    # -- claims ---------------------------------------------------------------
    def falsely(self, reason: str) -> "Claim":
        """This property as a claim that is known to be false (a negative control)."""
        from verify.declare.claims import Claim

        if not reason:
            raise ValueError("reason='' : a negative control must say why its claim is false")
        return Claim(self, expected=False, reason=reason)

    def options(self) -> list[str]:
        """A subclass's own non-default options, as `name=value` texts for str(claim) (after dim, where, within)."""
        return []

    def __str__(self) -> str:
        extra = [] if self.dim is None else [f"dim={self.dim}"]
        if self.where is not None:
            extra.append(f"where={list(self.where[0])}..{list(self.where[1])}")
        if self.within is not None:
            extra.append(f"within={self.within:g}")
        extra += self.options()
        return self.name if not extra else f"{self.name}({', '.join(extra)})"


class MapProperty(Property):
    """A property of a map Rⁿ → Rⁿ judged by a per-input defect (Jacobian identities, round trips, ...).

    Symbolic stage: the scheme the network declares, else the per-layer obligation on its symbolic blocks.
    Numeric stage: the one search engine over the claim's domain, with a float64 oracle.
    """

    # -- what a map property defines --------------------------------------------
    def exact_residual(self, traced: Traced) -> dict[str, Any]:
        """Non-zero entries of the residual of the obligation, by position (empty: proved)."""
        raise NotImplementedError

    def float_residual(self, traced: Traced) -> float:
        """Largest |entry| of the residual on a concrete (float) instance of the block."""
        raise NotImplementedError

    def defects(self, probe: Probe) -> torch.Tensor:
        """Normalised defect per input, shape (B,), in the model's dtype."""
        raise NotImplementedError

    def tolerance(self, dtype: torch.dtype, dim: int, depth: int) -> Tolerance:
        """The round-off tolerance of the property's error model."""
        raise NotImplementedError

    def claimed_tolerance(self, dtype: torch.dtype, dim: int, depth: int) -> Tolerance:
        """What the numeric stage holds the model to: the claim's own `within=` where it states one (in every dtype,
        the float64 oracle included: a structural defect below it is what the claim allows), else round-off."""
        derived = self.tolerance(dtype, dim, depth)
        if self.within is None:
            return derived
        return Tolerance(float(self.within), f"stated by the claim: within={self.within:g} (round-off alone would allow "
                                             f"{derived.value:.3g}: {derived.formula})")

    def diagnose(self, model: torch.nn.Module, x: torch.Tensor) -> str:
        """A sentence on what a violation at input x is (e.g. "det J = −1: orientation reversed"), or ""."""
        return ""

    # -- the protocol -----------------------------------------------------------
    def symbolic(self, subject: "Subject") -> "Evidence | None":
        found = self._exact(subject)
        if found is not None and self.within is not None and found.verdict.value == "violated":
            # the exact identity fails, but the claim is approximate: a non-zero residual does not refute
            # "within ε"; the trained model's measured defect (numeric stage) decides
            from verify.evidence import Verdict

            found = dataclasses.replace(found, verdict=Verdict.UNDECIDED, summary=(
                f"not exact: {found.summary}; the claim states within={self.within:g}, so the numeric stage decides"))
        return found

    def _exact(self, subject: "Subject") -> "Evidence | None":
        from verify.derive.proofs import derive, derive_scheme

        if type(self).exact_residual is MapProperty.exact_residual:
            return None  # a numeric-only property (it defines no obligation): no symbolic stage, and the report says so

        if subject.scheme is not None:
            found = derive_scheme(self, subject.scheme, subject.time_limit)
            if found is not None:
                return found
        if not subject.blocks and subject.notes.get("untraceable"):
            from verify.evidence import Failure, Verdict

            return Failure(stage="symbolic", verdict=Verdict.UNDECIDED,
                           summary=f"{NO_FORM}: none is declared and the forward could not be generated from the "
                                   f"code ({subject.notes['untraceable']}); the claim is checked numerically only",
                           expected="a forward made of operations the symbolic algebra knows, or a declared twin",
                           fix="declare blocks=... (a hand-written twin) or accept the numeric verdict")
        limit = subject.time_limit
        if subject.notes.get("layers_how", "").startswith("twin generated"):
            # a twin generated from a monolithic forward can be far larger than a declared per-layer block: give it a
            # shorter limit, so that an intractable one costs seconds, not the whole limit (it ends `undecided`)
            limit = min(limit, GENERATED_TIME_LIMIT)
            found = derive(self, subject.blocks, limit)
            if found is not None and found.verdict.value == "proved":
                # a generated twin carries the code's own activations (tanh' = 1 − tanh², ...), not abstract ones
                found = dataclasses.replace(found, summary=found.summary.replace(
                    "for any activation and any parameters",
                    "for the activations the code uses and any parameters (twin generated from the code)"))
            return found
        return derive(self, subject.blocks, limit)

    def numeric(self, subject: "Subject", domain: "Domain | None", settings: "Settings") -> "Evidence":
        from verify.evidence import Failure, Verdict
        from verify.checking.numeric import measure

        if subject.dim is None or domain is None:
            return Failure(stage="numeric", verdict=Verdict.ERROR, summary="dim=None: the phase-space dimension is unknown",
                           expected="dim=... or a claim with dim", fix="pass dim=n to check()")
        return measure(self, subject.model, dim=subject.dim, depth=subject.depth, domain=domain,
                       seed=settings.seed, budget=settings.budget)


# -- the round-off law of the Jacobian properties (Symplectic, VolumePreserving, LogDet) ---------------------------------
# (L + λ·√n)·eps, derived from the computation, with λ measured (benchmarks/error_model.py: every registered genuine
# model with these claims over 3 seeds, random correct models at n = 4 … 64 over 8 seeds, and the wide benchmark maps at
# n = 256 … 4096, in float32 near the data and in the float64 oracle at every scale the search visits):
# * L: J (or J·v, Jᵀ·w) by autograd through L layers; each layer's product rounds once, relative to its size, so J
#   carries ~L·eps relative error (coefficient 1: no measured model needed more);
# * λ·√n: the linear algebra done on J itself, inner products of length n whose error is λ·√n·eps with high probability
#   (Higham & Mary 2019, probabilistic rounding-error analysis), not the worst case n·eps. JᵀΩJ: λ = 2 (two products);
#   LU for det J and log|det J|: λ = 8 (the pivots' growth and the sum of n log-pivots, measured: the trained FPUT
#   chain at 2d = 64 reaches 30·eps in the float64 oracle far from the data, random additive couplings at n = 64
#   23·eps at |x| = 1000, zuko's spline flow 7.3·eps at n = 2, L = 4); on the matrix-free symplectic path no product over J's
#   n² entries is formed (Ω only permutes and negates), so there is no √n term;
# * the defects' normalisations absorb the sizes: ‖J‖₂² (Symplectic), κ₂(J) (det, log|det J|: a backward error η·‖J‖
#   moves log|det J| by at most ~η·κ₂), 1 + |log|det J|| (a reported sum of layer log-scales).
# The previous law, 4·(L+n)·eps (a worst-case n·eps per coordinate), sat 50–3000× above what genuine models measure at
# n ≥ 64: a structural defect below it passed.
LAMBDA_SYMPLECTIC = 2.0  # JᵀΩJ − Ω from full Jacobians
LAMBDA_DET = 8.0  # det J and log|det J| by LU (full J, or J assembled in blocks)


def jacobian_tolerance(kind: str, dtype: torch.dtype, dim: int, depth: int) -> Tolerance:
    """The round-off tolerance of a Jacobian property's normalised defect: `kind` is the property's jacobian_kind
    ("symplectic": JᵀΩJ − Ω; "logdet": det J and log|det J|); the path (full Jacobians or matrix-free) is the one the
    policy in force takes at this n (verify/checking/matrix_free.full_jacobians), as the defect's."""
    from verify.checking import matrix_free as mf

    e, L, n = eps(dtype), depth, dim
    if kind == mf.SYMPLECTIC and not mf.full_jacobians(n):
        pol = mf.policy()
        eps_r = min(mf.kw_epsilon(n, min(pol.lanczos_steps, n), pol.confidence), 0.75)
        eps_j = min(mf.kw_epsilon(n, min(pol.condition_steps, n), pol.confidence), 0.75)
        inflate = 1.0 / (math.sqrt(1.0 - eps_r) * (1.0 - eps_j))
        return Tolerance(L * e * inflate, (
            f"L·eps/(√(1−ε_R)·(1−ε_J)) = {L}·{e:.3g}·{inflate:.3g}: matrix-free, R·v = Jᵀ(Ω·J·v) − Ω·v from products "
            f"through the L layers, each rounding once per layer (~L·eps·‖J‖·‖v‖); Ω only permutes and negates, so no "
            f"inner product over J's entries is formed (no √n term), and R's round-off ~L·eps·‖J‖₂² is divided out by "
            f"‖J‖₂²; the defect reports the Lanczos upper confidence bound σ̂/√(1−ε_R) (ε_R = {eps_r:.3g}) and divides "
            f"by a Lanczos ‖J‖₂² ≥ (1−ε_J)·‖J‖₂² (ε_J = {eps_j:.3g}, except with probability {pol.confidence:g}), "
            f"which inflate round-off as they inflate a defect (benchmarks/error_model.py: genuine maps measure "
            f"≤ 0.45·eps at n = 256 … 4096)"))
    lam = LAMBDA_SYMPLECTIC if kind == mf.SYMPLECTIC else LAMBDA_DET
    value = (L + lam * math.sqrt(n)) * e
    if kind == mf.SYMPLECTIC:
        why = ("J by autograd through L layers, one rounding per layer (~L·eps per entry); JᵀΩJ's inner products of "
               f"length n add λ·√n·eps (Higham–Mary's probabilistic bound, not the worst case n·eps), λ = {lam:g} for "
               "its two products; both relative to ‖J‖₂², which the defect divides out")
    else:
        why = ("J by autograd through L layers, one rounding per layer (~L·eps per entry); its LU a backward error "
               f"λ·√n·eps·‖J‖ (Higham–Mary's probabilistic bound, not the worst case n·eps; λ = {lam:g} covers the "
               "pivots' growth and the sum of n log-pivots, measured); det J and log|det J| then move by "
               "~(L+λ√n)·eps·κ₂(J), absorbed by the defect's division by max(1, κ₂) (and by 1+|log|det J|| for a "
               "reported sum of layer log-scales); above full size κ₂ is a Lanczos estimate ≤ κ₂, which can only "
               "enlarge a defect (toward refuting, never excusing)")
    return Tolerance(value, f"(L+λ√n)·eps = ({L}+{lam:g}·√{n})·{e:.3g}: {why} (benchmarks/error_model.py)")


def safety_factor() -> float:
    # A dot product of length k computed in floating point has relative error below
    # k*eps (Higham, Thm 3.1); we add one such bound per layer and per coordinate
    # and multiply by 4 for the two products in J^T Ω J and the autograd passes.
    return 4.0


def depth_dim_tolerance(dtype: torch.dtype, dim: int, depth: int, extra: str = "") -> Tolerance:
    """The worst-case law 4·(L+n)·eps, kept for StableStep (eigenvalues of a Jacobian: not the law measured for the
    Jacobian identities, see jacobian_tolerance)."""
    c = safety_factor()
    value = c * (depth + dim) * eps(dtype)
    return Tolerance(value, f"{c:g}·(L+n)·eps = {c:g}·({depth}+{dim})·{eps(dtype):.3g}{extra}")


def condition_scale(J: torch.Tensor) -> torch.Tensor:
    """max(1, κ₂(J)) per matrix, as the amplification of round-off in det and inverse.

    Where κ₂ is infinite or beyond 1/eps the computed quantity has no correct digit
    left, so dividing by κ would hide anything; the scale falls back to 1 there and
    the defect is judged unnormalised (a singular Jacobian is then caught, not excused).
    """
    # a scale, not differentiated: a J that carries the parameters' graph makes linalg.cond record a full SVD for
    # backward (256 Jacobians of 64×64: 12 s instead of 0.18 s)
    cond = torch.linalg.cond(J.detach())
    limit = 1.0 / eps(J.dtype)
    ok = torch.isfinite(cond) & (cond <= limit)
    return torch.where(ok, cond.clamp_min(1.0), torch.ones_like(cond))

