"""The matrix-free numeric stage (verify/checking/matrix_free.py): the same defects as full Jacobians where both run,
planted violations confined to one coordinate refuted at large n, correct large models never refuted, and the
memory estimate refusing (with its numbers) rather than crashing."""
import math

import pytest
import torch

from verify.checking import matrix_free as mf
from verify.checking.domains import Box
from verify.checking.numeric import measure
from verify.evidence import Verdict
from verify.models.wide_maps import BrokenInverse, CouplingFlow, NonSymplecticBlock, ScaledCoordinate, sympnet
from verify.properties import Invertible, Symplectic, VolumePreserving
from verify.properties.base import Probe
from verify.properties.log_det import LogDet
from verify.properties.symplectic import omega_matrix

FAST = dict(seconds=3.0)  # the cost-aware budget's time per check in these tests (the default is 40 s)


def check(prop, model, n, seed=0):
    with mf.using(**FAST):
        return measure(prop, model.eval(), dim=n, depth=4, domain=Box([-1.0] * n, [1.0] * n), seed=seed)


# -- agreement with full Jacobians (forced method at small n) ------------------------------------------------------
@pytest.mark.parametrize("delta", [0.0, 1e-3])
def test_symplectic_norm_matches_the_full_jacobian(delta):
    n = 8
    m = NonSymplecticBlock(sympnet(n, width=16, seed=1), delta, k=2).double()
    x = torch.randn(6, n, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    J = Probe(m, x).J
    om = omega_matrix(n, J.dtype, J.device)
    exact = torch.linalg.matrix_norm(J.transpose(-1, -2) @ om @ J - om, ord=2)
    exact = exact / torch.linalg.matrix_norm(J, ord=2).square().clamp_min(1.0)
    with mf.using(method="matrix-free"):
        p = Probe(m, x)
        assert p.plan(mf.SYMPLECTIC).method == "lanczos"
        got = Symplectic().defects(p)
    # k ≥ n: the Krylov space is the whole space, the Ritz values are the eigenvalues and ε = 0
    assert torch.allclose(got, exact, rtol=1e-6, atol=1e-15), (got, exact)
    full = Symplectic().defects(Probe(m, x))  # max|R_ij| ≤ ‖R‖₂: the matrix-free reading is never the smaller
    assert bool((full <= got * (1 + 1e-9) + 1e-15).all())


@pytest.mark.parametrize("prop,build", [
    (VolumePreserving(), lambda: ScaledCoordinate(CouplingFlow(12, width=8, seed=2), 1e-3, k=3)),
    (Invertible(), lambda: BrokenInverse(CouplingFlow(12, width=8, seed=3), 1e-4, k=5)),
    (LogDet(), lambda: ScaledCoordinate(CouplingFlow(12, width=8, affine=True, seed=4), 1e-3, honest_log_det=False)),
    (LogDet(), lambda: CouplingFlow(12, width=8, affine=True, seed=4)),
])
def test_logdet_and_condition_match_the_full_jacobian(prop, build):
    m = build().double().eval()
    x = torch.randn(5, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    full = prop.defects(Probe(m, x)).detach()
    with mf.using(method="matrix-free"):
        p = Probe(m, x)
        assert p.plan(mf.LOGDET).method == "exact" and p.plan(mf.CONDITION).method == "lanczos"
        got = prop.defects(p).detach()
    # J assembled from products equals vmap(jacrev)'s; κ̂₂ from 12 ≥ n Lanczos steps is κ₂
    assert torch.allclose(got, full, rtol=1e-6, atol=1e-13), (got, full)


def test_lanczos_ritz_value_is_a_lower_bound_within_the_stated_factor():
    n, k, delta = 400, 20, 1e-3
    gen = torch.Generator().manual_seed(5)
    A = torch.randn(n, n, generator=gen, dtype=torch.float64)
    A = A @ A.T / n
    lam = torch.linalg.eigvalsh(A)[-1]
    v0 = mf.start_vectors(8, n, torch.float64, torch.device("cpu"), seed=3)
    theta = mf.lanczos(lambda v: v @ A, v0, k)[:, -1]
    eps = mf.kw_epsilon(n, k, delta)
    assert 0 < eps < 0.2
    assert bool((theta <= lam * (1 + 1e-12)).all()) and bool((theta >= (1 - eps) * lam).all())


def test_autograd_and_func_products_agree():
    m = sympnet(64, width=16, seed=2).double()
    x = torch.randn(3, 64, dtype=torch.float64)
    v = torch.randn(3, 64, dtype=torch.float64)
    a, f = mf._Autograd(m, x, False), mf._Func(m, x, False)
    assert torch.allclose(a.jvp(v), f.jvp(v), atol=1e-12) and torch.allclose(a.vjp(v), f.vjp(v), atol=1e-12)


# -- planted violations at large n ---------------------------------------------------------------------------------
def test_one_non_symplectic_2x2_block_among_4096_coordinates_is_refuted():
    n = 4096
    m = NonSymplecticBlock(sympnet(n, width=16, seed=0), 1e-3, k=1777)  # (q_1777, p_1777): 2 of 4096 coordinates
    ev = check(Symplectic(), m, n)
    assert ev.verdict is Verdict.VIOLATED, ev.summary
    # seen at its full size (a random unit probe pair would see ~1/n of it): ‖R‖₂ ≈ δ
    assert ev.classification == "structural" and ev.max_defect_float64 > 5e-4
    # the evidence says which method ran, its steps and miss probability, and how many inputs were searched
    assert "Lanczos" in ev.search["matrix_free"] and "P(miss) ≤ 0.001" in ev.search["matrix_free"]
    assert ev.search["plan"]["method"] == "lanczos" and ev.search["cost"]["scaled"]
    assert "sampled inputs" in ev.summary and ev.search["cost"]["n_inputs"] >= 2


def test_one_scaled_coordinate_breaks_volume_at_n_256():
    n = 256
    ev = check(VolumePreserving(), ScaledCoordinate(CouplingFlow(n, width=32, seed=1), 1e-3, k=100), n)
    assert ev.verdict is Verdict.VIOLATED, ev.summary
    assert "det J = 1.001" in ev.summary and ev.search["plan"]["method"] == "exact"


def test_a_broken_inverse_on_one_coordinate_is_refuted_at_n_1024():
    n = 1024
    ev = check(Invertible(), BrokenInverse(CouplingFlow(n, width=32, seed=2), 1e-4, k=513), n)
    assert ev.verdict is Verdict.VIOLATED, ev.summary
    assert ev.search["cost"]["seconds_limit"] == FAST["seconds"]


def test_a_log_det_that_omits_one_scale_is_refuted_at_n_252():
    n = 252
    m = ScaledCoordinate(CouplingFlow(n, width=32, affine=True, seed=3), 1e-3, k=7, honest_log_det=False)
    ev = check(LogDet(), m, n)
    assert ev.verdict is Verdict.VIOLATED, ev.summary


# -- correct large models, several seeds ---------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_correct_large_models_are_never_refuted(seed):
    n = 1024
    ev = check(Symplectic(), sympnet(n, width=32, seed=seed), n, seed=seed)
    assert ev.verdict is Verdict.HOLDS, ev.summary
    flow = CouplingFlow(n, width=32, seed=seed)
    ev = check(Invertible(), flow, n, seed=seed)
    assert ev.verdict is Verdict.HOLDS, ev.summary
    ev = check(VolumePreserving(), CouplingFlow(128, width=16, seed=seed), 128, seed=seed)
    assert ev.verdict is Verdict.HOLDS, ev.summary
    assert ev.n_inputs >= 2 and "inputs" in ev.summary


def test_correct_glow_like_log_det_holds():
    ev = check(LogDet(), CouplingFlow(132, width=16, affine=True, seed=5), 132, seed=1)
    assert ev.verdict is Verdict.HOLDS, ev.summary


# -- what the plan says, refuses and leaves undecided ---------------------------------------------------------------
def test_memory_estimate_refuses_with_the_numbers():
    n = 1024
    with mf.using(memory_limit=50_000):
        ev = measure(Symplectic(), sympnet(n, width=8), dim=n, depth=4, domain=Box([-1.0] * n, [1.0] * n))
    assert ev.verdict is Verdict.ERROR
    assert "memory per input" in ev.summary and "229 kB" in ev.summary and "limit 50 kB" in ev.summary
    assert "memory_limit" in ev.fix


def test_beyond_the_exact_logdet_the_estimate_leaves_the_claim_undecided():
    n = 256
    with mf.using(exact_max_dim=128, slq_probes=4, slq_steps=12):
        ev = measure(VolumePreserving(), CouplingFlow(n, width=16).eval(), dim=n, depth=4,
                     domain=Box([-1.0] * n, [1.0] * n))
    assert ev.verdict is Verdict.UNDECIDED, ev.summary
    assert "stochastic Lanczos quadrature" in ev.summary and "exact_max_dim" in ev.fix


def test_plan_states_thresholds_and_memory_is_linear_in_n():
    small = mf.plan(mf.SYMPLECTIC, 64, torch.float64, torch.device("cpu"))
    assert small.method == "full"
    a = mf.plan(mf.SYMPLECTIC, 1000, torch.float64, torch.device("cpu"))
    b = mf.plan(mf.SYMPLECTIC, 10000, torch.float64, torch.device("cpu"))
    assert a.method == b.method == "lanczos" and b.bytes_per_input == 10 * a.bytes_per_input
    assert mf.plan(mf.LOGDET, 10000, torch.float64, torch.device("cpu")).method == "slq"
    assert not mf.plan(mf.LOGDET, 10000, torch.float64, torch.device("cpu")).sound
    with pytest.raises(Exception):
        mf.Policy(method="sometimes")
    assert math.isclose(mf.kw_epsilon(10, 10, 1e-3), 0.0)
