"""Pretrain-then-meta: the body trained with plain cross-entropy over all training classes first (the strong
baseline of RFS, Tian et al. 2020, arXiv:2003.11539, and the first stage of Meta-Baseline, Chen et al. 2021,
arXiv:2003.04390), then evaluated with a fixed-feature head or meta-fine-tuned.

The examples are those the training episodes draw from (every training class, each class transform a class of
its own, the training augmentation applied); the classifier over them is a temporary linear layer on what feeds
the model's head. Validation episodes (the run's own algorithm on the validation classes) pick the body kept.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..algorithms import HeadSplit
from ..evaluation import evaluate
from ..tasks import EpisodeSampler, PrefetchedEpisodes, plan_seed, seeded
from ..typing import Params
from ._build import Experiment
from ._config import ConfigError
from ._logging import RunLogger


def _training_sampler(experiment: Experiment) -> EpisodeSampler:
    source = experiment.sources["train"]
    if isinstance(source, PrefetchedEpisodes):
        source = source.sampler
    if not isinstance(source, EpisodeSampler):
        raise ConfigError(
            f"training.pretrain_steps needs classification episodes over labelled examples; "
            f"data.dataset={experiment.config.data.dataset!r} has {type(source).__name__}"
        )
    return source


class _Examples:
    """Every training example as (pool index, class of the pretraining classifier, class transform)."""

    def __init__(self, sampler: EpisodeSampler) -> None:
        n_transforms = len(sampler.transforms)
        index, label, transform = [], [], []
        for c, members in enumerate(sampler.members):
            for t in range(n_transforms):
                index.append(members)
                label.append(torch.full_like(members, c * n_transforms + t))
                transform.append(torch.full_like(members, t))
        self.sampler = sampler
        self.index, self.label, self.transform = torch.cat(index), torch.cat(label), torch.cat(transform)
        self.classes = len(sampler.members) * n_transforms

    def batch(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The examples at ``rows`` (class transforms and augmentation applied, seeded by the rows) and labels."""
        with seeded(plan_seed([], [rows])):
            x = self.sampler.pool.load(self.index[rows])
            for t, transform in enumerate(self.sampler.transforms):
                chosen = self.transform[rows] == t
                if transform is not None and bool(chosen.any()):
                    x[chosen] = transform(x[chosen])
            if self.sampler.augment is not None:
                x = torch.stack([self.sampler.augment(example) for example in x])
        return x, self.label[rows]


def pretrain(experiment: Experiment, params: Params, logger: RunLogger, val_seed: int, progress: bool = True) -> None:
    """Trains the body parameters in ``params`` (in place) for ``training.pretrain_steps`` batches and leaves the
    body that scored best on the validation episodes there."""
    config = experiment.config
    cfg = config.training
    for name, value in (("pretrain_batch_size", cfg.pretrain_batch_size), ("pretrain_steps", cfg.pretrain_steps)):
        if value < 1:
            raise ConfigError(f"training.{name} must be >= 1, got {value}")
    if not cfg.pretrain_lr > 0:
        raise ConfigError(f"training.pretrain_lr must be > 0, got {cfg.pretrain_lr}")
    examples = _Examples(_training_sampler(experiment))
    try:
        split = HeadSplit(experiment.model, config.algorithm.head)
    except ValueError as error:
        raise ConfigError(f"training.pretrain_steps: {error}") from None
    body = {k: v for k, v in params.items() if not split.is_head(k)}
    generator = torch.Generator().manual_seed(cfg.seed + 0x5EED)
    device, dtype = experiment.device, experiment.dtype

    def features(x: torch.Tensor) -> torch.Tensor:
        return split.features(params, x.to(device, dtype)).flatten(1)  # type: ignore[arg-type]

    with torch.no_grad():
        dim = features(examples.batch(torch.arange(min(2, len(examples.index))))[0]).shape[1]
    classifier = nn.Linear(dim, examples.classes).to(device, dtype)
    optimizer = torch.optim.SGD(
        [*body.values(), *classifier.parameters()], lr=cfg.pretrain_lr, momentum=0.9, nesterov=True, weight_decay=5e-4
    )
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.pretrain_steps)
    order = torch.randperm(len(examples.index), generator=generator)
    position, best, kept = 0, None, None
    higher = experiment.algorithm.metric.higher_is_better
    every = cfg.val_every or cfg.pretrain_steps
    for step in tqdm(range(1, cfg.pretrain_steps + 1), desc="pretrain", disable=not progress):
        if position + cfg.pretrain_batch_size > len(order):  # a new epoch
            order, position = torch.randperm(len(examples.index), generator=generator), 0
        rows = order[position : position + cfg.pretrain_batch_size]
        position += len(rows)
        x, y = examples.batch(rows)
        logits = classifier(features(x))
        loss = F.cross_entropy(logits, y.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % cfg.log_every == 0 or step == cfg.pretrain_steps:
            accuracy = float((logits.detach().argmax(1) == y.to(device)).float().mean())
            logger.log("pretrain", step, loss=float(loss.detach()), accuracy=accuracy)
        if step % every == 0 or step == cfg.pretrain_steps:
            result = evaluate(
                experiment.algorithm,
                params,
                experiment.sources["val"],
                episodes=cfg.val_episodes,
                seed=val_seed,
                steps=config.algorithm.test_steps,
            )
            logger.log("pretrain_val", step, **{experiment.metric: result.mean, "ci95": result.ci95})
            if best is None or (result.mean > best if higher else result.mean < best):
                best, kept = result.mean, copy.deepcopy({k: v.detach() for k, v in body.items()})
    if kept is not None:
        with torch.no_grad():
            for k, v in kept.items():
                body[k].copy_(v)
