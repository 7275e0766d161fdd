"""MNIST, CIFAR-100 and the CIFAR-FS / mini-ImageNet split files: readers tested on small generated files in
exactly the published formats (gzipped IDX; a .tar.gz of protocol-2 pickles under ``cifar-100-python/``),
downloaded from a loopback server through a copy of the registry entry with the generated files' checksums.
Nothing here touches the internet."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import pickle
import struct
import tarfile
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest

from fastadapt.data import (
    REGISTRY,
    ChecksumError,
    DataError,
    Dataset,
    OfflineError,
    RemoteFile,
    cifar_fs_classes,
    cifar_fs_split,
    dataset_dir,
    download,
    load_cifar100,
    load_mnist,
    miniimagenet_ravi_rows,
    read_idx,
    verify_file,
)

#: CIFAR-100's fine label names in label order, as its ``meta`` lists them.
CIFAR100_NAMES = (
    "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel can "
    "castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur dolphin "
    "elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster "
    "man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck "
    "pine_tree plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk "
    "skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television tiger "
    "tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm"
).split()
SPLITS = Path(__file__).parents[1] / "src" / "fastadapt" / "data" / "splits"
#: The project's shared copies of the split files, beside the repository (see conftest.SHARED_DATA).
SHARED_SPLITS = Path(__file__).parents[2] / "shared" / "data" / "splits"


def idx_bytes(array: np.ndarray, type_byte: int = 0x08) -> bytes:
    """An IDX file: 00 00, the type byte, the number of dimensions, big-endian uint32 sizes, big-endian data."""
    big = array.astype(array.dtype.newbyteorder(">"))
    return bytes([0, 0, type_byte, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + big.tobytes()


def serve(root: Path, remote: RemoteFile, content: bytes) -> None:
    """Puts ``content`` where a mirror of ``remote``'s canonical URL serves it."""
    path = root / urlsplit(remote.url).path.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)


def like_registry(name: str, contents: dict[str, bytes]) -> Dataset:
    """The registry's dataset ``name`` with the same file names and URLs but the checksums of ``contents``."""
    files = tuple(
        dataclasses.replace(f, bytes=len(contents[f.name]), md5=hashlib.md5(contents[f.name]).hexdigest())
        for f in REGISTRY[name].files
    )
    return dataclasses.replace(REGISTRY[name], files=files)


# --- MNIST -----------------------------------------------------------------------------------------------------


@pytest.fixture
def mnist() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (50, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte.gz": rng.integers(0, 10, 50, dtype=np.uint8),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte.gz": rng.integers(0, 10, 20, dtype=np.uint8),
    }


def mnist_files(arrays: dict[str, np.ndarray]) -> dict[str, bytes]:
    return {name: gzip.compress(idx_bytes(array), mtime=0) for name, array in arrays.items()}


def test_mnist_download_and_load_gives_the_generated_arrays(
    server: tuple[str, Path], mnist: dict[str, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, root = server
    contents = mnist_files(mnist)
    monkeypatch.setitem(REGISTRY, "mnist", like_registry("mnist", contents))
    for remote in REGISTRY["mnist"].files:
        serve(root, remote, contents[remote.name])
    images, labels = load_mnist(download=True, mirrors=[url], progress=False)
    assert images.dtype == np.uint8 and images.shape == (70, 28, 28)
    assert labels.dtype == np.int64 and labels.shape == (70,)
    np.testing.assert_array_equal(images[:50], mnist["train-images-idx3-ubyte.gz"])
    np.testing.assert_array_equal(images[50:], mnist["t10k-images-idx3-ubyte.gz"])
    np.testing.assert_array_equal(
        labels, np.concatenate([mnist["train-labels-idx1-ubyte.gz"], mnist["t10k-labels-idx1-ubyte.gz"]])
    )
    again, _ = load_mnist(progress=False)  # from the cache, no server needed
    np.testing.assert_array_equal(again, images)


def test_mnist_from_a_folder_of_gzipped_and_gunzipped_files(tmp_path: Path, mnist: dict[str, np.ndarray]) -> None:
    for i, (name, content) in enumerate(mnist_files(mnist).items()):
        if i % 2:
            (tmp_path / name.removesuffix(".gz")).write_bytes(gzip.decompress(content))
        else:
            (tmp_path / name).write_bytes(content)
    images, labels = load_mnist(tmp_path)
    np.testing.assert_array_equal(images[50:], mnist["t10k-images-idx3-ubyte.gz"])
    assert labels.tolist()[:50] == mnist["train-labels-idx1-ubyte.gz"].tolist()


def test_mnist_wrong_checksum_names_the_file(
    server: tuple[str, Path], mnist: dict[str, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, root = server
    contents = mnist_files(mnist)
    monkeypatch.setitem(REGISTRY, "mnist", like_registry("mnist", contents))
    tampered = bytearray(contents["t10k-images-idx3-ubyte.gz"])
    tampered[-20] ^= 0xFF
    for remote in REGISTRY["mnist"].files:
        serve(root, remote, bytes(tampered) if remote.name.startswith("t10k-images") else contents[remote.name])
    with pytest.raises(ChecksumError, match=r"sent a file that is not t10k-images-idx3-ubyte\.gz"):
        load_mnist(download=True, mirrors=[url], progress=False)
    assert not (dataset_dir("mnist") / "t10k-images-idx3-ubyte.gz").exists()


def test_mnist_missing_files_are_named(
    server: tuple[str, Path], tmp_path: Path, mnist: dict[str, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, root = server
    contents = mnist_files(mnist)
    monkeypatch.setitem(REGISTRY, "mnist", like_registry("mnist", contents))
    for remote in REGISTRY["mnist"].files[:3]:
        serve(root, remote, contents[remote.name])
    with pytest.raises(OfflineError, match=r"could not download t10k-labels-idx1-ubyte\.gz.*HTTP 404"):
        load_mnist(download=True, mirrors=[url], progress=False)
    folder = tmp_path / "mnist"
    folder.mkdir()
    for name in list(contents)[:3]:
        (folder / name).write_bytes(contents[name])
    with pytest.raises(DataError, match=r"neither .*t10k-labels-idx1-ubyte\.gz nor .*t10k-labels-idx1-ubyte exists"):
        load_mnist(folder)


def test_mnist_image_and_label_counts_must_agree(tmp_path: Path, mnist: dict[str, np.ndarray]) -> None:
    mnist["t10k-labels-idx1-ubyte.gz"] = mnist["t10k-labels-idx1-ubyte.gz"][:19]
    for name, content in mnist_files(mnist).items():
        (tmp_path / name).write_bytes(content)
    with pytest.raises(DataError) as error:
        load_mnist(tmp_path)
    message = str(error.value)
    assert (
        "t10k-images-idx3-ubyte.gz holds 20 images" in message
        and "t10k-labels-idx1-ubyte.gz holds 19 labels" in message
    )


def test_mnist_labels_beyond_nine_are_refused(tmp_path: Path, mnist: dict[str, np.ndarray]) -> None:
    mnist["train-labels-idx1-ubyte.gz"][3] = 10
    for name, content in mnist_files(mnist).items():
        (tmp_path / name).write_bytes(content)
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte\.gz has the label 10"):
        load_mnist(tmp_path)


@pytest.mark.parametrize(
    ("type_byte", "dtype"),
    [(0x08, np.uint8), (0x09, np.int8), (0x0B, np.int16), (0x0C, np.int32), (0x0D, np.float32), (0x0E, np.float64)],
)
def test_read_idx_reads_every_type_big_endian(tmp_path: Path, type_byte: int, dtype: type) -> None:
    array = (np.arange(24).reshape(2, 3, 4) * 37 - 300).astype(dtype)  # negative and multi-byte values
    path = tmp_path / "a.idx"
    path.write_bytes(idx_bytes(array, type_byte))
    got = read_idx(path)
    assert got.dtype == np.dtype(dtype) and got.dtype.isnative
    np.testing.assert_array_equal(got, array)
    assert got.flags.writeable


def test_read_idx_errors_name_the_file_and_the_problem(tmp_path: Path) -> None:
    good = idx_bytes(np.arange(12, dtype=np.uint8).reshape(3, 4))
    cases = {
        "magic.idx": (b"\x01\x00" + good[2:], r"magic\.idx is not an IDX file: it starts with 01 00 08 02"),
        "type.idx": (good[:2] + b"\x0a" + good[3:], r"type\.idx is not an IDX file"),
        "short.idx": (
            good[:-1],
            r"short\.idx is truncated: .*shape \(3, 4\).*needs 12 bytes after its header, found 11",
        ),
        "long.idx": (good + b"\0\0", r"long\.idx is followed by trailing data: .*needs 12 bytes .*found 14"),
        "header.idx": (good[:6], r"header\.idx is truncated: its 2 dimensions need a 12-byte header, found 6"),
        "cut.gz": (gzip.compress(good)[:-10], r"cut\.gz is a truncated or corrupt gzip file"),
    }
    for name, (content, message) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(DataError, match=message):
            read_idx(tmp_path / name)


# --- CIFAR-100 -------------------------------------------------------------------------------------------------

#: Fine classes of the generated set; rows per class in train / test.
CLASSES, TRAIN_ROWS, TEST_ROWS = (0, 1, 47, 99), 3, 2
PIXEL = (5, 7)  # (row, column) of the pixel whose RGB is set in the first training image
RGB = (11, 122, 233)


@pytest.fixture
def cifar() -> dict[str, dict[bytes, object]]:
    rng = np.random.default_rng(0)

    def batch(label: bytes, rows: int) -> dict[bytes, object]:
        fine = [c for c in CLASSES for _ in range(rows)]
        data = rng.integers(0, 256, (len(fine), 3072), dtype=np.uint8)
        return {
            b"filenames": [f"img_{i}.png".encode() for i in range(len(fine))],
            b"batch_label": label,
            b"fine_labels": fine,
            b"coarse_labels": [c % 20 for c in fine],
            b"data": data,
        }

    train, test = batch(b"training batch 1 of 1", TRAIN_ROWS), batch(b"testing batch 1 of 1", TEST_ROWS)
    row, column = PIXEL
    for channel, value in enumerate(RGB):  # data rows are 1,024 red, 1,024 green, 1,024 blue, each 32x32 row-major
        train[b"data"][0, channel * 1024 + row * 32 + column] = value  # type: ignore[index]
    meta = {
        b"fine_label_names": [n.encode() for n in CIFAR100_NAMES],
        b"coarse_label_names": [f"superclass_{i}".encode() for i in range(20)],
    }
    return {"train": train, "test": test, "meta": meta}


def cifar_members(records: dict[str, object]) -> dict[str, bytes]:
    return {name: pickle.dumps(record, protocol=2) for name, record in records.items()}


def cifar_tar(members: dict[str, bytes]) -> bytes:
    """A ``cifar-100-python.tar.gz`` as published: the folder, then its members."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        folder = tarfile.TarInfo("cifar-100-python")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
        for name, content in members.items():
            info = tarfile.TarInfo(f"cifar-100-python/{name}")
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def expected_images(record: dict[bytes, object]) -> np.ndarray:
    return np.asarray(record[b"data"]).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def test_cifar100_download_and_load_gives_the_generated_arrays(
    server: tuple[str, Path], cifar: dict[str, dict[bytes, object]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, root = server
    archive = cifar_tar(cifar_members(cifar))
    monkeypatch.setitem(REGISTRY, "cifar100", like_registry("cifar100", {"cifar-100-python.tar.gz": archive}))
    serve(root, REGISTRY["cifar100"].files[0], archive)
    images, labels, names = load_cifar100(download=True, mirrors=[url], progress=False)
    n_train, n_test = len(CLASSES) * TRAIN_ROWS, len(CLASSES) * TEST_ROWS
    assert images.dtype == np.uint8 and images.shape == (n_train + n_test, 32, 32, 3)
    assert (
        labels.dtype == np.int64 and labels.tolist() == cifar["train"][b"fine_labels"] + cifar["test"][b"fine_labels"]
    )
    assert names == tuple(CIFAR100_NAMES)
    assert tuple(images[0, PIXEL[0], PIXEL[1]]) == RGB
    np.testing.assert_array_equal(images[:n_train], expected_images(cifar["train"]))
    np.testing.assert_array_equal(images[n_train:], expected_images(cifar["test"]))
    assert names[labels[n_train]] == "apple" and names[labels[-1]] == "worm"


def test_cifar100_from_the_extracted_folder_and_from_the_archive(
    tmp_path: Path, cifar: dict[str, dict[bytes, object]]
) -> None:
    members = cifar_members(cifar)
    folder = tmp_path / "extracted" / "cifar-100-python"
    folder.mkdir(parents=True)
    for name, content in members.items():
        (folder / name).write_bytes(content)
    (tmp_path / "archive").mkdir()
    (tmp_path / "archive" / "cifar-100-python.tar.gz").write_bytes(cifar_tar(members))
    from_folder, from_archive = load_cifar100(tmp_path / "extracted"), load_cifar100(tmp_path / "archive")
    for a, b in zip(from_folder, from_archive, strict=True):
        np.testing.assert_array_equal(a, b)
    assert tuple(from_folder[0][0, PIXEL[0], PIXEL[1]]) == RGB


class _Python2Pickler(pickle._Pickler):  # type: ignore[name-defined]
    """Writes str and bytes as Python 2 str (BINSTRING), as CIFAR's files were written."""

    dispatch = pickle._Pickler.dispatch.copy()  # type: ignore[attr-defined]

    def save_py2_str(self, obj: str | bytes) -> None:
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[str] = save_py2_str
    dispatch[bytes] = save_py2_str


def test_cifar100_reads_pickles_as_python_2_wrote_them(tmp_path: Path, cifar: dict[str, dict[bytes, object]]) -> None:
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    for name, record in cifar.items():
        buffer = io.BytesIO()
        _Python2Pickler(buffer, protocol=2).dump(record)
        content = buffer.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
        assert b"cnumpy.core.multiarray\n_reconstruct\n" in content or name == "meta"
        (folder / name).write_bytes(content)
    images, labels, names = load_cifar100(tmp_path)
    assert tuple(images[0, PIXEL[0], PIXEL[1]]) == RGB and names[47] == "maple_tree"
    assert labels.tolist()[: len(CLASSES) * TRAIN_ROWS] == cifar["train"][b"fine_labels"]


def test_cifar100_wrong_checksum_names_the_file(
    server: tuple[str, Path], cifar: dict[str, dict[bytes, object]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, root = server
    archive = cifar_tar(cifar_members(cifar))
    monkeypatch.setitem(REGISTRY, "cifar100", like_registry("cifar100", {"cifar-100-python.tar.gz": archive}))
    serve(root, REGISTRY["cifar100"].files[0], archive[:-1] + bytes([archive[-1] ^ 1]))
    with pytest.raises(ChecksumError, match=r"sent a file that is not cifar-100-python\.tar\.gz"):
        load_cifar100(download=True, mirrors=[url], progress=False)


def test_cifar100_missing_member_truncated_archive_and_missing_file(
    tmp_path: Path, cifar: dict[str, dict[bytes, object]]
) -> None:
    members = cifar_members(cifar)
    no_meta = tmp_path / "no_meta"
    no_meta.mkdir()
    (no_meta / "cifar-100-python.tar.gz").write_bytes(cifar_tar({k: v for k, v in members.items() if k != "meta"}))
    with pytest.raises(DataError, match=r"no_meta/cifar-100-python\.tar\.gz has no member cifar-100-python/meta"):
        load_cifar100(no_meta)
    cut = tmp_path / "cut"
    cut.mkdir()
    archive = cifar_tar(members)
    for length in (len(archive) // 2, len(archive) - 5):  # in a member; in the gzip trailer, after all members
        (cut / "cifar-100-python.tar.gz").write_bytes(archive[:length])
        with pytest.raises(DataError, match=r"cut/cifar-100-python\.tar\.gz is truncated or corrupt \(EOFError"):
            load_cifar100(cut)
    folder = tmp_path / "folder" / "cifar-100-python"
    folder.mkdir(parents=True)
    (folder / "train").write_bytes(members["train"])
    (folder / "meta").write_bytes(members["meta"])
    with pytest.raises(DataError, match=r"cifar-100-python/test is missing"):
        load_cifar100(tmp_path / "folder")
    with pytest.raises(DataError, match=r"neither .*empty/cifar-100-python\.tar\.gz nor the folder"):
        load_cifar100(tmp_path / "empty")


def test_a_pickle_with_a_forbidden_global_is_refused_and_not_run(
    tmp_path: Path, cifar: dict[str, dict[bytes, object]]
) -> None:
    marker = tmp_path / "ran"
    command = f"touch {marker}".encode()
    # os.system("touch <marker>"), written by hand: PROTO 2, GLOBAL os.system, the argument, TUPLE1, REDUCE, STOP
    evil = b"\x80\x02cos\nsystem\n" + pickle.BINUNICODE + struct.pack("<I", len(command)) + command + b"\x85R."
    members = cifar_members(cifar) | {"train": evil}
    (tmp_path / "cifar-100-python.tar.gz").write_bytes(cifar_tar(members))
    with pytest.raises(DataError) as error:
        load_cifar100(tmp_path)
    message = str(error.value)
    assert "cifar-100-python.tar.gz: cifar-100-python/train refers to the global os.system" in message
    assert "refused" in message
    assert not marker.exists()


def test_codecs_encode_is_allowed_only_for_latin1(tmp_path: Path, cifar: dict[str, dict[bytes, object]]) -> None:
    # _codecs.encode("abc", "rot13"): an allowed global with a codec that bytes pickles never use
    odd = b"\x80\x02c_codecs\nencode\nX\x03\x00\x00\x00abcX\x05\x00\x00\x00rot13\x86R."
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    for name, content in (cifar_members(cifar) | {"meta": odd}).items():
        (folder / name).write_bytes(content)
    with pytest.raises(DataError, match=r"cifar-100-python/meta is not a readable CIFAR-100 pickle .*'rot13'"):
        load_cifar100(tmp_path)


def test_cifar100_rows_must_have_3072_bytes(tmp_path: Path, cifar: dict[str, dict[bytes, object]]) -> None:
    cifar["test"][b"data"] = np.zeros((len(CLASSES) * TEST_ROWS, 3000), dtype=np.uint8)
    (tmp_path / "cifar-100-python.tar.gz").write_bytes(cifar_tar(cifar_members(cifar)))
    with pytest.raises(DataError, match=r"cifar-100-python/test: rows of 'data' have 3,000 bytes, expected 3,072"):
        load_cifar100(tmp_path)


# --- registry entries and split files --------------------------------------------------------------------------


def test_registry_entries_have_the_published_urls_sizes_and_md5() -> None:
    published = {
        "train-images-idx3-ubyte.gz": (9_912_422, "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        "train-labels-idx1-ubyte.gz": (28_881, "d53e105ee54ea40749a09fcbcd1e9432"),
        "t10k-images-idx3-ubyte.gz": (1_648_877, "9fb629c4189551a2d022fa330f9573f3"),
        "t10k-labels-idx1-ubyte.gz": (4_542, "ec29112dd5afa0611ce80d1b7f02629c"),
    }
    mnist = REGISTRY["mnist"]
    assert {f.name: (f.bytes, f.md5) for f in mnist.files} == published
    for f in mnist.files:
        assert f.urls == (
            f"https://ossci-datasets.s3.amazonaws.com/mnist/{f.name}",
            f"https://yann.lecun.com/exdb/mnist/{f.name}",
        )
    assert "LeCun, Bottou, Bengio & Haffner (1998)" in mnist.citation and "86(11)" in mnist.citation
    (archive,) = REGISTRY["cifar100"].files
    assert (archive.name, archive.bytes, archive.md5) == (
        "cifar-100-python.tar.gz",
        169_001_437,
        "eb9058c3a382ffc7106e4002c42a8d85",
    )
    assert archive.urls == ("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",)
    assert "Krizhevsky (2009)" in REGISTRY["cifar100"].citation
    assert "not distributed" in REGISTRY["miniimagenet-splits"].summary


@pytest.mark.parametrize(
    ("dataset", "folder", "url"),
    [
        (
            "miniimagenet-splits",
            "miniimagenet_ravi",
            "https://raw.githubusercontent.com/twitter/meta-learning-lstm/0df7fc747a219b7dd04e846d75eb8164483b304b/"
            "data/miniImagenet/{}",
        ),
        (
            "cifar-fs-splits",
            "cifar-fs_bertinetto",
            "https://raw.githubusercontent.com/bertinetto/r2d2/9ed0090cb4979113c97d07f75789b9618a308e52/"
            "cifar-fs_splits/{}",
        ),
    ],
)
def test_shipped_split_files_hash_to_their_registry_entries(dataset: str, folder: str, url: str) -> None:
    entry = REGISTRY[dataset]
    suffix = ".csv" if dataset.startswith("mini") else ".txt"
    assert [f.name for f in entry.files] == [f"{part}{suffix}" for part in ("train", "val", "test")]
    for remote in entry.files:
        assert remote.urls == (url.format(remote.name),)
        assert "matches the publisher's" in verify_file(remote, SPLITS / folder / remote.name, dataset)
        shared = SHARED_SPLITS / folder / remote.name
        if shared.is_file():
            assert (SPLITS / folder / remote.name).read_bytes() == shared.read_bytes()
    assert (SPLITS / folder / "LICENSE").read_text().startswith("MIT License")


def test_cifar_fs_classes_are_cifar100_fine_names() -> None:
    split = cifar_fs_classes()
    assert {part: len(names) for part, names in split.items()} == {"train": 64, "val": 16, "test": 20}
    everything = [name for names in split.values() for name in names]
    assert sorted(everything) == sorted(CIFAR100_NAMES)  # disjoint, complete, spelled as in meta
    ids = cifar_fs_split(CIFAR100_NAMES)
    assert [CIFAR100_NAMES[i] for i in ids.train] == list(split["train"])
    assert "maple_tree" in {CIFAR100_NAMES[i] for i in (*ids.train, *ids.val, *ids.test)}
    with pytest.raises(DataError, match="not among these class names"):
        cifar_fs_split([n.replace("_", " ") for n in CIFAR100_NAMES])


def test_miniimagenet_ravi_rows() -> None:
    rows = miniimagenet_ravi_rows()
    assert {part: len(r) for part, r in rows.items()} == {"train": 38_400, "val": 9_600, "test": 12_000}
    classes = {part: {label for _, label in r} for part, r in rows.items()}
    assert {part: len(c) for part, c in classes.items()} == {"train": 64, "val": 16, "test": 20}
    assert not (
        classes["train"] & classes["val"] or classes["train"] & classes["test"] or classes["val"] & classes["test"]
    )
    assert rows["train"][0] == ("n0153282900000005.jpg", "n01532829")


@pytest.mark.parametrize(
    ("dataset", "folder"), [("miniimagenet-splits", "miniimagenet_ravi"), ("cifar-fs-splits", "cifar-fs_bertinetto")]
)
def test_split_files_download_from_a_mirror_with_the_published_checksums(
    server: tuple[str, Path], dataset: str, folder: str
) -> None:
    url, root = server
    entry = REGISTRY[dataset]
    for remote in entry.files:  # the mirror serves the publishers' bytes (fastadapt ships identical copies)
        serve(root, remote, (SPLITS / folder / remote.name).read_bytes())
    reports = download(dataset, mirrors=[url], progress=False)
    assert [r.name for r in reports] == [f.name for f in entry.files]
    assert all("verified" in r.detail for r in reports)
    broken = entry.files[0]
    serve(root, broken, (SPLITS / folder / broken.name).read_bytes()[:-10])  # truncated on the server
    with pytest.raises(ChecksumError, match=f"sent a file that is not {broken.name}"):
        download(dataset, mirrors=[url], progress=False, force=True)
