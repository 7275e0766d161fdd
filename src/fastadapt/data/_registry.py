"""Named datasets: where their files come from, what they must hash to, and where they are cached.

The checksums are part of the code (an explicit dict, no registration by import side effects). Files are
kept byte-identical to the publishers' copies; a file that cannot be byte-identical (a zip repacked by a
mirror, a folder the user extracted) is accepted when the digest of its content matches (see
:func:`fastadapt.data.content_digest`), or, for a zip whose files have published checksums of their own
(:class:`Member`), when each of those files matches (see ``_members.py``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

#: Environment variable naming the cache directory (default ``~/.cache/fastadapt``).
DATA_ENV = "FASTADAPT_DATA"


class DataError(Exception):
    """A dataset file is missing, unreachable or not what the registry says it should be."""


class ChecksumError(DataError):
    """A file's size or checksum is not the published one."""


@dataclass(frozen=True)
class Member:
    """One file inside a dataset's zip, named relative to the zip's top folder (``u.data`` in ``ml-100k/``).

    Attributes:
        name: the file's name.
        sha256: its published sha256 (hex), or None where no published checksum is known: such a file is
            verified only as part of the publisher's whole zip, never on its own.
        md5: its published md5 (hex), if any. Every checksum given must match.
        required: whether the dataset's loader needs the file.
    """

    name: str
    sha256: str | None = None
    md5: str | None = None
    required: bool = False

    def checksums(self) -> dict[str, str]:
        """``{"sha256": hex, "md5": hex}`` for the checksums that are known (sha256 first)."""
        return {algo: value for algo, value in (("sha256", self.sha256), ("md5", self.md5)) if value is not None}


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset.

    Attributes:
        name: the file's name in the dataset's cache directory.
        urls: the canonical download URL first, then alternatives tried if it is unreachable.
        bytes: the published size, or None if unknown.
        md5: published md5 (hex), if any.
        sha256: published sha256 (hex), if any. Every checksum given must match.
        content_sha256: for a zip, the digest of its contents (see :func:`content_digest`), so that a
            repacked zip or an extracted folder can be recognised although its bytes differ.
        content_suffix: which zip entries / files count as content.
        members: for a zip, the files in it (under its top folder :attr:`stem`) with their own published
            checksums, so that an extracted folder or a zip packed again can be verified file by file.
    """

    name: str
    urls: tuple[str, ...]
    bytes: int | None = None
    md5: str | None = None
    sha256: str | None = None
    content_sha256: str | None = None
    content_suffix: str = ".png"
    members: tuple[Member, ...] = ()

    def __post_init__(self) -> None:
        if not self.urls:
            raise ValueError(f"{self.name}: a remote file needs at least one URL")
        if self.md5 is None and self.sha256 is None:
            raise ValueError(f"{self.name}: a remote file needs an md5 or a sha256")

    @property
    def url(self) -> str:
        return self.urls[0]

    @property
    def stem(self) -> str:
        """The name without ``.zip``: the top folder of the zip, as an extracted folder is named."""
        return self.name.removesuffix(".zip")

    def expected(self) -> str:
        """What this file should be, for error messages: size and checksums."""
        parts = [f"{self.bytes:,} bytes" if self.bytes is not None else "size unpublished"]
        parts += [f"{algo} {value}" for algo, value in self.checksums().items()]
        return ", ".join(parts)

    def checksums(self) -> dict[str, str]:
        """``{"sha256": hex, "md5": hex}`` for the checksums that are known (sha256 first)."""
        return {algo: value for algo, value in (("sha256", self.sha256), ("md5", self.md5)) if value is not None}


@dataclass(frozen=True)
class Dataset:
    """A named dataset: its files and the terms under which it may be used."""

    name: str
    summary: str
    license: str
    citation: str
    files: tuple[RemoteFile, ...] = field(default_factory=tuple)

    @property
    def bytes(self) -> int | None:
        """Total published size, or None if some file's size is unpublished."""
        sizes = [f.bytes for f in self.files]
        return None if any(s is None for s in sizes) else sum(s for s in sizes if s is not None)

    def file(self, name: str) -> RemoteFile:
        for f in self.files:
            if f.name == name:
                return f
        raise KeyError(f"{self.name} has no file {name!r}; its files are {[f.name for f in self.files]}")


_LAKE = "https://github.com/brendenlake/omniglot/raw/master/python/"
_LAKE_RAW = "https://raw.githubusercontent.com/brendenlake/omniglot/master/python/"
_LAKE_CITE = "Lake, Salakhutdinov & Tenenbaum (2015), Science 350(6266):1332-1338"
_CLINC = "https://raw.githubusercontent.com/clinc/oos-eval/828f8093932c8fe6ca7936c3d2e52903b1c523de/data/"
_GROUPLENS = "https://files.grouplens.org/datasets/movielens/"
_GROUPLENS_LICENSE = "GroupLens research-only licence: no redistribution, no commercial use"
#: PyTorch's copy first: the publisher's site (torchvision's first mirror) often answers 403; https throughout.
_MNIST = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://yann.lecun.com/exdb/mnist/")
_RAVI = (
    "https://raw.githubusercontent.com/twitter/meta-learning-lstm/0df7fc747a219b7dd04e846d75eb8164483b304b/"
    "data/miniImagenet/"
)
_R2D2 = "https://raw.githubusercontent.com/bertinetto/r2d2/9ed0090cb4979113c97d07f75789b9618a308e52/cifar-fs_splits/"


#: The files of ``ml-100k.zip`` (its README describes each). The sha256 of u.data and u.item are those that
#: ankane/disco (``lib/disco/data.rb``) and ankane/cmfrec-ruby (``lib/cmfrec/data.rb``) check after downloading
#: the files one by one from files.grouplens.org/datasets/movielens/ml-100k/; u.user's is cmfrec-ruby's. No
#: public source found gives the other files' checksums: they are verified only inside the publisher's zip.
_ML100K_MEMBERS = (
    Member("u.data", sha256="06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490", required=True),
    Member("u.user", sha256="f120e114da2e8cf314fd28f99417c94ae9ddf1cb6db8ce0e4b5995d40e90e62c", required=True),
    Member("u.item", sha256="553841ebc7de3a0fd0d6b62a204ea30c1e651aacfb2814c7a6584ac52f2c5701", required=True),
    *(Member(name) for name in ("README", "allbut.pl", "mku.sh", "u.genre", "u.info", "u.occupation")),
    *(Member(f"{split}.{part}") for split in ("u1", "u2", "u3", "u4", "u5", "ua", "ub") for part in ("base", "test")),
)
#: The files of ``ml-1m.zip``. The sha256 of ratings.dat and movies.dat are those given for the GroupLens files
#: in t3-sketch/serendipity-ga-multiobjective (``v0/reproduce/README.md``); several other public notes give the
#: same ratings.dat value (for its 24,594,131 bytes). users.dat's and README's are those of the project's data
#: provenance table (``shared/data/sources.json``, beside the two above, which it gives alike).
_ML1M_MEMBERS = (
    Member("ratings.dat", sha256="506d64ca44484487c11dc2d9a28de5c54948213e6b96285e298afe28d6ea4e0f", required=True),
    Member("users.dat", sha256="1dc3a95300cb19f7c10e027daf29b8cdf1d908dab65b5edfb45950aa389a10a3", required=True),
    Member("movies.dat", sha256="0140fc2356357c1a851d0f52e893a1e4d3696df632c4141cea8d5bc3d621f0b9", required=True),
    Member("README", sha256="2d5ddce86ccbd247207456165827b4b9ddf27282bca93807d4c763e28414f133"),
)


def _lake(name: str, size: int, md5: str, content_sha256: str | None = None) -> RemoteFile:
    return RemoteFile(name, (_LAKE + name, _LAKE_RAW + name), size, md5=md5, content_sha256=content_sha256)


def _mnist(name: str, size: int, md5: str) -> RemoteFile:
    return RemoteFile(name, tuple(base + name for base in _MNIST), size, md5=md5)


def _split(base: str, name: str, size: int, sha256: str) -> RemoteFile:
    return RemoteFile(name, (base + name,), size, sha256=sha256)


#: The datasets fastadapt knows by name. md5 and sizes of the Omniglot zips are the publisher's (they equal
#: torchvision's ``Omniglot.zips_md5``); the content digests were computed from the per-PNG sha256 list
#: of all 32,460 images (see :func:`fastadapt.data.content_digest`). The md5 of MNIST's four files and of
#: CIFAR-100's archive equal torchvision's (``MNIST.resources``, ``CIFAR100.tgz_md5``); the sizes are those of
#: the published files, as torchvision's and TensorFlow's downloaders report them. The split files' sha256 and
#: sizes are those of the byte-identical copies shipped in ``fastadapt/data/splits/`` (a test checks them).
REGISTRY: dict[str, Dataset] = {
    "omniglot": Dataset(
        "omniglot",
        "Omniglot: 1,623 handwritten characters from 50 alphabets, 20 drawings each (105x105 PNG)",
        "MIT",
        _LAKE_CITE,
        (
            _lake(
                "images_background.zip",
                9_464_212,
                "68d2efa1b9178cc56df9314c21c6e718",
                "deaa02f758afda524b3a045c7af40311f2d9ded3e2a39f715ece8470d474bc6a",
            ),
            _lake(
                "images_evaluation.zip",
                6_462_886,
                "6b91aef0f799c5bb55b94e3f2daec811",
                "3d5e035f27423c362bf9a181af649b43cda64c1008f842177ddc5203269c901e",
            ),
        ),
    ),
    "omniglot-small": Dataset(
        "omniglot-small",
        "Omniglot's two small background subsets (136 and 156 characters), the publisher's 'minimal' sets",
        "MIT",
        _LAKE_CITE,
        (
            _lake("images_background_small1.zip", 1_319_022, "e704a628b5459e08445c13499850abc4"),
            _lake("images_background_small2.zip", 1_580_917, "b75a71a51d3b13f821f212756fe481fd"),
        ),
    ),
    "clinc150": Dataset(
        "clinc150",
        "CLINC150 intents: 150 intents in 10 domains, 100/20/30 utterances each, plus out-of-scope",
        "CC BY 3.0",
        "Larson et al. (2019), EMNLP-IJCNLP",
        (
            RemoteFile(
                "data_full.json",
                (_CLINC + "data_full.json",),
                2_495_390,
                md5="30c29dc6ab78edf3b5dfa640be204cde",
                sha256="36923c3705a59e08fe9c3883d8bc2dd966ef93e22cb78ac41171782a698d56e0",
            ),
            RemoteFile(
                "domains.json",
                (_CLINC + "domains.json",),
                3_818,
                sha256="b947b579d3b8e74b06f93b01083d8efaff2888b43a3e362533bd88a6e1211b3a",
            ),
        ),
    ),
    "ml-100k": Dataset(
        "ml-100k",
        "MovieLens 100K: 100,000 ratings by 943 users of 1,682 movies",
        _GROUPLENS_LICENSE,
        "Harper & Konstan (2015), ACM TiiS 5(4)",
        (
            RemoteFile(
                "ml-100k.zip",
                (_GROUPLENS + "ml-100k.zip",),
                4_924_029,
                md5="0e33842e24a9c977be4e0107933c0723",
                sha256="50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229",
                members=_ML100K_MEMBERS,
            ),
        ),
    ),
    "ml-1m": Dataset(
        "ml-1m",
        "MovieLens 1M: 1,000,209 ratings by 6,040 users of 3,706 movies",
        _GROUPLENS_LICENSE,
        "Harper & Konstan (2015), ACM TiiS 5(4)",
        (
            RemoteFile(
                "ml-1m.zip", (_GROUPLENS + "ml-1m.zip",), md5="c4d9eecfca2ab87c1945afe126590906", members=_ML1M_MEMBERS
            ),
        ),
    ),
    "mnist": Dataset(
        "mnist",
        "MNIST: 70,000 handwritten digits, 60,000 for training and 10,000 for testing (28x28 grey, IDX files)",
        "CC BY-SA 3.0 (as stated by the publishers)",
        "LeCun, Bottou, Bengio & Haffner (1998), Gradient-based learning applied to document recognition, "
        "Proc. IEEE 86(11):2278-2324",
        (
            _mnist("train-images-idx3-ubyte.gz", 9_912_422, "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
            _mnist("train-labels-idx1-ubyte.gz", 28_881, "d53e105ee54ea40749a09fcbcd1e9432"),
            _mnist("t10k-images-idx3-ubyte.gz", 1_648_877, "9fb629c4189551a2d022fa330f9573f3"),
            _mnist("t10k-labels-idx1-ubyte.gz", 4_542, "ec29112dd5afa0611ce80d1b7f02629c"),
        ),
    ),
    "cifar100": Dataset(
        "cifar100",
        "CIFAR-100: 60,000 32x32 colour images in 100 classes, 50,000 for training and 10,000 for testing "
        "(Python pickles)",
        "no licence stated by the publisher; cite the report",
        "Krizhevsky (2009), Learning Multiple Layers of Features from Tiny Images, tech. report, U. Toronto",
        (
            RemoteFile(
                "cifar-100-python.tar.gz",
                ("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",),
                169_001_437,
                md5="eb9058c3a382ffc7106e4002c42a8d85",
            ),
        ),
    ),
    "miniimagenet-splits": Dataset(
        "miniimagenet-splits",
        "mini-ImageNet split of Ravi & Larochelle: filename,label rows for 64 / 16 / 20 classes. The images are "
        "not distributed (ImageNet terms of access): supply them yourself",
        "MIT (twitter/meta-learning-lstm); the images: ImageNet terms of access",
        "Ravi & Larochelle (2017), Optimization as a Model for Few-Shot Learning, ICLR",
        (
            _split(_RAVI, "train.csv", 1_228_815, "498519cd8e49ce97ed26a4a3638966698ae41ab35e9c68538319fc9b46ba7d2f"),
            _split(_RAVI, "val.csv", 307_215, "5658a59921ca027ee76af92949869c5d6f41d77592ff3b18db325a9d10c893b9"),
            _split(_RAVI, "test.csv", 384_015, "2b7cfa78342995761a572a8158e539bc4e0a80f9bbd7d00c1e17a460fbbb93fa"),
        ),
    ),
    "cifar-fs-splits": Dataset(
        "cifar-fs-splits",
        "CIFAR-FS split of Bertinetto et al.: 64 / 16 / 20 CIFAR-100 fine classes, one name a line. The images "
        "are CIFAR-100's (dataset cifar100)",
        "MIT (bertinetto/r2d2)",
        "Bertinetto, Henriques, Torr & Vedaldi (2019), Meta-learning with differentiable closed-form solvers, "
        "ICLR (arXiv:1805.08136)",
        (
            _split(_R2D2, "train.txt", 460, "08d41acf21db7203341442e96b2226276217e379bbf809af34849506af1a8c5e"),
            _split(_R2D2, "val.txt", 123, "e9ca1bb0404d6f804eb4df42923187eb07052a0c2f87820342b0da1f8c940278"),
            _split(_R2D2, "test.txt", 142, "3720c9d858fa547dbf71ca80ede1f94a803279cfdedd3f7a9b9d3beb4ce5c020"),
        ),
    ),
}


def get_dataset(name: str | Dataset) -> Dataset:
    """The registered dataset called ``name`` (a :class:`Dataset` is returned as is)."""
    if isinstance(name, Dataset):
        return name
    try:
        return REGISTRY[name]
    except KeyError:
        known = sorted(REGISTRY)
        raise DataError(f"unknown dataset {name!r}; `fastadapt data list` shows the known ones: {known}") from None


def data_home() -> Path:
    """The cache directory: ``$FASTADAPT_DATA`` if set, else ``~/.cache/fastadapt``."""
    configured = os.environ.get(DATA_ENV)
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "fastadapt"


def dataset_dir(name: str | Dataset, root: Path | str | None = None) -> Path:
    """Where the files of a dataset live: ``<root or data_home()>/<name>``."""
    return (Path(root) if root is not None else data_home()) / get_dataset(name).name
