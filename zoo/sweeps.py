"""Sweeps (``zoo train -m``): the summary a sweep leaves, and the value a hyper-parameter
search optimises (the search itself is ``zoo.search``).

``SweepCallback`` is a Hydra callback (configured in ``conf/train.yaml``), so it runs with
any sweeper and launcher: in the process that drives the sweep, before the first job and
after the last.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
from pathlib import Path
from typing import Any, Iterator

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from zoo import artifacts
from zoo.errors import InputWarning, ZooError

SUMMARY = "summary.csv"
COMPARISON = "comparison.png"
# The process that drives a sweep (`zoo train -m`), for the jobs a local launcher (joblib)
# runs in processes of their own.
DRIVER_PID = "ZOO_SWEEP_DRIVER"

log = logging.getLogger(__name__)


class SweepCallback(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        write_sweep_summary(Path(config.hydra.sweep.dir))


# What Hydra's Ray launcher gives ray.init unless told (its own default).
RAY_OBJECT_STORE_BYTES = 78643200


def check_ray_resources(settings: Any) -> None:
    """A job asking a Ray cluster for more than it has (a GPU on a machine without one, more
    CPUs than it has, a resource no node declares) is never scheduled, and the sweep waits
    for ever in silence (Ray's autoscaler says so in its log). Ray is started here as the
    launcher would start it, which then finds it running; on a cluster of this one machine
    the request is an error, on others (which may grow) the wait is said."""
    import warnings

    import ray
    from omegaconf import OmegaConf

    def plain(node) -> dict:
        return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else dict(node or {})

    remote = plain(settings.get("remote"))
    asked = [("num_cpus", "CPU", remote.get("num_cpus")), ("num_gpus", "GPU", remote.get("num_gpus"))]
    asked += [(f"resources.{name}", name, amount) for name, amount in (remote.get("resources") or {}).items()]
    for key, name, amount in asked:
        if amount is not None and (isinstance(amount, bool) or not isinstance(amount, (int, float))):
            raise ZooError(f"hydra.launcher.ray.remote.{key}={amount}: give a number (of {name} each job takes)")
    init = plain(settings.get("init"))
    init.setdefault("object_store_memory", RAY_OBJECT_STORE_BYTES)
    if not ray.is_initialized():
        ray.init(**init)
    have = ray.cluster_resources()
    short = [(key, name, amount) for key, name, amount in asked if amount is not None and amount > have.get(name, 0)]
    if not short:
        return
    wanted = ", ".join(f"hydra.launcher.ray.remote.{key}={amount}" for key, _, amount in short)
    offered = ", ".join(f"{name} {have.get(name, 0):g}" for _, name, _ in short)
    nodes = [node for node in ray.nodes() if node.get("Alive")]
    if len(nodes) == 1 and nodes[0].get("NodeManagerAddress") == ray.util.get_node_ip_address():
        ray.shutdown()
        raise ZooError(
            f"{wanted}: this machine's Ray cluster has {offered}, so no job would ever start; ask for what it has"
            + (" (num_gpus=0 on a machine without a GPU)" if any(name == "GPU" for _, name, _ in short) else "")
        )
    warnings.warn(f"{wanted}: the Ray cluster has {offered} now; the jobs wait until it has more (Ctrl-C stops)", InputWarning)


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


def objective_check(name: str) -> Any:
    """A Keras callback that stops a run at its first epoch's end when ``objective`` names
    none of the values it logs (``objective=acuracy``): the mistake had been found only
    once training was over, by the value the run could not report."""
    from zoo.run import import_tensorflow

    import_tensorflow()  # first, so that its C++ start-up lines go to the log
    import keras

    class ObjectiveCheck(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if logs and name not in logs:  # a test metric is logged under its name while training
                raise ZooError(
                    f"objective={name!r} is none of the values this run logs ({', '.join(sorted(logs))}); choose one: "
                    "a test metric (accuracy), or the last epoch's validation value (val_accuracy)"
                )

    return ObjectiveCheck()


@contextlib.contextmanager
def stopping_with_the_driver(poll_seconds: float = 1.0) -> Iterator[None]:
    """A sweep job in a worker process of its own (joblib's) stops when the process that
    drives the sweep dies, even by SIGKILL: joblib's workers would go on training as
    orphans. The job is told as by SIGTERM (a checkpoint at the step it is at, so that the
    sweep run again continues it); a worker that does not end within a minute is ended."""
    host, _, pid = os.environ.get(DRIVER_PID, "").rpartition(":")
    driver = int(pid) if pid.isascii() and pid.isdigit() and len(pid) < 20 else 0
    if not driver or driver == os.getpid() or host != socket.gethostname():
        yield  # no sweep, a job run in the driver itself, or one on another machine (SLURM, Ray)
        return
    parent = os.getppid()
    finished = threading.Event()

    def watch() -> None:
        while not finished.wait(poll_seconds):
            if os.getppid() == parent and _alive(driver):
                continue
            log.warning("the sweep's driver (process %d) is gone: stopping this job at a checkpoint", driver)
            os.kill(os.getpid(), signal.SIGTERM)
            finished.wait(60)
            os._exit(128 + signal.SIGTERM)  # an orphan worker: nothing is waiting for it

    threading.Thread(target=watch, daemon=True, name="zoo-driver-watch").start()
    try:
        yield
    finally:
        finished.set()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process now holds that number: ours is gone
        return False
    return True
