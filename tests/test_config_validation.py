"""Every bad config ends in exit code 2 and one line naming the key, the value and the fix; never a traceback
(a table of cases, then Hypothesis over random keys, values and mangled YAML)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastadapt.cli import main
from fastadapt.training import shipped_configs

DIGITS = shipped_configs()["digits_maml"]

OVERRIDES = [
    ("training.outer_lr=-1", r"training.outer_lr=-1.0 must be a finite number > 0"),
    ("training.outer_lr=0", r"training.outer_lr=0.0 must be a finite number > 0"),
    ("algorithm.inner_lr=-1", r"algorithm.inner_lr=-1.0 must be a finite number > 0"),
    ("algorithm.inner_lr=nan", r"algorithm.inner_lr=nan must be a finite number > 0"),
    ("algorithm.inner_lr=.inf", r"algorithm.inner_lr=inf must be a finite number > 0"),
    ("training.pretrain_lr=-0.1", r"training.pretrain_lr=-0.1 must be a finite number > 0"),
    ("task.ways=1", r"task.ways=1 must be >= 2"),
    ("task.shots=0", r"task.shots=0 must be >= 1"),
    ("task.queries=0", r"task.queries=0 must be >= 1"),
    ("training.meta_batch_size=0", r"training.meta_batch_size=0 must be >= 1"),
    ("training.iterations=-5", r"training.iterations=-5 must be >= 0"),
    ("training.patience=0", r"training.patience=0 must be >= 1"),
    ("training.threads=0", r"training.threads=0 must be >= 1"),
    ("evaluation.episodes=0", r"evaluation.episodes=0 must be >= 1"),
    ("data.val_fraction=1.5", r"data.val_fraction=1.5 must be in \(0, 1\)"),
    ("model.drop_rate=1", r"model.drop_rate=1.0 must be in \[0, 1\)"),
    ("data.fold=3", r"data.fold=3 must be < data.folds=3 \(folds are 0..2\)"),
    ("model.pooled_blocks=4", r"model.pooled_blocks=4 is too many for the 8x8 images of digits: .* 4 need 16 pixels"),
    (
        "data.class_fractions=[0.5,0.5,0.5]",
        r"data.class_fractions=\[0.5, 0.5, 0.5\] must be three shares .* summing to 1",
    ),
    ("model.channels=[8,8]", r"model.channels=\(8, 8\) must be one width or four \(one per block\), got 2"),
    ("model.widths=[16,0]", r"model.widths=\(16, 0\) has 0, which must be >= 1"),
    ("task.ways=five", r"task.ways must be of type int, got 'five' \(str\)"),
    ("training.optimizer=rmsprop", r"training.optimizer must be one of 'adam', 'sgd'; got 'rmsprop'"),
    ("training.learning_rate=0.1", r"unknown config key 'training.learning_rate'; valid keys here: iterations"),
    ("training.iterations", r"override 'training.iterations' is not of the form section.key=value"),
    ("training.iterations=[1", r"override 'training.iterations=\[1': its value is .* \(YAML syntax\); quote it"),
]


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["validate", *args])
    return result.exit_code, result.output


@pytest.mark.parametrize(("override", "message"), OVERRIDES, ids=[o for o, _ in OVERRIDES])
def test_bad_override_is_one_line_naming_the_key(override: str, message: str) -> None:
    code, output = run("digits_maml", override)
    assert code == 2, output
    assert output.startswith("error: ") and len(output.strip().splitlines()) == 1, output
    assert re.search(message, output), output


FILES = [
    (
        "name: x\ndata: {dataset: digits\nmodel: {name: conv4}\n",
        r"c.yaml:3:6: expected ',' or '}', but got ':' \(YAML syntax\)",
    ),
    ("", r"c.yaml is empty; a config needs the sections data, model, algorithm, training"),
    ("# only a comment\n", r"c.yaml is empty"),
    ("- data\n- model\n", r"c.yaml must hold a mapping of config sections, not list"),
    (
        "data: {dataset: digits}\nmodel: {name: conv4}\n",
        r"c.yaml: no 'algorithm', 'training' section; a config file needs",
    ),
    ("optimiser: {lr: 0.1}\n", r"c.yaml: unknown config key 'optimiser'; valid keys here: name, data"),
    ("data: \xff\n", r"c.yaml is not UTF-8 text"),
]


@pytest.mark.parametrize(
    ("text", "message"), FILES, ids=["cut-line", "empty", "comment", "list", "partial", "unknown", "latin1"]
)
def test_bad_file_is_one_line_naming_the_file(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(text.encode("latin-1"))
    code, output = run(str(path))
    assert code == 2, output
    assert len(output.strip().splitlines()) == 1 and re.search(message, output), output


def test_shipped_configs_are_valid() -> None:
    for name in shipped_configs():
        code, output = run(name)
        assert code == 0, output


KEYS = [
    "data.dataset", "data.image_size", "data.folds", "data.fold", "data.val_fraction", "data.class_fractions",
    "task.ways", "task.shots", "task.queries", "task.train_ways", "model.name", "model.widths", "model.channels",
    "model.pooled_blocks", "model.drop_rate", "algorithm.name", "algorithm.inner_lr", "algorithm.inner_steps",
    "algorithm.first_order", "training.iterations", "training.outer_lr", "training.patience", "training.optimizer",
    "training.schedule", "training.threads", "evaluation.episodes", "evaluation.split", "stream.rounds", "recsys.users",
]  # fmt: skip
VALUES = st.one_of(
    st.integers(-3, 1000).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["nan", ".nan", "-.inf", "inf", "null", "~", "true", "[]", "[1, 2]", "{}", "{a: 1}", "'x'", "[1"]),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12),
)
# A fresh CliRunner and config load per example takes milliseconds; no deadline on a loaded 2-core machine.
PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@PROPERTY
@given(st.lists(st.tuples(st.one_of(st.sampled_from(KEYS), st.text(max_size=15)), VALUES), min_size=1, max_size=3))
def test_random_overrides_never_end_in_a_traceback(pairs: list[tuple[str, str]]) -> None:
    code, output = run("digits_maml", *[f"{key}={value}" for key, value in pairs])
    assert code in (0, 2), output
    if code == 2 and any(
        key.startswith("-") for key, _ in pairs
    ):  # "-x=1" is an option to click: its usage error names it
        assert "Error: No such option" in output and "Traceback" not in output
    elif code == 2:
        assert output.startswith("error: ") and "Traceback" not in output


@PROPERTY
@given(st.integers(0, len(DIGITS.read_text())), st.integers(0, 3), st.text(max_size=3))
def test_cut_and_mangled_yaml_never_ends_in_a_traceback(tmp_path: Path, cut: int, drop: int, junk: str) -> None:
    text = DIGITS.read_text()
    path = tmp_path / "c.yaml"
    path.write_text(text[:cut] + junk + text[cut + drop : cut + drop + 40 * drop], encoding="utf-8")
    code, output = run(str(path))
    assert code in (0, 2), output
    if code == 2:
        assert output.startswith("error: ") and len(output.strip().splitlines()) == 1, output


def test_numbers_that_yaml_reads_as_strings_are_numbers() -> None:
    from fastadapt.training import resolve_config

    config = resolve_config("digits_maml", ["training.outer_lr=1e-3", "algorithm.inner_lr=5E-1"])
    assert (config.training.outer_lr, config.algorithm.inner_lr) == (0.001, 0.5)
    code, output = run("digits_maml", "training.outer_lr=1e-3x")
    assert code == 2 and "training.outer_lr must be of type float, got '1e-3x' (str)" in output


def test_deterministic_runs_agree_bit_for_bit_whatever_the_thread_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    from fastadapt.training import Trainer, build_experiment, load_checkpoint, resolve_config

    overrides = ["training.iterations=4", "training.val_every=0", "training.deterministic=true"]
    weights = []
    before = torch.get_num_threads()
    try:
        for threads in ("1", "2"):
            monkeypatch.setenv("FASTADAPT_THREADS", threads)
            out = tmp_path / threads
            Trainer(build_experiment(resolve_config("digits_protonet", overrides)), out, progress=False).run()
            assert torch.get_num_threads() == 1 and torch.are_deterministic_algorithms_enabled()
            weights.append(load_checkpoint(out / "checkpoints" / "last.safetensors")[0])
    finally:
        torch.use_deterministic_algorithms(False)
        torch.set_num_threads(before)
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0] if k.startswith("params/"))
    code, output = run("digits_protonet", "training.deterministic=true", "training.threads=2")
    assert code == 2 and "training.deterministic=true pins one torch thread" in output


def test_the_json_schema_accepts_every_shipped_config_and_refuses_the_bad_overrides(tmp_path: Path) -> None:
    import json

    import jsonschema
    import yaml

    from fastadapt.training._config import apply_overrides

    out = tmp_path / "fastadapt.schema.json"
    result = CliRunner().invoke(main, ["config", "schema", "--out", str(out)])
    assert result.exit_code == 0, result.output
    schema = json.loads(out.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    validator.check_schema(schema)
    for name, path in shipped_configs().items():
        errors = [e.message for e in validator.iter_errors(yaml.safe_load(path.read_text()))]
        assert not errors, (name, errors)
    base = yaml.safe_load(DIGITS.read_text())
    # the range rules (a non-finite number is the loader's to refuse: JSON has none), types, enums, unknown keys
    ranges = [o for o, m in OVERRIDES if re.search(r"must be (>=|a finite|in)", m) and not re.search("nan|inf", o)]
    assert len(ranges) >= 12
    for override in [
        *ranges,
        "training.optimizer=rmsprop",
        "training.iterationz=3",
        "task.ways=2.5",
        "model.channels=[8,8]",
    ]:
        values = apply_overrides(json.loads(json.dumps(base)), [override])
        assert list(validator.iter_errors(values)), f"the schema accepts {override}"
    four_widths = apply_overrides(json.loads(json.dumps(base)), ["model.channels=[8, 8, 16, 16]"])
    assert not list(validator.iter_errors(four_widths))
