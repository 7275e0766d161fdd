"""ResNet-12 and DropBlock: shapes, size, second-order meta-gradients against finite differences, DropBlock's
draws and rescaling; Conv4 with a width per block."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fastadapt.algorithms import MAML, ProtoNet
from fastadapt.models import BatchNorm, Conv4, DropBlock, ResNet12
from fastadapt.tasks import TaskBatch
from test_gradients import meta_objective

pytestmark = pytest.mark.usefixtures("single_thread")

PAPERS_WIDTHS = (64, 160, 320, 640)


# --- architecture ---------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [84, 32])
def test_resnet12_shapes(size: int) -> None:
    model = ResNet12()
    assert model.feature_dim == 640 and model.head.in_features == 640
    x = torch.rand(2, 3, size, size)
    with torch.no_grad():
        assert model.body(x).shape == (2, 640) and model(x).shape == (2, 5)
    small = ResNet12(1, 4, widths=(8, 16, 24, 32))
    y = torch.rand(3, 1, size, size + 5)  # any H, W >= 16, not only squares
    assert small.feature_dim == 32 and small.body(y).shape == (3, 32) and small(y).shape == (3, 4)


def test_resnet12_blocks_are_the_papers() -> None:
    """Per block: three bias-free 3x3 convolutions and a bias-free 1x1 shortcut, each followed by batch norm."""
    model = ResNet12()
    convs = [m for m in model.body.modules() if isinstance(m, nn.Conv2d)]
    expected, channels = [], 3
    for width in PAPERS_WIDTHS:
        expected += [
            (channels, width, (3, 3)),
            (width, width, (3, 3)),
            (width, width, (3, 3)),
            (channels, width, (1, 1)),
        ]
        channels = width
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == expected
    assert all(c.bias is None for c in convs)
    assert sum(isinstance(m, BatchNorm) for m in model.modules()) == 16
    assert not any(isinstance(m, nn.modules.batchnorm._NormBase) for m in model.modules())  # no running statistics
    assert {n.split(".")[0] for n, _ in model.named_parameters()} == {"body", "head"}


def test_resnet12_has_the_papers_size() -> None:
    """12.4 M parameters in the body, from the architecture: per block of width ``w`` after ``c`` channels, a 3x3
    ``c -> w`` and two 3x3 ``w -> w`` convolutions, a 1x1 ``c -> w`` shortcut, four batch norms of 2 ``w`` each."""
    body = ResNet12().body
    count = sum(p.numel() for p in body.parameters())
    expected, channels = 0, 3
    for width in PAPERS_WIDTHS:
        expected += 9 * channels * width + 2 * 9 * width * width + channels * width + 4 * 2 * width
        channels = width
    assert count == expected
    assert 12.0e6 < count < 12.6e6  # MetaOptNet / RFS report 12.4 M


def test_resnet12_configuration_errors() -> None:
    with pytest.raises(ValueError, match=re.escape("ResNet-12 has four blocks; got widths [8, 16]")):
        ResNet12(widths=(8, 16))
    with pytest.raises(ValueError, match="needs images of at least 16x16"):
        ResNet12(widths=(2, 2, 2, 2))(torch.rand(2, 3, 15, 15))
    with pytest.raises(ValueError, match=re.escape("DropBlock rate must be in [0, 1), got 1.0")):
        ResNet12(drop_rate=1.0)


# --- second-order meta-gradient -------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["loop", "vmap"])
def test_second_order_maml_through_resnet12_matches_finite_differences(
    strategy: str, make_batch: Callable[..., TaskBatch]
) -> None:
    """The MAML meta-gradient (two inner steps, second order) against central differences, for a few entries
    of tensors in the first and last blocks, a batch norm, a shortcut and the head. The loop path
    differentiates the native batch-norm kernel twice, vmap the primitive one.

    Two shots per class: batch norm over a one-shot support set of two images makes the objective so curved
    that differences at ``eps`` 1e-6 are off by 1e-3. ``eps`` 1e-7: leaky ReLU and max-pooling have kinks
    where the *inner gradient* jumps (a sign or an argmax changes), so the meta-objective itself jumps there;
    a step of 1e-6 crosses one for 3 of 30 seeds, 1e-7 for none, with round-off a quarter of the tolerance.
    """
    model = ResNet12(1, 2, widths=(2, 3, 4, 5)).double()
    algorithm = MAML(model, inner_lr=0.1, inner_steps=2)
    batch = make_batch(2, 2, 2, 2, (1, 16, 16))
    params = algorithm.init_params()
    entries = {
        "body.0.conv1.weight": [(0, 0, 0, 0), (1, 0, 2, 1)],
        "body.0.bn1.weight": [(1,)],
        "body.1.shortcut.0.weight": [(2, 1, 0, 0)],
        "body.2.bn3.bias": [(3,)],
        "body.3.conv3.weight": [(4, 2, 1, 1), (0, 4, 2, 0)],
        "head.weight": [(1, 3)],
    }
    leaves = {k: v.detach().requires_grad_() for k, v in params.items()}
    objective = meta_objective(algorithm, leaves, batch, strategy)
    grads = dict(zip(leaves, torch.autograd.grad(objective, list(leaves.values())), strict=True))

    eps = 1e-7
    for key, indices in entries.items():
        for index in indices:
            shifted = []
            for sign in (1.0, -1.0):
                value = params[key].detach().clone()
                value[index] += sign * eps
                with torch.no_grad():
                    shifted.append(meta_objective(algorithm, params | {key: value}, batch, strategy))
            numeric = (shifted[0] - shifted[1]) / (2 * eps)
            torch.testing.assert_close(grads[key][index], numeric, rtol=1e-5, atol=1e-7, msg=f"{key}{index}")


def test_second_order_term_matters_through_resnet12(make_batch: Callable[..., TaskBatch]) -> None:
    """First-order MAML gives a different meta-gradient: the check above is not passing on the identity path."""
    model = ResNet12(1, 2, widths=(2, 3, 4, 5)).double()
    batch = make_batch(2, 2, 2, 2, (1, 16, 16))
    full, first = (MAML(model, inner_lr=0.1, inner_steps=2, first_order=f) for f in (False, True))
    params = {k: v.requires_grad_() for k, v in full.init_params().items()}
    g_full = torch.autograd.grad(meta_objective(full, params, batch, "loop"), params["body.0.conv1.weight"])[0]
    g_first = torch.autograd.grad(meta_objective(first, params, batch, "loop"), params["body.0.conv1.weight"])[0]
    assert not torch.allclose(g_full, g_first, rtol=1e-3)


# --- DropBlock ------------------------------------------------------------------------------------


def test_resnet12_dropblock_only_in_the_last_two_blocks() -> None:
    model = ResNet12(drop_rate=0.1)
    assert [block.drop.rate for block in model.body[:4]] == [0.0, 0.0, 0.1, 0.1]
    assert [block.drop.block_size for block in model.body[:4]] == [5] * 4


def test_resnet12_without_dropblock_is_deterministic_in_training() -> None:
    model = ResNet12(3, 5, widths=(4, 6, 8, 10)).train()
    x = torch.rand(6, 3, 32, 32)
    assert torch.equal(model(x), model(x))


def test_resnet12_dropblock_draws_while_training_only() -> None:
    model = ResNet12(3, 5, widths=(4, 6, 8, 10), drop_rate=0.3).train()
    x = torch.rand(6, 3, 32, 32)
    assert not torch.equal(model(x), model(x))
    model.eval()
    out = model(x)
    assert torch.equal(out, model(x))
    plain = ResNet12(3, 5, widths=(4, 6, 8, 10)).eval()
    plain.load_state_dict(model.state_dict())
    assert torch.equal(out, plain(x))  # in eval mode DropBlock is the identity


@pytest.mark.parametrize(("side", "block", "rate"), [(5, 5, 0.1), (10, 5, 0.1), (10, 3, 0.2), (21, 5, 0.3)])
def test_dropblock_keeps_about_one_minus_rate_and_the_mean(side: int, block: int, rate: float) -> None:
    """Seeds only where a whole block fits, at Ghiasi's gamma: about ``rate`` of the positions dropped (a little
    less where blocks overlap), even on 5x5 maps with 5x5 blocks (ResNet-12's last block on 84x84 images)."""
    drop = DropBlock(rate, block_size=block)
    out = drop(torch.ones(128, 8, side, side))
    kept = float((out > 0).double().mean())
    # overlapping blocks drop a position once: up to about rate**2 / 2 more positions kept
    assert 1 - rate - 0.005 < kept < 1 - rate + rate**2 / 2 + 0.01
    torch.testing.assert_close(out.double().mean(), torch.tensor(1.0, dtype=torch.float64), rtol=0, atol=1e-5)
    x = torch.rand(128, 8, side, side, dtype=torch.float64) + 0.5
    assert abs(float(drop(x).mean() / x.mean()) - 1) < 0.01  # the rescaling keeps the mean of any input


def test_dropblock_drops_whole_squares() -> None:
    """The dropped set is a union of ``block`` x ``block`` squares inside the map: its morphological opening by
    that square (erode, then dilate) is itself."""
    block = 3
    dropped = (DropBlock(0.2, block_size=block)(torch.ones(32, 4, 12, 12)) == 0).double()
    assert dropped.any()
    corners = -F.max_pool2d(-dropped, block, stride=1)  # 1 where the whole square from (i, j) is dropped
    opened = F.max_pool2d(F.pad(corners, (block - 1,) * 4), block, stride=1)
    assert torch.equal(opened, dropped)


def test_dropblock_identity_in_eval_or_at_rate_zero() -> None:
    x = torch.rand(4, 3, 10, 10)
    drop = DropBlock(0.2)
    assert not torch.equal(drop(x), x)
    assert torch.equal(drop.eval()(x), x)
    assert torch.equal(DropBlock(0.0).train()(x), x)
    with pytest.raises(ValueError, match=re.escape("DropBlock block_size must be at least 1, got 0")):
        DropBlock(0.1, block_size=0)


def test_resnet12_with_dropblock_under_vmap_draws_per_task(make_batch: Callable[..., TaskBatch]) -> None:
    """Under ``vmap(randomness="different")`` and ``functional_call`` (ProtoNet's body call), each task draws its
    own masks: the same task twice gets two losses."""
    model = ResNet12(1, 2, widths=(2, 3, 3, 4), drop_rate=0.5)
    algorithm = ProtoNet(model, ways=2)
    batch = make_batch(2, 2, 1, 2, (1, 16, 16), dtype=torch.float32)
    params = algorithm.init_params()
    twice = [torch.cat([t[:1], t[:1]]) for t in batch.tensors()]
    losses, _ = torch.func.vmap(lambda *t: algorithm.objective(params, *t), randomness="different")(*twice)
    assert losses[0] != losses[1]


# --- Conv4 widths ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("image_size", "side"), [(32, 2), (28, 1), (84, 5)])
def test_conv4_with_a_width_per_block(image_size: int, side: int) -> None:
    model = Conv4(3, 5, image_size=image_size, hidden=(8, 16, 32, 64))
    assert model.feature_dim == 64 * side * side
    convs = [m for m in model.body if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(3, 8), (8, 16), (16, 32), (32, 64)]
    x = torch.rand(2, 3, image_size, image_size)
    assert model.body(x).shape == (2, model.feature_dim) and model(x).shape == (2, 5)


def test_conv4_int_width_is_four_equal_widths() -> None:
    one, four = Conv4(hidden=8), Conv4(hidden=[8, 8, 8, 8])
    assert [(n, p.shape) for n, p in one.named_parameters()] == [(n, p.shape) for n, p in four.named_parameters()]
    with pytest.raises(ValueError, match=re.escape("Conv4 has four blocks; got widths [8, 16]")):
        Conv4(3, 5, hidden=(8, 16))
