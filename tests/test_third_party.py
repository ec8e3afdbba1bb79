"""Throwaway third-party distributions, built and installed for real, found by `zoo`."""

from __future__ import annotations

import csv
import json
import os
import re
import time
from pathlib import Path

import pytest

from conftest import error_lines, install, make_distribution, run_zoo

PLUGIN_MODULE = '''
from dataclasses import dataclass, field

import zoo


@dataclass
class TinyDenseConfig:
    units: int = field(default=16, metadata={"help": "Hidden units."})
    activation: str = field(default="relu", metadata={"help": "Hidden activation."})


def build(config, spec):
    import keras

    inputs = keras.Input(spec.input_shape)
    x = keras.layers.Flatten()(inputs)
    x = keras.layers.Dense(config.units, activation=config.activation, name="hidden")(x)
    outputs = keras.layers.Dense(spec.num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs)


@zoo.hookimpl
def register_models():
    return [zoo.ModelPlugin("tiny_dense", "A one-hidden-layer dense classifier.", TinyDenseConfig, build)]
'''


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("dists")
    target = root / "site"
    install(make_distribution(root, "zoo-tiny-dense", PLUGIN_MODULE), target)
    broken = "raise RuntimeError('this plugin is broken on purpose')\n"
    install(make_distribution(root, "zoo-broken", broken), target)
    # An entry point naming an attribute the module lacks, and a hook implementation that
    # asks for an argument no hook gives.
    install(make_distribution(root, "zoo-no-attribute", "", entry_point="zoo_no_attribute:plugin"), target)
    unknown_argument = "import zoo\n\n@zoo.hookimpl\ndef register_models(flavour):\n    return []\n"
    install(make_distribution(root, "zoo-bad-hook", unknown_argument), target)
    return target


def env_with(site: Path, **extra: str) -> dict:
    return {"PYTHONPATH": str(site), **extra}


def test_installed_plugin_is_listed_and_the_broken_one_reported(site):
    result = run_zoo("list", env=env_with(site))
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if "tiny_dense" in line)
    assert row.split()[:4] == ["model", "tiny_dense", "zoo-tiny-dense", "1.2.3"]
    assert "cnn_classifier" in result.stdout, "first-party plugins are unaffected"
    assert "Broken plugins (skipped):" in result.stdout
    assert "zoo-broken 1.2.3" in result.stdout and "this plugin is broken on purpose" in result.stdout
    warnings = [line for line in result.stderr.splitlines() if line.startswith("zoo: warning:")]
    assert len(warnings) == 3 and any("'zoo-broken'" in w and "'zoo_broken'" in w for w in warnings)

    data = json.loads(run_zoo("list", "--json", env=env_with(site)).stdout)
    broken = {p["distribution"]: p["error"] for p in data["plugins"] if p["status"] == "broken"}
    assert set(broken) == {"zoo-broken", "zoo-no-attribute", "zoo-bad-hook"}
    assert "RuntimeError" in broken["zoo-broken"]
    assert "plugin" in broken["zoo-no-attribute"] and "AttributeError" in broken["zoo-no-attribute"]
    assert "flavour" in broken["zoo-bad-hook"]


@pytest.mark.parametrize(
    "args,env",
    [(["list"], {"ZOO_STRICT_PLUGINS": "1"}), (["--strict-plugins", "list"], {})],
    ids=["env", "flag"],
)
def test_strict_mode_makes_a_broken_plugin_fatal(site, args, env):
    result = run_zoo(*args, env=env_with(site, **env))
    assert result.returncode == 2
    assert error_lines(result.stderr) == [result.stderr.strip()]
    assert "is broken" in result.stderr and "strict plugin mode is on" in result.stderr


def test_broken_distribution_can_be_skipped_by_name(site):
    disabled = "zoo-broken,zoo-no-attribute,zoo-bad-hook"
    result = run_zoo("list", env=env_with(site, ZOO_DISABLE_PLUGINS=disabled, ZOO_STRICT_PLUGINS="1"))
    assert result.returncode == 0, result.stderr
    assert "tiny_dense" in result.stdout and "Broken" not in result.stdout


def test_info_describes_the_third_party_config(site):
    result = run_zoo("info", "tiny_dense", env=env_with(site))
    assert result.returncode == 0, result.stderr
    assert "provided by zoo-tiny-dense 1.2.3" in result.stdout
    assert any(line.split()[:3] == ["units", "int", "16"] for line in result.stdout.splitlines())


def test_a_plugins_model_failing_in_its_library_is_one_line_naming_it(site, tmp_path):
    """Keras refusing what a plugin's factory asks for (here an activation it does not know)
    happens once the job runs: one line naming the library, no folder left, exit status 2;
    ZOO_TRACEBACK=1 shows where."""
    run_dir = tmp_path / "run"
    args = ["train", "model=tiny_dense", "model.activation=no_such_activation", f"hydra.run.dir={run_dir}"]
    result = run_zoo(*args, cwd=tmp_path, env=env_with(site))
    assert result.returncode == 2, result.stderr[-2000:]
    [line] = error_lines(result.stderr)
    assert line.startswith("zoo: error: keras failed: ValueError: ") and "no_such_activation" in line, line
    assert "Error executing job" not in result.stderr and not run_dir.exists()
    shown = run_zoo(*args, cwd=tmp_path, env=env_with(site, ZOO_TRACEBACK="1"))
    assert shown.returncode != 0 and "Traceback" in shown.stderr


def test_train_runs_the_third_party_model_with_its_config(site, tmp_path):
    run_dir = tmp_path / "run"
    result = run_zoo(
        "train", "model=tiny_dense", "model.units=8", "model.activation=tanh", "trainer.epochs=5",
        f"hydra.run.dir={run_dir}", cwd=tmp_path, env=env_with(site),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    import keras

    model = keras.saving.load_model(run_dir / "model.keras")
    hidden = model.get_layer("hidden")
    assert hidden.units == 8 and hidden.get_config()["activation"] == "tanh"
    # Ten classes: chance is 0.1; a trained model is well above it.
    assert json.loads((run_dir / "metrics.json").read_text())["accuracy"] > 0.3

    # Used where the plugin is not installed, or is another version: the run's env.json says which.
    evaluated = run_zoo("evaluate", str(run_dir), cwd=tmp_path)
    assert evaluated.returncode == 2 and error_lines(evaluated.stderr) == [
        f"zoo: error: the run in {run_dir}: unknown model 'tiny_dense'; known: autoencoder, cnn_cat_classifier, "
        "cnn_classifier, conv_autoencoder, gan, gru_text_generator, mlp_classifier, pretrained_classifier, vae "
        "(see 'zoo list model'); it was trained with zoo-tiny-dense 1.2.3, not installed here: install it"
    ], evaluated.stderr[-2000:]
    environment = json.loads((run_dir / "env.json").read_text())
    environment["plugins"]["zoo-tiny-dense"] = "1.0.0"
    (run_dir / "env.json").write_text(json.dumps(environment))
    config = (run_dir / "config.yaml").read_text()
    (run_dir / "config.yaml").write_text(config.replace("units: 8", "units: 4"))  # as a version that builds otherwise would
    evaluated = run_zoo("evaluate", str(run_dir), cwd=tmp_path, env=env_with(site))
    lines = error_lines(evaluated.stderr)
    assert evaluated.returncode == 2 and len(lines) == 1 and lines[0].endswith(
        "; it was trained with zoo-tiny-dense 1.0.0 (now 1.2.3): its model may be built otherwise now"
    ), evaluated.stderr[-2000:]


def test_third_party_config_is_checked(site, tmp_path):
    result = run_zoo("train", "model=tiny_dense", "model.unit=8", cwd=tmp_path, env=env_with(site))
    assert result.returncode == 2
    (error,) = error_lines(result.stderr)
    assert "did you mean 'model.units'" in error
    # Besides the error, only the warning about the other, broken distribution.
    assert [line for line in result.stderr.splitlines() if line != error][0].startswith("zoo: warning:")


ODD_CONFIGS = """
import enum
from dataclasses import dataclass
from typing import Literal

import zoo


class Colour(enum.Enum):
    RED = 1
    BLUE = 2


@dataclass
class EnumConfig:
    colour: Colour = Colour.RED


@dataclass
class LiteralConfig:
    mode: Literal["a", "b"] = "a"


@dataclass
class RequiredConfig:
    units: int


@dataclass
class EndlessConfig:
    limit: float = float("inf")


def build(config, spec):
    import keras

    inputs = keras.Input(spec.input_shape)
    x = keras.layers.Flatten()(inputs)
    outputs = keras.layers.Dense(1, activation="sigmoid")(x) if spec.binary else keras.layers.Dense(spec.num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs)


@zoo.hookimpl
def register_models():
    configs = {"enum_model": EnumConfig, "literal_model": LiteralConfig, "required_model": RequiredConfig, "endless_model": EndlessConfig}
    return [zoo.ModelPlugin(name, "A model of an odd config.", config, build) for name, config in configs.items()]
"""


def test_a_plugins_config_of_odd_types_is_described_checked_and_never_takes_other_items_down(tmp_path):
    """A config field OmegaConf cannot hold (a Literal) failed every `zoo train` of any model
    while the plugin was installed; a field without a default, or an infinite one, failed
    `zoo info` of the model ("fits no installed dataset"); an Enum failed `zoo check`'s round
    trip though runs read it back right."""
    site = tmp_path / "site"
    install(make_distribution(tmp_path, "zoo-odd-configs", ODD_CONFIGS), site)
    others = run_zoo("train", "model=mlp_classifier", "--cfg", "job", cwd=tmp_path, env=env_with(site))
    assert others.returncode == 0 and "mlp_classifier" in others.stdout, others.stderr[-2000:]
    literal = run_zoo("train", "model=literal_model", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, env=env_with(site))
    assert literal.returncode == 2 and error_lines(literal.stderr) == [
        "zoo: error: model 'literal_model' cannot be configured: its config class LiteralConfig is not one Hydra can hold "
        "(mode: Unexpected type annotation: Literal[a, b]); its plugin must change it (fields of str, int, float, bool, an "
        "Enum, Optional, a list or dict of those, or a nested dataclass)"
    ], literal.stderr[-2000:]
    assert not (tmp_path / "run").exists()
    for model, reason in (("required_model", "no value for 'model.units'"), ("endless_model", "model.limit=inf must be a finite number")):
        described = run_zoo("info", model, "--json", cwd=tmp_path, env=env_with(site))
        assert described.returncode == 0, described.stderr[-2000:]
        out = json.loads(described.stdout)
        assert out["cost"] is None and out["cost_error"].startswith(reason) and [f["name"] for f in out["config"]] in (["units"], ["limit"])
    checked = run_zoo("check", "zoo-odd-configs", cwd=tmp_path, env=env_with(site), timeout=600)
    lines = {line.split("check failed: ")[1].split(":")[0]: line for line in checked.stderr.splitlines() if "check failed: " in line}
    assert checked.returncode == 1 and set(lines) == {
        "model 'literal_model', check 'config'", "model 'endless_model', check 'config'", "model 'required_model', check 'build'"
    }, checked.stderr[-3000:]  # the Enum passes
    assert "the default limit=inf is not a finite number, which every run refuses" in lines["model 'endless_model', check 'config'"]


HALF_LABELS = """
from dataclasses import dataclass

import zoo


@dataclass
class Config:
    onehot: bool = False


def describe(config):
    return zoo.DataSpec(task=zoo.CLASSIFICATION, input_shape=(4,), num_classes=3, class_names=("a", "b", "c"))


def load(config, seed):
    import numpy as np

    x = np.random.default_rng(seed).normal(size=(120, 4)).astype("float32")
    y = (np.arange(120) % 3) + 0.5  # not class indices: 0.5, 1.5, 2.5
    if config.onehot:
        y = np.eye(3, dtype="float32")[np.arange(120) % 3]
    return zoo.Splits(train=(x[:80], y[:80]), validation=(x[80:100], y[80:100]), test=(x[100:], y[100:]))


@zoo.hookimpl
def register_datasets():
    return [zoo.DatasetPlugin("half_labels", "Labels that are not class indices.", Config, describe, load)]
"""


def test_a_plugins_labels_that_are_not_its_classes_fail_before_training(tmp_path):
    """Labels 0.5, 1.5, 2.5 trained a whole run and failed drawing its ROC curves at the end
    (`zoo failed: max() arg is an empty sequence`); one-hot rows failed in Keras' loss."""
    site = tmp_path / "site"
    install(make_distribution(tmp_path, "zoo-half-labels", HALF_LABELS), site)
    run_dir = tmp_path / "run"
    for setting, problem in (
        ("dataset.onehot=false", "its train split has labels [0.5, 1.5, 2.5] outside 0..2"),
        ("dataset.onehot=true", "its train split has targets of shape (3,) per example: give one class index each (0..2), not one-hot rows"),
    ):
        result = run_zoo("train", "model=mlp_classifier", "dataset=half_labels", setting, f"hydra.run.dir={run_dir}", cwd=tmp_path, env=env_with(site))
        assert result.returncode == 2 and error_lines(result.stderr) == [
            f"zoo: error: dataset 'half_labels': {problem}; the plugin's factory must yield what its describe() says (zoo check tests it)"
        ], result.stderr[-2000:]
        assert not run_dir.exists()


NAMED_METRIC = """
from dataclasses import dataclass

import zoo


@dataclass
class Config:
    pass


def build(config, spec):
    import keras

    return keras.metrics.SparseCategoricalAccuracy(name=LOGGED)


def reference(y_true, y_pred, spec, config):
    import numpy as np

    return float((np.argmax(y_pred, -1) == np.reshape(y_true, -1)).mean())


@zoo.hookimpl
def register_metrics():
    return [zoo.MetricPlugin(REGISTERED, "Accuracy under a name of its own.", Config, build, (zoo.CLASSIFICATION,), reference=reference)]
"""


def test_a_metric_never_logs_under_a_name_the_runs_records_use(tmp_path):
    """A metric named `loss` took the test loss's place in metrics.json; `epoch` made a second
    history.csv column; `folds` failed the run at its end. Such names are refused when the
    plugin registers them, and a metric logging under another name than its own fails the
    run before it trains."""
    site = tmp_path / "site"
    install(make_distribution(tmp_path, "zoo-reserved-metric", NAMED_METRIC.replace("REGISTERED", "'val_f1'").replace("LOGGED", "'val_f1'")), site)
    install(make_distribution(tmp_path, "zoo-misnamed-metric", NAMED_METRIC.replace("REGISTERED", "'my_accuracy'").replace("LOGGED", "'loss'")), site)
    listed = run_zoo("list", "--json", cwd=tmp_path, env=env_with(site))
    broken = {p["distribution"]: p["error"] for p in json.loads(listed.stdout)["plugins"] if p.get("error")}
    assert "metric name 'val_f1' is reserved: a run's records use it" in broken["zoo-reserved-metric"], broken
    run_dir = tmp_path / "run"
    trained = run_zoo("train", "model=mlp_classifier", "metrics=[my_accuracy]", "trainer.epochs=1", f"hydra.run.dir={run_dir}", cwd=tmp_path, env=env_with(site))
    assert trained.returncode == 2 and error_lines(trained.stderr) == [
        "zoo: error: metric 'my_accuracy' is built named 'loss'; it must log under its registered name (zoo check tests it)"
    ], trained.stderr[-2000:]
    assert not run_dir.exists()


VECTOR_METRIC = """
from dataclasses import dataclass

import zoo


@dataclass
class Config:
    pass


def build(config, spec):
    import keras

    class PerClass(keras.metrics.Metric):  # one value per class: not what a run logs
        def __init__(self):
            super().__init__(name="per_class")
            self.seen = self.add_weight(name="seen", shape=(spec.num_classes,), initializer="zeros")

        def update_state(self, y_true, y_pred, sample_weight=None):
            self.seen.assign_add(keras.ops.sum(y_pred, axis=0))

        def result(self):
            return self.seen

    return PerClass()


@zoo.hookimpl
def register_metrics():
    return [zoo.MetricPlugin("per_class", "A value per class.", Config, build, (zoo.CLASSIFICATION,))]
"""


def test_a_logged_value_of_any_number_type_is_one_number():
    """bfloat16 (a model's own step under mixed_bfloat16) is a number, whose NumPy kind is V."""
    import ml_dtypes
    import numpy as np

    from zoo.errors import ZooError
    from zoo.training import logged_numbers

    values = {"a": np.array(1.5, dtype=ml_dtypes.bfloat16), "b": np.float16(2), "c": np.int64(3), "d": np.bool_(True)}
    assert logged_numbers(values) == {"a": 1.5, "b": 2.0, "c": 3.0, "d": 1.0}
    with pytest.raises(ZooError, match="the value logged as 'x' .* is text, not one number"):
        logged_numbers({"x": np.array(b"1.5")})  # float() would take it


def test_a_metric_whose_result_is_not_one_number_is_named(tmp_path):
    """It had failed the run after its first epoch on "tensorflow failed: TypeError: only
    0-dimensional arrays can be converted to Python scalars", the plugin unnamed."""
    site = tmp_path / "site"
    install(make_distribution(tmp_path, "zoo-vector-metric", VECTOR_METRIC), site)
    trained = run_zoo("train", "model=mlp_classifier", "metrics=[accuracy,per_class]", "trainer.epochs=1",
                      f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, env=env_with(site))  # fmt: skip
    assert trained.returncode == 2 and error_lines(trained.stderr) == [
        "zoo: error: the value logged as 'per_class' (a metric's result(), or what a model's own step returns) is of shape (10,), "
        "not one number; it must be a scalar (zoo check tests a metric's)"
    ], trained.stderr[-2000:]


BREAKING_PIPELINE = """
from dataclasses import dataclass

import zoo


@dataclass
class Config:
    shapes: bool = False


def describe(config):
    return zoo.DataSpec(task=zoo.CLASSIFICATION, input_shape=(4,), num_classes=2, class_names=("a", "b"))


def load(config, seed):
    import numpy as np
    import tensorflow as tf

    x = np.random.default_rng(seed).normal(size=(200, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")

    def check(row, features):
        if row == 150:
            raise ValueError("row 150 is damaged")
        return features

    train = tf.data.Dataset.from_tensor_slices((x[:160], y[:160])).enumerate()
    if config.shapes:  # elements of two shapes from row 150 on
        train = train.map(lambda i, p: (tf.cond(i < 150, lambda: p[0], lambda: tf.concat([p[0], p[0]], 0)), p[1]))
    else:
        train = train.map(lambda i, p: (tf.ensure_shape(tf.numpy_function(check, [i, p[0]], tf.float32), (4,)), p[1]))
    return zoo.Splits(train=train, validation=(x[160:180], y[160:180]), test=(x[180:], y[180:]))


@zoo.hookimpl
def register_datasets():
    return [zoo.DatasetPlugin("breaking", "Fails in mid-epoch.", Config, describe, load)]
"""


@pytest.mark.parametrize("setting, problem", [("dataset.shapes=false", "ValueError: row 150 is damaged"),
                                              ("dataset.shapes=true", "Cannot ")])  # fmt: skip
def test_a_plugins_pipeline_failing_in_mid_epoch_is_named(setting, problem, tmp_path):
    """It had been "tensorflow failed: InvalidArgumentError: {{function_node
    __wrapped__IteratorGetNext_output_types_2_device_/job:localhost/...}} Error in
    user-defined function passed to MapDataset:4 transformation ...", the plugin unnamed."""
    site = tmp_path / "site"
    install(make_distribution(tmp_path, "zoo-breaking", BREAKING_PIPELINE), site)
    trained = run_zoo("train", "model=mlp_classifier", "dataset=breaking", setting, "trainer.batch_size=16",
                      f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, env=env_with(site))  # fmt: skip
    assert trained.returncode == 2, trained.stderr[-2000:]
    [line] = error_lines(trained.stderr)
    assert line.startswith(f"zoo: error: dataset 'breaking' failed while the run read it ({problem}") and "function_node" not in line and "Detected at" not in line, line
    assert line.endswith("mend the data or the plugin, then run the same command to start it again")


def test_two_distributions_claiming_one_name_are_reported_naming_both(tmp_path):
    target = tmp_path / "site"
    install(make_distribution(tmp_path, "zoo-tiny-dense", PLUGIN_MODULE), target)
    install(make_distribution(tmp_path, "zoo-tiny-dense-fork", PLUGIN_MODULE), target)
    listing = run_zoo("list", "model", env=env_with(target))
    assert listing.returncode == 0, listing.stderr
    conflict = next(line for line in listing.stdout.splitlines() if line.startswith("Conflict:"))
    assert "'tiny_dense'" in conflict and "zoo-tiny-dense 1.2.3" in conflict and "zoo-tiny-dense-fork 1.2.3" in conflict

    result = run_zoo("train", "model=tiny_dense", cwd=tmp_path, env=env_with(target))
    assert result.returncode == 2
    (error,) = error_lines(result.stderr)
    assert "zoo-tiny-dense (" in error and "zoo-tiny-dense-fork (" in error and "ZOO_DISABLE_PLUGINS" in error

    chosen = run_zoo("info", "tiny_dense", env=env_with(target, ZOO_DISABLE_PLUGINS="zoo-tiny-dense-fork"))
    assert chosen.returncode == 0 and "provided by zoo-tiny-dense 1.2.3" in chosen.stdout


DIGITS_CLASH = '''
from dataclasses import dataclass

import zoo


@dataclass
class Config:
    rows: int = 10


def describe(config):
    return zoo.DataSpec(input_shape=(4,), num_classes=2, task="classification", class_names=("a", "b"))


def load(config, seed):
    raise RuntimeError("never loaded: the zoo's own digits keeps the name")


@zoo.hookimpl
def register_datasets():
    return [zoo.DatasetPlugin("digits", "Someone else's digits.", Config, describe, load)]
'''


def test_a_plugin_claiming_a_first_party_name_is_shadowed_and_reported_not_used(tmp_path):
    """Installing a plugin must not change what the zoo's own names mean (`zoo train`'s
    default dataset is `digits`); the clash is named in the listing and by `zoo check`."""
    target = tmp_path / "site"
    install(make_distribution(tmp_path, "zoo-digits-clash", DIGITS_CLASH), target)
    listing = run_zoo("list", "dataset", env=env_with(target))
    assert listing.returncode == 0, listing.stderr
    rows = [line.split() for line in listing.stdout.splitlines() if line.startswith("dataset  digits")]
    assert [row[1:4] for row in rows] == [["digits", "keras-zoo", "0.1.0"], ["digits", "(shadowed)", "zoo-digits-clash"]]
    assert "Shadowed: dataset 'digits' of zoo-digits-clash is not used" in listing.stdout
    assert "dataset 'digits' of 'zoo-digits-clash' is shadowed by the zoo's own dataset" in listing.stderr

    info = run_zoo("info", "dataset", "digits", env=env_with(target))
    assert info.returncode == 0 and "provided by keras-zoo" in info.stdout, info.stderr
    check = run_zoo("check", "zoo-digits-clash", env=env_with(target))
    assert check.returncode == 1
    assert "dataset 'digits' is the zoo's own (its item is used): rename it" in check.stdout, check.stdout
    strict = run_zoo("list", env=env_with(target, ZOO_STRICT_PLUGINS="1"))
    assert strict.returncode == 2 and "shadowed" in error_lines(strict.stderr)[0]


CONTAINED = {
    "zoo-exits-at-import": "import sys\nsys.exit(3)\n",
    "zoo-exits-in-hook": "import sys\nimport zoo\n\n@zoo.hookimpl\ndef register_models():\n    sys.exit(0)\n",
    "zoo-prints": "print('hello from a plugin import')\n",
    "zoo-sleeps": "import time\ntime.sleep(1.5)\n",
    "zoo-heavy": "import sklearn.linear_model\n",
    # what ends a process without a word, and stdout closed (it is stderr while plugins load)
    "zoo-os-exits": "import os\nos._exit(0)\n",
    "zoo-aborts-in-hook": "import os\nimport zoo\n\n@zoo.hookimpl\ndef register_metrics():\n    os.abort()\n",
    "zoo-closes-stdout": "import sys\nsys.stdout.close()\n",
    # prints from outside the import: a thread of its own, and an atexit handler after the command
    "zoo-prints-later": "import atexit, threading\natexit.register(print, 'hello from atexit')\n"
                        "threading.Thread(target=print, args=('hello from a thread',)).start()\n",
    # a process of its own, which ends with os._exit: it had gone on as the zoo, printing a second listing
    "zoo-forks": "import os\nif os.fork() == 0:\n    os._exit(0)\n",
    "zoo-slow-hook": "import time\nimport zoo\n\n@zoo.hookimpl\ndef register_models():\n    time.sleep(1.5)\n    return []\n",
}


def test_a_plugin_that_exits_prints_or_is_slow_cannot_take_zoo_list_down(tmp_path):
    target = tmp_path / "site"
    for name, source in CONTAINED.items():
        install(make_distribution(tmp_path, name, source), target)
    result = run_zoo("list", "--json", env=env_with(target, ZOO_PLUGIN_IMPORT_LIMIT="0.1"))
    assert result.returncode == 0, result.stderr
    plugins = {p["distribution"]: p for p in json.loads(result.stdout)["plugins"]}  # valid JSON on stdout
    assert plugins["zoo-exits-at-import"]["status"] == "broken"
    assert plugins["zoo-exits-at-import"]["error"] == "failed to import 'zoo_exits_at_import': it called sys.exit(3)"
    assert plugins["zoo-exits-in-hook"]["error"] == "it called sys.exit(0)"
    assert plugins["zoo-os-exits"]["error"] == "failed to import 'zoo_os_exits': it called os._exit(0)"
    assert plugins["zoo-aborts-in-hook"]["error"] == "it called os.abort()"
    assert plugins["zoo-closes-stdout"]["status"] == "ok"
    assert plugins["zoo-prints"]["status"] == "ok" and "hello from a plugin import" in result.stderr
    assert "hello from a thread" in result.stderr and "hello from atexit" in result.stderr  # and valid JSON on stdout
    assert plugins["zoo-forks"]["status"] == "ok"
    assert plugins["zoo-sleeps"]["import_seconds"] >= 1.5 and plugins["zoo-sleeps"]["status"] == "ok"
    assert "plugin 'zoo_sleeps' from distribution 'zoo-sleeps' took 1.5 s to import;" in result.stderr
    # named while it runs, too: an import that hangs is not a silent wait
    assert re.search(r"zoo: still importing plugin 'zoo_sleeps' from distribution 'zoo-sleeps' after 0\.[5-9] s; "
                     r"ZOO_DISABLE_PLUGINS=zoo-sleeps skips it", result.stderr), result.stderr  # fmt: skip
    assert re.search(r"from distribution 'zoo-heavy' took [\d.]+ s to import \(it imports [a-z, ]*sklearn", result.stderr)
    # hooks are plugin code too: a slow one is named as it runs and after
    assert plugins["zoo-slow-hook"]["hook_seconds"] >= 1.5 and plugins["zoo-slow-hook"]["status"] == "ok"
    assert re.search(r"zoo: still running the hooks of plugin 'zoo_slow_hook' from distribution 'zoo-slow-hook' after "
                     r"0\.[5-9] s", result.stderr), result.stderr  # fmt: skip
    assert "plugin 'zoo_slow_hook' from distribution 'zoo-slow-hook' took 1.5 s in its hooks;" in result.stderr

    table = run_zoo("list", env=env_with(target, ZOO_PLUGIN_IMPORT_LIMIT="0.1"))
    slow = table.stdout.split("Slow plugins", 1)[1]
    assert "zoo-sleeps 1.2.3, entry point 'zoo_sleeps': import 1.5 s, hooks 0.0 s" in slow and "zoo-heavy" in slow
    assert "zoo-slow-hook 1.2.3, entry point 'zoo_slow_hook': import 0.0 s, hooks 1.5 s" in slow

    strict = run_zoo(
        "list", env=env_with(target, ZOO_PLUGIN_IMPORT_LIMIT="0.5", ZOO_STRICT_PLUGINS="1",
                             ZOO_DISABLE_PLUGINS="zoo-exits-at-import,zoo-exits-in-hook,zoo-heavy,zoo-prints,zoo-prints-later,zoo-forks,zoo-os-exits,"
                                                 "zoo-aborts-in-hook,zoo-closes-stdout,zoo-slow-hook")
    )  # fmt: skip
    assert strict.returncode == 2
    assert error_lines(strict.stderr) == [strict.stderr.strip()] and "'zoo-sleeps' took" in strict.stderr
    for typo in ("abc", "-1", "0", "nan"):  # not a limit: one line (a NaN limit warned about every plugin, 'took 0.0 s')
        wrong = run_zoo("list", env=env_with(target, ZOO_PLUGIN_IMPORT_LIMIT=typo))
        assert wrong.returncode == 2 and error_lines(wrong.stderr) == [
            f"zoo: error: ZOO_PLUGIN_IMPORT_LIMIT={typo}: give a number of seconds above 0 (2 when unset; inf: no limit)"
        ], wrong.stderr


def test_a_damaged_entry_points_or_metadata_file_is_one_broken_plugin_and_another_packages_is_passed_over(tmp_path):
    """One package's damaged entry_points.txt (a pip install killed half-way), a zoo
    plugin's or not, had failed every zoo command ("importlib failed: TypeError: Pair.__new__()
    missing 1 required positional argument", "codecs failed: UnicodeDecodeError"), naming
    no package."""
    site = tmp_path / "site"
    damaged = {
        "zoo-torn": b"[zoo.plugins]\nzoo_torn = zoo_torn\n[[[\n",
        "zoo-garbled": b"\xff\xfe[zoo.plugins]\nzoo_garbled = zoo_garbled\n",
        "unrelated": b"[console_scripts]\nx = \n= y\n[[[\n",  # not the zoo's: passed over unsaid
        "zoo-emptied": b"[zoo.plugins]\nzoo_emptied =\n",  # parsed, but no module to import
    }
    for name, text in damaged.items():
        info = site / f"{name.replace('-', '_')}-1.0.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
        (info / "entry_points.txt").write_bytes(text)
    garbled = site / "zoo_garbled_metadata-1.0.dist-info"  # its METADATA damaged: that too had failed every command
    garbled.mkdir()
    (garbled / "METADATA").write_bytes(b"\xff\xfe\x00")
    (garbled / "entry_points.txt").write_text("[zoo.plugins]\nzoo_garbled_metadata = zoo_garbled_metadata\n")
    result = run_zoo("list", "--json", env=env_with(site))
    assert result.returncode == 0, result.stderr[-2000:]
    listing = json.loads(result.stdout)
    plugins = {p["distribution"]: p for p in listing["plugins"]}
    assert "cnn_classifier" in {m["name"] for m in listing["items"] if m["kind"] == "model"}
    assert re.fullmatch(r"its entry points cannot be read \(TypeError: .*\); reinstall it \(pip install --force-reinstall "
                        r"zoo-torn\), or skip it with ZOO_DISABLE_PLUGINS=zoo-torn", plugins["zoo-torn"]["error"])  # fmt: skip
    assert plugins["zoo-garbled"]["error"].startswith("its entry points cannot be read (UnicodeDecodeError: ")
    assert plugins["zoo-emptied"]["error"].startswith("its entry point 'zoo_emptied' = '' is not name = module")
    assert "unrelated" not in plugins and "unrelated" not in result.stderr
    assert plugins["zoo_garbled_metadata"]["error"].startswith("its METADATA cannot be read (UnicodeDecodeError: ")
    strict = run_zoo("list", env=env_with(site, ZOO_STRICT_PLUGINS="1", ZOO_DISABLE_PLUGINS="zoo-garbled,zoo-emptied,zoo-garbled-metadata"))
    assert strict.returncode == 2 and error_lines(strict.stderr) == [
        f"zoo: error: plugin 'zoo-torn' from distribution 'zoo-torn' is broken: {plugins['zoo-torn']['error']} (strict plugin mode is on)"
    ], strict.stderr


@pytest.mark.parametrize(
    "source, status, line",
    [
        ("import not_there", 0, "zoo: warning: Hydra's plugin hydra_plugins.broken_launcher (from distribution hydra-broken-launcher) "
                                "cannot be imported (ModuleNotFoundError: No module named 'not_there'); Hydra skips it: upgrade it, or uninstall it"),
        ("raise AttributeError('ray has no attribute Old')", 2,
         "zoo: error: Hydra's plugin hydra_plugins.broken_launcher (from distribution hydra-broken-launcher) fails as Hydra imports "
         "it (AttributeError: ray has no attribute Old); Hydra imports every installed plugin as it starts: upgrade it, or uninstall it"),
    ],
)  # fmt: skip
def test_a_broken_hydra_plugin_is_one_line_naming_its_distribution(tmp_path, source, status, line):
    """Hydra imports every installed Hydra plugin as it starts, whichever a command uses: one
    that raised anything but ImportError (a launcher broken by an upgrade of its library) had
    failed every zoo train in Hydra's words, naming a module; an ImportError was Hydra's
    six-line warning on every command."""
    site = tmp_path / "site"
    (site / "hydra_plugins" / "broken_launcher").mkdir(parents=True)
    (site / "hydra_plugins" / "broken_launcher" / "__init__.py").write_text(source + "\n")
    info = site / "hydra_broken_launcher-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: hydra-broken-launcher\nVersion: 1.0\n")
    (info / "RECORD").write_text("hydra_plugins/broken_launcher/__init__.py,,\n")
    result = run_zoo("train", "--cfg", "job", env=env_with(site))
    assert result.returncode == status, result.stderr[-2000:]
    assert [text for text in result.stderr.splitlines() if text.startswith("zoo:")] == [line], result.stderr[-2000:]
    assert "UserWarning" not in result.stderr and "Traceback" not in result.stderr


def test_a_config_missing_from_a_damaged_zoo_install_says_to_reinstall_it(tmp_path):
    """The zoo's own conf/trainer/default.yaml gone (a pip install killed half-way) had been
    "unknown trainer 'default'; no trainer is registered; is a plugin installed?"."""
    import importlib.resources
    import shutil

    import zoo

    site = tmp_path / "site"
    shutil.copytree(Path(zoo.__file__).parent, site / "zoo", ignore=shutil.ignore_patterns("__pycache__", "conf"))
    shutil.copytree(Path(str(importlib.resources.files("zoo.conf"))), site / "zoo" / "conf", ignore=shutil.ignore_patterns("__pycache__"))
    (site / "zoo" / "conf" / "trainer" / "default.yaml").unlink()
    result = run_zoo("train", "--cfg", "job", env=env_with(site), cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert error_lines(result.stderr) == [
        "zoo: error: trainer=default: no trainer config is installed where Hydra looks (keras-zoo's conf/trainer/, a "
        "--config-dir); reinstall keras-zoo (pip install --force-reinstall keras-zoo)"
    ]


def test_a_distribution_whose_entry_point_group_is_misspelt_is_named_as_such(tmp_path):
    """A plugin author's `pip install -e .` of a project declaring its entry point under
    another group (zoo_plugins) listed nothing, and `zoo check demo` said only that no such
    name exists."""
    info = tmp_path / "site" / "zoo_demo-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: zoo-demo\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[zoo_plugins]\ndemo = zoo_demo\n")
    expected = ("zoo: error: distribution zoo-demo is installed but declares no 'zoo.plugins' entry point (its entry points are "
                "under 'zoo_plugins'); declare one in its pyproject.toml, [project.entry-points.\"zoo.plugins\"], and install it again")  # fmt: skip
    for command in (["check", "demo"], ["info", "zoo-demo"]):
        result = run_zoo(*command, env=env_with(tmp_path / "site"))
        assert result.returncode == 2 and error_lines(result.stderr) == [expected], result.stderr[-2000:]
    other = run_zoo("info", "numpy")  # installed, but no plugin project: no advice to give it an entry point
    assert error_lines(other.stderr)[0].startswith("zoo: error: unknown plugin or item 'numpy'"), other.stderr[-2000:]


COUNTED = '''
import sys
from dataclasses import dataclass

import zoo
from zoo_counted.models import MODELS

print("zoo_counted imported", file=sys.stderr)


@dataclass
class Config:
    units: int = 1


def build(config, spec):
    raise NotImplementedError


@zoo.hookimpl
def register_models():
    return [zoo.ModelPlugin(name, "A model for the cache test.", Config, build) for name in MODELS]
'''


@pytest.mark.parametrize("variable", ["ZOO_CACHE_DIR", "XDG_CACHE_HOME"])
def test_a_relative_cache_folder_makes_no_folder_in_the_working_folder(variable, tmp_path):
    """``ZOO_CACHE_DIR=cache`` made a folder ``cache`` in whatever folder each command ran
    in; a relative value is passed over, as XDG's spec says of its own."""
    env = {"ZOO_CACHE_DIR": "", "XDG_CACHE_HOME": "", variable: "cache", "HOME": str(tmp_path / "home")}
    result = run_zoo("list", "model", cwd=tmp_path, env=env)
    assert result.returncode == 0 and "cnn_classifier" in result.stdout, result.stderr[-2000:]
    assert [p.name for p in tmp_path.iterdir()] == ["home"] and list((tmp_path / "home" / ".cache" / "keras-zoo").glob("plugins-*.json"))


def test_a_pipe_in_the_listing_caches_place_is_passed_over(tmp_path):
    """Reading it had kept `zoo list` waiting for ever; it is made again in its place."""
    env = {"ZOO_CACHE_DIR": str(tmp_path / "cache")}
    assert run_zoo("list", "model", env=env).returncode == 0
    [cache] = (tmp_path / "cache").glob("plugins-*.json")
    cache.unlink()
    os.mkfifo(cache)
    result = run_zoo("list", "model", env=env, timeout=60)
    assert result.returncode == 0 and "cnn_classifier" in result.stdout and cache.is_file(), result.stderr[-2000:]


def test_the_listing_cache_never_shows_a_stale_plugin_set(tmp_path):
    """`zoo list` reuses what it found while nothing installed changed: a plugin added,
    removed or edited (in place, as an editable install is) is seen at once."""
    import shutil

    target = tmp_path / "site"
    project = make_distribution(tmp_path, "zoo-counted", COUNTED)
    (project / "zoo_counted" / "models.py").write_text("MODELS = ['counted_a']\n")
    install(project, target)
    env = env_with(target, ZOO_CACHE_DIR=str(tmp_path / "cache"))

    def models() -> tuple[set[str], bool]:
        result = run_zoo("list", "model", "counted*", env=env)
        assert result.returncode == 0 and "broken" not in result.stdout, result.stdout + result.stderr
        return {line.split()[1] for line in result.stdout.splitlines()[1:] if line.strip()}, "zoo_counted imported" in result.stderr

    assert models() == ({"counted_a"}, True)  # cold: imported
    assert models() == ({"counted_a"}, False)  # warm: nothing imported
    assert len(list((tmp_path / "cache").glob("plugins-*.json"))) == 1

    models_file = target / "zoo_counted" / "models.py"  # edited where it is installed
    models_file.write_text("MODELS = ['counted_a', 'counted_b']\n")
    assert models() == ({"counted_a", "counted_b"}, True)

    other = make_distribution(tmp_path, "zoo-other", "import zoo\n")  # a new distribution
    install(other, target)
    result = run_zoo("list", "--json", env=env)
    assert "zoo-other" in {p["distribution"] for p in json.loads(result.stdout)["plugins"]}

    for path in [*target.glob("zoo_other*"), *target.glob("zoo_counted*")]:  # uninstalled by hand
        shutil.rmtree(path)
    assert models() == (set(), False)

    (next((tmp_path / "cache").glob("plugins-*.json"))).write_text("{damaged")
    install(project, target)
    assert models() == ({"counted_a"}, True)
    assert run_zoo("list", "model", env={**env, "ZOO_PLUGIN_CACHE": "0"}).returncode == 0


def test_a_plugin_in_a_zip_on_the_path_is_listed_anew_when_the_zip_is_replaced(tmp_path):
    """A wheel or zip put on ``PYTHONPATH`` as it is (zipimport: Spark's ``--py-files``, a
    serverless layer) has files with no stamp of their own: the cache took the plugin as
    never changing, and showed the old build's items after the archive was replaced."""
    import shutil

    project = make_distribution(tmp_path, "zoo-counted", COUNTED)
    site, archive = tmp_path / "site", tmp_path / "counted.zip"
    env = env_with(archive, ZOO_CACHE_DIR=str(tmp_path / "cache"))

    def build(models: str) -> None:
        (project / "zoo_counted" / "models.py").write_text(f"MODELS = {models}\n")
        shutil.rmtree(site, ignore_errors=True)
        install(project, site)
        shutil.make_archive(str(archive.with_suffix("")), "zip", site)

    def models() -> tuple[set[str], bool]:
        result = run_zoo("list", "model", "counted*", env=env)
        assert result.returncode == 0 and "broken" not in result.stdout, result.stdout + result.stderr
        return {line.split()[1] for line in result.stdout.splitlines()[1:] if line.strip()}, "zoo_counted imported" in result.stderr

    build("['counted_a']")
    assert models() == ({"counted_a"}, True)
    assert models() == ({"counted_a"}, False)  # the cache is used for it
    build("['counted_a', 'counted_b']")  # the same distribution and version, rebuilt
    assert models() == ({"counted_a", "counted_b"}, True)


REFERENCING = '''
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import zoo


@dataclass
class Config:
    parent: Optional[str] = zoo.run_reference("A finished run whose model this one extends.")
    units: int = field(default=8, metadata={"help": "Hidden units."})


def build(config, spec):
    import keras

    if config.parent is not None:  # what a distiller or a fine-tuner does: read the other run
        assert (Path(config.parent) / "model.keras").is_file(), config.parent
    inputs = keras.Input(spec.input_shape)
    x = keras.layers.Dense(config.units, activation="relu")(keras.layers.Flatten()(inputs))
    return keras.Model(inputs, keras.layers.Dense(spec.num_classes, activation="softmax")(x))


@zoo.hookimpl
def register_models():
    return [zoo.ModelPlugin("referencing_mlp", "A model whose config names another run.", Config, build)]
'''


@pytest.mark.slow  # three short trainings
def test_a_run_reference_field_is_made_absolute_checked_recorded_and_missed_in_one_line(tmp_path):
    target = tmp_path / "site"
    install(make_distribution(tmp_path, "zoo-referencing", REFERENCING), target)
    env = env_with(target)
    quick = ["dataset=digits", "trainer.epochs=1"]
    parent = run_zoo("train", "model=referencing_mlp", *quick, "hydra.run.dir=parent", cwd=tmp_path, env=env)
    assert parent.returncode == 0, parent.stderr[-2000:]

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    missing = run_zoo("train", "model=referencing_mlp", "model.parent=../nope", *quick, cwd=elsewhere, env=env)
    assert missing.returncode == 2 and not (elsewhere / "runs").exists()
    assert error_lines(missing.stderr) == [
        f"zoo: error: model.parent={tmp_path / 'nope'} does not exist (moved or deleted?); give the run's directory where it is now"
    ]
    child = run_zoo("train", "model=referencing_mlp", "model.parent=../parent", *quick, "hydra.run.dir=child", cwd=elsewhere, env=env)
    assert child.returncode == 0, child.stderr[-2000:]
    import yaml

    recorded = yaml.safe_load((elsewhere / "child" / "config.yaml").read_text())
    assert recorded["model"]["parent"] == str(tmp_path / "parent")  # absolute: the run can be used from anywhere
    references = json.loads((elsewhere / "child" / "training.json").read_text())["references"]
    import hashlib

    digest = hashlib.sha256((tmp_path / "parent" / "model.keras").read_bytes()).hexdigest()
    assert references == {"model.parent": {"run_dir": str(tmp_path / "parent"), "model_sha256": digest}}

    (tmp_path / "parent").rename(tmp_path / "moved")
    evaluated = run_zoo("evaluate", str(elsewhere / "child"), cwd=tmp_path, env=env)
    assert evaluated.returncode == 2
    assert error_lines(evaluated.stderr) == [
        f"zoo: error: the model of {elsewhere / 'child'} is built from model.parent={tmp_path / 'parent'}, which is no "
        f"longer there (moved or deleted?); put that run back, or a link to where it is now"
    ], evaluated.stderr[-2000:]
    (tmp_path / "parent").symlink_to(tmp_path / "moved")
    assert run_zoo("evaluate", str(elsewhere / "child"), cwd=tmp_path, env=env).returncode == 0


EXITS_LATER = '''
import os
import sys
from dataclasses import dataclass

import zoo


@dataclass
class Config:
    rows: int = 64


def describe(config):
    return zoo.DataSpec(input_shape=(4,), num_classes=2, task="classification", class_names=("a", "b"))


def load(config, seed):
    if os.environ.get("EXIT_IN_PLUGIN"):
        sys.exit(0)  # as some command-line libraries do when they think they are done
    import numpy as np

    x = np.random.default_rng(seed).normal(size=(config.rows, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    return zoo.Splits(train=(x, y), validation=(x, y), test=(x, y))


@zoo.hookimpl
def register_datasets():
    return [zoo.DatasetPlugin("exits_later", "Rows that exit when asked.", Config, describe, load)]
'''


@pytest.mark.slow  # two trainings and an evaluation
def test_sys_exit_in_a_plugins_factory_fails_the_command_instead_of_ending_it_well(tmp_path):
    """A dataset factory calling sys.exit(0) had `zoo train` end with exit status 0 and no
    run (and `zoo evaluate` the same, without a metric): the zoo names it as a failure."""
    site = tmp_path / "site"
    install(make_distribution(tmp_path, "zoo-exits-later", EXITS_LATER), site)
    run_dir = tmp_path / "run"
    args = ("model=mlp_classifier", "dataset=exits_later", "trainer.epochs=1", f"hydra.run.dir={run_dir}")
    exits = run_zoo("train", *args, env=env_with(site, EXIT_IN_PLUGIN="1"))
    assert exits.returncode == 2, exits.stderr[-2000:]
    assert error_lines(exits.stderr) == [
        "zoo: error: zoo_exits_later failed: it called sys.exit(0); ZOO_TRACEBACK=1 shows where"
    ], exits.stderr
    assert not run_dir.exists()  # nothing was written: no half run left behind

    trained = run_zoo("train", *args, env=env_with(site))
    assert trained.returncode == 0, trained.stderr[-2000:]
    evaluated = run_zoo("evaluate", str(run_dir), env=env_with(site, EXIT_IN_PLUGIN="1"))
    assert evaluated.returncode == 2 and error_lines(evaluated.stderr) == [
        "zoo: error: zoo_exits_later failed: it called sys.exit(0); ZOO_TRACEBACK=1 shows where"
    ], evaluated.stderr


CALLBACK_AND_LOGGER = '''
import os
import threading
import time
from dataclasses import dataclass

import zoo


@dataclass
class Options:
    pass


def build_callback(config, run):
    import keras
    import numpy as np

    class Sometimes(keras.callbacks.Callback):
        """Logs a value in the second epoch only, keeps NumPy scalars as state; with
        PLUGIN_MODE set, does what a careless plugin does."""

        def on_epoch_end(self, epoch, logs=None):
            mode = os.environ.get("PLUGIN_MODE")
            if epoch == 1:
                logs["sometimes"] = np.float32(0.25)
            if mode == "string":
                logs["note"] = "fine"
            if mode == "replace":
                logs["val_loss"] = 0.0
            if mode == "thread" and epoch == 0:
                threading.Thread(target=time.sleep, args=(3600,), name="uploader").start()

        def get_state(self):
            return {"best": np.float64(0.5), "seen": [1, 2]} if os.environ.get("PLUGIN_MODE") != "set" else {"seen": {1, 2}}

        def set_state(self, state):
            pass

    return Sometimes()


class Tracker(zoo.Logger):
    def log_epoch(self, epoch, logs):
        raise SystemExit(0)


def build_logger(config, run):
    if os.environ.get("PLUGIN_MODE") == "no_logger":
        return None
    return Tracker()


@zoo.hookimpl
def register_callbacks():
    return [zoo.CallbackPlugin("sometimes", "Logs in some epochs.", Options, build_callback)]


@zoo.hookimpl
def register_loggers():
    return [zoo.LoggerPlugin("exits", "A tracker that calls sys.exit.", Options, build_logger)]
'''


@pytest.mark.slow  # six short trainings, one waiting for a stray thread
def test_a_plugins_callback_and_logger_cannot_corrupt_the_records_or_keep_the_zoo_from_exiting(tmp_path):
    """A value a callback logged in some epochs only failed the run at its end (IndexError);
    a string, None or an array failed it in the zoo's name; a value it replaced (val_loss)
    went into the records as if measured; a set in its state failed as "json failed"; a
    logger calling sys.exit died silently (KeyboardInterrupt: a traceback); a logger factory
    returning None failed on an AttributeError; a non-daemon thread it started kept `zoo`
    from ever exiting."""
    site = tmp_path / "site"
    install(make_distribution(tmp_path, "zoo-careless", CALLBACK_AND_LOGGER), site)

    def train(name, mode="", *extra):
        return run_zoo(
            "train", "model=mlp_classifier", "dataset=breast_cancer", "trainer.epochs=2", "callbacks=[sometimes]", *extra,
            f"hydra.run.dir={tmp_path / name}", cwd=tmp_path, env=env_with(site, PLUGIN_MODE=mode), timeout=300,
        )  # fmt: skip

    good = train("good", "", "loggers=[exits]")
    assert good.returncode == 0, good.stderr[-2000:]
    assert "zoo: warning: logger 'exits' failed (SystemExit: 0); it logs nothing more for this run, which goes on" in good.stderr
    with (tmp_path / "good" / "history.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["sometimes"] for row in rows] == ["nan", "0.25"]

    expected = {
        "string": "callback 'sometimes' logged 'note' = 'fine' (str), not a number",
        "replace": "callback 'sometimes' replaced 'val_loss' in the epoch's logs",
        "set": "callback 'sometimes': get_state() gave 'seen' = {1, 2} (set), which a checkpoint cannot hold",
        "no_logger": "logger 'exits': its factory returned NoneType, not a zoo.Logger",
    }
    for mode, start in expected.items():
        failed = train(mode, mode, *(["loggers=[exits]"] if mode == "no_logger" else []))
        lines = error_lines(failed.stderr)
        assert failed.returncode == 2 and len(lines) == 1 and lines[0].startswith(f"zoo: error: {start}"), failed.stderr[-2000:]

    started = time.monotonic()
    stray = train("thread", "thread")
    assert stray.returncode == 0 and (tmp_path / "thread" / "metrics.json").is_file(), stray.stderr[-2000:]
    assert "zoo: warning: thread(s) 'uploader' still running 30 s after the command ended (started by a plugin?); exiting without them" in stray.stderr
    assert time.monotonic() - started < 200
