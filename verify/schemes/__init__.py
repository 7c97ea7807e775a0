"""Exact calculus of time-discretisation schemes (Runge--Kutta, partitioned RK, compositions).

Schemes (immutable, exact, validated on construction):
    ButcherTableau(A, b, c=None, name=..., b_embedded=None)   # also .from_floats(..., tolerance=...)
    PartitionedTableau(first, second, name=...)
    Splitting([(part, coefficient), ...], name=..., parts=2)
    Composition(base, gammas, name=...)                        # .flatten() -> one method
    catalogue.get(name), catalogue.names(), catalogue.LITERATURE

Properties, each a :class:`Finding` (name, value, holds, derivation, seconds, status):
    order, separable_order, embedded_order, composition_conditions, stage_order,
    symplectic, symmetric, quadratic_invariants, stability_function, a_stable,
    l_stable, algebraically_stable, real_stability_interval,
    imaginary_stability_interval, max_stable_step(scheme, W), analyse(scheme)

Coefficients are handled in Q (Fractions, scaled to integers in the tree
recursion) or in a number field Q(phi) with integer-vector elements, so every
zero test and sign decision is exact; sympy steps run under a time limit.
"""

from .exact import SchemeError
from .properties import (
    Finding,
    a_stable,
    algebraically_stable,
    analyse,
    composition_conditions,
    embedded_order,
    imaginary_stability_interval,
    l_stable,
    max_stable_step,
    order,
    order_conditions,
    quadratic_invariants,
    real_stability_interval,
    separable_order,
    stability_function,
    stage_order,
    symmetric,
    symplectic,
)
from .tableau import ButcherTableau, Composition, PartitionedTableau, Scheme, Splitting, exact_number
from .trees import tree_counts

__all__ = [
    "SchemeError", "Finding", "ButcherTableau", "PartitionedTableau", "Splitting", "Composition", "Scheme",
    "exact_number", "tree_counts", "analyse", "order", "separable_order", "embedded_order", "order_conditions",
    "composition_conditions", "stage_order", "symplectic", "symmetric", "quadratic_invariants",
    "stability_function", "a_stable", "l_stable", "algebraically_stable", "real_stability_interval",
    "imaginary_stability_interval", "max_stable_step",
]
