"""Every-iterate claims on the sphere and SPD(16) (models/sphere_spd_layers.py): geotorch.sphere and
geotorch.positive_definite through their public API, our own sphere layer (proved and measured on every iterate), and
the Adam control that leaves the sphere at its first step; and the sphere's error model (a norm, √n/2)."""
from __future__ import annotations

import math

import torch

from verify.checking.api import check
from verify.declare.manifolds import Sphere, Stiefel
from verify.evidence import Verdict


def test_geotorch_sphere_and_spd_hold_on_every_iterate() -> None:
    for name, n_iterates in (("geotorch-sphere", 301), ("geotorch-spd", 301)):
        r = check(name, size="quick")
        (res,) = r.results
        assert res.verdict is Verdict.HOLDS and not r.errors, (name, res.numeric.summary)
        rec = r.trained.records[res.claim.name]
        assert rec["step"] == list(range(n_iterates)) and max(d / t for d, t in zip(rec["defect"], rec["tolerance"])) <= 1
        assert "no known form" in res.symbolic.summary  # geotorch's Sphere/PSD: judged numerically only


def test_our_sphere_layer_is_proved_and_every_iterate_measured() -> None:
    r = check("sphere-normalised", size="quick")
    (res,) = r.results
    assert res.verdict is Verdict.PROVED, (res.symbolic.summary, res.numeric.summary)
    assert "every one of the 301 iterates" in res.numeric.summary
    # the headline numbers of a claim about every iterate are the worst iterate's, its calibration ratio too
    assert res.numeric.search["calibration_ratio"] == res.numeric.tolerance / res.numeric.max_defect


def test_adam_on_a_unit_vector_leaves_the_sphere_at_its_first_step() -> None:
    r = check("sphere-adam-drift", size="quick")
    (res,) = r.results
    assert res.verdict is Verdict.VIOLATED and res.as_expected and res.numeric.search["drift"]["left_at"] == 1


def test_the_sphere_tolerance_is_a_norms_and_the_stiefel_one_a_gram_products() -> None:
    u = float(torch.finfo(torch.float32).eps)
    assert math.isclose(Sphere(16).tolerance(torch.float32).value, 4 * u * 2)  # √16/2
    assert math.isclose(Stiefel(16, 8).tolerance(torch.float32).value, 4 * u * 4)  # √16
    assert "√n/2" in Sphere(16).tolerance(torch.float32).formula
