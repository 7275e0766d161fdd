"""Few-shot classifiers over frozen text embeddings: meta-learned heads (ProtoNet, MAML, ANIL, Meta-SGD),
the transfer baseline (a logistic-regression head), nearest class mean, the from-scratch hashed n-gram MLP,
and ensembles (prediction averaging, uniform soup)."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..algorithms import Algorithm, build_algorithm, meta_gradient
from ..algorithms.metasgd import optimizer_groups
from ..evaluation import placement, to_placement
from ..models import MLP
from ..tasks import EpisodeSampler, LabelledPool
from ..typing import Params

Array = npt.NDArray[np.float32]
Labels = npt.NDArray[np.int64]
META_HEADS = ("protonet", "maml", "anil", "metasgd")


@dataclass(frozen=True)
class HeadConfig:
    """A head meta-trained on episodes drawn from labelled embeddings.

    Attributes:
        algorithm: one of :data:`META_HEADS`.
        hidden: the head's hidden widths (ProtoNet embeds with them; the others add a linear output layer).
        ways: classes per training episode (default: every class; MAML, ANIL and Meta-SGD must use every
            class when they are later adapted to all of them, since their output layer has one unit per way).
        shots, queries: support and query examples per class in a training episode.
        iterations, meta_batch, outer_lr: the outer loop (Adam).
        inner_lr, inner_steps: the inner loop (Meta-SGD starts its learned rates at ``inner_lr``). The rate is
            **per class**: the inner loss is the sum over the episode's classes of each class's mean
            cross-entropy (``ways`` times the mean over the balanced support set), so that a class's share
            of the gradient, and with it the meaning of a rate, is the same at 20 and at 150 ways. The
            plain-mean rate the algorithm runs with is ``inner_lr * ways``
            (:attr:`FittedHead.effective_inner_lr`).
        test_steps: inner steps when adapting to the final support set (default ``inner_steps``).
        seed: the initial weights and the episodes.
        strategy: how a meta-batch is batched (``fastadapt.algorithms.STRATEGIES``).
    """

    algorithm: str = "protonet"
    hidden: tuple[int, ...] = (256,)
    ways: int | None = None
    shots: int = 3
    queries: int = 2
    iterations: int = 300
    meta_batch: int = 4
    outer_lr: float = 1e-3
    inner_lr: float = 2.0
    inner_steps: int = 5
    test_steps: int | None = None
    seed: int = 0
    strategy: str = "vmap"


@dataclass(frozen=True)
class FittedHead:
    """A meta-trained head: its algorithm, meta-parameters and the settings it was trained with.

    It computes on its parameters' device and floating-point type, wherever its inputs are; the probabilities
    come back on the CPU.
    """

    algorithm: Algorithm
    params: Params
    config: HeadConfig

    @property
    def effective_inner_lr(self) -> float | None:
        """The rate of the mean-loss inner loop (``config.inner_lr`` times the ways; Meta-SGD: the value its learned
        rates started from); ``None`` for ProtoNet."""
        rate = getattr(self.algorithm, "inner_lr", None)
        return None if rate is None else float(rate)

    def adapt(self, support_x: Tensor, support_y: Tensor, steps: int | None = None) -> Params:
        """The adaptation state (prototypes or fast weights) for a support set of class ids ``0..C-1``."""
        steps = self.config.test_steps if steps is None else steps
        sx, sy = to_placement(support_x, self.params), to_placement(support_y, self.params)
        return self.algorithm.adapt(self.params, sx, sy, steps=steps)

    def probabilities(self, state: Params, x: Tensor, chunk: int = 512) -> Tensor:
        """``(n, C)`` class probabilities of ``x`` ``(n, d)`` after adaptation, on the CPU; computed in chunks,
        each moved to the parameters' device in turn."""
        params = self.params
        with torch.no_grad():
            parts = [
                torch.softmax(self.algorithm.predict(params, state, to_placement(x[i : i + chunk], params)), -1).cpu()
                for i in range(0, len(x), chunk)
            ]
        return torch.cat(parts)


def head_model(in_features: int, hidden: Sequence[int], classes: int) -> MLP:
    return MLP(in_features, tuple(hidden), classes)


def meta_train_head(
    config: HeadConfig, x: Array, y: Labels, classes: int | None = None, progress: bool = False
) -> FittedHead:
    """Meta-trains a head on N-way episodes drawn from the labelled embeddings ``x`` ``(n, d)``, ``y`` ``(n,)``.

    ``classes`` is the number of classes the head is later adapted to (its output width; default: the
    number of classes in ``y``).
    """
    if config.algorithm not in META_HEADS:
        raise ValueError(f"unknown head algorithm {config.algorithm!r}; choose one of {META_HEADS}")
    if config.algorithm != "protonet" and config.inner_lr > 100:
        raise ValueError(
            f"inner_lr={config.inner_lr:g} is a per-class rate (the inner loss sums the classes' mean "
            "cross-entropies), so it runs as inner_lr x ways; a rate of the plain mean loss is that divided by the ways"
        )
    present = np.unique(y)
    classes = classes or len(present)
    ways = config.ways or len(present)
    if config.algorithm == "protonet":
        ways = min(ways, len(present))  # a 20-way default on fewer classes: episodes of every class
    if config.algorithm != "protonet" and ways != classes:
        fix = "leave ways unset" if config.ways else f"give the head {len(present)} classes or label every class"
        raise ValueError(
            f"{config.algorithm} trains an output layer of {classes} units, so its episodes need ways={classes}, "
            f"got ways={ways}; {fix}"
        )
    with torch.random.fork_rng():  # the head's initial weights come from the seed; the global RNG is left alone
        torch.manual_seed(config.seed)
        model = head_model(x.shape[1], config.hidden, classes)
    if config.algorithm == "protonet":
        algorithm = build_algorithm("protonet", model, ways=ways)
        final = build_algorithm("protonet", model, ways=classes)
    else:
        # The per-class rate times the ways: the algorithms' inner loss is the mean over the support set.
        options = {"inner_lr": config.inner_lr * ways, "inner_steps": config.inner_steps}
        algorithm = final = build_algorithm(config.algorithm, model, **options)
    pool = LabelledPool(torch.from_numpy(x), torch.from_numpy(y), tuple(str(c) for c in range(int(y.max()) + 1)))
    sampler = EpisodeSampler(pool, present.tolist(), ways, config.shots, config.queries)
    params = {k: v.requires_grad_() for k, v in algorithm.init_params().items()}
    # Meta-SGD's learned rates start at inner_lr and move by outer_lr * inner_lr per step: a relative change,
    # as the weights get.
    optimizer = torch.optim.Adam(optimizer_groups(params, config.outer_lr, config.outer_lr * config.inner_lr * ways))
    generator = torch.Generator().manual_seed(config.seed)
    device, dtype = placement(params)  # embeddings of another float type (float64) are cast to the head's
    for _ in tqdm(range(config.iterations), desc=f"meta-training {config.algorithm}", disable=not progress):
        batch = sampler.sample_batch(config.meta_batch, generator).to(device, dtype)
        grads, stats = meta_gradient(algorithm, params, batch, strategy=config.strategy)
        if not torch.isfinite(stats).all():
            raise FloatingPointError(
                f"{config.algorithm}: non-finite episode loss during meta-training; lower inner_lr or outer_lr"
            )
        for name, p in params.items():
            p.grad = grads[name]
        optimizer.step()
    return FittedHead(final, {k: v.detach() for k, v in params.items()}, config)


def fit_logistic(support_x: Array, support_y: Labels, c: float | None = None, seed: int = 0) -> Any:
    """The transfer baseline's fitted scikit-learn ``LogisticRegression`` (multinomial, L2) on the frozen embeddings.

    ``c``: the inverse L2 strength; by default chosen by stratified cross-validation (log-loss) on the support set
    (as many folds as the rarest class has examples, at most 5; ``c=10`` when a class has a single example).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    folds = min(5, int(np.bincount(support_y).min()))
    model: Any = LogisticRegression(C=10.0 if c is None else c, max_iter=2000)
    if c is None and folds >= 2:
        grid = {"C": [0.3, 1.0, 3.0, 10.0, 30.0, 100.0]}
        splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
        model = GridSearchCV(model, grid, cv=splitter, scoring="neg_log_loss")
    model.fit(support_x, support_y)
    return model.best_estimator_ if hasattr(model, "best_estimator_") else model


def logistic_head(
    support_x: Array, support_y: Labels, query_x: Array, c: float | None = None, seed: int = 0
) -> npt.NDArray[np.float64]:
    """The transfer baseline (:func:`fit_logistic`): ``(n_query, C)`` probabilities of the query embeddings."""
    return np.asarray(fit_logistic(support_x, support_y, c, seed).predict_proba(query_x))


def nearest_mean(support_x: Array, support_y: Labels, query_x: Array) -> npt.NDArray[np.float64]:
    """Nearest class mean by squared Euclidean distance on the frozen embeddings (a ProtoNet whose
    embedding is the identity: no training). Returns softmax(-distance) probabilities."""
    classes = int(support_y.max()) + 1
    missing = sorted(set(range(classes)) - set(np.unique(support_y).tolist()))
    if missing:
        raise ValueError(f"classes {missing[:10]} have no support example; every class id up to the largest needs one")
    means = torch.from_numpy(np.stack([support_x[support_y == c].mean(0) for c in range(classes)])).double()
    q = torch.from_numpy(query_x).double()
    squared = (q * q).sum(-1, keepdim=True) - 2 * q @ means.T + (means * means).sum(-1)  # (n, C), no (n, C, d)
    return np.asarray(torch.softmax(-squared, -1).numpy())


def hashed_mlp(
    support_texts: Sequence[str], support_y: Labels, query_texts: Sequence[str], seed: int = 0
) -> npt.NDArray[np.float64]:
    """The from-scratch baseline: word 1-2-gram counts hashed into 2**14 buckets (TF-IDF weighted) feeding
    a one-hidden-layer MLP (scikit-learn), trained on the support set only. Returns probabilities."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline

    model = make_pipeline(
        HashingVectorizer(n_features=2**14, ngram_range=(1, 2), alternate_sign=False, norm=None),
        TfidfTransformer(sublinear_tf=True),
        MLPClassifier(hidden_layer_sizes=(256,), alpha=1e-4, max_iter=300, random_state=seed),
    )
    with warnings.catch_warnings():
        # A fixed budget of 300 epochs is the method; stopping short of scikit-learn's tolerance is expected.
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(list(support_texts), support_y)
    return np.asarray(model.predict_proba(list(query_texts)))


def uniform_soup(states: Sequence[Params]) -> Params:
    """The uniform model soup (Wortsman et al. 2022, arXiv:2203.05482): the entry-wise mean of parameter
    dicts that share keys and shapes (heads adapted from one initialisation)."""
    if not states:
        raise ValueError("a soup needs at least one model")
    keys = list(states[0])
    for i, state in enumerate(states[1:], start=1):
        if list(state) != keys:
            raise ValueError(
                f"model {i} has parameters {sorted(state)} but model 0 has {sorted(keys)}; "
                "soup models of one architecture"
            )
    return {k: torch.stack([s[k] for s in states]).mean(0) for k in keys}


def average_probabilities(probabilities: Sequence[npt.ArrayLike]) -> npt.NDArray[np.float64]:
    """The ensemble's prediction: the mean of the members' ``(n, C)`` class probabilities."""
    if not probabilities:
        raise ValueError("an ensemble needs at least one member")
    arrays = [np.asarray(p, dtype=np.float64) for p in probabilities]
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise ValueError(f"ensemble members disagree on the shape of their predictions: {sorted(shapes)}")
    return np.mean(arrays, axis=0)


def adaptation_variants(
    head: FittedHead, lr_scales: Sequence[float] = (0.5, 1.0, 2.0), step_scales: Sequence[int] = (1, 2)
) -> list[FittedHead]:
    """Copies of a meta-trained head that adapt with other inner learning rates and step counts (the
    hyperparameter grid a soup averages over; Meta-SGD keeps its learned rates, so only steps vary)."""
    steps = head.config.test_steps or head.config.inner_steps
    variants = []
    for lr_scale in lr_scales if head.config.algorithm in ("maml", "anil") else (1.0,):
        for step_scale in step_scales:
            algorithm = head.algorithm
            if lr_scale != 1.0:
                rate = head.effective_inner_lr * lr_scale  # type: ignore[operator]
                algorithm = dataclasses.replace(algorithm, inner_lr=rate)  # type: ignore[type-var]
            config = dataclasses.replace(head.config, test_steps=steps * step_scale)
            variants.append(FittedHead(algorithm, head.params, config))
    return variants
