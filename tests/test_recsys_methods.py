"""MeLU network, users as tasks, the baselines, and a short end-to-end cold-start run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from fastadapt.algorithms import build_algorithm, meta_gradient
from fastadapt.cli import main
from fastadapt.models import FeatureEmbedding, MeLU
from fastadapt.recsys import (
    ITEM_ID_COLUMN,
    MatrixFactorisation,
    Popularity,
    RecsysConfig,
    UserTask,
    UserTasks,
    feature_layout,
    load_recsys_data,
    pair_features,
    pretrain,
    user_task,
)

SMALL = RecsysConfig(synthetic_users=200, synthetic_items=300, seed=3)


@pytest.fixture(scope="module")
def recsys() -> object:
    return load_recsys_data(SMALL, None)


def test_feature_embedding_averages_the_genre_embeddings() -> None:
    torch.manual_seed(0)
    embed = FeatureEmbedding([3, 4], multi_hot=5, dim=2)
    x = torch.tensor([[2.0, 1.0, 1, 0, 1, 0, 0], [0.0, 3.0, 0, 0, 0, 0, 0]])
    out = embed(x)  # (2, 3 * 2)
    assert out.shape == (2, 6)
    torch.testing.assert_close(out[0, :2], embed.tables[0].weight[2])
    torch.testing.assert_close(out[1, 2:4], embed.tables[1].weight[3])
    w = embed.multi_hot.weight  # type: ignore[union-attr]  # (dim, 5)
    torch.testing.assert_close(out[0, 4:], (w[:, 0] + w[:, 2]) / 2)
    torch.testing.assert_close(out[1, 4:], torch.zeros(2))  # no genre: zero, not NaN


def test_pair_features_and_melu_shapes(recsys: object) -> None:
    data = recsys.data  # type: ignore[attr-defined]
    categories, genres = feature_layout(data)
    x = pair_features(data, np.array([0, 1, 2]), np.array([5, 6, 7]))
    assert x.shape == (3, len(categories) + genres)
    for column, size in enumerate(categories):
        assert 0 <= x[:, column].min() and x[:, column].max() < size
    model = MeLU(categories, genres)
    assert model(x).shape == (3, 1)


def test_user_batches_have_one_support_size_drawn_from_each_user(recsys: object) -> None:
    data, split = recsys.data, recsys.split  # type: ignore[attr-defined]
    source = UserTasks(data, split.tasks["train"])
    batch = source.sample_batch(8, torch.Generator().manual_seed(0))
    assert batch.support_x.shape[:2] == batch.support_y.shape[:2] and batch.query_y.shape[1:] == (10, 1)
    sizes = sorted(len(t.support_items) for t in split.tasks["train"])
    assert batch.support_x.shape[1] in sizes
    with pytest.raises(ValueError, match="meta-batch size must be between 1 and the"):
        source.sample_batch(len(source) + 1, torch.Generator())


def test_local_update_lowers_new_users_query_loss(recsys: object) -> None:
    """MeLU's local update (five steps on the decision layers, on a user's support ratings) lowers the
    mean squared error on the same users' held-out query ratings, here from a pretrained model."""
    data, split = recsys.data, recsys.split  # type: ignore[attr-defined]
    torch.manual_seed(0)
    model = MeLU(*feature_layout(data), rating_offset=float(data.rating.mean()), zero=(ITEM_ID_COLUMN,))
    params = pretrain(model, data, split.tasks["train"], epochs=5)
    melu = build_algorithm("anil", model, loss="mse", inner_lr=0.005, inner_steps=5)
    losses: dict[int | None, list[float]] = {0: [], None: []}
    for task in split.tasks["user_cold"][:40]:
        t = user_task(data, task)
        for steps, values in losses.items():
            state = melu.adapt(params, t.support_x, t.support_y, steps)
            with torch.no_grad():
                values.append(float(melu.loss(melu.predict(params, state, t.query_x), t.query_y)))
    before, after = np.mean(losses[0]), np.mean(losses[None])
    assert after < 0.9 * before, (before, after)


def test_vmap_and_loop_meta_gradients_agree(recsys: object) -> None:
    data, split = recsys.data, recsys.split  # type: ignore[attr-defined]
    torch.manual_seed(0)
    model = MeLU(*feature_layout(data)).double()
    melu = build_algorithm("anil", model, loss="mse", inner_lr=0.05, inner_steps=2)
    batch = UserTasks(data, split.tasks["train"]).sample_batch(4, torch.Generator().manual_seed(1))
    batch = type(batch)(*(t.double() if t.is_floating_point() else t for t in batch.tensors()))
    params = {k: v.requires_grad_() for k, v in melu.init_params().items()}
    loop, _ = meta_gradient(melu, params, batch, "loop")
    vmapped, _ = meta_gradient(melu, params, batch, "vmap")
    for name in loop:
        torch.testing.assert_close(vmapped[name], loop[name])


def _tasks(users: list[int], items: list[list[int]], ratings: list[list[float]]) -> list[UserTask]:
    return [
        UserTask(
            u,
            np.array(i[:-1]),
            np.array(r[:-1], dtype=np.float32),
            np.array(i[-1:]),
            np.array(r[-1:], dtype=np.float32),
        )
        for u, i, r in zip(users, items, ratings, strict=True)
    ]


def test_popularity_counts_and_shrunk_means(recsys: object) -> None:
    data = recsys.data  # type: ignore[attr-defined]
    tasks = _tasks([0, 1], [[0, 1, 2], [0, 2]], [[5, 3, 1], [4, 2]])
    pop = Popularity.fit(data, tasks, shrinkage=1.0)
    mean = 3.0  # (5 + 3 + 1 + 4 + 2) / 5
    ratings, scores = pop.score(0, np.array([]), np.array([]), np.array([0, 1, 2, 3]))
    np.testing.assert_allclose(scores, [2, 1, 2, 0])
    np.testing.assert_allclose(ratings, [(9 + mean) / 3, (3 + mean) / 2, (3 + mean) / 3, mean])


def test_matrix_factorisation_fits_a_new_user_from_the_support(recsys: object) -> None:
    """On ratings that follow ``mu + b_u + b_i`` exactly, the fitted item biases and a new user's fitted
    bias reproduce held-out ratings (up to the ridge shrinkage)."""
    data = recsys.data  # type: ignore[attr-defined]
    rng = np.random.default_rng(0)
    item_bias = rng.normal(0, 1, 40)
    user_bias = rng.normal(0, 0.5, 30)
    tasks = []
    for u in range(30):
        items = rng.choice(40, 25, replace=False)
        ratings = (3.0 + user_bias[u] + item_bias[items]).astype(np.float32)
        tasks.append(UserTask(u, items[:20], ratings[:20], items[20:], ratings[20:]))
    mf = MatrixFactorisation.fit(data, tasks, dim=2, reg=0.01, sweeps=20)
    new_items = np.arange(40)
    support = rng.choice(40, 20, replace=False)
    truth = 3.0 + 0.7 + item_bias
    predicted, _ = mf.score(999, support, truth[support].astype(np.float32), new_items)
    assert np.abs(predicted - np.clip(truth, 1, 5)).max() < 0.1  # predictions stay on the rating scale


def test_cli_trains_and_reports_every_state_and_baseline(tmp_path: Path) -> None:
    """A short MeLU run on synthetic data, evaluated with all baselines: on user-cold MAE the local update
    beats the same model without it (in mean; the results page has the full-size runs and where MeLU loses)."""
    run_dir = tmp_path / "run"
    overrides = [
        "recsys.synthetic_users=300",
        "recsys.synthetic_items=400",
        "recsys.eval_users=60",
        "recsys.pretrain_epochs=3",
        "training.iterations=150",
        "training.val_every=0",
        "training.checkpoint_every=150",
    ]
    runner = CliRunner()
    result = runner.invoke(main, ["train", "movielens/melu1", *overrides, "--run-dir", str(run_dir), "--no-progress"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["eval", str(run_dir), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report["states"]) == {"warm", "user_cold", "item_cold", "user_item_cold"}
    methods = report["states"]["user_cold"]["methods"]
    assert set(methods) == {"melu1", "melu1-0", "global", "fine-tune", "mf", "bias", "popularity"}
    metrics = methods["melu1"]
    for name in ("mae", "rmse", "ndcg@1", "ndcg@3", "ndcg@5", "top_precision@20", "top_recall@20", "top_f1@20"):
        assert metrics[name]["n"] > 0 and metrics[name]["mean"] is not None
    mae = {m: v["mae"] for m, v in methods.items()}
    assert mae["melu1"]["mean"] < mae["melu1-0"]["mean"]
    # Every method against the best baseline on the validation users, user by user.
    reference = report["reference"]
    tuning = report["tuning"]
    assert reference == min(("global", "fine-tune", "mf", "bias", "popularity"), key=lambda m: tuning[m]["val_mae"])
    assert report["states"]["user_cold"]["reference"] == reference
    paired = report["states"]["user_cold"]["paired"]["mae"]["melu1"]  # same users: a paired comparison
    assert paired["n"] == mae["melu1"]["n"]
    assert paired["difference"] == pytest.approx(mae["melu1"]["mean"] - mae[reference]["mean"])
    assert paired["ci_low"] < paired["difference"] < paired["ci_high"] and 0 <= paired["t_p_value"] <= 1
    assert tuning["mf"]["chosen"] in [{k: v for k, v in g.items() if k != "val_mae"} for g in tuning["mf"]["grid"]]
    # The support-size curves: the same users at every size, MAE falling from 1 to 20 ratings for MeLU.
    curve = report["curves"]["user_cold"]
    assert list(curve["caps"]) == ["1", "3", "5", "10", "20"]
    assert {curve["caps"][c]["methods"]["melu1"]["mae"]["n"] for c in curve["caps"]} == {curve["users"]}
    assert (
        curve["caps"]["20"]["methods"]["melu1"]["mae"]["mean"] < curve["caps"]["1"]["methods"]["melu1"]["mae"]["mean"]
    )

    result = runner.invoke(main, ["eval", str(run_dir), "--support-cap", "1", "--json"])
    assert result.exit_code == 0, result.output
    capped = json.loads(result.stdout)
    assert capped["support_cap"] == 1 and (run_dir / "eval" / "recsys_summary_cap1.json").is_file()
    one = capped["states"]["user_cold"]["methods"]
    assert one["popularity"]["mae"] == methods["popularity"]["mae"]  # same users, queries and training data
    assert one["melu1"]["mae"]["mean"] > mae["melu1"]["mean"]  # one rating tells less than all of them

    # The cold-start use case: a new user's few ratings in, the top unseen items out.
    data = load_recsys_data(RecsysConfig(synthetic_users=300, synthetic_items=400), None).data
    rated = [int(i) for i in data.item_ids[:3]]
    lines = "".join(f"{i},{r}\n" for i, r in zip(rated, (5, 1, 4), strict=True))
    (tmp_path / "me.csv").write_text("item_id,rating\n" + lines)
    args = ["recommend", str(run_dir), "--ratings", str(tmp_path / "me.csv"), "--top", "7", "--gender", "F", "--json"]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    top = json.loads(result.stdout)
    assert len(top) == 7 and not {r["item_id"] for r in top} & set(rated)
    scores = [r["predicted_rating"] for r in top]
    assert scores == sorted(scores, reverse=True) and all(r["title"] for r in top)

    (tmp_path / "bad.csv").write_text("999999,4\n")
    result = runner.invoke(main, ["recommend", str(run_dir), "--ratings", str(tmp_path / "bad.csv")])
    assert result.exit_code == 2
    assert "line 1: item id 999999 is not in ml-1m's items" in result.stderr
