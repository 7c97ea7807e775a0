"""Symbolic twins generated from the layers' own torch code (verify.derive.fx_twin): agreement, proofs, refusals."""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from torch import nn

from verify.models.controls import AdditiveShear, AffineShear, MismatchedShear, ResidualBlock, ResNetFlow
from verify.models.hamiltonian_net import HamiltonianNet
from verify.models.henonnet import HenonLayer
from verify.models.shears import ActivationShear, Composition, GradientShear, LinearShear, Translation
from verify.properties import Invertible, Symplectic, VolumePreserving
from verify.derive.proofs import prove_block
from verify.errors import InputError
from verify.evidence import Verdict
from verify.derive.fx_twin import SUPPORTED, GeneratedTwin, Untraceable, generate_block, generate_layers, generate_stages
from verify.derive.symbolic import trace_float

LIMIT = 20.0


def _layers() -> dict[str, tuple[nn.Module, int]]:
    with torch.random.fork_rng():  # built at collection: leave the global generator as other modules expect it
        torch.manual_seed(0)
        return _make_layers()


def _make_layers() -> dict[str, tuple[nn.Module, int]]:
    made = {
        "gradient kick": (GradientShear(2, 3, kick=True), 4),
        "gradient drift": (GradientShear(2, 3, kick=False), 4),
        "linear": (LinearShear(2, kick=False), 4),
        "activation tanh": (ActivationShear(2, kick=True), 4),
        "activation sigmoid": (ActivationShear(2, kick=False, act="sigmoid"), 4),
        "activation softplus": (ActivationShear(1, kick=True, act="softplus"), 2),
        "translation": (Translation(4), 4),
        "henon": (HenonLayer(1, 2), 2),
        "residual": (ResidualBlock(2, 3), 2),
        "mismatched": (MismatchedShear(2, 2, kick=True), 4),
        "affine kick": (AffineShear(1, 2, kick=True), 2),
        "affine drift": (AffineShear(2, 2, kick=False), 4),
        "additive": (AdditiveShear(1, 3, kick=False), 2),
    }
    for layer, _ in made.values():
        layer.double()
        with torch.no_grad():  # zero-initialised biases would hide a parameter that is dropped or misplaced
            for p in layer.parameters():
                p.add_(0.3 * torch.randn_like(p))
    return made


LAYERS = _layers()


def _twin(key: str) -> GeneratedTwin:
    layer, dim = LAYERS[key]
    return generate_block(layer, dim)


def _torch(layer: nn.Module, x: torch.Tensor, inverse: bool = False) -> list[float]:
    with torch.no_grad():
        fn = layer.inverse if inverse else layer
        return fn(x[None].double())[0].tolist()


# --- the generated twin is the layer ------------------------------------------------------------------------


@pytest.mark.parametrize("key", list(LAYERS))
def test_twin_equals_the_layer_on_random_inputs(key):
    layer, dim = LAYERS[key]
    twin = _twin(key)
    gen = torch.Generator().manual_seed(1)
    for _ in range(5):
        x = 1.5 * torch.randn(dim, generator=gen, dtype=torch.float64)
        got = twin.evaluate(layer, x.tolist())
        assert np.allclose(got, _torch(layer, x), rtol=0, atol=1e-12), key
        if twin.block.inverse is not None:
            assert np.allclose(twin.evaluate(layer, x.tolist(), inverse=True), _torch(layer, x, inverse=True),
                               rtol=0, atol=1e-12), key


@pytest.mark.parametrize("key", ["gradient kick", "henon", "affine drift", "activation softplus", "residual"])
def test_twin_jacobian_equals_autograd(key):
    """The chain rule the proofs rely on, with the real derivatives of tanh/exp/softplus, against torch autograd."""
    layer, dim = LAYERS[key]
    twin = generate_block(layer, dim)
    x = torch.linspace(-0.8, 0.9, dim, dtype=torch.float64)
    t = trace_float(twin.block, seed=0, x=x.tolist(), values=twin.values(layer))
    J = torch.autograd.functional.jacobian(lambda z: layer(z[None])[0], x)
    assert np.allclose(np.array(t.jacobian), J.numpy(), rtol=0, atol=1e-12)


def test_binding_fails_with_another_layers_parameters():
    """The twin is instantiated from the module given: another module's weights give a different map."""
    twin = _twin("gradient kick")
    other = GradientShear(2, 3, kick=True).double()
    x = [0.3, -0.7, 0.2, 0.9]
    layer, _ = LAYERS["gradient kick"]
    assert max(abs(a - b) for a, b in zip(twin.evaluate(other, x), _torch(layer, torch.tensor(x)))) > 1e-3
    with pytest.raises(InputError, match="parameter or buffer"):
        twin.values(LinearShear(2, kick=True))


def test_parameter_mapping_and_shapes():
    net = HamiltonianNet(4, 3).double()
    twin = generate_block(net, 4)
    assert twin.parameters["dt"] == "dt" and twin.shapes["dt"] == ()  # a buffer step size is a scalar parameter
    assert twin.parameters["V_l1_weight"] == "V.l1.weight" and twin.shapes["V_l1_weight"] == (3, 2)
    assert "V_l3_bias" not in twin.parameters  # the step uses the gradient only, which has no output bias
    assert twin.functions == ("tanh",)
    names = twin.symbol_names()
    assert names["dt"] == ["dt"] and names["V_l1_weight"][:2] == ["V_l1_weight_00", "V_l1_weight_01"]
    vals = twin.values(net)
    assert vals["dt"] == pytest.approx(0.1) and vals["V_l1_weight_10"] == float(net.V.l1.weight[1, 0].detach())


def test_parameter_named_like_the_input_is_renamed():
    class Shift(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.x = nn.Parameter(torch.tensor([0.5, -0.25], dtype=torch.float64))

        def forward(self, z):
            return z + self.x * torch.sin(z[..., :1])

    layer = Shift()
    twin = generate_block(layer, 2)
    assert set(twin.parameters.values()) == {"x"} and "x" not in twin.parameters  # x_0 is the input's symbol
    assert np.allclose(twin.evaluate(layer, [0.3, 0.4]), _torch(layer, torch.tensor([0.3, 0.4])), atol=1e-14)


# --- proofs from generated twins ----------------------------------------------------------------------------

PROOFS = [
    ("gradient kick", Symplectic(), Verdict.PROVED),
    ("gradient drift", Symplectic(), Verdict.PROVED),
    ("henon", Symplectic(), Verdict.PROVED),
    ("linear", Symplectic(), Verdict.PROVED),
    ("mismatched", Symplectic(), Verdict.VIOLATED),
    ("residual", Symplectic(), Verdict.VIOLATED),
    ("additive", VolumePreserving(), Verdict.PROVED),
    ("mismatched", VolumePreserving(), Verdict.PROVED),
    ("affine kick", VolumePreserving(), Verdict.VIOLATED),
    ("affine drift", VolumePreserving(), Verdict.VIOLATED),
] + [(key, Invertible(), Verdict.PROVED) for key in LAYERS if key != "residual"]


@pytest.mark.parametrize("key,prop,verdict", PROOFS, ids=[f"{k}-{p.name}" for k, p, _ in PROOFS])
def test_proofs_from_generated_twins(key, prop, verdict):
    res = prove_block(prop, _twin(key).block, LIMIT)
    assert res.verdict is verdict, (key, prop.name, res.message)
    if verdict is Verdict.VIOLATED:
        assert res.instance["residual"] > 1e-6  # the exact residual has a concrete counterexample (σ = tanh)
    else:
        assert res.residual == "0"


def test_layer_without_inverse_is_undecided_for_invertible():
    assert _twin("residual").block.inverse is None
    assert prove_block(Invertible(), _twin("residual").block, LIMIT).verdict is Verdict.UNDECIDED
    twin = generate_block(ResNetFlow(2, 2, 3).double(), 2)
    assert twin.block.inverse is None and "NotImplementedError" in twin.inverse_error


def test_buggy_inverse_is_refuted():
    layer = AdditiveShear(1, 3, kick=False, buggy_inverse=True).double()
    res = prove_block(Invertible(), generate_block(layer, 2).block, LIMIT)
    assert res.verdict is Verdict.VIOLATED


def test_mismatched_shear_in_the_plane_is_symplectic():
    """d = 1: every shear of the plane is symplectic, so only d >= 2 separates L from K."""
    layer = MismatchedShear(1, 3, kick=False).double()
    assert prove_block(Symplectic(), generate_block(layer, 2).block, LIMIT).verdict is Verdict.PROVED


# --- derivative identities: a hand-written gradient is a gradient only through them -------------------------


class TwoLayerKick(nn.Module):
    """p ← p − ∇V(q) with V = w·f(W₂ f(W₁q + b₁) + b₂), its gradient written out by hand (backpropagation)."""

    def __init__(self, d: int, width: int, f: str, wrong: bool = False) -> None:
        super().__init__()
        self.d, self.f, self.wrong = d, f, wrong
        self.W1 = nn.Parameter(torch.randn(width, d, dtype=torch.float64))
        self.b1 = nn.Parameter(torch.randn(width, dtype=torch.float64))
        self.W2 = nn.Parameter(torch.randn(width, width, dtype=torch.float64))
        self.b2 = nn.Parameter(torch.randn(width, dtype=torch.float64))
        self.w = nn.Parameter(torch.randn(width, dtype=torch.float64))

    def _fd(self, z):
        """(f(z), f'(z)) written with the function's own values, as hand-written code does."""
        if self.f == "tanh":
            t = torch.tanh(z)
            return t, (1 - t) if self.wrong else (1 - t**2)
        if self.f == "sigmoid":
            s = torch.sigmoid(z)
            return s, s * (1 - s)
        if self.f == "softplus":
            return nn.functional.softplus(z), torch.sigmoid(z)
        if self.f == "exp":
            e = torch.exp(z)
            return e, e
        return torch.sin(z), torch.cos(z)

    def forward(self, x):
        q, p = x[..., : self.d], x[..., self.d :]
        h1, d1 = self._fd(q @ self.W1.T + self.b1)
        _, d2 = self._fd(h1 @ self.W2.T + self.b2)
        g = ((d2 * self.w) @ self.W2 * d1) @ self.W1
        return torch.cat([q, p - 0.5 * g], dim=-1)

    def inverse(self, y):
        q, p = y[..., : self.d], y[..., self.d :]
        h1, d1 = self._fd(q @ self.W1.T + self.b1)
        _, d2 = self._fd(h1 @ self.W2.T + self.b2)
        g = ((d2 * self.w) @ self.W2 * d1) @ self.W1
        return torch.cat([q, p + 0.5 * g], dim=-1)


@pytest.mark.parametrize("f", ["tanh", "sigmoid", "softplus", "exp", "sin"])
def test_hand_written_gradient_is_proved_through_the_derivative_identity(f):
    torch.manual_seed(3)
    layer = TwoLayerKick(2, 2, f)
    twin = generate_block(layer, 4)
    x = torch.tensor([0.2, -0.4, 0.7, 0.1], dtype=torch.float64)
    assert np.allclose(twin.evaluate(layer, x.tolist()), _torch(layer, x), atol=1e-12)
    assert prove_block(Symplectic(), twin.block, LIMIT).verdict is Verdict.PROVED
    assert prove_block(Invertible(), twin.block, LIMIT).verdict is Verdict.PROVED


def test_wrong_hand_written_derivative_is_refuted():
    """(1 − tanh) is not tanh': the 'gradient' has a non-symmetric Jacobian, and the generated twin says so."""
    torch.manual_seed(3)
    res = prove_block(Symplectic(), generate_block(TwoLayerKick(2, 2, "tanh", wrong=True), 4).block, LIMIT)
    assert res.verdict is Verdict.VIOLATED and res.instance["residual"] > 1e-6
    assert any("tanh(" in v for v in res.legend.values())


class Rotation(nn.Module):
    """(q, p) ↦ R(θ)(q, p): symplectic in the plane because cos²θ + sin²θ = 1."""

    def __init__(self) -> None:
        super().__init__()
        self.theta = nn.Parameter(torch.tensor([0.7], dtype=torch.float64))

    def forward(self, x):
        c, s = torch.cos(self.theta), torch.sin(self.theta)
        q, p = x[..., :1], x[..., 1:]
        return torch.cat([c * q - s * p, s * q + c * p], dim=-1)

    def inverse(self, y):
        c, s = torch.cos(self.theta), torch.sin(self.theta)
        q, p = y[..., :1], y[..., 1:]
        return torch.cat([c * q + s * p, -s * q + c * p], dim=-1)


def test_rotation_uses_the_pythagorean_identity():
    layer = Rotation()
    twin = generate_block(layer, 2)
    assert twin.shapes == {"theta": (1,)} and twin.functions == ("cos", "sin")
    assert np.allclose(twin.evaluate(layer, [0.3, -1.1]), _torch(layer, torch.tensor([0.3, -1.1])), atol=1e-14)
    for prop in (Symplectic(), VolumePreserving(), Invertible()):
        assert prove_block(prop, twin.block, LIMIT).verdict is Verdict.PROVED, prop.name


# --- the Störmer–Verlet HamiltonianNet ----------------------------------------------------------------------


def test_verlet_step_stages_are_proved_symplectic():
    """One step (half kick, drift, half kick) of a width-8 tanh-MLP HamiltonianNet on 4-D phase space, per stage."""
    torch.manual_seed(0)
    net = HamiltonianNet(4, width=8, h=0.1, substeps=1).double()
    stages = generate_stages(net, 4)
    assert [s.stage for s in stages] == [(0, 3), (1, 3), (2, 3)]
    x = [0.3, -0.2, 0.5, 0.1]
    z = x
    for s in stages:
        z = s.evaluate(net, z)
    assert np.allclose(z, _torch(net, torch.tensor(x)), atol=1e-12)  # the stages compose to the layer
    for s in stages:
        start = time.perf_counter()
        res = prove_block(Symplectic(), s.block, LIMIT)
        assert res.verdict is Verdict.PROVED, (s.block.name, res.message)
        assert time.perf_counter() - start < LIMIT


def test_verlet_step_as_one_block():
    """The whole step as one twin: width 1 is decided; at width 2 the expanded Jacobian is too big, and the
    time limit turns that into undecided instead of a hang."""
    torch.manual_seed(0)
    small = generate_block(HamiltonianNet(4, width=1).double(), 4)
    assert prove_block(Invertible(), small.block, LIMIT).verdict is Verdict.PROVED  # Störmer–Verlet is symmetric
    big = generate_block(HamiltonianNet(4, width=2).double(), 4)
    start = time.perf_counter()
    res = prove_block(Symplectic(), big.block, 2.0)
    assert res.verdict is Verdict.UNDECIDED and "time limit" in res.message
    assert time.perf_counter() - start < 10.0


def test_stages_of_a_swap_map_need_the_code_order():
    """A Hénon map moves y into x's place: by input slots its cut coordinates are not canonical and the stages fail
    (which proves nothing); in the order the code computes them each stage is one Hénon map, proved."""
    torch.manual_seed(0)
    layer = HenonLayer(2, 2).double()
    by_slots = generate_stages(layer, 4)
    assert len(by_slots) == 4
    assert any(prove_block(Symplectic(), s.block, LIMIT).verdict is Verdict.VIOLATED for s in by_slots)
    by_nodes = generate_stages(layer, 4, order="nodes")
    x = [0.3, -0.2, 0.5, 0.1]
    z = x
    for s in by_nodes:
        z = s.evaluate(layer, z)
    assert np.allclose(z, _torch(layer, torch.tensor(x)), atol=1e-12)
    for s in by_nodes:
        assert prove_block(Symplectic(), s.block, LIMIT).verdict is Verdict.PROVED
    with pytest.raises(InputError, match="order"):
        generate_stages(layer, 4, order="names")


def test_stages_without_interior_cut_give_the_block():
    layer, dim = LAYERS["affine kick"]
    (only,) = generate_stages(layer, dim)
    assert only.stage is None and only.block.inverse is not None


# --- generate_layers ------------------------------------------------------------------------------------------


def test_generate_layers_one_twin_per_layer():
    torch.manual_seed(0)
    model = Composition([GradientShear(1, 2, kick=True), GradientShear(1, 2, kick=False), Translation(2)]).double()
    twins = generate_layers(model, 2)
    assert [t.path for t in twins] == ["layers.0", "layers.1", "layers.2"]
    assert [t.layer_type for t in twins] == ["GradientShear", "GradientShear", "Translation"]
    x = torch.tensor([0.4, -0.6], dtype=torch.float64)
    z = x.tolist()
    for t in twins:
        z = t.evaluate(model.get_submodule(t.path), z)
    assert np.allclose(z, _torch(model, x), atol=1e-12)

    seq = nn.Sequential(AdditiveShear(1, 2, kick=True), AdditiveShear(1, 2, kick=False)).double()
    assert [t.path for t in generate_layers(seq, 2)] == ["0", "1"]
    single = generate_layers(HenonLayer(1, 2).double(), 2)
    assert len(single) == 1 and single[0].path == ""


def test_generate_layers_refuses_a_forward_that_is_not_the_composition():
    class Scaled(Composition):
        def forward(self, x):
            return 2 * super().forward(x)

    model = Scaled([Translation(2), Translation(2)]).double()
    with torch.no_grad():
        model.layers[0].b.fill_(0.5)
    with pytest.raises(Untraceable, match="does more than compose"):
        generate_layers(model, 2)
    assert len(generate_layers(Composition([Translation(2), Translation(2)]).double(), 2)) == 2


def test_untraceable_survives_pickling():
    import pickle

    with pytest.raises(Untraceable) as info:
        generate_block(Relu(), 2)
    again = pickle.loads(pickle.dumps(info.value))
    assert isinstance(again, Untraceable) and str(again) == str(info.value)


# --- refusals ------------------------------------------------------------------------------------------------


class Branchy(nn.Module):
    def forward(self, x):
        if x.sum() > 0:
            return x
        return -x


class Relu(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.W = nn.Parameter(torch.randn(2, 2))

    def forward(self, x):
        return x + torch.relu(x @ self.W.T)


def _refusal(body):
    class Layer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.W = nn.Parameter(torch.randn(2, 2))

        forward = body

    return Layer()


def test_data_dependent_control_flow_is_untraceable():
    with pytest.raises(Untraceable) as info:
        generate_block(Branchy(), 2)
    msg = str(info.value)
    assert "control flow" in msg and "if x.sum() > 0" in msg
    assert "hand-written twin (blocks=...) or check numerically only" in msg and SUPPORTED in msg
    assert isinstance(info.value, InputError)


def test_unsupported_op_is_untraceable():
    with pytest.raises(Untraceable) as info:
        generate_block(Relu(), 2)
    msg = str(info.value)
    assert "torch.relu" in msg and "node 'relu'" in msg and "torch.relu(x @ self.W.T)" in msg
    assert "hand-written twin (blocks=...) or check numerically only" in msg and "tanh / sigmoid" in msg


@pytest.mark.parametrize("body,words", [
    (lambda self, x: x - x.mean(0), "reduction .mean()"),
    (lambda self, x: x.clone().add_(1.0), "in-place"),
    (lambda self, x: (self.W @ x.T).T, ".T of a per-sample vector"),
    (lambda self, x: x / (1 + x**2), "division by a per-sample vector"),
    (lambda self, x: x + x ** 0.5, "integer powers"),
    (lambda self, x: torch.cat([x[:, 0:1], x[:, 1:2] * x[:, 0]], -1), "drops the feature dimension"),
    (lambda self, x: torch.cat([x[:1], x[1:]], 0), "selects along the batch dimension"),
    (lambda self, x: torch.cat([x[..., :1], x[..., 1:]], 0), "dim=0"),
    (lambda self, x: self.W @ x, "does not run on a"),
    (lambda self, x: torch.relu(x), "unsupported operation"),
])
def test_other_refusals_name_the_problem(body, words):
    with pytest.raises(Untraceable, match="check numerically only") as info:
        generate_block(_refusal(body), 2)
    assert words in str(info.value)


def test_bad_arguments():
    with pytest.raises(InputError, match="dim"):
        generate_block(LAYERS["henon"][0], 0)
    with pytest.raises(InputError, match="torch.nn.Module"):
        generate_block(lambda x: x, 2)  # type: ignore[arg-type]
    with pytest.raises(Untraceable, match="does not run on a"):
        generate_block(LAYERS["henon"][0], 3)  # a wrong dim shows in torch itself
