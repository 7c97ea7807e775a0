"""Checks on the GPU, when there is one (skipped with a reason otherwise)."""
import pytest

from verify.checking.api import check


@pytest.mark.gpu
def test_trained_sympnet_is_checked_on_cuda():
    result = check("g-sympnet", device="cuda", rollout_steps=1000)
    assert result.trained.device.startswith("cuda")
    for r in result.results:
        assert r.numeric.device.startswith("cuda") and r.verdict.value == "proved"


@pytest.mark.gpu
def test_control_is_refuted_on_cuda():
    result = check("sympnet-mismatched", device="cuda", rollout_steps=0)
    assert result.result("Symplectic").verdict.value == "violated"
