"""``training.threads`` / ``$FASTADAPT_THREADS`` and ``training.device``: resolved once, bad values named."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import torch

from fastadapt.training import THREADS_ENV, ConfigError, apply_threads, build_experiment, resolve_config, resolve_device
from fastadapt.training._device import DEFAULT_THREADS, resolve_threads


@pytest.fixture
def restore_threads() -> Iterator[None]:
    threads = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def test_threads_come_from_the_config_then_the_environment_then_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(THREADS_ENV, raising=False)
    assert resolve_threads(None) == DEFAULT_THREADS == 1
    monkeypatch.setenv(THREADS_ENV, "3")
    assert resolve_threads(None) == 3 and resolve_threads(2) == 2  # the config wins over the environment
    monkeypatch.setenv(THREADS_ENV, "many")
    with pytest.raises(ConfigError, match=re.escape("FASTADAPT_THREADS='many' is not a whole number of threads")):
        resolve_threads(None)
    monkeypatch.setenv(THREADS_ENV, "0")
    with pytest.raises(ConfigError, match=re.escape("FASTADAPT_THREADS must be >= 1, got 0")):
        resolve_threads(None)
    with pytest.raises(ConfigError, match=re.escape("training.threads must be >= 1, got -2")):
        resolve_threads(-2)


@pytest.mark.usefixtures("restore_threads")
def test_a_run_applies_its_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(THREADS_ENV, raising=False)
    torch.set_num_threads(2)
    build_experiment(resolve_config("sinusoid_maml", ["training.threads=1"]))
    assert torch.get_num_threads() == 1
    assert apply_threads(2) == 2 == torch.get_num_threads()


def test_devices() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(
        ConfigError, match=re.escape("training.device must be auto, cpu, cuda, cuda:N or mps; got 'gpu'")
    ):
        resolve_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match=re.escape("training.device=cuda:1 but CUDA is not available")):
            resolve_device("cuda:1")
        with pytest.raises(ConfigError, match=re.escape("training.device=cuda but CUDA is not available")):
            build_experiment(resolve_config("digits_maml", ["training.device=cuda"]))
