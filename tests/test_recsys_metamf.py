"""Meta-learned MF (algorithm ridge over MetaMF), bounded outputs, the bias baseline, early stopping on the
validation users, and the online user state of `fastadapt recommend`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from fastadapt.algorithms import Ridge, meta_gradient
from fastadapt.cli import main
from fastadapt.evaluation import evaluate
from fastadapt.evaluation._episodic import score_task
from fastadapt.models import MeLU
from fastadapt.recsys import (
    Biases,
    MatrixFactorisation,
    OnlineUser,
    RecsysConfig,
    RecsysData,
    UserTask,
    UserTasks,
    alternating_least_squares,
    build_metamf,
    feature_layout,
    load_recsys_data,
    pair_features,
)
from fastadapt.training import load_run, read_metrics


@pytest.fixture(scope="module")
def recsys() -> RecsysData:
    return load_recsys_data(RecsysConfig(synthetic_users=600, synthetic_items=600), None)


def test_zero_prior_metamf_is_exactly_the_mf_fold_in(recsys: RecsysData) -> None:
    """With a zero prior, precision ``reg`` and the item sides of ALS, the ridge fold-in of MetaMF is the MF
    baseline's: the learned prior and precision are what meta-training adds."""
    data, train = recsys.data, recsys.split.tasks["train"]
    model = build_metamf(data, train, dim=4, reg=3.0, support_only=False).double()
    factors = alternating_least_squares(data, train, 4, 3.0)
    with torch.no_grad():
        model.item_side.copy_(torch.from_numpy(factors.item_side))
        model.item_map.weight.zero_()
        model.item_map.bias.zero_()
        model.prior_base.zero_()
        model.log_precision.fill_(float(np.log(3.0)))
        for table in model.prior_tables:
            table.weight.zero_()  # type: ignore[operator]
    mf = MatrixFactorisation.fit(data, train, dim=4, reg=3.0)
    ridge = Ridge(model)
    params = {k: v for k, v in model.named_parameters()}
    for task in recsys.split.tasks["user_cold"][:10]:
        sx = pair_features(data, np.full(len(task.support_items), task.user), task.support_items).double()
        qx = pair_features(data, np.full(len(task.query_items), task.user), task.query_items).double()
        sy = torch.from_numpy(task.support_ratings.astype(np.float64)).unsqueeze(1)
        with torch.no_grad():
            predicted = ridge.predict(params, ridge.adapt(params, sx, sy), qx).squeeze(1).numpy()
        expected, _ = mf.score(task.user, task.support_items, task.support_ratings, task.query_items)
        np.testing.assert_allclose(predicted, expected, atol=1e-9)


def test_ridge_meta_gradient_matches_finite_differences_loop_and_vmap(recsys: RecsysData) -> None:
    data, split = recsys.data, recsys.split
    model = build_metamf(data, split.tasks["train"], dim=3).double()
    ridge = Ridge(model)
    batch = UserTasks(data, split.tasks["train"]).sample_batch(4, torch.Generator().manual_seed(1))
    batch = type(batch)(*(t.double() if t.is_floating_point() else t for t in batch.tensors()))
    params = {k: v.detach().clone().requires_grad_() for k, v in ridge.init_params().items()}
    loop, _ = meta_gradient(ridge, params, batch, "loop")
    vmapped, _ = meta_gradient(ridge, params, batch, "vmap")
    for name in loop:
        torch.testing.assert_close(vmapped[name], loop[name])

    def objective(values: dict[str, torch.Tensor]) -> float:
        total = sum(float(ridge.objective(values, *task)[0]) for task in zip(*batch.tensors(), strict=True))
        return total / len(batch.support_x)

    eps = 1e-6
    item = int(batch.query_x[0, 0, 5])  # an item of a query set: its factors move the objective
    for name, index in (("log_precision", (0,)), ("log_precision", (2,)), ("item_side", (item, 1)), ("mu", ())):
        shifted = [{k: v.detach().clone() for k, v in params.items()} for _ in range(2)]
        shifted[0][name][index] += eps
        shifted[1][name][index] -= eps
        numeric = (objective(shifted[0]) - objective(shifted[1])) / (2 * eps)
        assert float(loop[name][index]) == pytest.approx(numeric, rel=1e-5, abs=1e-8), name


def test_every_prediction_lies_on_the_rating_scale(recsys: RecsysData) -> None:
    data, train = recsys.data, recsys.split.tasks["train"]
    x = pair_features(data, np.arange(50) % data.n_users, np.arange(50))
    melu = MeLU(*feature_layout(data), rating_offset=3.5, rating_range=(1.0, 5.0))
    with torch.no_grad():
        for p in melu.head.parameters():
            p.mul_(1000.0)  # wild weights: the output still cannot leave (1, 5)
        out = melu(x)
    assert out.min() >= 1.0 and out.max() <= 5.0 and out.std() > 0
    with pytest.raises(ValueError, match=r"rating_offset=6.0 must lie inside rating_range=\(1.0, 5.0\)"):
        MeLU(*feature_layout(data), rating_offset=6.0, rating_range=(1.0, 5.0))
    model = build_metamf(data, train, dim=4)
    wild = torch.full((5,), 100.0)
    assert set(model(x, theta=wild).unique().tolist()) == {5.0}
    assert set(model(x, theta=-wild).unique().tolist()) == {1.0}
    extreme = UserTask(0, np.arange(5), np.full(5, 5.0, dtype=np.float32), np.arange(5, 10), np.ones(5, np.float32))
    for method in (MatrixFactorisation.fit(data, train, dim=4, reg=0.01), Biases.fit(data, train, 0.0, 0.0)):
        predicted, _ = method.score(0, extreme.support_items, extreme.support_ratings, np.arange(data.n_items))
        assert predicted.min() >= 1.0 and predicted.max() <= 5.0


def test_bias_model_recovers_item_and_user_biases(recsys: RecsysData) -> None:
    rng = np.random.default_rng(0)
    item_bias, user_bias = rng.normal(0, 0.6, 40), rng.normal(0, 0.4, 30)
    tasks = []
    for u in range(30):
        items = rng.choice(40, 30, replace=False)
        ratings = (3.0 + user_bias[u] + item_bias[items]).astype(np.float32)
        tasks.append(UserTask(u, items[:25], ratings[:25], items[25:], ratings[25:]))
    biases = Biases.fit(recsys.data, tasks, item_reg=0.0, user_reg=0.0)
    support = rng.choice(40, 20, replace=False)
    truth = 3.0 + 0.5 + item_bias  # a new user 0.5 above the mean user
    predicted, _ = biases.score(999, support, truth[support].astype(np.float32), np.arange(40))
    # mu and the item biases absorb the training users' mean bias: compare deviations from the mean prediction
    np.testing.assert_allclose(predicted - predicted.mean(), truth - truth.mean(), atol=0.05)
    assert abs(predicted.mean() - truth.mean()) < 0.05


def test_online_user_updates_incrementally_and_gets_better_as_ratings_arrive(
    recsys: RecsysData, tmp_path: Path
) -> None:
    """One rating at a time: the incremental state is the batch fold-in on the ratings so far, a changed rating
    replaces the old one, the state survives a save and load, and the query MAE falls as ratings arrive."""
    data, split = recsys.data, recsys.split
    model = build_metamf(data, split.tasks["train"], dim=8).double()
    ridge = Ridge(model)
    params = {k: v.detach() for k, v in model.named_parameters()}
    users = [t for state in ("user_cold", "val") for t in split.tasks[state] if len(t.support_items) >= 20]
    assert len(users) >= 20
    errors = np.zeros((len(users), 21))
    for row, task in enumerate(users):
        features = pair_features(data, np.array([task.user]), np.array([0]))[0, :4].numpy().astype(np.int64)
        online = OnlineUser(ridge, params, data, features)
        errors[row, 0] = np.abs(online.predict(task.query_items) - task.query_ratings).mean()
        for k in range(20):
            online.rate(int(task.support_items[k]), float(task.support_ratings[k]))
            errors[row, k + 1] = np.abs(online.predict(task.query_items) - task.query_ratings).mean()
        sx = pair_features(data, np.full(20, task.user), task.support_items[:20]).double()
        sy = torch.from_numpy(task.support_ratings[:20].astype(np.float64)).unsqueeze(1)
        batch = ridge.adapt(params, sx, sy)["theta"]
        torch.testing.assert_close(online.theta, batch)
    mean = errors.mean(0)
    assert mean[20] < mean[10] < mean[3] < mean[0]

    task = users[0]
    online = OnlineUser(ridge, params, data, np.zeros(4, dtype=np.int64), {int(task.support_items[0]): 1.0})
    online.rate(int(task.support_items[0]), 5.0)  # changed its mind
    direct = OnlineUser(ridge, params, data, np.zeros(4, dtype=np.int64), {int(task.support_items[0]): 5.0})
    torch.testing.assert_close(online.theta, direct.theta)
    online.save(tmp_path / "user.json")
    again = OnlineUser.open(tmp_path / "user.json", ridge, params, data, None, np.ones(4, dtype=np.int64))
    assert again.ratings == online.ratings and again.user.tolist() == [0, 0, 0, 0]
    torch.testing.assert_close(again.theta, online.theta)
    for bad, message in (
        ({"user": [0, 0, 0], "ratings": {}}, "'user' must be 4 category numbers"),
        ({"user": [0, 0, 0, 99], "ratings": {}}, "is outside ml-1m's categories"),
        ({"user": [0, 0, 0, 0], "ratings": {"999999": 4}}, "item id '999999' is not in ml-1m's items"),
        ({"user": [0, 0, 0, 0], "ratings": []}, "not a saved user state"),
    ):
        with pytest.raises(ValueError, match=re.escape(message)):
            OnlineUser.load(bad, ridge, params, data)
    with pytest.raises(ValueError, match=r"rating 7.0 of item \d+ is outside 1-5"):
        online.rate(0, 7.0)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match=r"bad\.json is not a saved user state"):
        OnlineUser.open(tmp_path / "bad.json", ridge, params, data, None, np.zeros(4, dtype=np.int64))


SMALL = ["recsys.synthetic_users=300", "recsys.synthetic_items=400", "recsys.eval_users=40"]


def test_early_stopping_keeps_the_best_validation_step(tmp_path: Path) -> None:
    """With a learning rate of 1e-30 (float32 weights do not move) nothing improves after the first validation:
    training stops after
    ``patience`` more, the best checkpoint is the first one, and the metrics file says so."""
    run = tmp_path / "stuck"
    args = ["train", "movielens/metamf", *SMALL, "training.outer_lr=1e-30", "training.iterations=500"]
    args += ["training.val_every=5", "training.patience=3", "--run-dir", str(run), "--no-progress"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    rows = read_metrics(run)
    stop = [r for r in rows if r["split"] == "early_stop"]
    assert stop == [{"split": "early_stop", "step": 20, "best_step": 5, "patience": 3}]
    assert max(r["step"] for r in rows) == 20 and (run / "checkpoints" / "best.safetensors").is_file()
    bad = CliRunner().invoke(main, [*args[:-3], "training.patience=0", "--run-dir", str(tmp_path / "x")])
    assert bad.exit_code != 0 and "training.patience=0 must be >= 1" in bad.output
    # Resuming a stopped run does nothing and says so; with more patience it trains on, and the old stop goes.
    again = CliRunner().invoke(main, [*args, "--resume"])
    assert again.exit_code == 0 and "stopped early at step 20 (best step 5): nothing to resume" in again.stderr
    more = CliRunner().invoke(
        main, [*args[:-3], "training.patience=5", "--run-dir", str(run), "--no-progress", "--resume"]
    )
    assert more.exit_code == 0, more.output
    rows = read_metrics(run)
    assert [r["step"] for r in rows if r["split"] == "early_stop"] == [30]
    # A run written before the validation users split the users otherwise: refused, not re-read.
    config = run / "config.yaml"
    config.write_text(config.read_text().replace("  val_user_fraction: 0.1\n", ""))
    old = CliRunner().invoke(main, ["eval", str(run)])
    assert old.exit_code != 0 and "its config has no recsys.val_user_fraction" in old.output
    assert "train it again" in old.output


def test_metamf_meta_training_improves_on_its_validation_users_and_recommends_online(tmp_path: Path) -> None:
    run = tmp_path / "metamf"
    args = ["train", "movielens/metamf", *SMALL, "training.iterations=150", "training.val_every=10"]
    args += ["recsys.tune_baselines=false"]  # the grids are the other test's
    result = CliRunner().invoke(main, [*args, "--run-dir", str(run), "--no-progress"])
    assert result.exit_code == 0, result.output
    val = {r["step"]: r["mae"] for r in read_metrics(run) if r["split"] == "val"}  # trains and selects on MAE
    experiment, params, _ = load_run(run)  # the best checkpoint: the validation step with the lowest MAE
    again = evaluate(experiment.algorithm, params, experiment.sources["val"], episodes=1)
    assert again.mean == pytest.approx(min(val.values()), rel=1e-6)
    result = CliRunner().invoke(main, ["eval", str(run), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["tuning"]["mf"]["chosen"] == {"dim": 16, "reg": 5.0, "fold_reg": 5.0}  # the config's: no grid
    methods = report["states"]["user_cold"]["methods"]
    assert {"metamf", "metamf-0", "mf", "bias", "fine-tune"} <= set(methods)
    assert methods["metamf"]["mae"]["mean"] < methods["metamf-0"]["mae"]["mean"]  # the fold-in helps

    data = load_recsys_data(RecsysConfig(synthetic_users=300, synthetic_items=400), None).data
    state = tmp_path / "me.json"
    for number, (item, rating) in enumerate(((0, 5), (1, 1))):
        (tmp_path / "r.csv").write_text(f"{int(data.item_ids[item])},{rating}\n")
        args = ["recommend", str(run), "--ratings", str(tmp_path / "r.csv"), "--state", str(state), "--json"]
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
        saved = json.loads(state.read_text())
        assert len(saved["ratings"]) == number + 1  # the state grows with each call
        top = json.loads(result.stdout)
        assert not {r["item_id"] for r in top} & {int(data.item_ids[i]) for i in range(number + 1)}
        assert all(1.0 <= r["predicted_rating"] <= 5.0 for r in top)


def test_validation_scores_every_validation_user_once(recsys: RecsysData) -> None:
    source = UserTasks(recsys.data, recsys.split.tasks["val"], exhaustive=True)
    model = build_metamf(recsys.data, recsys.split.tasks["train"], dim=4)
    ridge = Ridge(model)
    params = ridge.init_params()
    result = evaluate(ridge, params, source, episodes=3, seed=1)
    assert result.episodes == len(recsys.split.tasks["val"]) > 3
    per_user = [score_task(ridge, params, source.task(i), None) for i in range(len(source))]
    assert result.mean == pytest.approx(float(np.mean(per_user)))
    assert evaluate(ridge, params, source, episodes=3, seed=2).mean == result.mean  # no draw: seed-free


def test_training_batches_keep_one_to_support_max_ratings(recsys: RecsysData) -> None:
    source = UserTasks(recsys.data, recsys.split.tasks["train"], support_max=5)
    generator = torch.Generator().manual_seed(0)
    sizes = {source.sample_batch(8, generator).support_x.shape[1] for _ in range(60)}
    assert sizes == {1, 2, 3, 4, 5}
    with pytest.raises(ValueError, match=r"support_max must be >= 1 \(or None: every support rating\), got 0"):
        UserTasks(recsys.data, recsys.split.tasks["train"], support_max=0)
