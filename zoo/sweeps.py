"""Sweeps (``zoo train -m``): the summary a sweep leaves, resuming an Optuna study, and
the value a hyper-parameter search optimises.

``SweepCallback`` is a Hydra callback (configured in ``conf/train.yaml``), so it runs with
any sweeper and launcher: in the process that drives the sweep, before the first job and
after the last.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, open_dict

from zoo import artifacts
from zoo.errors import ZooError

SUMMARY = "summary.csv"
COMPARISON = "comparison.png"


class SweepCallback(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweeper = config.hydra.sweeper
        if "optuna" in str(sweeper.get("_target_", "")).lower() and sweeper.get("storage"):
            resume_optuna_study(sweeper)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        write_sweep_summary(Path(config.hydra.sweep.dir))


def write_sweep_summary(sweep_dir: Path) -> None:
    """``summary.csv`` (each job's differing config values and test metrics) and
    ``comparison.png`` in the sweep directory, and the table on the terminal."""
    from zoo.tables import csv_text, print_table
    from zoo.compare import comparison_table, find_runs, plot_comparison

    try:
        runs = find_runs([sweep_dir])
    except ZooError:
        return  # no job got as far as writing its config (each failure was reported)
    header, rows = comparison_table(runs, root=sweep_dir)
    artifacts.write_text(sweep_dir / SUMMARY, csv_text(header, rows))
    if any(run.finished for run in runs):
        plot_comparison(sweep_dir / COMPARISON, runs)
    print()
    print_table(header, rows)
    print(f"\nsweep directory: {sweep_dir} ({SUMMARY}, {COMPARISON})")


def resume_optuna_study(sweeper: DictConfig) -> None:
    """Make ``n_trials`` the study's total rather than a number to add: a study found in
    its storage runs only the trials it still lacks, so an interrupted search is resumed
    by running the same command again."""
    import optuna

    storage = str(sweeper.storage)
    if storage.startswith("sqlite:///"):  # SQLite does not create the folder of its file
        Path(storage.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=sweeper.study_name, storage=storage)
    except KeyError:  # no such study yet: a fresh start
        return
    states = [trial.state for trial in study.get_trials(deepcopy=False)]
    done = states.count(optuna.trial.TrialState.COMPLETE)
    left = max(int(sweeper.n_trials) - done, 0)
    interrupted = states.count(optuna.trial.TrialState.RUNNING)
    print(
        f"resuming Optuna study {sweeper.study_name!r} ({storage}): {done} of {sweeper.n_trials} trials done, "
        f"{left} to run" + (f"; {interrupted} left running by an interrupted sweep are not counted" if interrupted else "")
    )
    with open_dict(sweeper):
        sweeper.n_trials = left
        if sweeper.get("sampler") is not None and sweeper.sampler.get("seed") is not None:
            # The sampler starts afresh: with its seed unchanged it would propose the
            # earlier trials' values again. Shifted, a resumed search stays reproducible.
            sweeper.sampler.seed = int(sweeper.sampler.seed) + len(states)


def objective_value(name: str, test_metrics: dict[str, float], run_dir: Path) -> float:
    """The run's value of the search objective ``name``: a test metric (``accuracy``), or the
    last epoch's validation metric (``val_accuracy``) from ``history.csv``."""
    from zoo.compare import read_history

    if name.startswith("val_"):
        values = read_history(run_dir / artifacts.HISTORY)
        if values.get(name):
            return values[name][-1]
        known = ", ".join(k for k in values if k.startswith("val_"))
    elif name in test_metrics:
        return test_metrics[name]
    else:
        known = ", ".join(test_metrics)
    raise ZooError(f"objective={name!r} is not among this run's metrics ({known}); choose one of them")
