"""Meta-learning algorithms as pure functions over parameter dicts, and an explicit registry."""

from __future__ import annotations

from ._batching import STRATEGIES as STRATEGIES
from ._batching import default_strategy as default_strategy
from ._batching import meta_gradient as meta_gradient
from ._functional import forward as forward
from ._functional import gradient_descent as gradient_descent
from ._functional import task_loss as task_loss
from ._functional import task_metric as task_metric
from ._protocol import Algorithm as Algorithm
from ._protocol import query_objective as query_objective
from ._registry import REGISTRY as REGISTRY
from ._registry import build_algorithm as build_algorithm
from .anil import ANIL as ANIL
from .hypernet import HyperNet as HyperNet
from .maml import MAML as MAML
from .metasgd import MetaSGD as MetaSGD
from .protonet import ProtoNet as ProtoNet
from .reptile import Reptile as Reptile
