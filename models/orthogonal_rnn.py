"""Orthogonal RNNs (expRNN-style) on the adding task generated here.

h_{t+1} = tanh(U x_t + Q h_t + b), y = v·h_T + c, with the recurrent weight Q ∈ O(32) given by torch's
`parametrizations.orthogonal` (matrix_exp: expRNN, Lezcano-Casado & Martínez-Rubio 2019; cayley and householder as
well), started at the identity so that torch's stored base is exactly I and det Q = +1.

Claims: `OnManifold(Orthogonal(32), "recurrent.weight", every_iterate=True)` (every optimiser iterate of Q lies on
O(32): the trainer records ‖QᵀQ − I‖₂ at every step) and `OnManifold(SO(32), "recurrent.weight")` of the trained Q.

The adding task (Hochreiter & Schmidhuber 1997; Arjovsky et al. 2016): a sequence of T pairs (u_t, m_t), u_t ~ U(0, 1),
m_t ∈ {0, 1} marking exactly two positions (one in each half); the target is the sum of the two marked u_t. Predicting
the mean (1) scores MSE 1/6 ≈ 0.167; the task is learned when the held-out MSE is below `learned_below`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import parametrizations

from verify import Size, architecture
from verify.declare.manifolds import SO, Orthogonal
from verify.declare.registry import register_task
from verify.properties import OnManifold

HIDDEN = 32
LENGTH = 10


@dataclass(frozen=True)
class AddingTask:
    """x: (n, T, 2) pairs (value, marker), y: (n, 1) the sum of the two marked values."""

    name: str = f"adding-{LENGTH}"
    length: int = LENGTH
    learned_below: float = 0.05  # the mean predictor scores 1/6 ≈ 0.167
    description: str = (f"the adding task, T = {LENGTH}: the sum of the two marked values of a sequence of U(0, 1) "
                        "values (the mean predictor scores MSE 1/6)")

    @property
    def dim(self) -> int:
        return 2

    def dataset(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        T, half = self.length, self.length // 2
        u = torch.rand(n, T, generator=g, dtype=torch.float64)
        first = torch.randint(0, half, (n,), generator=g)
        second = torch.randint(half, T, (n,), generator=g)
        m = torch.zeros(n, T, dtype=torch.float64)
        rows = torch.arange(n)
        m[rows, first] = 1.0
        m[rows, second] = 1.0
        y = (u * m).sum(dim=1, keepdim=True)
        return torch.stack([u, m], dim=-1), y


register_task(AddingTask())


class _OrthogonalRNN(nn.Module):
    """An RNN whose recurrent weight is torch's parametrizations.orthogonal(map) of a weight started at I."""

    orthogonal_map = "matrix_exp"

    def __init__(self, hidden: int = HIDDEN) -> None:
        super().__init__()
        self.input = nn.Linear(2, hidden)
        self.recurrent = nn.Linear(hidden, hidden, bias=False)
        with torch.no_grad():
            self.recurrent.weight.copy_(torch.eye(hidden))
        parametrizations.orthogonal(self.recurrent, orthogonal_map=self.orthogonal_map)
        self.output = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        Q = self.recurrent.weight  # the parametrisation evaluated once per sequence, not once per time step
        drive = self.input(x)  # (n, T, hidden)
        h = drive.new_zeros(x.shape[0], Q.shape[0])
        for t in range(x.shape[1]):
            h = torch.tanh(drive[:, t] + h @ Q.T)
        return self.output(h)


def _sizes(lr: float) -> dict[str, Size]:
    return {"quick": Size(steps=500, lr=lr, n_train=2048, batch=128),
            "full": Size(steps=1500, lr=lr, n_train=8192, batch=128)}


def _claims() -> list[OnManifold]:
    return [OnManifold(Orthogonal(HIDDEN), "recurrent.weight", every_iterate=True),
            OnManifold(SO(HIDDEN), "recurrent.weight")]


@architecture("orthogonal-rnn-matrix-exp", task=f"adding-{LENGTH}", sizes=_sizes(3e-2), claims=_claims(),
              reference="expRNN (Lezcano-Casado & Martínez-Rubio 2019): torch.nn.utils.parametrizations.orthogonal"
                        "(orthogonal_map='matrix_exp') on the recurrent weight")
class OrthogonalRNNMatrixExp(_OrthogonalRNN):
    """An RNN (hidden 32) whose recurrent weight is Q = exp(A), A skew (expRNN), on the adding task."""

    orthogonal_map = "matrix_exp"


@architecture("orthogonal-rnn-cayley", task=f"adding-{LENGTH}", sizes=_sizes(3e-2), claims=_claims(),
              reference="torch.nn.utils.parametrizations.orthogonal(orthogonal_map='cayley') on the recurrent weight")
class OrthogonalRNNCayley(_OrthogonalRNN):
    """An RNN (hidden 32) whose recurrent weight is the Cayley map of a skew matrix, on the adding task."""

    orthogonal_map = "cayley"


@architecture("orthogonal-rnn-householder", task=f"adding-{LENGTH}", sizes=_sizes(3e-2), claims=_claims(),
              reference="torch.nn.utils.parametrizations.orthogonal(orthogonal_map='householder') on the recurrent "
                        "weight")
class OrthogonalRNNHouseholder(_OrthogonalRNN):
    """An RNN (hidden 32) whose recurrent weight is a product of Householder reflectors, on the adding task."""

    orthogonal_map = "householder"
