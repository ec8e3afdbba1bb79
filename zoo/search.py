"""Hyper-parameter searches on Optuna: the study a sweep drives (``run_study``, called by
the ``hydra_plugins.zoo_optuna_sweeper`` sweeper) and the trial a run reports to
(``TrialReport``, a Keras callback in the trial's job).

The sweeper and the trials meet only in the study's storage (an SQLAlchemy URL; SQLite by
default), so a trial may run in the driver's process, a joblib worker, a SLURM job or a
Ray actor: it finds its study by name and URL, and its trial by number, all three given to
it as ``hydra.sweeper.*`` overrides.
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import logging
import math
import os
import shlex
import warnings
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional

from zoo import artifacts
from zoo.errors import ZooError, one_line
from zoo.registry import get_registry

log = logging.getLogger(__name__)

BEST = "best.yaml"
MAX_CHOICES = 10_000  # a categorical search space longer than this is a range or an interval
HISTORY_PLOT = "optimization_history.png"
IMPORTANCE_PLOT = "param_importances.png"

# Samplers and pruners by name (a name from the config never imports anything else).
SAMPLERS = {
    "tpe": "TPESampler", "random": "RandomSampler", "cmaes": "CmaEsSampler", "qmc": "QMCSampler",
    "grid": "GridSampler", "nsgaii": "NSGAIISampler", "gp": "GPSampler",
}  # fmt: skip
PRUNERS = {
    "none": "NopPruner", "median": "MedianPruner", "percentile": "PercentilePruner",
    "successive_halving": "SuccessiveHalvingPruner", "hyperband": "HyperbandPruner", "threshold": "ThresholdPruner",
}  # fmt: skip


def optuna_module():
    try:
        import optuna
    except ImportError:
        raise ZooError("hydra/sweeper=optuna needs Optuna, which is not installed: pip install 'keras-zoo[sweeps]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


# --------------------------------------------------------------------------------------
# The search space
# --------------------------------------------------------------------------------------


def search_space(params: Optional[Mapping[str, Any]], arguments: list[str]) -> tuple[dict, dict]:
    """Optuna distributions for the swept keys and the fixed values of the others, from the
    sweeper's ``params`` and the command line's overrides (which win)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    lines = [f"{key}={value}" for key, value in (params or {}).items()] + list(arguments)
    space: dict[str, Any] = {}
    fixed: dict[str, str] = {}
    for override in OverridesParser.create().parse_overrides(lines):
        key = override.get_key_element()
        space.pop(key, None)
        fixed.pop(key, None)
        if override.is_sweep_override():
            space[key] = distribution(override)
        else:
            fixed[key] = override.get_value_element_as_str()
    return space, fixed


def range_ends(value) -> Optional[tuple[tuple[Any, Any], int]]:
    """``((first, last), count)`` of a Hydra ``range(start, stop, step)``, stop excluded; None
    for an empty one. Its ends, not its values: range(0,100000000) has 10^8 of them."""
    count = max(0, math.ceil((value.stop - value.start) / value.step)) if value.step else 0
    return ((value.start, value.start + (count - 1) * value.step), count) if count else None


def distribution(override) -> Any:
    """``choice(...)`` (and ``a,b,c``), ``range(start, stop[, step])`` (stop excluded, as in
    Python), ``interval(low, high)`` (floats; ``int(interval(...))`` for integers), each
    ``tag(log, ...)`` for a log scale."""
    from hydra.core.override_parser.types import Transformer

    optuna = optuna_module()
    key, value = override.get_key_element(), override.value()
    log_scale = "log" in getattr(value, "tags", set())
    if override.is_choice_sweep() or (override.is_range_sweep() and value.shuffle):
        choices = list(itertools.islice(override.sweep_iterator(transformer=Transformer.encode), MAX_CHOICES + 1))
        if len(choices) > MAX_CHOICES:
            raise ZooError(f"{key}: more than {MAX_CHOICES:,} choices; search a range(...) or an interval(...) instead")
        return optuna.distributions.CategoricalDistribution(choices)
    if override.is_range_sweep():
        ends = range_ends(value)
        if ends is None:
            raise ZooError(f"{key}: {override.get_value_element_as_str()} is empty; give start < stop")
        (first, last), count = ends
        floats = any(isinstance(v, float) for v in (value.start, value.stop, value.step))
        kind = optuna.distributions.FloatDistribution if floats else optuna.distributions.IntDistribution
        return kind(min(first, last), max(first, last), step=abs(value.step) if count > 1 else None)  # also a descending one
    if override.is_interval_sweep():
        if not value.start < value.end:
            raise ZooError(f"{key}: interval({value.start}, {value.end}) is empty; give low < high")
        if log_scale and value.start <= 0:
            raise ZooError(f"{key}: a log scale needs a positive lower bound, not {value.start}")
        if isinstance(value.start, int) and isinstance(value.end, int):
            return optuna.distributions.IntDistribution(value.start, value.end, log=log_scale)
        return optuna.distributions.FloatDistribution(float(value.start), float(value.end), log=log_scale)
    raise ZooError(f"{key}: {override.get_value_element_as_str()} is not a search space; use choice, range or interval")


def grid_values(name: str, space: Mapping[str, Any]) -> list:
    optuna = optuna_module()
    found = space[name]
    if isinstance(found, optuna.distributions.CategoricalDistribution):
        return list(found.choices)
    step = getattr(found, "step", None)
    if step is None:
        raise ZooError(f"{name}: the grid sampler needs choice() or range() values, not an interval")
    count = int(round((found.high - found.low) / step)) + 1
    return [found.low + i * step for i in range(count)]


# --------------------------------------------------------------------------------------
# Samplers and pruners by name
# --------------------------------------------------------------------------------------


def by_name(kind: str, table: Mapping[str, str], module, setting: Any, extra: Optional[Mapping[str, Any]] = None) -> Any:
    """An Optuna sampler or pruner from ``setting``: a name, or a mapping with ``name`` and
    the class's keyword arguments (checked against its signature)."""
    from omegaconf import DictConfig, OmegaConf

    options = OmegaConf.to_container(setting, resolve=True) if isinstance(setting, DictConfig) else setting
    if options is None:
        options = {"name": "none"}
    if isinstance(options, str):
        options = {"name": options}
    if not isinstance(options, dict) or "name" not in options:
        raise ZooError(f"hydra.sweeper.{kind} must be a name ({', '.join(table)}) or a mapping with a name, not {options!r}")
    options, extra = dict(options), dict(extra or {})
    name = str(options.pop("name"))
    if name not in table:
        raise ZooError(f"hydra.sweeper.{kind}={name!r} is not known; choose one of: {', '.join(table)}")
    cls = getattr(module, table[name])
    accepted = [p for p in inspect.signature(cls).parameters if p not in extra]
    unknown = [key for key in options if key not in accepted]
    if unknown:
        raise ZooError(f"hydra.sweeper.{kind}.{unknown[0]} is not an option of {name} ({cls.__name__}); its options: {', '.join(accepted)}")
    if kind == "sampler" and options.get("seed") is None:
        options.pop("seed", None)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna's "experimental" notes on some of them
            return cls(**extra, **options)
    except ImportError as exc:
        raise ZooError(f"the {name} {kind} needs a package that is not installed ({exc}); pip install it or choose another") from None
    except (TypeError, ValueError) as exc:
        raise ZooError(f"hydra.sweeper.{kind}={name}: {exc}") from None


# --------------------------------------------------------------------------------------
# The study
# --------------------------------------------------------------------------------------


def storage_url(settings: Mapping[str, Any], sweep_dir: Path) -> str:
    """The study's storage, SQLite paths made absolute (trials in other working directories,
    processes or machines reach the same file); null: ``optuna.db`` in the sweep directory."""
    url = settings.get("storage")
    if not url:
        url = f"sqlite:///{(sweep_dir / 'optuna.db').resolve()}"
    url = str(url)
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        url = f"sqlite:///{Path(url.removeprefix('sqlite:///')).resolve()}"
    if url.startswith("sqlite:///"):  # checked by one_at_a_time, in the folder made here
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)  # SQLite makes no folders
    return url


@contextlib.contextmanager
def one_at_a_time(url: str) -> Iterator[None]:
    """Searches started together on one new SQLite study (two terminals, a job array): each
    Optuna created the tables, and all but one failed on "table studies already exists". The
    study's folder is locked while a process checks the file and creates or opens the study."""
    if not url.startswith("sqlite:///"):
        yield
        return
    path = Path(url.removeprefix("sqlite:///"))
    # SQLite writes a journal beside its file. Another user's study (a team's) had failed at
    # the first trial's commit, as "invalid data in the commit, e.g. exceeding max length".
    for target in (path.parent, path) if path.exists() else (path.parent,):
        if not os.access(target, os.W_OK):
            raise ZooError(
                f"hydra.sweeper.storage: {target} cannot be written by {artifacts.this_user()} (its permissions refuse it), "
                f"and a search records its trials there; give a database of your own (hydra.sweeper.storage=sqlite:///PATH)"
            )
    with artifacts.folder_locked(path.parent):
        refuse_foreign_database(path)  # while no other search is making it
        yield


OPTUNA_TABLES = {"studies", "trials", "version_info"}


def refuse_foreign_database(path: Path) -> None:
    """A study goes into a new SQLite file or an Optuna one: Optuna would add its tables to
    a database of yours, and opening a pipe would wait for ever."""
    if not path.exists():
        return
    if path.is_file() and path.stat().st_size == 0:  # SQLite's new database (a search stopped as it began)
        return
    if not path.is_file():
        raise ZooError(f"hydra.sweeper.storage: {path} is not a regular file (a folder, a pipe or a device); give a new file or an Optuna study's")
    damage = artifacts.sqlite_damage(path)
    if damage:
        raise ZooError(f"hydra.sweeper.storage: {path} is a damaged SQLite database ({damage}); restore it from a backup, or give a new file")
    if not OPTUNA_TABLES <= artifacts.sqlite_tables(path):
        raise ZooError(f"hydra.sweeper.storage: {path} is a file of yours, not an Optuna study's; give a new file (or leave storage unset)")


def hydra_string(text: str) -> str:
    """``text`` as a quoted Hydra override value."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def search_direction(objective: str, direction: str) -> str:
    """``maximize`` or ``minimize``: ``auto`` as the objective's metric declares (a loss,
    perplexity: minimize). A direction against the declaration is the user's, but it had
    quietly found the worst runs (``objective=val_loss`` maximised): a warning says so."""
    from zoo.config import improving_direction

    if direction not in ("auto", "maximize", "minimize"):
        raise ZooError(f"hydra.sweeper.direction={direction!r}; choose auto, maximize or minimize")
    improves = {"max": "maximize", "min": "minimize"}.get(improving_direction(objective) or "")
    if direction == "auto":
        if improves is None and objective.removeprefix("val_") not in get_registry().names("metric"):  # a typo, not a metric's
            raise ZooError(
                f"objective={objective} is no loss and names no metric (val_ or test values of: "
                f"{', '.join(sorted(get_registry().names('metric')))}); choose one, or set hydra.sweeper.direction=maximize "
                "or minimize for a value the model logs itself"
            )
        if improves is None:
            raise ZooError(
                f"hydra.sweeper.direction=auto cannot tell whether objective={objective} improves up or down (its metric "
                "plugin declares no greater_is_better); set hydra.sweeper.direction=maximize or minimize"
            )
        return improves
    if improves and improves != direction:
        log.warning("hydra.sweeper.direction=%s for objective=%s, which is better %s: the search looks for the worst runs",
                    direction, objective, "higher" if improves == "maximize" else "lower")  # fmt: skip
    return direction


def run_study(config, settings: Mapping[str, Any], arguments: list[str], launcher) -> Any:
    """Run the trials the study still lacks, then record and print its best trial."""
    optuna = optuna_module()
    objective = config.get("objective")
    if not objective:
        raise ZooError("an Optuna search optimises the run's objective, and none is set; add objective=<metric> (val_accuracy, ...)")
    direction = search_direction(str(objective), str(settings.get("direction") or "auto"))
    sweep_dir = Path(config.hydra.sweep.dir)  # made once the study opens: a refused one leaves no empty folder
    name = settings.get("study_name") or config.hydra.runtime.choices.get("hparams_search") or "zoo"
    n_trials = int(settings.get("n_trials") or 0)
    n_jobs = max(int(settings.get("n_jobs") or 1), 1)
    if n_trials < 1:
        raise ZooError(f"hydra.sweeper.n_trials={n_trials}; a search needs at least 1 trial")
    if not 0 <= float(settings.get("max_failure_rate") or 0.0) <= 1:
        raise ZooError(f"hydra.sweeper.max_failure_rate={settings.get('max_failure_rate')} is a share of the trials: from 0 to 1")
    space, fixed = search_space(settings.get("params"), arguments)
    if not space:
        raise ZooError("the search has no space: give hydra.sweeper.params (interval, choice, range) or a swept override")
    storage = storage_url(settings, sweep_dir)

    sampler_setting = settings.get("sampler")
    extra: dict[str, Any] = {}
    sampler_name = sampler_setting if isinstance(sampler_setting, str) else (sampler_setting or {}).get("name")
    if sampler_name == "grid":
        extra = {"search_space": {key: grid_values(key, space) for key in space}}
        n_trials = min(n_trials, math.prod(len(values) for values in extra["search_space"].values()))
    pruner = by_name("pruner", PRUNERS, optuna.pruners, settings.get("pruner"))
    try:
        with one_at_a_time(storage):
            study = optuna.create_study(study_name=name, storage=storage, pruner=pruner, direction=direction, load_if_exists=True)
    except Exception as exc:  # a URL SQLAlchemy cannot parse, a missing dialect or driver, a database it cannot open
        if not isinstance(exc, ImportError) and type(exc).__module__.split(".")[0] != "sqlalchemy":
            raise
        if "database is locked" in str(exc):  # SQLite's, after its wait: said in SQLAlchemy's words, with its help URL
            raise ZooError(
                f"hydra.sweeper.storage={storage} is locked by another program (a search still running on it, or a "
                "database browser holding it open); let it finish or close it, then run the command again"
            ) from None
        raise ZooError(f"hydra.sweeper.storage={storage} cannot be opened ({one_line(exc)[:160]})") from None
    earlier = study.get_trials(deepcopy=False)
    # The sampler is set once the earlier trials are counted: its seed moves on by their number.
    study.sampler = by_name("sampler", SAMPLERS, optuna.samplers, shifted_seed(sampler_setting, len(earlier)), extra)
    if study.direction.name.lower() != direction:
        raise ZooError(f"study {name!r} in {storage} was created to {study.direction.name.lower()}, not {direction}; use another study_name")
    check_same_search(study, earlier, study_settings(config, space, fixed), space, f"study {name!r} in {storage}")
    sweep_dir.mkdir(parents=True, exist_ok=True)
    # Hydra's own record of a sweep, as its grid sweeper writes it: it marks the folder as a
    # zoo sweep's, which running the same search again there requires (a study kept outside
    # the folder had left no mark, and the search could not be run again in it).
    from omegaconf import OmegaConf

    artifacts.write_text(sweep_dir / "multirun.yaml", OmegaConf.to_yaml(config))

    states = [trial.state for trial in earlier]
    done = sum(state.is_finished() and state != optuna.trial.TrialState.FAIL for state in states)
    left = max(n_trials - done, 0)
    interrupted = states.count(optuna.trial.TrialState.RUNNING)
    if earlier and not left:
        print(f"Optuna study {name!r} ({storage}) is finished: {done} of {n_trials} trials done (raise hydra.sweeper.n_trials for more)")
    elif earlier:
        print(
            f"resuming Optuna study {name!r} ({storage}): {done} of {n_trials} trials done, {left} to run"
            + (f"; {interrupted} left running by an interrupted sweep are not counted" if interrupted else ""),
            flush=True,
        )
    failures = launched = 0
    max_failure_rate = float(settings.get("max_failure_rate") or 0.0)
    stale = {trial.number for trial in earlier if trial.state == optuna.trial.TrialState.RUNNING}

    def taken() -> int:
        """Trials done or running now: another search on the same study (a second terminal, a
        job array) takes from n_trials too, and two searches had run it twice over."""
        return sum(
            (trial.state.is_finished() and trial.state != optuna.trial.TrialState.FAIL)
            or (trial.state == optuna.trial.TrialState.RUNNING and trial.number not in stale)
            for trial in study.get_trials(deepcopy=False)
        )

    while launched < left:
        wanted = min(n_jobs, left - launched, n_trials - taken())
        if wanted <= 0:
            break
        trials = [study.ask(fixed_distributions=space) for _ in range(wanted)]
        jobs = [
            [*(f"{key}={value}" for key, value in trial.params.items()), *(f"{key}={value}" for key, value in fixed.items()),
             f"hydra.sweeper.storage={hydra_string(storage)}", f"hydra.sweeper.study_name={hydra_string(name)}",
             f"hydra.sweeper.trial={trial.number}"]
            for trial in trials
        ]  # fmt: skip
        # Job numbers are trial numbers: folder 7_<model> is trial 7, in any sweep of the study.
        returns = launcher.launch(jobs, initial_job_idx=trials[0].number)
        launched += len(trials)
        for trial, job in zip(trials, returns):
            if study_trial(study, trial.number).state.is_finished():
                continue  # its job told the study itself (pruned)
            value = job_value(job)
            failures += value is None
            tell(study, trial.number, value)
        if failures and failures / launched > max_failure_rate:
            raise ZooError(
                f"{failures} of {launched} trials failed (hydra.sweeper.max_failure_rate={max_failure_rate}); "
                f"see their train.log in {sweep_dir}"
            )
    return report_best(study, config, objective, fixed, sweep_dir, storage, n_trials)


# What a study's trials may differ in besides the searched keys: where they run and how they
# report (as a run's attempts may), and the sweep's own settings (n_trials, the launcher).
STUDY_CHANGES = ("hydra", "device", "trainer.progress", "trainer.resume", "trainer.checkpoint_", "trainer.keep_checkpoints")
SETTINGS_ATTR = "zoo_settings"


def study_settings(config, space: Mapping[str, Any], fixed: Mapping[str, str]) -> dict[str, Any]:
    """The settings a study's trials share: the sweep's run config with the fixed values of
    its search's ``params`` applied, less the searched keys and ``STUDY_CHANGES``."""
    import json

    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import DictConfig, OmegaConf

    from zoo.compare import flatten

    run_config = {key: value for key, value in OmegaConf.to_container(config, resolve=False).items() if key != "hydra"}
    settings = flatten(json.loads(json.dumps(run_config, default=str)))
    parser = OverridesParser.create()
    for key, text in fixed.items():
        if not isinstance(OmegaConf.select(config, key, default=None), DictConfig):  # a group's choice is in the config already
            settings[key] = json.loads(json.dumps(parser.parse_override(f"{key}={text}").value(), default=str))
    return {
        key: value for key, value in sorted(settings.items())
        if key not in space and not key.startswith(STUDY_CHANGES) and not any(key.startswith(f"{searched}.") for searched in space)
    }  # fmt: skip


def check_same_search(study, earlier: list, settings: dict[str, Any], space: Mapping[str, Any], where: str) -> None:
    """A study run again adds trials to the same search: its earlier trials' values are
    compared with the new ones, and its best trial rerun with this sweep's settings. Another
    objective or other fixed settings (``trainer.epochs=2`` after 20) had been mixed in
    unsaid, and best.yaml named the best of them with settings it never ran with; a searched
    key of another kind failed in Optuna's words. The first sweep records its settings in
    the study (one of an older zoo: from now on)."""
    from optuna.distributions import check_distribution_compatibility

    recorded = study.user_attrs.get(SETTINGS_ATTR)
    if not isinstance(recorded, dict):
        study.set_user_attr(SETTINGS_ATTR, settings)
        recorded = settings
    fix = "run the search with the settings it had (to add trials to it), or give another hydra.sweeper.study_name (a new search)"
    searched = {key for trial in earlier for key in trial.distributions} | set(space)
    for key in sorted(set(recorded) | set(settings), key=lambda key: (not key.endswith(".name"), key)):  # another model first
        if key in searched or any(key.startswith(f"{name}.") for name in searched):
            continue  # searched then and fixed now, or the other way: the search narrowed or widened
        if key not in recorded or key not in settings or recorded[key] != settings[key]:
            shown = lambda values: f"{key}={values[key]!r}" if key in values else f"no {key}"  # noqa: E731
            raise ZooError(f"{where} holds trials run with {shown(recorded)}; this search has {shown(settings)}; {fix}")
    for trial in earlier:
        for key, before in trial.distributions.items():
            if key in space:
                try:
                    check_distribution_compatibility(before, space[key])
                except ValueError:
                    raise ZooError(f"{where} searched {key} as {before!r}, not {space[key]!r} (Optuna cannot mix them); {fix}") from None


def tell(study, number: int, value: Optional[float]) -> None:
    """The trial's result to the study (failed where there is no value)."""
    import optuna

    try:
        if value is None:
            study.tell(number, state=optuna.trial.TrialState.FAIL)
        else:
            study.tell(number, value)
    except RuntimeError as exc:
        # The grid sampler calls study.stop() after the last point, which Optuna allows only
        # inside study.optimize; the result is stored before that (tell's `finally`).
        if "Study.stop" not in str(exc):
            raise


def shifted_seed(setting: Any, trials_before: int) -> Any:
    """A resumed study's sampler starts afresh: with its seed unchanged it would propose the
    earlier trials' values again, so the seed moves on by the number of trials before."""
    from omegaconf import DictConfig, OmegaConf

    if not isinstance(setting, DictConfig) or setting.get("seed") is None or not trials_before:
        return setting
    shifted = OmegaConf.to_container(setting, resolve=True)
    shifted["seed"] = int(shifted["seed"]) + trials_before
    return shifted


def study_trial(study, number: int):
    return study._storage.get_trial(study_trial_id(study, number))  # noqa: SLF001


def study_trial_id(study, number: int) -> int:
    return study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number)  # noqa: SLF001


def job_value(job) -> Optional[float]:
    """A finished job's objective, or None where it failed (Hydra keeps its exception)."""
    try:
        value = job.return_value
    except Exception as exc:  # noqa: BLE001 - whatever the job raised, the trial failed (its job said why)
        log.warning("trial job %s failed: %s", job.hydra_cfg.hydra.job.num if job.hydra_cfg else "?", exc)
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def report_best(study, config, objective: str, fixed: Mapping[str, str], sweep_dir: Path, storage: str, n_trials: int):
    """``best.yaml`` and the plots in the sweep directory; the best trial on the terminal."""
    import yaml

    optuna = optuna_module()
    trials = study.get_trials(deepcopy=False)
    counts = {state.name.lower(): sum(t.state == state for t in trials) for state in optuna.trial.TrialState}
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    summary = ", ".join(f"{count} {state}" for state, count in counts.items() if count)
    print(f"\nOptuna study {study.study_name!r} ({storage}): {summary}; {n_trials} asked for", flush=True)
    if not complete:
        print("no trial completed, so there is no best trial yet")
        return None
    best = study.best_trial
    params = dict(best.params)
    rerun = rerun_overrides(config, fixed, params)
    record = {
        "study": study.study_name, "storage": storage, "objective": objective, "direction": study.direction.name.lower(),
        "trial": best.number, "value": best.value, "run_dir": best.user_attrs.get("run_dir"), "params": params, "overrides": rerun,
        "command": shlex.join(["zoo", "train", *rerun]), "trials": counts,
    }  # fmt: skip
    artifacts.write_text(sweep_dir / BEST, yaml.safe_dump(record, sort_keys=False))
    plots = plot_study(study, sweep_dir, objective)
    print(f"best trial: {best.number} ({record['run_dir']}), {objective} {best.value:.6g}, with {' '.join(f'{k}={v}' for k, v in params.items())}")
    print(f"to train it again: {record['command']}")
    print(f"recorded in {sweep_dir / BEST}" + (f" (plots: {', '.join(p.name for p in plots)})" if plots else ""))
    return best.value


def rerun_overrides(config, fixed: Mapping[str, str], params: Mapping[str, Any]) -> list[str]:
    """One run as the best trial ran: this sweep's command-line overrides (not the
    sweeper's), the searched keys set to the trial's values, and the fixed values the
    search's ``params`` gave."""
    task = list(config.hydra.overrides.task)
    task_keys = {line.split("=", 1)[0].lstrip("+~") for line in task}
    kept = [line for line in task if line.split("=", 1)[0].lstrip("+~") not in params]
    added = {key: value for key, value in fixed.items() if key not in task_keys}
    return kept + [f"{key}={value}" for key, value in {**added, **params}.items()]


@artifacts.drawn_as_written
def plot_study(study, sweep_dir: Path, objective: str) -> list[Path]:
    """Optuna's optimisation history and parameter importances, as PNG (matplotlib)."""
    import matplotlib

    # Optuna draws through pyplot, which would import the backend that a `matplotlibrc` in the
    # working folder names (Matplotlib reads that file first): a module of a repository one
    # trains in, run. The zoo only writes files: Agg, whatever the settings say.
    matplotlib.use("agg", force=True)
    import optuna.visualization.matplotlib as plots
    from matplotlib import pyplot
    from matplotlib.ticker import MaxNLocator

    written = []
    complete = [t for t in study.trials if t.state == optuna_module().trial.TrialState.COMPLETE]
    searched = {name for trial in complete for name in trial.params}
    for name, draw in ((HISTORY_PLOT, plots.plot_optimization_history), (IMPORTANCE_PLOT, plots.plot_param_importances)):
        if name == IMPORTANCE_PLOT and len(complete) <= len(searched):
            # Fewer trials than it takes to vary each parameter once: one trial drew every
            # parameter at exactly 1/n, a ranking of nothing.
            log.info("no %s: %d complete trials rank no %d parameters", name, len(complete), len(searched))
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "experimental" notes
                axes = draw(study, target_name=objective)
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:  # too few trials to rank parameters
            log.info("no %s: %s", name, exc)
            continue
        if name == HISTORY_PLOT:
            axes.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
            low, high = axes.get_xlim()  # a study of one trial had been ticked -0.045 to 0.045
            axes.set_xlim(min(low, -0.5), max(high, len(study.trials) - 0.5))
            axes.set_title(f"Study {study.study_name}: {objective} per trial")
        else:
            axes.set_title(f"Study {study.study_name}: what {objective} depended on", loc="left")
        figure = axes.figure
        figure.set_size_inches(8, 5)
        figure.tight_layout()
        artifacts.save_figure(figure, sweep_dir / name)
        pyplot.close(figure)
        written.append(sweep_dir / name)
    return written


# --------------------------------------------------------------------------------------
# The trial, in its job
# --------------------------------------------------------------------------------------


def trial_of(hydra_config) -> Optional[dict[str, Any]]:
    """The study trial this job runs, where the zoo's sweeper launched it."""
    sweeper = hydra_config.sweeper
    if "zoo_optuna_sweeper" not in str(sweeper.get("_target_", "")) or sweeper.get("trial") is None:
        return None
    return {"storage": str(sweeper.storage), "study": str(sweeper.study_name), "number": int(sweeper.trial),
            "pruner": sweeper.get("pruner")}  # fmt: skip


def trial_callback(trial: Mapping[str, Any], objective: str, run_dir: Path):
    """A Keras callback that reports the objective to the trial after every epoch (the
    validation value of a test metric: ``val_accuracy`` for ``accuracy``) and ends training
    when the study's pruner says so, marking the trial pruned in the storage itself."""
    from zoo.run import import_tensorflow

    import_tensorflow()  # first, so that its C++ start-up lines go to the log
    import keras

    optuna = optuna_module()
    # The pruner is not kept in the storage: each trial builds the sweep's own from its config.
    pruner = by_name("pruner", PRUNERS, optuna.pruners, trial.get("pruner"))
    study = optuna.load_study(study_name=trial["study"], storage=trial["storage"], pruner=pruner)
    number = int(trial["number"])
    reporting = optuna.trial.Trial(study, study_trial_id(study, number))
    reporting.set_user_attr("run_dir", str(Path(run_dir).resolve()))  # best.yaml names it

    class TrialReport(keras.callbacks.Callback):
        record_key = "search_trial"  # training.json

        def __init__(self):
            super().__init__()
            self.pruned_at: Optional[int] = None
            self.step = "epoch"  # what a step is: an epoch, or a fold of a cross-validation
            self.monitor: Optional[str] = None

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            self.monitor = next((name for name in (objective, f"val_{objective}") if name in logs), None)
            if self.monitor is None:
                if not isinstance(study.pruner, optuna.pruners.NopPruner):
                    raise ZooError(
                        f"objective={objective!r} is not logged per epoch, so the pruner has nothing to judge; "
                        f"choose one of: {', '.join(sorted(k for k in logs if k.startswith('val_')))}"
                    )
                return
            if self.report(epoch + 1, float(logs[self.monitor])):
                self.model.stop_training = True

        def report_fold(self, fold: int, fold_dirs, scores) -> bool:
            """After fold ``fold`` of a cross-validation: the objective's mean so far."""
            import statistics

            from zoo.sweeps import objective_value

            self.step, self.monitor = "fold", objective
            return self.report(fold, statistics.fmean(objective_value(objective, m, d) for d, m in zip(fold_dirs, scores)))

        def report(self, step: int, value: float) -> bool:
            """Report; True where the pruner stops the trial (then marked pruned in the study)."""
            if not math.isfinite(value):
                return False  # Optuna refuses NaN; the divergence guard ends such a run
            reporting.report(value, step=step)
            if not reporting.should_prune():
                return False
            self.pruned_at = step
            study.tell(number, state=optuna.trial.TrialState.PRUNED)
            print(f"\ntrial {number} pruned after {self.step} {step}: {self.monitor} {value:.4g}", flush=True)
            return True

        def outcome(self) -> dict[str, Any]:
            return {"study": trial["study"], "storage": trial["storage"], "number": number, "reported": self.monitor,
                    "step": self.step, "pruned_at": self.pruned_at}  # fmt: skip

    return TrialReport()
