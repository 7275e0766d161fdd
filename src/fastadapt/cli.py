"""The ``fastadapt`` command line: a thin layer over the Python API."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click
import numpy as np
import torch

from ._extras import MissingExtraError
from .algorithms import REGISTRY
from .data_cli import data as data_group
from .evaluation import EvalResult, mean_ci95_t
from .recsys import OnlineUser, RecsysData, read_ratings, user_categories
from .recsys import recommend as recommend_items
from .text_cli import text as text_group
from .training import (
    CheckpointError,
    ConfigError,
    DistributedError,
    Trainer,
    TrainingError,
    build_experiment,
    evaluate_run,
    kept_checkpoints,
    load_config,
    load_errors,
    load_run,
    resolve_config,
    resume_path,
    shipped_configs,
)
from .training import suites as all_suites
from .training._distributed import is_main_process, restarts, world_size_from_environment
from .training._schema import config_schema
from .tuning import PRUNERS, SAMPLERS, TuneJob, TuneResult
from .tuning import tune as run_tune

#: The demo: (shipped config, overrides that fit it in the time budget), evaluated on held-out tasks.
DEMO: tuple[tuple[str, list[str]], ...] = (
    ("sinusoid_maml", ["training.iterations=1500", "training.val_every=500", "training.checkpoint_every=500"]),
    ("digits_protonet", []),
    ("digits_maml", []),
)


def _fail(error: Exception) -> None:
    click.echo(f"error: {error}", err=True)
    sys.exit(2)


@click.group()
@click.version_option(package_name="fastadapt")
def main() -> None:
    """Meta-learning: train a network on many small tasks so it adapts to a new one from a few examples."""


main.add_command(data_group)
main.add_command(text_group)


@main.command()
def algorithms() -> None:
    """List the algorithms."""
    for name, entry in REGISTRY.items():
        click.echo(f"{name:10s} {entry.summary} ({entry.reference})")


@main.command()
def suites() -> None:
    """List the task suites (shipped and installed through the fastadapt.suites entry points) and their datasets."""
    for name, suite in sorted(all_suites().items()):
        about = getattr(suite, "description", "")
        click.echo(f"{name:12s} datasets: {', '.join(suite.datasets)}" + (f"  ({about})" if about else ""))
    for error in load_errors():
        click.echo(f"error: {error}", err=True)


@main.command()
def configs() -> None:
    """List the shipped configs (usable by name in `fastadapt train`)."""
    for name, path in sorted(shipped_configs().items()):
        click.echo(f"{name:20s} {path}")


@main.group()
def config() -> None:
    """Config files: their JSON Schema."""


@config.command()
@click.option("--out", type=click.Path(path_type=Path), help="Write it to this file (default: print it).")
def schema(out: Path | None) -> None:
    """The JSON Schema of config files, for editors: keys, types, defaults and ranges (cross-field checks are
    `fastadapt validate`'s). VS Code's YAML extension: `# yaml-language-server: $schema=fastadapt.schema.json`."""
    text = json.dumps(config_schema(), indent=2) + "\n"
    if out is None:
        click.echo(text, nl=False)
        return
    out.write_text(text)
    click.echo(f"schema written to {out}", err=True)


@main.command()
@click.argument("config")
@click.argument("overrides", nargs=-1)
def validate(config: str, overrides: tuple[str, ...]) -> None:
    """Check CONFIG (a YAML file or a shipped config name) with its OVERRIDES, without training: every key's
    type and range and the keys that constrain each other; exit code 2 and one line naming the key if bad."""
    try:
        resolved = resolve_config(config, list(overrides))
    except ConfigError as error:
        _fail(error)
    click.echo(f"{config}: valid ({resolved.data.dataset}, {resolved.algorithm.name})")


def _train(
    config_name: str, overrides: list[str], run_dir: Path | None, resume: bool, progress: bool, checkpoint: str = "last"
) -> Path:
    config = resolve_config(config_name, overrides)
    world_size = world_size_from_environment()
    if run_dir is None:
        if world_size > 1:
            raise ConfigError(
                f"--run-dir is required with {world_size} processes: every rank must use the same run directory "
                "(`fastadapt train --nproc N` chooses one for you)"
            )
        run_dir = Path("runs") / f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    if restarts():  # torchrun --max-restarts: on from the newest checkpoint that loads, else from the start
        loadable = {name: step for name, step in kept_checkpoints(run_dir).items() if step is not None}
        if loadable:
            checkpoint = max(loadable, key=lambda name: (loadable[name], name == "last"))
            if is_main_process():
                click.echo(
                    f"restart {restarts()}: resuming {run_dir} from {checkpoint} (step {loadable[checkpoint]})",
                    err=True,
                )
            resume = True
        else:
            resume, checkpoint = False, "last"
    if resume:
        if not (run_dir / "checkpoints").is_dir():
            raise CheckpointError(f"--resume: {run_dir} has no checkpoints/ to resume from")
        resume_path(run_dir, checkpoint)  # missing or damaged: the message names the ones that load
    elif checkpoint != "last":
        raise ConfigError("--checkpoint chooses where --resume continues from; pass --resume too")
    if not resume and (run_dir / "checkpoints").exists() and not restarts():  # a restart's leftovers are its own
        raise ConfigError(f"{run_dir} already holds a run; pass --resume to continue it or choose another --run-dir")
    trainer = Trainer(build_experiment(config), run_dir, progress=progress)
    trainer.run(resume=resume, checkpoint=checkpoint)
    if trainer.group is not None:
        trainer.group.close()  # a barrier first: rank 0's last checkpoint is written before anyone leaves
    return run_dir


def _launch(
    nproc: int, max_restarts: int, config: str, overrides: tuple[str, ...], run_dir: Path | None, flags: list[str]
) -> int:
    """Runs ``fastadapt train`` in ``nproc`` processes on this machine through torchrun; returns its exit code."""
    resolved = resolve_config(config, list(overrides))  # a bad config fails here, once, not in every rank
    if run_dir is None:
        run_dir = Path("runs") / f"{resolved.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        f"--max-restarts={max_restarts}",
        "-m",
        "fastadapt",
        "train",
        config,
        *overrides,
        "--run-dir",
        str(run_dir),
        *flags,
    ]
    process = subprocess.Popen(command)
    # a scheduler's SIGTERM to this process reaches torchrun, which stops its workers (Ctrl-C reaches the group)
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: process.send_signal(signum))
    try:
        return process.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)


@main.command()
@click.argument("config")
@click.argument("overrides", nargs=-1)
@click.option("--run-dir", type=click.Path(path_type=Path), help="Where to write the run (default runs/NAME-TIME).")
@click.option("--resume", is_flag=True, help="Continue the run in --run-dir from its last checkpoint.")
@click.option(
    "--checkpoint",
    default="last",
    show_default=True,
    help="With --resume: last, best, a kept step-N (training.keep), or a checkpoint file.",
)
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option(
    "--nproc",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Processes on this machine (torchrun --standalone): each computes its share of every meta-batch.",
)
@click.option(
    "--max-restarts",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="With --nproc: restart all processes this many times after a failure, from the last checkpoint.",
)
def train(
    config: str,
    overrides: tuple[str, ...],
    run_dir: Path | None,
    resume: bool,
    checkpoint: str,
    no_progress: bool,
    nproc: int,
    max_restarts: int,
) -> None:
    """Meta-train from CONFIG (a YAML file or a shipped config name) with section.key=value OVERRIDES.

    Several processes: `--nproc N` on one machine, or `torchrun ... -m fastadapt train CONFIG --run-dir RUN`."""
    if nproc > 1 and world_size_from_environment() <= 1:
        flags = ["--resume"] * resume + ["--checkpoint", checkpoint] * (checkpoint != "last")
        try:
            code = _launch(nproc, max_restarts, config, overrides, run_dir, flags + ["--no-progress"] * no_progress)
        except ConfigError as error:
            _fail(error)
        sys.exit(code)
    if max_restarts:
        _fail(ConfigError("--max-restarts applies to --nproc N > 1 (or torchrun's own --max-restarts)"))
    try:
        out = _train(config, list(overrides), run_dir, resume, not no_progress, checkpoint)
    except (ConfigError, CheckpointError, TrainingError, DistributedError) as error:
        _fail(error)
    if is_main_process():
        click.echo(f"run written to {out}")


@main.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--name", "names", multiple=True, help="A model's name (once per run, in order; default: its folder).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--api-keys", type=click.Path(path_type=Path), help="File of sha256 hex digests of accepted keys.")
@click.option("--insecure", is_flag=True, help="Allow a non-loopback --host without --api-keys.")
@click.option("--cache-items", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--cache-mb", type=click.FloatRange(min=0, min_open=True), default=256.0, show_default=True)
@click.option("--max-concurrency", type=click.IntRange(min=1), default=2, show_default=True, help="Worker threads.")
@click.option(
    "--max-queue", type=click.IntRange(min=0), default=64, show_default=True, help="Requests that may wait (then 503)."
)
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=30.0, show_default=True)
@click.option("--max-body-mb", type=click.FloatRange(min=0, min_open=True), default=2.0, show_default=True)
def serve(
    run_dirs: tuple[Path, ...],
    names: tuple[str, ...],
    host: str,
    port: int,
    api_keys: Path | None,
    insecure: bool,
    cache_items: int,
    cache_mb: float,
    max_concurrency: int,
    max_queue: int,
    timeout: float,
    max_body_mb: float,
) -> None:
    """Serve trained RUN_DIRS over HTTP: POST /v1/adapt, /v1/predict, /v1/recommend; GET /v1/models, /healthz,
    /metrics; a playground at / (extra `serve`)."""
    try:
        from .serve import Limits, ServedModel, create_app, is_loopback, read_api_keys

        if len(names) > len(run_dirs):
            raise ConfigError(f"{len(names)} --name for {len(run_dirs)} run directories")
        keys = read_api_keys(api_keys) if api_keys is not None else None
        if keys is None and not is_loopback(host) and not insecure:
            raise ConfigError(
                f"--host {host} is reachable from other machines and no --api-keys were given: anyone could use "
                "the service; pass --api-keys FILE, or --insecure if that is what you want"
            )
        limits = Limits(body_bytes=int(max_body_mb * 2**20))
        named = [*names, *[None] * (len(run_dirs) - len(names))]
        models = [
            ServedModel(d, n, limits.image_pixels, limits.text_chars) for d, n in zip(run_dirs, named, strict=True)
        ]
        app = create_app(
            models,
            api_key_hashes=keys,
            limits=limits,
            cache_items=cache_items,
            cache_bytes=int(cache_mb * 2**20),
            max_concurrency=max_concurrency,
            max_queue=max_queue,
            timeout_s=timeout,
        )
        import uvicorn
    except (ConfigError, CheckpointError, ValueError, MissingExtraError) as error:
        _fail(error)
    click.echo(f"serving {', '.join(m.name for m in models)} on http://{host}:{port}/", err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")


@main.command()
@click.argument("config")
@click.argument("overrides", nargs=-1)
@click.option("--space", "space", required=True, type=click.Path(path_type=Path), help="Search space YAML.")
@click.option("--trials", type=click.IntRange(min=1), default=20, show_default=True, help="Complete or pruned trials.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Worker processes.")
@click.option("--storage", help="Database URL (postgresql://...); default: a journal file in --study-dir.")
@click.option("--study", "study_name", help="Study name (default: the config's name).")
@click.option("--study-dir", type=click.Path(path_type=Path), help="Trials, journal, plots (default runs/tune-NAME).")
@click.option("--sampler", type=click.Choice(SAMPLERS), default="tpe", show_default=True)
@click.option("--pruner", type=click.Choice(PRUNERS), default="hyperband", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Sampler seed (worker i uses seed + i).")
@click.option(
    "--grace", type=float, default=60.0, show_default=True, help="Seconds without heartbeat before a trial is stale."
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
def tune(
    config: str,
    overrides: tuple[str, ...],
    space: Path,
    trials: int,
    workers: int,
    storage: str | None,
    study_name: str | None,
    study_dir: Path | None,
    sampler: str,
    pruner: str,
    seed: int,
    grace: float,
    as_json: bool,
) -> None:
    """Bayesian search (Optuna) over the config keys in --space; re-running the same command continues it."""
    try:
        base = resolve_config(config, list(overrides))
        name = study_name or base.name
        job = TuneJob(
            config, tuple(overrides), str(space), name, storage, str(study_dir or Path("runs") / f"tune-{name}"),
            trials, sampler, pruner, seed,
        )  # fmt: skip
        result = run_tune(job, workers, grace=grace)
    except (ConfigError, CheckpointError, TrainingError, MissingExtraError) as error:
        _fail(error)
    if as_json:
        click.echo(json.dumps(result.summary()))
        return
    _print_tune(result)


def _print_tune(result: TuneResult) -> None:
    best = "-" if result.best_value is None else f"{result.best_value:.4f}"
    click.echo(
        f"study {result.study} ({result.direction}): {result.n_trials} trials, {result.n_complete} complete, "
        f"{result.n_pruned} pruned, {result.n_failed} failed; best value {best}"
    )
    if result.best_params:
        click.echo("best parameters:")
        width = max(len(key) for key in result.best_params)
        for key, value in result.best_params.items():
            shown = f"{value:.4g}" if isinstance(value, float) else str(value)
            click.echo(f"  {key:{width}s}  {shown}")
    click.echo(f"storage: {result.storage}")
    if result.best_config:
        click.echo(f"best config: {result.best_config} (fastadapt train {result.best_config})")
    for plot in result.plots:
        click.echo(f"plot: {plot}")


@main.command()
@click.argument("config")
@click.argument("overrides", nargs=-1)
@click.option(
    "--run-dir", type=click.Path(path_type=Path), help="Where to write the run (default runs/stream-NAME-TIME)."
)
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
def stream(config: str, overrides: tuple[str, ...], run_dir: Path | None, no_progress: bool, as_json: bool) -> None:
    """Online meta-learning: CONFIG's tasks arrive one by one; each is scored, then learned from (stream.* keys),
    beside a frozen meta-trained run (stream.frozen=RUN) and training from scratch on each task."""
    from .online import stream_run

    try:
        resolved = resolve_config(config, list(overrides))
        if run_dir is None:
            run_dir = Path("runs") / f"stream-{resolved.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        summary = stream_run(resolved, run_dir, progress=not (no_progress or as_json))
    except (ConfigError, CheckpointError, TrainingError, FloatingPointError, MissingExtraError) as error:
        _fail(error)
    summary["run_dir"] = str(run_dir)
    if as_json:
        click.echo(json.dumps(summary))
        return
    scale, unit = (100.0, " %") if summary["metric"] == "accuracy" else (1.0, "")
    click.echo(f"{summary['rounds']} rounds of {resolved.name} ({summary['split']} split), {summary['metric']}:")
    for name, mean in summary["last_mean"].items():
        ci = summary["last_ci95"][name]
        whole = summary["stream_mean"][name]
        click.echo(
            f"  {name:8s} last {summary['last']} rounds {mean * scale:.3f} ± {ci * scale:.3f}{unit}"
            f" (whole stream {whole * scale:.3f}{unit})"
        )
    if summary["ended_early"]:
        click.echo("  the stream ended early: it had no unused tasks left (stream.fresh uses every example once)")
    curves = f" (curves: {summary['plot']})" if summary["plot"] else ""
    click.echo(f"run written to {run_dir}{curves}")


@main.command("eval")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--episodes", type=int, help="Test episodes (default: the config's, 600).")
@click.option("--steps", type=int, help="Inner steps at test time (default: the config's test_steps).")
@click.option("--checkpoint", type=click.Choice(["best", "last"]), default="best", show_default=True)
@click.option("--ways", type=click.IntRange(min=2), help="Test N-way episodes (protonet runs; default: trained N).")
@click.option("--shots", type=click.IntRange(min=1), help="Test K-shot episodes (default: the trained K).")
@click.option("--support-cap", type=click.IntRange(min=1), help="movielens runs: adapt on at most N ratings per user.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def eval_(
    run_dirs: tuple[Path, ...],
    episodes: int | None,
    steps: int | None,
    checkpoint: str,
    ways: int | None,
    shots: int | None,
    support_cap: int | None,
    as_json: bool,
) -> None:
    """Evaluate trained runs on fixed-seed episodes of their held-out split (a movielens run: every cold-start
    state, metric and baseline). Several RUN_DIRS (the same config trained with other seeds) add the mean and
    Student-t 95% interval over the runs beside each run's interval over its episodes."""
    results = []
    try:
        for run_dir in run_dirs:
            result = evaluate_run(
                run_dir, episodes, steps, checkpoint, progress=not as_json, ways=ways, shots=shots,
                support_cap=support_cap,
            )  # fmt: skip
            if len(run_dirs) > 1 and not isinstance(result, EvalResult):
                raise ConfigError(f"{run_dir}: several run directories are summarised for episode runs only")
            results.append(result)
    except (ConfigError, CheckpointError, ValueError) as error:
        _fail(error)
    if len(results) == 1:
        summary = results[0].summary()
        click.echo(json.dumps(summary) if as_json else (
            results[0].describe() if hasattr(results[0], "describe") else _describe(summary)
        ))  # fmt: skip
        return
    summaries = [
        r.summary() | {"run_dir": str(d), "training_seed": load_config(d / "config.yaml").training.seed}
        for r, d in zip(results, run_dirs, strict=True)
    ]
    try:
        combined = over_seeds(summaries)
    except ConfigError as error:
        _fail(error)
    if as_json:
        click.echo(json.dumps(combined))
        return
    for one in summaries:
        click.echo(_describe(one))
    click.echo(_describe_seeds(combined))


def over_seeds(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """Runs of one config with other training seeds: the mean of their means with its Student-t 95% interval
    over the runs (the spread over training), beside the mean of their per-episode intervals."""
    kinds = {(s["algorithm"], s["dataset"], s["ways"], s["shots"], s["metric"]) for s in summaries}
    if len(kinds) != 1:
        raise ConfigError(f"the runs differ in algorithm, dataset, ways, shots or metric: {sorted(kinds)}")
    means = [s["mean"] for s in summaries]
    mean, seed_ci = mean_ci95_t(means)
    first = summaries[0]
    return {
        **{k: first[k] for k in ("algorithm", "dataset", "ways", "shots", "metric", "episodes", "split")},
        "runs": len(summaries),
        "training_seeds": [s.get("training_seed") for s in summaries],
        "mean": mean,
        "ci95_over_runs": seed_ci,
        "ci95_over_episodes": float(np.mean([s["ci95"] for s in summaries])),
        "per_run": summaries,
    }


def _describe_seeds(c: dict[str, Any]) -> str:
    scale, unit = (100.0, " %") if c["metric"] == "accuracy" else (1.0, "")
    return (
        f"over {c['runs']} training runs: {c['metric']} {c['mean'] * scale:.2f} ± {c['ci95_over_runs'] * scale:.2f}"
        f"{unit} (Student-t over the runs; each run's ± over its {c['episodes']} episodes averages "
        f"{c['ci95_over_episodes'] * scale:.2f})"
    )


def _describe(s: dict[str, Any]) -> str:
    scale = 100.0 if s["metric"] == "accuracy" else 1.0
    unit = " %" if s["metric"] == "accuracy" else ""
    task = f"{s['ways']}-way {s['shots']}-shot" if s["ways"] else f"{s['shots']}-shot"
    line = (
        f"{s['algorithm']} on {s['dataset']} ({s['split']}, {task}, {s['queries']} queries, "
        f"{s['episodes']} episodes, seed {s['seed']}): {s['metric']} {s['mean'] * scale:.2f} "
        f"± {s['ci95'] * scale:.2f}{unit}"
    )
    if s["mean_before_adaptation"] is not None:
        line += f" (before adaptation {s['mean_before_adaptation'] * scale:.2f}{unit})"
    return line


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of results.")
@click.option("--run-dir", type=click.Path(path_type=Path), default=Path("runs/demo"), show_default=True)
@click.option("--episodes", type=int, default=600, show_default=True, help="Test episodes per result.")
@click.option(
    "--seeds", type=click.IntRange(min=1), default=1, show_default=True, help="Training seeds per row (0..N-1)."
)
def demo(as_json: bool, run_dir: Path, episodes: int, seeds: int) -> None:
    """Meta-train and evaluate MAML on sinusoids and ProtoNet and MAML on digits (embedded data, a few minutes per
    seed); with --seeds N each row also gets the mean and t interval over N training runs."""
    results = []
    start = time.perf_counter()
    for name, overrides in DEMO:
        rows = []
        for seed in range(seeds):
            out = run_dir / name if seeds == 1 else run_dir / name / f"seed-{seed}"
            if (out / "checkpoints").exists():
                import shutil

                shutil.rmtree(out)
            try:
                _train(name, [*overrides, f"training.seed={seed}"], out, resume=False, progress=not as_json)
                result = evaluate_run(out, episodes)
            except (ConfigError, CheckpointError, TrainingError) as error:
                _fail(error)
            rows.append(result.summary() | {"run_dir": str(out), "training_seed": seed})
            if not as_json:
                click.echo(_describe(rows[-1]))
        results.append(rows[0] if seeds == 1 else over_seeds(rows))
        if seeds > 1 and not as_json:
            click.echo(_describe_seeds(results[-1]))
    elapsed = time.perf_counter() - start
    if as_json:
        click.echo(json.dumps(results, indent=2))
    threads = torch.get_num_threads()
    click.echo(f"demo finished in {elapsed:.0f} s ({threads} torch thread{'s' * (threads != 1)})", err=as_json)


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option(
    "--ratings",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="CSV of item_id,rating (MovieLens movie ids, ratings 1-5).",
)
@click.option("--top", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--gender", type=click.Choice(["M", "F"], case_sensitive=False), help="The new user's features; each one")
@click.option("--age", type=click.IntRange(min=1), help="not given takes the data's most frequent category.")
@click.option("--occupation", help="ML-1M code 0-20 or an ML-100K occupation name.")
@click.option("--zip", "zip_code", help="Zip code (its first digit is the feature).")
@click.option("--steps", type=int, help="Local update steps (default: the config's test_steps).")
@click.option(
    "--state",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The user's saved state (JSON): read if it exists, updated with --ratings, written back; "
    "the features stored there win over --gender and the others.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def recommend(
    run_dir: Path,
    ratings: Path,
    top: int,
    gender: str | None,
    age: int | None,
    occupation: str | None,
    zip_code: str | None,
    steps: int | None,
    state: Path | None,
    as_json: bool,
) -> None:
    """Adapt a trained recommender run to a new user's few ratings and print the top unseen items; with
    --state, the user's adapted state persists, and each call adds the new ratings to it."""
    try:
        experiment, params, _ = load_run(run_dir)
        if not isinstance(experiment.context, RecsysData):
            raise ConfigError(f"{run_dir} is a {experiment.config.data.dataset} run; recommend needs a movielens run")
        data = experiment.context.data
        items, values = read_ratings(ratings, data)
        test_steps = steps if steps is not None else experiment.config.algorithm.test_steps
        if state is None:
            user = user_categories(data, gender, age, occupation, zip_code)
            found = recommend_items(experiment.algorithm, params, data, items, values, user, top, test_steps)
        else:
            online = OnlineUser.open(
                state,
                experiment.algorithm,
                params,
                data,
                test_steps,
                user_categories(data, gender, age, occupation, zip_code),
            )
            for item, rating in zip(items.tolist(), values.tolist(), strict=True):
                online.rate(int(item), float(rating))
            online.save(state)
            found = online.recommend(top)
    except (ConfigError, CheckpointError, ValueError) as error:
        _fail(error)
    if as_json:
        click.echo(json.dumps([vars(r) for r in found], indent=2))
        return
    for rank, r in enumerate(found, start=1):
        click.echo(f"{rank:3d}. {r.title} (item {r.item_id}): predicted {r.predicted_rating:.2f}")


if __name__ == "__main__":
    main()
