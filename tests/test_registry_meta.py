"""Every registered architecture is tested, reported and documented."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from verify.declare.registry import all_architectures

ROOT = Path(__file__).resolve().parent.parent


def test_every_architecture_is_tested_by_the_plugin():
    from verify import pytest_plugin

    source = (ROOT / "tests" / "test_registered_claims.py").read_text()
    assert "registered_claim" in source and hasattr(pytest_plugin, "pytest_generate_tests")
    for arch in all_architectures():
        assert arch.claims, arch.name
        assert arch.task is not None, f"{arch.name} has no training task"


def test_every_architecture_has_a_committed_report_with_its_claims():
    for arch in all_architectures():
        if arch.origin.startswith(("tests.", "test_", "user_layers", "verify_clients.")):
            continue  # test-only architectures (tests/clients is checked by tests/test_clients.py, not reported)
        data = json.loads((ROOT / "reports" / arch.name / "report.json").read_text())
        assert [c["property"] for c in data["claims"]] == [c.name for c in arch.claims], arch.name
        assert data["passed_as_expected"], f"the committed report of {arch.name} is not as expected"
        assert (ROOT / "reports" / arch.name / "README.md").is_file()


def test_every_architecture_is_documented_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    for arch in all_architectures():
        assert f"`{arch.name}`" in readme, f"README.md does not mention `{arch.name}`"


def test_controls_declare_why_their_claims_are_false():
    controls = [a for a in all_architectures() if a.is_control]
    assert len(controls) >= 4
    for arch in controls:
        for claim in arch.claims:
            if not claim.expected:
                assert len(claim.reason) > 10


def test_imports_work_in_either_order():
    """`from verify.properties import Symplectic` first (as the README shows) must not hit an import cycle."""
    import subprocess
    import sys

    for first, second in (("verify.properties", "verify"), ("verify", "verify.properties"), ("verify.models", "verify.properties")):
        code = f"import {first}; import {second}; from verify.properties import Symplectic; from verify import check"
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert proc.returncode == 0, proc.stderr


def _collect(*options):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "pytest", "tests/test_registered_claims.py", "--collect-only", "-q",
                           "-p", "no:cacheprovider", *options], capture_output=True, text=True, timeout=300, cwd=ROOT)
    items = [line for line in proc.stdout.splitlines() if "::" in line]
    return proc, items


def test_the_pytest_plugin_can_be_limited_to_names_or_a_package():
    from verify.declare.registry import all_architectures

    archs = {a.name: a for a in all_architectures()}
    proc, items = _collect("--verify-only", "la-*,g-sympnet")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    names = {i.split("[", 1)[1].split("::", 1)[0] for i in items}
    assert names == {"la-sympnet", "g-sympnet"}
    per_test = len(archs["la-sympnet"].claims) + len(archs["g-sympnet"].claims)
    functions = {i.split("::", 1)[1].split("[", 1)[0] for i in items}
    assert len(functions) >= 3 and len(items) == len(functions) * per_test  # every claim of both, in each function

    proc, items = _collect("--verify-package", "verify.models.permutation")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    names = {i.split("[", 1)[1].split("::", 1)[0] for i in items}
    assert names and all(archs[n].origin.startswith("verify.models.permutation.") for n in names)


def test_a_selection_that_matches_nothing_is_a_usage_error_that_says_so():
    proc, items = _collect("--verify-only", "no-such-architecture-*")
    assert proc.returncode != 0 and not items
    assert "selects no registered architecture" in proc.stdout + proc.stderr


def test_a_registered_claims_test_id_names_its_architecture_group():
    from verify.pytest_plugin import architecture_group

    assert architecture_group("tests/test_registered_claims.py::test_claim[g-sympnet::Symplectic]") == "architecture:g-sympnet"
    assert architecture_group("tests/test_x.py::test_y[3]") is None
    assert architecture_group("tests/test_x.py::test_y") is None


def test_with_xdist_an_architectures_claims_share_one_worker():
    """`-n 2 --dist loadgroup` runs every test of one architecture on one worker (checked once per worker), whatever
    pytest's node-id scheme: on pytest 9.2 xdist's own grouping is silently lost (pytest-xdist#1386)."""
    pytest.importorskip("xdist")
    proc = subprocess.run([sys.executable, "-m", "pytest", "tests/test_registered_claims.py", "-v", "-n", "2",
                           "--dist", "loadgroup", "-p", "no:cacheprovider", "--verify-only", "la-sympnet,g-sympnet"],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    workers: dict[str, set[str]] = {}
    for line in proc.stdout.splitlines():
        if line.startswith("[gw") and "[" in line.split("::", 1)[-1]:
            worker = line.split("]", 1)[0][1:]
            arch = line.rsplit("[", 1)[1].split("::", 1)[0]
            workers.setdefault(arch, set()).add(worker)
    assert set(workers) == {"la-sympnet", "g-sympnet"}, proc.stdout[-3000:]
    assert all(len(w) == 1 for w in workers.values()), workers
