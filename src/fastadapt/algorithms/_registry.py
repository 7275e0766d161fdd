"""The explicit name -> algorithm table (no registration by import side effect)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from ._protocol import Algorithm
from .anil import ANIL
from .hypernet import HyperNet
from .imaml import IMAML
from .logistic import Logistic
from .maml import MAML
from .metasgd import MetaSGD
from .protonet import ProtoNet
from .reptile import Reptile
from .ridge import Ridge


@dataclass(frozen=True)
class Entry:
    summary: str
    reference: str
    build: Callable[..., Algorithm]


REGISTRY: dict[str, Entry] = {
    "maml": Entry("MAML, second order", "Finn et al. 2017, arXiv:1703.03400", MAML),
    "fomaml": Entry(
        "first-order MAML",
        "Finn et al. 2017, arXiv:1703.03400",
        lambda **kw: MAML(first_order=True, name="fomaml", **kw),
    ),
    "imaml": Entry(
        "implicit MAML: proximal inner problem, conjugate-gradient meta-gradient, memory constant in inner steps",
        "Rajeswaran et al. 2019, arXiv:1909.04630",
        IMAML,
    ),
    "anil": Entry("ANIL: only the head adapts", "Raghu et al. 2020, arXiv:1909.09157", ANIL),
    "metasgd": Entry("Meta-SGD: learned per-parameter learning rates", "Li et al. 2017, arXiv:1707.09835", MetaSGD),
    "reptile": Entry("Reptile: meta model averaging", "Nichol et al. 2018, arXiv:1803.02999", Reptile),
    "protonet": Entry("Prototypical Networks", "Snell et al. 2017, arXiv:1703.05175", ProtoNet),
    "logistic": Entry(
        "logistic regression on frozen (pretrained) features; no meta-training",
        "RFS, Tian et al. 2020, arXiv:2003.11539",
        Logistic,
    ),
    "ridge": Entry(
        "closed-form ridge fold-in of a linear head, meta-learned prior mean and precision (meta-learned MF)",
        "R2-D2, Bertinetto et al. 2019, arXiv:1805.08136",
        Ridge,
    ),
    "hypernet": Entry(
        "task -> weights generator (hypernetwork); optional refinement steps",
        "Ha et al. 2016, arXiv:1609.09106; VERSA, Gordon et al. 2019, arXiv:1805.09921",
        HyperNet,
    ),
}


def build_algorithm(name: str, model: nn.Module, **options: Any) -> Algorithm:
    """Builds a registered algorithm over ``model``; ``options`` are its constructor's keywords."""
    if name not in REGISTRY:
        raise ValueError(f"unknown algorithm {name!r}; choose one of {sorted(REGISTRY)}")
    try:
        return REGISTRY[name].build(model=model, **options)
    except TypeError as error:
        raise ValueError(f"bad options for algorithm {name!r}: {error}") from error
