"""Real libraries as clients: strupnet, FrEIA, memcnn, torchdiffeq, geotorch, e3nn and zuko modules, declared with true and
false claims in a package of their own (tests/clients, installed by setup.sh) that registers them through the
`verify.architectures` entry point, exactly as a user's package would.

Each architecture is checked once per session, with the same arguments as the pytest plugin's `registered_claim`
fixture (and into the same cache, so tests/test_registered_claims.py, which sees them through the entry point too,
reuses the result). Every verdict is asserted, and that nothing crashed: no stage ended in an exception.
A library that is not installed skips its architectures with the command that installs it.
"""
from __future__ import annotations

import importlib.metadata
import pytest
import torch

from verify.evidence import Failure, Measurement, Verdict, contradictions

CLIENT_PACKAGE = "verify_clients"
INSTALL_CLIENTS = "pip install --no-deps -e tests/clients (./setup.sh does it)"

# architecture -> (library, {claim: verdict}); false claims of negative controls must come out violated
CLIENTS = {
    "strupnet-sympnet": ("strupnet", {"Symplectic": "holds", "VolumePreserving": "holds", "Invertible": "holds"}),
    "strupnet-volnet": ("strupnet", {"VolumePreserving": "holds", "Symplectic": "violated"}),
    "freia-glow": ("FrEIA", {"Invertible": "holds", "VolumePreserving": "violated"}),
    "freia-nice": ("FrEIA", {"Invertible": "holds", "VolumePreserving": "holds"}),
    "memcnn-additive": ("memcnn", {"Invertible": "holds", "VolumePreserving": "holds"}),
    "memcnn-affine": ("memcnn", {"Invertible": "holds", "VolumePreserving": "violated"}),
    "torchdiffeq-node": ("torchdiffeq", {"StableStep": "holds"}),
    "torchdiffeq-hnn": ("torchdiffeq", {"Symplectic": "violated"}),
    "geotorch-so2": ("geotorch", {"Symplectic": "holds", "VolumePreserving": "holds", "Invertible": "holds"}),
    "e3nn-deepsets": ("e3nn", {"Equivariant": "holds"}),
    "e3nn-deepsets-index": ("e3nn", {"Equivariant": "violated"}),
    "e3nn-o3-cloud": ("e3nn", {"Equivariant": "holds"}),
    "e3nn-o3-cloud-bias": ("e3nn", {"Equivariant": "violated"}),
    "e3nn-o3-cloud-leaky-gate": ("e3nn", {"Equivariant": "violated"}),
    "zuko-nsf": ("zuko", {"Invertible": "holds", "LogDet": "holds"}),
    "zuko-nsf-negated-logdet": ("zuko", {"Invertible": "holds", "LogDet": "violated"}),
}


def _client_entry_points() -> list[importlib.metadata.EntryPoint]:
    return [ep for ep in importlib.metadata.entry_points(group="verify.architectures")
            if ep.value.split(".")[0] == CLIENT_PACKAGE]


def _require_clients() -> None:
    if not _client_entry_points():
        pytest.skip(f"the client package {CLIENT_PACKAGE} is not installed: {INSTALL_CLIENTS}")


def _require(library: str) -> None:
    _require_clients()
    from verify_clients import INSTALL, MISSING, available

    before = torch.get_default_dtype()
    try:
        if not available(library):
            pytest.skip(f"{library} is not installed ({MISSING[library]}): {INSTALL[library]}")
    finally:
        torch.set_default_dtype(before)  # a first import of strupnet here would switch it for the whole session


def _stage_exceptions(result) -> list[str]:
    """Every stage of every claim that ended in an exception (a crash turned into evidence): none may."""
    out = []
    for r in result.results:
        for ev in (r.symbolic, r.numeric, r.binding):
            if isinstance(ev, Failure) and ev.exception:
                out.append(f"{r.claim.name} {ev.stage}: {ev.exception}")
    return out


def test_the_client_package_registers_through_the_entry_point():
    _require_clients()
    from verify.declare.registry import all_architectures

    modules = {ep.value for ep in _client_entry_points()}
    assert {f"{CLIENT_PACKAGE}.{m}_models" for m in ("strupnet", "freia", "memcnn", "torchdiffeq", "geotorch", "e3nn", "zuko")} <= modules
    from verify_clients import MISSING

    registered = {a.name: a for a in all_architectures()}
    for name, (library, _) in CLIENTS.items():
        if library in MISSING:
            continue
        assert name in registered, f"{name} is not registered (is {library} importable? {MISSING.get(library)})"
        assert registered[name].origin.startswith(CLIENT_PACKAGE)


@pytest.mark.parametrize("name", list(CLIENTS))
def test_client_verdicts(name, verify_results, request):
    library, expected = CLIENTS[name]
    _require(library)
    from verify import check

    cfg = request.config
    if name not in verify_results:  # the same call (and cache) as the plugin's registered_claim fixture
        verify_results[name] = check(name, size=cfg.getoption("--verify-size"), seed=cfg.getoption("--verify-seed"),
                                     rollout_steps=cfg.getoption("--verify-rollout-steps"))
    result = verify_results[name]
    assert not result.errors, result.errors
    assert not _stage_exceptions(result), _stage_exceptions(result)
    got = {r.claim.name: r.verdict.value for r in result.results}
    assert got == expected, "\n".join(f"{r.claim} -> {r.verdict.value}: {r.numeric.summary if r.numeric else ''}"
                                      for r in result.results)
    assert all(r.as_expected for r in result.results)
    for r in result.results:
        if r.numeric is not None and r.numeric.verdict is Verdict.VIOLATED and isinstance(r.numeric, Measurement):
            assert r.numeric.classification == "structural", r.numeric.summary
        assert_consistent(r.numeric.summary if r.numeric else "")


# ------------------------------------------------------------------------------------------ messages and numbers
def assert_consistent(text: str) -> None:
    found = contradictions(text)
    assert not found, f"{found} contradict(s) itself in: {text}"


def test_the_consistency_check_catches_a_contradiction():
    assert_consistent("max defect 5.24e-08 ≤ 1.91e-06 (tolerance); float64 1e-7 ≤ 1.1e-06 = 1e-15 + storage 1.1e-06")
    assert contradictions("max defect 5.24e-08 > tolerance 1.91e-06") == ["5.24e-08 > 1.91e-06"]


# ------------------------------------------------------------------------------------------ raw library modules
def test_a_forward_that_needs_dt_is_named_not_blamed_on_the_dimension():
    _require("strupnet")
    import strupnet

    from verify import check
    from verify.properties import Symplectic

    with torch.random.fork_rng():
        torch.manual_seed(0)
        raw = strupnet.SympNet(dim=1, layers=2, width=4).eval()
    r = check(raw, claims=[Symplectic()], dim=2, n_inputs=64, max_examples=5).result("Symplectic")
    assert r.verdict is Verdict.ERROR
    text = r.numeric.summary + r.numeric.fix
    assert "'dt'" in text and "dimension" not in text, text
    assert "wrap the module" in r.numeric.fix


def test_a_registered_raw_module_that_needs_dt_fails_training_with_its_name():
    _require("strupnet")
    import strupnet

    from verify import Size, architecture, check, unregister
    from verify.properties import Symplectic

    architecture("test-raw-strupnet", claims=[Symplectic()], task="pendulum",
                 sizes={"quick": Size(config={}, steps=5)})(lambda: strupnet.SympNet(dim=1, layers=2, width=4))
    try:
        result = check("test-raw-strupnet", rollout_steps=0, n_inputs=64, max_examples=5)
    finally:
        unregister("test-raw-strupnet")
    r = result.result("Symplectic")
    assert r.verdict is Verdict.ERROR and result.errors
    assert "'dt'" in result.errors[0] and "wrap the module" in result.errors[0], result.errors
    assert r.numeric.stage == "training" and "'dt'" in r.numeric.summary


def test_a_weight_orthogonal_to_float32_is_not_a_structural_violation():
    """geotorch's SO(2) by the matrix exponential: stored float32 numbers orthogonal to float32 precision. In float64
    the weight is ~1e-7 off orthogonal; the storage precision explains it, so the oracle must not call it structural
    (and the float32 evaluation itself is judged against the float32 tolerance, whatever it finds)."""
    _require("geotorch")
    import geotorch
    from torch.nn.utils import parametrize

    from verify.checking.domains import Box
    from verify.checking.numeric import measure
    from verify.checking.search import Budget
    from verify.properties import VolumePreserving

    with torch.random.fork_rng():
        torch.manual_seed(3)
        layer = torch.nn.Linear(2, 2)
        so = geotorch.SO((2, 2))
        with torch.no_grad():
            layer.weight.copy_(so.sample())
        parametrize.register_parametrization(layer, "weight", so)
        with torch.no_grad():
            layer.parametrizations.weight.original.add_(torch.tensor([[0.0, 0.0], [0.37, 0.0]]))
    W64 = layer.parametrizations.weight[0].base.double()
    assert abs(float(torch.linalg.det(W64)) - 1) > 1e-9  # float32-stored: not exactly orthogonal in float64
    ev = measure(VolumePreserving(), layer.eval(), dim=2, depth=1, domain=Box([-1.0, -1.0], [1.0, 1.0]),
                 budget=Budget(n_inputs=256, starts=4, steps=4, examples=10))
    assert isinstance(ev, Measurement), ev.summary
    assert ev.max_defect_float64 > ev.tolerance_float64  # the plain float64 rule would have said "structural"
    assert ev.classification != "structural", ev.summary
    assert ev.search["storage_excused"] and "storage allowance" in ev.summary
    assert_consistent(ev.summary)
