"""The text suite: few-shot intent classification over frozen sentence embeddings, with whole groups of intents
(CLINC150's domains, a CSV's ``group`` column) held out for testing."""

from __future__ import annotations

from pathlib import Path

from ..data import DataError
from ..tasks import TaskSource
from ..text import encode_texts, episodic_pool, heldout_classes, load_clinc150, load_dnnc_folder, load_text_csv
from ..training import Config, ConfigError, Suite, SuiteParts, build_model, episode_samplers


def build(config: Config) -> SuiteParts:
    """Held-out-group episodes over frozen text embeddings (cached; the first run embeds every text)."""
    data = config.data
    if config.model.name == "conv4":
        raise ConfigError(f"model.name=conv4 needs image data, but data.dataset={data.dataset!r}; use model.name=mlp")
    try:
        if data.dataset == "clinc150":
            dataset = load_clinc150(data.root, progress=False)
        elif data.root is None:
            raise ConfigError(
                "data.dataset=text needs data.root=PATH.csv (columns text, label; optional group, split) or a "
                "folder in the DNNC format (train/, valid/, test/ holding seq.in and label)"
            )
        elif Path(data.root).is_dir():
            parts = [
                (s, f)
                for s, f in (("train", "train"), ("val", "valid"), ("test", "test"))
                if (Path(data.root) / f).is_dir()
            ]
            if not parts or parts[0][0] != "train":
                raise ConfigError(
                    f"data.root={data.root} is a folder but has no train/ folder; the DNNC format has train/, "
                    "valid/ and test/, each holding seq.in and label (or give a CSV file)"
                )
            dataset = load_dnnc_folder(data.root, parts)
        else:
            dataset = load_text_csv(data.root, text_column=data.text_column, label_column=data.label_column)
        if not 0 < data.val_fraction < 1:
            raise ConfigError(f"data.val_fraction={data.val_fraction} must be in (0, 1)")
        embeddings = encode_texts(data.encoder, dataset.texts, progress=True)
        train, test, _ = heldout_classes(dataset, data.folds, data.fold, seed=data.split_seed)
        pool, split = episodic_pool(
            dataset, embeddings, train, test, val_fraction=data.val_fraction, seed=data.split_seed
        )
    except ConfigError:
        raise
    except (DataError, ValueError, ImportError) as error:
        raise ConfigError(f"data.dataset={data.dataset}: {error}") from None
    sources: dict[str, TaskSource] = episode_samplers(config, pool, split)
    model = build_model(config.model, tuple(pool.features.shape[1:]), config.task.ways)
    return SuiteParts(sources, model, loss="cross_entropy", ways=config.task.ways, context=dataset)


SUITE = Suite(
    "text",
    ("clinc150", "text"),
    build,
    description="few-shot intent classification on a frozen sentence encoder (CLINC150, or a CSV of text,label)",
)
