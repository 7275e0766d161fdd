"""A model cut into a body and a head, the head named by the user (``algorithm.head``).

ANIL adapts only the head; ProtoNet embeds with the body; the hypernetwork generates the head. The head is one
sub-module (``"classifier"``, ``"fc"``, ``"head"``) or a list of parameter-name prefixes; the body is everything
else. With one sub-module, the body's features are the input that the model's forward hands that sub-module,
captured by a forward pre-hook that stops the forward there: the user's ``forward`` runs unchanged, no module is
copied or patched, and the body's work is done once per example however many inner steps follow.

The split assumes what fastadapt's own models do: the forward applies the head once, last, to the body's output,
so that ``model(x) == head(features(x))``. Work the forward does after the head (a temperature, a reshape) is
skipped by ANIL, ProtoNet and the hypernetwork; fold it into the head module instead.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from ..typing import Params
from ._functional import forward

#: How a config or a caller names the head: a sub-module, or parameter-name prefixes.
HeadSpec = str | Sequence[str]


class _Reached(BaseException):
    """Raised by the head's pre-hook with the head's input, ending the forward (a ``BaseException``, so that a
    user's ``except Exception`` in a forward does not swallow it)."""

    def __init__(self, features: Tensor) -> None:
        super().__init__()
        self.features = features


@dataclass(frozen=True, eq=False)
class HeadSplit:
    """``model``'s parameters split into the head (``prefixes``) and the body (the rest).

    Args:
        model: any ``nn.Module``.
        head: a sub-module name or a list of parameter-name prefixes (a prefix matches a parameter name
            equal to it or starting with it and a dot).
    """

    model: nn.Module
    head: HeadSpec = "head"
    prefixes: tuple[str, ...] = field(init=False, default=())
    module: nn.Module | None = field(init=False, default=None)  # the head as one sub-module, if it is one
    body_names: frozenset[str] = field(init=False, default=frozenset())

    def __post_init__(self) -> None:
        prefixes = (self.head,) if isinstance(self.head, str) else tuple(self.head)
        if not prefixes:
            raise ValueError("algorithm.head is empty; name the head sub-module, e.g. algorithm.head=classifier")
        names = [k for k, _ in self.model.named_parameters()]
        for prefix in prefixes:
            if not any(_under(k, prefix) for k in names):
                children = ", ".join(name for name, _ in self.model.named_children()) or "none"
                raise ValueError(
                    f"algorithm.head={prefix!r} names no parameters of {type(self.model).__name__} (its sub-modules: "
                    f"{children}); set algorithm.head to the sub-module that maps features to outputs"
                )
        if all(any(_under(k, p) for p in prefixes) for k in names):
            raise ValueError(f"algorithm.head={list(prefixes)} covers every parameter: nothing is left for the body")
        object.__setattr__(self, "prefixes", prefixes)
        object.__setattr__(self, "body_names", frozenset(k for k in names if not self.is_head(k)))
        module = None
        if len(prefixes) == 1:
            try:
                module = self.model.get_submodule(prefixes[0])
            except AttributeError:
                module = None
        object.__setattr__(self, "module", module)

    def is_head(self, name: str) -> bool:
        return any(_under(name, p) for p in self.prefixes)

    def body_params(self, params: Params) -> Params:
        """The body's entries of a parameter dict (full names; entries that are not the model's are left out)."""
        return {k: v for k, v in params.items() if k in self.body_names}

    def head_params(self, params: Params) -> Params:
        """The head's entries; named relative to the head sub-module when it is one, else full names."""
        if self.module is not None:
            start = self.prefixes[0] + "."
            return {k[len(start) :]: v for k, v in params.items() if k.startswith(start)}
        return {k: v for k, v in params.items() if self.is_head(k)}

    def full_head(self, head: Params) -> Params:
        """Head entries under their full model names (the inverse of :meth:`head_params`)."""
        if self.module is not None:
            return {f"{self.prefixes[0]}.{k}": v for k, v in head.items()}
        return head

    def features(self, params: Params, x: Tensor) -> Tensor:
        """What the model's forward hands the head for ``x`` ``(n, *x_shape)``, with the body's ``params``.

        Needs the head to be one sub-module, which the forward calls once on the body's output.
        """
        head = self._single("features")
        thread = threading.get_ident()

        def stop(_: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            if threading.get_ident() == thread:  # another thread's forward through the same model runs on
                raise _Reached(args[0] if args else next(iter(kwargs.values())))

        handle = head.register_forward_pre_hook(stop, with_kwargs=True)
        try:
            forward(self.model, params, x)
        except _Reached as reached:
            return reached.features
        finally:
            handle.remove()
        raise ValueError(
            f"{type(self.model).__name__}.forward never called its head {self.prefixes[0]!r}; "
            "set algorithm.head to the sub-module that the forward applies last"
        )

    def apply_head(self, head: Params, features: Tensor) -> Tensor:
        """The head sub-module on ``features`` with the head parameters ``head`` (as :meth:`head_params`)."""
        return forward(self._single("apply_head"), head, features)

    def _single(self, what: str) -> nn.Module:
        if self.module is None:
            raise ValueError(
                f"{what} needs the head to be one sub-module, but algorithm.head={list(self.prefixes)}; "
                "name one sub-module"
            )
        return self.module


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")
