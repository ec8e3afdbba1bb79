"""Conformance checks for plugins: what ``zoo check`` runs, and what a plugin's own tests use.

In a plugin distribution's tests, one module is enough::

    # tests/test_conformance.py
    from zoo.testing import conformance_tests

    test_conformance = conformance_tests("my-distribution")

That makes one pytest test per registered item and check, failing with the item, the check
and the reason. The checks, in order (a failed check skips the rest of its item's):

- plugin: ``load`` (imported and registered without error, inside the zoo versions its
  distribution supports); ``light_import`` (importing it and calling its hooks imports no
  TensorFlow, Keras, PyTorch or JAX: listing stays fast).
- model: ``config`` (its config round-trips through Hydra's composition and YAML);
  ``build`` (the factory builds a ``keras.Model`` with the defaults, for small synthetic
  data of each shape it declares); ``output_shape`` (what it predicts fits its objective);
  ``train_step`` (one step, compiled as ``zoo train`` compiles, gives finite losses and
  changes the weights); ``save_load`` (a ``.keras`` round trip in Keras' safe mode gives the
  same predictions, and its custom classes are registered under a package of their own);
  ``generate`` (when it declares one: reproducible samples of the declared shape).
- dataset: ``config``; ``describe`` (a valid ``DataSpec`` at the ``tiny`` size); ``load``
  (each split yields what the spec declares); ``reproducible`` (the same seed gives the
  same splits, another seed other ones).
- metric: ``config``; ``build`` (a ``keras.metrics.Metric`` logging under its name, for
  data of each objective it scores); ``reference`` (streamed in batches, it matches the
  author's ``reference`` computation within ``tolerance``); ``reset`` (after
  ``reset_state`` it scores new data from scratch).
- callback: ``config``; ``build`` (the factory returns a ``keras.callbacks.Callback``);
  ``train`` (two epochs of a tiny model with the zoo's loop and checkpoints; a callback
  with ``get_state`` gives state a checkpoint can hold, and takes it back).
- logger: ``config``; ``build`` (the factory returns a ``zoo.Logger``); ``read_back``
  (two epochs logged and the run finished, the tracker holds every value: its
  ``read_back`` gives them back).
- preset: ``compose`` (each ``experiment/*.yaml`` the plugin ships composes and validates).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.resources
import json
import math
import os
import subprocess
import sys
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

from zoo.discovery import PluginSource, normalise_name, not_a_plugin
from zoo.errors import UnknownNameError, ZooError, one_line
from zoo.hookspecs import (
    CLASSIFICATION,
    GENERATION,
    LANGUAGE_MODELING,
    RECONSTRUCTION,
    SEQUENCE,
    TASKS,
    DataSpec,
)
from zoo.registry import Registered, Registry, get_registry

__all__ = ["CheckResult", "conformance_tests", "run_checks", "synthetic_predictions", "synthetic_specs"]

PASS, FAIL, SKIP = "pass", "fail", "skip"
CHECKS = {
    "plugin": ("load", "names", "light_import"),
    "model": ("config", "build", "output_shape", "train_step", "save_load", "generate"),
    "dataset": ("config", "describe", "load", "reproducible"),
    "metric": ("config", "build", "reference", "reset"),
    "callback": ("config", "build", "train"),
    "logger": ("config", "build", "read_back"),
    "preset": ("compose",),
}
HEAVY_MODULES = ("tensorflow", "keras", "torch", "jax")
BATCH = 8  # examples in a synthetic batch


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check of one item: ``outcome`` is ``pass``, ``fail`` or ``skip``."""

    kind: str
    name: str
    check: str
    outcome: str
    detail: str = ""

    def message(self) -> str:
        return f"{self.kind} {self.name!r}, check '{self.check}': {self.detail}"


class CheckFailed(Exception):
    """A check found the item wrong; the message says how."""


class NotApplicable(Exception):
    """The check does not apply to this item."""


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


# --------------------------------------------------------------------------------------
# Choosing what to check
# --------------------------------------------------------------------------------------


@dataclass
class Selection:
    sources: list[PluginSource]
    entries: list[Registered]
    presets: list[tuple[str, str]]  # (preset name, search-path entry)


def select(target: Optional[str], registry: Registry) -> Selection:
    """What ``target`` names: a distribution, an entry point (all their plugins' items and
    presets), or an item (of any kind); ``None`` for everything installed."""
    if target is None:
        sources = list(registry.sources)
    else:
        sources = [s for s in registry.sources if normalise_name(s.distribution) == normalise_name(target)]
        sources = sources or [s for s in registry.sources if s.name == target]
    if sources:
        ids = {id(s) for s in sources}
        entries = [e for e in registry.list() if id(e.source) in ids]
        paths = [path for source, path in registry.config_paths if id(source) in ids]
        return Selection(sources, entries, [(name, path) for path in paths for name in experiment_presets(path)])
    entries = [e for e in registry.list() if e.name == target]
    if not entries:
        from zoo.registry import unknown_name_message

        known = {s.distribution for s in registry.sources} | {s.name for s in registry.sources}
        known |= {e.name for e in registry.list()}
        message = unknown_name_message("plugin", target, sorted(known), see="zoo list")
        raise UnknownNameError(not_a_plugin(target) or message.replace("unknown plugin", "no distribution, entry point or item is named", 1))
    return Selection([], entries, [])


def experiment_presets(path: str) -> list[str]:
    """The ``experiment/*.yaml`` names under a ``pkg://`` or ``file://`` search-path entry."""
    return group_options(path, "experiment")


def group_options(path: str, group: str) -> list[str]:
    """The options (``<group>/*.yaml`` names) of a config group under a ``pkg://`` or
    ``file://`` search-path entry."""
    if path.startswith("pkg://"):
        try:
            folder = importlib.resources.files(path.removeprefix("pkg://")) / group
        except ModuleNotFoundError:
            return []
    else:
        folder = Path(path.removeprefix("file://")) / group
    if not folder.is_dir():
        return []
    return sorted(f.name.removesuffix(".yaml") for f in folder.iterdir() if f.name.endswith(".yaml"))


def planned_checks(selection: Selection) -> list[tuple[str, str, str]]:
    """``(kind, name, check)`` of every check the selection gets, without running any."""
    planned = [("plugin", s.label, check) for s in selection.sources for check in CHECKS["plugin"]]
    for entry in selection.entries:
        checks = CHECKS[entry.kind]
        if entry.kind == "model" and entry.item.generate is None:
            checks = checks[:-1]
        planned += [(entry.kind, entry.name, check) for check in checks]
    planned += [("preset", name, "compose") for name, _ in selection.presets]
    return planned


# --------------------------------------------------------------------------------------
# Running checks
# --------------------------------------------------------------------------------------


def run_checks(
    target: Optional[str] = None, registry: Optional[Registry] = None, progress: Optional[Callable[[int, int, str], None]] = None
) -> list[CheckResult]:
    """Every check of what ``target`` names (see :func:`select`), in order; ``progress(done,
    total, what)`` is told before each item is checked."""
    import logging

    # Checking builds many small models in a row, which TensorFlow warns about (retracing).
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    registry = registry or get_registry()
    selection = select(target, registry)
    total = 1 + len(selection.entries) + len(selection.presets)
    tell = progress or (lambda done, total, what: None)
    tell(0, total, "plugins")
    results = check_plugins(selection.sources, registry)
    for done, entry in enumerate(selection.entries, start=1):
        tell(done, total, f"{entry.kind} {entry.name}")
        results += check_item(entry)
    for done, (name, path) in enumerate(selection.presets, start=1 + len(selection.entries)):
        tell(done, total, f"preset {name}")
        results += check_preset(name, path)
    return results


def run_steps(kind: str, name: str, steps: Iterable[tuple[str, Callable[[], Optional[str]]]]) -> list[CheckResult]:
    """Run ``steps`` in order; after a failure the remaining ones are skipped."""
    results: list[CheckResult] = []
    failed = None
    for check, step in steps:
        if failed:
            results.append(CheckResult(kind, name, check, SKIP, f"not run: '{failed}' failed"))
            continue
        try:
            detail = step() or ""
        except NotApplicable as exc:
            results.append(CheckResult(kind, name, check, SKIP, str(exc)))
        except Exception as exc:  # a plugin's code can raise anything; that is the finding
            failed = check
            if os.environ.get("ZOO_TRACEBACK") == "1" and (not isinstance(exc, CheckFailed) or exc.__cause__):
                # Where in the plugin's code it went wrong, on request (in pytest: shown with the failure).
                print(f"{kind} {name!r}, check '{check}':", file=sys.stderr)
                traceback.print_exception(exc, file=sys.stderr)
            text = one_line(exc)
            reason = text if isinstance(exc, (CheckFailed, ZooError)) else f"{type(exc).__name__}: {text}"
            results.append(CheckResult(kind, name, check, FAIL, reason))
        else:
            results.append(CheckResult(kind, name, check, PASS, detail))
    return results


def check_plugins(sources: list[PluginSource], registry: Registry) -> list[CheckResult]:
    # Each plugin is imported in a fresh interpreter (what it imports is then its own doing);
    # the interpreters run side by side.
    probes = {id(s): _start_import_probe(s) for s in sources if s.error is None and s.plugin is not None}
    results = []
    for source in sources:

        def load(source=source) -> str:
            expect(source.error is None, source.error or "")
            return f"{source.distribution} {source.version}: {source.value}"

        def names(source=source) -> str:
            """Its names are its own: none shadowed by the zoo's own items or claimed by another plugin too."""
            clashes = [
                f"{claims[0].kind} {claims[0].name!r} is the zoo's own (its item is used)"
                for claims in registry.shadowed()
                if any(c.source is source for c in claims[1:])
            ]
            clashes += [
                f"{claims[0].kind} {claims[0].name!r} is also registered by "
                + " and ".join(c.distribution for c in claims if c.source is not source)
                for claims in registry.conflicts()
                if any(c.source is source for c in claims)
            ]
            expect(not clashes, "; ".join(clashes) + ": rename it")
            return f"{sum(1 for e in registry.list() if e.source is source)} names, none taken"

        def light_import(source=source) -> str:
            probe = probes.get(id(source))
            if probe is None:
                raise NotApplicable("registered at run time, not through an entry point")
            out, err = probe.communicate(timeout=300)
            last = (err.strip().splitlines() or ["no output"])[-1]
            expect(probe.returncode == 0, f"importing it in a fresh interpreter failed: {last}")
            heavy = json.loads(out.strip().splitlines()[-1])
            expect(
                not heavy,
                f"importing it and calling its hooks imported {', '.join(heavy)}; import those inside "
                "factories, so that zoo list and zoo train's checks stay fast",
            )
            return "imports no TensorFlow, Keras, PyTorch or JAX"

        results += run_steps("plugin", source.label, [("load", load), ("names", names), ("light_import", light_import)])
    return results


_IMPORT_PROBE = """
import json, sys
from zoo.discovery import zoo_entry_points
from zoo.registry import Registry
(ep,) = [e for e in zoo_entry_points()[0] if e.name == sys.argv[1] and e.value == sys.argv[2]]
registry = Registry()
registry.register_plugin(ep.load(), sys.argv[1])
for entry in registry.list("dataset"):
    try:
        entry.item.describe(entry.item.config())
    except Exception:  # e.g. a required path: describing is checked elsewhere
        pass
print(json.dumps([m for m in sys.argv[3:] if m in sys.modules]))
"""


def _start_import_probe(source: PluginSource) -> Optional[subprocess.Popen]:
    if source.distribution == "(registered at run time)":
        return None
    env = {**__import__("os").environ, "ZOO_DISABLE_PLUGIN_AUTOLOAD": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", _IMPORT_PROBE, source.name, source.value, *HEAVY_MODULES],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=env,
    )  # fmt: skip


def check_item(entry: Registered) -> list[CheckResult]:
    steps = {
        "model": _model_steps, "dataset": _dataset_steps, "metric": _metric_steps,
        "callback": _callback_steps, "logger": _logger_steps,
    }[entry.kind](entry)  # fmt: skip
    return run_steps(entry.kind, entry.name, steps)


def check_preset(name: str, path: str) -> list[CheckResult]:
    def compose_preset() -> str:
        from zoo.config import compose, plan_run

        plan = plan_run(compose([f"+experiment={name}"]))
        return f"model {plan.model.name}, dataset {plan.dataset.name} (from {path})"

    return run_steps("preset", name, [("compose", compose_preset)])


def split_problem(where: str, x, y, spec: DataSpec) -> Optional[str]:
    """What is wrong with a split's arrays ``x`` and ``y`` for data described by ``spec``:
    as many targets as inputs, finite inputs, class indices (not one-hot) within the
    classes, token ids within the vocabulary. None when nothing is (the run checks the
    same before it trains; ``zoo check`` before a plugin is published)."""
    import numpy as np

    if len(x) != len(y):
        return f"{where} has {len(x)} inputs and {len(y)} targets"
    if np.issubdtype(x.dtype, np.inexact) and not np.isfinite(x).all():
        return f"{where} holds non-finite inputs"
    if not np.issubdtype(x.dtype, np.number) and not np.issubdtype(x.dtype, np.bool_):
        return f"{where} has inputs of type {x.dtype}, not numbers"
    top = spec.num_classes - 1
    if spec.task == CLASSIFICATION:
        if y.ndim > 1 and y.shape[1:] != (1,):
            return f"{where} has targets of shape {y.shape[1:]} per example: give one class index each (0..{top}), not one-hot rows"
        stray = _not_indices(y.reshape(-1), spec.num_classes)
        if len(stray):
            return f"{where} has labels {np.unique(stray)[:5].tolist()} outside 0..{top}"
    elif len(_not_indices(x.reshape(-1), spec.num_classes)) or len(_not_indices(y.reshape(-1), spec.num_classes)):
        return f"{where} has token ids outside 0..{top}"
    return None


def _not_indices(values, count: int):
    """The values that are not whole numbers from 0 to ``count - 1`` (linear time: a corpus
    of millions of token ids is checked before every run)."""
    import numpy as np

    if np.issubdtype(values.dtype, np.bool_):
        values = values.astype(np.int8)
    if not np.issubdtype(values.dtype, np.number):
        return values
    with np.errstate(invalid="ignore"):
        return values[~((values >= 0) & (values < count) & (values == np.floor(values)))]


def config_round_trip(entry: Registered) -> str:
    """The item's config, composed by Hydra and written as YAML and read back (as a run's
    ``config.yaml`` is), still holds its dataclass defaults (required fields: unset)."""
    from omegaconf import OmegaConf

    from zoo.config import LIST_GROUPS, compose, config_schema

    group = next((g for g, kind in LIST_GROUPS.items() if kind == entry.kind), None)
    if group is not None:
        node = compose([f"{group}=[{entry.name}]"])[group][entry.name]
    else:
        node = compose([f"{entry.kind}={entry.name}"])[entry.kind]
    schema = config_schema(entry.item.config, f"{entry.kind} {entry.name!r}")
    defaults = OmegaConf.to_container(schema)
    for key, value in defaults.items():  # the run refuses every value that is not finite
        expect(
            not (isinstance(value, float) and not math.isfinite(value)),
            f"the default {key}={value} is not a finite number, which every run refuses; use None for 'no limit'",
        )
    # Read back as a run reads its config.yaml: onto the config class (an Enum is its name in YAML).
    written = OmegaConf.to_container(OmegaConf.create(OmegaConf.to_yaml(node)))
    read_back = OmegaConf.merge(schema, {k: v for k, v in written.items() if k != "name"})
    for label, copy in (("composed", node), ("read back from YAML", read_back)):
        values = {k: v for k, v in OmegaConf.to_container(copy).items() if k != "name"}
        expect(values == defaults, f"the config {label} is {values!r}, not the defaults {defaults!r}")
    return f"{len(defaults)} field{'' if len(defaults) == 1 else 's'}"


# --------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------


def checks_config(entry: Registered, tiny: dict) -> Any:
    """The item's config for the checks: its defaults with ``tiny`` applied. A field with
    no default must get its value there, since the checks have no command line."""
    import dataclasses

    from omegaconf import MISSING  # "???": OmegaConf's spelling of a required value

    from zoo.config import make_config

    required = [f.name for f in dataclasses.fields(entry.item.config)
                if (f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING or f.default == MISSING)
                and f.name not in tiny]  # fmt: skip
    if required:
        kind = {"model": "ModelPlugin", "dataset": "DatasetPlugin"}.get(entry.kind, "the item")
        raise CheckFailed(
            f"config field {', '.join(repr(r) for r in required)} has no default, so the checks cannot build the {entry.kind}; "
            f"give the value they should use in {kind}(..., tiny={{{required[0]!r}: ...}})"
        )
    return make_config(entry, tiny)


def output_problem(objective: str, spec: DataSpec, x, out) -> Optional[str]:
    """What is wrong with a model's outputs ``out`` for inputs ``x`` given its objective, or
    None. Shared by the checks and by ``zoo train``'s look at the first batch."""
    import numpy as np

    out = np.asarray(out)
    # Outputs in 16 bits (mixed precision) round each probability to 2 or 3 digits: their sum
    # strays from 1 by more than a float32 softmax's (bfloat16 by up to ~1e-2).
    tolerance = 2e-2 if out.dtype.itemsize < 4 else 1e-3
    out = out.astype(np.float32)
    if not np.isfinite(out).all():
        return "it predicts non-finite values"
    if objective == CLASSIFICATION:
        width = 1 if spec.binary else spec.num_classes
        what = "one probability of class 1" if spec.binary else f"{width} class probabilities"
        if out.shape != (len(x), width):
            return f"it must output shape (batch, {width}), {what}; got {out.shape} for a batch of {len(x)}"
        if out.min() < 0 or out.max() > 1:
            return f"its outputs must be probabilities in [0, 1]; got {out.min():.3g} to {out.max():.3g}"
        if not spec.binary and not np.allclose(out.sum(axis=-1), 1, atol=tolerance):
            return "its class probabilities must sum to 1 (a softmax)"
    elif objective == RECONSTRUCTION and out.shape != np.shape(x):
        return f"it must reconstruct inputs of shape {np.shape(x)[1:]}; got {out.shape[1:]}"
    elif objective == LANGUAGE_MODELING:
        expected = (*np.shape(x), spec.num_classes)
        if out.shape != expected:
            return f"it must output next-token probabilities of shape {expected[1:]}; got {out.shape[1:]}"
        if not np.allclose(out.sum(axis=-1), 1, atol=tolerance):
            return "its next-token probabilities must sum to 1"
    return None


def synthetic_specs(entry: Registered, config: Any) -> list[DataSpec]:
    """The small data a model is checked on: its ``test_specs``, or, for each task it
    learns, the smallest synthetic shape its ``accepts`` takes (binary and 3-class data for
    a classifier)."""
    item = entry.item
    if item.test_specs:
        return list(item.test_specs)
    specs = []
    for task in item.tasks:
        if task == SEQUENCE:
            groups = [[DataSpec(SEQUENCE, (12,), num_classes=7, class_names=tuple("abcdefg"))]]
        else:
            rank = item.input_rank or 1
            shapes = [(6,)] if rank == 1 else [(size,) * (rank - 1) + (3,) for size in (8, 16, 32, 64)]
            counts = (2, 3) if item.objective == CLASSIFICATION else (3,)
            groups = [
                [DataSpec(CLASSIFICATION, shape, n, tuple("abc"[:n]), value_range=(0.0, 1.0)) for n in counts]
                for shape in shapes
            ]
        fitting = [g for g in groups if not any(item.accepts and item.accepts(config, spec) for spec in g)]
        if not fitting:
            reason = item.accepts(config, groups[-1][0])
            raise CheckFailed(
                f"it accepts none of the synthetic {task} data shapes ({', '.join(str(g[0].input_shape) for g in groups)}; "
                f"largest: {reason}); declare the data it takes in ModelPlugin(test_specs=[zoo.DataSpec(...)])"
            )
        specs += fitting[0]
    return specs


def synthetic_batch(spec: DataSpec, objective: str, n: int = BATCH, seed: int = 0):
    """``(x, y)`` numpy arrays of ``n`` examples of ``spec``, with the targets ``objective``
    trains on; every class appears."""
    import numpy as np

    rng = np.random.default_rng(seed)
    if spec.task == SEQUENCE:
        tokens = rng.integers(0, spec.num_classes, size=(n, spec.input_shape[0] + 1))
        return tokens[:, :-1], tokens[:, 1:]
    low, high = spec.value_range or (-2.0, 2.0)
    x = rng.uniform(low, high, size=(n, *spec.input_shape)).astype("float32")
    if objective in (RECONSTRUCTION, GENERATION):
        return x, x
    return x, np.arange(n) % spec.num_classes


def describe_spec(spec: DataSpec) -> str:
    what = f"{spec.num_classes}-class" if spec.task == CLASSIFICATION else f"{spec.num_classes}-token"
    return f"{what} {spec.task} data of shape {tuple(spec.input_shape)}"


def _model_steps(entry: Registered):
    item = entry.item
    state: dict[str, Any] = {}

    def build() -> str:
        from zoo.run import import_tensorflow

        import_tensorflow()
        import keras

        state["config"] = config = checks_config(entry, item.tiny)  # at its tiny size
        state["models"] = []
        for spec in synthetic_specs(entry, config):
            keras.utils.set_random_seed(0)
            model = item.factory(config, spec)
            expect(isinstance(model, keras.Model), f"the factory returned {type(model).__name__}, not a keras.Model")
            state["models"].append((spec, model, synthetic_batch(spec, item.objective)))
        return f"{len(state['models'])} model(s): " + "; ".join(describe_spec(s) for s, _, _ in state["models"])

    def output_shape() -> str:
        import numpy as np

        for spec, model, (x, _) in state["models"]:
            out = np.asarray(model.predict(x, verbose=0))
            problem = output_problem(item.objective, spec, x, out)
            expect(problem is None, f"for {describe_spec(spec)} {problem}")
            state.setdefault("predictions", []).append(out)
        return f"fits objective {item.objective}"

    def train_step() -> str:
        import keras
        import numpy as np

        from zoo.config import DeviceConfig, RunPlan, TrainerConfig
        from zoo.run import compile_model

        for spec, model, (x, y) in state["models"]:
            plan = RunPlan(0, entry, state["config"], None, None, spec, [], TrainerConfig(), DeviceConfig())
            compile_model(keras, plan, model, training=True)
            before = [np.array(w) for w in model.get_weights()]
            logs = model.train_on_batch(x, y, return_dict=True)
            bad = {k: float(v) for k, v in logs.items() if not np.isfinite(v)}
            expect(not bad, f"for {describe_spec(spec)} a training step gave non-finite {bad}")
            changed = any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
            expect(changed, f"for {describe_spec(spec)} a training step changed no weight")
        return "finite " + ", ".join(f"{k}" for k in logs)

    def save_load() -> str:
        import keras
        import numpy as np

        from zoo.run import portable_copy

        def same(before, after, how: str, spec) -> None:
            expect(
                np.allclose(before, after, rtol=1e-5, atol=1e-6),
                f"for {describe_spec(spec)} the model {how} predicts differently "
                f"(largest difference {np.abs(np.asarray(before) - np.asarray(after)).max():.3g})",
            )

        with tempfile.TemporaryDirectory(prefix="zoo-check-") as folder:
            for index, (spec, model, (x, _)) in enumerate(state["models"]):
                check_registered_classes(model)
                path = Path(folder) / f"model{index}.keras"
                try:  # as `zoo train` saves it: a copy made with from_config, given the weights
                    portable_copy(model).save(path)
                except Exception as exc:  # noqa: BLE001 - whatever the plugin's classes raise
                    raise CheckFailed(
                        f"for {describe_spec(spec)} the model cannot be copied with from_config(get_config()) and saved, "
                        f"as zoo train saves it ({type(exc).__name__}: {one_line(exc)[:200]}); "
                        "a subclassed model must build its weights when constructed (build() in __init__, or a "
                        "functional model), and get_config must return its constructor's arguments"
                    ) from exc
                before = model.predict(x, verbose=0)
                reloaded = keras.saving.load_model(path)  # safe mode, as users load
                same(before, reloaded.predict(x, verbose=0), "loaded with keras.saving.load_model", spec)
                # As zoo evaluate, predict, export and explain load it: built by the factory (without the
                # weights training starts from), weights from the file.
                rebuilt = item.factory(dataclasses.replace(state["config"], **item.without_starting_weights), spec)
                try:
                    rebuilt.load_weights(path)
                except Exception as exc:  # noqa: BLE001
                    raise CheckFailed(
                        f"for {describe_spec(spec)} the saved weights do not load into a model the factory builds again "
                        f"(as zoo evaluate, predict and export load them): {one_line(exc)[:300]}; "
                        "build every weight in the factory (call the model on keras.Input, or build() it)"
                    ) from exc
                same(before, rebuilt.predict(x, verbose=0), "rebuilt by the factory and given the saved weights", spec)
                state.setdefault("reloaded", []).append((spec, reloaded))
        return "same predictions after keras.saving.load_model and after a rebuild by the factory"

    def generate() -> str:
        import numpy as np

        for spec, model in state["reloaded"]:
            first = item.generate(model, state["config"], spec, seed=0, n=3)
            again = item.generate(model, state["config"], spec, seed=0, n=3)
            expect(len(first) == 3, f"asked for 3 samples, got {len(first)}")
            if spec.task == SEQUENCE:
                expect(all(isinstance(t, str) for t in first), "text samples must be strings")
                expect(first == again, "the same seed gave other texts")
            else:
                first = np.asarray(first)
                expect(first.shape == (3, *spec.input_shape), f"samples must have shape (n, *{spec.input_shape}); got {first.shape}")
                if spec.value_range:
                    low, high = spec.value_range
                    expect(first.min() >= low and first.max() <= high, f"samples must lie in the value range {spec.value_range}")
                expect(np.array_equal(first, np.asarray(again)), "the same seed gave other samples")
        return "3 samples, reproducible from the seed"

    steps = [("config", lambda: config_round_trip(entry)), ("build", build), ("output_shape", output_shape),
             ("train_step", train_step), ("save_load", save_load)]  # fmt: skip
    return steps + ([("generate", generate)] if item.generate is not None else [])


def check_registered_classes(model) -> None:
    """Fail unless every custom class in ``model`` is registered for Keras' serialisation
    under a package of its own (Keras' default, ``Custom``, is shared by everyone)."""
    import keras

    layers = model._flatten_layers(include_self=True, recursive=True)
    for cls in {type(layer) for layer in layers}:
        if cls.__module__.split(".")[0] == "keras":
            continue
        package = cls.__module__.split(".")[0]
        registered = keras.saving.get_registered_name(cls)
        fix = f"decorate it with @keras.saving.register_keras_serializable(package={package!r})"
        expect(">" in registered, f"class {cls.__name__} ({cls.__module__}) is not registered with Keras, so a saved model cannot be reloaded; {fix}")
        expect(not registered.startswith("Custom>"), f"class {cls.__name__} is registered in Keras' shared 'Custom' package, where names of different plugins collide; {fix}")


# --------------------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------------------


def tiny_config(entry: Registered, directory: Path) -> Any:
    """The dataset's config at its ``tiny`` size (writing its example files into ``directory``)."""
    tiny = entry.item.tiny
    return checks_config(entry, dict(tiny(directory) if callable(tiny) else tiny))


def split_arrays(split) -> tuple[Any, Any]:
    """``(x, y)`` numpy arrays of a split, whichever form the dataset returned."""
    import numpy as np

    if isinstance(split, tuple):
        return np.asarray(split[0]), np.asarray(split[1])
    pairs = [(x.numpy(), y.numpy()) for x, y in split]
    expect(bool(pairs), "a split is empty")
    xs, ys = zip(*pairs)
    return np.stack(xs), np.stack(ys)


def _dataset_steps(entry: Registered):
    item = entry.item
    state: dict[str, Any] = {}

    def describe() -> str:
        folder = tempfile.TemporaryDirectory(prefix="zoo-check-")
        state["folder"] = folder  # removed with the steps' state
        state["config"] = config = tiny_config(entry, Path(folder.name))
        spec = item.describe(config)
        expect(isinstance(spec, DataSpec), f"describe() returned {type(spec).__name__}, not a zoo.DataSpec")
        expect(spec.task in TASKS, f"its task {spec.task!r} is not one of {TASKS}")
        expect(all(isinstance(d, int) and d > 0 for d in spec.input_shape), f"input_shape {spec.input_shape} must be positive ints")
        if spec.task == CLASSIFICATION:
            expect(spec.num_classes >= 2, f"a classification dataset needs num_classes >= 2, got {spec.num_classes}")
            expect(len(spec.class_names) == spec.num_classes, f"{spec.num_classes} classes but {len(spec.class_names)} class_names")
        if spec.feature_names:
            expect(
                len(spec.input_shape) == 1 and len(spec.feature_names) == spec.input_shape[0],
                f"{len(spec.feature_names)} feature_names for examples of shape {tuple(spec.input_shape)}",
            )
        state["spec"] = spec
        return describe_spec(spec)

    def load() -> str:
        import numpy as np

        from zoo.hookspecs import Splits
        from zoo.run import NEVER_ENDS, import_tensorflow, never_ends, plain_report

        import_tensorflow()
        spec = state["spec"]
        splits = item.factory(state["config"], 0)
        expect(isinstance(splits, Splits), f"factory() returned {type(splits).__name__}, not zoo.Splits")
        try:
            plain_report(entry.name, splits.report)
        except ZooError as exc:
            raise CheckFailed(str(exc).split(": ", 1)[1]) from None  # "its report's 'x' ...": the check names the dataset
        sizes = []
        for split_name in ("train", "validation", "test"):
            where = f"the {split_name} split"
            split = getattr(splits, split_name)
            expect(not never_ends(split), f"{where} {NEVER_ENDS}")
            x, y = split_arrays(split)
            expect(x.shape[1:] == tuple(spec.input_shape), f"{where} has examples of shape {x.shape[1:]}, the spec says {tuple(spec.input_shape)}")
            expect(len(x) > 0, f"{where} has 0 inputs and {len(y)} targets")
            problem = split_problem(where, x, y, spec)
            expect(problem is None, problem or "")
            if spec.task != CLASSIFICATION:
                expect(np.array_equal(x[:, 1:], y[:, :-1]), f"{where}: targets must be the inputs shifted by one token")
            if spec.value_range is not None:
                low, high = spec.value_range
                expect(x.min() >= low and x.max() <= high, f"{where} has values {x.min():.3g} to {x.max():.3g}, outside the declared value_range {spec.value_range}")
            sizes.append(len(x))
            if splits.ids:
                ids = list(splits.ids.get(split_name, ()))
                expect(len(ids) == len(x), f"Splits.ids names {len(ids)} examples of {where}, which has {len(x)}")
                expect(len(set(ids)) == len(ids), f"Splits.ids names some examples of {where} twice; each example needs a name of its own")
        if splits.ids:
            shared = set(splits.ids.get("train", ())) & set(splits.ids.get("test", ()))
            expect(not shared, f"Splits.ids gives {len(shared)} names to examples of both the train and test splits")
        if spec.task == CLASSIFICATION:
            seen = len(np.unique(split_arrays(splits.train)[1]))
            expect(seen == spec.num_classes, f"the train split has {seen} of the {spec.num_classes} classes")
        state["splits"] = splits
        return "train/validation/test: " + "/".join(map(str, sizes))

    def reproducible() -> str:
        import numpy as np

        again, other = item.factory(state["config"], 0), item.factory(state["config"], 1)
        names = ("train", "validation", "test")
        for split_name in names:
            same = np.array_equal(split_arrays(getattr(state["splits"], split_name))[0], split_arrays(getattr(again, split_name))[0])
            expect(same, f"seed 0 gave another {split_name} split the second time")
        differs = any(
            not np.array_equal(split_arrays(getattr(state["splits"], n))[0], split_arrays(getattr(other, n))[0]) for n in names
        )
        expect(differs, "seeds 0 and 1 gave the same splits; the seed must choose the split (or the order)")
        return "same splits from the same seed"

    return [("config", lambda: config_round_trip(entry)), ("describe", describe), ("load", load),
            ("reproducible", reproducible)]  # fmt: skip


# --------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------

# Small data of each objective a metric may score.
METRIC_CASES = {
    CLASSIFICATION: [DataSpec(CLASSIFICATION, (4,), num_classes=2), DataSpec(CLASSIFICATION, (4,), num_classes=3)],
    RECONSTRUCTION: [DataSpec(CLASSIFICATION, (5, 4, 1), num_classes=10, value_range=(0.0, 1.0))],
    LANGUAGE_MODELING: [DataSpec(SEQUENCE, (12,), num_classes=7, class_names=tuple("abcdefg"))],
}


def synthetic_predictions(spec: DataSpec, n: int, seed: int, objective: str = CLASSIFICATION):
    """``(y_true, y_pred)`` numpy arrays of ``n`` examples as a model of ``objective``
    predicts them: informative but imperfect, so that every statistic is away from its
    extremes."""
    import numpy as np

    rng = np.random.default_rng(seed)
    if objective == RECONSTRUCTION:  # images and imperfect reconstructions of them
        images = rng.uniform(size=(n, *spec.input_shape)).astype(np.float32)
        return images, np.clip(images + rng.normal(scale=0.2, size=images.shape), 0, 1).astype(np.float32)
    if objective == LANGUAGE_MODELING:  # token sequences and next-token probabilities
        tokens = rng.integers(0, spec.num_classes, size=(n, *spec.input_shape))
        logits = rng.normal(size=(*tokens.shape, spec.num_classes)) + 2.0 * np.eye(spec.num_classes)[tokens]
        return tokens, (np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)).astype(np.float32)
    y_true = rng.integers(0, spec.num_classes, size=n)
    if spec.binary:
        y_prob = 1 / (1 + np.exp(-(rng.normal(size=n) + 1.5 * (y_true - 0.5))))
        return y_true, y_prob.reshape(-1, 1).astype(np.float32)
    logits = rng.normal(size=(n, spec.num_classes)) + 1.2 * np.eye(spec.num_classes)[y_true]
    return y_true, (np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)).astype(np.float32)


def streamed(metric, y_true, y_pred, batches: int = 3) -> float:
    """``metric``'s result after ``reset_state`` and ``update_state`` in several batches."""
    import numpy as np

    metric.reset_state()
    for part in np.array_split(np.arange(len(y_true)), batches):
        metric.update_state(y_true[part], y_pred[part])
    return float(metric.result())


def _metric_steps(entry: Registered):
    item = entry.item
    state: dict[str, Any] = {}
    cases = [(objective, spec) for objective in item.objectives for spec in METRIC_CASES.get(objective, [])]

    def build() -> str:
        from zoo.run import import_tensorflow

        import_tensorflow()
        import keras

        if not cases:
            raise NotApplicable(f"no synthetic predictions for {', '.join(item.objectives)}")
        state["metrics"] = []
        for objective, spec in cases:
            metric = item.factory(item.config(), spec)
            expect(isinstance(metric, keras.metrics.Metric), f"the factory returned {type(metric).__name__}, not a keras.metrics.Metric")
            expect(metric.name == entry.name, f"the metric is named {metric.name!r}; it must log under its registered name {entry.name!r}")
            state["metrics"].append((objective, spec, metric))
        return "; ".join(describe_spec(spec) for _, spec in cases)

    def agrees(seed: int, n: int) -> str:
        expect(item.reference is not None, "it declares no reference computation; add MetricPlugin(reference=...)")
        values = []
        for objective, spec, metric in state["metrics"]:
            y_true, y_pred = synthetic_predictions(spec, n=n, seed=seed, objective=objective)
            expected = float(item.reference(y_true, y_pred, spec, item.config()))
            got = streamed(metric, y_true, y_pred)
            expect(
                abs(got - expected) <= item.tolerance,
                f"on {objective} {describe_spec(spec)} ({n} examples in 3 batches) it gives {got:.6g}, "
                f"its reference {expected:.6g} (tolerance {item.tolerance:g})",
            )
            values.append(f"{got:.4g}")
        return "matches the reference: " + ", ".join(values)

    def direction() -> str:
        """The declared direction, held against the reference: informative predictions must
        score better than the same predictions given to other examples."""
        import numpy as np

        expect(
            item.greater_is_better is not None,
            "it declares no direction; add MetricPlugin(greater_is_better=True) (or False for an error or a loss): "
            "early stopping, the plateau schedule and searches with mode=auto go by it",
        )
        expect(item.reference is not None, "it declares no reference computation; add MetricPlugin(reference=...)")
        for objective, spec, _ in state["metrics"]:
            y_true, y_pred = synthetic_predictions(spec, n=997, seed=2, objective=objective)
            informed = float(item.reference(y_true, y_pred, spec, item.config()))
            shuffled = float(item.reference(y_true, y_pred[np.random.default_rng(2).permutation(len(y_pred))], spec, item.config()))
            better = informed > shuffled if item.greater_is_better else informed < shuffled
            expect(
                better,
                f"it declares greater_is_better={item.greater_is_better}, but on {objective} {describe_spec(spec)} its reference "
                f"gives {informed:.4g} for informative predictions and {shuffled:.4g} for shuffled ones",
            )
        return f"{'higher' if item.greater_is_better else 'lower'} is better, as its reference agrees"

    return [("config", lambda: config_round_trip(entry)), ("build", build),
            ("reference", lambda: agrees(seed=0, n=997)), ("reset", lambda: agrees(seed=1, n=300)),
            ("direction", direction)]  # fmt: skip


# --------------------------------------------------------------------------------------
# Callbacks and loggers
# --------------------------------------------------------------------------------------


def check_run_info(run_dir: Path, spec: DataSpec) -> Any:
    from zoo.hookspecs import RunInfo

    return RunInfo(run_dir=run_dir, name=run_dir.name, params={"seed": 0}, spec=spec, seed=0)


TINY_SPEC = DataSpec(task=CLASSIFICATION, input_shape=(6,), num_classes=3, class_names=("a", "b", "c"))


def _callback_steps(entry: Registered):
    item = entry.item
    state: dict[str, Any] = {}

    def build() -> str:
        from zoo.run import import_tensorflow

        import_tensorflow()
        import keras

        state["scratch"] = scratch = tempfile.TemporaryDirectory(prefix="zoo-check-")  # removed with the steps' state
        state["folder"] = Path(scratch.name)
        callback = item.factory(item.config(), check_run_info(state["folder"] / "run", TINY_SPEC))
        expect(isinstance(callback, keras.callbacks.Callback), f"the factory returned {type(callback).__name__}, not a keras.callbacks.Callback")
        state["callback"] = callback
        stateful = callable(getattr(callback, "get_state", None)) and callable(getattr(callback, "set_state", None))
        return "resumable (get_state, set_state)" if stateful else "no state of its own"

    def train() -> str:
        import keras
        import tensorflow as tf

        from zoo.checkpoints import Checkpoints, encode_states
        from zoo.training import fit

        keras.utils.set_random_seed(0)
        x, y = synthetic_batch(TINY_SPEC, CLASSIFICATION, n=32)
        model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3, activation="softmax")])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        callback = state["callback"]
        strategy = tf.distribute.get_strategy()
        position = fit(
            tf, model, strategy, lambda epoch: tf.data.Dataset.from_tensor_slices((x, y)).batch(8), 2,
            callbacks=keras.callbacks.CallbackList([callback], model=model),
            checkpoints=Checkpoints(state["folder"] / "run"),
        )  # fmt: skip
        detail = f"{len(next(iter(position.history.values()), []))} epoch(s) trained"
        if callable(getattr(callback, "get_state", None)):
            saved = callback.get_state()
            encoded, arrays = encode_states({"c": saved})
            json.dumps(encoded)  # what a checkpoint holds must be JSON (arrays apart)
            callback.set_state(saved)
            detail += f"; its state ({', '.join(saved)}) fits a checkpoint"
        return detail

    return [("config", lambda: config_round_trip(entry)), ("build", build), ("train", train)]


def _logger_steps(entry: Registered):
    item = entry.item
    state: dict[str, Any] = {}

    def build() -> str:
        import importlib.util

        from zoo.hookspecs import Logger

        missing = [module for module in item.requires if importlib.util.find_spec(module) is None]
        if missing:
            raise NotApplicable(f"needs {', '.join(missing)}, which is not installed")
        state["scratch"] = scratch = tempfile.TemporaryDirectory(prefix="zoo-check-")  # removed with the steps' state
        folder = Path(scratch.name) / "run"
        folder.mkdir()
        state["run"] = check_run_info(folder, TINY_SPEC)
        state["logger"] = item.factory(item.config(), state["run"])
        expect(isinstance(state["logger"], Logger), f"the factory returned {type(state['logger']).__name__}, not a zoo.Logger")
        return "a zoo.Logger"

    def read_back() -> str:
        if "logger" not in state:
            raise NotApplicable("not built (see 'build')")
        if item.read_back is None:
            raise NotApplicable("it declares no read_back; the zoo cannot see what it logged")
        logger = state["logger"]
        # Values float32 holds exactly: a tracker may store either precision.
        rows = [{"loss": 1.5, "accuracy": 0.25, "val_loss": 1.75, "lr": 2.0**-10}, {"loss": 0.5, "accuracy": 0.75, "val_loss": 0.625, "lr": 2.0**-11}]
        logger.start()
        for epoch, row in enumerate(rows, start=1):
            logger.log_epoch(epoch, row)
        logger.finish({"loss": 0.5}, [])
        held = item.read_back(item.config(), state["run"])
        for name in rows[0]:
            got = [float(v) for v in held.get(name, [])]
            expect(got == [row[name] for row in rows], f"logged {name} = {[row[name] for row in rows]}, read back {got}")
        return f"{len(rows)} epochs of {len(rows[0])} values read back"

    return [("config", lambda: config_round_trip(entry)), ("build", build), ("read_back", read_back)]


# --------------------------------------------------------------------------------------
# pytest
# --------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _results(target: Optional[str], kind: str, name: str) -> dict[str, CheckResult]:
    selection = select(target, get_registry())
    if kind == "plugin":
        found = check_plugins([s for s in selection.sources if s.label == name], get_registry())
    elif kind == "preset":
        found = [r for preset, path in selection.presets if preset == name for r in check_preset(preset, path)]
    else:  # the selection's own item of that name, also where the zoo's own shadows it
        found = check_item(next(e for e in selection.entries if (e.kind, e.name) == (kind, name)))
    return {r.check: r for r in found}


def conformance_tests(target: Optional[str] = None):
    """A pytest test function, parametrised with every check of what ``target`` names (a
    distribution, an entry point or an item; ``None``: everything installed). Assign it
    to a ``test_*`` name in a test module."""
    import pytest

    planned = planned_checks(select(target, get_registry()))

    @pytest.mark.parametrize("kind,name,check", planned, ids=[f"{k}-{n}-{c}" for k, n, c in planned])
    def test_conformance(kind: str, name: str, check: str) -> None:
        result = _results(target, kind, name)[check]
        if result.outcome == FAIL:
            pytest.fail(result.message(), pytrace=False)
        if result.outcome == SKIP:
            pytest.skip(result.detail)

    return test_conformance
