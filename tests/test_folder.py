"""Generic sources on generated files: image folders, the standard split files, and feature tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fastadapt.data import DataError, load_image_folder, load_image_split, load_table, read_split_csv, split_from_files

CLASSES = ("n02", "n10", "n01")  # deliberately unsorted


def make_images(root: Path, per_class: int = 3, size: tuple[int, int] = (6, 5)) -> dict[str, list[np.ndarray]]:
    """``root/<class>/<i>.png`` random RGB images of ``size`` ``(H, W)``; returns the pixels per class."""
    rng = np.random.default_rng(0)
    pixels: dict[str, list[np.ndarray]] = {}
    for name in CLASSES:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            array = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            Image.fromarray(array).save(root / name / f"{name}_{i}.png")
            pixels.setdefault(name, []).append(array)
    return pixels


def write_split(folder: Path, suffix: str, parts: dict[str, list[str]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for part, names in parts.items():
        if suffix == ".csv":
            lines = ["filename,label"] + [f"{n}_{i}.png,{n}" for n in names for i in range(3)]
        else:
            lines = list(names)
        (folder / f"{part}{suffix}").write_text("\n".join(lines) + "\n")
    return folder


def test_image_folder_is_read_exactly(tmp_path: Path) -> None:
    pixels = make_images(tmp_path / "images")
    pool = load_image_folder(tmp_path / "images")
    assert pool.class_names == ("n01", "n02", "n10")
    assert pool.features.shape == (9, 3, 6, 5) and pool.features.dtype == torch.float32
    assert pool.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    expected = torch.from_numpy(np.stack(pixels["n02"])).permute(0, 3, 1, 2).float() / 255.0  # (3, 3, 6, 5)
    assert torch.equal(pool.features[pool.labels == 1], expected)


def test_image_folder_resizes_and_converts(tmp_path: Path) -> None:
    make_images(tmp_path / "images")
    assert load_image_folder(tmp_path / "images", 4).features.shape == (9, 3, 4, 4)
    assert load_image_folder(tmp_path / "images", (2, 3), mode="L").features.shape == (9, 1, 2, 3)


def test_image_folder_errors_name_the_fix(tmp_path: Path) -> None:
    make_images(tmp_path / "images")
    Image.new("RGB", (7, 7)).save(tmp_path / "images" / "n01" / "odd.png")
    with pytest.raises(DataError, match="pass image_size"):
        load_image_folder(tmp_path / "images")
    with pytest.raises(DataError, match="is not a folder"):
        load_image_folder(tmp_path / "missing")
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(DataError, match=r"lay them out as .*/<class>/<image>"):
        load_image_folder(tmp_path / "empty")


@pytest.mark.parametrize("suffix", [".csv", ".txt"])
def test_split_from_files(tmp_path: Path, suffix: str) -> None:
    folder = write_split(tmp_path / "split", suffix, {"train": ["n10"], "val": ["n01"], "test": ["n02"]})
    split = split_from_files(("n01", "n02", "n10"), folder)
    assert (split.train, split.val, split.test) == ((2,), (0,), (1,))
    with pytest.raises(DataError, match=r"1 classes of the train split .* not in the pool \(e.g. \['n10'\]"):
        split_from_files(("n01", "n02"), folder)
    (folder / f"test{suffix}").unlink()
    with pytest.raises(DataError, match=r"neither test\.csv nor test\.txt"):
        split_from_files(("n01", "n02", "n10"), folder)


def test_flat_and_class_folder_layouts_with_split_csvs(tmp_path: Path) -> None:
    make_images(tmp_path / "by_class")
    flat = tmp_path / "flat"
    flat.mkdir()
    for f in (tmp_path / "by_class").rglob("*.png"):
        (flat / f.name).write_bytes(f.read_bytes())
    split_dir = write_split(tmp_path / "split", ".csv", {"train": ["n10", "n02"], "val": ["n01"], "test": []})
    (split_dir / "test.csv").write_text("filename,label\n")
    for images in (flat, tmp_path / "by_class"):
        pool, split = load_image_split(images, split_dir)
        assert pool.class_names == ("n01", "n02", "n10") and pool.features.shape == (9, 3, 6, 5)
        assert (split.train, split.val, split.test) == ((2, 1), (0,), ())
    (flat / "n01_0.png").unlink()
    with pytest.raises(DataError, match=r"n01_0.png \(class n01\) is listed in .* but is neither"):
        load_image_split(flat, split_dir)


def test_split_csv_format_is_checked(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("file,class\nx.jpg,n01\n")
    with pytest.raises(DataError, match="header 'filename,label'"):
        read_split_csv(tmp_path / "a.csv")
    (tmp_path / "b.csv").write_text("filename,label\nx.jpg\n")
    with pytest.raises(DataError, match="line 2: expected 'filename,label'"):
        read_split_csv(tmp_path / "b.csv")


def test_the_published_split_files(tmp_path: Path) -> None:
    splits = Path(__file__).parents[2] / "shared" / "data" / "splits"
    if not splits.is_dir():
        pytest.skip(f"shared split files not found at {splits} (expected a copy of shared/ beside the clone)")
    ravi = splits / "miniimagenet_ravi"
    rows = {part: read_split_csv(ravi / f"{part}.csv") for part in ("train", "val", "test")}
    assert {part: len(r) for part, r in rows.items()} == {"train": 38400, "val": 9600, "test": 12000}
    wnids = sorted({label for r in rows.values() for _, label in r})
    split = split_from_files(wnids, ravi)
    assert (len(split.train), len(split.val), len(split.test)) == (64, 16, 20)
    cifar = splits / "cifar-fs_bertinetto"
    names = sorted((cifar / "all.txt").read_text().split())
    split = split_from_files(names, cifar)
    assert (len(split.train), len(split.val), len(split.test)) == (64, 16, 20)


def test_feature_table(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("a,label,b\n1.5,10,2\n-1,2,0.25\n3,10,1e3\n")
    pool = load_table(path)
    assert pool.class_names == ("2", "10")  # integer labels sort numerically
    assert pool.labels.tolist() == [1, 0, 1]
    assert torch.equal(pool.features, torch.tensor([[1.5, 2.0], [-1.0, 0.25], [3.0, 1000.0]]))
    assert load_table(path, feature_columns=["b"]).features.shape == (3, 1)
    tsv = tmp_path / "t.tsv"
    tsv.write_text("x\tkind\n0.5\tcat\n1\tdog\n")
    pool = load_table(tsv, label_column="kind")
    assert pool.class_names == ("cat", "dog") and pool.features.tolist() == [[0.5], [1.0]]


def test_feature_table_errors_name_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("a,y\n1,0\nfoo,1\n")
    with pytest.raises(DataError, match=r"no column 'label'.*pass label_column="):
        load_table(path)
    with pytest.raises(DataError, match=r"line 3, column 'a': 'foo' is not a number"):
        load_table(path, label_column="y")
    with pytest.raises(DataError, match=r"feature columns \['z'\] not usable"):
        load_table(path, label_column="y", feature_columns=["z"])
    path.write_text("a,y\n1,0\n2\n")
    with pytest.raises(DataError, match="line 3: the row has fewer fields than the header"):
        load_table(path, label_column="y")
    with pytest.raises(DataError, match=r"not Parquet.*to_csv"):
        load_table(tmp_path / "t.parquet")
