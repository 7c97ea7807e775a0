"""Every registered architecture is tested, reported and documented."""
import json
from pathlib import Path

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
