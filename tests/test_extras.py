"""The core install trains without the extras; a feature asked for by name names the extra that installs it;
no plot changes matplotlib's global backend or style."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import matplotlib
import pytest

from fastadapt import _extras
from fastadapt.data import load_image_folder
from fastadapt.online import StreamResult, plot_stream
from fastadapt.training import RunLogger, Trainer, build_experiment, read_metrics, resolve_config
from fastadapt.training._logging import plot_curves, plot_curves_if_installed
from fastadapt.tuning import TuneJob, tune
from fastadapt.tuning._study import plot_study

PYPROJECT = Path(__file__).parents[1] / "pyproject.toml"
CORE = {"torch", "numpy", "scipy", "scikit-learn", "safetensors", "pyyaml", "click", "tqdm"}
OPTIONAL = ("matplotlib", "tensorboard", "optuna", "PIL", "fastapi", "httpx", "uvicorn", "prometheus_client")
TINY = [
    "training.iterations=4",
    "training.val_every=2",
    "training.val_episodes=2",
    "training.checkpoint_every=2",
    "training.log_every=1",
    "training.meta_batch_size=2",
    "algorithm.test_steps=1",
]


@pytest.fixture
def blocked(monkeypatch: pytest.MonkeyPatch) -> None:
    """The optional packages cannot be imported (``None`` in ``sys.modules``), and no note was said yet."""
    for name in OPTIONAL:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setattr(_extras, "_NOTED", set())


def test_a_default_run_trains_without_the_extras_and_says_what_it_skipped(
    tmp_path: Path, blocked: None, single_thread: None, capsys: pytest.CaptureFixture[str]
) -> None:
    out = Trainer(build_experiment(resolve_config("sinusoid_maml", TINY)), tmp_path, progress=False).run()
    assert out["step"] == 4 and out["best_val"] is not None
    assert [r["step"] for r in read_metrics(tmp_path) if r["split"] == "val"] == [2, 4]
    assert not (tmp_path / "curves.png").exists()
    assert not (tmp_path / "tb").exists()
    err = capsys.readouterr().err
    assert "curves.png skipped; it needs matplotlib: pip install 'fastadapt[plots]'" in err
    assert "pip install 'fastadapt[tb]'" in err
    (tmp_path / "again").mkdir()
    RunLogger(tmp_path / "again").close()
    assert plot_curves_if_installed(tmp_path / "again", "mse") is None
    assert capsys.readouterr().err == ""  # said once per process


def test_the_core_modules_import_without_the_extras() -> None:
    blocker = "; ".join(f"sys.modules[{name!r}] = None" for name in OPTIONAL)
    modules = "fastadapt.cli, fastadapt.training, fastadapt.algorithms, fastadapt.evaluation, fastadapt.online"
    code = f"import sys; {blocker}; import {modules}"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def _stream_plot(path: Path) -> Path:
    return plot_stream(StreamResult("mse", [{"round": 1, "online": 0.5}], ("online",)), path, 1)


def test_features_asked_for_by_name_raise_with_the_extra(
    tmp_path: Path, blocked: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    plots = re.escape("needs matplotlib: pip install 'fastadapt[plots]'")
    with pytest.raises(ImportError, match=plots):
        plot_curves(tmp_path, "mse")
    with pytest.raises(ImportError, match=plots):
        _stream_plot(tmp_path / "s.png")
    with pytest.raises(ImportError, match=plots):
        plot_study(object(), tmp_path)
    job = TuneJob("sinusoid_maml", (), "maml_digits", "s", None, str(tmp_path), 1, "tpe", "none", 0)
    with pytest.raises(ImportError, match=re.escape("fastadapt tune needs optuna: pip install 'fastadapt[tune]'")):
        tune(job)
    (tmp_path / "images" / "a").mkdir(parents=True)
    (tmp_path / "images" / "a" / "0.png").write_bytes(b"")
    with pytest.raises(ImportError, match=re.escape("needs Pillow: pip install 'fastadapt[images]'")):
        load_image_folder(tmp_path / "images")
    monkeypatch.delitem(sys.modules, "fastadapt.serve", raising=False)  # put back after the test
    with pytest.raises(ImportError, match=re.escape("fastadapt serve needs fastapi: pip install 'fastadapt[serve]'")):
        import fastadapt.serve  # noqa: F401
    from fastadapt.client import Client

    with pytest.raises(ImportError, match=re.escape("fastadapt.client needs httpx: pip install 'fastadapt[serve]'")):
        Client("http://127.0.0.1:1")


def test_plots_leave_the_backend_and_style_alone(tmp_path: Path) -> None:
    optuna = pytest.importorskip("optuna")
    before = matplotlib.get_backend()
    matplotlib.use("svg")  # a backend other than Agg that needs no display
    facecolor = matplotlib.rcParams["axes.facecolor"]
    try:
        logger = RunLogger(tmp_path)
        for step in (1, 2):
            logger.log("train", step, loss=1.0 / step, mse=1.0 / step)
        logger.log("val", 2, mse=0.4, ci95=0.1)
        logger.close()
        assert plot_curves(tmp_path, "mse").read_bytes()[:4] == b"\x89PNG"
        _stream_plot(tmp_path / "s.png")

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))

        def objective(trial: Any) -> float:
            x = trial.suggest_float("x", -1.0, 1.0)
            trial.report(x, 1)
            return x * x + trial.suggest_float("y", 0.0, 0.1)

        study.optimize(objective, n_trials=4)
        written = {Path(p).name for p in plot_study(study, tmp_path)}
        assert written == {"history.png", "importances.png", "intermediate.png"}
        one = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        one.optimize(objective, n_trials=1)  # Optuna warns that its importances are all equal: skipped
        (tmp_path / "one").mkdir()
        assert {Path(p).name for p in plot_study(one, tmp_path / "one")} == {"history.png", "intermediate.png"}
        assert matplotlib.get_backend() == "svg"
        assert matplotlib.rcParams["axes.facecolor"] == facecolor  # Optuna's own views switch to ggplot
    finally:
        matplotlib.use(before)


def test_the_core_dependencies_are_only_what_every_run_needs() -> None:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    names = {re.match(r"[A-Za-z0-9_.-]+", d).group(0).lower() for d in project["dependencies"]}  # type: ignore[union-attr]
    assert names == CORE
    assert "torch>=2.2,<3" in project["dependencies"]
    extras = project["optional-dependencies"]
    assert {"tune", "tb", "plots", "images", "text", "setfit", "serve", "all", "dev"} <= set(extras)
    assert extras["all"] == ["fastadapt[tune,tb,plots,images,text,setfit,serve]"]
