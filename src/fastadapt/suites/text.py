"""The text suite: few-shot intent classification over frozen sentence embeddings, with whole groups of intents
(CLINC150's domains, a CSV's ``group`` column) held out for testing."""

from __future__ import annotations

from ..data import DataError
from ..tasks import TaskSource
from ..text import encode_texts, episodic_pool, heldout_classes, load_clinc150, load_text_csv
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
            raise ConfigError("data.dataset=text needs data.root=PATH.csv (columns text, label; optional group, split)")
        else:
            dataset = load_text_csv(data.root)
        embeddings = encode_texts(data.encoder, dataset.texts, progress=True)
        train, test, _ = heldout_classes(dataset, data.folds, data.fold, seed=data.split_seed)
        pool, split = episodic_pool(dataset, embeddings, train, test, seed=data.split_seed)
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
