"""The symbolic stage: layer algebra correctness, proofs, refutations with instances, time limits."""
import math

import numpy as np
import pytest
import torch

from verify.models.henonnet import HenonLayer, henon_block
from verify.models.shears import GradientShear, activation_shear_block, gradient_shear_block, linear_shear_block
from verify.properties import Invertible, Symplectic, VolumePreserving
from verify.derive.proofs import derive, prove_block
from verify.evidence import Proof, Refutation, Verdict
from verify.derive.symbolic import Builder, SymbolicBlock, trace_exact, trace_float

BLOCKS = [
    gradient_shear_block(2, 3, True), gradient_shear_block(2, 3, False, mismatched=True),
    linear_shear_block(2, False), activation_shear_block(1, True), henon_block(2, 3),
]


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: b.name)
def test_chain_rule_matches_finite_differences(block):
    """The algebra's Jacobian (which the proofs rely on) agrees with central differences on a concrete instance."""
    t = trace_float(block, seed=3)
    x0 = list(t.inputs)
    J = np.array(t.jacobian)
    h = 1e-6
    for j in range(block.dim):
        xp, xm = list(x0), list(x0)
        xp[j] += h
        xm[j] -= h
        fp, fm = trace_float(block, 3, xp).outputs, trace_float(block, 3, xm).outputs
        col = (np.array(fp) - np.array(fm)) / (2 * h)
        assert np.allclose(col, J[:, j], atol=1e-6), (block.name, j)


def test_symbolic_twin_matches_the_torch_layer():
    """The proof is about the same map the torch code computes: same parameters, σ = tanh."""
    torch.manual_seed(0)
    layer = GradientShear(2, 3, kick=True).double()
    block = gradient_shear_block(2, 3, True)
    t = trace_float(block, seed=5, x=[0.3, -0.7, 0.2, 0.9])
    params = t.backend.values
    with torch.no_grad():
        layer.K.copy_(torch.tensor([[params[f"K_{i}{j}"] for j in range(2)] for i in range(3)]))
        layer.a.copy_(torch.tensor([params[f"a_{i}"] for i in range(3)]))
        layer.b.copy_(torch.tensor([params[f"b_{i}"] for i in range(3)]))
    y = layer(torch.tensor([[0.3, -0.7, 0.2, 0.9]], dtype=torch.float64))[0].detach()
    assert np.allclose(y.numpy(), t.outputs, atol=1e-12)


def test_henon_twin_matches_the_torch_map():
    torch.manual_seed(0)
    layer = HenonLayer(1, 2).double()
    block = henon_block(1, 2)
    t = trace_float(block, seed=7, x=[0.4, -0.3])
    v = t.backend.values
    with torch.no_grad():
        layer.W.copy_(torch.tensor([[v["W_00"]], [v["W_10"]]]))
        layer.a.copy_(torch.tensor([v["a_0"], v["a_1"]]))
        layer.b.copy_(torch.tensor([v["b_0"], v["b_1"]]))
        layer.eta.copy_(torch.tensor([v["eta_0"]]))
    # one Hénon map (the layer iterates it four times): σ' = 1 − tanh² in both
    x, y = torch.tensor([[0.4]], dtype=torch.float64), torch.tensor([[-0.3]], dtype=torch.float64)
    out = torch.cat([y + layer.eta, -x + layer.grad_v(y)], dim=-1)[0]
    assert np.allclose(out.detach().numpy(), t.outputs, atol=1e-12)


def test_gradient_shear_proof_covers_any_activation_and_parameters():
    ev = derive(Symplectic(), [gradient_shear_block(3, 4, True), gradient_shear_block(3, 4, False)])
    assert isinstance(ev, Proof) and ev.verdict is Verdict.PROVED
    assert "composition" in ev.lemma or "compos" in ev.lemma
    assert all(b.residual == "0" for b in ev.blocks)


def test_mismatched_shear_refuted_with_concrete_instance():
    ev = derive(Symplectic(), [gradient_shear_block(2, 2, True, mismatched=True)])
    assert isinstance(ev, Refutation) and ev.verdict is Verdict.VIOLATED
    inst = ev.blocks[0].instance
    assert inst["residual"] > 1e-3 and len(inst["x"]) == 4 and "K_00" in inst["parameters"]
    assert any("sigma'" in v for v in ev.blocks[0].legend.values())


def test_refutation_instance_is_a_real_counterexample():
    """Re-evaluate the reported instance independently with torch: JᵀΩJ − Ω is what the evidence says."""
    ev = derive(Symplectic(), [gradient_shear_block(2, 2, True, mismatched=True)])
    inst = ev.blocks[0].instance
    p = inst["parameters"]
    K = torch.tensor([[p[f"K_{i}{j}"] for j in range(2)] for i in range(2)], dtype=torch.float64)
    L = torch.tensor([[p[f"L_{i}{j}"] for j in range(2)] for i in range(2)], dtype=torch.float64)
    a = torch.tensor([p["a_0"], p["a_1"]], dtype=torch.float64)
    b = torch.tensor([p["b_0"], p["b_1"]], dtype=torch.float64)

    def f(x):
        q, pp = x[:2], x[2:]
        return torch.cat([q, pp + (a * torch.tanh(L @ q + b)) @ K])

    J = torch.autograd.functional.jacobian(f, torch.tensor(inst["x"], dtype=torch.float64))
    om = torch.zeros(4, 4, dtype=torch.float64)
    om[:2, 2:], om[2:, :2] = torch.eye(2), -torch.eye(2)
    assert math.isclose(float((J.T @ om @ J - om).abs().max()), inst["residual"], rel_tol=1e-9)


def test_every_shear_of_the_plane_is_symplectic():
    """In 2-D phase space any shear p += f(q) is symplectic, so the mismatched control needs d ≥ 2."""
    assert derive(Symplectic(), [gradient_shear_block(1, 3, True, mismatched=True)]).verdict is Verdict.PROVED


def test_volume_and_inverse_of_mismatched_shear_still_proved():
    blocks = [gradient_shear_block(2, 3, True, mismatched=True)]
    assert derive(VolumePreserving(), blocks).verdict is Verdict.PROVED
    assert derive(Invertible(), blocks).verdict is Verdict.PROVED


def test_no_subs_or_derivative_objects_reach_the_zero_test():
    t = trace_exact(henon_block(2, 2))
    import sympy as sp

    for row in t.jacobian:
        for e in row:
            expr = t.to_expr(e)
            assert not expr.has(sp.Subs) and not expr.has(sp.Derivative)


def test_time_limit_gives_undecided_not_a_hang():
    block = gradient_shear_block(8, 16, True)
    res = prove_block(Symplectic(), block, time_limit=1e-4)
    assert res.verdict is Verdict.UNDECIDED and "time limit" in res.message


def test_time_limit_in_a_thread_uses_a_child_process():
    import threading

    from verify.errors import SymbolicTimeout
    from verify.timelimit import within_limit

    out = {}

    def worker():
        try:
            within_limit(lambda: sum(i for i in range(10**9)), 0.5, "busy loop")
        except SymbolicTimeout as exc:
            out["exc"] = exc

    th = threading.Thread(target=worker)
    th.start()
    th.join(20)
    assert isinstance(out.get("exc"), SymbolicTimeout)


def test_block_with_wrong_output_length_is_an_error_not_a_pass():
    bad = SymbolicBlock("bad", 2, lambda b, x: x[:1])
    ev = derive(Symplectic(), [bad])
    assert ev.verdict is Verdict.ERROR and "expected dim=2" in ev.summary


def test_odd_dimension_symplectic_block_is_an_error():
    ev = derive(Symplectic(), [SymbolicBlock("odd", 3, lambda b, x: x)])
    assert ev.verdict is Verdict.ERROR and "even" in ev.summary


def test_exp_inverse_relation_proves_affine_coupling_inverse():
    from verify.models.controls import affine_blocks

    blocks = affine_blocks({"dim": 2, "width": 2})
    assert derive(Invertible(), blocks).verdict is Verdict.PROVED
    assert derive(VolumePreserving(), blocks).verdict is Verdict.VIOLATED


def test_identity_program_builder_semantics():
    """x ↦ x is proved symplectic, volume preserving and (with itself as inverse) invertible."""
    ident = SymbolicBlock("identity", 4, lambda b, x: x, lambda b, y: y)
    for prop in (Symplectic(), VolumePreserving(), Invertible()):
        assert derive(prop, [ident]).verdict is Verdict.PROVED
    scaled = SymbolicBlock("scale q by 2", 2, lambda b, x: Builder.concat(x[:1].scale(2), x[1:]))
    assert derive(Symplectic(), [scaled]).verdict is Verdict.VIOLATED
    assert derive(VolumePreserving(), [scaled]).verdict is Verdict.VIOLATED
