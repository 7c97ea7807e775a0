"""The architectures of the field, declared with their claims, their tasks and negative controls.

Importing this package registers everything in it.
"""
from verify.models import tasks  # noqa: F401  (tasks first: architectures name them)
from verify.models import sympnets, henonnet, hamiltonian_net, scheme_nets  # noqa: F401,I001  (scheme_nets has two controls too)
from verify.models import controls  # noqa: F401  (negative controls)
from verify.models import image_tasks, equivariant_cnns  # noqa: F401,I001  (G-equivariance: escnn steerable CNNs and controls)
from verify.models import set_tasks, permutation  # noqa: F401,I001  (permutation equivariance: DeepSets, GNN and a control)
from verify.models import iresnet  # noqa: F401,I001  (i-ResNets: Lipschitz bounds and iterative inverses, and controls)
from verify.models import flow_tasks, flows, flow_controls  # noqa: F401,I001  (normalising flows: NICE, RealNVP, Glow; controls)
from verify.models import flows_glow  # noqa: F401,I001  (Glow on 8×8 digits, d = 64, and its two controls)
from verify.models import optimizer_steps  # noqa: F401,I001  (optimisers as maps of (θ, v): conformal symplecticity)
from verify.models import optimizer_variants  # noqa: F401,I001  (a cosine schedule, SGDW and Adam as maps: what is and is not conformal)
from verify.models import manifold_layers  # noqa: F401,I001  (manifold constraints: orthogonal, Stiefel, SPD layers; controls)
from verify.models import riemannian_layers  # noqa: F401,I001  (geoopt Riemannian SGD/Adam on St(16, 8), every iterate; controls)
from verify.models import stiefel_sgd_layers  # noqa: F401,I001  (our own Riemannian SGD on St(16, 8): QR/polar retractions, every iterate; a control)
from verify.models import stiefel_retraction_layers  # noqa: F401,I001  (QR/polar retractions as parametrisations: forms bound and proved; a control)
from verify.models import sphere_spd_layers  # noqa: F401,I001  (every iterate on the sphere and SPD: geotorch.sphere, geotorch.positive_definite, our sphere layer; a control)
from verify.models import orthogonal_rnn  # noqa: F401,I001  (expRNN-style orthogonal RNNs on the adding task)
