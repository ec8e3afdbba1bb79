"""Comparing finished runs: which config values differ, and what each run scored.

``zoo compare RUN_DIR... | SWEEP_DIR`` and the summary a sweep leaves both come from here.
Only run files are read (``config.yaml``, ``metrics.json``, ``history.csv``): no
TensorFlow.
"""

from __future__ import annotations

import collections
import csv
import errno
import json
import math
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from zoo import artifacts
from zoo.errors import InputWarning, ZooError, one_line
from zoo.inference import FLOAT32_MAX
from zoo.tables import metric_text, printable, shorten


@dataclass
class RunRecord:
    """What a run directory says about itself."""

    path: Path
    config: dict[str, Any]  # flattened: {"trainer.learning_rate": 0.001, ...}
    metrics: dict[str, float]  # test metrics; empty if the run did not finish
    history: dict[str, list[float]] = field(default_factory=dict)
    pruned_at: Optional[str] = None  # where a search's pruner stopped it: "epoch 3", "fold 2"

    @property
    def finished(self) -> bool:
        return bool(self.metrics)

    @property
    def status(self) -> str:
        if self.pruned_at:
            return f"pruned ({self.pruned_at})"
        return "finished" if self.finished else "unfinished"


def find_runs(paths: Sequence[Path]) -> list[RunRecord]:
    """The runs named by ``paths``: run directories, or directories holding runs (a sweep),
    these in job order."""
    runs = []
    for path in map(Path, paths):
        if (path / artifacts.CONFIG).is_file():
            runs.append(read_run(path))
            continue
        if not path.is_dir():
            raise ZooError(artifacts.not_a_run_directory(path, "run directories or a sweep directory", settings=False))
        # Hidden folders are not runs: Hydra's `.hydra/` holds a config.yaml of its own.
        folders = sorted((p for p in path.iterdir() if not p.name.startswith(".") and p.is_dir()), key=_job_order)
        # Another user's private run among a team's (or one record of it) is passed over, and
        # said: it had failed the whole comparison.
        unreadable = {p: part for p in folders if (part := _unreadable_part(p)) is not None}
        private = list(unreadable)
        for folder, part in unreadable.items():
            warnings.warn(f"skipped {folder}: {'it' if part == folder else f'its {part.name}'} cannot be read by "
                          f"{artifacts.this_user()} (its permissions refuse it)", InputWarning, stacklevel=2)  # fmt: skip
        inside = [p for p in folders if p not in private and (p / artifacts.CONFIG).is_file()]
        if not inside and private:
            raise artifacts.cannot_read(private[0], PermissionError(errno.EACCES, "Permission denied"))
        if not inside:
            raise ZooError(f"{path} is neither a run directory nor a sweep of runs (no {artifacts.CONFIG} in it or its folders)")
        runs.extend(read_run(p) for p in inside)
    return runs


def _unreadable_part(run: Path) -> Optional[Path]:
    """The run's folder, or the first of its records a comparison reads, where this user's
    permissions refuse it; None where all can be read (or are absent)."""
    if not os.access(run, os.R_OK | os.X_OK):
        return run
    records = (artifacts.CONFIG, artifacts.METRICS, artifacts.TRAINING, artifacts.ENVIRONMENT)  # its history.csv is only for curves
    return next((run / name for name in records if (run / name).exists() and not os.access(run / name, os.R_OK)), None)


def _job_order(path: Path) -> tuple:
    # Sweep folders are "<job number>_<model>": sort 10 after 9.
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name))


def read_run(path: Path) -> RunRecord:
    recorded = artifacts.read_yaml(path / artifacts.CONFIG) or {}
    if not isinstance(recorded, dict):
        raise ZooError(f"{path / artifacts.CONFIG} is not a zoo run's config (not a mapping of keys); {artifacts.DAMAGED_FIX}")
    config = flatten(recorded)
    metrics_path = path / artifacts.METRICS
    metrics = artifacts.read_metrics(metrics_path) if metrics_path.is_file() else {}
    from zoo.crossval import numeric

    trial = artifacts.record_part(artifacts.read_record(path / artifacts.TRAINING), "search_trial")
    pruned_at = f"{trial.get('step', 'epoch')} {trial['pruned_at']}" if trial.get("pruned_at") else None
    # A cross-validated run's metrics are its folds' means (and spreads); the folds' own stay in the file.
    return RunRecord(path, {**config, **run_records(path)}, numeric(metrics), read_history(path / artifacts.HISTORY), pruned_at)


def run_records(path: Path) -> dict[str, Any]:
    """What a run recorded beside its config, as columns to compare: the run it started
    from (``parent``: its directory and weights digest) and the versions it ran with
    (``env.<library>``, ``env.plugin.<distribution>``)."""
    found: dict[str, Any] = {}
    environment = artifacts.read_record(path / artifacts.ENVIRONMENT)
    libraries = artifacts.record_part(environment, "libraries")
    for name, version in {"python": environment.get("python"), "zoo": environment.get("zoo"), **libraries}.items():
        if version:
            found[f"env.{name}"] = version
    for name, version in artifacts.record_part(environment, "plugins").items():
        found[f"env.plugin.{name}"] = version
    parent = artifacts.record_part(artifacts.read_record(path / artifacts.TRAINING), "init_from")
    if isinstance(parent.get("run"), str) and isinstance(parent.get("weights_sha256"), str):
        found["parent"] = f"{Path(parent['run']).name} ({parent['weights_sha256'][:12]})"
    return found


# A history of a row per epoch: 64 MB is over half a million epochs of a dozen values (an
# 800 MB one, read and plotted, kept zoo compare busy for minutes).
HISTORY_BYTES = 2**26


def read_history(path: Path) -> dict[str, list[float]]:
    """``history.csv`` as columns of numbers (``{}`` where there is none, or this user may not
    read it: said); a damaged one is a one-line error naming it."""
    if not path.is_file():
        return {}
    if path.stat().st_size > HISTORY_BYTES:
        raise ZooError(f"{path} is damaged ({path.stat().st_size / 2**20:,.0f} MB: far more rows than epochs a run trains); {artifacts.DAMAGED_FIX}")
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        # A row with more fields than the header puts them under None: float() of a list.
        return {key: [float(row[key]) for row in rows if row.get(key)] for key in (rows[0] if rows else {}) if key != "epoch"}
    except PermissionError as exc:  # another user's: the table needs none of it (it had failed the comparison)
        warnings.warn(f"{path} {artifacts.why_unreadable(exc)}: its run is compared without its curves", InputWarning, stacklevel=2)
        return {}
    except (ValueError, TypeError, UnicodeDecodeError, csv.Error) as exc:  # csv.Error: a field over csv's limit
        problem = one_line(exc)[:80]
        raise ZooError(f"{path} is damaged (not the CSV the zoo wrote: {problem}); {artifacts.DAMAGED_FIX}") from None


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(node, dict):
        return {prefix: node}
    flat: dict[str, Any] = {}
    for key, value in node.items():
        flat.update(flatten(value, f"{prefix}{key}." if isinstance(value, dict) and value else f"{prefix}{key}"))
    return flat


def differing_keys(runs: Sequence[RunRecord]) -> list[str]:
    """Config keys whose values are not the same in every run, in config order."""
    keys: list[str] = []
    for run in runs:
        keys.extend(k for k in run.config if k not in keys)
    return [
        key
        for key in keys
        # A run that recorded no environment (an older one) differs in nothing there.
        if len({json.dumps(r.config.get(key), sort_keys=True) for r in runs if key in r.config or not key.startswith("env.")}) > 1
    ]


def comparison_table(runs: Sequence[RunRecord], root: Optional[Path] = None) -> tuple[list[str], list[list[str]]]:
    """Header and rows: the run, its status where a search pruned some, each differing
    config value (blank where a run has no such setting: another model's option), then each
    test metric (blank where a run did not report it; ``unfinished`` for a run that did not
    end)."""
    keys = differing_keys(runs)
    metric_names = test_metric_names(runs)
    # A search's pruned trials end early but finish (their metrics are of the epochs they had);
    # runs without any metrics (all unfinished) say so in a column of their own.
    statuses = ["status"] if any(run.pruned_at for run in runs) or not metric_names else []
    header = ["run", *statuses, *keys, *metric_names]
    rows = []
    for run in runs:
        # Named below the folder given (a sweep's, a team's); a run given itself by its own path ("." had named it).
        name = str(run.path.relative_to(root)) if root and run.path.is_relative_to(root) and run.path != root else str(run.path)
        values = [_cell(run.config[k]) if k in run.config else "" for k in keys]
        scores = [metric_text(run.metrics[m]) if m in run.metrics else "" for m in metric_names]
        if not run.finished:
            scores = ["unfinished"] + [""] * (len(metric_names) - 1) if metric_names else []
        rows.append([name, *([run.status] if statuses else []), *values, *scores])
    return header, rows


def test_metric_names(runs: Sequence[RunRecord]) -> list[str]:
    """Every test metric the runs report, loss first, then as first reported."""
    names: list[str] = []
    for run in runs:
        names.extend(m for m in run.metrics if m not in names)
    return sorted(names, key=lambda name: name.removesuffix("_std") != "loss")


def _cell(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def label(run: RunRecord, keys: Sequence[str]) -> str:
    """A short name for a run in a plot: its differing values, each key by its last part
    where no other differing key ends alike (``model.name`` and ``dataset.name`` stay whole),
    leaving out the keys the run does not have (another model's options)."""
    ends = collections.Counter(key.rsplit(".", 1)[-1] for key in keys)

    def short(key: str) -> str:
        end = key.rsplit(".", 1)[-1]
        return end if ends[end] == 1 else key

    said = [f"{short(key)}={_cell(value)}" for key in keys if (value := run.config.get(key)) is not None]
    return ", ".join(said) or os.path.basename(os.path.abspath(run.path))  # "." too


COMPARE_NAMED_RUNS = 20  # runs named in the comparison's legend, each point labelled with its value


@artifacts.drawn_as_written
def plot_comparison(path: Path, runs: Sequence[RunRecord]) -> None:
    """One panel per test metric with a labelled point per run (the axis fitted to the runs),
    and the runs' validation loss per epoch; runs are numbered, and the legend names them by
    their differing values."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure  # no pyplot: no global state, no display needed
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator

    finished = [r for r in runs if r.finished]
    if not finished:
        raise ZooError("no run has finished, so there is nothing to plot")
    keys = differing_keys(finished)
    metric_names = test_metric_names(finished)
    curve = next((k for k in ("val_loss", "loss") if any(k in r.history for r in finished)), None)
    panels = metric_names + ([curve] if curve else [])
    columns = min(3, len(panels))
    rows = -(-len(panels) // columns)
    # A search of 200 trials drew 200 labelled points a panel and a legend 50 inches tall:
    # beyond a legend's worth, runs are plain numbered points (the table names them).
    named = len(finished) <= COMPARE_NAMED_RUNS
    fig = Figure(figsize=(4.5 * columns, 3.2 * rows + (0.25 * len(finished) if named else 0.4)), layout="constrained")
    colours = [colormaps["tab10"](i % 10) if named else "tab:blue" for i in range(len(finished))]
    numbers = list(range(len(finished)))
    for i, name in enumerate(panels):
        ax = fig.add_subplot(rows, columns, i + 1)
        if name in metric_names:
            # Points on an axis fitted to the runs, each labelled: bars from 0 made 0.88 and
            # 0.95 look alike.
            # An infinite value (a perplexity that overflowed) is in the table; a point cannot show it,
            # nor one beyond float32's range, in which a run computes its metrics (a metrics.json
            # edited to 1e308 failed the plot: "arange: cannot compute length").
            values = [v if abs(v := r.metrics.get(name, math.nan)) <= FLOAT32_MAX else math.nan for r in finished]
            ax.scatter(numbers, values, color=colours, s=60 if named else 12, zorder=3)
            for n, value in zip(numbers, values) if named else ():
                if value == value:
                    ax.annotate(f"{value:.4g}", (n, value), textcoords="offset points", xytext=(0, 7), ha="center", fontsize=8)
            known = [v for v in values if v == v]
            if not known:
                ax.text(0.5, 0.5, "no run's value can be drawn\n(see the table)", transform=ax.transAxes, ha="center", va="center")
                ax.set_yticks([])
            if known:
                low, high = min(known), max(known)
                pad = max(0.15 * (high - low), 0.02 * max(abs(high), 1e-3))
                ax.set_ylim(low - pad, high + 2 * pad)
                if 0 <= low and high <= 1 < high + 2 * pad:  # a share (accuracy, AUC): no tick past 1, which none can reach
                    ax.set_yticks([t for t in MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10]).tick_values(low - pad, 1) if low - pad <= t <= 1])
            if named:
                ax.set_xticks(numbers, [str(n) for n in numbers])
            else:
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
                ax.set_xlabel("run")
            ax.set_xlim(-0.6, len(numbers) - 0.4)
            ax.set_title(f"test {name}")
        else:
            for run, colour in zip(finished, colours):
                values = [v if abs(v) <= FLOAT32_MAX else math.nan for v in run.history.get(name, [])]
                # Many runs are faint lines; a run of one epoch is a point (as a line it had not shown at all).
                faint = {"alpha": 0.3, "linewidth": 0.8, **({"marker": "o", "markersize": 3} if len(values) == 1 else {})}
                ax.plot(range(1, len(values) + 1), values, color=colour, **({"marker": "o", "markersize": 3} if named else faint))
            ax.set_title(f"{name} per epoch")
            ax.set_xlabel("epoch")
            epochs = max(1, *(len(r.history.get(name, [])) for r in finished))
            ax.set_xlim(0.5, epochs + 0.5)
            if epochs <= 12:  # whole epochs only (a locator falls back to 0.1 steps over a short axis)
                ax.set_xticks(range(1, epochs + 1))
            else:
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    if named:
        fig.legend(
            handles=[Patch(color=c) for c in colours],
            labels=[
                shorten(printable(f"{n}: {label(r, keys)}" + (f" [{r.status}]" if r.pruned_at else "")), int(14 * 4.5 * columns))
                for n, r in zip(numbers, finished)
            ],
            loc="outside lower center",
            fontsize="small",
        )
    else:
        fig.supxlabel(f"{len(finished)} finished runs, numbered in the order 'zoo compare' lists them (a sweep's summary.csv too)", fontsize="small")
    artifacts.save_figure(fig, path)

