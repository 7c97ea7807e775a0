"""pytest plugin: every registered architecture × claim becomes a test item.

A test function that takes the fixture `registered_claim` is parametrised over the
registry (built-in models, entry-point plugins and VERIFY_PLUGINS modules), or the part
of it that `--verify-only` (name patterns) and `--verify-package` (where declared) select.
Each architecture is trained and checked once per session; the item asserts its
claim came out as expected (proved/holds, or violated for a control's false claim).
"""
from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import Any, Sequence

import pytest

from verify.checking.api import ArchitectureResult, ClaimResult, check
from verify.declare.registry import Architecture, all_architectures


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("verify", "structure-claim verification")
    group.addoption("--verify-size", default="quick", help="model size for registry claims (quick|full)")
    group.addoption("--verify-seed", type=int, default=0, help="seed for training and checks")
    group.addoption("--verify-rollout-steps", type=int, default=10_000, help="long-rollout steps")
    group.addoption("--verify-only", default="", metavar="PATTERNS",
                    help="comma-separated name patterns (fnmatch, e.g. 'my-*,hnn-*'): check only these architectures")
    group.addoption("--verify-package", default="", metavar="PACKAGES",
                    help="comma-separated module prefixes (e.g. 'my_package'): check only architectures declared there")


def selected(architectures: Sequence[Architecture], only: str = "", package: str = "") -> list[Architecture]:
    """The architectures a run covers: all of them, or those matching a name pattern and/or declared in a package."""
    patterns = [p.strip() for p in only.split(",") if p.strip()]
    packages = [p.strip() for p in package.split(",") if p.strip()]
    out = []
    for a in architectures:
        if patterns and not any(fnmatch.fnmatchcase(a.name, p) for p in patterns):
            continue
        if packages and not any(a.origin == p or a.origin.startswith(p + ".") for p in packages):
            continue
        out.append(a)
    return out


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
        cfg = metafunc.config
        archs = selected(all_architectures(), cfg.getoption("--verify-only"), cfg.getoption("--verify-package"))
        # one xdist group per architecture: with `-n N --dist loadgroup` its claims share one worker, so it is
        # trained once (the on-disk model cache covers the other distribution modes and repeated runs)
        params = [pytest.param((a.name, c.name), id=f"{a.name}::{c.name}", marks=pytest.mark.xdist_group(a.name))
                  for a in archs for c in a.claims]
        if not params and (cfg.getoption("--verify-only") or cfg.getoption("--verify-package")):
            raise pytest.UsageError(
                f"--verify-only={cfg.getoption('--verify-only')!r} --verify-package={cfg.getoption('--verify-package')!r} "
                f"selects no registered architecture (there are {len(all_architectures())}); "
                "fix the pattern (see `verify list`) or drop the option")
        metafunc.parametrize("registered_claim", params, indirect=True)


# a registered claim's test id ends in [architecture::Claim]; its group is the architecture
_CLAIM_ID = re.compile(r"\[([^\[\]]+)::[^\[\]:]+\]$")


def architecture_group(nodeid: str) -> str | None:
    """The xdist group of a registered claim's test ("architecture:NAME"), None for any other test."""
    m = _CLAIM_ID.search(nodeid)
    return f"architecture:{m.group(1)}" if m else None


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`--dist loadgroup` that groups a registered architecture's claims on one worker whatever the pytest version.

    xdist's own loadgroup marks a group by rewriting the item's node id; pytest 9.2 derives node ids from a structured
    id instead, so the rewrite is silently lost and every claim of an architecture can land on a different worker, each
    re-checking it (pytest-xdist#1386: `pytest -n 2` then took as long as one process). This scheduler reads the group
    from the test id itself; the `xdist_group` marks stay for the xdist versions where they work."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler.loadgroup import LoadGroupScheduling

    class ArchitectureGroups(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            scope = super()._split_scope(nodeid)
            if scope != nodeid:  # a group suffix xdist could still write
                return scope
            return architecture_group(nodeid) or nodeid

    return ArchitectureGroups(config, log)


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
