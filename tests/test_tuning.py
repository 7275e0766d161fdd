"""fastadapt tune: search spaces, a small study that beats a bad default, failed trials, two workers on one
journal, and a worker killed mid-trial followed by a re-run."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from fastadapt.cli import main
from fastadapt.training import ConfigError, Trainer, build_experiment, load_config, resolve_config
from fastadapt.tuning import load_space

#: Fast digits MAML (an MLP) with deliberately bad learning rates: the default the search must beat.
BAD = [
    "model.name=mlp", "model.widths=[32]", "algorithm.inner_lr=0.0001", "training.outer_lr=0.00001",
    "training.iterations=40", "training.val_every=20", "training.val_episodes=40", "training.checkpoint_every=20",
    "training.strategy=vmap",
]  # fmt: skip


def write_space(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def tune(args: list[str]) -> dict[str, object]:
    result = CliRunner().invoke(main, ["tune", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output.strip().splitlines()[-1])  # type: ignore[no-any-return]


def journal_trials(study_dir: Path, name: str) -> list[optuna.trial.FrozenTrial]:
    storage = JournalStorage(JournalFileBackend(str(study_dir / "study.journal")))
    return optuna.load_study(study_name=name, storage=storage).get_trials()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("algorithm.nope: {type: float, low: 0.1, high: 1}", r"unknown config key 'algorithm.nope'"),
        ("algorithm.inner_lr: {type: real, low: 0.1, high: 1}", r"unknown type 'real'; use one of"),
        ("algorithm.inner_lr: {type: float, low: 0, high: 1, log: true}", r"a log scale needs low > 0, got 0"),
        ("algorithm.inner_lr: {type: float, low: 1, high: 0.5}", r"low \(1\) must be below high \(0.5\)"),
        ("algorithm.inner_steps: {type: categorical, choices: [1, many]}", r"algorithm.inner_steps"),
        ("algorithm.inner_lr: 0.3", r"give a mapping with 'type'"),
    ],
)
def test_bad_search_space_names_the_key_and_the_fix(tmp_path: Path, text: str, message: str) -> None:
    config = resolve_config("digits_maml")
    with pytest.raises(ConfigError, match=message):
        load_space(write_space(tmp_path / "s.yaml", text), config)


def test_shipped_spaces_load_against_their_configs() -> None:
    for space, config in (("maml_digits", "digits_maml"), ("protonet_digits", "digits_protonet")):
        assert load_space(space, resolve_config(config))
    for space, config in (("maml_omniglot", "omniglot_maml_5w1s"), ("protonet_omniglot", "omniglot_protonet_5w1s")):
        assert load_space(space, resolve_config(config))
    assert load_space("maml_text", resolve_config("clinc150_maml_5w5s"))


@pytest.mark.slow
def test_a_small_study_beats_a_bad_default_and_writes_a_trainable_config(tmp_path: Path, single_thread: None) -> None:
    baseline = Trainer(build_experiment(resolve_config("digits_maml", BAD)), tmp_path / "base", progress=False).run()
    space = write_space(
        tmp_path / "space.yaml",
        "algorithm.inner_lr: {type: float, low: 0.05, high: 1.0, log: true}\n"
        "training.outer_lr: {type: float, low: 0.001, high: 0.03, log: true}\n",
    )
    args = ["digits_maml", *BAD, "--space", str(space), "--trials", "4", "--pruner", "none"]
    summary = tune([*args, "--study-dir", str(tmp_path / "study")])
    assert summary["n_complete"] == 4 and summary["n_failed"] == 0
    assert summary["best_value"] > baseline["best_val"] + 0.1, (summary["best_value"], baseline["best_val"])
    best = load_config(str(summary["best_config"]))  # what `fastadapt train` reads
    assert best.algorithm.inner_lr == summary["best_params"]["algorithm.inner_lr"]  # type: ignore[index]
    assert {Path(p).name for p in summary["plots"]} >= {"history.png", "intermediate.png"}  # type: ignore[attr-defined]
    # Re-running the same command with more trials continues the study.
    again = tune([*args[:-4], "--trials", "5", "--pruner", "none", "--study-dir", str(tmp_path / "study")])
    assert again["n_complete"] == 5


def test_failing_trials_are_recorded_with_their_message_and_the_study_goes_on(tmp_path: Path) -> None:
    # MAML's output layer has one unit per way, so every trial's config is refused when it is built.
    space = write_space(tmp_path / "space.yaml", "task.train_ways: {type: categorical, choices: [4, 5]}\n")
    args = ["digits_maml", *BAD, "--space", str(space), "--trials", "2"]
    summary = tune([*args, "--study-dir", str(tmp_path / "study")])
    assert summary["n_failed"] == 2 and summary["n_complete"] == 0 and summary["best_config"] is None
    trials = journal_trials(tmp_path / "study", "digits_maml")
    assert all("output layer has one unit per way" in t.user_attrs["error"] for t in trials)


@pytest.mark.slow
def test_two_workers_share_one_journal(tmp_path: Path) -> None:
    space = write_space(tmp_path / "space.yaml", "algorithm.inner_lr: {type: float, low: 0.05, high: 1.0, log: true}\n")
    args = ["digits_maml", *BAD, "--space", str(space), "--trials", "4", "--workers", "2", "--pruner", "none"]
    summary = tune([*args, "--study-dir", str(tmp_path / "study")])
    assert summary["n_failed"] == 0 and summary["n_complete"] >= 4
    trials = journal_trials(tmp_path / "study", "digits_maml")
    assert sorted(t.number for t in trials) == list(range(len(trials)))
    assert all(t.state == TrialState.COMPLETE for t in trials)


@pytest.mark.slow
def test_a_worker_killed_mid_trial_is_failed_and_retried_on_rerun(tmp_path: Path) -> None:
    study_dir = tmp_path / "study"
    space = write_space(tmp_path / "space.yaml", "algorithm.inner_lr: {type: float, low: 0.05, high: 1.0, log: true}\n")
    slow = [o for o in BAD if not o.startswith("training.iterations")] + ["training.iterations=100000"]
    command = [sys.executable, "-m", "fastadapt.cli", "tune", "digits_maml", *slow, "--space", str(space)]
    command += ["--trials", "1", "--pruner", "none", "--study-dir", str(study_dir)]
    worker = subprocess.Popen(command, env=os.environ | {"PYTHONUNBUFFERED": "1"}, start_new_session=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            if (study_dir / "trials" / "0000" / "metrics.jsonl").exists():
                break
            time.sleep(0.5)
        else:
            pytest.fail("the trial never started")
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
    (trial,) = journal_trials(study_dir, "digits_maml")
    assert trial.state == TrialState.RUNNING  # left behind by the killed worker
    time.sleep(2.5)
    rerun = [*BAD, "--space", str(space), "--trials", "1", "--pruner", "none", "--grace", "2"]
    summary = tune(["digits_maml", *rerun, "--study-dir", str(study_dir)])
    assert summary["n_failed"] == 1 and summary["n_complete"] == 1
    stale, retry = journal_trials(study_dir, "digits_maml")
    assert stale.state == TrialState.FAIL and "no heartbeat" in stale.user_attrs["error"]
    assert retry.user_attrs["retry_of"] == 0 and retry.params == stale.params


def _skip(reason: str) -> None:
    """Skips, saying why; a failure where the environment promises PostgreSQL (CI sets FASTADAPT_REQUIRE_POSTGRES)."""
    if os.environ.get("FASTADAPT_REQUIRE_POSTGRES"):
        pytest.fail(f"FASTADAPT_REQUIRE_POSTGRES is set but {reason}")
    pytest.skip(reason)


@pytest.fixture
def postgres() -> Iterator[str]:
    """A throw-away PostgreSQL server on loopback (Debian's postgresql package); its URL."""
    if importlib.util.find_spec("psycopg") is None:
        _skip("psycopg is not installed (the dev extra installs it)")
    bin_dirs = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
    initdb = shutil.which("initdb") or (str(bin_dirs[-1] / "initdb") if bin_dirs else None)
    if initdb is None or not Path(initdb).exists():
        _skip("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    pg_ctl = str(Path(initdb).with_name("pg_ctl"))
    root = Path(tempfile.mkdtemp(prefix="fastadapt-pg-"))  # not under pytest's 0700 folder: postgres must reach it
    data, socket_dir, log = root / "data", root / "socket", root / "log"
    socket_dir.mkdir()
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        if shutil.which("runuser") is None or subprocess.run(["id", "postgres"], capture_output=True).returncode:
            _skip("running as root without a 'postgres' user to start PostgreSQL as")
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, "postgres")
        shutil.chown(socket_dir, "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    init = subprocess.run([*as_user, initdb, "-D", str(data), "-U", "postgres", "--auth=trust"], capture_output=True)
    if init.returncode:
        _skip(f"initdb failed: {init.stderr.decode()[-300:]}")
    options = f"-p {port} -k {socket_dir} -c listen_addresses=127.0.0.1"
    start = subprocess.run([*as_user, pg_ctl, "-D", str(data), "-l", str(log), "-o", options, "-w", "start"])
    if start.returncode:
        _skip(f"PostgreSQL did not start: {log.read_text()[-300:] if log.exists() else ''}")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
def test_postgresql_storage_with_two_workers(tmp_path: Path, postgres: str) -> None:
    space = write_space(tmp_path / "space.yaml", "algorithm.inner_lr: {type: float, low: 0.05, high: 1.0, log: true}\n")
    args = ["digits_maml", *BAD, "--space", str(space), "--trials", "3", "--workers", "2", "--pruner", "none"]
    summary = tune([*args, "--storage", postgres, "--study-dir", str(tmp_path / "study")])
    assert summary["storage"] == postgres and summary["n_complete"] >= 3 and summary["n_failed"] == 0
    storage = optuna.storages.RDBStorage(postgres)
    try:
        study = optuna.load_study(study_name="digits_maml", storage=storage)
        assert len(study.get_trials(states=(TrialState.COMPLETE,))) == summary["n_complete"]
    finally:
        storage.engine.dispose()
    assert not (tmp_path / "study" / "study.journal").exists()


def test_sqlite_storage_is_refused_with_the_reason(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["tune", "digits_maml", "--space", "maml_digits", "--storage", f"sqlite:///{tmp_path}/s.db"]
    )
    assert result.exit_code == 2
    assert "not safe for parallel workers" in result.output
