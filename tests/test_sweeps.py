"""Sweeps on Hydra's real launchers and sweepers: joblib processes, an Optuna study in
SQLite that survives a kill, Ray; the sweep summary and `zoo compare`."""

from __future__ import annotations

import csv
import io
import importlib.util
import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from conftest import error_lines, run_zoo

TINY_JOB = ["trainer.epochs=1", "metrics=[accuracy]"]


def read_csv(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


@pytest.fixture(scope="module")
def joblib_sweep(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("joblib")
    sweep_dir = cwd / "sweep"
    result = run_zoo(
        "train", "-m", "hydra/launcher=local", "model.filters=4,8", *TINY_JOB, f"hydra.sweep.dir={sweep_dir}", cwd=cwd
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return sweep_dir, result


def log_span(path: Path) -> tuple[datetime, datetime]:
    stamps = re.findall(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+)\]", path.read_text(), re.MULTILINE)
    return tuple(datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f") for stamp in (stamps[0], stamps[-1]))


def test_joblib_sweep_runs_two_jobs_in_parallel_processes_and_summarises_them(joblib_sweep):
    sweep_dir, result = joblib_sweep
    assert "Joblib.Parallel(n_jobs=2" in result.stdout + result.stderr
    jobs = sorted(p.name for p in sweep_dir.iterdir() if (p / "metrics.json").is_file())
    assert jobs == ["0_cnn_classifier", "1_cnn_classifier"]
    # The two jobs ran at the same time: each one's log spans the other's start.
    spans = [log_span(sweep_dir / job / "train.log") for job in jobs]
    assert spans[0][0] < spans[1][1] and spans[1][0] < spans[0][1], spans
    summary = read_csv((sweep_dir / "summary.csv").read_text())
    assert [row["run"] for row in summary] == jobs
    assert [row["model.filters"] for row in summary] == ["4", "8"]
    assert all(0 <= float(row["accuracy"]) <= 1 for row in summary)
    assert (sweep_dir / "comparison.png").stat().st_size > 10_000
    assert "model.filters" in result.stdout and "sweep directory:" in result.stdout


def test_compare_shows_what_differs_and_how_each_run_scored(joblib_sweep, tmp_path):
    sweep_dir, _ = joblib_sweep
    result = run_zoo("compare", str(sweep_dir), "--csv", "--plot", str(tmp_path / "ab.png"))
    assert result.returncode == 0, result.stderr
    rows = read_csv(result.stdout)
    assert list(rows[0]) == ["run", "model.filters", "loss", "accuracy"]
    for row in rows:
        metrics = yaml.safe_load((sweep_dir / row["run"] / "metrics.json").read_text())
        assert abs(float(row["accuracy"]) - metrics["accuracy"]) < 1e-4
    assert (tmp_path / "ab.png").stat().st_size > 10_000

    # Runs named one by one, as a table; an unfinished run is shown as such.
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "config.yaml").write_text((sweep_dir / "0_cnn_classifier" / "config.yaml").read_text().replace("filters: 4", "filters: 16"))
    result = run_zoo("compare", str(sweep_dir / "0_cnn_classifier"), str(sweep_dir / "1_cnn_classifier"), str(unfinished))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["run", "model.filters", "loss", "accuracy"]
    assert "unfinished" in lines[-1] and " 16 " in lines[-1]


def test_compare_refuses_what_is_not_a_run(tmp_path):
    result = run_zoo("compare", str(tmp_path))
    assert result.returncode != 0
    assert len(error_lines(result.stderr)) == 1 and "neither a run directory nor a sweep" in result.stderr


def optuna_command(storage: Path, sweep_dir: Path, trials: int = 3) -> list[str]:
    return [
        sys.executable, "-m", "zoo", "train", "-m", "hparams_search=digits_cnn", f"hydra.sweeper.n_trials={trials}",
        f"hydra.sweeper.storage=sqlite:///{storage}", f"hydra.sweep.dir={sweep_dir}", "trainer.epochs=1",
    ]  # fmt: skip


def study_trials(storage: Path):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name="digits_cnn", storage=f"sqlite:///{storage}").get_trials(deepcopy=False)


@pytest.mark.slow
def test_optuna_study_resumes_after_being_killed(tmp_path):
    import optuna

    storage = tmp_path / "study" / "digits_cnn.db"  # its folder is made by zoo
    env = {**os.environ, "PYTHONWARNINGS": "ignore::DeprecationWarning"}
    first = subprocess.Popen(
        optuna_command(storage, tmp_path / "first"), cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    second_trial = tmp_path / "first" / "1_cnn_classifier" / "config.yaml"
    deadline = time.monotonic() + 300
    while not second_trial.exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(first.pid, signal.SIGKILL)  # mid-way through trial 1, as a lost machine would
    first.wait()
    assert second_trial.exists(), "the sweep never reached its second trial"
    states = [t.state for t in study_trials(storage)]
    assert states.count(optuna.trial.TrialState.COMPLETE) == 1

    result = subprocess.run(
        optuna_command(storage, tmp_path / "second"), cwd=tmp_path, env=env, capture_output=True, text=True,
        stdin=subprocess.DEVNULL, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "1 of 3 trials done, 2 to run; 1 left running by an interrupted sweep are not counted" in result.stdout
    trials = study_trials(storage)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 3
    assert len({tuple(sorted(t.params.items())) for t in complete}) == 3  # no trial proposed twice
    # The objective is the run's last validation accuracy, as history.csv records it.
    jobs = sorted(p for p in (tmp_path / "second").iterdir() if (p / "history.csv").is_file())
    assert len(jobs) == 2
    last = list(csv.DictReader((jobs[-1] / "history.csv").open()))[-1]
    assert abs(complete[-1].value - float(last["val_accuracy"])) < 1e-6
    results = yaml.safe_load((tmp_path / "second" / "optimization_results.yaml").read_text())
    assert results["best_value"] == max(t.value for t in complete)


@pytest.mark.parametrize(
    "launcher,expected",
    [
        ("local", {"n_jobs": 2}),
        ("slurm", {"nodes": 1, "tasks_per_node": 1, "gpus_per_node": 1}),
        ("slurm_multi_worker", {"nodes": 2, "tasks_per_node": 1}),
        pytest.param(
            "ray_cluster",
            {},
            marks=pytest.mark.skipif(importlib.util.find_spec("hydra_plugins.hydra_ray_launcher") is None, reason="no Ray"),
        ),
    ],
)
def test_shipped_launcher_configs_compose_on_the_installed_launchers(launcher, expected, tmp_path):
    result = run_zoo("train", f"hydra/launcher={launcher}", "--cfg", "hydra", "--package", "hydra.launcher", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    config = yaml.safe_load(result.stdout)
    config = config.get("hydra", {}).get("launcher", config)
    assert expected.items() <= config.items(), config
    assert "_target_" in config


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("hydra_plugins.hydra_ray_launcher") is None, reason="hydra-ray-launcher is not installed")
def test_ray_launcher_runs_a_sweep_on_a_local_ray_runtime(tmp_path):
    sweep_dir = tmp_path / "sweep"
    result = run_zoo(
        "train", "-m", "hydra/launcher=ray_cluster", "model.filters=4,8", *TINY_JOB, f"hydra.sweep.dir={sweep_dir}",
        cwd=tmp_path, env={"RAY_ADDRESS": "", "RAY_USAGE_STATS_ENABLED": "0"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summary = read_csv((sweep_dir / "summary.csv").read_text())
    assert [row["model.filters"] for row in summary] == ["4", "8"]
    assert all(row["accuracy"] for row in summary)


def test_a_launcher_or_sweeper_whose_plugin_is_missing_names_the_extra_to_install():
    from hydra.errors import MissingConfigException

    from zoo.config import describe_composition_error

    # As Hydra words it when a shipped config's defaults name an uninstalled plugin.
    error = MissingConfigException("In 'hydra/launcher/ray_cluster': Could not load 'hydra/launcher/ray'.", "hydra/launcher/ray")
    assert describe_composition_error(error) == (
        "hydra/launcher=ray needs its Hydra plugin, which is not installed: pip install 'keras-zoo[ray]'"
    )
