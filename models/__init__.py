"""The architectures of the field, declared with their claims, their tasks and negative controls.

Importing this package registers everything in it.
"""
from models import tasks  # noqa: F401  (tasks first: architectures name them)
from models import controls, hamiltonian_net, henonnet, sympnets  # noqa: F401
