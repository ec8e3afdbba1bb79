"""The plugin author's kit, used as an author uses it: `zoo new plugin`, pip, `zoo list`,
`zoo train`, `zoo check`, and a plugin's declared range of zoo versions."""

from __future__ import annotations

import contextlib
import json
import os
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import zoo

from conftest import error_lines, install, make_distribution, run_zoo

WRONG_OUTPUT_SHAPE = '''
from dataclasses import dataclass

import zoo


@dataclass
class NoOptions:
    pass


def build(config, spec):
    import keras

    inputs = keras.Input(spec.input_shape)
    x = keras.layers.Flatten()(inputs)
    # The bug: one unit too many for every kind of classification data.
    units = (1 if spec.binary else spec.num_classes) + 1
    return keras.Model(inputs, keras.layers.Dense(units, activation="softmax")(x))


@zoo.hookimpl
def register_models():
    return [zoo.ModelPlugin("lopsided_classifier", "A classifier with a wrong output shape.", NoOptions, build)]
'''

# Importing it leaves a file behind: proof of whether the zoo imported it.
FOR_AN_OLD_ZOO = '''
import os
from pathlib import Path

Path(os.environ["ZOO_SENTINEL"]).write_text("imported")

import zoo


@zoo.hookimpl
def register_models():
    return []
'''


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    """`zoo new plugin demo`, installed with pip, beside a broken and an out-of-range plugin."""
    root = tmp_path_factory.mktemp("kit")
    created = run_zoo("new", "plugin", "demo", cwd=root)
    assert created.returncode == 0, created.stderr
    site = root / "site"
    install(root / "zoo-demo", site)
    install(make_distribution(root, "zoo-lopsided", WRONG_OUTPUT_SHAPE), site)
    install(make_distribution(root, "zoo-for-old", FOR_AN_OLD_ZOO, requires="keras-zoo<0.1"), site)
    sentinel = root / "imported"
    return root, {"PYTHONPATH": str(site), "ZOO_SENTINEL": str(sentinel)}, sentinel, created.stdout


@pytest.mark.slow  # CI also runs this flow in a fresh environment (.ci/run)
def test_new_plugin_is_listed_trains_and_passes_check(kit):
    root, env, _, printed = kit
    assert "zoo check demo" in printed and "pip install -e './zoo-demo[test]'" in printed
    listing = run_zoo("list", "demo_*", env=env)
    rows = [line.split()[:3] for line in listing.stdout.split("\n\n")[0].splitlines()[1:]]
    assert rows == [
        ["model", "demo_mlp", "zoo-demo"], ["dataset", "demo_blobs", "zoo-demo"], ["metric", "demo_error_rate", "zoo-demo"],
        ["callback", "demo_loss_floor", "zoo-demo"], ["logger", "demo_jsonl", "zoo-demo"],
    ]  # fmt: skip

    run_dir = root / "run"
    trained = run_zoo("train", "+experiment=demo_quick", f"hydra.run.dir={run_dir}", cwd=root, env=env)
    assert trained.returncode == 0, trained.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["accuracy"] > 0.9 and metrics["demo_error_rate"] == pytest.approx(1 - metrics["accuracy"], abs=1e-6)

    checked = run_zoo("check", "demo", "--json", env=env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    results = json.loads(checked.stdout)
    assert {r["outcome"] for r in results} == {"pass"}
    checked_items = {(r["kind"], r["name"]) for r in results}
    assert checked_items == {("plugin", "zoo-demo:demo"), ("model", "demo_mlp"), ("dataset", "demo_blobs"),
                             ("metric", "demo_error_rate"), ("callback", "demo_loss_floor"), ("logger", "demo_jsonl"),
                             ("preset", "demo_quick")}  # fmt: skip


@pytest.mark.slow
def test_new_plugin_passes_its_own_tests(kit):
    root, env, _, _ = kit
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=root / "zoo-demo",
        env={**os.environ, **env}, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:]
    assert "25 passed" in result.stdout  # its conformance checks (the plugin and six items) and two tests of its own


def test_check_names_the_model_and_the_check_of_a_wrong_output_shape(kit):
    _, env, _, _ = kit
    result = run_zoo("check", "zoo-lopsided", env=env)
    assert result.returncode == 1
    failures = [line for line in result.stderr.splitlines() if line.startswith("zoo: check failed:")]
    assert len(failures) == 1, result.stderr
    assert "model 'lopsided_classifier', check 'output_shape'" in failures[0]
    assert "must output shape (batch, 1)" in failures[0] and "got (8, 2)" in failures[0]
    table = {tuple(line.split()[2:4]) for line in result.stdout.splitlines() if "lopsided_classifier" in line}
    assert ("build", "PASS") in table and ("output_shape", "FAIL") in table and ("train_step", "SKIP") in table


def test_train_refuses_a_wrong_output_shape_before_the_first_step(kit, tmp_path):
    _, env, _, _ = kit
    result = run_zoo("train", "model=lopsided_classifier", "dataset=breast_cancer", f"hydra.run.dir={tmp_path / 'run'}", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert error_lines(result.stderr) == [
        "zoo: error: model 'lopsided_classifier' on dataset 'breast_cancer': it must output shape (batch, 1), "
        "one probability of class 1; got (2, 2) for a batch of 2 (zoo check tests it)"
    ]
    assert "Traceback" not in result.stderr and not (tmp_path / "run").exists()  # nothing trained, nothing left


def test_plugin_for_other_zoo_versions_is_reported_not_loaded(kit):
    _, env, sentinel, _ = kit
    listing = run_zoo("list", env=env)
    assert listing.returncode == 0, listing.stderr
    assert not sentinel.exists(), "the zoo imported a plugin made for other versions"
    section = listing.stdout.split("Plugins for other zoo versions (not loaded):", 1)[1]
    assert "zoo-for-old 1.2.3" in section and f"supports keras-zoo<0.1 but {zoo.__version__} is installed" in section
    assert any("zoo-for-old" in line and "is not loaded" in line for line in listing.stderr.splitlines())

    (described,) = json.loads(run_zoo("info", "zoo-for-old", "--json", env=env).stdout)
    assert described["status"] == "incompatible" and described["supports_zoo"] == "<0.1"
    strict = run_zoo("--strict-plugins", "list", env=env)
    assert strict.returncode == 2 and "zoo-for-old" in error_lines(strict.stderr)[0]
    assert not sentinel.exists()


def test_list_json_and_info_show_each_plugins_hooks_and_items(kit):
    _, env, _, _ = kit
    plugins = json.loads(run_zoo("list", "--json", env=env).stdout)["plugins"]
    demo = next(p for p in plugins if p["distribution"] == "zoo-demo")
    assert demo["version"] == "0.1.0" and demo["status"] == "ok" and demo["error"] is None
    assert demo["supports_zoo"] == "<0.2,>=0.1"  # as setuptools writes the metadata
    assert demo["hooks"] == [
        "register_callbacks", "register_config_paths", "register_datasets", "register_loggers", "register_metrics", "register_models",
    ]  # fmt: skip
    assert demo["registered"] == [
        "model/demo_mlp", "dataset/demo_blobs", "metric/demo_error_rate", "callback/demo_loss_floor", "logger/demo_jsonl",
        "config/pkg://zoo_demo.conf",
    ]  # fmt: skip
    shown = run_zoo("info", "demo", env=env).stdout
    assert "plugin 'demo' (zoo_demo.plugin): ok" in shown and "distribution: zoo-demo 0.1.0, supports keras-zoo<0.2,>=0.1" in shown
    assert "registers: model/demo_mlp, dataset/demo_blobs" in shown
    # An item of a plugin says which plugin, in JSON too.
    item = json.loads(run_zoo("info", "demo_mlp", "--json", env=env).stdout)
    assert item["plugin"]["entry_point"] == "demo" and "register_models" in item["plugin"]["hooks"]


def test_plugin_preset_is_offered_by_zoo_train_help(kit):
    _, env, _, _ = kit
    shown = run_zoo("train", "--help", env=env).stdout
    experiments = next(line for line in shown.splitlines() if line.startswith("experiment:"))
    assert "demo_quick" in experiments and "digits_cnn" in experiments


def test_new_plugin_refuses_a_bad_name_or_an_existing_folder_and_writes_nothing(tmp_path):
    bad = run_zoo("new", "plugin", "9 lives", cwd=tmp_path)
    assert bad.returncode == 2 and "must be ASCII letters and digits" in error_lines(bad.stderr)[0]
    long = run_zoo("new", "plugin", "a" * 300, cwd=tmp_path)  # longer than a file name may be
    assert long.returncode == 2 and "has 300 characters; give at most 64" in error_lines(long.stderr)[0]
    taken = run_zoo("new", "plugin", "cnn", cwd=tmp_path)  # cnn_... names are free: it works
    assert taken.returncode == 0, taken.stderr
    umask = os.umask(0)
    os.umask(umask)  # the project is readable as any folder mkdir makes (it was 0700, as a temporary folder)
    assert stat.S_IMODE((tmp_path / "zoo-cnn").stat().st_mode) == 0o777 & ~umask
    again = run_zoo("new", "plugin", "cnn", cwd=tmp_path)
    assert again.returncode == 2 and "already exists" in error_lines(again.stderr)[0]
    (tmp_path / "zoo-linked").symlink_to(tmp_path / "moved")  # a link to nowhere: ".zoo-linked-x1y2: Not a directory"
    linked = run_zoo("new", "plugin", "linked", cwd=tmp_path)
    assert linked.returncode == 2 and "zoo-linked already exists" in error_lines(linked.stderr)[0], linked.stderr
    (tmp_path / "zoo-linked").unlink()
    for name in ("plugins", "zoo_plugins"):  # its package would be zoo_plugins, the zoo's own plugins' (shadowing them once installed)
        shadowing = run_zoo("new", "plugin", name, cwd=tmp_path)
        assert shadowing.returncode == 2 and "a package named zoo_plugins is installed already" in error_lines(shadowing.stderr)[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["zoo-cnn"], "no staging folder is left behind"


def test_check_of_an_unknown_name_is_one_line():
    result = run_zoo("check", "keras-zo")
    assert result.returncode == 2
    (error,) = error_lines(result.stderr)
    assert "did you mean 'keras-zoo'?" in error


def test_check_of_one_item_runs_only_its_checks():
    from zoo.testing import run_checks

    results = run_checks("accuracy")
    assert [(r.kind, r.name, r.check, r.outcome) for r in results] == [
        ("metric", "accuracy", check, "pass") for check in ("config", "build", "reference", "reset", "direction")
    ]


def test_check_leaves_no_scratch_folder_behind(tmp_path):
    # The callback and logger checks train and log into scratch folders: each `zoo check`
    # (and CI's plugin-kit step) had left one in the temporary folder (1 MB for a callback).
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    for name in ("snapshots", "tensorboard"):  # a callback, a logger
        result = run_zoo("check", name, env={"TMPDIR": str(scratch)})
        assert result.returncode == 0 and "0 failed" in result.stdout, result.stdout + result.stderr
    assert [p.name for p in scratch.iterdir() if p.name.startswith("zoo-check-")] == []


def test_scaffold_templates_are_in_the_package():
    templates = Path(zoo.__file__).parent / "templates" / "plugin"
    from zoo.scaffold import FILES

    assert {t for t in FILES.values() if t} == {p.name for p in templates.glob("*.tmpl")}


@pytest.mark.parametrize(
    "requirement,supported",
    [
        ("keras-zoo>=0.1,<0.2", ">=0.1,<0.2"),
        ("keras_zoo[cpu] (<0.2,>=0.1)", "<0.2,>=0.1"),
        ("Keras.Zoo ~=0.1 ; python_version >= '3.10'", "~=0.1"),
        ("keras-zoo<0.1 ; extra == 'zoo'", ""),  # only with an extra: not a statement of support
        ("keras-zoology>=2", ""),
        ("keras-zoo", ""),
    ],
)
def test_supported_zoo_versions_are_read_from_the_requirement(requirement, supported):
    from zoo.discovery import supported_zoo_versions

    assert supported_zoo_versions(["numpy", requirement]) == supported


def test_a_config_path_that_is_not_a_search_path_entry_breaks_the_plugin():
    from zoo.registry import Registry

    class Plugin:
        @zoo.hookimpl
        def register_config_paths(self):
            return ["my_package/conf"]

    with pytest.raises(zoo.PluginError, match="must return 'pkg://...' or 'file://...' strings, got 'my_package/conf'"):
        Registry().register_plugin(Plugin(), "paths")


def test_check_says_what_it_is_checking_as_it_goes():
    result = run_zoo("check", "metrics")  # an entry point: the plugin, then each of its metrics
    assert result.returncode == 0, result.stderr[-2000:]
    steps = [line for line in result.stderr.splitlines() if line.startswith("zoo check: [")]
    total = len(steps)
    assert steps[0] == f"zoo check: [1/{total}] plugins" and total > 2
    assert f"zoo check: [{total}/{total}] " in steps[-1]
    assert all("metric " in line for line in steps[1:])


@dataclass
class LazyConfig:
    units: int = 4


def build_lazy_subclass(config: LazyConfig, spec):
    """A subclassed model left unbuilt by its factory: it trains, but its from_config copy
    (what zoo train saves) has no weights to take the trained ones."""
    import keras

    @keras.saving.register_keras_serializable(package="lazy_check")
    class Lazy(keras.Model):
        def __init__(self, units, classes, **kwargs):
            super().__init__(**kwargs)
            self.units, self.classes = units, classes
            self.hidden = keras.layers.Dense(units, activation="relu")
            self.out = keras.layers.Dense(classes, activation="softmax")

        def call(self, x):
            return self.out(self.hidden(keras.ops.reshape(x, (keras.ops.shape(x)[0], -1))))

        def get_config(self):
            return {**super().get_config(), "units": self.units, "classes": self.classes}

    return Lazy(config.units, spec.num_classes, name="lazy")


def test_check_rebuilds_the_model_through_its_factory_as_evaluate_and_predict_do(monkeypatch, capsys):
    from zoo.registry import register_plugin, reset_registry
    from zoo.testing import run_checks

    class LazyPlugin:
        @zoo.hookimpl
        def register_models(self):
            spec = zoo.DataSpec(task="classification", input_shape=(8, 8, 1), num_classes=3, class_names=("a", "b", "c"))
            return [zoo.ModelPlugin("lazy", "An unbuilt subclassed model.", LazyConfig, build_lazy_subclass, test_specs=[spec])]

    reset_registry()
    monkeypatch.setenv("ZOO_TRACEBACK", "1")  # the plugin's traceback, on request
    try:
        register_plugin(LazyPlugin(), "lazy")
        results = {r.check: r for r in run_checks("lazy")}
    finally:
        reset_registry()
    shown = capsys.readouterr().err
    assert "model 'lazy', check 'save_load':" in shown and "Traceback" in shown and "set_weights" in shown
    assert results["train_step"].outcome == "pass", results["train_step"].detail
    assert results["save_load"].outcome == "fail"
    # zoo train would have failed only after its last epoch, saving the model.
    assert "cannot be copied with from_config(get_config()) and saved, as zoo train saves it" in results["save_load"].detail


@dataclass
class WidthRequired:
    width: int  # no default: the command line must give it, and the checks take it from `tiny`


def build_width_mlp(config: WidthRequired, spec):
    import keras

    inputs = keras.Input(spec.input_shape)
    x = keras.layers.Dense(config.width, activation="relu")(keras.layers.Flatten()(inputs))
    head = keras.layers.Dense(1, activation="sigmoid") if spec.binary else keras.layers.Dense(spec.num_classes, activation="softmax")
    return keras.Model(inputs, head(x))


def test_a_required_config_field_gets_its_check_value_from_tiny_or_one_line_saying_so():
    from zoo.registry import register_plugin, reset_registry
    from zoo.testing import run_checks

    class RequiredPlugin:
        @zoo.hookimpl
        def register_models(self):
            return [
                zoo.ModelPlugin("needs_width", "A required field.", WidthRequired, build_width_mlp, input_rank=1),
                zoo.ModelPlugin("has_width", "A required field, given.", WidthRequired, build_width_mlp, input_rank=1, tiny={"width": 4}),
            ]

    reset_registry()
    try:
        register_plugin(RequiredPlugin(), "required")
        missing = {r.check: r for r in run_checks("needs_width")}
        given = {r.check: r for r in run_checks("has_width")}
    finally:
        reset_registry()
    assert missing["build"].outcome == "fail" and missing["build"].detail == (
        "config field 'width' has no default, so the checks cannot build the model; "
        "give the value they should use in ModelPlugin(..., tiny={'width': ...})"
    )
    assert all(r.outcome == "pass" for r in given.values() if r.check != "generate"), given


def test_a_mixed_precision_softmax_passes_the_output_check_a_float32_one_that_far_off_fails():
    """bfloat16 keeps 2-3 digits: ten probabilities of 0.1 add up, in bfloat16, to 1.0078
    (seen: a two-replica mixed_bfloat16 run refused as 'not a softmax'). A float32 output
    that far off is no softmax."""
    import ml_dtypes

    from zoo.hookspecs import CLASSIFICATION, DataSpec
    from zoo.testing import output_problem

    spec = DataSpec(task=CLASSIFICATION, input_shape=(8, 8, 1), num_classes=10)
    x = np.zeros((2, 8, 8, 1), dtype=np.float32)
    rows = np.full((2, 10), 0.1, dtype=ml_dtypes.bfloat16)
    assert float(rows.sum(axis=-1)[0]) > 1.005
    assert output_problem(CLASSIFICATION, spec, x, rows) is None
    off = np.full((2, 10), 0.1, dtype=np.float32) + np.eye(2, 10, dtype=np.float32) * 0.01
    assert output_problem(CLASSIFICATION, spec, x, off) == "its class probabilities must sum to 1 (a softmax)"


@dataclass
class NoOptions:
    pass


def build_error_rate(config, spec):
    import keras

    class ErrorRate(keras.metrics.Mean):
        def update_state(self, y_true, y_pred, sample_weight=None):
            if spec.binary:
                predicted = keras.ops.cast(keras.ops.reshape(y_pred, (-1,)) >= 0.5, "int32")
            else:
                predicted = keras.ops.cast(keras.ops.argmax(y_pred, axis=-1), "int32")
            return super().update_state(keras.ops.not_equal(predicted, keras.ops.cast(keras.ops.reshape(y_true, (-1,)), "int32")))

    return ErrorRate(name=config.__class__.__name__.lower())


def error_rate_reference(y_true, y_pred, spec, config):
    y_pred = np.asarray(y_pred)
    predicted = (y_pred.reshape(-1) >= 0.5) if spec.binary else y_pred.argmax(axis=-1)
    return float(np.mean(predicted != np.asarray(y_true).reshape(-1)))


@dataclass
class Undeclared:
    pass


@dataclass
class Misdeclared:
    pass


def test_a_metric_says_which_way_it_improves_and_mode_auto_never_guesses(monkeypatch):
    """Early stopping and the plateau schedule with mode=auto took any name outside a fixed
    list of accuracy-like ones as better lower (a plugin's IoU: the worst epoch kept), and an
    Optuna search maximised whatever its objective was (objective=val_loss: the worst runs
    found). A metric declares greater_is_better, `zoo check` holds the declaration against
    its reference, and where nothing declares a direction, mode=auto asks the user."""
    from zoo.config import compose, plan_run
    from zoo.registry import register_plugin, reset_registry
    from zoo.search import search_direction
    from zoo.testing import run_checks

    class ErrorRates:
        @zoo.hookimpl
        def register_metrics(self):
            return [zoo.MetricPlugin("undeclared", "An error rate.", Undeclared, build_error_rate, reference=error_rate_reference),
                    zoo.MetricPlugin("misdeclared", "An error rate said to be better higher.", Misdeclared, build_error_rate,
                                     reference=error_rate_reference, greater_is_better=True)]  # fmt: skip

    reset_registry()
    try:
        register_plugin(ErrorRates(), "error_rates")
        direction = {name: {r.check: r for r in run_checks(name)}["direction"] for name in ("undeclared", "misdeclared")}
        assert direction["undeclared"].outcome == "fail" and "it declares no direction" in direction["undeclared"].detail
        assert direction["misdeclared"].outcome == "fail"
        assert "it declares greater_is_better=True, but on classification 2-class" in direction["misdeclared"].detail
        for owner, used in (("trainer.early_stopping", "trainer.early_stopping.patience=2"), ("trainer.plateau", "trainer.lr_schedule=plateau")):
            watching = ["model=mlp_classifier", "dataset=breast_cancer", "metrics=[undeclared]", used, f"{owner}.monitor=val_undeclared"]
            with pytest.raises(zoo.ZooError, match=f"{owner}.mode=auto cannot tell whether val_undeclared improves up or down"):
                plan_run(compose(watching))
            plan_run(compose([*watching, f"{owner}.mode=min"]))  # said: taken
        with pytest.raises(zoo.ZooError, match="hydra.sweeper.direction=auto cannot tell whether objective=val_undeclared"):
            search_direction("val_undeclared", "auto")
    finally:
        reset_registry()
    assert search_direction("val_loss", "auto") == "minimize" and search_direction("d_loss", "auto") == "minimize"
    for entry in zoo.list_plugins("metric"):  # every installed metric, by its declaration
        expected = "maximize" if entry.item.greater_is_better else "minimize"
        assert search_direction(f"val_{entry.name}", "auto") == search_direction(entry.name, "auto") == expected


def test_a_search_against_its_objectives_direction_is_warned_of(caplog):
    from zoo.search import search_direction

    with caplog.at_level("WARNING", logger="zoo.search"):
        assert search_direction("val_loss", "maximize") == "maximize"
        assert search_direction("val_accuracy", "maximize") == "maximize"
    assert caplog.messages == [
        "hydra.sweeper.direction=maximize for objective=val_loss, which is better lower: the search looks for the worst runs"
    ]


@dataclass
class RowsConfig:
    rows: int = 60


def describe_rows(config):
    return zoo.DataSpec(task=zoo.CLASSIFICATION, input_shape=(3,), num_classes=2, class_names=("a", "b"))


def load_rows_named_wrong(config, seed):
    x = np.random.default_rng(0).normal(size=(config.rows, 3)).astype("float32")
    y = (np.arange(config.rows) % 2).astype("int32")
    parts = {"train": slice(0, 40), "validation": slice(40, 50), "test": slice(50, 60)}
    ids = {name: list(range(part.start, part.stop)) for name, part in parts.items()}
    ids["test"] = ids["test"][:-1]  # one name short
    return zoo.Splits(**{name: (x[part], y[part]) for name, part in parts.items()}, ids=ids)


@contextlib.contextmanager
def rows_dataset(name: str, load):
    """A dataset plugin ``name`` of 60 rows whose factory is ``load``, registered for the block."""
    from zoo.registry import register_plugin, reset_registry

    class Rows:
        @zoo.hookimpl
        def register_datasets(self):
            return [zoo.DatasetPlugin(name, "Rows.", RowsConfig, describe_rows, load)]

    reset_registry()
    try:
        register_plugin(Rows(), name)
        yield
    finally:
        reset_registry()


def test_check_holds_a_datasets_example_names_to_its_splits():
    from zoo.testing import run_checks

    with rows_dataset("named_rows", load_rows_named_wrong):
        load = {r.check: r for r in run_checks("named_rows")}["load"]
    assert load.outcome == "fail" and load.detail == "Splits.ids names 9 examples of the test split, which has 10"


def load_rows_repeating(config, seed):
    import tensorflow as tf

    splits = load_rows_named_wrong(config, seed)
    return zoo.Splits(tf.data.Dataset.from_tensor_slices(splits.train).repeat(), splits.validation, splits.test)


def test_a_dataset_that_never_ends_is_refused_not_counted_for_ever():
    """A tf.data train split with .repeat() (the Keras idiom beside steps_per_epoch): the run
    counted its batches in TensorFlow's own loop for ever, ignoring SIGTERM (a `timeout 120`
    left it running ten minutes on), and `zoo check` iterated it for ever."""
    from zoo.config import compose, plan_run
    from zoo.run import load_splits
    from zoo.testing import run_checks

    with rows_dataset("repeating_rows", load_rows_repeating):
        with pytest.raises(zoo.ZooError, match=r"dataset 'repeating_rows': its train split never ends \(a tf.data pipeline with .repeat\(\)\)"):
            load_splits(plan_run(compose(["model=mlp_classifier", "dataset=repeating_rows"])))
        load = {r.check: r for r in run_checks("repeating_rows")}["load"]
    assert load.outcome == "fail" and load.detail.startswith("the train split never ends"), load.detail


def test_counting_a_pipeline_of_unknown_length_stops_on_a_signal():
    """A pipeline whose length TensorFlow cannot tell (filtered) and that repeats: it was
    counted in one TensorFlow op, which no signal interrupts."""
    import signal
    import time

    script = (
        "import signal\n"
        "signal.signal(signal.SIGINT, signal.default_int_handler)  # also where this test's shell ignores it (a background job)\n"
        "import tensorflow as tf\n"
        "from zoo.training import count_steps\n"
        "data = tf.data.Dataset.range(10).repeat().filter(lambda x: True).batch(2)\n"
        "print('counting', flush=True)\n"
        "count_steps(data)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline() == "counting\n"
        time.sleep(3)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
    assert "KeyboardInterrupt" in stderr and process.returncode != 0


def load_rows_reporting(config, seed):
    import datetime

    splits = load_rows_named_wrong(config, seed)
    report = {"rows": np.int64(config.rows), "source": Path("/data/rows.csv"), "name": b"caf\xe9", "classes": {1, 0},
              "spread": np.float32("nan"), "made": datetime.date(2026, 12, 6), "shape": np.array([3, 1])}  # fmt: skip
    return zoo.Splits(splits.train, splits.validation, splits.test, report=report)


def test_a_datasets_report_of_numpy_numbers_and_paths_is_recorded_as_json():
    """A report holding a count as np.int64 (the usual case) failed the run after loading
    its data, on "json failed: TypeError: Object of type int64 is not JSON serializable";
    a NaN was written as JSON no parser reads. What JSON can say is converted; the rest is
    one line naming the entry, and `zoo check` says it first."""
    import json

    from zoo.config import compose, plan_run
    from zoo.run import load_splits, plain_report
    from zoo.testing import run_checks

    with rows_dataset("reporting_rows", load_rows_reporting):
        report = load_splits(plan_run(compose(["model=mlp_classifier", "dataset=reporting_rows"]))).report
    assert json.loads(json.dumps(report, allow_nan=False)) == {
        "rows": 60, "source": "/data/rows.csv", "name": "caf\\xe9", "classes": [0, 1], "spread": "nan", "made": "2026-12-06",
        "shape": [3, 1],
    }  # fmt: skip
    with pytest.raises(zoo.ZooError, match=r"dataset 'd': its report's 'counts.x' is of type object, which data.json cannot hold"):
        plain_report("d", {"counts": {"x": object()}})

    def load_unwritable(config, seed):
        splits = load_rows_named_wrong(config, seed)
        return zoo.Splits(splits.train, splits.validation, splits.test, report={"loader": object()})

    with rows_dataset("unwritable_rows", load_unwritable):
        load = {r.check: r for r in run_checks("unwritable_rows")}["load"]
    assert load.outcome == "fail" and load.detail.startswith("its report's 'loader' is of type object"), load.detail
