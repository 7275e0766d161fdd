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
