"""Sweeps, baselines, Optuna and DDP as the README runs them, on the tiny synthetic set.

Each sweep is a real ``python -m metalcore.train -m ...``; assertions are what a researcher checks
afterwards: one folder per job with its metrics and TensorBoard events, one decode for the whole
sweep, the report's table, failed jobs named with their reason.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml
from conftest import REPO, read_metrics, run_module, tiny_overrides, train_config

from metalcore.data.segments import Shard

CONF = REPO / "conf"


def job_dirs(sweep: Path) -> list[Path]:
    return sorted((p for p in sweep.iterdir() if (p / ".hydra").is_dir()), key=lambda p: int(p.name))


def table_rows(markdown: str) -> list[list[str]]:
    """The body rows of the first markdown table (the report prints paired tables after it), as cells."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return [[c.strip() for c in row.strip("|").split("|")] for row in lines[start + 2 : end]]


# -- a sweep of two jobs --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def grid_sweep(tmp_path_factory, cache_dir: Path, demo_root: Path) -> Path:
    """``-m features.n_mels=32,64``: two one-epoch jobs (the slow tests sweep more)."""
    sweep = tmp_path_factory.mktemp("grid")
    result = run_module(
        "metalcore.train",
        "-m",
        *tiny_overrides(
            cache_dir,
            f"hydra.sweep.dir={sweep}",
            "features.n_mels=32,64",
            "trainer.max_epochs=1",
        ),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return sweep


def test_every_combination_runs_in_its_own_folder_with_metrics_and_hparams(grid_sweep: Path):
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    jobs = job_dirs(grid_sweep)
    assert [j.name for j in jobs] == ["0", "1"]
    swept = [
        [o for o in yaml.safe_load((j / ".hydra" / "overrides.yaml").read_text()) if o.startswith("features.n_mels=")]
        for j in jobs
    ]
    assert sorted(swept) == [["features.n_mels=32"], ["features.n_mels=64"]]
    for job in jobs:
        assert {"acc", "f1", "auroc", "confusion"} <= set(read_metrics(job)["test"]["track"])
        assert list((job / "tensorboard").glob("events.out.tfevents.*"))

    # tensorboard --logdir MULTIRUN_DIR: one run per job, each with its hparams
    runs = EventMultiplexer().AddRunsFromDirectory(str(grid_sweep))
    runs.Reload()
    hparams = runs.PluginRunToTagToContent("hparams")
    assert sorted(hparams) == [f"{j}/tensorboard" for j in range(2)]
    assert all("_hparams_/session_start_info" in tags for tags in hparams.values())


def test_the_sweep_decodes_each_track_once(grid_sweep: Path, cache_dir: Path, demo_root: Path):
    tracks = list(demo_root.glob("*/*.*"))
    entries = [
        p
        for p in (cache_dir / "16000hz-2ch").glob("*.json")
        if Path(json.loads(p.read_text())["source"]).is_relative_to(demo_root.resolve())
    ]
    assert len(entries) == len(tracks)  # one cache entry per track, shared by both jobs
    # whatever was decoded was decoded before the second job started: later jobs only read the cache
    second_job_started = (job_dirs(grid_sweep)[1] / ".hydra" / "config.yaml").stat().st_mtime_ns
    assert max(p.with_suffix(".pcm").stat().st_mtime_ns for p in entries) < second_job_started


def test_report_tables_and_plots_the_grid(grid_sweep: Path, tmp_path: Path):
    result = run_module(
        "metalcore.report",
        str(grid_sweep),
        "--metric",
        "test/track_acc",
        "--output",
        str(tmp_path / "table.csv"),
        "--plot",
        str(tmp_path / "plot.png"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = table_rows(result.stdout)
    header = next(line for line in result.stdout.splitlines() if line.startswith("|"))
    assert len(rows) == 2 and "features.n_mels" in header
    assert all(row[-1] == "ok" for row in rows)
    with open(tmp_path / "table.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 2 and {r["features.n_mels"] for r in table} == {"32", "64"}
    means = [float(r["test.track.acc_mean"]) for r in table]
    assert means == sorted(means, reverse=True)
    assert (tmp_path / "plot.png").stat().st_size > 0


# -- baselines, and a job that fails ---------------------------------------------------------------
# slow: every model is built and checked in-process (test_models.py, test_science.py), and the report
# of failed jobs is tested on hand-made sweep folders (test_report.py)
@pytest.mark.slow
def test_baselines_train_in_one_sweep_and_failed_jobs_are_reported(tmp_path: Path, cache_dir: Path, demo_root: Path):
    """model=cnn,study,stats (crnn runs in the grid above); n_mels=256 cannot work at n_fft=512."""
    sweep = tmp_path / "baselines"
    overrides = [o for o in tiny_overrides(cache_dir) if not o.startswith("model.gru_hidden")]  # no GRU in cnn/stats
    result = run_module(
        "metalcore.train",
        "-m",
        *overrides,
        f"hydra.sweep.dir={sweep}",
        "trainer.max_epochs=1",
        "model=cnn,study,stats",
        "features.n_mels=32,256",
    )
    assert result.returncode != 0  # Hydra raises once at the end, after running every job
    assert len(job_dirs(sweep)) == 6

    report = run_module("metalcore.report", str(sweep))
    assert report.returncode == 0, report.stderr[-3000:]
    rows = {(r[0], r[1]): r for r in table_rows(report.stdout)}
    for model in ("cnn", "study", "stats"):
        # one job: its value, then its 95 % interval
        assert rows[model, "32"][-1] == "ok" and 0.0 <= float(rows[model, "32"][3].split()[0]) <= 1.0
        assert rows[model, "256"][-1] == "1 failed" and rows[model, "256"][2] == "0"
    failed = [line for line in report.stdout.splitlines() if "(failed)" in line]
    assert len(failed) == 3 and all("features.n_mels=256 is too many" in line for line in failed)


# -- Optuna ----------------------------------------------------------------------------------------
# slow: the sweeper's direction and the value train returns are tested without running trials
# (test_optuna_direction_follows_the_optimized_metric, test_train.py's optimized_metric test)
@pytest.mark.slow
def test_optuna_search_runs_two_trials_in_parallel_with_joblib(tmp_path: Path, cache_dir: Path, demo_root: Path):
    """Two trials asked for at once, run by the joblib launcher in two worker processes."""
    sweep = tmp_path / "optuna"
    result = run_module(
        "metalcore.train",
        *tiny_overrides(
            cache_dir,
            "hparams_search=optuna",
            "hydra.sweeper.n_trials=2",
            "hydra.sweeper.n_jobs=2",
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=2",
            "threads=2",  # the per-job budget: joblib alone gives each of 2 jobs 1 thread of 2 cores
            f"hydra.sweep.dir={sweep}",
            "trainer.max_epochs=1",
        ),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert [read_metrics(j)["environment"]["threads"] for j in job_dirs(sweep)] == [2, 2]
    assert "Directions: ['maximize']" in result.stdout + result.stderr and "Joblib.Parallel(n_jobs=2" in result.stdout
    assert len(job_dirs(sweep)) == 2 and all((j / "metrics.json").is_file() for j in job_dirs(sweep))
    best = (sweep / "optimization_results.yaml").read_text()
    assert "best_params" in best and "module.optimizer.lr" in best


# -- DDP (the runs themselves: test_ddp.py) ------------------------------------------------------
@pytest.mark.parametrize(
    ("strategy", "devices", "env", "processes"),
    [
        ("ddp", 2, {}, 2),
        ("ddp", "0,1,2", {}, 3),
        ("ddp", [0, 1], {}, 2),
        ("ddp", 4, {"LOCAL_RANK": "0"}, 1),  # torchrun, or a rank metalcore started: Lightning joins
        ("ddp", 4, {"SLURM_NTASKS": "4", "SLURM_JOB_NAME": "train"}, 1),  # srun started the ranks
        (None, 1, {}, 1),
        ("auto", 1, {}, 1),
    ],
)
def test_metalcore_starts_ddp_processes_only_when_nothing_else_did(monkeypatch, strategy, devices, env, processes):
    from metalcore.training.launch import local_processes

    for name in (
        "LOCAL_RANK",
        "RANK",
        "GROUP_RANK",
        "LOCAL_WORLD_SIZE",
        "TORCHELASTIC_RUN_ID",
        "SLURM_NTASKS",
        "SLURM_JOB_NAME",
        "LSB_JOBID",
        "OMPI_COMM_WORLD_SIZE",
        "PMI_SIZE",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert local_processes(strategy, "cpu", devices) == processes


def test_a_user_error_on_any_rank_reaches_the_entry_point_as_one_line():
    import torch.multiprocessing as mp

    from metalcore.training.launch import as_user_error

    traceback = (
        "\n\n-- Process 1 terminated with the following error:\nTraceback (most recent call last):\n"
        '  File "metalcore/data/split.py", line 70, in assign\n'
        "metalcore.core.errors.UserError: class 'metal' has too few tracks for data.test_fraction=0.25\n"
    )
    error = as_user_error(mp.ProcessRaisedException(traceback, 1, 4242))
    assert str(error) == "class 'metal' has too few tracks for data.test_fraction=0.25"
    assert (
        as_user_error(
            mp.ProcessRaisedException(traceback.replace("metalcore.core.errors.UserError", "KeyError"), 1, 4242)
        )
        is None
    )


def test_ddp_spawn_is_refused_before_training():
    from metalcore.core.errors import UserError
    from metalcore.training.launch import local_processes

    with pytest.raises(UserError, match=r"trainer.strategy=ddp_spawn .* use trainer.strategy=ddp"):
        local_processes("ddp_spawn", "cpu", 2)
    spawning = {
        "_target_": "lightning.pytorch.strategies.DDPStrategy",
        "start_method": "spawn",
    }  # as trainer=ddp builds it
    with pytest.raises(UserError, match=r"trainer.strategy=ddp_spawn"):
        local_processes(spawning, "cpu", 2)


@pytest.mark.parametrize("world", [2, 3])
def test_shard_gives_each_evaluation_segment_to_one_rank_and_training_ranks_equal_steps(world: int):
    keys = [(track, start) for track in range(7) for start in (0, 100)]  # 14 keys
    evaluation = [list(Shard(keys, rank, world, even=False)) for rank in range(world)]
    assert sorted(k for share in evaluation for k in share) == sorted(keys)
    assert [len(s) for s in evaluation] == [len(Shard(keys, r, world, even=False)) for r in range(world)]
    training = [list(Shard(keys, rank, world, even=True)) for rank in range(world)]
    assert len({len(share) for share in training}) == 1 == len({len(Shard(keys, r, world, True)) for r in range(world)})
    assert len(set().union(*map(set, training))) == len(keys) // world * world


# -- every config that sweeps or launches composes -------------------------------------------------
@pytest.fixture(scope="module")
def compose():
    return lambda *overrides: train_config(*overrides, hydra=True)


@pytest.mark.parametrize("experiment", sorted(p.stem for p in (CONF / "experiment").glob("*.yaml")))
def test_every_experiment_composes_into_valid_front_ends(compose, experiment: str):
    from metalcore.models.frontend import MelFrontend

    cfg = compose(f"experiment={experiment}")
    params = cfg.hydra.sweeper.get("params") or {}
    n_mels = [int(v) for v in str(params.get("features.n_mels", cfg.features.n_mels)).split(",")]
    seconds = [float(v) for v in str(params.get("data.segment_seconds", cfg.data.segment_seconds)).split(",")]
    for n in n_mels:  # every job of the sweep gets a front-end it can build
        frontend = MelFrontend(cfg.data.sample_rate, n, cfg.features.n_fft, cfg.features.hop_length)
        for s in seconds:
            frontend.check_segment(round(s * cfg.data.sample_rate))


def test_ablation_sweeps_the_issue_grid(compose):
    params = compose("experiment=ablation").hydra.sweeper.params
    assert dict(params) == {
        "features.n_mels": "64,96,128",
        "data.segment_seconds": "3,5.5,10",
        "model.gru_hidden": "64,128,256",
    }


@pytest.mark.parametrize(("metric", "direction"), [("val/track_f1", "maximize"), ("val/loss", "minimize")])
def test_optuna_direction_follows_the_optimized_metric(compose, metric: str, direction: str):
    cfg = compose("hparams_search=optuna", f"optimized_metric={metric}")
    assert cfg.hydra.sweeper.direction == direction
    assert cfg.hydra.sweeper._target_.endswith("OptunaSweeper") and cfg.hydra.sweeper.sampler.seed is not None
    assert "features.n_mels" in cfg.hydra.sweeper.params and "module.optimizer.lr" in cfg.hydra.sweeper.params


@pytest.mark.parametrize(
    ("override", "target"),
    [
        ("hydra/launcher=joblib", "JoblibLauncher"),
        ("hydra/launcher=slurm", "SlurmLauncher"),
    ],
)
def test_launchers_compose(compose, override: str, target: str):
    pytest.importorskip(
        {
            "JoblibLauncher": "hydra_plugins.hydra_joblib_launcher",
            "SlurmLauncher": "hydra_plugins.hydra_submitit_launcher",
        }[target]
    )
    launcher = compose(override, "experiment=ablation").hydra.launcher
    assert launcher._target_.endswith(target)
    if target == "SlurmLauncher":
        assert {"partition", "gpus_per_node", "tasks_per_node", "timeout_min", "submitit_folder"} <= set(launcher)


def test_ddp_trainer_composes_with_a_collective_timeout_a_user_can_change(compose):
    from datetime import timedelta

    from hydra.utils import instantiate

    from metalcore.training.launch import local_processes

    trainer = compose("trainer=ddp").trainer
    assert trainer.devices == 2 and trainer.num_nodes == 1
    assert instantiate(trainer.strategy)._timeout == timedelta(minutes=10)
    changed = compose("trainer=ddp", "trainer.strategy.timeout.seconds=42").trainer.strategy
    assert instantiate(changed)._timeout == timedelta(seconds=42)
    assert local_processes(changed, "cpu", 2) == 2  # metalcore still starts the ranks itself
