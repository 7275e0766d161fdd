"""Distributed meta-training on torch.distributed (gloo on loopback): sharded meta-batches, one all-reduce,
rank-0 I/O, sharded evaluation, resume, elastic restart, a dead rank, two "nodes".

Every multi-process test starts real processes through torchrun (or by hand, with its environment), so the
tests cost start-up time: the runs are small (sinusoid MLP, digits Conv4 with few channels)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fastadapt.algorithms import meta_gradient
from fastadapt.evaluation import evaluate
from fastadapt.tasks import SinusoidTasks
from fastadapt.training import ConfigError, Trainer, build_experiment, resolve_config
from fastadapt.training._distributed import Group, shard_bounds

TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]
FASTADAPT = [sys.executable, "-m", "fastadapt"]
#: Small second-order MAML and ProtoNet on digits, in float64 in the scripts below.
DIGITS = ["model.channels=8", "training.meta_batch_size=6", "training.strategy=loop"]
SINUSOID = [
    "training.iterations=160",
    "training.meta_batch_size=4",
    "training.val_every=100",
    "training.val_episodes=10",
    "training.checkpoint_every=20",
    "training.log_every=10",
    "training.sync_check_every=50",
]

GRADIENT_SCRIPT = """
import json, sys, time, torch
from safetensors.torch import save_file
from fastadapt.algorithms import meta_gradient
from fastadapt.evaluation import evaluate
from fastadapt.training import DistributedError, build_experiment, join_process_group, resolve_config

out, overrides = sys.argv[1], sys.argv[2:]
group = join_process_group(torch.device("cpu"), 5)
grads_out, rows = {}, {}
for name in ("digits_maml", "digits_protonet"):
    exp = build_experiment(resolve_config(name, overrides))
    exp.model.double()
    params = {k: v.double().requires_grad_() for k, v in exp.algorithm.init_params().items()}
    generator = torch.Generator().manual_seed(3)
    batch = exp.sources["train"].sample_shard(6, generator, group.share(6)).to("cpu", torch.float64)
    grads, stats = meta_gradient(exp.train_algorithm, params, batch, "loop", scale=6)
    group.all_sum(list(grads.values()))
    grads_out |= {f"{name}/{k}": v for k, v in grads.items()}
    result = evaluate(exp.algorithm, params, exp.sources["val"], episodes=7, seed=5, steps=2, shard=group)
    rows[name] = result.per_episode
if group.is_main:
    save_file(grads_out, out + "/grads.safetensors")
    open(out + "/rows.json", "w").write(json.dumps(rows))
messages = {}
drift = [p.detach().clone() for p in params.values()]
drift[0].view(-1)[0] += 1e-12 * group.rank  # a tiny change on rank 1 only
try:
    group.check_identical(drift)
except DistributedError as error:
    messages["drift"] = str(error)
start = time.monotonic()
if group.rank == 1:
    time.sleep(group.timeout_s + 3)  # a hung rank: rank 0's next collective must give up after the timeout
try:
    group.all_sum([torch.zeros(3)])
except DistributedError as error:
    messages["hang"] = str(error)
messages["waited"] = time.monotonic() - start
if group.is_main:
    open(out + "/messages.json", "w").write(json.dumps(messages))
"""

TRAIN_SCRIPT = """
import sys, torch
from fastadapt.training import Trainer, build_experiment, resolve_config

run_dir, overrides = sys.argv[1], sys.argv[2:]
exp = build_experiment(resolve_config("digits_maml", overrides))
exp.model.double()
trainer = Trainer(exp, run_dir, progress=False)
trainer.run()
trainer.group.close()
"""


def _float64_digits(name: str) -> tuple[object, dict[str, torch.Tensor]]:
    exp = build_experiment(resolve_config(name, DIGITS))
    exp.model.double()
    return exp, {k: v.double().requires_grad_() for k, v in exp.algorithm.init_params().items()}


def _torchrun(tmp_path: Path, script: str, *args: str, nproc: int = 2, timeout: float = 240) -> None:
    path = tmp_path / "script.py"
    path.write_text(textwrap.dedent(script))
    command = [*TORCHRUN, "--standalone", f"--nproc-per-node={nproc}", str(path), *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]


def _params(run_dir: Path, name: str = "last") -> dict[str, torch.Tensor]:
    tensors = load_file(str(run_dir / "checkpoints" / f"{name}.safetensors"))
    return {k: v for k, v in tensors.items() if k.startswith(("params/", "optim/"))}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_parameter_hash_takes_every_shape() -> None:
    from fastadapt.training._distributed import _digest

    assert _digest([torch.tensor(1.0), torch.zeros(2, 3)]) != _digest([torch.tensor(2.0), torch.zeros(2, 3)])


def test_an_explicit_gpu_under_several_local_processes_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from fastadapt.training import resolve_device

    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match=r"training\.device=cuda:1 with 2 processes on this machine would put them"):
        resolve_device("cuda:1")


def test_shards_cover_the_batch_once() -> None:
    for size in (1, 5, 6, 7, 32):
        for world in range(1, min(size, 5) + 1):
            shares = [shard_bounds(size, r, world) for r in range(world)]
            assert [i for s in shares for i in s] == list(range(size))
            assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_a_shard_is_the_slice_of_the_batch_and_moves_the_generator_alike() -> None:
    exp = build_experiment(resolve_config("digits_maml", DIGITS))
    users = build_experiment(resolve_config("movielens/metamf", ["recsys.synthetic_users=120"])).sources["train"]
    # an episode sampler, the generic default, and users whose batches share a support size (their own batches)
    for source in (exp.sources["train"], SinusoidTasks(), users):
        a, b = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
        whole = source.sample_batch(7, a)
        part = source.sample_shard(7, b, range(2, 5))
        for x, y in zip(part.tensors(), whole.tensors(), strict=True):
            torch.testing.assert_close(x, y[2:5], rtol=0, atol=0)
        assert torch.equal(a.get_state(), b.get_state())
        with pytest.raises(ValueError, match=r"share range\(5, 9\) is not a non-empty contiguous part of range\(7\)"):
            source.sample_shard(7, b, range(5, 9))


def test_two_processes_give_the_one_process_meta_gradient_and_evaluation(tmp_path: Path) -> None:
    _torchrun(tmp_path, GRADIENT_SCRIPT, str(tmp_path), *DIGITS)
    shared = load_file(str(tmp_path / "grads.safetensors"))
    rows = json.loads((tmp_path / "rows.json").read_text())
    for name in ("digits_maml", "digits_protonet"):
        exp, params = _float64_digits(name)
        batch = exp.sources["train"].sample_batch(6, torch.Generator().manual_seed(3)).to("cpu", torch.float64)
        grads, _ = meta_gradient(exp.train_algorithm, params, batch, "loop")
        worst = max(float((shared[f"{name}/{k}"] - g).abs().max()) for k, g in grads.items())
        assert worst < 1e-10, (name, worst)
        assert max(float(g.abs().max()) for g in grads.values()) > 1e-3  # a gradient that could differ
        single = evaluate(exp.algorithm, params, exp.sources["val"], episodes=7, seed=5, steps=2)
        assert rows[name] == single.per_episode
    messages = json.loads((tmp_path / "messages.json").read_text())
    assert messages["drift"].startswith("at step 0 the parameters of rank(s) [1] differ from rank 0's")
    assert messages["hang"].startswith("rank 0 of 2: all_reduce of the meta-gradient at step 0 failed (")
    assert "another rank died or stopped answering (timeout 5 s, training.dist_timeout)" in messages["hang"]
    assert 4 < messages["waited"] < 30


def test_twenty_iterations_on_two_processes_match_one_process(tmp_path: Path) -> None:
    overrides = [
        *DIGITS,
        "training.iterations=20",
        "training.val_every=10",
        "training.val_episodes=6",
        "training.checkpoint_every=10",
        "training.sync_check_every=5",
    ]
    _torchrun(tmp_path, TRAIN_SCRIPT, str(tmp_path / "two"), *overrides)
    exp = build_experiment(resolve_config("digits_maml", overrides))
    exp.model.double()
    Trainer(exp, tmp_path / "one", progress=False).run()
    one, two = _params(tmp_path / "one"), _params(tmp_path / "two")
    assert one.keys() == two.keys()
    start = {
        k: v.double()
        for k, v in build_experiment(resolve_config("digits_maml", overrides)).algorithm.init_params().items()
    }
    assert max(float((one[f"params/{k}"] - v).abs().max()) for k, v in start.items()) > 1e-2  # it trained
    # the parameters; Adam's moments divide by sqrt(v), so they differ more where v is small
    assert max(float((one[k] - two[k]).abs().max()) for k in one if k.startswith("params/")) < 1e-6
    rows = [json.loads(line) for line in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["split"] == "val"] == [10, 20]  # rank 0 alone wrote the log


def _run_cli(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*FASTADAPT, *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A 2-process sinusoid run of 160 iterations without interruption: the reference for resumed ones."""
    run = tmp_path_factory.mktemp("dist") / "reference"
    done = _run_cli("train", "sinusoid_maml", *SINUSOID, "--run-dir", str(run), "--nproc", "2", "--no-progress")
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"run written to {run}" in done.stdout
    yield run


def _last_step(run_dir: Path) -> int:
    path = run_dir / "metrics.jsonl"
    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []
    return max((r["step"] for r in rows if r["split"] == "train"), default=0)


def _wait_for_step(run_dir: Path, step: int, process: subprocess.Popen[str], limit: float = 120) -> None:
    start = time.monotonic()
    while _last_step(run_dir) < step:
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.monotonic() - start < limit, f"no step {step} within {limit} s"
        time.sleep(0.05)


def _descendant_with_rank(pid: int, rank: int) -> int:
    """The process below ``pid`` whose environment says ``RANK=rank`` (torchrun's worker)."""
    queue = [pid]
    while queue:
        current = queue.pop()
        try:
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except FileNotFoundError:
            continue
        for child in map(int, children):
            try:
                env = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
            except FileNotFoundError:
                continue
            if f"RANK={rank}".encode() in env and b"LOCAL_RANK=" + str(rank).encode() in env:
                return child
            queue.append(child)
    raise AssertionError(f"no worker with RANK={rank} below {pid}")


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="finds torchrun's workers through /proc (Linux)")
def test_a_killed_rank_is_restarted_from_the_last_checkpoint_bit_identically(
    uninterrupted: Path, tmp_path: Path
) -> None:
    run = tmp_path / "elastic"
    command = [
        *FASTADAPT,
        "train",
        "sinusoid_maml",
        *SINUSOID,
        "--run-dir",
        str(run),
        "--nproc",
        "2",
        "--max-restarts",
        "1",
        "--no-progress",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_step(run, 40, process)
    os.kill(_descendant_with_rank(process.pid, 1), signal.SIGKILL)
    _, err = process.communicate(timeout=240)
    assert process.returncode == 0, err[-3000:]
    assert "restart 1: resuming" in err
    reference, resumed = _params(uninterrupted), _params(run)
    assert all(torch.equal(reference[k], resumed[k]) for k in reference)
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines() if '"train"' in x]
    assert steps == list(range(10, 161, 10))  # the rows past the checkpoint were dropped, none repeated


def _two_nodes(run: Path, *flags: str) -> None:
    """Two torchrun launchers on loopback, as two machines would run them (``--nnodes 2``, node ranks 0 and 1)."""
    port = _free_port()
    launchers = [
        subprocess.Popen(
            [
                *TORCHRUN,
                "--nnodes=2",
                f"--node-rank={node}",
                "--nproc-per-node=1",
                "--master-addr=127.0.0.1",
                f"--master-port={port}",
                "-m",
                "fastadapt",
                "train",
                "sinusoid_maml",
                *SINUSOID,
                "--run-dir",
                str(run),
                "--no-progress",
                *flags,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for node in (0, 1)
    ]
    for launcher in launchers:
        _, err = launcher.communicate(timeout=240)
        assert launcher.returncode == 0, err[-3000:]


def test_a_dead_rank_stops_the_other_and_two_nodes_resume_it_bit_identically(
    uninterrupted: Path, tmp_path: Path
) -> None:
    run, port = tmp_path / "killed", _free_port()
    ranks = []
    for rank in (0, 1):
        env = os.environ | {"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2",
                            "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}  # fmt: skip
        command = [*FASTADAPT, "train", "sinusoid_maml", *SINUSOID, "--run-dir", str(run), "--no-progress"]
        ranks.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    _wait_for_step(run, 40, ranks[0])
    ranks[1].kill()
    killed = time.monotonic()
    _, err = ranks[0].communicate(timeout=90)
    assert time.monotonic() - killed < 60
    assert ranks[0].returncode == 2
    assert "error: rank 0 of 2: all_reduce of the meta-gradient at step" in err
    assert "another rank died or stopped answering" in err and "--resume" in err
    assert len(err.strip().splitlines()[-1]) > 50 and "Traceback" not in err
    ranks[1].communicate()
    _two_nodes(run, "--resume")  # the same world size on two "machines": the run ends as an uninterrupted one
    reference, resumed = _params(uninterrupted), _params(run)
    assert all(torch.equal(reference[k], resumed[k]) for k in reference)


def test_distributed_settings_are_checked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from fastadapt.cli import main

    done = CliRunner().invoke(main, ["train", "sinusoid_maml", "training.dist_timeout=0", "--nproc", "2"])
    assert done.exit_code == 2  # refused before torchrun starts
    assert done.output.strip().endswith("sinusoid_maml.yaml: training.dist_timeout=0.0 must be a finite number > 0")
    done = CliRunner().invoke(main, ["train", "sinusoid_maml", "--max-restarts", "2"])
    assert done.output.strip() == "error: --max-restarts applies to --nproc N > 1 (or torchrun's own --max-restarts)"
    monkeypatch.setenv("WORLD_SIZE", "2")
    done = CliRunner().invoke(main, ["train", "sinusoid_maml"])
    assert done.exit_code == 2
    assert "error: --run-dir is required with 2 processes" in done.output
    group = Group(rank=0, world_size=5, backend="gloo", timeout_s=1, device=torch.device("cpu"))
    exp = build_experiment(resolve_config("sinusoid_maml", ["training.meta_batch_size=4"]))
    with pytest.raises(ConfigError, match=r"training\.meta_batch_size=4 is smaller than the 5 processes"):
        Trainer(exp, tmp_path / "run", progress=False, group=group)


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="finds torchrun's workers through /proc (Linux)")
def test_sigterm_to_nproc_stops_torchrun_and_its_workers(tmp_path: Path) -> None:
    run = tmp_path / "stopped"
    command = [*FASTADAPT, "train", "sinusoid_maml", *SINUSOID, "training.iterations=100000", "--run-dir", str(run),
               "--nproc", "2", "--no-progress"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_step(run, 20, process)
    workers = [_descendant_with_rank(process.pid, rank) for rank in (0, 1)]
    process.terminate()  # what a job scheduler sends
    process.communicate(timeout=60)
    start = time.monotonic()
    while any(Path(f"/proc/{pid}").exists() and "zombie" not in _state(pid) for pid in workers):
        assert time.monotonic() - start < 30, "a worker outlived the stopped launcher"
        time.sleep(0.1)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split("\n")[0].lower()
    except (FileNotFoundError, IndexError):
        return "zombie"
