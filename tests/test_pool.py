"""The 2x2 max-pooling of Conv4 and ResNet-12 against torch's ``F.max_pool2d``: values, and gradients of first and
second order, bit for bit, ties included; and which inputs go to torch's own kernel."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from fastadapt.models import Conv4, max_pool_2x2

pytestmark = pytest.mark.usefixtures("single_thread")

FAST = "_MaxPool2x2Backward"  # the grad_fn name of the corner-based path
NATIVE = "MaxPool2DWithIndicesBackward0"


def _first_and_second_order(pool: object, x: Tensor, weight: Tensor, direction: Tensor) -> tuple[Tensor, ...]:
    out = pool(x)  # type: ignore[operator]
    (grad,) = torch.autograd.grad((out.square() * weight).sum(), x, create_graph=True)
    (hessian_vector,) = torch.autograd.grad((grad * direction).sum(), x)
    return out.detach(), grad.detach(), hessian_vector


@pytest.mark.parametrize("shape", [(4, 64, 28, 28), (3, 64, 29, 27), (2, 300, 16, 16)])
@pytest.mark.parametrize("values", ["normal", "ties"])
def test_fast_path_equals_torch_bit_for_bit(shape: tuple[int, ...], values: str) -> None:
    """Ties (here most windows hold equal values, as flat image backgrounds give) go to the first maximum in
    row-major order, as torch's kernel sends them; odd sizes drop the last row / column as torch does."""
    generator = torch.Generator().manual_seed(0)
    if values == "normal":
        x = torch.randn(shape, dtype=torch.float64, generator=generator)
    else:
        x = torch.randint(0, 2, shape, generator=generator).double()
    x.requires_grad_()
    assert max_pool_2x2(x).grad_fn.name() == FAST  # type: ignore[union-attr]
    pooled = (shape[0], shape[1], shape[2] // 2, shape[3] // 2)
    weight = torch.randn(pooled, dtype=torch.float64, generator=generator)
    direction = torch.randn(shape, dtype=torch.float64, generator=generator)
    ours = _first_and_second_order(max_pool_2x2, x, weight, direction)
    reference = _first_and_second_order(lambda t: F.max_pool2d(t, 2), x, weight, direction)
    for a, b in zip(ours, reference, strict=True):
        assert torch.equal(a, b)
    assert ours[2].abs().sum() > 0  # the second-order term is exercised, not zero on both sides


def test_without_gradient_and_with_nan() -> None:
    x = torch.randn(4, 64, 28, 28)
    x[0, 0, 3, 4] = float("nan")
    with torch.no_grad():
        ours = max_pool_2x2(x.requires_grad_())
    reference = F.max_pool2d(x.detach(), 2)
    assert torch.isnan(ours[0, 0, 1, 2]) and torch.equal(ours.isnan(), reference.isnan())
    assert torch.equal(ours.nan_to_num(), reference.nan_to_num())


def test_gradient_with_nan_goes_where_torchs_does() -> None:
    # torch's kernel takes a NaN as the window's maximum (the last NaN in row-major order); so must the indices
    x = torch.randn(4, 64, 28, 28, dtype=torch.float64)
    nan = float("nan")
    x[0, 0, 0, 0] = nan  # top-left of its window
    x[0, 0, 1, 3] = nan  # bottom-right
    x[0, 1, 0, 1] = x[0, 1, 1, 0] = nan  # top-right and bottom-left: the bottom-left one is the later
    x[0, 2, 2, 2] = x[0, 2, 2, 3] = x[0, 2, 3, 2] = x[0, 2, 3, 3] = nan  # all four
    weight = torch.randn(4, 64, 14, 14, dtype=torch.float64)
    grads = []
    for pool in (max_pool_2x2, lambda t: F.max_pool2d(t, 2)):
        leaf = x.clone().requires_grad_()
        out = pool(leaf)
        (grad,) = torch.autograd.grad(out, leaf, weight)
        grads.append((out, grad))
    (ours, our_grad), (reference, reference_grad) = grads
    assert torch.equal(ours.isnan(), reference.isnan()) and int(ours.isnan().sum()) == 4
    assert torch.equal(our_grad, reference_grad)


@pytest.mark.parametrize(
    "make",
    [
        lambda: torch.randn(2, 8, 28, 28),  # too small to gain
        lambda: torch.randn(4, 64, 28, 28).contiguous(memory_format=torch.channels_last),  # torch is fast there
        lambda: torch.randn(64, 28, 28),  # unbatched
    ],
    ids=["small", "channels-last", "unbatched"],
)
def test_other_inputs_go_to_torch(make: object) -> None:
    x = make().requires_grad_()  # type: ignore[operator]
    out = max_pool_2x2(x)
    assert out.grad_fn.name() == NATIVE
    assert torch.equal(out, F.max_pool2d(x, 2))


def test_under_vmap_goes_to_torch() -> None:
    x = torch.randn(3, 4, 64, 28, 28)
    out = torch.func.vmap(max_pool_2x2)(x)
    assert torch.equal(out, F.max_pool2d(x.flatten(0, 1), 2).view(3, 4, 64, 14, 14))


def test_conv4_second_order_meta_gradient_equals_torch_pooling() -> None:
    """One second-order MAML step through Conv4 (whose first block takes the corner path at this size) gives the
    meta-gradient of the same network built on ``F.max_pool2d``."""
    torch.manual_seed(0)
    model = Conv4(hidden=64).double()
    support, query = torch.randn(5, 1, 28, 28, dtype=torch.float64), torch.randn(6, 1, 28, 28, dtype=torch.float64)
    labels_s, labels_q = torch.arange(5), torch.arange(6) % 5
    params = dict(model.named_parameters())

    def meta_gradient(pool: object) -> tuple[Tensor, ...]:
        def forward(p: dict[str, Tensor], x: Tensor) -> Tensor:
            for i in range(4):
                x = torch.conv2d(x, p[f"body.{4 * i}.weight"], p[f"body.{4 * i}.bias"], padding=1)
                x = F.batch_norm(x, None, None, p[f"body.{4 * i + 1}.weight"], p[f"body.{4 * i + 1}.bias"], True)
                x = torch.relu(pool(x))  # type: ignore[operator]
            return F.linear(x.flatten(1), p["head.weight"], p["head.bias"])

        inner = F.cross_entropy(forward(params, support), labels_s)
        grads = torch.autograd.grad(inner, list(params.values()), create_graph=True)
        adapted = {k: v - 0.4 * g for (k, v), g in zip(params.items(), grads, strict=True)}
        return torch.autograd.grad(F.cross_entropy(forward(adapted, query), labels_q), list(params.values()))

    ours = meta_gradient(max_pool_2x2)
    reference = meta_gradient(lambda t: F.max_pool2d(t, 2))
    for a, b in zip(ours, reference, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    # and Conv4 itself runs its first block on the corner path
    assert model.body[2](torch.randn(5, 64, 28, 28, requires_grad=True)).grad_fn.name() == FAST
