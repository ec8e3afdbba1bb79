"""Sweeps (``zoo train -m``): the summary a sweep leaves, and the value a hyper-parameter
search optimises (the search itself is ``zoo.search``).

``SweepCallback`` is a Hydra callback (configured in ``conf/train.yaml``), so it runs with
any sweeper and launcher: in the process that drives the sweep, before the first job and
after the last.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from zoo import artifacts
from zoo.errors import ZooError

SUMMARY = "summary.csv"
COMPARISON = "comparison.png"


class SweepCallback(Callback):
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


def objective_value(name: str, test_metrics: dict[str, Any], run_dir: Path) -> float:
    """The run's value of the search objective ``name``: a test metric (``accuracy``), or the
    last epoch's validation metric (``val_accuracy``) from ``history.csv``; for a
    cross-validated run, its mean over the folds trained."""
    import statistics

    from zoo.compare import read_history
    from zoo.crossval import FOLDS

    if FOLDS in test_metrics:
        return statistics.fmean(
            objective_value(name, metrics, run_dir / FOLDS / fold) for fold, metrics in test_metrics[FOLDS].items()
        )

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
