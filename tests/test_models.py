"""Backbones: shapes, the meta-learning batch-norm against torch's, and configuration errors."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
import torch
from torch import nn

from fastadapt.models import MLP, BatchNorm, Conv4
from fastadapt.models._norm import primitive_batch_norm

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.mark.parametrize(
    ("image_size", "pooled_blocks", "feature_side"),
    [(28, 4, 1), (8, 3, 1), (28, 2, 7), (8, 0, 8)],
)
def test_conv4_shapes(image_size: int, pooled_blocks: int, feature_side: int) -> None:
    model = Conv4(in_channels=1, out_features=5, image_size=image_size, hidden=8, pooled_blocks=pooled_blocks)
    assert model.feature_dim == 8 * feature_side * feature_side
    x = torch.randn(6, 1, image_size, image_size)
    assert model.body(x).shape == (6, model.feature_dim)
    assert model(x).shape == (6, 5)


def test_conv4_default_is_the_papers_network() -> None:
    model = Conv4()  # Omniglot: 1 channel, 28x28, 64 filters, every block pools
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.padding) for c in convs] == [
        (1, 64, (3, 3), (1, 1)),
        *[(64, 64, (3, 3), (1, 1))] * 3,
    ]
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 4
    assert sum(isinstance(m, BatchNorm) for m in model.modules()) == 4
    assert model.head.in_features == 64 and model(torch.randn(2, 1, 28, 28)).shape == (2, 5)


@pytest.mark.parametrize("act", ["relu", "tanh", "softplus"])
def test_conv4_pool_first_is_the_papers_block_order(act: str) -> None:
    """Conv4 pools before the activation (cheaper); with max-pooling and a non-decreasing activation
    the function and its gradients equal the papers' conv -> batch-norm -> activation -> pool."""
    model = Conv4(hidden=8, act=act).double()
    x = torch.randn(6, 1, 28, 28, dtype=torch.float64)
    activation = {"relu": torch.relu, "tanh": torch.tanh, "softplus": nn.functional.softplus}[act]
    convs = [m for m in model.body if isinstance(m, nn.Conv2d)]
    norms = [m for m in model.body if isinstance(m, BatchNorm)]

    def papers(x: torch.Tensor) -> torch.Tensor:
        for conv, norm in zip(convs, norms, strict=True):
            x = nn.functional.max_pool2d(activation(norm(conv(x))), 2)
        return model.head(x.flatten(1))

    ours, reference = model(x), papers(x)
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-12)
    params = list(model.parameters())
    for g_ours, g_ref in zip(
        torch.autograd.grad(ours.square().sum(), params),
        torch.autograd.grad(reference.square().sum(), params),
        strict=True,
    ):
        torch.testing.assert_close(g_ours, g_ref, rtol=1e-10, atol=1e-12)


def test_mlp_shapes_and_flatten() -> None:
    model = MLP(6, (5, 4), 3, act="tanh")
    assert model(torch.randn(7, 2, 3)).shape == (7, 3)
    assert model.feature_dim == 4 and isinstance(model.body[2], nn.Tanh)
    linear = MLP(1, (), 1)
    assert linear.feature_dim == 1 and [n for n, _ in linear.named_parameters()] == ["head.weight", "head.bias"]


def test_conv4_too_small_image() -> None:
    message = "image_size=8 is too small for 4 pooling blocks; lower pooled_blocks"
    with pytest.raises(ValueError, match=re.escape(message)):
        Conv4(image_size=8, pooled_blocks=4)
    with pytest.raises(ValueError, match=re.escape("pooled_blocks must be in 0..4, got 5")):
        Conv4(pooled_blocks=5)


def test_unknown_activation_and_pooling() -> None:
    message = "unknown activation 'gelu'; choose one of ['relu', 'softplus', 'tanh']"
    with pytest.raises(ValueError, match=re.escape(message)):
        Conv4(act="gelu")
    with pytest.raises(ValueError, match=re.escape(message)):
        MLP(2, (3,), 1, act="gelu")
    with pytest.raises(ValueError, match=re.escape("unknown pooling 'min'; choose one of ['avg', 'max']")):
        Conv4(pool_kind="min")


# --- batch-norm -----------------------------------------------------------------------------------


def paired_norms(channels: int) -> tuple[BatchNorm, nn.BatchNorm2d]:
    ours = BatchNorm(channels).double()
    theirs = nn.BatchNorm2d(channels, track_running_stats=False).double().train()
    with torch.no_grad():
        ours.weight.normal_()
        ours.bias.normal_()
        theirs.weight.copy_(ours.weight)
        theirs.bias.copy_(ours.bias)
    return ours, theirs


def test_batch_norm_matches_torch_value_and_gradient() -> None:
    ours, theirs = paired_norms(3)
    x = torch.randn(5, 3, 4, 4, dtype=torch.float64) * 2 + 1
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    y1, y2 = ours(x1), theirs(x2)
    torch.testing.assert_close(y1, y2, rtol=1e-12, atol=1e-12)
    upstream = torch.randn_like(y1)
    g1 = torch.autograd.grad(y1, [x1, ours.weight, ours.bias], upstream)
    g2 = torch.autograd.grad(y2, [x2, theirs.weight, theirs.bias], upstream)
    for a, b in zip(g1, g2, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_batch_norm_on_features() -> None:
    ours = BatchNorm(4).double()
    x = torch.randn(6, 4, dtype=torch.float64)
    theirs = nn.BatchNorm1d(4, track_running_stats=False).double()
    torch.testing.assert_close(ours(x), theirs(x), rtol=1e-12, atol=1e-12)


def test_primitive_batch_norm_second_order_matches_native() -> None:
    """The primitive twin that runs under torch.func must agree with the native kernel to second order."""
    ours, _ = paired_norms(2)
    x = torch.randn(4, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(4, 2, 3, 3, dtype=torch.float64)
    probe = torch.randn(4, 2, 3, 3, dtype=torch.float64)

    def second_order(norm: Callable[[torch.Tensor], torch.Tensor]) -> tuple[torch.Tensor, ...]:
        y = norm(x)
        (gx,) = torch.autograd.grad(y, x, upstream, create_graph=True)
        return torch.autograd.grad((gx * probe).sum(), [x, ours.weight])

    native = second_order(ours)
    primitive = second_order(lambda t: primitive_batch_norm(t, ours.weight, ours.bias, ours.eps))
    for a, b in zip(native, primitive, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


def test_batch_norm_under_vmap_is_per_sample() -> None:
    norm, _ = paired_norms(3)
    xs = torch.randn(4, 5, 3, 2, 2, dtype=torch.float64)  # (tasks, n, C, H, W)
    batched = torch.func.vmap(norm)(xs)
    for t in range(4):
        torch.testing.assert_close(batched[t], norm(xs[t]), rtol=1e-12, atol=1e-12)
    # statistics are per task: a shifted task does not move another task's output
    shifted = xs.clone()
    shifted[0] += 10.0
    torch.testing.assert_close(torch.func.vmap(norm)(shifted)[1:], batched[1:], rtol=0, atol=0)


@pytest.mark.parametrize("in_channels", [1, 3])
def test_conv4_channels_last_is_the_same_function_and_meta_gradient(in_channels: int) -> None:
    """channels_last changes the memory layout only: outputs and second-order meta-gradients agree in float64,
    the parameter names are the same, and the blocks really run in channels_last."""
    from fastadapt.algorithms import MAML, meta_gradient
    from fastadapt.tasks import TaskBatch

    torch.manual_seed(0)
    plain = Conv4(in_channels, 3, image_size=12, hidden=4, pooled_blocks=3).double()
    fast = Conv4(in_channels, 3, image_size=12, hidden=4, pooled_blocks=3, channels_last=True).double()
    fast.load_state_dict(plain.state_dict())
    assert [n for n, _ in plain.named_parameters()] == [n for n, _ in fast.named_parameters()]
    x = torch.randn(6, in_channels, 12, 12, dtype=torch.float64)
    assert fast.body[:2](x).is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(fast(x), plain(x), rtol=1e-12, atol=1e-12)
    labels = torch.arange(3).repeat(2)
    batch = TaskBatch(x.unsqueeze(0), labels.unsqueeze(0), x.flip(0).unsqueeze(0), labels.unsqueeze(0))
    grads = []
    for model in (plain, fast):
        algorithm = MAML(model, inner_lr=0.4, inner_steps=2)
        params = {k: v.requires_grad_() for k, v in algorithm.init_params().items()}
        grads.append(meta_gradient(algorithm, params, batch, "loop")[0])
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-10, atol=1e-12)
