"""Sweeps on Hydra's real launchers and sweepers: joblib processes, an Optuna study in
SQLite that survives a kill, Ray; the sweep summary and `zoo compare`."""

from __future__ import annotations

import contextlib
import csv
import io
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from conftest import control_group, error_lines, own_mount_namespace_possible, remove_control_group, run_zoo
from zoo.errors import ZooError

TINY_JOB = ["trainer.epochs=1", "metrics=[accuracy]"]


def read_csv(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


@pytest.fixture(scope="module")
def joblib_sweep(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("joblib")
    sweep_dir = cwd / "sweep"
    result = run_zoo(
        # three epochs: long enough that the two jobs overlap even when one worker starts seconds later
        "train", "-m", "hydra/launcher=local", "model.filters=4,8", "trainer.epochs=3", "metrics=[accuracy]", "loggers=[mlflow]",
        f"hydra.sweep.dir={sweep_dir}", cwd=cwd,
    )  # fmt: skip
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


@pytest.mark.slow
def test_a_sweep_started_in_a_folder_of_python_files_imports_none_of_them(tmp_path):
    """joblib's job processes start as `python -c ...`, which puts the working folder first
    on sys.path: a numpy.py or json.py of the user's there ran in every job (and the sweep
    failed on "Can't get attribute 'ndarray'"). The `zoo` command never had it there."""
    for name in ("json", "numpy", "yaml", "hydra"):
        (tmp_path / f"{name}.py").write_text(f"open({str(tmp_path / 'imported')!r}, 'a').write('{name} ')\n")
    zoo_command = Path(sys.executable).parent / "zoo"  # as users start it: `python -m zoo` imports them itself
    result = subprocess.run(
        [str(zoo_command), "train", "-m", "hydra/launcher=local", "seed=1,2", *TINY_JOB, f"hydra.sweep.dir={tmp_path / 'sweep'}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert not (tmp_path / "imported").exists(), (tmp_path / "imported").read_text()
    assert len(read_csv((tmp_path / "sweep" / "summary.csv").read_text())) == 2


def test_python_m_zoo_in_a_folder_of_python_files_imports_none_of_them(tmp_path):
    """`python -m` puts the working folder first on sys.path (the `zoo` command does not): a
    numpy.py there ran in numpy's place in `python -m zoo train`, and a folder named
    hydra_plugins (a Hydra plugin of the user's in the making) had its modules imported by
    Hydra's plugin search."""
    marker = tmp_path / "imported"
    (tmp_path / "numpy.py").write_text(f"open({str(marker)!r}, 'a').write('numpy ')\n")
    (tmp_path / "hydra_plugins" / "mine").mkdir(parents=True)
    (tmp_path / "hydra_plugins" / "mine" / "__init__.py").write_text(f"open({str(marker)!r}, 'a').write('hydra_plugins ')\n")
    result = run_zoo("train", *TINY_JOB, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not marker.exists(), marker.read_text()
    assert (tmp_path / "run" / "metrics.json").is_file()


@pytest.mark.skipif(importlib.util.find_spec("hydra_plugins.hydra_ray_launcher") is None, reason="hydra-ray-launcher is not installed")
def test_a_ray_sweep_is_refused_where_a_python_file_shadows_an_installed_module(tmp_path):
    """Ray puts its driver's working folder first on every worker's path (no setting turns
    that off): a numpy.py there was imported by every job in numpy's place."""
    (tmp_path / "numpy.py").write_text(f"open({str(tmp_path / 'imported')!r}, 'w')\n")
    (tmp_path / "my_script.py").write_text("print('a script of mine, named like no module')\n")
    zoo_command = Path(sys.executable).parent / "zoo"
    result = subprocess.run(
        [str(zoo_command), "train", "-m", "hydra/launcher=ray_cluster", "seed=1,2", *TINY_JOB, f"hydra.sweep.dir={tmp_path / 'sweep'}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL, env={**os.environ, "RAY_ADDRESS": ""},
    )  # fmt: skip
    assert result.returncode == 2 and error_lines(result.stderr) == [
        f"zoo: error: {tmp_path / 'numpy.py'} is named like the installed module 'numpy', which Ray's workers would import from "
        "this folder in its place (Ray puts the working folder first on their path); start the sweep from another folder"
    ], result.stderr[-2000:]
    assert not (tmp_path / "imported").exists() and not (tmp_path / "sweep").exists()


def test_a_sweep_run_again_with_other_settings_is_refused_naming_the_sweeps_folder(joblib_sweep):
    """Its jobs' folders hold the first sweep's runs: refused before a job starts, pointing
    at hydra.sweep.dir (the option a sweep's user changes), not hydra.run.dir."""
    sweep_dir, _ = joblib_sweep
    before = sorted(p.name for p in sweep_dir.iterdir())
    again = run_zoo(
        "train", "-m", "hydra/launcher=local", "model.filters=16,32", "trainer.epochs=3", "metrics=[accuracy]",
        "loggers=[mlflow]", f"hydra.sweep.dir={sweep_dir}", cwd=sweep_dir.parent, timeout=120,
    )  # fmt: skip
    assert again.returncode == 2 and error_lines(again.stderr) == [
        f"zoo: error: {sweep_dir / '0_cnn_classifier'} holds a run with model.filters=4, not 16; to continue it, use its "
        "config; for a new run, choose another hydra.sweep.dir"
    ], again.stderr[-2000:]
    assert sorted(p.name for p in sweep_dir.iterdir()) == before


def test_parallel_jobs_share_one_mlflow_store_and_each_is_tracked(joblib_sweep):
    """Both jobs start at once on the sweep's new mlflow.db: each MLflow created its tables,
    and one failed on "duplicate column" and tracked nothing (its run was missing)."""
    import sqlite3

    sweep_dir, result = joblib_sweep
    assert "logger 'mlflow' failed" not in result.stderr
    with contextlib.closing(sqlite3.connect(sweep_dir / "mlflow.db")) as store:
        assert store.execute("SELECT count(*) FROM experiments WHERE name = 'zoo'").fetchall() == [(1,)]
        assert sorted(store.execute("SELECT name, status FROM runs").fetchall()) == [
            ("0_cnn_classifier", "FINISHED"), ("1_cnn_classifier", "FINISHED")
        ]  # fmt: skip


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
    # A multi-worker worker's directory holds only Hydra's records (.hydra/config.yaml): not a run.
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "config.yaml").write_text("seed: 0\n")
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


@pytest.mark.slow  # SQLite's wait for the lock comes first
def test_a_study_another_program_holds_locked_is_named_as_such(tmp_path):
    """A search still running on the study, or a database browser holding it: the line had
    been SQLAlchemy's "(sqlite3.OperationalError) database is locked [SQL: PRAGMA ...]
    (Background on this error at: https://sqlalche.me/e/21/e3q8)"."""
    import sqlite3

    import optuna

    storage = tmp_path / "study.db"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna.create_study(study_name="digits_cnn", storage=f"sqlite:///{storage}", direction="maximize")
    with contextlib.closing(sqlite3.connect(storage, isolation_level=None)) as holder:
        holder.execute("BEGIN EXCLUSIVE")
        result = subprocess.run(optuna_command(storage, tmp_path / "sweep", trials=1), cwd=tmp_path, capture_output=True,
                                text=True, timeout=300, stdin=subprocess.DEVNULL)  # fmt: skip
    assert result.returncode == 2 and error_lines(result.stderr) == [
        f"zoo: error: hydra.sweeper.storage=sqlite:///{storage} is locked by another program (a search still running on it, "
        "or a database browser holding it open); let it finish or close it, then run the command again"
    ], result.stderr[-2000:]


@pytest.mark.slow
def test_two_searches_started_together_share_one_new_study_and_its_trial_count(tmp_path):
    """Two terminals (or a job array) searching one new SQLite study: each Optuna created
    its tables and one failed on "table studies already exists"; and each ran n_trials of
    its own, twice what the study was given."""
    import optuna

    storage = tmp_path / "study.db"
    searches = [
        subprocess.Popen([*optuna_command(storage, tmp_path / f"sweep{i}", trials=4), "model.filters=4"], cwd=tmp_path,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
        for i in range(2)
    ]  # fmt: skip
    for search in searches:
        _, stderr = search.communicate(timeout=600)
        assert search.returncode == 0, stderr[-3000:]
    states = [trial.state for trial in study_trials(storage)]
    assert states.count(optuna.trial.TrialState.COMPLETE) + states.count(optuna.trial.TrialState.PRUNED) == 4, states


@pytest.mark.slow
def test_a_search_of_a_loss_minimises_it(tmp_path):
    """The sweeper maximised whatever the objective was: objective=val_loss looked for the
    worst runs. direction=auto (the default) goes by the objective."""
    storage = tmp_path / "study.db"
    result = subprocess.run([*optuna_command(storage, tmp_path / "sweep", trials=1), "objective=val_loss", "model.filters=4"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    import optuna

    assert optuna.load_study(study_name="digits_cnn", storage=f"sqlite:///{storage}").direction == optuna.study.StudyDirection.MINIMIZE


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
    best = yaml.safe_load((tmp_path / "second" / "best.yaml").read_text())
    assert best["value"] == max(t.value for t in complete)


@pytest.mark.slow
def test_a_search_run_again_continues_in_its_folder_and_refuses_other_settings(tmp_path):
    """A study kept outside its sweep folder left no mark there: the same search run again
    in that folder was "not a zoo sweep's". And a study run again with another objective,
    other fixed settings or a searched key of another kind had its trials mixed with the
    earlier ones (the best of values that measure different things), or failed in Optuna's
    words."""
    storage, sweep = tmp_path / "study.db", tmp_path / "sweep"
    first = run_zoo(*optuna_command(storage, sweep, trials=1)[3:], "model.filters=4", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    again = run_zoo(*optuna_command(storage, sweep, trials=2)[3:], "model.filters=4", cwd=tmp_path)
    assert again.returncode == 0 and "1 of 2 trials done, 1 to run" in again.stdout, again.stderr[-3000:]
    where = f"study 'digits_cnn' in sqlite:///{storage}"
    fix = "run the search with the settings it had (to add trials to it), or give another hydra.sweeper.study_name (a new search)"
    for changed, problem in (
        (["objective=val_auc"], "holds trials run with objective='val_accuracy'; this search has objective='val_auc'"),
        (["trainer.epochs=2"], "holds trials run with trainer.epochs=1; this search has trainer.epochs=2"),
        (["model.kernel_size=5"], "holds trials run with model.kernel_size=3; this search has model.kernel_size=5"),
        (["model.dropout=choice(0.1,0.2)"], "searched model.dropout as FloatDistribution(high=0.5, log=False, low=0.0, step=None), "
                                            "not CategoricalDistribution(choices=(0.1, 0.2)) (Optuna cannot mix them)"),
    ):  # fmt: skip
        refused = run_zoo(*optuna_command(storage, sweep, trials=3)[3:], "model.filters=4", *changed, cwd=tmp_path)
        assert refused.returncode == 2 and error_lines(refused.stderr) == [f"zoo: error: {where} {problem}; {fix}"], refused.stderr[-3000:]
    assert len(study_trials(storage)) == 2  # none added by a refused search


def pruning_search(sweep_dir: Path, storage: Path) -> list[str]:
    """A two-point grid where one learning rate is far too small: after epoch 1 the threshold
    pruner stops that trial (validation accuracy near chance) and lets the other train. Both
    trials at once in joblib's worker processes: they reach the study through its storage."""
    return [
        "train", "-m", "hydra/sweeper=optuna", "hydra/sweeper/sampler=grid", "hydra/launcher=local", "hydra.sweeper.n_jobs=2",
        "model=cnn_classifier", "model.filters=4",
        "dataset=digits", "metrics=[accuracy]", "objective=val_accuracy", "trainer.epochs=3",
        "trainer.learning_rate=choice(0.01,0.000001)", "hydra/sweeper/pruner=threshold", "hydra.sweeper.pruner.lower=0.3",
        f"hydra.sweeper.storage=sqlite:///{storage}", "hydra.sweeper.study_name=prune", f"hydra.sweep.dir={sweep_dir}",
    ]  # fmt: skip


@pytest.mark.slow
def test_a_pruned_trial_stops_keeps_its_epochs_and_is_marked_pruned_everywhere(tmp_path):
    import optuna

    storage = tmp_path / "prune.db"
    result = run_zoo(*pruning_search(tmp_path / "sweep", storage), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trials = optuna.load_study(study_name="prune", storage=f"sqlite:///{storage}").get_trials(deepcopy=False)
    state = {t.params["trainer.learning_rate"]: t.state for t in trials}
    assert state == {0.01: optuna.trial.TrialState.COMPLETE, 0.000001: optuna.trial.TrialState.PRUNED}
    by_rate = {t.params["trainer.learning_rate"]: tmp_path / "sweep" / f"{t.number}_cnn_classifier" for t in trials}
    pruned, complete = by_rate[0.000001], by_rate[0.01]
    # The pruned run stopped after the epoch it was judged on, and still finished its records.
    assert len(read_csv((pruned / "history.csv").read_text())) == 1
    assert len(read_csv((complete / "history.csv").read_text())) == 3
    assert yaml.safe_load((pruned / "training.json").read_text())["search_trial"]["pruned_at"] == 1
    assert (pruned / "metrics.json").is_file() and (pruned / "model.keras").is_file()
    # Every epoch's objective reached the study, through its storage.
    (complete_trial,) = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    history = read_csv((complete / "history.csv").read_text())
    assert complete_trial.intermediate_values == pytest.approx({i + 1: float(r["val_accuracy"]) for i, r in enumerate(history)})
    assert "trial %d pruned after epoch 1" % next(t.number for t in trials if t.state.name == "PRUNED") in result.stdout
    summary = {row["run"]: row["status"] for row in read_csv((tmp_path / "sweep" / "summary.csv").read_text())}
    assert summary == {pruned.name: "pruned (epoch 1)", complete.name: "finished"}
    compared = read_csv(run_zoo("compare", str(tmp_path / "sweep"), "--csv").stdout)
    assert {row["run"]: row["status"] for row in compared} == summary

    # The best trial, as a re-runnable result; the study's plots.
    best = yaml.safe_load((tmp_path / "sweep" / "best.yaml").read_text())
    assert best["trial"] == complete_trial.number and best["value"] == complete_trial.value
    assert best["run_dir"] == str(complete.resolve())
    assert "trainer.learning_rate=0.01" in best["overrides"] and "trainer.learning_rate=0.01" in best["command"]
    assert "model.filters=4" in best["overrides"]
    assert f"to train it again: {best['command']}" in result.stdout
    assert (tmp_path / "sweep" / "optimization_history.png").stat().st_size > 10_000
    assert not (tmp_path / "sweep" / "param_importances.png").exists()  # one complete trial ranks nothing

    # The finished study, run again: its result, exit 0, nothing trained.
    again = run_zoo(*pruning_search(tmp_path / "again", storage), cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "is finished: 2 of 2 trials done" in again.stdout
    assert f"best trial: {complete_trial.number}" in again.stdout
    assert not any((tmp_path / "again").glob("*_cnn_classifier"))


@pytest.mark.slow
def test_a_failed_trial_is_marked_failed_and_the_failure_rate_decides_whether_the_search_goes_on(tmp_path):
    import optuna

    def search(study: str, *extra: str):
        # Random seed 137 draws a kernel of 10^17 squared first (too large to exist: the trial's run fails as it
        # builds the model), then one of about 45. (The space's ends are checked before any trial: a value the
        # run's config refuses, a negative learning rate, fails no trial.)
        return run_zoo(
            "train", "-m", "hydra/sweeper=optuna", "hydra/sweeper/sampler=random", "hydra.sweeper.sampler.seed=137",
            "hydra.sweeper.n_trials=2", "model.filters=4", "metrics=[accuracy]", "objective=val_accuracy", "trainer.epochs=1",
            "model.kernel_size=tag(log,int(interval(1,4611686018427387904)))", f"hydra.sweeper.storage=sqlite:///{tmp_path / 'db.sqlite'}",
            f"hydra.sweeper.study_name={study}", f"hydra.sweep.dir={tmp_path / study}", *extra, cwd=tmp_path,
        )  # fmt: skip

    def states(study: str):
        trials = optuna.load_study(study_name=study, storage=f"sqlite:///{tmp_path / 'db.sqlite'}").get_trials()
        return [t.state.name for t in trials]

    stopped = search("strict")  # max_failure_rate=0: the first failure ends the search, in one line
    assert stopped.returncode == 2
    assert error_lines(stopped.stderr) == [
        f"zoo: error: 1 of 1 trials failed (hydra.sweeper.max_failure_rate=0.0); see their train.log in {tmp_path / 'strict'}"
    ]
    assert "trial 0 failed: too large to exist" in stopped.stderr
    [log] = (tmp_path / "strict").glob("*/train.log")  # where the last line sends the user: it says why too
    assert "[zoo][INFO] - stopped: too large to exist" in log.read_text().splitlines()[-1]
    assert "Traceback" not in stopped.stderr and states("strict") == ["FAIL"]
    tolerant = search("tolerant", "hydra.sweeper.max_failure_rate=0.5", "hydra.sweeper.n_jobs=2")
    assert tolerant.returncode == 0, tolerant.stderr[-3000:]
    assert states("tolerant") == ["FAIL", "COMPLETE"]
    assert "best trial: 1 " in tolerant.stdout


@pytest.mark.parametrize(
    "setting, message",
    [
        ("hydra.sweeper.pruner=medain", "hydra.sweeper.pruner='medain' is not known; choose one of: none, median"),
        ("+hydra.sweeper.pruner.warmup=3", "hydra.sweeper.pruner.warmup is not an option of median (MedianPruner); its options: n_startup_trials"),
        ("hydra/sweeper/pruner=hyperbnd", "unknown hydra/sweeper/pruner 'hyperbnd'; did you mean 'hyperband'?"),
        ("hydra/sweeper/sampler=grid", "trainer.learning_rate: the grid sampler needs choice() or range() values, not an interval"),
        ("hydra.sweeper.direction=up", "hydra.sweeper.direction='up'; choose auto, maximize or minimize"),
        ("objective=null", "an Optuna search optimises the run's objective, and none is set"),
        # The space's ends and choices are runs checked before any trial (the trial drawing one had failed).
        ("model.dense_units=int(interval(1,99999999999999999999))", "model.dense_units=100000000000000000000 is beyond the 64-bit"),
        ("trainer.weight_decay=interval(0,1e300)", "trainer.weight_decay=1e+300 is beyond the float32 range"),
        # A typo had been blamed on a metric plugin declaring no greater_is_better.
        ("objective=val_acc", "objective=val_acc is no loss and names no metric (val_ or test values of: accuracy, auc"),
        ("hydra.sweeper.storage=nope://x", "hydra.sweeper.storage=nope://x cannot be opened (Can't load plugin: sqlalchemy.dialects:nope)"),
    ],
)
def test_a_search_misconfigured_fails_in_one_line_before_any_trial(setting, message, tmp_path):
    result = run_zoo("train", "-m", "hparams_search=digits_cnn", setting, f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path)
    assert result.returncode != 0
    assert error_lines(result.stderr) == [next(l for l in result.stderr.splitlines() if l.startswith("zoo: error:"))]
    assert message in result.stderr
    assert not any((tmp_path / "sweep").glob("*_cnn_classifier"))


@pytest.mark.parametrize("n_jobs", ["100000", "0", "-100000"])
def test_joblib_is_never_asked_for_more_processes_than_the_machine_holds(n_jobs, tmp_path):
    """joblib starts all n_jobs worker processes at once, whatever the number of jobs, each
    loading TensorFlow: n_jobs=100000 for a sweep of two jobs had started hundreds when
    the machine ran out of memory. Refused in one line, before any process starts."""
    import joblib

    result = run_zoo("train", "-m", "hydra/launcher=local", f"hydra.launcher.n_jobs={n_jobs}", "seed=1,2",
                     f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path, timeout=60)  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    [line] = error_lines(result.stderr)
    assert f"hydra.launcher.n_jobs={n_jobs}: give the number of jobs to run at once, 1 to {4 * joblib.cpu_count()}" in line
    assert not (tmp_path / "sweep").exists()


@pytest.mark.skipif(shutil.which("taskset") is None, reason="taskset (util-linux) is not installed")
def test_joblib_jobs_are_bounded_by_the_cpus_this_process_may_use(tmp_path):
    """A SLURM job's --cpus-per-task, taskset or a container's quota: the machine's CPU count
    had bounded n_jobs, though joblib's -1 counts only these."""
    result = subprocess.run(
        ["taskset", "-c", str(min(os.sched_getaffinity(0))), sys.executable, "-m", "zoo", "train", "-m", "hydra/launcher=local", "hydra.launcher.n_jobs=5",
         "seed=1,2", f"hydra.sweep.dir={tmp_path / 'sweep'}"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2 and "hydra.launcher.n_jobs=5: give the number of jobs to run at once, 1 to 4 (4 per CPU here" in result.stderr, result.stderr[-2000:]


@pytest.mark.parametrize(
    "setting, message",
    [
        ("timeout=0", "give the seconds a job may run, more than 0, or null for no limit"),
        ("pre_dispatch=0", "give how many jobs to hand out at first, 1 or more"),  # had run no job, status 0
        ("pre_dispatch='0*n_jobs'", "give how many jobs to hand out at first, 1 or more"),
        ("batch_size=0", "give how many jobs a worker takes at a time, 1 or more, or auto"),
    ],
)
def test_joblib_settings_that_would_run_no_job_are_refused_before_it_starts(setting, message, tmp_path):
    result = run_zoo("train", "-m", "hydra/launcher=local", f"hydra.launcher.{setting}", "seed=1,2",
                     f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path, timeout=60)  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    [line] = error_lines(result.stderr)
    assert f"hydra.launcher.{setting.split('=')[0]}=" in line and message in line
    assert not (tmp_path / "sweep").exists()


@pytest.mark.skipif(not own_mount_namespace_possible(), reason="needs a mount namespace of its own (root, util-linux's unshare)")
@pytest.mark.parametrize("shm", ["ro,size=64k", "size=4k"])
def test_a_machine_without_room_for_joblibs_semaphores_is_said_to_lack_it(shm, tmp_path):
    """joblib's worker processes share semaphores in /dev/shm, which a container gives 64 MB
    of, or none, or read-only. Read-only, joblib had run the jobs as threads of one process
    (which share Keras' and Hydra's state), after two warnings; full, the sweep had failed
    on "could not write a file (No space left on device); make room", the disk being fine.
    Here a /dev/shm of its own, as such a machine's."""
    sweep = ["-m", "hydra/launcher=local", "seed=1,2", "trainer.epochs=1", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    command = " ".join([sys.executable, "-m", "zoo", "train", *sweep])
    result = subprocess.run(
        ["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o {shm} tmpfs /dev/shm && exec {command} hydra.launcher.n_jobs=2"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    [line] = error_lines(result.stderr)
    assert "joblib cannot start its worker processes here: the semaphores they share live in /dev/shm (" in line, line
    assert "give /dev/shm room and write access (docker run --shm-size=1g), or run the jobs one after another: hydra.launcher.n_jobs=1" in line
    if shm.startswith("ro"):  # refused before the sweep starts; and one at a time, as the line says, runs without a word more
        assert "Read-only file system" in line and not (tmp_path / "sweep").exists()
        result = subprocess.run(
            ["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o {shm} tmpfs /dev/shm && exec {command} hydra.launcher.n_jobs=1"],
            cwd=tmp_path, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        assert result.returncode == 0 and "Warning" not in result.stderr, result.stderr[-2000:]
        assert len(list((tmp_path / "sweep").glob("*/metrics.json"))) == 2


@pytest.mark.parametrize("value, message", [("0", "JOBLIB_MULTIPROCESSING=0 in the environment keeps joblib from starting worker"),
                                            ("yes", "JOBLIB_MULTIPROCESSING=yes in the environment: joblib reads 0")])  # fmt: skip
def test_joblib_kept_from_starting_processes_by_the_environment_is_named(value, message, tmp_path):
    result = run_zoo("train", "-m", "hydra/launcher=local", "hydra.launcher.n_jobs=2", "seed=1,2",
                     f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path, env={"JOBLIB_MULTIPROCESSING": value}, timeout=60)  # fmt: skip
    [line] = error_lines(result.stderr)
    assert result.returncode == 2 and message in line, result.stderr[-2000:]
    assert not (tmp_path / "sweep").exists()


def test_jobs_past_joblibs_timeout_are_said_to_be_stopped_and_how_to_continue_them(tmp_path):
    """joblib kills every worker when one job passes its timeout: the sweep had ended on
    "joblib failed: TimeoutError: at parallel.py:773: raise self._result"."""
    result = run_zoo("train", "-m", "hydra/launcher=local", "hydra.launcher.timeout=1", "seed=1,2",
                     f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path, timeout=120)  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    [line] = error_lines(result.stderr)
    assert "a job ran longer than hydra.launcher.timeout allows" in line and "the same command continues them" in line


@pytest.mark.parametrize("launcher, minutes", [("submitit_local", "0"), ("slurm", "-5")])
def test_a_submitit_job_gets_at_least_a_minute(launcher, minutes, tmp_path):
    """timeout_min=0 had each job killed as it started, the sweep failing on submitit's
    "has not produced any output" with a path to its log."""
    result = run_zoo("train", "-m", f"hydra/launcher={launcher}", f"hydra.launcher.timeout_min={minutes}", "seed=1,2",
                     f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path, timeout=60)  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    assert error_lines(result.stderr) == [
        f"zoo: error: hydra.launcher.timeout_min={minutes}: give the minutes a job may run, a whole number from 1"
    ]
    assert not (tmp_path / "sweep").exists()


@pytest.mark.parametrize("size", ["0", "-1"])
def test_the_grid_sweepers_batch_size_is_checked_before_it_starts(size, tmp_path):
    """0 or less failed on a bare assertion deep in Hydra ("AssertionError: ")."""
    result = run_zoo("train", "-m", f"hydra.sweeper.max_batch_size={size}", "seed=1,2", f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path, timeout=60)
    assert result.returncode == 2, result.stderr[-2000:]
    assert error_lines(result.stderr) == [
        f"zoo: error: hydra.sweeper.max_batch_size={size}: give how many jobs to launch at a time, 1 or more, or null for all"
    ]
    assert not (tmp_path / "sweep").exists()


def test_a_library_failing_without_a_message_is_named_by_the_line_that_failed():
    from zoo.cli import describe_failure

    def library_check(value):
        # as a library's bare `assert` fails (pytest gives this module's own asserts a message)
        if value <= 0:
            raise ValueError()

    try:
        library_check(0)
    except ValueError as exc:
        line = describe_failure(exc)
    assert re.fullmatch(r"test_sweeps failed: ValueError: at test_sweeps\.py:\d+: raise ValueError\(\); ZOO_TRACEBACK=1 shows where", line), line


def test_two_jobs_of_a_sweep_never_share_a_folder(tmp_path):
    """hydra.sweep.subdir=x gave both jobs the folder x: the second job's Hydra records were
    written over the first job's finished run (refused only then, inside the job)."""
    result = run_zoo("train", "-m", "seed=1,2", "hydra.sweep.subdir=x", f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path, timeout=60)
    assert result.returncode == 2, result.stderr[-2000:]
    [line] = error_lines(result.stderr)
    assert "jobs 0 and 1 of the sweep would share the folder 'x', each writing its records over the other's" in line
    assert not (tmp_path / "sweep").exists()


def test_jobs_in_folders_named_after_their_overrides(tmp_path):
    """Hydra's documented ``hydra.sweep.subdir=${hydra.job.override_dirname}`` was refused on
    the command line ("not interpolations"); its folders (``seed=1,trainer.epochs=1``) are
    runs that the other commands take."""
    sweep = tmp_path / "sweep"
    result = run_zoo("train", "-m", "model=mlp_classifier", "seed=1,2", "trainer.epochs=1", f"hydra.sweep.dir={sweep}",
                     "hydra.sweep.subdir=${hydra.job.override_dirname}", cwd=tmp_path, timeout=240)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    assert jobs == ["model=mlp_classifier,seed=1,trainer.epochs=1", "model=mlp_classifier,seed=2,trainer.epochs=1"]
    compared = run_zoo("compare", str(sweep / jobs[0]), str(sweep / jobs[1]), cwd=tmp_path)
    assert compared.returncode == 0, compared.stderr[-2000:]
    assert [line.split()[0] for line in compared.stdout.splitlines()[1:3]] == [str(sweep / job) for job in jobs]


@pytest.mark.slow  # six jobs, killed; then the rest, trained
@pytest.mark.parametrize(
    "launcher, fewer, said",
    [(["hydra/launcher=local", "hydra.launcher.n_jobs=6"], ["hydra.launcher.n_jobs=2"],
      # joblib's paragraph: "A worker process ... could be caused by a segmentation fault ... or by an excessive memory usage"
      "a job's process was killed (SIGKILL), by the kernel for memory most likely: the jobs running at once, each its own "
      "TensorFlow, did not fit within the 1000.0 MB this process may use; lower hydra.launcher.n_jobs (the finished jobs are "
      "kept, and the same command continues the others from their checkpoints)"),
     # submitit's: "Job ... has not produced any output (state: FINISHED) No error stream produced. Look at stdout: ... ---..."
     (["hydra/launcher=submitit_local"], ["hydra.sweeper.max_batch_size=2"],
      "a job ended without its result, killed from outside (for memory most likely, or at a time limit) (its log: ")],
    ids=["joblib", "submitit"],
)  # fmt: skip
def test_parallel_jobs_killed_for_memory_are_said_so_and_continue_with_fewer(launcher, fewer, said, tmp_path):
    """The kernel killed jobs that together passed a container's or job's memory (each its
    own TensorFlow); the sweep had ended on the launcher's own paragraph. Fewer at once
    continue the same sweep."""
    group = control_group("memory", tmp_path)
    limit = group / ("memory.limit_in_bytes" if (group / "memory.limit_in_bytes").exists() else "memory.max")

    def sweep(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "zoo", "train", "-m", *launcher, *args, "model=mlp_classifier", "trainer.epochs=1",
             "seed=1,2,3,4,5,6", f"hydra.sweep.dir={tmp_path / 'sweep'}"], cwd=tmp_path, capture_output=True,
            text=True, timeout=300, stdin=subprocess.DEVNULL, preexec_fn=lambda: (group / "cgroup.procs").write_text(f"{os.getpid()}\n"),
        )  # fmt: skip

    try:
        limit.write_text(f"{1000 * 2**20}\n")
        killed = sweep()
        limit.write_text(f"{1500 * 2**20}\n")  # room to spare for two at once: the point is what they continue
        with_fewer = sweep(*fewer)
    finally:
        remove_control_group(group)
    assert killed.returncode == 2, killed.stderr[-3000:]
    [line] = error_lines(killed.stderr)
    assert line.startswith(f"zoo: error: {said}"), line
    assert with_fewer.returncode == 0, with_fewer.stderr[-3000:]
    assert all((tmp_path / "sweep" / f"{n}_mlp_classifier" / "metrics.json").is_file() for n in range(6))


def test_a_large_sweep_is_checked_without_hydra_composing_each_job(monkeypatch, tmp_path):
    """Every job whose values no earlier one had was composed by Hydra (0.17 s each): a
    2,000-seed sweep was checked for 2.5 minutes before it started, silently. Jobs differing
    in plain values are derived from one composed job, and checked the same."""
    import zoo.config
    from zoo.arguments import check_overrides

    composed = []
    compose_job = zoo.config.compose_job
    monkeypatch.setattr(zoo.config, "compose_job", lambda *args, **kwargs: composed.append(args) or compose_job(*args, **kwargs))
    check_overrides(["-m", f"hydra.sweep.dir={tmp_path / 'sweep'}", "seed=range(0,300)", "model.filters=4,8", "trainer.learning_rate=0.01"])
    assert len(composed) == 1
    with pytest.raises(ZooError, match=r"model\.filters must be at least 1, got -3"):
        check_overrides(["-m", f"hydra.sweep.dir={tmp_path / 'sweep'}", "seed=range(0,300)", "model.filters=4,-3"])
    with pytest.raises(ZooError, match=r"seed"):  # a value its node refuses: Hydra composes that job, and says so
        check_overrides(["-m", f"hydra.sweep.dir={tmp_path / 'sweep'}", "seed=1,many"])


def test_a_job_folder_name_past_the_file_systems_limit_is_refused_before_the_sweep(tmp_path):
    """Named after a dozen overrides, a job's folder took 314 bytes: Hydra failed making it
    ("File name too long") with the sweep begun and its multirun.yaml written."""
    many = [f"model.{key}={value}" for key, value in (("dropout", 0.25), ("kernel_size", 3), ("filters", 8), ("dense_units", 32))]
    many += ["metrics=[accuracy,auc,f1,precision,recall,pr_auc]", "dataset.test_fraction=0.2", "dataset.validation_fraction=0.15",
             "trainer.weight_decay=0.0001", "trainer.label_smoothing=0.0", "trainer.learning_rate=0.001", "trainer.batch_size=32"]  # fmt: skip
    result = run_zoo("train", "-m", "seed=1,2", *many, f"hydra.sweep.dir={tmp_path / 'sweep'}",
                     "hydra.sweep.subdir=${hydra.job.override_dirname}", cwd=tmp_path, timeout=60)  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    [line] = error_lines(result.stderr)
    assert re.search(r"job 0 of the sweep would get the folder '.*', a name of \d+ bytes, past the 255", line), line
    assert "override_dirname.exclude_keys" in line and not (tmp_path / "sweep").exists()


@pytest.mark.parametrize(
    "args",
    [["-m", "hparams_search=digits_cnn", "hydra.sweeper.storage=postgresql://bob:s3cret@127.0.0.1/studies"],
     ["loggers=[mlflow]", "loggers.mlflow.tracking_uri=http://bob:s3cret@127.0.0.1:5000"],
     ["-m", "seed=1,2", "loggers=[mlflow]", "loggers.mlflow.tracking_uri=https://bob:s3cret@127.0.0.1"]],
    ids=["optuna", "mlflow", "mlflow-sweep"],
)  # fmt: skip
def test_a_password_in_a_url_is_refused_before_it_is_printed_or_recorded(args, tmp_path):
    """It was printed ("resuming Optuna study ... (postgresql://bob:s3cret@...)"), written
    into multirun.yaml, each run's config.yaml and Hydra's overrides.yaml, and put on every
    trial's command line, which any user of the machine sees in ``ps``."""
    result = run_zoo("train", *args, "trainer.epochs=1", cwd=tmp_path, timeout=60)
    assert result.returncode == 2, result.stderr[-2000:]
    [line] = error_lines(result.stderr)
    assert "holds a password" in line and ("PGPASSWORD" in line or "MLFLOW_TRACKING_PASSWORD" in line), line
    assert "s3cret" not in result.stdout + result.stderr and list(tmp_path.iterdir()) == []


def test_a_study_is_never_written_into_a_database_or_file_of_yours(tmp_path):
    """Optuna would add its tables to any SQLite database, and SQLite would wait on a pipe."""
    import sqlite3

    mine = tmp_path / "mine.db"
    with sqlite3.connect(mine) as database:
        database.execute("CREATE TABLE notes (text)")
    database.close()
    (tmp_path / "notes.txt").write_text("mine\n")
    (tmp_path / "folder").mkdir()
    os.mkfifo(tmp_path / "pipe")
    # A study's database with a page overwritten (a disk error, a copy cut short): Optuna had
    # failed on "invalid data in the commit, e.g. exceeding max length"; MLflow likewise.
    damaged = tmp_path / "damaged.db"
    with sqlite3.connect(damaged) as database:
        for table in ("studies", "trials", "version_info", "experiments", "runs", "alembic_version"):
            database.execute(f"CREATE TABLE {table} (text)")
        database.executemany("INSERT INTO trials VALUES (?)", [("x" * 200,)] * 2000)
    database.close()
    with damaged.open("r+b") as handle:
        handle.seek(4096 * 4)
        handle.write(b"\xff" * 4096)
    malformed = "is a damaged SQLite database (database disk image is malformed); restore it from a backup, or give a new file"
    from zoo_plugins.loggers import check_tracking_store

    with pytest.raises(ValueError, match=re.escape(f"{damaged} {malformed}")):
        check_tracking_store(f"sqlite:///{damaged}")
    before = {path: path.read_bytes() for path in (mine, tmp_path / "notes.txt", damaged)}
    for name, problem in (("mine.db", "is a file of yours, not an Optuna study's"), ("notes.txt", "is a file of yours"),
                          ("folder", "is not a regular file"), ("pipe", "is not a regular file"), ("damaged.db", malformed)):  # fmt: skip
        result = run_zoo("train", "-m", "hparams_search=digits_cnn", f"hydra.sweeper.storage=sqlite:///{tmp_path / name}",
                         f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path, timeout=120)  # fmt: skip
        assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
        [line] = error_lines(result.stderr)
        assert f"{tmp_path / name} {problem}" in line
    assert {path: path.read_bytes() for path in before} == before


def test_search_spaces_map_to_optuna_distributions():
    import optuna.distributions as d

    from zoo.search import search_space

    space, fixed = search_space(
        {"a": "interval(0.1, 1.0)", "b": "tag(log, interval(0.0001, 0.1))", "c": "choice(16, 32)", "d": "range(2, 9, 3)",
         "e": "int(interval(1, 10))", "f": "7", "h": "tag(log, int(interval(1, 64)))"},
        ["c=choice(1,2,3)", "g=x,y"],
    )  # fmt: skip
    assert space == {
        "a": d.FloatDistribution(0.1, 1.0), "b": d.FloatDistribution(0.0001, 0.1, log=True),
        "c": d.CategoricalDistribution([1, 2, 3]), "d": d.IntDistribution(2, 8, step=3), "e": d.IntDistribution(1, 10),
        "g": d.CategoricalDistribution(["x", "y"]), "h": d.IntDistribution(1, 64, log=True),
    }  # fmt: skip
    assert fixed == {"f": "7"}
    # A range's ends are computed, not listed: 10^8 values would take gigabytes.
    space, _ = search_space({"s": "range(0, 100000000)", "r": "range(0, 1, 0.25)", "n": "range(9, 0, -3)"}, [])
    assert space["s"] == d.IntDistribution(0, 99_999_999) and space["r"] == d.FloatDistribution(0.0, 0.75, step=0.25)
    assert space["n"] == d.IntDistribution(3, 9, step=3)
    with pytest.raises(Exception, match="choices; search a range"):
        search_space({"c": "shuffle(range(0, 100000))"}, [])


def test_a_grid_sweep_too_big_to_list_is_refused_at_once(tmp_path):
    """Hydra's grid sweeper lists every job before the first starts (and the zoo checked
    each): 10^8 of them was a hang. Over 10,000 jobs is one line; a search samples instead."""
    for args, named in (
        (["seed=range(0,100000000)"], "seed=range(0,100000000): over 10,000"),
        (["seed=range(0,200)", "trainer.epochs=range(1,200)"], "seed=range(0,200): 200, trainer.epochs=range(1,200): 199"),
    ):
        result = run_zoo("train", "-m", *args, f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path, timeout=60)
        assert result.returncode == 2, result.stderr[-2000:]
        [line] = error_lines(result.stderr)
        assert line.startswith("zoo: error: the sweep would run more than 10,000 jobs (") and named in line, line
    assert not (tmp_path / "sweep").exists()


def test_an_objective_the_run_does_not_log_stops_it_at_its_first_epoch(tmp_path):
    """objective=acuracy had been found out only once every epoch had trained."""
    run_dir = tmp_path / "run"
    result = run_zoo("train", "model=mlp_classifier", "dataset=digits", "trainer.epochs=50", "loggers=none", "objective=acuracy",
                     f"hydra.run.dir={run_dir}", cwd=tmp_path, timeout=300)  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    [line] = error_lines(result.stderr)
    assert line.startswith("zoo: error: objective='acuracy' is none of the values this run logs (accuracy, auc, f1, loss,"), line
    assert "TensorFlow" not in result.stderr  # its start-up lines went to train.log, as in every run
    assert not (run_dir / "metrics.json").exists() and not (run_dir / "history.csv").exists()  # stopped in epoch 1


@pytest.mark.parametrize(
    "args, message",
    [  # each had launched no job with exit 0, or failed on Hydra's or OmegaConf's own words
        (["trainer.epochs=range(1,1)"], "trainer.epochs=range(1,1) holds no value, so the sweep would launch no job"),
        (["seed=range(5,1)"], "seed=range(5,1) holds no value"),
        (["dataset=glob(nothing*)"], "dataset=glob(nothing*) matches none of dataset's options (breast_cancer, cifar10, digits,"),
        (["seed=glob(*)"], "glob(...) picks among a config group's options (model=glob(cnn*)), and seed is not a group"),
        (["seed=range(1,3,0)"], "seed=range(1,3,0): Hydra cannot list its values (range() arg 3 must not be zero)"),
        (["seed=choice(choice(1,2),3)"], "a sweep is the whole value (key=choice(a,b), key=range(1,4)), not inside"),
        (["model.hidden_units=[choice(4,8)]"], "model.hidden_units=[choice(4,8)]: a sweep is the whole value"),
        (["trainer.epochs=interval(1,3)"], "interval(...) is a range for a search to sample (hparams_search=NAME"),
        (["seed=choice()"], "seed=choice(): Hydra cannot read it (ValueError while evaluating 'choice()': empty choice is not legal)"),
    ],
)
def test_sweep_expressions_that_cannot_run_are_one_line_before_any_job(args, message, tmp_path):
    from zoo.arguments import check_overrides, refuse_code_from_the_command_line

    argv = ["-m", "model=mlp_classifier", "dataset=digits", *args, f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    with pytest.raises(ZooError) as refused:
        refuse_code_from_the_command_line(argv)
        check_overrides(argv)
    assert message in str(refused.value) and "\n" not in str(refused.value), refused.value
    assert not (tmp_path / "sweep").exists()


@pytest.mark.parametrize(
    "params, extra, message",
    [  # a preset's own grid sweep (hydra.sweeper.params) had gone past every check of the command line's
        ("seed: range(0,100000000)", "", "the sweep would run more than 10,000 jobs (seed=range(0,100000000): over 10,000)"),  # a hang
        ("seed: range(1,1)", "", "seed=range(1,1) holds no value"),  # no job, exit 0
        ("model.filters: 4,-3", "", "model.filters must be at least 1, got -3"),  # after job 0 had trained
        ("seed: 1,2", "  sweep:\n    subdir: same\n", "jobs 0 and 1 of the sweep would share the folder 'same'"),
    ],
)
def test_a_sweep_a_preset_sets_is_checked_as_the_command_lines_is(params, extra, message, tmp_path):
    from zoo.arguments import check_overrides, refuse_code_from_the_command_line

    (tmp_path / "mine" / "experiment").mkdir(parents=True)
    preset = f"# @package _global_\nhydra:\n{extra}  sweeper:\n    params:\n      {params}\n"
    (tmp_path / "mine" / "experiment" / "mine.yaml").write_text(preset)
    argv = ["-m", "--config-dir", str(tmp_path / "mine"), "+experiment=mine", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    refuse_code_from_the_command_line(argv)
    with pytest.raises(ZooError) as refused:
        check_overrides(argv)
    assert message in str(refused.value), refused.value
    assert not (tmp_path / "sweep").exists()


def test_the_grid_sweepers_params_are_not_set_from_the_command_line():
    """``hydra.sweeper.params={seed: ...}`` had failed as OmegaConf's "AttributeError:
    'NoneType' object has no attribute 'get'"; swept overrides say the same."""
    from zoo.arguments import refuse_code_from_the_command_line

    for spelling in ("hydra.sweeper.params={seed: 'range(0,3)'}", "hydra.sweeper={params: {seed: '1,2'}}", "hydra.sweeper.params.seed='1,2'"):
        with pytest.raises(ZooError, match=r"give the range as a swept override instead, e.g. -m 'seed="):
            refuse_code_from_the_command_line(["-m", spelling])


def test_a_glob_over_a_groups_options_is_listed_as_hydras_sweeper_lists_it():
    """``model=glob(...)`` had failed every command on "HydraException: ConfigLoader is not
    set": the zoo's checks read the overrides without the configs a glob lists."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    from zoo.arguments import check_overrides, parsed_overrides

    argv = ["-m", "model=mlp_classifier", "dataset=glob(*,exclude=[cifar10,image_folder,text])", "trainer.epochs=1"]
    check_overrides(argv)
    jobs = [job for batch in BasicSweeper.split_arguments(parsed_overrides(argv), None) for job in batch]
    assert sorted(job[1] for job in jobs) == ["dataset=breast_cancer", "dataset=digits", "dataset=synthetic_cats"]


@pytest.mark.slow
def test_a_glob_sweep_trains_one_job_per_matching_option(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_zoo("train", "-m", "model=mlp_classifier", "dataset=glob([*_cancer,digits])", *TINY_JOB, "loggers=none",
                     f"hydra.sweep.dir={sweep}", cwd=tmp_path, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    trained = sorted(yaml.safe_load((job / "config.yaml").read_text())["dataset"]["name"] for job in sweep.glob("[0-9]*"))
    assert trained == ["breast_cancer", "digits"]


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


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("hydra_plugins.hydra_ray_launcher") is None, reason="hydra-ray-launcher is not installed")
def test_a_ray_job_asking_for_what_this_machine_lacks_is_refused_not_waited_for(tmp_path):
    """More CPUs than the machine has, a resource no node declares (a GPU on a machine
    without one): Ray never schedules the job, and the sweep waited for ever in silence."""
    for asked, named in (
        ("hydra.launcher.ray.remote.num_cpus=100000", "num_cpus=100000: this machine's Ray cluster has CPU "),
        ("+hydra.launcher.ray.remote.resources={TPU: 1}", "resources.TPU=1: this machine's Ray cluster has TPU 0"),
    ):
        result = run_zoo(
            "train", "-m", "hydra/launcher=ray_cluster", asked, "seed=1,2", *TINY_JOB, f"hydra.sweep.dir={tmp_path / 'sweep'}",
            cwd=tmp_path, env={"RAY_ADDRESS": "", "RAY_USAGE_STATS_ENABLED": "0"}, timeout=180,
        )  # fmt: skip
        assert result.returncode == 2, result.stderr[-3000:]
        [line] = error_lines(result.stderr)
        assert named in line and "no job would ever start" in line, line
    assert not list((tmp_path / "sweep").glob("*/metrics.json"))


def test_a_launcher_or_sweeper_whose_plugin_is_missing_names_the_extra_to_install():
    from hydra.errors import MissingConfigException

    from zoo.config import describe_composition_error

    # As Hydra words it when a shipped config's defaults name an uninstalled plugin.
    error = MissingConfigException("In 'hydra/launcher/ray_cluster': Could not load 'hydra/launcher/ray'.", "hydra/launcher/ray")
    assert describe_composition_error(error) == (
        "hydra/launcher=ray needs its Hydra plugin, which is not installed: pip install 'keras-zoo[ray]'"
    )


def children_of(pid: int) -> list[int]:
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
        except OSError:
            continue
        if int(fields.get("PPid", "0").strip()) == pid:
            found.append(int(status.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow  # two jobs training until the driver is killed
def test_jobs_of_a_killed_sweep_driver_stop_at_a_checkpoint_instead_of_training_on_as_orphans(tmp_path):
    sweep_dir = tmp_path / "sweep"
    driver = subprocess.Popen(
        [sys.executable, "-m", "zoo", "train", "-m", "hydra/launcher=local", "model.filters=4,8", "trainer.epochs=500",
         f"hydra.sweep.dir={sweep_dir}"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:  # both jobs past their first epoch
            histories = list(sweep_dir.glob("*/history.csv"))
            if len(histories) == 2 and all(len(h.read_text().splitlines()) > 2 for h in histories):
                break
            time.sleep(1)
        else:
            pytest.fail("the sweep's jobs did not start training")
        workers = children_of(driver.pid)
        assert workers
        driver.kill()
        driver.wait()
    finally:
        driver.kill()
    deadline = time.monotonic() + 60
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(1)
    assert not [pid for pid in workers if alive(pid)], "worker processes went on after their driver died"
    for job in ("0_cnn_classifier", "1_cnn_classifier"):
        log = (sweep_dir / job / "train.log").read_text()
        assert "the sweep's driver" in log and "is gone: stopping this job at a checkpoint" in log
        assert list((sweep_dir / job / "checkpoints").glob("step-*.npz"))  # running the sweep again continues it
        assert not (sweep_dir / job / "metrics.json").exists()


def test_a_matplotlibrc_in_the_working_folder_runs_nothing_and_breaks_no_picture(tmp_path):
    """Matplotlib reads a matplotlibrc in the working folder first (a repository one trains
    in): its backend, imported once Optuna drew through pyplot, and its figure hooks ran
    that repository's code; text.usetex ran LaTeX on class names and, without LaTeX, failed
    the run at its end. The zoo's pictures, Optuna's among them, take none of it."""
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "planted.py").write_text(
        "import os, pathlib\npathlib.Path(os.environ['PLANTED']).write_text('ran')\nFigureCanvas = None\ndef hook(figure):\n    pass\n"
    )
    (tmp_path / "matplotlibrc").write_text("backend: module://planted\nfigure.hooks: planted:hook\ntext.usetex: True\n")
    script = """
import sys
from pathlib import Path
import optuna
from zoo import artifacts, search
optuna.logging.set_verbosity(optuna.logging.WARNING)
study = optuna.create_study(direction="maximize")
study.optimize(lambda trial: trial.suggest_float("lr", 1e-4, 1e-1, log=True) + trial.suggest_int("filters", 4, 32) / 100, n_trials=4)
out = Path(sys.argv[1])
print(*sorted(p.name for p in search.plot_study(study, out, "accuracy")))
artifacts.plot_training_curves(out / "curves.png", {"loss": [1.0, 0.5], "val_loss": [1.1, 0.7]}, "猫 $x_1$ & run_1")
"""
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "mine"), "PLANTED": str(tmp_path / "ran")}
    result = subprocess.run([sys.executable, "-c", script, str(out)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["optimization_history.png", "param_importances.png"]
    assert (out / "curves.png").stat().st_size > 1000 and not (tmp_path / "ran").exists()


def test_a_pipe_named_matplotlibrc_in_the_working_folder_is_named_not_waited_on(default_run, tmp_path):
    """Matplotlib reads the working folder's matplotlibrc as it is imported (Keras imports it):
    a pipe of that name had kept every command that loads TensorFlow or draws waiting for ever."""
    os.mkfifo(tmp_path / "matplotlibrc")
    for command in (["evaluate", str(default_run[0])], ["compare", str(default_run[0]), "--plot", str(tmp_path / "both.png")]):
        result = run_zoo(*command, cwd=tmp_path, timeout=120)
        assert result.returncode == 2 and error_lines(result.stderr) == [
            f"zoo: error: {tmp_path / 'matplotlibrc'} is not a regular file (a pipe or a device), and Matplotlib reads it as "
            "it starts, waiting on it for ever; rename it, or run the zoo from another folder"
        ], result.stderr[-2000:]


def test_a_short_study_draws_whole_trials_and_ranks_no_parameters(tmp_path, monkeypatch):
    """A study of one trial drew its history on an axis ticked -0.045 to 0.045, and every
    parameter "important" at exactly 1/n: a ranking of nothing, drawn as a finding."""
    import optuna

    from zoo import search

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    drawn = {}
    monkeypatch.setattr("zoo.artifacts.save_figure", lambda figure, path: drawn.update({path.name: figure}))
    study = optuna.create_study(direction="maximize")
    study.optimize(lambda trial: trial.suggest_float("lr", 1e-4, 1e-1, log=True) + trial.suggest_int("filters", 4, 32) / 100, n_trials=1)
    assert [p.name for p in search.plot_study(study, tmp_path, "accuracy")] == ["optimization_history.png"]
    axes = drawn["optimization_history.png"].axes[0]
    low, high = axes.get_xlim()
    assert [t for t in axes.get_xticks() if low <= t <= high] == [0]
    study.optimize(lambda trial: trial.suggest_float("lr", 1e-4, 1e-1, log=True) + trial.suggest_int("filters", 4, 32) / 100, n_trials=2)
    assert [p.name for p in search.plot_study(study, tmp_path, "accuracy")] == ["optimization_history.png", "param_importances.png"]
