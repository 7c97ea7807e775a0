"""pytest plugin: every registered architecture × claim becomes a test item.

A test function that takes the fixture `registered_claim` is parametrised over the
whole registry (built-in models, entry-point plugins and VERIFY_PLUGINS modules).
Each architecture is trained and checked once per session; the item asserts its
claim came out as expected (proved/holds, or violated for a control's false claim).
"""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from verify.checking.api import ArchitectureResult, ClaimResult, check
from verify.declare.registry import all_architectures


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("verify", "structure-claim verification")
    group.addoption("--verify-size", default="quick", help="model size for registry claims (quick|full)")
    group.addoption("--verify-seed", type=int, default=0, help="seed for training and checks")
    group.addoption("--verify-rollout-steps", type=int, default=10_000, help="long-rollout steps")


def pytest_configure(config: pytest.Config) -> None:
    from verify.cli import threads
    from verify.errors import VerifyError

    try:
        threads()
    except VerifyError as exc:  # a bad VERIFY_THREADS: one line, not a traceback
        raise pytest.UsageError(str(exc)) from None
    config.addinivalue_line("markers", "slow: long-running check (deselect with -m 'not slow')")
    config.addinivalue_line("markers", "gpu: needs CUDA; skipped with a reason when none is present")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "registered_claim" in metafunc.fixturenames:
        cases = [(a.name, c.name) for a in all_architectures() for c in a.claims]
        metafunc.parametrize("registered_claim", cases, ids=[f"{a}::{c}" for a, c in cases], indirect=True)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("gpu"):
        import torch

        if not torch.cuda.is_available():
            pytest.skip("needs CUDA: no GPU on this machine (the check runs on the CPU elsewhere in the suite)")


@dataclass
class ClaimCase:
    result: ArchitectureResult
    claim: ClaimResult

    def assert_expected(self) -> None:
        assert_claim(self.claim, self.result)


def assert_claim(claim: ClaimResult, result: ArchitectureResult | None = None) -> None:
    """Thin assertion over the evidence: fail with the evidence's own words."""
    if claim.as_expected and not (result and result.errors):
        return
    want = "proved or holds" if claim.claim.expected else "violated (a negative control)"
    lines = [f"{claim.claim} on {result.name if result else '?'}: verdict {claim.verdict.value}, expected {want}",
             f"  symbolic: {claim.symbolic_text}",
             f"  numeric: {claim.numeric.summary if claim.numeric else 'not run'}"]
    lines += [f"  error: {e}" for e in (result.errors if result else [])]
    pytest.fail("\n".join(lines), pytrace=False)


@pytest.fixture(scope="session")
def verify_results(request: pytest.FixtureRequest) -> dict[str, ArchitectureResult]:
    return {}


@pytest.fixture
def registered_claim(request: pytest.FixtureRequest, verify_results: dict[str, ArchitectureResult]) -> ClaimCase:
    name, prop = request.param
    if name not in verify_results:
        cfg = request.config
        verify_results[name] = check(
            name, size=cfg.getoption("--verify-size"), seed=cfg.getoption("--verify-seed"),
            rollout_steps=cfg.getoption("--verify-rollout-steps"),
        )
    result = verify_results[name]
    return ClaimCase(result, result.result(prop))
