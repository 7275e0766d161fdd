"""``fastadapt text``: few-shot intent classification on one's own labelled texts (CSV files or DNNC split
folders), every method on the same K-shot draws with its settings chosen on the run's own data, and
``predict`` with a saved classifier."""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
import numpy as np

from ._extras import MissingExtraError
from .data import DataError
from .data._download import _atomic
from .text._report import markdown, summarise
from .training import CheckpointError

#: The methods of `text fit` (the meta-trained heads and the baselines they are compared with).
METHODS = ("logistic", "nearest-mean", "protonet", "maml", "anil", "metasgd")
HEADS = ("protonet", "maml", "anil", "metasgd")
CLASSIFIER = "classifier.safetensors"


class InputError(ValueError):
    """Bad input to `fastadapt text` (a file, a column, a label, a count)."""


def _fail(error: Exception) -> None:
    click.echo(f"error: {error}", err=True)
    sys.exit(2)


@click.group("text")
def text() -> None:
    """Few-shot text classification on your own data (CSV files or DNNC folders of seq.in and label)."""


def read_examples(path: Path, text_column: str, label_column: str) -> list[tuple[str, str, str]]:
    """``(text, label, split)`` rows of a CSV file (with its optional ``split`` column; default ``train``) or a
    DNNC split folder (``seq.in`` and ``label``; every row ``train``)."""
    from .text import load_dnnc_folder, load_text_csv

    if not path.exists():
        raise InputError(f"{path} does not exist; give a CSV file or a folder holding seq.in and label")
    if path.is_dir():
        dataset = load_dnnc_folder(path.parent, (("train", path.name),), group_separator=None)
    else:
        dataset = load_text_csv(path, text_column=text_column, label_column=label_column, group_column=None)
    names = dataset.class_names
    return [
        (t, names[y], str(s)) for t, y, s in zip(dataset.texts, dataset.labels.tolist(), dataset.splits, strict=True)
    ]


def _parse_shots(values: Sequence[str]) -> list[int]:
    shots: list[int] = []
    for value in values:
        for part in value.replace(",", " ").split():
            if not part.isdigit() or int(part) < 1:
                raise InputError(f"--shots {part!r} is not a count of examples per label; give integers >= 1")
            shots.append(int(part))
    return sorted(set(shots)) or [5]


def _carve(rows: list[tuple[str, str, str]], fraction: float, seed: int) -> list[tuple[str, str, str]]:
    """Moves ``fraction`` of each label's training rows (at least one) to the validation split."""
    rng = np.random.default_rng(seed)
    by_label: dict[str, list[int]] = {}
    for i, (_, label, split) in enumerate(rows):
        if split == "train":
            by_label.setdefault(label, []).append(i)
    moved = set()
    for label, members in sorted(by_label.items()):
        count = max(1, round(fraction * len(members)))
        if count >= len(members):
            raise InputError(
                f"--val-fraction {fraction}: label {label!r} has {len(members)} training example(s), too few "
                "to carve validation ones from; lower --val-fraction or give a --val file"
            )
        moved.update(rng.choice(members, size=count, replace=False).tolist())
    return [(t, label, "val" if i in moved else split) for i, (t, label, split) in enumerate(rows)]


def assemble(
    train: Path,
    test: Path | None,
    val: Path | None,
    text_column: str,
    label_column: str,
    val_fraction: float,
    oos_label: str | None,
    seed: int = 0,
) -> tuple[Any, dict[str, list[str]]]:
    """The in-scope :class:`~fastadapt.text.TextDataset` (classes: the training labels, sorted) and the
    out-of-scope texts by split (rows labelled ``oos_label``)."""
    from .text import TextDataset

    for other, option in ((test, "--test"), (val, "--val")):
        if other is not None and other.resolve() == train.resolve():
            raise InputError(
                f"{option} {other} is the --train file; give separate files, or one file with a 'split' column"
            )
    rows = read_examples(train, text_column, label_column)
    if val is not None:
        rows = [r for r in rows if r[2] != "val"] + [
            (t, y, "val") for t, y, _ in read_examples(val, text_column, label_column)
        ]
    if test is not None:
        rows = [r for r in rows if r[2] != "test"] + [
            (t, y, "test") for t, y, _ in read_examples(test, text_column, label_column)
        ]
    if not any(r[2] == "test" for r in rows):
        raise InputError(f"no test rows: give --test, or a 'split' column in {train} with test rows")
    if val_fraction:
        if any(r[2] == "val" for r in rows):
            raise InputError(
                "--val-fraction carves validation rows, but the data already has some; give one of the two"
            )
        rows = _carve(rows, val_fraction, seed)
    out_of_scope: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    if oos_label is not None:
        for t, y, s in rows:
            if y == oos_label:
                out_of_scope[s].append(t)
        rows = [r for r in rows if r[1] != oos_label]
        if not out_of_scope["test"]:
            raise InputError(f"--oos-label {oos_label!r}: no test row has that label")
        if not out_of_scope["val"]:
            if val is not None:
                fix = f"put {oos_label!r} rows in {val}"
            elif val_fraction:
                fix = f"no training row has that label to carve from: add {oos_label!r} rows to {train}"
            else:
                fix = f"give --val with {oos_label!r} rows, or --val-fraction to carve some from the training rows"
            raise InputError(
                f"--oos-label {oos_label!r}: no validation row has that label, and the threshold is chosen on "
                f"validation rows; {fix}"
            )
    labels = sorted({y for _, y, s in rows if s == "train"})
    if not labels:
        raise InputError(f"{train} has no training rows")
    ids = {name: i for i, name in enumerate(labels)}
    for split in ("val", "test"):
        unseen = sorted({y for _, y, s in rows if s == split} - set(ids))
        if unseen:
            raise InputError(
                f"{len(unseen)} {split} label(s) have no training example (e.g. {unseen[:3]}); every {split} "
                f"label needs training examples"
                + ("" if oos_label else ", or name the out-of-scope label with --oos-label")
            )
    dataset = TextDataset(
        tuple(t for t, _, _ in rows),
        np.array([ids[y] for _, y, _ in rows], dtype=np.int64),
        tuple(labels),
        np.array([s for _, _, s in rows]),
    )
    return dataset, out_of_scope


def _heads(methods: Sequence[str], shots: int, iterations: int) -> dict[str, Any]:
    from .text import HeadConfig

    episode: dict[str, Any] = {"shots": max(1, shots - 2), "queries": min(2, shots - 1), "iterations": iterations}
    configs = {
        "protonet": HeadConfig("protonet", ways=20, meta_batch=8, **episode),
        "maml": HeadConfig("maml", hidden=(), **episode),
        "anil": HeadConfig("anil", **episode),
        "metasgd": HeadConfig("metasgd", hidden=(), **episode),
    }
    return {name: configs[name] for name in methods if name in HEADS}


@text.command("fit")
@click.option("--train", "train", required=True, type=click.Path(path_type=Path), help="CSV file or DNNC folder.")
@click.option(
    "--test",
    "test",
    type=click.Path(path_type=Path),
    help="Test CSV or DNNC folder (default: the train CSV's split column).",
)
@click.option(
    "--val",
    "val",
    type=click.Path(path_type=Path),
    help="Validation CSV or DNNC folder (settings and thresholds are chosen on it).",
)
@click.option(
    "--val-fraction",
    type=click.FloatRange(0, 1, max_open=True),
    default=0.0,
    show_default=True,
    help="Carve this share of each label's training rows into validation.",
)
@click.option("--text-column", default="text", show_default=True)
@click.option("--label-column", default="label", show_default=True)
@click.option(
    "--shots",
    multiple=True,
    default=("5",),
    show_default=True,
    help="Examples per label: --shots 5 --shots 10, or --shots 5,10.",
)
@click.option(
    "--seeds", type=click.IntRange(min=1), default=3, show_default=True, help="K-shot draws (and training seeds)."
)
@click.option("--methods", default=",".join(METHODS), show_default=True, help="Comma-separated methods.")
@click.option(
    "--folds",
    type=click.IntRange(min=2),
    default=2,
    show_default=True,
    help="k of the k-fold over the K-shot set (without validation rows).",
)
@click.option(
    "--iterations",
    type=click.IntRange(min=1),
    default=300,
    show_default=True,
    help="Meta-training iterations per head.",
)
@click.option(
    "--encoder", default=None, help="A sentence-transformers model, or hashed-ngrams[:N] (default all-MiniLM-L6-v2)."
)
@click.option(
    "--oos-label", default=None, help="The label of out-of-scope rows: thresholds on validation, recall on test."
)
@click.option(
    "--save",
    "save_dir",
    type=click.Path(path_type=Path),
    help="Write the results and the largest-K, seed-0 selected classifier here.",
)
@click.option(
    "--init",
    type=click.Path(path_type=Path),
    help="A `text meta-train` run: every method also on its encoder (rows '@init').",
)
@click.option(
    "--finetune",
    type=click.Choice(["setfit", "protonet"]),
    help="Also fine-tune the encoder on each K-shot draw: SetFit pairs, or ProtoNet episodes of its top 2 "
    "layers (rows '+setfit' / '+protonet').",
)
@click.option(
    "--finetune-steps",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="--finetune protonet: episodes per draw (20% of the labels choose the step).",
)
@click.option(
    "--max-pairs",
    type=click.IntRange(min=2),
    default=4000,
    show_default=True,
    help="--finetune setfit: contrastive pairs per draw at most.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the tables.")
@click.option("--no-progress", is_flag=True, help="No progress lines.")
def fit(
    train: Path,
    test: Path | None,
    val: Path | None,
    val_fraction: float,
    text_column: str,
    label_column: str,
    shots: tuple[str, ...],
    seeds: int,
    methods: str,
    folds: int,
    iterations: int,
    encoder: str | None,
    oos_label: str | None,
    save_dir: Path | None,
    init: Path | None,
    finetune: str | None,
    max_pairs: int,
    finetune_steps: int,
    as_json: bool,
    no_progress: bool,
) -> None:
    """Every method on the same K-shot draws of the training labels, scored on the test rows: mean ± 95% t
    interval over the seeds, and the paired difference from the logistic head."""
    try:
        result = run_fit(
            train, test, val, val_fraction, text_column, label_column, _parse_shots(shots), seeds,
            [m.strip() for m in methods.split(",") if m.strip()], folds, iterations, encoder, oos_label,
            save_dir, log=None if no_progress or as_json else (lambda line: click.echo(line, err=True)), init=init,
            finetune=finetune, max_pairs=max_pairs, finetune_steps=finetune_steps,
        )  # fmt: skip
    except (InputError, DataError, CheckpointError, MissingExtraError, FloatingPointError) as error:
        _fail(error)
    except (ValueError, OSError) as error:  # a bad encoder name or folder, an unreadable cache
        _fail(error)
    click.echo(json.dumps(result, indent=1) if as_json else markdown(result["results"]))


def run_fit(
    train: Path,
    test: Path | None,
    val: Path | None,
    val_fraction: float,
    text_column: str,
    label_column: str,
    shots_list: list[int],
    seeds: int,
    methods: list[str],
    folds: int,
    iterations: int,
    encoder: str | None,
    oos_label: str | None,
    save_dir: Path | None,
    log: Any = None,
    init: Path | None = None,
    finetune: str | None = None,
    max_pairs: int = 4000,
    finetune_steps: int = 100,
) -> dict[str, Any]:
    """`text fit` as a function: the JSON object it prints."""
    from .text import DEFAULT_ENCODER, SentenceEncoder, all_intents, encode_texts, kshot_indices
    from .text._datasets import texts_of
    from .text._finetune import protonet_encoder, replace_folder, setfit_encoder
    from .text._selection import one_se_choice

    unknown = sorted(set(methods) - set(METHODS))
    if unknown or not methods:
        raise InputError(f"unknown methods {unknown}; choose from {', '.join(METHODS)}")
    dataset, out_of_scope = assemble(train, test, val, text_column, label_column, val_fraction, oos_label)
    train_counts = np.bincount(dataset.labels[dataset.indices("train")], minlength=dataset.num_classes)
    fewest = int(train_counts.argmin())
    if train_counts[fewest] < max(shots_list):
        raise InputError(
            f"--shots {max(shots_list)} but label {dataset.class_names[fewest]!r} has {train_counts[fewest]} training "
            "example(s); lower --shots or add examples"
        )
    has_val = len(dataset.indices("val")) > 0
    if has_val:
        missing = sorted(set(range(dataset.num_classes)) - set(dataset.labels[dataset.indices("val")].tolist()))
        if missing:
            missing_names = [dataset.class_names[i] for i in missing[:3]]
            raise InputError(
                f"{len(missing)} label(s) have no validation row (e.g. {missing_names}); validate every label or none"
            )
    if oos_label is not None and not has_val:
        raise InputError(
            f"--oos-label {oos_label!r}: the validation rows are all out of scope; the threshold is chosen on "
            "in-scope and out-of-scope validation rows, so give every label validation rows too"
        )
    heads = [m for m in methods if m in HEADS]
    if heads and min(shots_list) < 2:
        raise InputError(
            f"--shots {min(shots_list)}: the meta-trained heads ({', '.join(heads)}) need 2 or more examples per label"
        )
    if not has_val and min(shots_list) < folds + 1:
        raise InputError(
            f"--shots {min(shots_list)} with --folds {folds}: each fold holds out one of every label's K examples, "
            f"so K must be {folds + 1} or more; give validation rows (--val or --val-fraction) for smaller K"
        )
    name = encoder or DEFAULT_ENCODER
    if Path(name).is_dir():
        name = str(Path(name).resolve())  # a saved classifier finds it from any working directory
    variants = [("", name)]
    if init is not None:
        if not (init / "encoder" / "meta_train.json").is_file():
            raise InputError(
                f"--init {init}: no encoder/meta_train.json there; `fastadapt text meta-train --out {init}` writes one"
            )
        variants.append((" @init", str((init / "encoder").resolve())))
    oos_texts = out_of_scope["val"] + out_of_scope["test"]
    all_texts = list(dataset.texts) + oos_texts
    val_rows = dataset.indices("val")
    cut = len(out_of_scope["val"])

    def inputs(embedded: np.ndarray) -> dict[str, Any]:
        embeddings = embedded[: len(dataset.texts)]
        oos = (embedded[len(dataset.texts) :][:cut], embedded[len(dataset.texts) :][cut:])
        return {
            "embeddings": embeddings,
            "validation": (embeddings[val_rows], dataset.labels[val_rows]) if has_val else None,
            "out_of_scope": oos if oos_label is not None else None,
        }

    start = time.perf_counter()
    embedded = {suffix: inputs(encode_texts(e, all_texts, progress=log is not None)) for suffix, e in variants}
    embed_seconds = time.perf_counter() - start
    baselines = tuple(m for m in methods if m not in HEADS)
    tuned_suffix = f" +{finetune}"

    def tune_encoder(how: str, start: str, texts: list[str], labels: Any, out: Path, seed: int) -> dict[str, Any]:
        if how == "setfit":
            return setfit_encoder(start, texts, labels, out, seed, max_pairs)
        k = int(np.bincount(labels).min())  # ProtoNet: episodes of the K-shot draw, 20% of its labels validate
        held = max(2, round(0.2 * dataset.num_classes))
        if dataset.num_classes - held < 2:
            raise InputError(
                f"--finetune protonet needs 4 or more labels (2 to validate on), got {dataset.num_classes}"
            )
        return protonet_encoder(
            start, texts, labels, out, val_fraction=held / dataset.num_classes,
            ways=min(20, dataset.num_classes - held), shots=max(1, k - 2), queries=min(2, k - 1),
            steps=finetune_steps, val_every=max(1, finetune_steps // 4), seed=seed,
        )  # fmt: skip

    runs: dict[int, dict[int, dict[str, Any]]] = {}
    kept = None
    scratch = Path(tempfile.mkdtemp(prefix="fastadapt-text-"))
    try:
        for shots in shots_list:
            for seed in range(seeds):
                keep: dict[str, Any] = {}
                rows: dict[str, Any] = {}
                selected_rows: list[dict[str, Any]] = []
                encoders = dict(variants)
                jobs = list(embedded.items())
                if finetune is not None:
                    support = kshot_indices(dataset, shots, seed)
                    folder = scratch / f"{finetune}-{shots}-{seed}"
                    info = tune_encoder(
                        finetune, name, texts_of(dataset, support), dataset.labels[support], folder, seed
                    )
                    if log:
                        log(f"{shots}-shot seed {seed}: {finetune} fine-tuning, {info['seconds']} s")
                    tuned = SentenceEncoder(str(folder)).encode_batch(all_texts)  # a new encoder per draw: not cached
                    if not (shots == max(shots_list) and seed == 0 and save_dir is not None):
                        shutil.rmtree(folder)  # only the draw a saved classifier may use is kept
                    jobs.append((tuned_suffix, inputs(tuned)))
                    encoders[tuned_suffix] = str(folder)
                for suffix, data in jobs:
                    found: dict[str, Any] = {}
                    scores = all_intents(
                        dataset, data["embeddings"], shots, seed, _heads(methods, shots, iterations),
                        baselines=baselines, soups=(), log=log, folds=folds, validation=data["validation"],
                        out_of_scope=data["out_of_scope"], keep=found, per_utterance=True,
                    )  # fmt: skip
                    selected_rows.append(scores.get("selected", {}))
                    for method, row in scores.items():
                        if method != "selected":
                            if suffix == tuned_suffix:
                                row["seconds"] += info["seconds"]
                                if not has_val:  # its encoder saw every fold's held-out examples: no fair score
                                    row.pop("validation_accuracy", None)
                            rows[method + suffix] = row
                    for method, predictor in found.items():
                        predictor.encoder = encoders[suffix]
                        predictor.meta["method"] = method + suffix
                        keep[method + suffix] = predictor
                scored = {m: r["validation_accuracy"] for m, r in rows.items() if "validation_accuracy" in r}
                if scored:  # the frozen encoder's methods come first: the simpler ones win ties within one SE
                    examples = next(r["validation_examples"] for r in selected_rows if "validation_examples" in r)
                    best = one_se_choice(scored, examples)
                    rows["selected"] = {**rows[best], "method": best}
                runs.setdefault(shots, {})[seed] = rows
                if shots == max(shots_list) and seed == 0 and "selected" in rows:
                    kept = keep[rows["selected"]["method"]]
        names = [
            m + suffix for suffix in [s for s, _ in variants] + ([tuned_suffix] if finetune else []) for m in methods
        ]
        result = {
            "train": str(train),
            "test": str(test) if test else None,
            "encoder": name,
            "init": str(init) if init else None,
            "finetune": finetune,
            "labels": dataset.num_classes,
            "rows": {s: len(dataset.indices(s)) for s in ("train", "val", "test")},
            "validation": "validation rows" if has_val else f"{folds}-fold over the K-shot set",
            "seeds": seeds,
            "embed_seconds": round(embed_seconds, 1),
            "results": summarise(runs, names),
        }
        if save_dir is not None and kept is not None:
            save_dir.mkdir(parents=True, exist_ok=True)
            if kept.encoder.startswith(str(scratch)):  # a SetFit encoder: kept beside the classifier
                moved = Path(tempfile.mkdtemp(dir=save_dir)) / "encoder"
                shutil.copytree(kept.encoder, moved)
                replace_folder(moved, save_dir / "encoder-setfit")
                shutil.rmtree(moved.parent)
                kept.encoder = str((save_dir / "encoder-setfit").resolve())
            kept.save(save_dir / CLASSIFIER)
            result["saved"] = {"path": str(save_dir / CLASSIFIER), "method": kept.method, "shots": max(shots_list)}
            with _atomic(save_dir / "results.json") as temporary:
                temporary.write_text(json.dumps(result, indent=1))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return result


@text.command("meta-train")
@click.option("--source", required=True, help="clinc150 (the cache, or --root), a CSV file or a DNNC folder.")
@click.option(
    "--root", type=click.Path(path_type=Path), help="clinc150: the folder with data_full.json and domains.json."
)
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), help="The run folder to write.")
@click.option("--text-column", default="text", show_default=True)
@click.option("--label-column", default="label", show_default=True)
@click.option("--encoder", default=None, help="The encoder to start from (default all-MiniLM-L6-v2).")
@click.option("--steps", type=click.IntRange(min=1), default=200, show_default=True)
@click.option("--ways", type=click.IntRange(min=2), default=20, show_default=True)
@click.option("--shots", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--queries", type=click.IntRange(min=1), default=2, show_default=True)
@click.option(
    "--layers", type=click.IntRange(min=1), default=2, show_default=True, help="Top transformer layers trained."
)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=2e-5, show_default=True)
@click.option(
    "--val-fraction",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.2,
    show_default=True,
    help="Source classes held out to choose the step.",
)
@click.option("--val-every", type=click.IntRange(min=1), default=25, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def meta_train(
    source: str,
    root: Path | None,
    out: Path,
    text_column: str,
    label_column: str,
    encoder: str | None,
    steps: int,
    ways: int,
    shots: int,
    queries: int,
    layers: int,
    lr: float,
    val_fraction: float,
    val_every: int,
    seed: int,
) -> None:
    """Meta-train the encoder's top layers as a Prototypical Network on a source dataset's intents (validated on
    held-out source intents, the best step kept) for `text fit --init OUT` on another dataset."""
    from .text import DEFAULT_ENCODER, load_clinc150
    from .text._finetune import protonet_encoder

    try:
        if source == "clinc150":
            dataset = load_clinc150(root, progress=False)
            texts, labels = list(dataset.texts), dataset.labels
        else:
            rows = read_examples(Path(source), text_column, label_column)
            names = sorted({y for _, y, _ in rows})
            ids = {n: i for i, n in enumerate(names)}
            texts, labels = [t for t, _, _ in rows], np.array([ids[y] for _, y, _ in rows], dtype=np.int64)
        record = protonet_encoder(
            encoder or DEFAULT_ENCODER, texts, labels, out / "encoder", val_fraction=val_fraction, ways=ways,
            shots=shots, queries=queries, steps=steps, layers=layers, lr=lr, val_every=val_every, seed=seed,
            log=lambda line: click.echo(line, err=True),
        )  # fmt: skip
    except (InputError, DataError, ValueError, MissingExtraError) as error:
        _fail(error)
    click.echo(
        f"meta-trained encoder written to {out / 'encoder'}: best step {record['best_step']} of {steps}, held-out "
        f"source intents {record['pretrained_val_accuracy']:.4f} -> {record['best_val_accuracy']:.4f} "
        f"({record['seconds']} s)"
    )


def read_texts(path: Path) -> list[str]:
    """The non-empty lines of a UTF-8 text file, one text each; an empty line in the middle is an error."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as error:
        raise InputError(f"{path} is not UTF-8 ({error}); save it as UTF-8") from None
    except OSError as error:
        raise InputError(f"cannot read {path}: {error}") from None
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise InputError(f"{path} has no texts; put one text per line")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            raise InputError(f"{path}, line {number}: empty text; put one text per line, no blank lines")
    return lines


@text.command("predict")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--texts", "texts_file", required=True, type=click.Path(path_type=Path), help="One text per line.")
@click.option("--top-k", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON list: per text its labels and probabilities.")
def predict(run_dir: Path, texts_file: Path, top_k: int, as_json: bool) -> None:
    """Label each line of --texts with the classifier `text fit --save RUN_DIR` wrote."""
    from .text import Predictor, encode_texts

    try:
        if not (run_dir / CLASSIFIER).is_file():
            raise InputError(f"{run_dir} holds no {CLASSIFIER}; `fastadapt text fit ... --save {run_dir}` writes one")
        predictor = Predictor.load(run_dir / CLASSIFIER)
        texts = read_texts(texts_file)
        ranked = predictor.predict(encode_texts(predictor.encoder, texts, progress=False), top_k)
    except (InputError, DataError, CheckpointError, MissingExtraError, ValueError, OSError) as error:
        _fail(error)
    if as_json:
        rows = [
            {"text": t, "labels": [{"label": n, "probability": p} for n, p in r]}
            for t, r in zip(texts, ranked, strict=True)
        ]
        click.echo(json.dumps(rows, indent=1))
        return
    for t, r in zip(texts, ranked, strict=True):
        click.echo("\t".join([*(f"{n}\t{p:.4f}" for n, p in r), t]))
