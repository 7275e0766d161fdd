"""Shared fixtures: a fixed seed and an isolated data cache for every test, the shared real data, and
synthetic meta-batches."""

from __future__ import annotations

import functools
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from fastadapt.tasks import TaskBatch
from fastadapt.typing import Params

#: ``make_batch(tasks, ways, shots, queries, x_shape, regression=False, dtype=torch.float64)``
MakeBatch = Callable[..., TaskBatch]


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


#: Why a ``cuda``-marked test is skipped on a machine without a CUDA device.
NO_CUDA = "needs a CUDA device (torch.cuda.is_available() is False)"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skips the tests marked ``cuda`` where torch sees no CUDA device (``benchmarks/gpu_check.sh`` runs them on
    a GPU machine and fails when CUDA is missing there)."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason=NO_CUDA)
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


#: Real datasets: a copy of the project's shared/ folder lies beside the repository (and beside CI's clone).
SHARED_DATA = Path(__file__).parents[2] / "shared" / "data"


@pytest.fixture(autouse=True)
def _isolated_data_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads or writes the user's cache or reaches a mirror."""
    monkeypatch.setenv("FASTADAPT_DATA", str(tmp_path / "cache"))
    monkeypatch.delenv("FASTADAPT_MIRROR", raising=False)


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED_DATA / "omniglot" / "images_background.zip").is_file():
        pytest.skip(f"shared data not found at {SHARED_DATA} (expected a copy of shared/ beside the clone)")
    return SHARED_DATA


@pytest.fixture
def clinc150_dir() -> Path:
    folder = SHARED_DATA / "clinc150"
    if not (folder / "data_full.json").is_file():
        pytest.skip(f"CLINC150 not found at {folder} (expected a copy of shared/ beside the clone)")
    return folder


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client hanging up early is expected
            super().handle_error(request, client_address)  # type: ignore[arg-type]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """``(base URL, folder it serves)``: a loopback HTTP server on a free port, in a thread."""
    root = tmp_path / "www"
    root.mkdir()
    httpd = _Server(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.fixture
def omniglot_dir(shared_data: Path) -> Path:
    return shared_data / "omniglot"


@pytest.fixture(scope="session")
def _omniglot_session_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("omniglot-cache")


@pytest.fixture
def decoded_omniglot(omniglot_dir: Path, _omniglot_session_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``omniglot_dir``, with a data cache shared by the tests that only read Omniglot: its 32,460 PNGs are
    decoded once a session, not once a test (the cache's own tests in test_omniglot.py keep their own)."""
    monkeypatch.setenv("FASTADAPT_DATA", str(_omniglot_session_cache))
    return omniglot_dir


@pytest.fixture
def single_thread() -> Iterator[None]:
    """One intra-op thread while a test runs. Tests on tiny tensors are dominated by thread hand-offs:
    measured 5 ms per Conv4 meta-objective with one thread against 30-500 ms with two on a loaded
    2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def synthetic_batch(
    tasks: int,
    ways: int,
    shots: int,
    queries: int,
    x_shape: tuple[int, ...],
    regression: bool = False,
    dtype: torch.dtype = torch.float64,
) -> TaskBatch:
    """A meta-batch of random tasks with class-major labels.

    Classification: ``support_y`` is ``(T, ways * shots)`` class ids ``0..ways-1`` and each class has its
    own mean, so that adaptation has something to learn. Regression: ``ways`` is ignored, targets are
    ``(T, n, 1)`` and depend smoothly on the inputs.

    Shapes: ``support_x (T, n_support, *x_shape)``, ``query_x (T, n_query, *x_shape)``.
    """
    if regression:
        n_support, n_query = shots, queries
        sx = torch.randn(tasks, n_support, *x_shape, dtype=dtype)
        qx = torch.randn(tasks, n_query, *x_shape, dtype=dtype)
        slope = torch.randn(tasks, 1, 1, dtype=dtype)

        def target(x: torch.Tensor) -> torch.Tensor:
            return slope * torch.sin(x.flatten(2).sum(-1, keepdim=True))  # (T, n, 1)

        return TaskBatch(sx, target(sx), qx, target(qx))
    centres = torch.randn(tasks, ways, *x_shape, dtype=dtype)  # (T, ways, *x_shape)
    sy = torch.arange(ways).repeat_interleave(shots).expand(tasks, -1).contiguous()  # (T, ways * shots)
    qy = torch.arange(ways).repeat_interleave(queries).expand(tasks, -1).contiguous()  # (T, ways * queries)
    sx = centres.repeat_interleave(shots, dim=1) + torch.randn(tasks, ways * shots, *x_shape, dtype=dtype)
    qx = centres.repeat_interleave(queries, dim=1) + torch.randn(tasks, ways * queries, *x_shape, dtype=dtype)
    return TaskBatch(sx, sy, qx, qy)


@pytest.fixture
def make_batch() -> MakeBatch:
    """The :func:`synthetic_batch` factory."""
    return synthetic_batch


def requiring_grad(params: Params) -> Params:
    """Leaves that require grad, detached from whatever made ``params``."""
    return {k: v.detach().clone().requires_grad_() for k, v in params.items()}


@pytest.fixture
def leaves() -> Callable[[Params], Params]:
    """The :func:`requiring_grad` helper."""
    return requiring_grad
