"""Configs: every shipped config loads and builds; bad keys and types fail with their names."""

from __future__ import annotations

from pathlib import Path

import pytest

from fastadapt.training import ConfigError, build_experiment, load_config, resolve_config, shipped_configs

#: Shipped configs whose data is not in ../shared/data: tests/test_lazy_datasets.py builds and runs them on generated
#: files in the published formats.
GENERATED = ("mnist_maml", "cifarfs_protonet_5w1s", "miniimagenet_protonet_5w1s", "miniimagenet_maml_5w1s")


@pytest.mark.parametrize("name", sorted(set(shipped_configs()) - set(GENERATED)))
def test_every_shipped_config_loads_and_builds(name: str, request: pytest.FixtureRequest) -> None:
    overrides = []
    if name.startswith("omniglot"):
        overrides = [f"data.root={request.getfixturevalue('decoded_omniglot')}"]
    if name.startswith("clinc150"):  # hashed n-grams: the sentence encoder is tested in test_text.py
        overrides = [f"data.root={request.getfixturevalue('clinc150_dir')}", "data.encoder=hashed-ngrams:256"]
    config = resolve_config(name, overrides)
    assert config.name == Path(name).name
    experiment = build_experiment(config)
    assert experiment.algorithm.name == config.algorithm.name
    assert set(experiment.sources) == {"train", "val", "test"}


def test_repository_configs_folder_is_the_shipped_one() -> None:
    repo = Path(__file__).parents[1] / "configs"
    found = [p.relative_to(repo).with_suffix("").as_posix() for p in repo.rglob("*.yaml")]
    assert sorted(found) == sorted(shipped_configs())


MINIMAL = "data: {dataset: digits}\nmodel: {name: conv4, pooled_blocks: 3}\nalgorithm: {name: maml}\n"


def test_unknown_key_is_named(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(f"{MINIMAL}training: {{iterations: 5, learning_rate: 0.1}}\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'training.learning_rate'; valid keys here: iterations"):
        load_config(path)


def test_unknown_section_is_named(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("optimiser: {lr: 0.1}\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'optimiser'"):
        load_config(path)


def test_wrong_type_is_named(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(f"{MINIMAL}training: {{}}\ntask: {{ways: five}}\n")
    with pytest.raises(ConfigError, match=r"task.ways must be of type int, got 'five' \(str\)"):
        load_config(path)


def test_overrides_apply_and_are_typed(tmp_path: Path) -> None:
    config = resolve_config("digits_maml", ["training.iterations=7", "algorithm.inner_lr=0.1", "task.shots=5"])
    assert (config.training.iterations, config.algorithm.inner_lr, config.task.shots) == (7, 0.1, 5)
    with pytest.raises(ConfigError, match=r"training.iterations must be of type int, got 1.5"):
        resolve_config("digits_maml", ["training.iterations=1.5"])
    with pytest.raises(ConfigError, match=r"override 'iterations' is not of the form section.key=value"):
        resolve_config("digits_maml", ["iterations"])


def test_unknown_config_name_lists_shipped() -> None:
    with pytest.raises(
        ConfigError,
        match=r"config .nope. is neither a file nor a shipped config; shipped: cifarfs_protonet_5w1s, clinc150_anil",
    ):
        resolve_config("nope")


def test_bad_choices_fail_with_the_fix() -> None:
    with pytest.raises(ConfigError, match=r"unknown algorithm 'mamll'; choose one of \['anil', 'fomaml'"):
        build_experiment(resolve_config("digits_maml", ["algorithm.name=mamll"]))
    with pytest.raises(ConfigError, match=r"model.name=conv4 needs image data, but data.dataset='sinusoid'"):
        build_experiment(resolve_config("sinusoid_maml", ["model.name=conv4"]))
    with pytest.raises(ConfigError, match=r"digits train split: ways=5 but this split has only 4 classes"):
        build_experiment(resolve_config("digits_protonet", ["task.ways=5", "data.train_rotations=[]"]))


def test_missing_omniglot_names_the_fix() -> None:  # the data cache is an empty temporary folder
    message = r"data.dataset=omniglot: images_background.zip is missing: .* run `fastadapt data download omniglot`"
    with pytest.raises(ConfigError, match=message):
        build_experiment(resolve_config("omniglot_protonet_5w1s"))
