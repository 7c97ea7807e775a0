"""The numeric stage: batched Jacobians, hypothesis search, float64 oracle, bad models."""
import pytest
import torch
from torch import nn

from verify.models.shears import Composition, GradientShear
from verify.models.sympnets import GSympNet
from verify.properties import Invertible, Symplectic, VolumePreserving
from verify.evidence import Failure, Measurement, Verdict
from verify.checking.domains import Box
from verify.checking.numeric import batched_jacobian, loop_jacobian, measure
from verify.checking.search import Budget

SMALL = Budget(n_inputs=512, starts=16, steps=8, examples=40)


def run(prop, model, dim=2, **kw):
    return measure(prop, model, dim=dim, depth=4, domain=Box([-1.0] * dim, [1.0] * dim), budget=SMALL, **kw)


def test_batched_jacobian_agrees_with_per_sample_loop_in_float64():
    torch.manual_seed(0)
    model = GSympNet(8, layers=3, width=8).double().eval()
    x = torch.randn(64, 8, dtype=torch.float64)
    assert torch.allclose(batched_jacobian(model, x), loop_jacobian(model, x), atol=1e-12, rtol=0)


def test_untrained_gsympnet_holds_and_mlp_is_refuted_structurally():
    torch.manual_seed(0)
    ok = run(Symplectic(), GSympNet(4, layers=4, width=8).eval(), dim=4)
    assert isinstance(ok, Measurement) and ok.verdict is Verdict.HOLDS
    assert ok.max_defect <= ok.tolerance and ok.max_defect_float64 <= ok.tolerance_float64
    assert "eps" in ok.tolerance_formula and ok.dtype == "float32"
    mlp = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 2)).eval()
    bad = run(Symplectic(), mlp)
    assert bad.verdict is Verdict.VIOLATED and bad.classification == "structural"
    assert bad.counterexample is not None and bad.counterexample_defect > bad.tolerance


class HalfPrecisionShear(GradientShear):
    """A correct shear whose increment is computed in float16 when the model runs in float32.

    Mixed precision: the float64 copy computes in float64, so the violation in float32
    is round-off, not structure.
    """

    def increment(self, z):
        low = torch.float16 if z.dtype == torch.float32 else z.dtype
        K, a, b = self.K.to(low), self.a.to(low), self.b.to(low)
        return ((a * torch.tanh(z.to(low) @ K.T + b)) @ K).to(z.dtype)


def test_round_off_is_told_apart_from_structure():
    torch.manual_seed(1)
    model = Composition([HalfPrecisionShear(2, 8, kick=True), HalfPrecisionShear(2, 8, kick=False)])
    with torch.no_grad():
        for layer in model.layers:
            layer.a.mul_(30)
    ev = run(Symplectic(), model.eval(), dim=4)
    assert ev.verdict is Verdict.VIOLATED and ev.classification == "round-off"
    assert ev.max_defect_float64 <= ev.tolerance_float64 < ev.tolerance < ev.max_defect


class NaNModel(nn.Module):
    def forward(self, x):
        return x / 0.0 * 0.0


class WrongShape(nn.Module):
    def forward(self, x):
        return x[:, :1]


class Dropped(nn.Module):
    def __init__(self):
        super().__init__()
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        return self.drop(x)


@pytest.mark.parametrize(
    "model, needle",
    [(NaNModel(), "finite numbers"), (WrongShape(), "shape"), (Dropped().train(), "eval()")],
    ids=["nan", "shape", "train-mode-dropout"],
)
def test_bad_models_give_error_never_holds(model, needle):
    ev = run(Symplectic(), model)
    assert isinstance(ev, Failure) and ev.verdict is Verdict.ERROR
    assert needle in ev.summary and ev.fix


def test_claim_dimension_mismatch_is_an_error():
    ev = run(Symplectic(dim=6), GSympNet(4, layers=2, width=4).eval(), dim=4)
    assert ev.verdict is Verdict.ERROR and "dim" in ev.summary and "6" in ev.summary


def test_model_input_size_mismatch_is_an_error():
    ev = run(Symplectic(), GSympNet(4, layers=2, width=4).eval(), dim=2)
    assert ev.verdict is Verdict.ERROR and "dimension" in ev.summary


def test_invertible_without_inverse_method_is_an_error():
    ev = run(Invertible(), nn.Identity())
    assert ev.verdict is Verdict.ERROR and "inverse" in ev.summary


def test_singular_jacobian_cannot_pass_volume_preservation():
    class Collapse(nn.Module):
        def forward(self, x):
            return torch.cat([x[:, :1], 0 * x[:, 1:]], dim=-1)

    ev = run(VolumePreserving(), Collapse())
    assert ev.verdict is Verdict.VIOLATED


def test_search_is_reproducible_from_its_seed():
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 2)).eval()
    a, b = run(Symplectic(), mlp, seed=7), run(Symplectic(), mlp, seed=7)
    assert a.worst_input == b.worst_input and a.max_defect == b.max_defect


def test_box_draws_beyond_sobols_dimension_limit_reproducibly():
    """torch's SobolEngine stops at 21201 coordinates (and scrambling costs O(k) per draw): a 30000-coordinate box
    draws seeded pseudo-random uniforms instead, the same for the same seed, inside the box."""
    import torch

    from verify.checking.domains import SOBOL_MAX_DIM, Box

    box = Box([-2.0] * 30000, [1.0] * 30000)
    a = box.draw(3, 1.0, torch.Generator().manual_seed(5))
    b = box.draw(3, 1.0, torch.Generator().manual_seed(5))
    assert a.shape == (3, 30000) and torch.equal(a, b)
    assert float(a.min()) >= -2.0 and float(a.max()) <= 1.0 and float(a.std()) > 0.5
    assert 30000 > SOBOL_MAX_DIM
