"""A training run: a plain function over a composed config.

``train(cfg, run_dir)`` validates the config, loads the dataset as ``tf.data``, builds and
compiles the model inside the device's strategy scope, trains it with zoo's loop
(``zoo.training``: resumable at any step), evaluates on the test split and leaves the run
directory complete::

    config.yaml                  the resolved config
    history.csv                  per epoch: loss and metrics, training and validation
    checkpoints/                 the newest two training checkpoints (zoo.checkpoints)
    model.keras                  the trained model
    plots/training_curves.png    loss and each metric per epoch
    plots/roc_curve.png          classifiers: ROC curves on the test split
    plots/confusion_matrix.png   classifiers: true against predicted class on the test split
    plots/reconstructions.png    image autoencoders: test images and their reconstructions
    plots/samples.png            image generators (VAE, GAN): new samples
    samples.txt                  text generators: new samples
    spec.json                    what the dataset yields (shape, classes or vocabulary)
    data.json                    the dataset's loading report, where it gives one
    env.json                     versions, plugins, device and git commit the run ran with
    training.json                how training ended: epochs, early stopping, the run it started from
    tensorboard/                 TensorBoard logs (loggers=[tensorboard], the default)
    metrics.json                 final test metrics (written last: the run finished)
    .lock                        held by the process training the run
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import re
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

from omegaconf import DictConfig, OmegaConf

from zoo import artifacts, records
from zoo.config import RunPlan, absolute_paths, check_run_references, data_paths, divergence_fix, literal, plan_run, refuse_beyond_memory, run_references
from zoo.errors import InputWarning, ZooError, innermost_module, one_line
from zoo.hookspecs import CLASSIFICATION, INFINITE_CARDINALITY, RECONSTRUCTION, DataSpec, RunInfo, Splits
from zoo.limits import address_space_limit, refuse_what_tensorflow_cannot_start, thread_failure_line
from zoo.tables import shorten, visible

log = logging.getLogger(__name__)

SKIPPED_SHOWN = 5  # unreadable files named on the terminal; the rest are counted


def import_tensorflow():
    """Import TensorFlow with its C++ start-up lines (absl's notice, oneDNN's) kept off the
    terminal: they go to the log (``train.log``), or stay on the terminal with ``ZOO_TF_LOGS=1``."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "keras" not in sys.modules:
        os.environ["KERAS_BACKEND"] = "tensorflow"
    limit_malloc_arenas()
    threads = os.environ.get("TF_NUM_INTRAOP_THREADS", "").strip()  # TensorFlow's own setting, left from other work
    if re.fullmatch(r"-0*[1-9]\d*", threads) and "tensorflow" not in sys.modules:
        # TensorFlow aborts at its first op (a C++ check failing, a core dump, 30 lines of stack)
        raise ZooError(
            f"TF_NUM_INTRAOP_THREADS={threads} in the environment is a negative thread count, which TensorFlow aborts "
            "on; unset it, or give 0 (TensorFlow's choice) or more"
        )
    if "tensorflow" not in sys.modules:
        refuse_what_tensorflow_cannot_start()
        refuse_a_keras_json_keras_refuses()
        refuse_libraries_older_than_the_zoo_needs()
        temporary_folder_tensorflow_takes()
    if "matplotlib" not in sys.modules:  # Keras imports it
        artifacts.refuse_a_matplotlibrc_that_waits()
    quiet = os.environ.get("ZOO_TF_LOGS", "") != "1" and "tensorflow" not in sys.modules
    try:
        with native_output_logged("TensorFlow at start-up", logging.INFO) if quiet else contextlib.nullcontext():
            import tensorflow as tf
    except (ImportError, MemoryError) as exc:
        import importlib.util

        if isinstance(exc, ImportError) and importlib.util.find_spec("tensorflow") is None:
            raise ZooError("TensorFlow is not installed; install it with pip install 'keras-zoo[cpu]' (or [gpu])") from None
        reason = one_line(exc)[:200] or type(exc).__name__
        limit = address_space_limit()
        raise ZooError(
            f"TensorFlow is installed but could not be loaded ({reason})"
            + (f"; {limit}, too little for TensorFlow: raise it" if limit else "; reinstall it (pip install --force-reinstall tensorflow)")
        ) from None
    logging.getLogger("tensorflow").addFilter(demote_advice)
    keras = sys.modules.get("keras")
    if keras is not None and keras.backend.backend() != "tensorflow":  # imported before the zoo (a notebook)
        raise ZooError(
            f"Keras runs on {keras.backend.backend()} here; the zoo needs its TensorFlow backend: "
            "set KERAS_BACKEND=tensorflow before Keras is first imported"
        )
    import keras

    # What ~/.keras/keras.json (another tool's, or one's own for other work) may set otherwise:
    # with channels_first every CNN failed, with float16 training diverged, with float64 or
    # another epsilon the numbers differed from the same run elsewhere. The zoo's models take
    # images as height x width x channels in float32 (trainer.precision chooses mixed precision).
    for name, value in KERAS_SETTINGS.items():
        if getattr(keras.config, name)() != value:
            log.info("keras.json's %s=%r set aside: the zoo runs with %r", name, getattr(keras.config, name)(), value)
            getattr(keras.config, f"set_{name}")(value)
    return tf


def temporary_folder_tensorflow_takes() -> None:
    """Python's temporary folder (``TMPDIR``) by a name TensorFlow takes. AutoGraph writes
    the code it generates there and hands each file's name to C++ as UTF-8: under a TMPDIR
    whose name is not UTF-8 (Python keeps its bytes as lone surrogates), every image-folder
    run and every TFLite export failed on "Unable to cast Python instance of type <class
    'str'> to C++ type". The same folder is named by a descriptor held open for the process
    (Linux's /proc; only Linux and the BSDs allow such names)."""
    import tempfile

    folder = tempfile.gettempdir()
    try:
        folder.encode("utf-8")
    except UnicodeEncodeError:
        with contextlib.suppress(OSError):  # Python found it writable a moment ago
            tempfile.tempdir = f"/proc/self/fd/{os.open(folder, os.O_RDONLY | os.O_DIRECTORY)}"


def refuse_libraries_older_than_the_zoo_needs() -> None:
    """The libraries the zoo needs (its own requirements, and TensorFlow's build of the cpu or
    gpu extra where installed) at the versions it was installed with. pip keeps them so;
    ``PYTHONPATH``, ``pip install --no-deps``, a conda or system package may not: Keras 2.15
    on the path had failed every run on "keras failed: AttributeError: module
    'tensorflow._api.v2.compat.v2.__internal__' has no attribute 'register_load_context_function'"."""
    from importlib import metadata

    from packaging.requirements import Requirement

    try:
        needs = [Requirement(text) for text in metadata.requires("keras-zoo") or ()]
    except metadata.PackageNotFoundError:  # the zoo run from a source tree: no record to go by
        return
    for need in needs:
        if need.marker is not None and not any(need.marker.evaluate({"extra": extra}) for extra in ("", "cpu", "gpu")):
            continue  # another extra's: what uses it says
        try:
            version = metadata.version(need.name)
        except metadata.PackageNotFoundError:  # another distribution may give the module (keras-nightly): its import says
            continue
        if not need.specifier.contains(version, prereleases=True):
            where = os.path.abspath(metadata.distribution(need.name).locate_file(""))
            on_path = where in map(os.path.abspath, filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep)))
            raise ZooError(
                f"{need.name} {version} is installed (in {where}), and the zoo needs {need.name}{need.specifier}: "
                f"pip install '{need.name}{need.specifier}'" + (", or take that folder off PYTHONPATH" if on_path else "")
            )


KERAS_SETTINGS = {"image_data_format": "channels_last", "floatx": "float32", "epsilon": 1e-7}
# What TensorFlow's and Keras' own readings of keras.json take, at their import.
KERAS_JSON_TAKES = {"floatx": ("float16", "float32", "float64"), "image_data_format": ("channels_last", "channels_first")}


def refuse_a_keras_json_keras_refuses() -> None:
    """TensorFlow's import and Keras' read keras.json (``~/.keras``'s, ``KERAS_HOME``'s) and
    stop on a value they do not take: a floatx of bfloat16 (which Keras' mixed precision
    has, and another project may have written), an epsilon of 1, a folder of that name; a
    pipe they wait on for ever. It had been "tensorflow failed: AssertionError: at
    backend.py:6244: assert _floatx in {...}", the file unnamed. Its values the zoo sets
    aside anyway (KERAS_SETTINGS)."""
    folders = {artifacts.keras_folder()} | ({Path("~/.keras").expanduser()} if "KERAS_HOME" not in os.environ else set())
    for path in sorted(folder / "keras.json" for folder in folders):
        problem = keras_json_problem(path)
        if problem:
            raise ZooError(
                f"{path} {shorten(problem, 160)}: TensorFlow and Keras read it as they start; correct it or remove it (the "
                "zoo runs in float32, channels last, whatever it says), or set KERAS_HOME to another folder"
            )


def keras_json_problem(path: Path) -> Optional[str]:
    """What in the keras.json at ``path`` TensorFlow or Keras would stop (or wait) on, or None."""
    import json
    import stat

    try:
        mode = os.stat(path).st_mode
        if stat.S_ISDIR(mode):
            return "is a folder"
        if not stat.S_ISREG(mode):
            return "is a pipe or a device (they would wait on it for ever)"
        settings = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except ValueError:  # not JSON: both read it as no settings
        return None
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if not isinstance(settings, dict):
        return "is not a JSON object of settings"
    wrong = [f"{key} {settings[key]!r}, none of {', '.join(taken)}" for key, taken in KERAS_JSON_TAKES.items()
             if key in settings and settings[key] not in taken]  # fmt: skip
    if "epsilon" in settings and not isinstance(settings["epsilon"], float):
        wrong.append(f"epsilon {settings['epsilon']!r}, not a number with a decimal point")
    return f"sets {'; '.join(wrong)}" if wrong else None


# TensorFlow's warnings that are advice to its own developers' users, not to a zoo user
# (the zoo chose the strategy and how it runs): kept in train.log, off the terminal.
TENSORFLOW_ADVICE = ("eagerly has significant overhead",)


def demote_advice(record: logging.LogRecord) -> bool:
    if record.levelno == logging.WARNING and any(text in str(record.msg) for text in TENSORFLOW_ADVICE):
        record.levelno, record.levelname = logging.INFO, "INFO"
    return True


@contextlib.contextmanager
def native_output_logged(source: str, level: int = logging.DEBUG):
    """What C++ code writes to the process's stderr meanwhile goes to the log instead of
    the terminal (Python's own writes too, so keep the block short)."""
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text = sink.read().decode("utf-8", "replace").strip()
            if text:
                log.log(level, "%s said: %s", source, text)


MALLOC_ARENAS = 2


def limit_malloc_arenas() -> None:
    """Cap glibc's malloc arenas (its default: 8 per core) unless ``MALLOC_ARENA_MAX`` says
    otherwise. TensorFlow's threads free large tensors into many arenas that glibc keeps:
    with the default, a run's resident memory grew by about 80 MB an epoch in the memory
    benchmark (``benchmarks/memory.py``); with two it stayed flat, and no slower on 2 cores."""
    if "MALLOC_ARENA_MAX" in os.environ or not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (musl): nothing to set
        return
    m_arena_max = -8  # malloc.h
    libc.mallopt(m_arena_max, MALLOC_ARENAS)


# Keras keeps its session, seed and precision policy for the whole process: two trainings at
# once in threads of one process (a notebook's thread pool; joblib's threads where it cannot
# start processes) cleared each other's session and drew each other's random numbers, each
# ending with other metrics than it gives alone. They take turns.
KERAS_IN_USE = threading.RLock()


def keras_to_itself(function):
    """``function`` run while no other thread of this process trains, evaluates or loads a
    run's model (it waits its turn, saying so)."""

    @functools.wraps(function)
    def alone(*args, **kwargs):
        if not KERAS_IN_USE.acquire(blocking=False):
            log.info("waiting for the run another thread of this process has under way: Keras' state is the process's")
            KERAS_IN_USE.acquire()
        try:
            return function(*args, **kwargs)
        finally:
            KERAS_IN_USE.release()

    return alone


@keras_to_itself
def train(cfg: DictConfig, run_dir: Path, callbacks: Sequence[Any] = ()) -> dict[str, Any]:
    """Train and evaluate the run described by ``cfg``, writing its artifacts to ``run_dir``.

    A run directory that holds a checkpoint of the same run continues from it
    (``trainer.resume=auto``); one that holds a finished run returns its test metrics.
    Returns the test metrics (``loss`` and each chosen metric; for ``cv.folds=K``, their
    means over the folds, ``<metric>_std`` and the folds' own under ``folds``); on a
    multi-worker run's workers other than the chief, which write only their checkpoints, an
    empty dict.
    ``callbacks`` join the run's own on the chief (a search trial's reporter).
    """
    plan = plan_run(cfg)  # every config error surfaces here, before TensorFlow loads
    check_run_references(plan)
    artifacts.refuse_a_clock_zip_cannot_record()
    run_dir = Path(run_dir)
    resolved = recorded_config(cfg, plan)
    tf, keras, placement = _start(plan, resolved)
    with artifacts.exclusive(run_dir) if placement.chief else contextlib.nullcontext():
        finished = claim_run_dir(run_dir, resolved, plan) if placement.chief else None
        if finished is not None and not placement.multi_worker:  # the other workers wait for the chief
            log.info("the run in %s finished already", run_dir)
            return finished
        with out_of_memory_in_one_line(), input_failures_in_one_line(run_dir, plan.dataset.name):
            if plan.cv.folds and plan.cv.fold is None:
                return _cross_validate(cfg, plan, placement, run_dir, resolved, callbacks)
            return _train(tf, keras, plan, placement, run_dir, resolved, finished, list(callbacks))


@contextlib.contextmanager
def out_of_memory_in_one_line() -> Iterator[None]:
    """A model, batch or image size too large for the device's memory (TensorFlow's
    ResourceExhaustedError, NumPy's MemoryError) is a mistake in the config: one line."""
    try:
        yield
    except Exception as exc:
        line = out_of_memory_line(exc)
        if line is None:
            raise
        raise ZooError(line) from exc


@contextlib.contextmanager
def input_failures_in_one_line(run_dir: Path, dataset: str = "") -> Iterator[None]:
    """TensorFlow's input pipeline failing on the machine or the files, not on the run: a full
    disk under its cache file becomes the OSError a full disk is (the run says which file and
    how it continues; so do a failing disk's I/O error and a network file system gone), and a
    file of the dataset deleted or overwritten while the run reads it
    one line saying so (TensorFlow's names only a graph node, the path cut off). A plugin's
    pipeline failing in mid-epoch (its function raising, elements of two shapes) is one line
    naming ``dataset``, not TensorFlow's "{{function_node __wrapped__IteratorGetNext...}}"."""
    try:
        yield
    except Exception as exc:
        if not hasattr(exc, "error_code"):  # not a tf.errors.OpError
            raise
        text = one_line(exc)
        for reason, number in artifacts.STORAGE_FAILURE_TEXTS.items():
            path = re.search(rf"(?:^|\s)(/[^;]+?)(?:\.tempstate\d+)?; {reason}", text)
            if path:
                raise OSError(number, reason, path.group(1)) from exc
        from zoo.checkpoints import Checkpoints

        # A file cache (dataset.cache=PREFIX) damaged where its sizes still match: TensorFlow's checksums find it.
        bundle = re.search(r"TensorBundle at (/\S+?) shard \d+ [^:]*: (Checksum does not match)", text)
        if bundle:
            resumable = Checkpoints(run_dir).resumable(f"delete {bundle.group(1)}.* (the next run writes it again)")
            raise ZooError(f"the cache {bundle.group(1)}.* is damaged ({bundle.group(2)}); {resumable}") from None
        gone = re.search(r"(?:^|\s)(/[^;]+); No such file or directory", text)
        changed = "DecodeImage" in text and "Unknown image file format" in text
        if not (gone or changed) or not any(node in text for node in ("ReadFile", "DecodeImage")):
            if dataset and "IteratorGetNext" in text:
                resumable = Checkpoints(run_dir).resumable("mend the data or the plugin")
                raise ZooError(f"dataset {dataset!r} failed while the run read it ({pipeline_failure(text)}); {resumable}") from None
            raise
        what = f"{gone.group(1)} was deleted" if gone else "an image was overwritten with something that is not an image"
        resumable = Checkpoints(run_dir).resumable("put the files back")
        raise ZooError(
            f"{what} while the run read its dataset (its files must stay as they are until the run ends); {resumable}"
        ) from None


def pipeline_failure(text: str) -> str:
    """What a tf.data pipeline's error says, without TensorFlow's wrapping: the exception a
    function of the plugin's raised, or TensorFlow's own sentence."""
    raised = re.search(r"Error in user-defined function passed to .*?: ((?:\w+\.)*\w+: .*?)(?: Traceback \(most recent|$)", text)
    if raised:
        return shorten(raised.group(1), 200)
    # In a graph: "Graph execution error: Detected at node N defined at (most recent call last): File "f.py", line 8, in g ... [[{{node N}}]]"
    text = re.sub(r"^.*?Detected at node \S+ defined at \(most recent call last\):(?: File \"[^\"]*\", line \d+, in \S+)*", "", text)
    text = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", text)
    text = re.sub(r"\S{81,}", lambda long: f"{long.group()[:40]}…{long.group()[-30:]}", text)  # a long path, its end kept
    return shorten(re.sub(r"\s*(?:\[\[\{\{node|\[Op:\w+\]).*$", "", text).strip(), 200)


def out_of_memory_line(exc: BaseException) -> Optional[str]:
    """The one line for running out of memory, or None for other errors."""
    huge = re.search(r"(Shape \[[^\]]*\]) would have more than 2\*\*63 - 1 elements", str(exc))
    if huge:  # sizes whose product no memory could hold (model.filters=2**62): TensorFlow refuses to count them
        return (
            f"too large to exist: a tensor of {huge.group(1).lower()} would have more than 2**63 - 1 elements; "
            "make the model, the batch or the images smaller (model.*, trainer.batch_size, dataset.*)"
        )
    if isinstance(exc, RuntimeError) and "can't start new thread" in str(exc):
        return thread_failure_line()
    if not isinstance(exc, MemoryError) and type(exc).__name__ != "ResourceExhaustedError":
        return None
    if any(reason in str(exc) for reason in artifacts.STORAGE_FAILURE_TEXTS):  # a full disk, said as one
        return None
    shape = re.search(r"allocating tensor with (shape\s*\[[^\]]*\])", str(exc))
    limit = address_space_limit()
    return (
        f"out of memory{f' (a tensor of {shape.group(1)})' if shape else ''}: make the model, the batch or the images "
        f"smaller (model.*, trainer.batch_size, dataset.*), or use a device with more memory"
        + (f"; {limit}: raise it" if limit else "")
    )


def _cross_validate(cfg: DictConfig, plan: RunPlan, placement, run_dir: Path, resolved: dict, callbacks) -> dict[str, Any]:
    """``cv.folds=K``: the folds' runs in ``run_dir/folds/``, one after the other (each resumable
    as any run), then every metric's mean and spread over them (zoo.crossval)."""
    from zoo import crossval

    reporter = next((c for c in callbacks if hasattr(c, "report_fold")), None)  # a search trial's
    write_run_records(run_dir, resolved, plan, placement)
    crossval.write_assignment(run_dir, load_splits(plan), plan)
    metrics = crossval.cross_validate(cfg, plan, run_dir, train, reporter)
    record = {"folds_trained": len(metrics.get(crossval.FOLDS, {}))}
    if reporter is not None:
        record[reporter.record_key] = reporter.outcome()
    artifacts.write_json(run_dir / artifacts.TRAINING, record)
    artifacts.write_json(run_dir / artifacts.METRICS, metrics)
    return metrics


@contextlib.contextmanager
def peers_watched(tf, placement, checkpoints):
    """A multi-worker run whose peer died or became unreachable mid-training ends in one
    line naming the peer and the way back (TensorFlow raises a collective op's error)."""
    try:
        yield
    except (tf.errors.UnavailableError, tf.errors.AbortedError, tf.errors.CancelledError, tf.errors.DeadlineExceededError) as exc:
        if not placement.multi_worker:
            raise
        text = one_line(exc)
        named = [f"{job} {task}" for job, task in re.findall(r"/job:(\w+)/replica:\d+/task:(\d+)", text)]
        named += [name for name, address in placement.cluster.items() if address in text]
        others = [name for name in named if name.replace(" ", "-") != placement.task]
        who = others[0] if others else "another worker"
        newest = checkpoints.newest_position()
        kept = f"its checkpoint at {newest} is kept" if newest is not None else "no checkpoint was made yet"
        raise ZooError(
            f"{who} stopped answering during training ({type(exc).__name__}); {kept}: start every worker again "
            f"with the same command to continue"
        ) from None


def write_run_records(run_dir: Path, resolved: dict, plan: RunPlan, placement) -> None:
    """What a run says about itself from its start: its config, data spec and environment."""
    run_dir.mkdir(parents=True, exist_ok=True)
    artifacts.write_text(run_dir / artifacts.CONFIG, OmegaConf.to_yaml(resolved))
    artifacts.write_json(run_dir / artifacts.SPEC, dataclasses.asdict(plan.spec))
    artifacts.write_json(run_dir / artifacts.ENVIRONMENT, records.environment(placement))


# What Hydra and the zoo put in a run's folder before the run claims it (checkpoints/: the
# other workers' of a multi-worker run whose workers share the folder, who start training
# as the chief claims it).
MADE_BEFORE_CLAIM = frozenset({".hydra", "train.log", ".lock", artifacts.CHECKPOINTS})


def made_before_claim() -> frozenset:
    """``MADE_BEFORE_CLAIM``, with the log under the name Hydra gives it in this job: Hydra's
    own ``hydra/job_logging=default`` names it after ``hydra.job.name`` (the zoo's: train.log)."""
    from hydra.core.hydra_config import HydraConfig

    try:
        filename = OmegaConf.select(HydraConfig.get(), "job_logging.handlers.file.filename", default=None)
    except Exception:  # noqa: BLE001 - before Hydra's job (no runtime folder yet): it has written no log
        return MADE_BEFORE_CLAIM
    return MADE_BEFORE_CLAIM | ({Path(str(filename)).name} if filename else set())


# What Hydra writes into a run's folder before the zoo's code runs, and the run's lock.
OPENED_FIRST = (".lock", "train.log", ".hydra/config.yaml", ".hydra/hydra.yaml", ".hydra/overrides.yaml")


def recorded_config(cfg: DictConfig, plan: RunPlan) -> dict:
    """The run's ``config.yaml``: its config resolved, with the metrics that run
    (``metrics=auto`` composes to none and plan_run picks them) and the runs and data it
    reads as the absolute paths they resolved to."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    resolved["seed"] = plan.seed  # a number, also where it was given as text (an environment variable)
    resolved["metrics"] = {entry.name: dataclasses.asdict(config) for entry, config in plan.metrics}
    for key, path in absolute_paths(plan).items():
        *parents, name = key.split(".")
        node = resolved
        for part in parents:
            node = node.setdefault(part, {})
        node[name] = path
    return resolved


def is_run_config(recorded: Any) -> bool:
    """Whether a parsed ``config.yaml`` is a zoo run's: the model and dataset named in their
    settings, and the trainer's (a project's own ``model: resnet`` is not)."""
    return (
        isinstance(recorded, dict)
        and all(isinstance(recorded.get(key), dict) and isinstance(recorded[key].get("name"), str) for key in ("model", "dataset"))
        and isinstance(recorded.get("trainer"), dict)
    )


def refuse_folder_inside_a_run(folder: Path, key: str) -> None:
    """A run's (or sweep's) folder is never inside another run's: its ``.hydra/`` holds a
    run's ``config.yaml`` too, and a run there would write over that run's files. A
    cross-validation's folds are its runs' own: ``RUN/folds/K``."""
    from zoo.crossval import FOLDS

    folder = Path(os.path.abspath(folder))
    for parent in folder.parents:
        try:
            inside = (parent / artifacts.CONFIG).is_file() and is_run_config(artifacts.read_yaml(parent / artifacts.CONFIG))
        except (OSError, ZooError):  # a folder of someone else's, a damaged file: not a run's
            inside = False
        if inside and folder.relative_to(parent).parts[:-1] == (FOLDS,):
            return
        if inside:
            raise ZooError(f"{folder} is inside the run in {parent}, whose files it could replace; choose a {key} outside it")


def refuse_foreign_folder(run_dir: Path, key: str = "hydra.run.dir") -> None:
    """The zoo writes a run only into a new or empty folder or one of its own runs, never
    over or beside files it did not write (a run would replace a ``model.keras`` of the
    same name). Its own: a ``config.yaml`` with model, dataset and trainer, or only what is
    made before a run starts (a run stopped that early). No TF."""
    refuse_folder_inside_a_run(run_dir, key)
    if not run_dir.is_dir():
        return
    artifacts.refuse_links_and_pipes(run_dir, key)  # first: Hydra opens its records before any other check
    # A folder in a record's place had failed on "logging failed: ValueError: Unable to
    # configure handler 'file'"; a file in the place of Hydra's folder on "File exists".
    records = run_dir / ".hydra"
    if records.exists() and not records.is_dir():
        raise ZooError(f"{records} is a file, not the folder Hydra keeps the run's records in; {artifacts.DAMAGED_FIX}")
    for name in OPENED_FIRST:
        artifacts.refuse_odd_file(run_dir / name)
    config = run_dir / artifacts.CONFIG
    if config.is_file():
        recorded = artifacts.read_yaml(config)
        if is_run_config(recorded):
            return
        raise ZooError(f"{run_dir} holds a {artifacts.CONFIG} that is not a zoo run's; choose another {key} (a new or empty folder)")
    foreign = sorted(entry.name for entry in run_dir.iterdir() if entry.name not in made_before_claim())
    if foreign:
        named = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise ZooError(
            f"{run_dir} already holds files the zoo did not write ({named}); a run writes only into a new "
            f"or empty folder or its own run's: choose another {key}"
        )


def claim_run_dir(run_dir: Path, resolved: dict, plan: RunPlan, say: bool = True) -> Optional[dict[str, float]]:
    """Check that ``run_dir`` is free for this run, or holds this run: with
    ``resume=auto`` the same config (apart from the keys that may change between attempts,
    and settings added since the run was recorded, at their defaults) or an attempt that
    kept no training; with ``never``, no run at all. Returns a finished run's test metrics.
    ``say``: log what it lets change (the command's check before Hydra's records does not). No TF."""
    import json

    from zoo.compare import flatten

    refuse_foreign_folder(run_dir)
    recorded = run_dir / artifacts.CONFIG
    if not recorded.is_file():
        return None
    if plan.trainer.resume == "never":
        raise ZooError(
            f"{run_dir} already holds a run and trainer.resume=never; choose another hydra.run.dir "
            "(or trainer.resume=auto to continue that run)"
        )
    before = flatten(artifacts.read_yaml(recorded) or {})
    now = flatten(json.loads(json.dumps(resolved)))
    changed = [
        key for key in dict.fromkeys([*before, *now])
        if not same_setting(before.get(key), now.get(key)) and not key.startswith(RESUMABLE_CHANGES)
    ]  # fmt: skip
    added = [key for key in changed if key not in before and now[key] == added_setting_default(plan, key, before)]
    if added and say:
        # An upgraded zoo or plugin (a requeued job that installed the newest) added them: a new
        # setting's default keeps what the code did before it, so the run goes on.
        log.info("%s: settings the run's record lacks (added since by an upgrade), at their defaults: %s",
                 run_dir, ", ".join(f"{key}={now[key]!r}" for key in added))  # fmt: skip
    changed = [key for key in changed if key not in added]
    if changed and saved_no_training(run_dir):
        # An attempt that failed before its first checkpoint (diverged, out of memory, a tracker
        # refused) keeps nothing to continue: the fix its error named (a lower learning rate), run
        # in the same folder, had been refused as another run's settings.
        (log.warning if say else log.debug)("%s: its earlier attempt saved no training (no checkpoint), so it starts anew with %s",
                    run_dir, ", ".join(f"{key}={now.get(key)!r} (was {before.get(key)!r})" for key in changed[:3]))  # fmt: skip
        return None
    if changed:
        key = changed[0]
        if key not in now:
            was = f"{key}={before[key]!r}, a setting this config does not have"
        elif key not in before:
            default = added_setting_default(plan, key, before)
            was = f"no {key} (given {now[key]!r}{'' if default is NO_DEFAULT else f'; its default {default!r} would continue it'})"
        else:
            was = f"{key}={before.get(key)!r}, not {now.get(key)!r}"
        since = plugins_since(run_dir)
        raise ZooError(
            f"{run_dir} holds a run with {was}{f' ({since})' if since else ''}; "
            "to continue it, use its config; for a new run, choose another hydra.run.dir"
        )
    if (run_dir / artifacts.METRICS).is_file():
        if before.get("trainer.epochs") != now.get("trainer.epochs"):  # a change that continues only an unfinished run
            from zoo.arguments import hydra_quoted

            raise ZooError(
                f"{run_dir} holds a finished run of trainer.epochs={before.get('trainer.epochs')}: a finished run trains no "
                f"further; train on from its weights in a new run (trainer.init_from={hydra_quoted(str(run_dir))} and another hydra.run.dir)"
            )
        return artifacts.read_metrics(run_dir / artifacts.METRICS)
    from zoo.checkpoints import Checkpoints

    if not Checkpoints(run_dir).steps():
        if (run_dir / artifacts.MODEL).is_file():
            # Its model is saved before metrics.json, its checkpoints removed after: a finished run that lost it.
            raise ZooError(
                f"{run_dir} holds a finished run's {artifacts.MODEL} but no {artifacts.METRICS} (deleted?) and no checkpoint: "
                f"training would start the run again over its model; restore {artifacts.METRICS}, or choose another hydra.run.dir"
            )
        return None
    # Training goes on from the checkpoint: its outputs mean what the data meant when it began.
    began = artifacts.read_record(run_dir / artifacts.SPEC)
    given = json.loads(json.dumps(dataclasses.asdict(plan.spec)))
    differing = next((key for key in given if key in began and began[key] != given[key]), None)
    if differing:
        raise ZooError(
            f"{run_dir} holds a run that began on data whose {differing} was {shorten(repr(began[differing]), 80)}, and the data "
            f"now gives {shorten(repr(given[differing]), 80)}: its checkpoint's {SPEC_MEANING.get(differing, 'outputs')} would mean "
            "others (a class folder renamed, added or removed; a corpus edited); restore the data as it was, or start a new run "
            "in another hydra.run.dir"
        )
    return None


def saved_no_training(run_dir: Path) -> bool:
    """No epoch of the run in ``run_dir`` was kept: no checkpoint (any worker's, any
    cross-validation fold's), snapshot, model or metrics anywhere in it. A checkpoint is
    written at the end of every epoch and on a stop."""
    for folder, _, files in artifacts.walk(run_dir):
        if artifacts.METRICS in files or artifacts.MODEL in files:
            return False
        if files and {artifacts.CHECKPOINTS, "snapshots"} & set(Path(folder).relative_to(run_dir).parts):
            return False
    return True


# What a checkpoint's numbers mean in each part of a data spec that changed under it.
SPEC_MEANING = {"class_names": "outputs (one per class, in order)", "num_classes": "outputs (one per class)",
                "input_shape": "weights (made for inputs of that shape)", "feature_names": "weights (one per feature, in order)"}  # fmt: skip


NO_DEFAULT = object()  # equal to no setting's value


def added_setting_default(plan: RunPlan, key: str, before: dict) -> Any:
    """The default of the config field that flat ``key`` names, where the run recorded in
    ``before`` had its section (the same model, dataset, metric, callback or logger);
    ``NO_DEFAULT`` otherwise."""
    import json

    section, _, rest = key.partition(".")
    configs = {"model": plan.model_config, "dataset": plan.dataset_config, "trainer": plan.trainer, "device": plan.device, "cv": plan.cv}
    config = configs.get(section)
    if section in ("metrics", "callbacks", "loggers"):
        name, _, rest = rest.partition(".")
        config = next((c for entry, c in getattr(plan, section) if entry.name == name), None)
        section = f"{section}.{name}"
    if config is None or not rest or not any(k.startswith(f"{section}.") for k in before):
        return NO_DEFAULT
    *parents, name = rest.split(".")
    for part in parents:
        config = getattr(config, part, None)
    field = next((f for f in dataclasses.fields(config) if f.name == name), None) if dataclasses.is_dataclass(config) else None
    if field is None or (field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING):
        return NO_DEFAULT
    default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
    return json.loads(json.dumps(dataclasses.asdict(default) if dataclasses.is_dataclass(default) else default))


def same_setting(before: Any, now: Any) -> bool:
    """Whether a recorded setting is the one given now. Older runs recorded the
    paths of their data as given: a relative one named what it names from here."""
    if isinstance(before, str) and isinstance(now, str) and before and not os.path.isabs(before) and os.path.isabs(now):
        return str(Path(os.path.expanduser(before)).resolve()) == now  # an unknown ~user stays as written
    return before == now


# Keys that may differ between the attempts of one run: where it runs, how it reports,
# how often it checkpoints, and how long it trains (more epochs continue it).
RESUMABLE_CHANGES = (
    "device.", "objective", "trainer.progress", "trainer.resume", "trainer.checkpoint_", "trainer.keep_checkpoints", "trainer.epochs",
)  # fmt: skip


def _train(tf, keras, plan: RunPlan, placement, run_dir: Path, resolved: dict, finished, extra_callbacks: list) -> dict[str, float]:
    from zoo import callbacks as run_callbacks
    from zoo import optimization
    from zoo.checkpoints import Checkpoints
    from zoo.compare import flatten
    from zoo.training import count_steps, fit, native_log_lines_logged

    chief = placement.chief
    checkpoints = Checkpoints(run_dir, task="" if chief else placement.task, divergence_fix=divergence_fix(plan))
    resumed = bool(checkpoints.steps())
    newest = checkpoints.newest_position() if resumed and plan.trainer.resume == "auto" else None
    if newest is not None and (newest.epoch, newest.step) > (plan.trainer.epochs, 0):
        # Fewer epochs than the checkpoint holds would end it on weights from part of an epoch.
        needed = newest.epoch + (1 if newest.step else 0)
        raise ZooError(
            f"{run_dir} holds a checkpoint at {newest}, further than trainer.epochs={plan.trainer.epochs}; "
            f"continue it with trainer.epochs={needed} or more, or start a new run in another hydra.run.dir"
        )

    splits = load_splits(plan)
    if plan.cv.fold is not None:  # one fold of a cross-validation
        from zoo.crossval import fold_splits

        splits = fold_splits(splits, plan)
    replicas = placement.strategy.num_replicas_in_sync
    trainer = plan.trainer

    shuffle_buffer = shuffle_buffer_size(tf, splits.train, trainer)
    weights = None
    if plan.model.item.objective == CLASSIFICATION:
        weights = optimization.class_weights(trainer, plan.spec, lambda: optimization.training_labels(tf, splits.train))
        if not isinstance(splits.train, tf.data.Dataset) and chief and finished is None:  # arrays: counted at no cost
            names = plan.spec.class_names or tuple(str(c) for c in range(plan.spec.num_classes))
            warn_of_absent_classes(splits.train[1], names, "training")
    # Arrays become a dataset once, not every epoch (from_tensor_slices copies them).
    train_split = splits.train if isinstance(splits.train, tf.data.Dataset) else tf.data.Dataset.from_tensor_slices(tuple(splits.train))

    def epoch_batches(epoch: int):
        return _batches(
            tf, plan, train_split, epoch=epoch, whole_batches=replicas > 1, shuffle_buffer=shuffle_buffer, class_weights=weights
        )

    steps = count_steps(epoch_batches(0))
    if placement.multi_worker:
        check_workers_agree(tf, placement, worker_data_facts(plan, splits.train, steps), "loaded other data", DATA_FIX)
    if trainer.accumulate_steps > trainer.epochs * steps:  # the weights would never change
        raise ZooError(
            f"trainer.accumulate_steps={trainer.accumulate_steps} is more than the {trainer.epochs * steps} steps the run "
            f"trains ({trainer.epochs} epoch{'s' if trainer.epochs > 1 else ''} of {steps}): no update would be applied; "
            f"accumulate over at most {steps} steps"
        )
    warm_up = optimization.warm_up_past_the_end(trainer, steps)
    if warm_up and chief and finished is None:
        warnings.warn(InputWarning(warm_up), stacklevel=1)
    for unused in optimization.settings_without_effect(trainer) if chief and finished is None and plan.cv.fold is None else ():
        warnings.warn(InputWarning(unused), stacklevel=1)
    for key, path in run_references(plan).items() if chief and finished is None and plan.cv.fold is None else ():
        # A warm start's or a teacher's data: did it hold this run's test examples? Not when split alike.
        reference = finished_run_plan(Path(path))
        same_split = (reference.seed, reference.dataset_config) == (plan.seed, plan.dataset_config)
        if reference.dataset.name == plan.dataset.name and not same_split:
            try:
                trained_splits = load_splits(reference)
            except (ZooError, OSError) as exc:  # its data is elsewhere (a run from another machine): the run goes on
                warnings.warn(
                    InputWarning(f"{key}={path}: whether it trained on this run's test examples is not known, its data "
                                 f"cannot be loaded here ({one_line(exc)})"),
                    stacklevel=1,
                )  # fmt: skip
                continue
            warn_of_trained_examples(splits, trained_splits, f"{key}={path}", "give a run trained with this run's seed and split")
    validation_data = _batches(tf, plan, splits.validation)
    test_data = _batches(tf, plan, splits.test)
    parent_weights = None
    if trainer.init_from:
        parent = Path(trainer.init_from)
        parent_weights = optimization.layer_weights(rebuild_model(finished_run_plan(parent), parent))
        fresh_keras_state(keras, plan)  # this model's layers named as in a process of its own
    with placement.strategy.scope():
        with native_log_lines_logged("TensorFlow, building the model"):  # its first ops: oneDNN's notices
            model = plan.model.item.factory(plan.model_config, plan.spec)
            preflight(plan, model, validation_data if splits.validation is not None else test_data)
        record = optimization.start_from(model, trainer, parent_weights)  # warm start, frozen layers
        references = {
            key: {"run_dir": path, "model_sha256": artifacts.file_digest(Path(path) / artifacts.MODEL)}
            for key, path in run_references(plan).items()
        }  # which runs, and which of their models: a run trained again in that folder is told apart
        if references:
            record["references"] = references
        model = compile_model(keras, plan, model, training=True, steps_per_epoch=steps)
        if trainer.distillation.teacher:  # built after the student, whose layer names stay its own
            from zoo import compression

            distillation = trainer.distillation
            teacher_dir = Path(distillation.teacher)
            teacher = rebuild_model(finished_run_plan(teacher_dir), teacher_dir)
            compression.distill(model, teacher, distillation.alpha, distillation.temperature)
            record["distillation"] = compression.teacher_record(distillation)
    if placement.multi_worker:
        starts = {"initial weights": digest_number(*model.get_weights())}
        if trainer.distillation.teacher:
            starts["teacher's weights"] = digest_number(*teacher.get_weights())
        check_workers_agree(tf, placement, starts, "built another model", MODEL_FIX)
    if chief and finished is None:  # the run's records, once nothing before training can fail
        write_run_records(run_dir, resolved, plan, placement)
        if splits.report:
            earlier = run_dir / artifacts.CHECKPOINTS
            if earlier.is_dir() and any(earlier.iterdir()):  # training goes on from where an earlier attempt was
                warn_of_changed_data(artifacts.read_record(run_dir / artifacts.DATA_REPORT), dict(splits.report), run_dir)
            artifacts.write_json(run_dir / artifacts.DATA_REPORT, dict(splits.report))
            skipped = list(splits.report.get("skipped", []))
            for number, entry in enumerate(skipped):  # the terminal gets a few; train.log and data.json all
                # A file's name is the data's author's: escapes in it had set the terminal's title (or
                # its clipboard), a line break in it had written a line of its own into train.log.
                log.log(logging.WARNING if number < SKIPPED_SHOWN else logging.INFO, "skipped %s", visible(str(entry)))
            if len(skipped) > SKIPPED_SHOWN:
                log.warning("skipped %d more files (all listed in %s)", len(skipped) - SKIPPED_SHOWN, run_dir / artifacts.DATA_REPORT)
    # A multi-worker run's chief validates and finishes on a single-device twin of the model
    # (Keras' evaluate fails under MultiWorkerMirroredStrategy, keras-team/keras#20585).
    twin = None
    if chief and placement.multi_worker:
        twin = compile_model(keras, plan, plan.model.item.factory(plan.model_config, plan.spec))

    def evaluator():
        """The model to evaluate: the twin, given the trained weights, where there is one."""
        if twin is None:
            return model
        twin.set_weights(model.get_weights())
        return twin

    def validate() -> dict[str, float]:
        return score(tf, evaluator(), validation_data)

    info = RunInfo(
        run_dir=run_dir.resolve(), name=run_dir.name, params=flatten(resolved), spec=plan.spec, seed=plan.seed,
        resumed=resumed, chief=chief,
    )  # fmt: skip
    callbacks = [
        divergence_guard(keras, plan),  # every worker stops with the chief on a diverged loss
        # Trackers and the end's preparations only where the run will end: not on other
        # workers, nor for a finished run that the other workers merely catch up with.
        *run_callbacks.build_callbacks(plan, info, model.optimizer, steps, finishing=chief and finished is None),
        *(extra_callbacks if chief else []),  # a search trial's reporter
    ]
    progress = progress_mode(trainer.progress) if chief else "off"
    if progress != "off":
        callbacks.append(run_callbacks.Progress(progress))
    history = artifacts.HistoryFile(run_dir / artifacts.HISTORY)
    try:
        started = time.perf_counter()
        with peers_watched(tf, placement, checkpoints):
            position = fit(
                tf,
                model,
                placement.strategy,
                epoch_batches,
                trainer.epochs,
                trainer.steps_per_execution,
                validate=validate if chief else None,
                callbacks=keras.callbacks.CallbackList(callbacks, model=model, epochs=trainer.epochs, steps=None),
                checkpoints=checkpoints,
                checkpoint_every=trainer.checkpoint_every,
                checkpoint_seconds=trainer.checkpoint_minutes * 60,
                resume=trainer.resume == "auto",
                record=(lambda position: history.write(position.history)) if chief else None,
            )
        log.info("training took %.1f s", time.perf_counter() - started)
        if not chief:
            return {}
        if finished is not None:
            return finished
        for callback in callbacks:  # what stopped or shaped training, for training.json
            if getattr(callback, "record_key", None):
                record[callback.record_key] = callback.outcome()
        record["epochs_trained"] = len(next(iter(position.history.values()), []))
        artifacts.write_json(run_dir / artifacts.TRAINING, record)
        model = evaluator()
        test_metrics = score(tf, model, test_data)

        artifacts.write_atomic(run_dir / artifacts.MODEL, lambda tmp: portable_copy(model).save(tmp))
        title = f"{plan.model.name} on {plan.dataset.name}"
        artifacts.plot_training_curves(run_dir / artifacts.CURVES, position.history, title)
        plot_test_predictions(plan, model, test_data, run_dir, title)
        if plan.model.item.generate is not None:
            samples = plan.model.item.generate(model, plan.model_config, plan.spec, seed=plan.seed)
            name = artifacts.TEXT_SAMPLES if artifacts.is_text(samples) else artifacts.SAMPLES
            artifacts.write_samples(run_dir / name, samples, title)
        artifacts.write_json(run_dir / artifacts.METRICS, test_metrics)
        # Finished: nothing reads the checkpoints again, but a multi-worker chief's catch-up.
        keep = trainer.keep_checkpoints if trainer.keep_checkpoints != "auto" else ("last" if placement.multi_worker else "none")
        checkpoints.keep(1 if keep == "last" else 0)
        loggers = run_callbacks.find(callbacks, run_callbacks.Loggers)
        if loggers is not None:
            loggers.finish(test_metrics, artifacts.run_files(run_dir))
        log.info("test metrics %s", test_metrics)
        return test_metrics
    finally:  # however it ends: its callbacks' threads end with it
        run_callbacks.close_threads(callbacks)


# What the workers of a multi-worker run may set each their own way: the rank, how long to
# wait for the others, where each machine keeps the data (and any dataset field declared
# with zoo.data_path), and the loggers (only the chief logs). The rest must agree.
PER_WORKER_KEYS = ("device.rank", "device.timeout", "dataset.path", "dataset.cache", "loggers")


def worker_settings(tf, keras, plan: RunPlan, resolved: dict) -> dict[str, str]:
    """The run's settings that every worker of a multi-worker run must share, as text, with
    the versions that compute it: the zoo's, TensorFlow's, Keras' and those of the plugins
    providing the run's model, dataset, metrics and callbacks (another version may build
    another model: TensorFlow failed on a "Shape mismatch in the collective instance")."""
    from zoo import __version__
    from zoo.compare import flatten

    per_worker = (*PER_WORKER_KEYS, *data_paths(plan))
    settings = {
        key: repr(value)
        for key, value in flatten(resolved).items()
        if not any(key == own or key.startswith(own + ".") for own in per_worker)
    }
    used = [plan.model, plan.dataset, *(entry for entry, _ in plan.metrics), *(entry for entry, _ in plan.callbacks)]
    versions = {entry.distribution: entry.source.version for entry in used}
    versions.update({"keras-zoo": __version__, "tensorflow": tf.__version__, "keras": keras.__version__})
    settings.update({f"version of {name}": version for name, version in versions.items()})
    return settings


# What the workers of a multi-worker run compare once each has loaded its data and built
# its model: counts, said as such; the rest digests, said as what differs.
COUNTED_FACTS = ("training examples", "training batches per epoch", "classes")
DATA_FIX = (
    "each worker reads the dataset from its own dataset.path, which may name another place on each machine but must "
    "hold the same files"
)
MODEL_FIX = (
    "every worker must start from the same weights: trainer.init_from and a distillation teacher must name the same "
    "run on every machine, and each machine have the same plugins' versions"
)


def digest_number(*parts) -> float:
    """A digest of arrays (their bytes, shapes and types) and other values (their repr), cut
    to 48 bits: a number a float64 collective carries exactly."""
    import hashlib

    import numpy as np

    hashed = hashlib.blake2b(digest_size=6)
    for part in parts:
        if isinstance(part, np.ndarray):
            hashed.update(repr((part.dtype.str, part.shape)).encode())
            hashed.update(np.ascontiguousarray(part).view(np.uint8).reshape(-1))
        else:
            hashed.update(repr(part).encode())
    return float(int.from_bytes(hashed.digest(), "big"))


def worker_data_facts(plan: RunPlan, train: Any, steps: int) -> dict[str, float]:
    """The training split's size and batches, the dataset's description and the training
    arrays' content (a ``tf.data`` split's is not read twice: its size stands for it)."""
    import numpy as np

    arrays = isinstance(train, (tuple, list)) and all(isinstance(a, np.ndarray) for a in train)
    size = len(train[0]) if arrays else int(train.cardinality())
    return {
        "training examples": float(max(size, -1)),
        "training batches per epoch": float(steps),
        "classes": float(plan.spec.num_classes),
        "dataset description (class names, input shape, vocabulary)": digest_number(dataclasses.asdict(plan.spec)),
        "training examples' content": digest_number(*train) if arrays else 0.0,
    }


def check_workers_agree(tf, placement, facts: dict[str, float], what: str, fix: str) -> None:
    """The workers of a multi-worker run gather each other's ``facts`` (a collective: every
    worker learns them all) and all refuse together, naming the worker that ``what`` (e.g.
    "loaded other data") and what differs. Each loads its data and builds its model on its
    own: one reading other files, or warm-started from another run, would fail TensorFlow's
    collectives minutes in, wait for a peer in a step the peer never takes, or train on
    quietly, each worker's model its own."""
    import numpy as np

    tasks = list(placement.cluster)  # "worker 0", ...: the same order on every worker
    me = tasks.index(placement.task.replace("-", " "))
    row = tf.constant([[me, *facts.values()]], dtype=tf.float64)
    strategy = placement.strategy
    gathered = np.asarray(strategy.gather(strategy.experimental_distribute_values_from_function(lambda _: row), axis=0))
    by_task = {int(r[0]): r[1:] for r in gathered}  # a row per replica: a worker's replicas all alike
    here = by_task[me]
    for task, theirs in sorted(by_task.items()):
        said = [
            f"{name}: {theirs[i]:,.0f} there, {here[i]:,.0f} here" if name in COUNTED_FACTS else f"other {name}"
            for i, name in enumerate(facts)
            if theirs[i] != here[i]
        ]
        if said:
            raise ZooError(f"{tasks[task]} {what} than {tasks[me]} ({'; '.join(said)}); {fix}")


def _start(plan: RunPlan, resolved: Optional[dict] = None):
    """Import TensorFlow, place the run on its device, set its precision and seed everything.
    ``resolved``: the run's config, which the workers of a multi-worker run must share."""
    tf = import_tensorflow()
    import keras

    from zoo.devices import place

    shared = worker_settings(tf, keras, plan, resolved) if resolved is not None and plan.device.kind == "multi_worker" else None
    placement = place(plan.device, shared)  # first: devices are fixed once TensorFlow starts
    if plan.trainer.deterministic:  # for the rest of the process: TF has no public switch back
        tf.config.experimental.enable_op_determinism()
    fresh_keras_state(keras, plan)
    log.info("device %s, %d replica(s)", placement.description, placement.strategy.num_replicas_in_sync)
    return tf, keras, placement


def load_splits(plan: RunPlan) -> Splits:
    """The plan's dataset, loaded by its plugin and checked (``check_splits``), its report
    made JSON's (``plain_report``): every command that reads a run's data loads it here."""
    splits = plan.dataset.item.factory(plan.dataset_config, plan.seed)
    check_splits(plan, splits)
    splits.report = plain_report(plan.dataset.name, splits.report)
    return splits


def plain_report(dataset: str, report: Any) -> dict[str, Any]:
    """A dataset's report as ``data.json`` holds it: NumPy's numbers and arrays, paths, bytes,
    dates, tuples and sets become JSON's own (a count as ``np.int64``, the usual case, had
    failed the run on "json failed: TypeError"), a NaN its text; anything else is the
    plugin's mistake, said in one line naming the entry."""
    import datetime
    import math
    from collections.abc import Mapping

    import numpy as np

    def plain(value: Any, key: str) -> Any:
        if isinstance(value, np.generic | np.ndarray):
            value = value.tolist()
        if value is None or isinstance(value, bool | int | str):
            return value
        if isinstance(value, float):
            return value if math.isfinite(value) else str(value)  # JSON has no NaN
        if isinstance(value, os.PathLike | bytes):
            return os.fsencode(value).decode("utf-8", "backslashreplace")  # a name that is not UTF-8 as the image folder's
        if isinstance(value, datetime.date | datetime.time):
            return value.isoformat()
        if isinstance(value, Mapping):
            return {str(k): plain(v, f"{key}.{k}" if key else str(k)) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            items = [plain(v, key) for v in value]
            return sorted(items, key=repr) if isinstance(value, set | frozenset) else items
        raise ZooError(
            f"dataset {dataset!r}: its report's {key!r} is of type {type(value).__name__}, which data.json cannot hold; "
            "report numbers, text, lists and mappings (zoo check tests it)"
        )

    if not isinstance(report, Mapping):
        raise ZooError(f"dataset {dataset!r}: its report is a {type(report).__name__}, not a mapping (zoo check tests it)")
    return plain(report, "")


NEVER_ENDS = "never ends (a tf.data pipeline with .repeat()); yield each example once: the zoo goes over the data once an epoch"


def never_ends(split) -> bool:
    """Whether a split is a ``tf.data`` pipeline that repeats for ever."""
    return hasattr(split, "cardinality") and int(split.cardinality()) == INFINITE_CARDINALITY


def check_splits(plan: RunPlan, splits) -> None:
    """A plugin's arrays that disagree with its ``describe()`` (labels beyond its classes or
    one-hot, inputs that are not finite numbers, fewer targets than inputs) fail before
    training, in one line, rather than as TensorFlow's graph error, or at the run's very end
    (labels 0.5, 1.5 trained, then failed drawing the ROC curves). Of a ``tf.data`` split,
    only that it ends: the rest is the plugin's own to check (``zoo check`` does)."""
    import numpy as np

    from zoo.testing import split_problem

    if not isinstance(splits, Splits):
        raise ZooError(f"dataset {plan.dataset.name!r}: its factory returned {type(splits).__name__}, not zoo.Splits (zoo check tests it)")
    for name in ("train", "validation", "test"):
        split = getattr(splits, name)
        if never_ends(split):  # counting its batches never ended, in TensorFlow's own loop: no signal stopped it
            raise ZooError(f"dataset {plan.dataset.name!r}: its {name} split {NEVER_ENDS} (zoo check tests it)")
        if not (isinstance(split, (tuple, list)) and len(split) == 2 and all(isinstance(a, np.ndarray) for a in split)):
            continue
        problem = split_problem(f"its {name} split", *split, plan.spec)
        if problem:
            raise ZooError(
                f"dataset {plan.dataset.name!r}: {problem}; the plugin's factory must yield what its describe() says "
                "(zoo check tests it)"
            )


def preflight(plan: RunPlan, model, batches) -> None:
    """The mistakes ``zoo check`` finds, found before the first step instead of as a
    TensorFlow traceback (a model that cannot be saved: only after the last epoch):
    examples that disagree with the dataset's ``describe()``, outputs that do not fit the
    objective, a model that cannot be copied the way the run saves it. One line each."""
    import numpy as np

    from zoo.hookspecs import GENERATION
    from zoo.testing import output_problem

    x = next(iter(batches))[0]
    if not hasattr(x, "shape"):  # several inputs (a dict or tuple): the plugin's own business
        return
    shape, described = tuple(x.shape[1:]), tuple(plan.spec.input_shape)
    if len(shape) != len(described) or any(d is not None and d != s for d, s in zip(described, shape)):
        raise ZooError(
            f"dataset {plan.dataset.name!r} yields examples of shape {shape}, but its describe() says {described}; "
            "the plugin's describe() and factory must agree (zoo check tests it)"
        )
    if plan.model.item.objective != GENERATION:
        try:
            out = model(x[:2], training=False)
        except Exception as exc:  # noqa: BLE001 - whatever the plugin's layers raise
            raise ZooError(f"model {plan.model.name!r} cannot take dataset {plan.dataset.name!r}'s examples of shape {shape}: "
                           f"{one_line(exc)[:300]}") from None  # fmt: skip
        problem = output_problem(plan.model.item.objective, plan.spec, np.asarray(x[:2]), np.asarray(out))
        if problem:
            raise ZooError(f"model {plan.model.name!r} on dataset {plan.dataset.name!r}: {problem} (zoo check tests it)")
    try:
        portable_copy(model)
    except Exception as exc:  # noqa: BLE001
        raise ZooError(
            f"model {plan.model.name!r} cannot be copied with from_config(get_config()), as the run saves it at the end "
            f"({one_line(exc)[:200]}); a subclassed model must build its weights when constructed "
            "and return its constructor's arguments from get_config"
        ) from None


def fresh_keras_state(keras, plan: RunPlan) -> None:
    """Keras as a new process has it, then the run's precision and seed: a sequential sweep
    runs its jobs in one process, and layer names Keras generates (``dense_1``) count on."""
    keras.backend.clear_session()
    keras.mixed_precision.set_global_policy(plan.trainer.precision)
    keras.utils.set_random_seed(plan.seed)


def compile_model(keras, plan: RunPlan, model, training: bool = False, steps_per_epoch: int = 1):
    """``model`` compiled with the run's loss and metrics; ``training`` adds the optimizer
    (its schedule spread over ``steps_per_epoch``) and the trainer's execution settings."""
    if not training:
        model.compile(loss=loss_for(plan, model), metrics=build_metrics(plan))
        return model
    from zoo.optimization import build_optimizer, loss_function

    trainer = plan.trainer
    model.compile(
        optimizer=build_optimizer(trainer, steps_per_epoch),
        loss=loss_function(loss_for(plan, model), plan.spec, trainer.label_smoothing),
        metrics=build_metrics(plan),
        jit_compile="auto" if trainer.jit_compile == "auto" else trainer.jit_compile == "true",
        steps_per_execution=trainer.steps_per_execution,
    )
    return model


def _batches(
    tf,
    plan: RunPlan,
    split: Any,
    epoch: Optional[int] = None,
    whole_batches: bool = False,
    shuffle_buffer: int = 0,
    class_weights: Optional[list[float]] = None,
):
    """One split as the model trains on it: targets per objective, batched, prefetched; with
    ``epoch`` and ``shuffle_buffer`` (examples), shuffled in an order fixed by the run's seed
    and that epoch's number; with ``class_weights``, each example weighted by its class's."""
    return as_tf_dataset(
        tf,
        split,
        plan.trainer.batch_size,
        reconstruct=plan.model.item.objective == RECONSTRUCTION,
        shuffle_buffer=shuffle_buffer,
        seed=epoch_seed(plan.seed, epoch or 0),
        drop_remainder=whole_batches,
        class_weights=class_weights,
    )


def shuffle_buffer_size(tf, split: Any, trainer) -> int:
    """``trainer.shuffle_buffer`` examples, or as many as ``trainer.shuffle_memory_mb`` holds:
    the buffer keeps decoded examples, and 10,000 images of 224x224 would take 6 GB."""
    import numpy as np

    if isinstance(split, tf.data.Dataset):
        sizes = [(spec.shape.num_elements(), spec.dtype.size) for spec in tf.nest.flatten(split.element_spec)]
    else:
        sizes = [(int(np.prod(array.shape[1:])), array.dtype.itemsize) for array in split]
    if any(elements is None for elements, _ in sizes):  # variable shapes: no estimate
        return trainer.shuffle_buffer
    example_bytes = sum(elements * itemsize for elements, itemsize in sizes)
    fits = max(1, trainer.shuffle_memory_mb * 2**20 // max(1, example_bytes))
    if fits < trainer.shuffle_buffer:
        log.info(
            "shuffle buffer: %d examples of %d bytes (trainer.shuffle_memory_mb=%d holds no more)",
            fits, example_bytes, trainer.shuffle_memory_mb,
        )  # fmt: skip
    size = min(trainer.shuffle_buffer, fits)
    # The buffer fills as the first epoch starts, with no more than the split holds; raised
    # past the machine's memory, the kernel killed the run there with nothing said.
    count = int(split.cardinality()) if isinstance(split, tf.data.Dataset) else len(split[0])
    held = size if count < 0 else min(size, count)  # negative: unknown, or infinite
    refuse_beyond_memory(
        held * example_bytes,
        f"a shuffle buffer of {held:,} examples of {example_bytes:,} bytes (trainer.shuffle_buffer, trainer.shuffle_memory_mb)",
        "lower trainer.shuffle_memory_mb",
    )
    return size


def epoch_seed(seed: int, epoch: int) -> int:
    """The shuffling seed of one epoch: its order depends on nothing else, so that a
    resumed run sees each epoch's batches in the order an uninterrupted run does."""
    import numpy as np

    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


# The trainer's keys that scoring a finished run reads (the rest of the trainer, callbacks,
# loggers, cv and objective are training's alone).
EVALUATE_KEYS = ("trainer.batch_size", "trainer.precision", "trainer.deterministic")


def load_run_config(run_dir: Path, overrides: list[str]) -> DictConfig:
    """A finished run's resolved config with ``key=value`` overrides applied.

    ``metrics=[a,b]`` replaces the metrics; other keys are set as given and checked like
    any config (unknown keys and wrong types fail in one line).
    """
    run_dir = Path(run_dir)
    for name in (artifacts.CONFIG, artifacts.MODEL, artifacts.METRICS, artifacts.SPEC):
        artifacts.refuse_odd_file(run_dir / name)
    if not (run_dir / artifacts.CONFIG).is_file():
        raise ZooError(artifacts.not_a_run_directory(run_dir))
    from zoo.crossval import refuse_parent

    refuse_parent(run_dir, "")
    missing = next((name for name in (artifacts.METRICS, artifacts.MODEL) if not (run_dir / name).is_file()), None)
    if missing:
        raise ZooError(f"the run in {run_dir} {artifacts.unfinished(run_dir, missing)}")
    artifacts.check_readable(run_dir / artifacts.MODEL)  # every command that reads a run uses its model: said before TensorFlow
    recorded = artifacts.read_yaml(run_dir / artifacts.CONFIG)
    if not is_run_config(recorded):
        raise ZooError(f"{run_dir / artifacts.CONFIG} is not a zoo run's config (no model, dataset and trainer); {artifacts.DAMAGED_FIX}")
    cfg = OmegaConf.create(literal(recorded))  # the values the run had, never resolved again
    # A finished run is used on this machine: the devices it trained on (a GPU, a TPU, other
    # machines to meet) are where it was. `zoo evaluate` of a GPU run failed on a laptop, and
    # of a multi-worker run waited for its workers, on the hosts its config names.
    cfg.device = {"kind": "auto"}
    if str(OmegaConf.select(cfg, "dataset.cache", default="memory")) not in ("memory", "off"):
        # A cache file is written where the run's config says, by whatever reads its data: for
        # a run from elsewhere, anywhere on this machine. Nor in memory: a run cached in files
        # for data larger than memory. None, unless asked for here.
        cfg.dataset.cache = "off"
    # Its model is built again only to take the trained weights: the weights training started
    # from (ImageNet's download, a file on the machine it trained on) are neither read nor needed.
    from zoo.registry import get_registry

    registry = get_registry()
    model_name = str(OmegaConf.select(cfg, "model.name", default=""))
    if model_name in registry.names("model") and isinstance(cfg.model, DictConfig):
        for key, value in registry.get("model", model_name).item.without_starting_weights.items():
            if key in cfg.model:
                cfg.model[key] = value
    for override in overrides:
        key, sep, text = override.partition("=")
        if not sep or not key:
            raise ZooError(f"override {override!r} is not key=value (e.g. dataset.test_fraction=0.3)")
        if key in ("model", "dataset"):
            raise ZooError(f"{override}: a finished run keeps its {key}; change its keys instead (e.g. dataset.test_fraction=0.3)")
        if key.partition(".")[0] in ("trainer", "callbacks", "loggers", "cv", "objective") and key not in EVALUATE_KEYS:  # had been ignored, quietly
            raise ZooError(
                f"{override}: only training reads this; a finished run is scored with seed, dataset.*, metrics, device, "
                "trainer.batch_size, trainer.precision or trainer.deterministic changed"
            )
        if key == "device":  # where to evaluate it, as `zoo train device=cpu` says where to train
            key = "device.kind"
        if "${" in text:
            raise ZooError(f"{override}: give the value itself; interpolations are not resolved here")
        value = artifacts.command_line_value(override, text)
        if key == "metrics":
            names = value if isinstance(value, list) else [value]
            cfg.metrics = {str(name): {} for name in names}
        else:
            OmegaConf.update(cfg, key, value, merge=True, force_add=True)
    return cfg


@keras_to_itself
def evaluate(run_dir: Path, overrides: list[str]) -> dict[str, float]:
    """Evaluate a finished run's saved model on the test split of its (possibly overridden)
    config. Another seed or split (``seed=3``, ``dataset.test_fraction=0.5``) can put
    examples the model trained on into the test split: that is said, with how many."""
    trained = finished_run_plan(run_dir)  # first: what fails in the run's own config is said as such
    plan = plan_run(load_run_config(run_dir, overrides))
    check_data_fits_the_model(plan.spec, trained.spec, overrides)
    tf, keras, placement = _start(plan)
    splits = load_splits(plan)
    if splits.report and not any(o.startswith("dataset.") for o in overrides):  # the data it trained on, it should be
        warn_of_changed_data(artifacts.read_record(Path(run_dir) / artifacts.DATA_REPORT), dict(splits.report), Path(run_dir), finished=True)
    if any(o.partition("=")[0] == "seed" or o.startswith("dataset.") for o in overrides):
        warn_of_trained_examples(
            splits, load_splits(trained), "the run",
            "evaluate with the run's seed and split",
        )  # fmt: skip
    test_data = _batches(tf, plan, splits.test)
    with placement.strategy.scope():
        model = compile_model(keras, plan, rebuild_model(plan, Path(run_dir), [o for o in overrides if o.startswith("model.")]))
    return score(tf, model, test_data)


def check_data_fits_the_model(spec: DataSpec, trained: DataSpec, overrides: list[str]) -> None:
    """Data given to evaluate a run (``dataset.path=OTHER``) has the inputs and the classes its
    model learnt: a folder of classes x, y was scored quietly as the run's cat, dog."""
    given = " ".join(o for o in overrides if o.startswith("dataset.")) or "the run's dataset, described again,"
    if tuple(spec.input_shape) != tuple(trained.input_shape):
        raise ZooError(
            f"{shorten(given, 120)} gives inputs of shape {tuple(spec.input_shape)}, and the run's model takes "
            f"{tuple(trained.input_shape)}: evaluate with the run's own sizes (its config.yaml's dataset keys)"
        )
    names, learnt = list(spec.class_names or ()), list(trained.class_names or ())
    if spec.num_classes != trained.num_classes or (names and learnt and names != learnt):
        shown = ", ".join(map(str, names)) or f"{spec.num_classes} classes"
        raise ZooError(
            f"{shorten(given, 120)} holds {shorten(shown, 80)}, and the run's model learnt "
            f"{shorten(', '.join(map(str, learnt)) or f'{trained.num_classes} classes', 80)}: evaluate on data of those classes, in that order"
        )


def warn_of_changed_data(before: dict, now: dict, run_dir: Path, finished: bool = False) -> None:
    """Data that is not what the run read (images added to a folder, a text file edited): the
    report the dataset gave then and now differ. A run continued would go on quietly on
    other examples than it began with; a ``finished`` run evaluated would be tested on a
    split drawn anew, which may hold examples it trained on."""
    import json

    now = json.loads(json.dumps(now))  # as data.json holds it (tuples as lists)
    # What the report then lacks, an older plugin did not say (copies of training images): no change.
    changed = [key for key in before if before.get(key) != now.get(key)]
    if before and changed:
        shown = "; ".join(f"{key}: {shorten(str(before.get(key)), 60)} then, {shorten(str(now.get(key)), 60)} now" for key in changed[:2])
        what, goes_on, wanted = (
            ("trained on", "its test split is drawn anew from the data as it is now and may hold examples it trained on", "trained on")
            if finished
            else ("read when it started", "it goes on with the data as it is now", "began with")
        )
        warnings.warn(
            InputWarning(
                f"the data is not what this run {what} ({shown}); {goes_on} (for the data it {wanted}, restore it; "
                f"{run_dir / artifacts.DATA_REPORT} holds what it read)"
            ),
            stacklevel=1,
        )


def example_digests(split) -> list[bytes]:
    """A digest of each example's input in a split (arrays, or an unbatched tf.data.Dataset)."""
    import hashlib

    import numpy as np

    examples = (x for x, _ in split.as_numpy_iterator()) if hasattr(split, "as_numpy_iterator") else split[0]
    return [hashlib.blake2b(np.ascontiguousarray(x).tobytes(), digest_size=16).digest() for x in examples]


def warn_of_trained_examples(splits, trained_splits, who: str, fix: str) -> None:
    """Warn when the training split of ``trained_splits`` (what a model was trained on) holds
    more of the test examples of ``splits`` than their own training split does (a dataset
    with duplicates has some there too): the test metrics would overstate how the model does
    on new data. Examples are told apart by the dataset's ``ids`` where both give them."""
    named = all(split in (s.ids or {}) for s in (splits, trained_splits) for split in ("train", "test"))
    if named:
        test, own, trained = splits.ids["test"], set(splits.ids["train"]), set(trained_splits.ids["train"])
    else:
        test = example_digests(splits.test)
        own, trained = set(example_digests(splits.train)), set(example_digests(trained_splits.train))
    before, count = sum(d in own for d in test), sum(d in trained for d in test)
    if count > before:
        warnings.warn(
            f"{who} trained on {count} of the {len(test)} test examples (the split's own training examples hold "
            f"{before} of them): the test metrics overstate how the model does on new data; {fix}",
            InputWarning,
            stacklevel=2,
        )


def score(tf, model, batches) -> dict[str, float]:
    """The model's loss and metrics on ``batches``: the zoo's own evaluation pass on one
    device (validation each epoch, the test split), Keras' ``evaluate`` on mirrored
    replicas (which shares each batch out)."""
    from zoo.training import evaluate

    if model.distribute_strategy.num_replicas_in_sync == 1:
        return evaluate(tf, model, batches)
    return {k: float(v) for k, v in model.evaluate(batches, verbose=0, return_dict=True).items()}


def finished_run_plan(run_dir: Path) -> RunPlan:
    """A finished run's plan, with the data spec it trained on (recorded in ``spec.json``)
    rather than the dataset described again: its files may have moved since. No TF."""
    cfg = load_run_config(run_dir, [])
    spec_path = Path(run_dir) / artifacts.SPEC
    spec = None
    if spec_path.is_file():
        recorded = artifacts.read_json(spec_path)
        try:
            if not isinstance(recorded, dict):
                raise ValueError("not a mapping of the data's facts")
            fields = {f.name for f in dataclasses.fields(DataSpec)}
            if set(recorded) ^ fields:
                raise ValueError(f"its keys are {', '.join(sorted(map(str, recorded)))[:60]}, not {', '.join(sorted(fields))}")
            spec = DataSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in recorded.items()})
            consistent_spec(spec)
        except (TypeError, ValueError, AttributeError) as exc:
            raise ZooError(f"{spec_path} is damaged ({one_line(exc)[:100]}); {artifacts.DAMAGED_FIX}") from None
    try:
        return plan_run(cfg, spec=spec)
    except ZooError as exc:  # a plugin since uninstalled, a key from another version: the run's, not the user's
        since = plugins_since(run_dir)
        raise ZooError(f"the run in {run_dir}: {exc}{f'; {since}' if since else ''}") from None


def plugins_since(run_dir: Path) -> str:
    """How the plugin distributions a finished run trained with (its ``env.json``) differ
    from those installed now, as a clause; "" where they do not, or nothing says."""
    from zoo.registry import get_registry

    trained = artifacts.read_record(Path(run_dir) / artifacts.ENVIRONMENT).get("plugins")
    if not isinstance(trained, dict):
        return ""
    now = {source.distribution: source.version for source in get_registry().sources if source.error is None}
    missing = [f"{shorten(str(d), 60)} {shorten(str(v), 30)}" for d, v in trained.items() if d not in now]
    other = [f"{shorten(str(d), 60)} {shorten(str(v), 30)} (now {now[d]})" for d, v in trained.items() if d in now and now[d] != v]
    said = []
    if missing:
        said.append(f"it was trained with {', '.join(missing[:5])}, not installed here: install {'it' if len(missing) == 1 else 'them'}")
    if other:
        said.append(f"it was trained with {', '.join(other[:5])}")
    return "; ".join(said)


def consistent_spec(spec: DataSpec) -> None:
    """A recorded spec whose parts agree (an edited one would fail later on an index)."""
    from zoo.hookspecs import TASKS

    if spec.task not in TASKS:
        raise ValueError(f"task {shorten(str(spec.task), 40)!r} is none of {', '.join(TASKS)}")
    if not isinstance(spec.input_shape, tuple):
        raise ValueError(f"input_shape {shorten(str(spec.input_shape), 40)} is not a list of sizes")
    for key in ("class_names", "feature_names"):
        if not (isinstance(getattr(spec, key), tuple) and all(isinstance(name, str) for name in getattr(spec, key))):
            raise ValueError(f"{key} is not a list of names")
    low_high = spec.value_range
    if low_high is not None and not (isinstance(low_high, tuple) and len(low_high) == 2 and all(map(artifacts.is_number, low_high))):
        raise ValueError(f"value_range {shorten(str(low_high), 40)} is not null or [low, high]")
    if not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in spec.input_shape):
        raise ValueError(f"input_shape {list(spec.input_shape)} is not a list of positive sizes")
    if not isinstance(spec.num_classes, int) or spec.num_classes < 0:
        raise ValueError(f"num_classes {spec.num_classes!r} is not a count")
    if spec.class_names and len(spec.class_names) != spec.num_classes:
        raise ValueError(f"{len(spec.class_names)} class names for {spec.num_classes} classes")
    if spec.feature_names and (len(spec.input_shape) != 1 or len(spec.feature_names) != spec.input_shape[0]):
        raise ValueError(f"{len(spec.feature_names)} feature names for inputs of shape {list(spec.input_shape)}")


@keras_to_itself
def load_trained_model(run_dir: Path, plan: RunPlan | None = None):
    """A finished run's plan and its trained model."""
    plan = plan or finished_run_plan(run_dir)
    import_tensorflow()
    import keras

    keras.utils.set_random_seed(plan.seed)
    return plan, rebuild_model(plan, Path(run_dir))


def rebuild_model(plan: RunPlan, run_dir: Path, model_overrides: Sequence[str] = ()):
    """The run's model built by its plugin, with the trained weights from ``model.keras``.

    Only weights are read from the file: no code or config from it runs, and models with
    their own classes (VAE, GAN) need no Keras registration to load. ``model_overrides``:
    the ``model.`` keys the user changed (``zoo evaluate RUN model.filters=8``), named as
    the cause where the weights do not fit.
    """
    import zipfile
    import zlib

    for key, path in run_references(plan).items():  # a model factory may read the runs its config names
        if key.startswith("model.") and not (Path(path) / artifacts.MODEL).is_file():
            raise ZooError(
                f"the model of {run_dir} is built from {key}={path}, which is no longer there (moved or deleted?); "
                f"put that run back, or a link to where it is now"
            )
    model = plan.model.item.factory(plan.model_config, plan.spec)
    path = Path(run_dir) / artifacts.MODEL
    try:
        refuse_a_zip_bomb(path, model)
        with warnings.catch_warnings():  # a load that fails warns of each container first
            warnings.simplefilter("ignore", UserWarning)
            model.load_weights(path)
    except PermissionError as exc:  # made unreadable since the check: not damaged
        raise artifacts.cannot_read(path, exc) from None
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
        raise ZooError(f"{path} is damaged (not a whole .keras file: {one_line(exc)[:100]}); {artifacts.DAMAGED_FIX}") from None
    except Exception as exc:
        if innermost_module(exc) in ("zipfile", "zlib"):  # its members' names or methods garbled: a KeyError, NotImplementedError
            raise ZooError(f"{path} is damaged (its archive is garbled: {one_line(exc)[:100]}); {artifacts.DAMAGED_FIX}") from None
        if not isinstance(exc, ValueError):
            raise
        if "Not allowed: H5 file with" in str(exc):  # Keras' refusal to follow a crafted file elsewhere
            raise ZooError(
                f"{path} is not a file the zoo wrote: its weights point to other files (an HDF5 external link, external "
                f"or virtual dataset), which Keras refuses to follow; {artifacts.DAMAGED_FIX}"
            ) from None
        if model_overrides:
            raise ZooError(
                f"{shorten(' '.join(model_overrides), 120)}: the weights in {Path(run_dir) / artifacts.MODEL} were trained "
                f"for the run's own model keys and do not fit the model these build; leave them out"
            ) from None
        since = plugins_since(run_dir)
        raise ZooError(
            f"the weights in {Path(run_dir) / artifacts.MODEL} do not fit model {plan.model.name!r} as configured "
            f"({one_line(exc)[:200]}); "
            + (f"{since}: its model may be built otherwise now" if since else "was the run's config.yaml or spec.json edited?")
        ) from None
    return model


def refuse_a_zip_bomb(path: Path, model) -> None:
    """A ``.keras`` file is a zip archive that Keras unpacks into memory: one whose members
    unpack to far more than the model's weights (float64 for each, twice over, plus the
    small config files) is refused before it fills memory or disk."""
    import zipfile

    if not zipfile.is_zipfile(path):
        return  # load_weights says what it is
    with zipfile.ZipFile(path) as archive:
        unpacked = sum(member.file_size for member in archive.infolist())
    bound = 16 * model.count_params() + 64 * 2**20
    if unpacked > bound:
        raise ZooError(
            f"{path} would unpack to {unpacked / 2**20:,.0f} MB, far more than the {model.count_params():,} weights of "
            f"model {model.name!r} take; it is not the file the zoo wrote: {artifacts.DAMAGED_FIX}"
        )


def plot_test_predictions(plan: RunPlan, model, test_data, run_dir: Path, title: str) -> None:
    """The pictures of the model's objective, from its predictions on the test split."""
    import numpy as np

    objective = plan.model.item.objective
    if objective == RECONSTRUCTION and len(plan.spec.input_shape) == 3:  # image autoencoders
        batch = next(iter(test_data))[0]
        artifacts.plot_reconstructions(run_dir / artifacts.RECONSTRUCTIONS, batch, model(batch, training=False), title)
    if objective != CLASSIFICATION:
        return
    predicted = np.asarray(model.predict(test_data, verbose=0), dtype="float32")  # mixed precision: bfloat16
    targets = np.concatenate([np.asarray(y) for _, y in test_data])
    names = plan.spec.class_names or tuple(str(c) for c in range(plan.spec.num_classes))
    warn_of_absent_classes(targets, names)
    labels = (predicted.reshape(-1) >= 0.5).astype(int) if plan.spec.binary else predicted.argmax(axis=1)
    artifacts.plot_roc_curves(run_dir / artifacts.ROC, targets, predicted, names, title)
    artifacts.plot_confusion_matrix(run_dir / artifacts.CONFUSION, targets, labels, names, title)


def warn_of_absent_classes(targets, names, split: str = "test") -> None:
    """A test split without a class (a rare one, a small split) scores it quietly: its recall
    and F1 count as 0, and AUC averages over the classes present (none with one class: NaN).
    A training split without one trains a model that never predicts it."""
    import numpy as np

    targets = np.asarray(targets)
    present = set((targets.argmax(axis=-1) if targets.ndim > 1 and targets.shape[-1] > 1 else targets.reshape(-1)).astype(int).tolist())
    absent = [name for index, name in enumerate(names) if index not in present]
    if not absent:
        return
    which = f"class{'es' if len(absent) > 1 else ''} {shorten(', '.join(map(repr, absent)), 80)}"
    if split == "training":
        them = "them" if len(absent) > 1 else "it"
        effect = f"the model cannot learn {them}, nor ever predict {them}; give examples of {which}"
    else:
        effect = (f"{'their' if len(absent) > 1 else 'its'} recall and F1 are undefined (counted as 0, or left out of an average), "
                  "and so is AUC with one class left (NaN); give more examples, or a larger dataset.test_fraction")  # fmt: skip
    warnings.warn(InputWarning(f"the {split} split ({len(targets)} examples) holds no example of {which}: {effect}"), stacklevel=1)


def portable_copy(model):
    """The model without its compile state, so that ``model.keras`` loads with plain Keras.

    A compiled model's file names the zoo's metric classes, which Keras can only load
    once their module is imported; architecture and weights are what a user of the file
    needs (training state belongs in checkpoints).
    """
    copy = type(model).from_config(model.get_config())  # clone_model would re-compile it
    copy.set_weights(model.get_weights())
    return copy


def as_tf_dataset(
    tf,
    split: Any,
    batch_size: int,
    reconstruct: bool = False,
    shuffle_buffer: int = 0,
    seed: int = 0,
    drop_remainder: bool = False,
    class_weights: Optional[list[float]] = None,
):
    """A split (``(x, y)`` arrays or an unbatched ``tf.data.Dataset``) shuffled, batched and
    prefetched; for reconstruction the targets are the inputs; with ``class_weights``, the
    batches carry each example's class weight as its sample weight."""
    if isinstance(split, tf.data.Dataset):
        data = split.map(lambda x, y: (x, x)) if reconstruct else split
    else:
        x, y = split
        data = tf.data.Dataset.from_tensor_slices((x, x) if reconstruct else (x, y))
    if shuffle_buffer:
        data = data.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=False)
    data = data.batch(batch_size, drop_remainder=drop_remainder)
    if class_weights is not None:
        table = tf.constant(class_weights, tf.float32)
        data = data.map(lambda x, y: (x, y, tf.gather(table, tf.reshape(tf.cast(y, tf.int32), [-1]))))
    return data.prefetch(tf.data.AUTOTUNE)


def build_metrics(plan: RunPlan) -> list | None:
    metrics = []
    for entry, config in plan.metrics:
        metric = entry.item.factory(config, plan.spec)
        if getattr(metric, "name", entry.name) != entry.name:  # records would hold it under another name (`loss`, say)
            raise ZooError(
                f"metric {entry.name!r} is built named {metric.name!r}; it must log under its registered name (zoo check tests it)"
            )
        metrics.append(metric)
    # None, not []: Keras reports an empty metric list as "not built" after a custom step.
    return metrics or None


def owns_training_step(model) -> bool:
    import keras

    return type(model).train_step is not keras.Model.train_step


def loss_for(plan: RunPlan, model=None) -> Any:
    """The model's own loss, or the standard one for its task; none for a model with its
    own training step (it computes its losses itself)."""
    if model is not None and owns_training_step(model):
        return None
    if plan.model.item.loss is not None:
        return plan.model.item.loss
    if plan.model.item.objective == RECONSTRUCTION:
        return "mean_squared_error"
    return "binary_crossentropy" if plan.spec.binary else "sparse_categorical_crossentropy"


def progress_mode(progress: str) -> str:
    """``auto``: a bar on a terminal, a line per epoch where the output goes to a file or pipe
    (or to a terminal that cannot redraw a line)."""
    if progress == "auto":
        from zoo.tables import redrawn_in_place

        return "bar" if redrawn_in_place(sys.stdout) else "epoch"
    return progress


def divergence_guard(keras, plan: RunPlan):
    """A callback that stops a run whose loss is no longer finite, in one line: nothing after
    it could be trusted, and the metrics and plots would fail on NaN anyway."""
    import math

    class DivergenceGuard(keras.callbacks.Callback):
        epoch = 0

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            self._check(logs, f"at step {batch + 1} of epoch {self.epoch + 1}")

        def on_epoch_end(self, epoch, logs=None):
            self._check(logs, f"in epoch {epoch + 1}")

        def _check(self, logs, where: str) -> None:
            for name, value in (logs or {}).items():
                # Training losses only: every worker of a multi-worker run sees the same ones.
                if name.endswith("loss") and not name.startswith("val_") and not math.isfinite(float(value)):
                    raise ZooError(
                        f"training diverged: {name} became {float(value)} {where}; {divergence_fix(plan)}. "
                        f"The run is left unfinished (no {artifacts.METRICS})"
                    )

    return DivergenceGuard()
