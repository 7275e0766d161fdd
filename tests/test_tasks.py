"""Episode sampling over a labelled pool, regression task families, and task batches."""

from __future__ import annotations

import math
import re

import pytest
import torch

from fastadapt.tasks import (
    ClassSplit,
    EpisodeSampler,
    LabelledPool,
    LinearTasks,
    SinusoidTasks,
    Task,
    TaskBatch,
    rotations,
)

N_CLASSES, PER_CLASS = 12, 7

pytestmark = pytest.mark.usefixtures("single_thread")


def make_pool(per_class: int = PER_CLASS) -> LabelledPool:
    """Random 1x5x5 images (no rotational symmetry), ``per_class`` per class, classes interleaved."""
    labels = torch.arange(N_CLASSES).repeat(per_class)  # (n,)
    features = torch.randn(len(labels), 1, 5, 5)
    return LabelledPool(features, labels, tuple(f"class{c}" for c in range(N_CLASSES)))


def locate(pool: LabelledPool, x: torch.Tensor) -> tuple[int, int]:
    """The pool index and quarter turns of the one pool image that ``x`` is a rotation of."""
    hits = [
        (j, k)
        for k in range(4)
        for j in range(len(pool.labels))
        if torch.equal(torch.rot90(pool.features[j], k, dims=(-2, -1)), x)
    ]
    assert len(hits) == 1, f"sampled image matches {len(hits)} pool images"
    return hits[0]


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- class splits ---------------------------------------------------------------------------------


def test_class_split_disjoint_and_indexable() -> None:
    split = ClassSplit(train=(0, 1, 2), val=(3,), test=(4, 5))
    assert split["train"] == (0, 1, 2) and split["val"] == (3,) and split["test"] == (4, 5)
    with pytest.raises(KeyError, match="unknown split 'dev'"):
        split["dev"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"train": (0, 1, 2), "val": (2, 3), "test": (4,)}, "train and val share classes [2]"),
        ({"train": (0, 1), "val": (2,), "test": (1, 0, 5)}, "train and test share classes [0, 1]"),
        ({"train": (0,), "val": (7, 8), "test": (8, 7)}, "val and test share classes [7, 8]"),
    ],
)
def test_class_split_overlap_names_shared_classes(kwargs: dict[str, tuple[int, ...]], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"class split is not disjoint: {message}")):
        ClassSplit(**kwargs)


def test_pool_validates_shapes() -> None:
    with pytest.raises(ValueError, match="features has 3 examples but labels has 2"):
        LabelledPool(torch.zeros(3, 2), torch.zeros(2, dtype=torch.long), ("a",))
    with pytest.raises(ValueError, match=re.escape("labels must be 1-D, got shape (2, 1)")):
        LabelledPool(torch.zeros(2, 2), torch.zeros(2, 1, dtype=torch.long), ("a",))


# --- episodes -------------------------------------------------------------------------------------


def test_episode_shapes_labels_and_classes() -> None:
    pool = make_pool()
    split = ClassSplit(train=(0, 2, 4, 6, 8, 10), val=(1, 3), test=(5, 7, 9, 11))
    ways, shots, queries = 3, 2, 4
    sampler = EpisodeSampler(pool, split.test, ways=ways, shots=shots, queries=queries)
    g = gen(0)
    for _ in range(5):
        task = sampler.sample(g)
        assert task.support_x.shape == (ways * shots, 1, 5, 5)
        assert task.query_x.shape == (ways * queries, 1, 5, 5)
        assert torch.equal(task.support_y, torch.tensor([0, 0, 1, 1, 2, 2]))
        assert torch.equal(task.query_y, torch.arange(ways).repeat_interleave(queries))
        sources = [locate(pool, x) for x in torch.cat([task.support_x, task.query_x])]
        assert all(k == 0 for _, k in sources), "no transforms were given"
        assert len({j for j, _ in sources}) == len(sources), "an example appears twice in one episode"
        original = [int(pool.labels[j]) for j, _ in sources]
        labels = torch.cat([task.support_y, task.query_y]).tolist()
        by_label = {label: {c for c, lab in zip(original, labels, strict=True) if lab == label} for label in labels}
        assert all(len(cs) == 1 for cs in by_label.values()), "one episode label mixes original classes"
        chosen = [next(iter(cs)) for cs in by_label.values()]
        assert len(set(chosen)) == ways, "two episode labels map to the same class"
        assert set(chosen) <= set(split.test)


def test_sampler_draws_every_class_of_its_split_only() -> None:
    pool = make_pool()
    classes = (1, 4, 9)
    sampler = EpisodeSampler(pool, classes, ways=2, shots=1, queries=1)
    g = gen(3)
    seen = set()
    for _ in range(30):
        task = sampler.sample(g)
        seen |= {int(pool.labels[locate(pool, x)[0]]) for x in task.support_x}
    assert seen == set(classes)


def test_same_seed_same_episodes_different_seed_different() -> None:
    sampler = EpisodeSampler(make_pool(), range(N_CLASSES), ways=5, shots=1, queries=2)

    def draw(seed: int) -> list[Task]:
        g = gen(seed)
        return [sampler.sample(g) for _ in range(3)]

    first, again, other = draw(7), draw(7), draw(8)
    for a, b in zip(first, again, strict=True):
        assert all(torch.equal(s, t) for s, t in zip(a.tensors(), b.tensors(), strict=True))
    assert not all(torch.equal(a.support_x, b.support_x) for a, b in zip(first, other, strict=True))


def test_rotations_are_new_classes() -> None:
    pool = make_pool()
    classes = (2, 5, 11)
    sampler = EpisodeSampler(pool, classes, ways=12, shots=2, queries=1, class_transforms=rotations(0, 90, 180, 270))
    task = sampler.sample(gen(0))
    pairs = []
    for label in range(12):
        xs = torch.cat([task.support_x[task.support_y == label], task.query_x[task.query_y == label]])
        sources = [locate(pool, x) for x in xs]  # each x equals torch.rot90(pool.features[j], k) exactly
        kinds = {(int(pool.labels[j]), k) for j, k in sources}
        assert len(kinds) == 1, "one episode class mixes classes or rotations"
        pairs.append(kinds.pop())
    assert sorted(pairs) == sorted((c, k) for c in classes for k in range(4))
    with pytest.raises(
        ValueError, match=re.escape("ways=13 but this split has only 12 classes (3 classes x 4 transforms)")
    ):
        EpisodeSampler(pool, classes, ways=13, shots=1, queries=1, class_transforms=rotations(0, 90, 180, 270))


def test_rotation_applies_rot90() -> None:
    x = torch.randn(3, 1, 4, 4)
    for degrees, transform in zip((0, 90, 180, 270), rotations(0, 90, 180, 270), strict=True):
        assert torch.equal(transform(x), torch.rot90(x, degrees // 90, dims=(-2, -1)))
    with pytest.raises(ValueError, match="rotations must be multiples of 90 degrees, got 45"):
        rotations(0, 45)


def test_too_many_ways_names_the_numbers() -> None:
    message = "ways=4 but this split has only 3 classes (3 classes x 1 transforms); lower ways or use more classes"
    with pytest.raises(ValueError, match=re.escape(message)):
        EpisodeSampler(make_pool(), (0, 1, 2), ways=4, shots=1, queries=1)


def test_too_few_examples_names_the_numbers() -> None:
    message = (
        f"shots + queries = 3 + 5 = 8 but class 0 ('class0') has only {PER_CLASS} examples; lower shots or queries"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        EpisodeSampler(make_pool(), (0, 1, 2), ways=2, shots=3, queries=5)
    EpisodeSampler(make_pool(), (0, 1, 2), ways=2, shots=3, queries=4)  # exactly enough


def test_class_missing_from_pool_raises_value_error() -> None:
    """Class 99 is not in the pool: a ValueError names it (not an IndexError from the message)."""
    with pytest.raises(
        ValueError, match=r"classes \[99\] are not in the pool, whose class ids are 0..11; fix the split"
    ):
        EpisodeSampler(make_pool(), (0, 1, 99), ways=2, shots=1, queries=1)


def test_repeated_class_never_labels_one_example_twice() -> None:
    """A class listed twice must not count as two classes (one example under two labels): it is rejected."""
    with pytest.raises(ValueError, match=r"classes \[1\] are listed more than once; list each class once"):
        EpisodeSampler(make_pool(), (0, 1, 1), ways=2, shots=2, queries=1)


@pytest.mark.parametrize("name", ["ways", "shots", "queries"])
def test_nonpositive_sizes_raise(name: str) -> None:
    sizes = {"ways": 2, "shots": 1, "queries": 1} | {name: 0}
    with pytest.raises(ValueError, match=f"{name} must be >= 1, got 0"):
        EpisodeSampler(make_pool(), (0, 1, 2), **sizes)


# --- regression families --------------------------------------------------------------------------


def test_sinusoid_ranges_and_consistency() -> None:
    source = SinusoidTasks(shots=5, queries=7)
    g = gen(0)
    amplitudes, phases, xs = [], [], []
    for _ in range(500):
        task = source.sample(g)
        assert task.support_x.shape == task.support_y.shape == (5, 1)
        assert task.query_x.shape == task.query_y.shape == (7, 1)
        x = torch.cat([task.support_x, task.query_x]).double().flatten()
        y = torch.cat([task.support_y, task.query_y]).double().flatten()
        # y = A sin(x - p) = a sin x + b cos x with a = A cos p, b = -A sin p: fit (a, b) from 3 points
        basis = torch.stack([torch.sin(x), torch.cos(x)], dim=1)  # (n, 2)
        ab = torch.linalg.lstsq(basis[:3], y[:3, None]).solution.flatten()
        amplitude, phase = float(torch.hypot(ab[0], ab[1])), math.atan2(float(-ab[1]), float(ab[0]))
        assert torch.allclose(basis @ ab, y, atol=1e-4 * max(amplitude, 1.0)), "targets are not one sinusoid"
        amplitudes.append(amplitude)
        phases.append(phase)
        xs.append(x)
    all_x = torch.cat(xs)
    assert 0.1 - 1e-4 <= min(amplitudes) < 0.3 and 4.8 < max(amplitudes) <= 5.0 + 1e-4
    assert -1e-4 <= min(phases) < 0.1 and math.pi - 0.1 < max(phases) <= math.pi + 1e-4
    assert -5.0 <= all_x.min() < -4.9 and 4.9 < all_x.max() <= 5.0


def test_linear_ranges_and_consistency() -> None:
    source = LinearTasks(shots=3, queries=4, slope=(1.0, 2.0), intercept=(-1.0, 0.0), x_range=(0.0, 2.0))
    g = gen(1)
    slopes, intercepts = [], []
    for _ in range(300):
        task = source.sample(g)
        x = torch.cat([task.support_x, task.query_x]).double().flatten()
        y = torch.cat([task.support_y, task.query_y]).double().flatten()
        slope = (y[1] - y[0]) / (x[1] - x[0])
        intercept = y[0] - slope * x[0]
        assert torch.allclose(slope * x + intercept, y, atol=1e-4), "targets are not one line"
        assert 0.0 <= x.min() and x.max() <= 2.0
        slopes.append(float(slope))
        intercepts.append(float(intercept))
    assert 1.0 - 1e-3 <= min(slopes) < 1.05 and 1.95 < max(slopes) <= 2.0 + 1e-3
    assert -1.0 - 1e-3 <= min(intercepts) < -0.95 and -0.05 < max(intercepts) <= 1e-3


def test_linear_noise_is_seeded() -> None:
    source = LinearTasks(noise=0.5)
    a, b = source.sample(gen(2)), source.sample(gen(2))
    assert torch.equal(a.query_y, b.query_y)
    clean = LinearTasks().sample(gen(2))
    assert torch.equal(a.query_x, clean.query_x) and not torch.allclose(a.query_y, clean.query_y)


# --- task batches ---------------------------------------------------------------------------------


def test_sample_batch_stacks_tasks() -> None:
    batch = SinusoidTasks(shots=4, queries=6).sample_batch(5, gen(0))
    assert len(batch) == 5
    assert batch.support_x.shape == (5, 4, 1) and batch.query_y.shape == (5, 6, 1)
    single = SinusoidTasks(shots=4, queries=6)
    g = gen(0)
    for task in batch:
        assert torch.equal(task.support_x, single.sample(g).support_x)
    with pytest.raises(ValueError, match="meta-batch size must be >= 1, got 0"):
        single.sample_batch(0, g)


def test_task_batch_chunks_and_shards() -> None:
    tasks = [Task(torch.full((2, 3), float(i)), torch.zeros(2), torch.zeros(4, 3), torch.zeros(4)) for i in range(7)]
    batch = TaskBatch.stack(tasks)
    assert [len(c) for c in batch.chunks(3)] == [3, 3, 1]
    assert torch.equal(torch.cat([c.support_x for c in batch.chunks(3)]), batch.support_x)
    shards = [batch.shard(r, 3) for r in range(3)]
    assert [s.support_x[:, 0, 0].tolist() for s in shards] == [[0, 3, 6], [1, 4], [2, 5]]
    assert torch.equal(batch[4].support_x, tasks[4].support_x)
    with pytest.raises(ValueError, match="cannot stack an empty list of tasks"):
        TaskBatch.stack([])
