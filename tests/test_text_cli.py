"""`fastadapt text fit` and `text predict` on generated intent data: the table, the JSON, the saved classifier,
out-of-scope thresholds, and every bad input with its message."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from fastadapt.cli import main

ENCODER = "hashed-ngrams:256"
LABELS = 6


def utterances(per_label: int, seed: int, oos: int = 0) -> list[tuple[str, str]]:
    """Each label has its own vocabulary mixed with shared filler words; out-of-scope rows use other words."""
    rng = random.Random(seed)
    rows = []
    for c in range(LABELS):
        words = [f"w{c}x{j}" for j in range(6)] + ["please", "can", "you", "the"]
        rows += [(" ".join(rng.choices(words, k=5)), f"intent_{c}") for _ in range(per_label)]
    other = ["weather", "banana", "zebra", "moon", "the", "please"]
    rows += [(" ".join(rng.choices(other, k=5)), "oos") for _ in range(oos)]
    return rows


def write(path: Path, rows: list[tuple[str, str]], header: tuple[str, str] = ("utterance", "intent")) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    return {
        "train": write(tmp_path / "train.csv", utterances(12, 0, oos=10)),
        "test": write(tmp_path / "test.csv", utterances(6, 1, oos=6)),
    }


def fit(files: dict[str, Path], *extra: str) -> object:
    args = ["text", "fit", "--train", str(files["train"]), "--test", str(files["test"]), "--text-column", "utterance"]
    args += ["--label-column", "intent", "--encoder", ENCODER, "--iterations", "15", "--no-progress", *extra]
    return CliRunner().invoke(main, args)


def test_fit_prints_json_per_method_and_shot_count_and_saves_a_classifier(
    files: dict[str, Path], tmp_path: Path, single_thread: None
) -> None:
    run = tmp_path / "run"
    result = fit(
        files, "--shots", "4,6", "--seeds", "2", "--methods", "logistic,nearest-mean,maml", "--val-fraction",
        "0.25", "--oos-label", "oos", "--save", str(run), "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["labels"] == LABELS and out["validation"] == "validation rows"
    assert set(out["results"]) == {"4", "6"}
    rows = out["results"]["6"]
    assert set(rows) == {"logistic", "nearest-mean", "maml", "selected"}
    for row in rows.values():
        assert len(row["accuracy"]["per_seed"]) == 2 and 0 <= row["macro_f1"]["mean"] <= 1
        assert 0 <= row["oos"]["oos_recall"] <= 1 and 0 <= row["oos"]["in_scope_accuracy"] <= 1
    assert rows["logistic"]["accuracy"]["mean"] > 3 / LABELS  # chance is 1/6
    assert rows["maml"]["vs_logistic"]["min_p_value"] == 0.5  # 2 seeds: 2 / 2**2
    assert rows["maml"]["vs_logistic"]["utterances"] == 6 * LABELS  # the in-scope test rows, paired
    assert 0 < rows["maml"]["vs_logistic"]["utterance_p_value"] <= 1
    chosen = rows["maml"]["chosen_per_seed"][0]
    assert set(chosen) == {"inner_lr", "test_steps"}
    assert rows["maml"]["effective_inner_lr_per_seed"][0] == chosen["inner_lr"] * LABELS
    assert out["saved"]["shots"] == 6 and (run / "results.json").is_file()

    texts = tmp_path / "texts.txt"
    texts.write_text("w1x1 w1x2 w1x3 w1x4 w1x5\nw4x0 w4x5 w4x2 w4x1 w4x3\nzebra moon banana weather zebra\n")
    result = CliRunner().invoke(main, ["text", "predict", str(run), "--texts", str(texts), "--json", "--top-k", "2"])
    assert result.exit_code == 0, result.output
    predicted = [[label["label"] for label in row["labels"]] for row in json.loads(result.output)]
    assert "intent_1" in predicted[0] and "intent_4" in predicted[1] and predicted[2][0] == "out-of-scope"
    assert len(predicted[0]) == 2


def test_fit_prints_a_table_with_k_fold_selection(files: dict[str, Path], single_thread: None) -> None:
    result = fit(files, "--shots", "3", "--seeds", "1", "--methods", "logistic,anil")
    assert result.exit_code == 0, result.output
    assert "| anil |" in result.output and "| selected |" in result.output and "inner_lr=" in result.output


def test_dnnc_folders_are_read_like_csvs(tmp_path: Path, single_thread: None) -> None:
    for part, rows in (("train", utterances(5, 0)), ("test", utterances(3, 1))):
        (tmp_path / part).mkdir()
        (tmp_path / part / "seq.in").write_text("".join(t + "\n" for t, _ in rows))
        (tmp_path / part / "label").write_text("".join(y + "\n" for _, y in rows))
    args = ["text", "fit", "--train", str(tmp_path / "train"), "--test", str(tmp_path / "test"), "--encoder", ENCODER]
    result = CliRunner().invoke(main, [*args, "--methods", "logistic", "--seeds", "1", "--json", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["rows"] == {"train": 5 * LABELS, "val": 0, "test": 3 * LABELS}


@pytest.mark.parametrize(
    ("mutate", "extra", "message"),
    [
        ("unseen", (), r"1 test label\(s\) have no training example \(e.g. \['intent_9'\]\)"),
        ("empty", (), r"line 3: empty 'utterance' or 'intent'; every row needs both"),
        ("latin1", (), r"is not UTF-8"),
        ("column", (), r"no column 'utterance' in the header \['sentence', 'intent'\]"),
        (
            None,
            ("--shots", "20"),
            r"--shots 20 but label 'oos' has 10 training example\(s\); lower --shots or add examples",
        ),
        (None, ("--shots", "2"), r"--shots 2 with --folds 2: .* K must be 3 or more"),
        (None, ("--shots", "1", "--val-fraction", "0.2"), r"--shots 1: the meta-trained heads \(protonet"),
        (None, ("--oos-label", "oos"), r"no validation row has that label"),
        (None, ("--methods", "logistic,svm"), r"unknown methods \['svm'\]"),
        (None, ("--shots", "five"), r"--shots 'five' is not a count of examples per label"),
    ],
)
def test_bad_input_is_one_clear_line(
    files: dict[str, Path], tmp_path: Path, mutate: str | None, extra: tuple[str, ...], message: str
) -> None:
    if mutate == "unseen":
        write(files["test"], [*utterances(2, 1), ("w9x0 w9x1", "intent_9")])
    elif mutate == "empty":
        files["train"].write_text("utterance,intent\nhello,intent_0\n,intent_1\n", encoding="utf-8")
    elif mutate == "latin1":
        files["train"].write_bytes("utterance,intent\ncaf\xe9,intent_0\n".encode("latin-1"))
    elif mutate == "column":
        write(files["train"], utterances(12, 0), header=("sentence", "intent"))
    result = fit(files, *extra)
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: ") and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    import re

    assert re.search(message, result.output), result.output


def test_predict_refuses_a_missing_run_and_blank_lines(tmp_path: Path) -> None:
    texts = tmp_path / "texts.txt"
    texts.write_text("hello\n\nbye\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["text", "predict", str(tmp_path), "--texts", str(texts)])
    assert result.exit_code == 2 and "holds no classifier.safetensors; `fastadapt text fit" in result.output
    from fastadapt.text import Predictor
    from fastadapt.text_cli import InputError, read_texts

    Predictor.linear(type("M", (), {"coef_": [[1.0, 0.0]], "intercept_": [0.0]})()).save(
        tmp_path / "classifier.safetensors"
    )
    with pytest.raises(InputError, match=r"texts.txt, line 2: empty text; put one text per line, no blank lines"):
        read_texts(texts)
    result = CliRunner().invoke(main, ["text", "predict", str(tmp_path), "--texts", str(texts)])
    assert result.exit_code == 2 and "line 2: empty text" in result.output


def test_train_given_as_test_and_out_of_scope_only_validation_are_refused(
    files: dict[str, Path], tmp_path: Path
) -> None:
    args = ["text", "fit", "--train", str(files["train"]), "--test", str(files["train"]), "--encoder", ENCODER]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "--test" in result.output and "is the --train file" in result.output
    val = write(tmp_path / "val.csv", [("zebra moon", "oos"), ("banana weather", "oos")])
    args = ["text", "fit", "--train", str(files["train"]), "--test", str(files["test"]), "--val", str(val)]
    args += ["--text-column", "utterance", "--label-column", "intent", "--oos-label", "oos", "--encoder", ENCODER]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert "the validation rows are all out of scope" in result.output and "Traceback" not in result.output


def test_a_diverging_candidate_scores_zero_and_legacy_rates_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from fastadapt.text import HeadConfig, _selection, meta_train_head, select_head

    def train(config: HeadConfig, *args: object, **kwargs: object) -> object:
        if config.inner_lr == 50.0:
            raise FloatingPointError("maml: non-finite episode loss during meta-training")
        return meta_train_head(config, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(_selection, "meta_train_head", train)

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 8)).astype(np.float32)
    y = np.repeat(np.arange(4), 10)
    x[y == 1] += 2.0
    config = HeadConfig("maml", hidden=(), shots=3, queries=2, iterations=3)
    selection = select_head(config, x, y, grid={"inner_lr": [1.0, 50.0]}, step_scales=(1,))
    assert selection.scores["inner_lr=50 test_steps=5"] == 0.0 and selection.best == "inner_lr=1 test_steps=5"
    with pytest.raises(ValueError, match=r"inner_lr=300 is a per-class rate .* runs as inner_lr x ways"):
        meta_train_head(HeadConfig("maml", inner_lr=300.0, iterations=1), x, y)
