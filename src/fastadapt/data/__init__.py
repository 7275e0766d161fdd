"""Datasets as labelled pools with documented class splits.

The embedded default (scikit-learn's digits) needs no download. Named datasets (``REGISTRY``) are downloaded
into a cache (``$FASTADAPT_DATA``, default ``~/.cache/fastadapt``) and verified against the publishers'
checksums; ``fastadapt data list / download / verify / import`` do the same from the command line.
"""

from __future__ import annotations

from ._cifar import cifar_fs_classes as cifar_fs_classes
from ._cifar import cifar_fs_split as cifar_fs_split
from ._cifar import load_cifar100 as load_cifar100
from ._cifar import miniimagenet_ravi_rows as miniimagenet_ravi_rows
from ._digits import DIGITS_SPLIT as DIGITS_SPLIT
from ._digits import load_digits_pool as load_digits_pool
from ._download import MIRROR_ENV as MIRROR_ENV
from ._download import FileReport as FileReport
from ._download import OfflineError as OfflineError
from ._download import candidate_urls as candidate_urls
from ._download import content_digest as content_digest
from ._download import download as download
from ._download import download_file as download_file
from ._download import ensure_dataset as ensure_dataset
from ._download import status as status
from ._download import verify as verify
from ._download import verify_file as verify_file
from ._folder import find_split_images as find_split_images
from ._folder import list_image_folder as list_image_folder
from ._folder import load_image_folder as load_image_folder
from ._folder import load_image_split as load_image_split
from ._folder import load_table as load_table
from ._folder import read_split_csv as read_split_csv
from ._folder import split_from_files as split_from_files
from ._images import AUGMENTATIONS as AUGMENTATIONS
from ._images import ArrayImages as ArrayImages
from ._images import CropFlip as CropFlip
from ._images import ImageFiles as ImageFiles
from ._images import augmentation as augmentation
from ._images import import_object as import_object
from ._import import import_files as import_files
from ._mnist import load_mnist as load_mnist
from ._mnist import read_idx as read_idx
from ._omniglot import load_omniglot as load_omniglot
from ._omniglot import omniglot_pool as omniglot_pool
from ._omniglot import omniglot_vinyals_classes as omniglot_vinyals_classes
from ._omniglot import omniglot_vinyals_split as omniglot_vinyals_split
from ._registry import DATA_ENV as DATA_ENV
from ._registry import REGISTRY as REGISTRY
from ._registry import ChecksumError as ChecksumError
from ._registry import DataError as DataError
from ._registry import Dataset as Dataset
from ._registry import Member as Member
from ._registry import RemoteFile as RemoteFile
from ._registry import data_home as data_home
from ._registry import dataset_dir as dataset_dir
from ._registry import get_dataset as get_dataset
