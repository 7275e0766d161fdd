"""Task suites: the shipped ones and a third-party package registered through the ``fastadapt.suites`` entry-point
group both run from the CLI; a suite owns its config section, and its defining keys guard resume."""

from __future__ import annotations

import dataclasses
import json
import re
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from fastadapt.cli import main
from fastadapt.recsys import RecsysConfig
from fastadapt.training import (
    ConfigError,
    Suite,
    SuiteParts,
    Trainer,
    _suites,
    build_experiment,
    config_from_dict,
    load_checkpoint,
    register_suite,
    resolve_config,
    save_checkpoint,
    suite_for,
    suites,
)

#: A third-party package: its own config section, task family, model and loss; registered only through its
#: distribution's entry point, exactly as `pip install` would leave it.
TOY = '''
from dataclasses import dataclass

import torch

from fastadapt.tasks import Task, TaskSource
from fastadapt.training import Suite, SuiteParts, build_model


@dataclass(frozen=True)
class ToyConfig:
    spread: float = 1.0  # the offsets of the tasks' lines
    noise: float = 0.0


@dataclass(frozen=True)
class Offsets(TaskSource):
    """y = x + c with c uniform in [-spread, spread]: one number to adapt."""

    spread: float
    shots: int
    queries: int

    def sample(self, generator):
        c = (torch.rand(1, generator=generator) * 2 - 1) * self.spread
        x = torch.rand(self.shots + self.queries, 1, generator=generator) * 4 - 2
        y = x + c
        return Task(x[: self.shots], y[: self.shots], x[self.shots :], y[self.shots :])


def build(config):
    toy = config.section("toy")
    source = Offsets(toy.spread, config.task.shots, config.task.queries)
    model = build_model(config.model, (1,), 1)
    return SuiteParts({"train": source, "val": source, "test": source}, model, loss="l1")


SUITE = Suite("toy", ("toy-offsets",), build, sections={"toy": ToyConfig}, defining=("toy.spread",))
'''


@pytest.fixture
def third_party(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A directory on ``sys.path`` holding the package and its dist-info (METADATA + entry_points.txt), as an
    install leaves it; the suite registry is re-read so that it finds the entry point."""
    site = tmp_path / "site"
    (site / "fa_toy").mkdir(parents=True)
    (site / "fa_toy" / "__init__.py").write_text(TOY)
    info = site / "fa_toy-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fa-toy\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[fastadapt.suites]\ntoy = fa_toy:SUITE\n")
    monkeypatch.syspath_prepend(str(site))
    _suites._installed.cache_clear()
    try:
        yield
    finally:
        monkeypatch.undo()
        sys.modules.pop("fa_toy", None)
        _suites._installed.cache_clear()


def cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.usefixtures("third_party", "single_thread")
def test_a_third_party_suite_trains_and_evaluates_from_the_cli(tmp_path: Path) -> None:
    code, listed, _ = cli("suites")
    assert code == 0
    assert re.search(r"^toy\s+datasets: toy-offsets$", listed, re.M), listed
    assert re.search(r"^images\s+datasets: digits, omniglot", listed, re.M)
    config = tmp_path / "toy.yaml"
    config.write_text(
        textwrap.dedent("""\
        name: toy
        data: {dataset: toy-offsets}
        task: {shots: 5, queries: 10}
        model: {name: mlp, widths: [16]}
        algorithm: {name: maml, inner_lr: 0.1, inner_steps: 2}
        training: {iterations: 60, meta_batch_size: 8, outer_lr: 0.01, val_every: 30, val_episodes: 20,
                   checkpoint_every: 30, log_every: 10}
        evaluation: {episodes: 50}
        toy: {spread: 2.0}
        """)
    )
    run = tmp_path / "run"
    code, _, err = cli("train", str(config), "--run-dir", str(run), "--no-progress")
    assert code == 0, err
    assert "toy:\n  spread: 2.0\n  noise: 0.0\n" in (run / "config.yaml").read_text()  # the suite's section
    before = json.loads(cli("eval", str(run), "--json", "--steps", "0")[1])
    after = json.loads(cli("eval", str(run), "--json")[1])
    assert after["dataset"] == "toy-offsets" and after["metric"] == "mae" and after["ways"] is None
    assert after["mean"] < 0.7 * before["mean"], (before["mean"], after["mean"])  # adaptation fits the offset
    code, _, err = cli("train", str(config), "toy.spread=3.0", "--run-dir", str(run), "--resume")
    assert code == 2 and "cannot resume" in err and "toy.spread" in err, err
    code, _, err = cli("train", str(config), "toy.noise=0.5", "training.iterations=61", "--run-dir", str(run),
                       "--resume", "--no-progress")  # fmt: skip
    assert code == 0, err  # not a defining key of the suite


@pytest.mark.usefixtures("single_thread")
def test_a_shipped_suite_runs_from_the_cli(tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = ["train", "sinusoid_maml", "training.iterations=20", "training.val_every=10", "training.val_episodes=5",
            "training.checkpoint_every=10", "--run-dir", str(run), "--no-progress"]  # fmt: skip
    assert cli(*args)[0] == 0
    result = json.loads(cli("eval", str(run), "--json", "--episodes", "10")[1])
    assert (result["dataset"], result["metric"], result["episodes"]) == ("sinusoid", "mse", 10)


DIGITS_MODEL = {"pooled_blocks": 3}  # digits are 8x8: the default 4 pooling blocks do not fit (a config error)


def test_sections_belong_to_their_suite() -> None:
    config = config_from_dict({"data": {"dataset": "movielens"}, "recsys": {"synthetic_users": 50}})
    assert config.section("recsys").synthetic_users == 50
    assert config.to_dict()["recsys"]["synthetic_users"] == 50
    assert "recsys" in config_from_dict({"data": {"dataset": "movielens"}}).to_dict()  # defaults written out
    with pytest.raises(ConfigError, match=re.escape("config section 'recsys' belongs to another task suite than")):
        config_from_dict({"data": {"dataset": "digits"}, "model": DIGITS_MODEL, "recsys": {"synthetic_users": 50}})
    assert (
        "recsys" not in config_from_dict({"data": {"dataset": "digits"}, "model": DIGITS_MODEL, "recsys": {}}).to_dict()
    )
    with pytest.raises(ConfigError, match=re.escape("unknown config key 'recsy'; valid keys here: name, data,")):
        config_from_dict({"data": {"dataset": "movielens"}, "recsy": {}})
    with pytest.raises(ConfigError, match=re.escape("unknown config key 'recsys.users'; valid keys here: source,")):
        config_from_dict({"data": {"dataset": "movielens"}, "recsys": {"users": 3}})
    with pytest.raises(ConfigError, match=re.escape("recsys.source must be one of 'synthetic', 'ml-100k', 'ml-1m'")):
        config_from_dict({"data": {"dataset": "movielens"}, "recsys": {"source": "ml-20m"}})
    known = "unknown data.dataset 'digitz'; choose one of ['cifarfs', 'clinc150', 'dataset',"
    with pytest.raises(ConfigError, match=re.escape(known)):
        config_from_dict({"data": {"dataset": "digitz"}})


def test_register_suite_in_process(tmp_path: Path) -> None:
    """A suite defined in a script: register_suite, then configs and training work as for a shipped one."""
    shipped = resolve_config("sinusoid_maml")

    def build(config: object) -> SuiteParts:
        parts = suite_for("sinusoid").build(shipped)
        return SuiteParts(parts.sources, parts.model, loss="huber")

    register_suite(Suite("script", ("my-sines",), build))
    try:
        assert suite_for("my-sines").name == "script"
        config = config_from_dict(shipped.to_dict() | {"data": {"dataset": "my-sines"}})
        config = config_from_dict(config.to_dict() | {"training": {"iterations": 3, "val_every": 3, "val_episodes": 2}})
        experiment = build_experiment(config)
        assert experiment.algorithm.loss.__name__ == "huber_loss" and experiment.metric == "mse"
        Trainer(experiment, tmp_path / "run", progress=False).run()
        assert (tmp_path / "run" / "checkpoints" / "last.safetensors").is_file()
        with pytest.raises(ValueError, match=re.escape("suite 'other' serves ['sinusoid'], already served by")):
            register_suite(Suite("other", ("sinusoid",), build))
    finally:
        _suites._REGISTERED.pop("script", None)
    assert "script" not in suites()


def test_a_run_saved_before_suites_owned_their_sections_still_loads_and_resumes(tmp_path: Path) -> None:
    """Configs written before this layout hold a ``recsys`` section at its defaults whatever the dataset, and
    lack the keys added since (``algorithm.head``, ``training.threads``): they load, and resume is not refused."""
    config = resolve_config("digits_maml", ["training.iterations=2", "training.val_every=0", "model.channels=4"])
    old = config.to_dict() | {"recsys": dataclasses.asdict(RecsysConfig())}
    for section, key in (("algorithm", "head"), ("algorithm", "loss"), ("training", "threads")):
        del old[section][key]
    assert config_from_dict(old).to_dict() == config.to_dict()
    trainer = Trainer(build_experiment(config), tmp_path / "run", progress=False)
    trainer.run()
    tensors, state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.safetensors")
    save_checkpoint(tmp_path / "run" / "checkpoints" / "last.safetensors", tensors, state | {"config": old})
    longer = dataclasses.replace(config, training=dataclasses.replace(config.training, iterations=3))
    Trainer(build_experiment(longer), tmp_path / "run", progress=False).run(resume=True)
