"""Checkpoints are atomic, verified on load, and never unpickle."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from fastadapt.training import CheckpointError, load_checkpoint, save_checkpoint


def write(path: Path) -> dict[str, torch.Tensor]:
    tensors = {
        "params/w": torch.randn(4, 3),
        "params/b": torch.randn(3),
        "rng/tasks": torch.arange(5, dtype=torch.uint8),
    }
    save_checkpoint(path, tensors, {"step": 12, "best": 0.5})
    return tensors


def test_round_trip(tmp_path: Path) -> None:
    tensors = write(tmp_path / "c.safetensors")
    loaded, state = load_checkpoint(tmp_path / "c.safetensors")
    assert state == {"step": 12, "best": 0.5}
    assert all(torch.equal(loaded[k], v) for k, v in tensors.items())
    assert [p.name for p in tmp_path.iterdir()] == ["c.safetensors"]  # no temporary file left behind


def test_truncated_checkpoint_fails_clearly(tmp_path: Path) -> None:
    path = tmp_path / "c.safetensors"
    write(path)
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(CheckpointError, match=r"checkpoint .*c.safetensors is corrupt or truncated"):
        load_checkpoint(path)


def test_tampered_tensor_bytes_fail_the_content_check(tmp_path: Path) -> None:
    path = tmp_path / "c.safetensors"
    write(path)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # flip bits inside the last tensor's data
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"fails its content check \(sha256 mismatch\)"):
        load_checkpoint(path)


def test_tampered_state_fails_the_content_check(tmp_path: Path) -> None:
    path = tmp_path / "c.safetensors"
    write(path)
    path.write_bytes(path.read_bytes().replace(b'\\"step\\": 12', b'\\"step\\": 99'))
    with pytest.raises(CheckpointError, match=r"sha256 mismatch"):
        load_checkpoint(path)


class Boom:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (exec, ("raise SystemExit('pickle executed')",))


def test_a_pickle_is_rejected_without_being_executed(tmp_path: Path) -> None:
    path = tmp_path / "c.safetensors"
    path.write_bytes(pickle.dumps({"params/w": Boom()}))
    with pytest.raises(CheckpointError, match=r"corrupt or truncated"):
        load_checkpoint(path)


def test_missing_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"no checkpoint at"):
        load_checkpoint(tmp_path / "none.safetensors")


def test_failed_write_keeps_the_previous_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.safetensors"
    write(path)
    before = path.read_bytes()

    def disk_full(tensors: object, filename: str, metadata: object = None) -> None:
        Path(filename).write_bytes(b"partial")
        raise OSError("No space left on device")

    monkeypatch.setattr("fastadapt.training._checkpoint.save_file", disk_full)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(path, {"params/w": torch.zeros(2)}, {"step": 13})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.safetensors"]


def test_resume_from_best_after_last_is_truncated(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from fastadapt.cli import main

    run_dir = tmp_path / "run"
    args = ["train", "digits_protonet", "training.iterations=6", "training.val_every=2", "training.checkpoint_every=2"]
    args += ["training.val_episodes=5", "training.keep=2", "--run-dir", str(run_dir), "--no-progress"]
    assert CliRunner().invoke(main, args).exit_code == 0
    names = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert names == ["best.safetensors", "last.safetensors", "step-00000006.safetensors"]  # keep=2: last + one
    last = run_dir / "checkpoints" / "last.safetensors"
    last.write_bytes(last.read_bytes()[:1000])
    more = [*args[:2], "training.iterations=8", *args[3:]]
    result = CliRunner().invoke(main, [*more, "--resume"])
    assert result.exit_code == 2, result.output
    assert "last.safetensors is corrupt or truncated" in result.output
    assert "these still load: best (step " in result.output and "step-00000006 (step 6)" in result.output
    assert "resume from one with --checkpoint best" in result.output
    result = CliRunner().invoke(main, [*more, "--resume", "--checkpoint", "best"])
    assert result.exit_code == 0, result.output
    _, state = load_checkpoint(last)
    assert state["step"] == 8
    result = CliRunner().invoke(main, [*more, "--checkpoint", "best"])
    assert result.exit_code == 2 and "--checkpoint chooses where --resume continues from" in result.output
