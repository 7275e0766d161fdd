"""Episodes over any map-style Dataset, loaded lazily and by workers; image folders, MNIST, CIFAR-FS and
mini-ImageNet from configs on generated files; pretrain-then-meta."""

from __future__ import annotations

import dataclasses
import gzip
import os
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from fastadapt.algorithms import build_algorithm, meta_gradient
from fastadapt.data import CropFlip, cifar_fs_classes, miniimagenet_ravi_rows
from fastadapt.evaluation import evaluate
from fastadapt.models import Conv4
from fastadapt.tasks import ClassSplit, DatasetPool, EpisodeSampler, PrefetchedEpisodes, rotations
from fastadapt.training import ConfigError, Trainer, build_experiment, config_from_dict, evaluate_run, read_metrics
from test_image_datasets import CIFAR100_NAMES, cifar_tar, idx_bytes


class Counting(torch.utils.data.Dataset[tuple[torch.Tensor, int]]):
    """``n`` generated 1x16x16 images of ``classes`` classes (a class-specific pattern plus noise) that record
    which examples were read."""

    def __init__(self, n: int = 5000, classes: int = 50) -> None:
        self.targets = [i % classes for i in range(n)]
        patterns = torch.rand(classes, 1, 16, 16, generator=torch.Generator().manual_seed(0))
        self.patterns, self.calls = patterns, []  # type: ignore[var-annotated]

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        self.calls.append(i)
        noise = torch.rand(1, 16, 16, generator=torch.Generator().manual_seed(i))
        return self.patterns[self.targets[i]] + 0.5 * noise, self.targets[i]


def used(sampler: EpisodeSampler, seed: int, episodes: int) -> set[int]:
    generator = torch.Generator().manual_seed(seed)
    return {int(i) for _ in range(episodes) for indices in sampler.draw(generator)[1] for i in indices}


def same_tasks(a: list, b: list) -> bool:  # type: ignore[type-arg]
    return all(
        torch.equal(x.support_x, y.support_x)
        and torch.equal(x.query_x, y.query_x)
        and torch.equal(x.query_y, y.query_y)
        for x, y in zip(a, b, strict=True)
    )


@pytest.mark.parametrize("name", ["maml", "protonet"])
def test_a_user_dataset_meta_trains_through_the_python_api_reading_only_its_episodes(name: str) -> None:
    torch.manual_seed(0)
    dataset = Counting()
    pool = DatasetPool(dataset, example_shape=(1, 16, 16))
    sampler = EpisodeSampler(pool, range(40), ways=5, shots=1, queries=5)
    model = Conv4(1, 5, image_size=16, hidden=16)
    options = {"ways": 5} if name == "protonet" else {"inner_lr": 0.4, "inner_steps": 1}
    algorithm = build_algorithm(name, model, **options)
    params = {k: v.requires_grad_() for k, v in algorithm.init_params().items()}
    optimizer = torch.optim.Adam(params.values(), lr=0.003)
    generator = torch.Generator().manual_seed(1)
    steps, batch = 40, 4
    for _ in range(steps):
        grads, _ = meta_gradient(algorithm, params, sampler.sample_batch(batch, generator), "loop")
        for k, p in params.items():
            p.grad = grads[k]
        optimizer.step()
    assert set(dataset.calls) == used(sampler, 1, steps * batch)  # nothing else was read
    assert len(dataset.calls) == steps * batch * 5 * 6
    test = EpisodeSampler(pool, range(40, 50), ways=5, shots=1, queries=5)
    result = evaluate(algorithm, params, test, episodes=50, seed=3)
    assert result.mean > 0.4  # chance is 0.2; the classes are patterns plus noise


def test_workers_give_the_episodes_of_no_workers_and_restart_when_the_generator_is_reset() -> None:
    pool = DatasetPool(Counting(), example_shape=(1, 16, 16))
    sampler = EpisodeSampler(pool, range(50), 5, 2, 3, class_transforms=rotations(0, 90), augment=CropFlip(2))
    generator = torch.Generator().manual_seed(7)
    alone = [sampler.sample(generator) for _ in range(12)]
    loaded = PrefetchedEpisodes(sampler, workers=2, prefetch=2)
    generator = torch.Generator().manual_seed(7)
    first = [loaded.sample(generator) for _ in range(6)]
    generator = torch.Generator().manual_seed(7)  # a resumed run restores an earlier state
    again = [loaded.sample(generator) for _ in range(12)]
    assert same_tasks(first, alone[:6]) and same_tasks(again, alone)
    assert loaded.restarts == 2
    other = sampler.episode(*sampler.draw(torch.Generator().manual_seed(8)))
    assert not torch.equal(alone[0].support_x, other.support_x)


FACTORY = """
import torch

class Images(torch.utils.data.Dataset):
    def __init__(self):
        self.targets = [i % 12 for i in range(600)]
        self.patterns = torch.rand(12, 1, 16, 16, generator=torch.Generator().manual_seed(0))
        self.calls = []

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        self.calls.append(i)
        return self.patterns[self.targets[i]] + 0.3 * torch.rand(1, 16, 16), self.targets[i]

MADE = []

def make():
    MADE.append(Images())
    return MADE[-1]
"""


@pytest.mark.parametrize("name", ["maml", "protonet"])
def test_a_user_dataset_trains_from_a_config(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "user_data.py").write_text(textwrap.dedent(FACTORY))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "user_data", raising=False)
    config = config_from_dict(
        {
            "data": {"dataset": "dataset", "factory": "user_data:make", "class_fractions": [0.5, 0.25, 0.25]},
            "task": {"ways": 3, "shots": 1, "queries": 4},
            "model": {"name": "conv4", "channels": 8},
            "algorithm": {"name": name},
            "training": {"iterations": 4, "meta_batch_size": 2, "val_every": 2, "val_episodes": 3},
        }
    )
    experiment = build_experiment(config)
    Trainer(experiment, tmp_path / "run", progress=False).run()
    import user_data  # type: ignore[import-not-found]

    made = user_data.MADE[-1]
    episodes_read = 4 * 2 * 3 * 5 + 3 * 2 * 3 * 5  # training episodes, and two validations of 3 episodes
    assert 0 < len(made.calls) <= episodes_read + 1  # + the one example read to learn the input shape
    assert evaluate_run(tmp_path / "run", episodes=4).episodes == 4


def test_a_dataset_without_targets_and_wrong_labels_are_refused() -> None:
    data = [(torch.zeros(2), 0), (torch.ones(2), 1)]
    with pytest.raises(ValueError, match="has no `targets` attribute; pass labels="):
        DatasetPool(data)
    with pytest.raises(ValueError, match="2 examples but 3 labels"):
        DatasetPool(data, labels=[0, 1, 1])
    pool = DatasetPool(data, labels=[1, 0])
    with pytest.raises(ValueError, match=r"dataset\[0\] has label 0 but the labels given say 1"):
        pool.load(torch.tensor([0]))


def test_class_fractions_split_every_class_once() -> None:
    split = ClassSplit.from_fractions(100, (0.64, 0.16, 0.2), seed=3)
    assert (len(split.train), len(split.val), len(split.test)) == (64, 16, 20)
    assert sorted(split.train + split.val + split.test) == list(range(100))
    assert split == ClassSplit.from_fractions(100, (0.64, 0.16, 0.2), seed=3)
    with pytest.raises(ValueError, match="summing to 1"):
        ClassSplit.from_fractions(10, (0.5, 0.5, 0.5))


def png(path: Path, value: int, size: int = 12) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    array = np.clip(rng.normal(value, 30, (size, size, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(array).save(path)


def run_config(tmp_path: Path, values: dict) -> Path:  # type: ignore[type-arg]
    base = {"training": {"iterations": 2, "meta_batch_size": 2, "val_every": 2, "val_episodes": 2}}
    config = config_from_dict(base | values)
    run = tmp_path / "run"
    Trainer(build_experiment(config), run, progress=False).run()
    return run


def test_an_image_folder_from_a_config_with_workers_and_augmentation(tmp_path: Path) -> None:
    for c in range(10):
        for i in range(8):
            png(tmp_path / "images" / f"class{c}" / f"{i}.png", 20 * c + i)
    run = run_config(
        tmp_path,
        {
            "data": {
                "dataset": "folder",
                "root": str(tmp_path / "images"),
                "image_size": 16,
                "augment": "crop_flip",
                "workers": 2,
                "mean": [0.5, 0.5, 0.5],
                "std": [0.25, 0.25, 0.25],
            },
            "task": {"ways": 2, "shots": 1, "queries": 3},
            "model": {"name": "conv4", "channels": [4, 4, 8, 8]},
            "algorithm": {"name": "protonet"},
        },
    )
    assert [r["step"] for r in read_metrics(run) if r["split"] == "val"] == [2]


def test_mnist_config_runs_on_generated_idx_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10, dtype=np.uint8), 20)
    for prefix, n in (("train", 200), ("t10k", 200)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        (tmp_path / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(images)))
        (tmp_path / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels)))
    experiment = build_experiment(
        config_from_dict({"data": {"dataset": "mnist", "root": str(tmp_path)}, "task": {"ways": 5, "shots": 1}})
    )
    samplers = {part: s.sampler for part, s in experiment.sources.items()}  # type: ignore[attr-defined]
    classes = {part: len(s.classes) * len(s.transforms) for part, s in samplers.items()}
    assert classes == {"train": 10, "val": 8, "test": 12}
    from fastadapt.training import resolve_config

    config = resolve_config("mnist_maml", [f"data.root={tmp_path}", "training.iterations=2", "training.val_every=2"])
    Trainer(build_experiment(config), tmp_path / "run", progress=False).run()


def test_cifarfs_config_runs_on_a_generated_cifar100_archive(tmp_path: Path) -> None:
    import pickle

    rng = np.random.default_rng(0)

    def record(rows: int) -> dict[bytes, object]:
        fine = [c for c in range(100) for _ in range(rows)]
        return {
            b"fine_labels": fine,
            b"coarse_labels": [c % 20 for c in fine],
            b"batch_label": b"b",
            b"filenames": [b"x.png"] * len(fine),
            b"data": rng.integers(0, 256, (len(fine), 3072), dtype=np.uint8),
        }

    meta = {b"fine_label_names": [n.encode() for n in CIFAR100_NAMES], b"coarse_label_names": [b"s"] * 20}
    members = {k: pickle.dumps(v, protocol=2) for k, v in (("train", record(5)), ("test", record(1)), ("meta", meta))}
    (tmp_path / "cifar-100-python.tar.gz").write_bytes(cifar_tar(members))
    from fastadapt.training import resolve_config

    config = resolve_config(
        "cifarfs_protonet_5w1s",
        [
            f"data.root={tmp_path}",
            "training.iterations=2",
            "training.val_every=2",
            "training.val_episodes=2",
            "task.queries=5",
            "task.train_queries=5",
            "model.resnet_widths=[4,4,4,4]",
        ],
    )
    experiment = build_experiment(config)
    samplers = {part: source.sampler for part, source in experiment.sources.items()}  # type: ignore[attr-defined]
    names = {part: {s.pool.class_names[c] for c in s.classes} for part, s in samplers.items()}
    assert names == {part: set(classes) for part, classes in cifar_fs_classes().items()}
    Trainer(experiment, tmp_path / "run", progress=False).run()


def test_miniimagenet_configs_run_on_generated_images_in_ravis_layout(tmp_path: Path) -> None:
    rows = miniimagenet_ravi_rows()
    images = tmp_path / "images"
    images.mkdir()
    first: dict[str, Path] = {}
    for part in ("train", "val", "test"):
        for filename, label in rows[part]:  # one PNG per class, linked for the class's 600 files
            if label not in first:
                first[label] = images / filename
                png(first[label], len(first) * 2)
            else:
                os.link(first[label], images / filename)
    from fastadapt.training import resolve_config

    for name in ("miniimagenet_protonet_5w1s", "miniimagenet_maml_5w1s"):
        config = resolve_config(
            name,
            [
                f"data.root={images}",
                "data.image_size=16",
                "training.iterations=2",
                "training.val_every=2",
                "training.val_episodes=2",
                "training.meta_batch_size=1",
                "model.resnet_widths=[4,4,4,4]",
                "model.channels=4",
                "training.pretrain_steps=0",
            ],
        )
        experiment = build_experiment(config)
        counts = [len(experiment.sources[p].sampler.classes) for p in ("train", "val", "test")]  # type: ignore[attr-defined]
        assert counts == [64, 16, 20]
        Trainer(experiment, tmp_path / name, progress=False).run()
    with pytest.raises(ConfigError, match="is listed in fastadapt's copy of the Ravi"):
        next(images.iterdir()).unlink()
        build_experiment(resolve_config("miniimagenet_protonet_5w1s", [f"data.root={images}"]))


def test_pretraining_then_logistic_and_nearest_centroid_beat_the_untrained_body_on_digits(tmp_path: Path) -> None:
    common = {
        "data": {"dataset": "digits", "train_rotations": [0, 90, 180, 270]},  # 16 training classes
        "task": {"ways": 3, "shots": 1, "queries": 5},
        "model": {"name": "conv4", "channels": 16, "pooled_blocks": 3},
        "training": {"iterations": 0, "pretrain_batch_size": 32, "val_every": 60, "val_episodes": 20, "log_every": 10},
    }
    scores = {}
    for name in ("logistic", "protonet"):
        for steps in (0, 120):
            run = tmp_path / f"{name}{steps}"
            config = config_from_dict(common | {"algorithm": {"name": name}})
            config = dataclasses.replace(config, training=dataclasses.replace(config.training, pretrain_steps=steps))
            Trainer(build_experiment(config), run, progress=False).run()
            if steps:
                assert [r["step"] for r in read_metrics(run) if r["split"] == "pretrain_val"] == [60, 120]
            scores[name, steps] = evaluate_run(run, episodes=400).mean  # the same test episodes for both
    for name in ("logistic", "protonet"):
        # digits 0-3 transfer weakly to 7-9 (measured +3.5 and +5 points); an untrained body would tie
        assert scores[name, 120] > scores[name, 0] + 0.02, scores
        assert scores[name, 120] > 0.5, scores  # chance is 1/3
    with pytest.raises(ConfigError, match="logistic has nothing to meta-train"):
        build_experiment(config_from_dict(common | {"algorithm": {"name": "logistic"}, "training": {"iterations": 5}}))


def test_a_resumed_run_keeps_its_pretraining_and_does_not_pretrain_again(tmp_path: Path) -> None:
    values = {
        "data": {"dataset": "digits"},
        "task": {"ways": 3, "shots": 1, "queries": 3},
        "model": {"name": "conv4", "channels": 8, "pooled_blocks": 3},
        "algorithm": {"name": "protonet"},
        "training": {
            "iterations": 2,
            "pretrain_steps": 6,
            "pretrain_batch_size": 16,
            "val_every": 3,
            "val_episodes": 2,
            "log_every": 1,
            "checkpoint_every": 1,
        },
    }
    run = tmp_path / "run"
    Trainer(build_experiment(config_from_dict(values)), run, progress=False).run()
    pretraining = [r for r in read_metrics(run) if r["split"].startswith("pretrain")]
    assert len(pretraining) == 6 + 2
    values["training"] |= {"iterations": 4}
    values["data"] |= {"workers": 1}  # how fast a run goes does not block resuming it
    Trainer(build_experiment(config_from_dict(values)), run, progress=False).run(resume=True)
    rows = read_metrics(run)
    assert [r for r in rows if r["split"].startswith("pretrain")] == pretraining
    assert [r["step"] for r in rows if r["split"] == "train"] == [1, 2, 3, 4]


def test_evaluation_is_reproducible_with_dropblock_and_loading_leaves_the_global_generator_alone() -> None:
    from fastadapt.models import ResNet12

    pool = DatasetPool(Counting(600, 10), example_shape=(1, 16, 16))
    sampler = EpisodeSampler(pool, range(10), 3, 1, 2)
    algorithm = build_algorithm("protonet", ResNet12(1, 3, widths=(4, 4, 4, 4), drop_rate=0.5), ways=3)
    params = algorithm.init_params()
    loaded = PrefetchedEpisodes(sampler, workers=1)
    state = torch.get_rng_state()
    first = evaluate(algorithm, params, loaded, episodes=6, seed=2)
    assert torch.equal(torch.get_rng_state(), state)
    assert evaluate(algorithm, params, loaded, episodes=6, seed=2).per_episode == first.per_episode
    assert algorithm.model.training  # its mode is restored  # type: ignore[attr-defined]


def test_an_augmentation_factory_from_a_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fastadapt.data import augmentation

    (tmp_path / "user_aug.py").write_text(
        "from fastadapt.data import CropFlip\n\ndef make():\n    return CropFlip(1)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    made = augmentation("user_aug:make")
    assert isinstance(made, CropFlip) and made.padding == 1
    with pytest.raises(Exception, match="choose one of"):
        augmentation("sideways")
