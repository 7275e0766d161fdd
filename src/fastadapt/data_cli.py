"""``fastadapt data``: list, download, verify and import the named datasets (a thin layer over
:mod:`fastadapt.data`)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import click

from .data import REGISTRY, DataError, FileReport, data_home, dataset_dir, download, import_files, status, verify


def _size(n: int | None) -> str:
    return "?" if n is None else f"{n / 1e6:.1f} MB"


def _report(action: Callable[[], list[FileReport]]) -> None:
    try:
        reports = action()
    except DataError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(2)
    for r in reports:
        click.echo(f"{r.name}: {r.detail}\n  -> {r.path}")


@click.group("data")
def data() -> None:
    """Named datasets in the cache ($FASTADAPT_DATA, default ~/.cache/fastadapt)."""


@data.command("list", short_help="List the datasets and whether they are downloaded.")
def list_() -> None:
    """List the datasets: name, size, licence, whether downloaded, and what they are."""
    click.echo(f"cache: {data_home()}")
    for name, dataset in REGISTRY.items():
        click.echo(f"{name:15s} {_size(dataset.bytes):>9s}  {status(name):15s} {dataset.license}")
        click.echo(f"{'':15s} {dataset.summary}")


@data.command("download", short_help="Download NAME and verify its checksums.")
@click.argument("name")
@click.option(
    "--mirror",
    "mirrors",
    multiple=True,
    help="Base URL replacing the canonical host (repeatable; default $FASTADAPT_MIRROR).",
)
@click.option("--force", is_flag=True, help="Download again even if a verified copy is present.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--timeout", type=float, default=60.0, show_default=True, help="Seconds to wait for the server.")
def download_(name: str, mirrors: tuple[str, ...], force: bool, no_progress: bool, timeout: float) -> None:
    """Download NAME into the cache and verify its checksums."""
    _report(lambda: download(name, mirrors=mirrors or None, progress=not no_progress, force=force, timeout=timeout))


@data.command("verify", short_help="Check the cached files of NAME against the checksums.")
@click.argument("name")
def verify_(name: str) -> None:
    """Hash the cached files of NAME again and compare them with the published checksums."""
    _report(lambda: verify(name))


@data.command("import", short_help="Register files of NAME obtained by hand.")
@click.argument("name")
@click.argument("path", type=click.Path(path_type=Path))
def import_(name: str, path: Path) -> None:
    """Register files of NAME obtained by hand: PATH is a downloaded file, a folder holding such files, or a
    folder extracted from one of its zips. Each is verified before it is copied into the cache. For MovieLens,
    PATH may also be the extracted folder or another zip of its files: each file is checked against its own
    checksum and only verified files are kept (see docs/recsys.md)."""
    _report(lambda: import_files(name, path))
    if name in REGISTRY:
        click.echo(f"{name}: {status(name)} in {dataset_dir(name)}")
