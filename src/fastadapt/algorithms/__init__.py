"""Meta-learning algorithms as pure functions over parameter dicts, and an explicit registry."""

from __future__ import annotations

from ._batching import STRATEGIES as STRATEGIES
from ._batching import Strategy as Strategy
from ._batching import default_strategy as default_strategy
from ._batching import meta_gradient as meta_gradient
from ._batching import vmap_hazard as vmap_hazard
from ._functional import class_means as class_means
from ._functional import forward as forward
from ._functional import gradient_descent as gradient_descent
from ._functional import module_params as module_params
from ._functional import native_norms as native_norms
from ._functional import subset as subset
from ._heads import HeadSpec as HeadSpec
from ._heads import HeadSplit as HeadSplit
from ._losses import LOSSES as LOSSES
from ._losses import METRICS as METRICS
from ._losses import Metric as Metric
from ._losses import accuracy as accuracy
from ._losses import resolve_loss as resolve_loss
from ._losses import resolve_metric as resolve_metric
from ._protocol import Algorithm as Algorithm
from ._protocol import query_objective as query_objective
from ._registry import REGISTRY as REGISTRY
from ._registry import build_algorithm as build_algorithm
from .anil import ANIL as ANIL
from .hypernet import HyperNet as HyperNet
from .imaml import IMAML as IMAML
from .imaml import conjugate_gradient as conjugate_gradient
from .logistic import Logistic as Logistic
from .maml import MAML as MAML
from .metasgd import MetaSGD as MetaSGD
from .protonet import ProtoNet as ProtoNet
from .reptile import Reptile as Reptile
from .ridge import Ridge as Ridge
from .ridge import ridge_solve as ridge_solve
