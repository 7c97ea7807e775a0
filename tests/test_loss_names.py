"""A report names the loss its task trains on: "MSE" only for a flow-map task, the negative log-likelihood for a
density, cross entropy for classification (verify/train/loss_names.py, verify/report/pages.py)."""
from __future__ import annotations

import torch

from verify.declare.registry import get, get_task
from verify.train.loss_names import loss_label, loss_phrase


def test_each_task_kind_gets_its_own_loss_name():
    from verify.models import flow_tasks, image_tasks  # noqa: F401  (register the tasks)
    from verify.models.chain_tasks import FPUTChain

    assert loss_label(FPUTChain(name="t", dim=8, modes=2)) == "MSE"  # scored by the trainer's mean squared error
    assert "negative log-likelihood" in loss_label(get_task("two-moons"))
    assert "cross entropy" in loss_label(image_tasks.DigitsClassification())

    class Custom:  # a task with its own unnamed objective is not called an MSE
        def model_loss(self, model, x, y):
            return model(x).sum()

    assert loss_label(Custom()) == "loss"
    assert loss_phrase(Custom(), 1, 2) == "final training loss (loss) 1, held-out 2"


def test_a_density_flow_page_says_negative_log_likelihood_not_mse(tmp_path):
    from verify.checking.api import ArchitectureResult
    from verify.report.pages import write_architecture
    from verify.train.training import Trained

    arch = get("nice")
    torch.manual_seed(0)
    model = arch.build("quick").eval()
    trained = Trained(architecture="nice", size="quick", model=model, seed=0, device="cpu", history=[3.0, 2.5],
                      test_loss=2.4, seconds=0.1, steps=2)
    result = ArchitectureResult(name="nice", size="quick", results=[], trained=trained, architecture=arch,
                                environment={"seed": 0})
    text = (write_architecture(result, tmp_path) / "README.md").read_text()
    assert "final training loss (negative log-likelihood, nats per input) 2.5, held-out 2.4" in text, text
    assert "MSE" not in text
