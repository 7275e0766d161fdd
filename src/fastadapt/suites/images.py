"""The image suite: N-way K-shot classification over disjoint class splits.

Datasets (``data.dataset``):

- ``digits``: scikit-learn's 8x8 digits, embedded (no download).
- ``omniglot``: the Vinyals et al. 2016 split, each character's four rotations four classes.
- ``mnist``: the four IDX files (LeCun et al. 1998); ten classes are too few for honest N-way tasks over disjoint
  splits, so rotations are classes too (:data:`MNIST_SPLIT`).
- ``miniimagenet``: the Ravi & Larochelle 2017 split (64 / 16 / 20 classes of 600 images), images supplied by the
  user in ``data.root`` and decoded when an episode holds them (``data.split``: other CSVs of that format).
- ``cifarfs``: the CIFAR-FS split of Bertinetto et al. 2019 (64 / 16 / 20 CIFAR-100 classes, 32x32).
- ``folder``: any ``data.root/<class>/<image>`` folder, split by ``data.split`` files or ``data.class_fractions``.
- ``dataset``: any map-style ``torch.utils.data.Dataset`` with ``targets``, made by ``data.factory`` (an import
  path ``module:callable``), split the same way.

Every dataset but digits and omniglot is read lazily (:class:`~fastadapt.tasks.DatasetPool`): only the examples an
episode holds are decoded, by ``data.workers`` processes if given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..data import (
    DIGITS_SPLIT,
    ArrayImages,
    DataError,
    ImageFiles,
    augmentation,
    cifar_fs_split,
    find_split_images,
    import_object,
    list_image_folder,
    load_cifar100,
    load_digits_pool,
    load_mnist,
    load_omniglot,
    miniimagenet_ravi_rows,
    omniglot_vinyals_split,
    read_split_csv,
    split_from_files,
)
from ..tasks import ClassSplit, ClassTransform, DatasetPool, ExamplePool, TaskSource, rotations
from ..training import Config, ConfigError, Suite, SuiteParts, build_model, episode_samplers

#: MNIST's class split. Each (digit, rotation) pair is a class; a digit's rotations stay in one split, so no test
#: class is a training class turned. Digits that look alike turned by 180 degrees (0, 1, 8 are symmetric; 6 is 9
#: turned) are in the training split with 0 and 90 degrees only, so no two classes of a split show the same
#: images: train 5 digits x 2 rotations = 10 classes, validation 2 x 4 = 8, test 3 x 4 = 12.
MNIST_SPLIT: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "train": ((0, 1, 6, 8, 9), (0, 90)),
    "val": ((5, 7), (0, 90, 180, 270)),
    "test": ((2, 3, 4), (0, 90, 180, 270)),
}
Transforms = dict[str, tuple[ClassTransform, ...]]


def _mnist(config: Config) -> tuple[ExamplePool, ClassSplit, Transforms]:
    data = config.data
    if data.image_size != 28:
        raise ConfigError(f"data.dataset=mnist: its images are 28x28; set data.image_size=28 (got {data.image_size})")
    images, labels = load_mnist(data.root, progress=False)
    digits = ArrayImages(images, labels.tolist(), [str(d) for d in range(10)], data.mean, data.std)
    pool = DatasetPool(digits, digits.targets, example_shape=digits.example_shape, check_labels=False)
    split = ClassSplit(*(MNIST_SPLIT[part][0] for part in ("train", "val", "test")))
    return pool, split, {part: rotations(*angles) for part, (_, angles) in MNIST_SPLIT.items()}


def _cifarfs(config: Config) -> tuple[ExamplePool, ClassSplit, Transforms]:
    data = config.data
    if data.image_size != 32:
        raise ConfigError(f"data.dataset=cifarfs: its images are 32x32; set data.image_size=32 (got {data.image_size})")
    images, labels, names = load_cifar100(data.root, progress=False)
    cifar = ArrayImages(images, labels.tolist(), names, data.mean, data.std)
    pool = DatasetPool(cifar, example_shape=cifar.example_shape, check_labels=False)
    return pool, cifar_fs_split(pool.class_names), {}


def _files_pool(config: Config, paths: list[Any], labels: list[str]) -> DatasetPool:
    data = config.data
    names = sorted(set(labels))
    ids = {name: i for i, name in enumerate(names)}
    files = ImageFiles(paths, [ids[x] for x in labels], names, data.image_size, data.channels or 3, data.mean, data.std)
    return DatasetPool(files, example_shape=files.example_shape, check_labels=False)


def _miniimagenet(config: Config) -> tuple[ExamplePool, ClassSplit, Transforms]:
    if config.data.root is None:
        raise ConfigError(
            "data.dataset=miniimagenet needs data.root=FOLDER: the images of the Ravi & Larochelle split (ImageNet's "
            "terms forbid redistributing them), flat as Ravi's script leaves them or one folder per class"
        )
    if config.data.split is None:
        rows, where = miniimagenet_ravi_rows(), "fastadapt's copy of the Ravi & Larochelle CSVs"
    else:  # the user's own split files in the same format
        rows = {part: read_split_csv(Path(config.data.split) / f"{part}.csv") for part in ("train", "val", "test")}
        where = config.data.split
    listed = [row for part in ("train", "val", "test") for row in rows[part]]
    paths = find_split_images(config.data.root, listed, where)
    pool = _files_pool(config, paths, [label for _, label in listed])
    ids = {name: i for i, name in enumerate(pool.class_names)}
    split = ClassSplit(
        *(tuple(ids[c] for c in dict.fromkeys(lab for _, lab in rows[p])) for p in ("train", "val", "test"))
    )
    return pool, split, {}


def _split(config: Config, pool: ExamplePool) -> ClassSplit:
    data = config.data
    if data.split is not None:
        return split_from_files(pool.class_names, data.split)
    return ClassSplit.from_fractions(pool.num_classes, data.class_fractions, seed=data.split_seed)


def _folder(config: Config) -> tuple[ExamplePool, ClassSplit, Transforms]:
    if config.data.root is None:
        raise ConfigError("data.dataset=folder needs data.root=FOLDER holding one sub-folder of images per class")
    paths, labels = list_image_folder(config.data.root)
    pool = _files_pool(config, paths, labels)
    return pool, _split(config, pool), {}


def _dataset(config: Config) -> tuple[ExamplePool, ClassSplit, Transforms]:
    data = config.data
    if data.factory is None:
        raise ConfigError(
            "data.dataset=dataset needs data.factory=module:callable, returning a map-style torch Dataset whose "
            "`targets` attribute holds one label per example"
        )
    made = import_object(data.factory, "data.factory")()
    pool = made if isinstance(made, DatasetPool) else DatasetPool(made)
    return pool, _split(config, pool), {}


def _pool(config: Config) -> tuple[ExamplePool, ClassSplit, Transforms]:
    data = config.data
    if data.dataset == "digits":
        train = rotations(*data.train_rotations) if data.train_rotations else ()
        return load_digits_pool(), DIGITS_SPLIT, {"train": train}
    if data.dataset == "omniglot":
        pool = load_omniglot(data.root, data.image_size, progress=False)
        # Vinyals et al. 2016: every character's four rotations are four classes, in every split.
        quarter_turns = rotations(0, 90, 180, 270)
        split = omniglot_vinyals_split(pool.class_names)
        return pool, split, dict.fromkeys(("train", "val", "test"), quarter_turns)
    builders = {"mnist": _mnist, "cifarfs": _cifarfs, "miniimagenet": _miniimagenet, "folder": _folder}
    return builders.get(data.dataset, _dataset)(config)


def build(config: Config) -> SuiteParts:
    if config.data.train_rotations and config.data.dataset != "digits":
        raise ConfigError("data.train_rotations applies to data.dataset=digits only; remove it")
    try:
        pool, split, transforms = _pool(config)
        augment = augmentation(config.data.augment)
    except (DataError, ValueError) as error:
        if isinstance(error, ConfigError):
            raise
        raise ConfigError(f"data.dataset={config.data.dataset}: {error}") from None
    sources: dict[str, TaskSource] = episode_samplers(config, pool, split, transforms, augment)
    model = build_model(config.model, pool.example_shape, config.task.ways)
    return SuiteParts(sources, model, loss="cross_entropy", ways=config.task.ways)


SUITE = Suite(
    "images",
    ("digits", "omniglot", "mnist", "miniimagenet", "cifarfs", "folder", "dataset"),
    build,
    description=(
        "few-shot image classification: digits (embedded), Omniglot, MNIST, mini-ImageNet, CIFAR-FS, any image "
        "folder, any torch Dataset (data.factory)"
    ),
)
