"""Omniglot: the pool built from the publisher's zips, its preprocessing cache, and the Vinyals split."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import pytest
import torch

import fastadapt.data._omniglot as omniglot_module
from fastadapt.data import (
    DataError,
    import_files,
    load_omniglot,
    omniglot_pool,
    omniglot_vinyals_classes,
    omniglot_vinyals_split,
)
from fastadapt.tasks import EpisodeSampler, rotations


def _no_decoding(*args: object) -> None:
    raise AssertionError("decoded a PNG although the preprocessed cache should have been used")


def test_small_pool_shapes_labels_and_polarity(omniglot_dir: Path) -> None:
    pool = omniglot_pool([omniglot_dir / "images_background_small1.zip"])
    assert pool.features.shape == (2720, 1, 28, 28) and pool.features.dtype == torch.float32
    assert pool.num_classes == 136
    assert torch.equal(torch.bincount(pool.labels), torch.full((136,), 20))
    assert list(pool.class_names) == sorted(pool.class_names)
    assert pool.class_names[0] == "Balinese/character01"
    assert 0.0 <= pool.features.min() and pool.features.max() <= 1.0
    assert pool.features.amax(dim=(1, 2, 3)).min() > 0.5  # every drawing has strokes (thin ones blur a little)
    assert pool.features.mean() < 0.15  # strokes are 1 on a 0 background, and strokes are thin
    assert torch.equal(pool.labels, pool.labels.sort().values)  # class-major order


def test_preprocessed_cache_is_reused_and_keyed_by_parameters(
    omniglot_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = [omniglot_dir / "images_background_small1.zip"]
    first = omniglot_pool(source)
    (cached,) = (tmp_path / "cache" / "omniglot" / "preprocessed").iterdir()
    assert cached.suffix == ".safetensors"
    monkeypatch.setattr(omniglot_module, "_decode", _no_decoding)
    again = omniglot_pool(source)
    assert torch.equal(again.features, first.features) and torch.equal(again.labels, first.labels)
    assert again.class_names == first.class_names
    for other in ({"image_size": 14}, {"resample": "nearest"}, {"cache": False}):
        with pytest.raises(AssertionError, match="decoded a PNG"):
            omniglot_pool(source, **other)  # type: ignore[arg-type]


def test_nearest_resampling_gives_binary_images(omniglot_dir: Path) -> None:
    pool = omniglot_pool([omniglot_dir / "images_background_small1.zip"], 14, resample="nearest", cache=False)
    assert pool.features.shape == (2720, 1, 14, 14)
    assert set(pool.features.unique().tolist()) == {0.0, 1.0}


def test_an_extracted_folder_gives_the_same_pool(omniglot_dir: Path, tmp_path: Path) -> None:
    zip_path = omniglot_dir / "images_background_small1.zip"
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(tmp_path / "x")
    from_zip = omniglot_pool([zip_path], cache=False)
    from_folder = omniglot_pool([tmp_path / "x" / "images_background_small1"], cache=False)
    assert torch.equal(from_zip.features, from_folder.features)
    assert from_zip.class_names == from_folder.class_names


def test_overlapping_sources_are_rejected(omniglot_dir: Path) -> None:
    with pytest.raises(DataError, match="same image twice"):
        omniglot_pool([omniglot_dir / "images_background_small1.zip"] * 2, cache=False)


def test_episodes_with_rotations_as_classes(omniglot_dir: Path) -> None:
    pool = omniglot_pool([omniglot_dir / "images_background_small1.zip"])
    sampler = EpisodeSampler(pool, range(10), ways=40, shots=1, queries=2, class_transforms=rotations(0, 90, 180, 270))
    task = sampler.sample(torch.Generator().manual_seed(0))
    assert task.support_x.shape == (40, 1, 28, 28) and task.query_x.shape == (80, 1, 28, 28)
    # all 10 characters x 4 rotations were drawn; each image appears in exactly one rotation
    drawn = pool.features[pool.labels < 10]  # (200, 1, 28, 28)
    quarter_turns = [torch.rot90(drawn, k, dims=(-2, -1)) for k in range(4)]
    matches = [sum(bool((x == r).all(dim=(1, 2, 3)).any()) for r in quarter_turns) for x in task.support_x]
    assert matches == [1] * 40


def test_vinyals_split_sizes_and_ids() -> None:
    classes = omniglot_vinyals_classes()
    assert {part: len(names) for part, names in classes.items()} == {"train": 1028, "val": 172, "test": 423}
    names = sorted(name for part in classes.values() for name in part)
    assert len(set(names)) == 1623
    split = omniglot_vinyals_split(names)
    assert (len(split.train), len(split.val), len(split.test)) == (1028, 172, 423)
    assert names[split.test[0]] == classes["test"][0]
    assert all(re.fullmatch(r"[^/]+/character\d\d", n) for n in names)


def test_vinyals_split_needs_the_full_pool(omniglot_dir: Path) -> None:
    pool = omniglot_pool([omniglot_dir / "images_background_small1.zip"])
    with pytest.raises(ValueError, match=r"1487 of the 1,623 characters .* load_omniglot\(\)"):
        omniglot_vinyals_split(pool.class_names)


def test_missing_files_say_where_to_put_them(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"images_background\.zip nor the folder .*images_background/"):
        load_omniglot(tmp_path)
    with pytest.raises(DataError, match="fastadapt data download omniglot"):
        load_omniglot()


@pytest.mark.slow
def test_full_pool_from_the_repacked_zips(omniglot_dir: Path) -> None:
    """All 32,460 images, imported into the cache by content digest, then loaded from the cache."""
    import_files("omniglot", omniglot_dir)
    pool = load_omniglot(progress=False)
    assert pool.features.shape == (32460, 1, 28, 28)
    assert pool.num_classes == 1623
    assert torch.equal(torch.bincount(pool.labels), torch.full((1623,), 20))
    split = omniglot_vinyals_split(pool.class_names)
    assert (len(split.train), len(split.val), len(split.test)) == (1028, 172, 423)
    sampler = EpisodeSampler(pool, split.train, 20, 1, 5, class_transforms=rotations(0, 90, 180, 270))
    assert len(sampler.classes) * len(sampler.transforms) == 4112
    from_root = load_omniglot(omniglot_dir, progress=False)  # the zips where they are, same content
    assert torch.equal(from_root.features, pool.features)
