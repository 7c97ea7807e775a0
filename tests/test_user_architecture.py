"""A user registers architectures outside models/ and has them checked by the API, pytest and the command.

`user-cubic-kick` claims truly that p ← p + c ⊙ q³ is symplectic; `user-squeeze` claims
symplecticity for (q, p) ↦ (2q, p), which is false. Neither is declared a control:
the user believes both claims, and the verifier must tell them apart.
"""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

USER_MODULE = textwrap.dedent('''
    import torch
    from sympy import Rational
    from torch import nn
    from verify.properties import Symplectic, VolumePreserving
    from verify import Builder, Size, SymbolicBlock, architecture

    def cubic_block(cfg):
        def kick_drift(b, x):  # the whole forward: the twin must describe the code it is bound to
            q, p = x[:1], x[1:]
            p = p + (q * q * q).hadamard(b.vector("c", 1))
            return Builder.concat(q + p.scale(Rational(1, 10)), p)
        return [SymbolicBlock("cubic kick then drift", 2, kick_drift)]

    @architecture("user-cubic-kick", claims=[Symplectic(), VolumePreserving()], task="pendulum", blocks=cubic_block,
                  sizes={"quick": Size(config={}, steps=100, lr=1e-2)})
    class CubicKick(nn.Module):
        """p <- p + c q^3 followed by a drift q <- q + p."""
        def __init__(self):
            super().__init__()
            self.c = nn.Parameter(torch.tensor([-0.05]))
        def forward(self, x):
            q, p = x[:, :1], x[:, 1:]
            p = p + self.c * q ** 3
            return torch.cat([q + 0.1 * p, p], dim=-1)

    def squeeze_block(cfg):
        return [SymbolicBlock("squeeze", 2, lambda b, x: Builder.concat(x[:1].scale(2) + b.bias("b", 1), x[1:]))]

    @architecture("user-squeeze", claims=[Symplectic()], task="pendulum", blocks=squeeze_block,
                  sizes={"quick": Size(config={}, steps=50, lr=1e-2)})
    class Squeeze(nn.Module):
        """(q, p) -> (2 q + b, p): the user believes it symplectic."""
        def __init__(self):
            super().__init__()
            self.b = nn.Parameter(torch.zeros(1))
        def forward(self, x):
            return torch.cat([2 * x[:, :1] + self.b, x[:, 1:]], dim=-1)
''')


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory):
    """A folder that looks like an installed third-party package with a `verify.architectures` entry point."""
    d = tmp_path_factory.mktemp("userpkg")
    (d / "user_layers.py").write_text(USER_MODULE)
    dist = d / "user_layers-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: user-layers\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[verify.architectures]\nuser = user_layers\n")
    return d


def _env(plugin_dir):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(plugin_dir), str(ROOT), env.get("PYTHONPATH", "")])
    return env


def test_api_checks_a_user_architecture_registered_in_process():
    import torch
    from torch import nn

    from verify.properties import Symplectic
    from verify import Size, SymbolicBlock, architecture, check, unregister
    from verify.derive.symbolic import Builder

    def rotation_block(cfg):  # a quarter turn (q, p) -> (p, -q) is symplectic
        return [SymbolicBlock("quarter turn", 2, lambda b, x: Builder.concat(x[1:], -x[:1]))]

    @architecture("test-quarter-turn", claims=[Symplectic()], task="pendulum", blocks=rotation_block,
                  sizes={"quick": Size(config={}, steps=20)})
    class QuarterTurn(nn.Module):
        def __init__(self):
            super().__init__()
            self.s = nn.Parameter(torch.ones(1))

        def forward(self, x):
            return torch.cat([x[:, 1:] * self.s / self.s, -x[:, :1]], dim=-1)

    try:
        result = check("test-quarter-turn", rollout_steps=0, n_inputs=128, max_examples=20)
        assert result.result("Symplectic").verdict.value == "proved"
    finally:
        unregister("test-quarter-turn")


def test_command_finds_entry_point_architectures(plugin_dir):
    env = _env(plugin_dir)
    listed = subprocess.run([sys.executable, "-m", "verify.cli", "list"], env=env, capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0 and "user-cubic-kick" in listed.stdout and "user-squeeze" in listed.stdout
    args = ["--quiet", "--rollout-steps", "0", "--inputs", "128", "--examples", "20"]
    good = subprocess.run([sys.executable, "-m", "verify.cli", "check", "user-cubic-kick", *args],
                          env=env, capture_output=True, text=True, timeout=300)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "proved" in good.stdout
    bad = subprocess.run([sys.executable, "-m", "verify.cli", "check", "user-squeeze", *args],
                         env=env, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1 and "violated" in bad.stdout


def test_pytest_plugin_turns_user_claims_into_test_items(plugin_dir, tmp_path):
    test_file = tmp_path / "test_user_claims.py"
    test_file.write_text("def test_claim(registered_claim):\n    registered_claim.assert_expected()\n")
    # the same fallback as this suite's conftest: the plugin loads from its entry point when installed
    (tmp_path / "conftest.py").write_text((ROOT / "tests" / "conftest.py").read_text())
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", str(test_file), "-k", "cubic or squeeze", "-rA",
         "-q", "--verify-rollout-steps", "0", "-p", "no:cacheprovider", "--rootdir", str(tmp_path)],
        env=_env(plugin_dir), capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )
    out = proc.stdout + proc.stderr
    assert "PASSED test_user_claims.py::test_claim[user-cubic-kick::Symplectic]" in out, out
    assert "PASSED test_user_claims.py::test_claim[user-cubic-kick::VolumePreserving]" in out, out
    assert "FAILED test_user_claims.py::test_claim[user-squeeze::Symplectic]" in out, out  # the false claim is caught
    assert "1 failed, 2 passed" in out, out
    assert "user-squeeze" in out and "violated" in out
