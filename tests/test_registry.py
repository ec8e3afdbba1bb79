"""The registry and the plugin contract, driven by what is registered."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pytest

import zoo
from zoo import hookspecs
from zoo.registry import Registry, get_registry

from conftest import error_lines, run_zoo

FIRST_PARTY = {
    "model": {"cnn_classifier", "mlp_classifier", "autoencoder", "conv_autoencoder", "vae", "gan",
              "cnn_cat_classifier", "gru_text_generator"},
    "dataset": {"digits", "breast_cancer", "synthetic_cats", "image_folder", "cifar10", "text"},
    "metric": {"accuracy", "precision", "recall", "f1", "auc", "pr_auc", "mse", "mae", "reconstruction_error",
               "perplexity"},
}


def test_first_party_plugins_come_through_the_entry_point_group():
    registry = get_registry()
    for kind, names in FIRST_PARTY.items():
        assert names <= set(registry.names(kind))
        for name in names:
            assert registry.get(kind, name).source.distribution == "keras-zoo"
            assert registry.get(kind, name).source.value.startswith("zoo_plugins.")
    assert not registry.broken()


@pytest.mark.parametrize("entry", get_registry().list(), ids=lambda e: f"{e.kind}-{e.name}")
def test_every_item_is_described_for_users(entry):
    assert entry.summary and "\n" not in entry.summary
    for f in dataclasses.fields(entry.item.config):
        assert f.metadata.get("help"), f"{entry.kind} {entry.name}: field {f.name!r} has no help"
    # Configs build from their defaults alone.
    entry.item.config()


def test_list_plugins_filters_by_kind_and_pattern():
    assert [e.name for e in zoo.list_plugins("metric", "a*")] == ["accuracy", "auc"]
    assert {e.kind for e in zoo.list_plugins()} == set(hookspecs.KINDS)
    with pytest.raises(zoo.UnknownNameError, match="did you mean 'model'"):
        zoo.list_plugins("modle")


def test_unknown_names_suggest_the_closest():
    with pytest.raises(zoo.UnknownNameError, match="did you mean 'cnn_classifier'"):
        zoo.create_model("cnn_clasifier", zoo.create_dataset("digits"))
    with pytest.raises(zoo.UnknownNameError, match="'digits'"):
        zoo.create_dataset("digit")


def test_create_with_overrides_is_type_checked():
    ds = zoo.create_dataset("digits", test_fraction=0.25)
    assert ds.config.test_fraction == 0.25
    with pytest.raises(zoo.ZooError, match="did you mean 'test_fraction'"):
        zoo.create_dataset("digits", test_fractoin=0.25)
    with pytest.raises(zoo.ZooError, match="test_fraction"):
        zoo.create_dataset("digits", test_fraction="lots")
    with pytest.raises(zoo.ZooError, match="must be between 0 and 1"):
        zoo.create_dataset("digits", test_fraction=1.5)
    for seed in (-1, 2**32, "a", 1.5):  # had failed as scikit-learn's "The 'random_state' parameter of train_test_split..."
        with pytest.raises(zoo.ZooError, match=r"seed must be a whole number from 0 to 4294967295"):
            ds.load(seed=seed)


@pytest.mark.parametrize(
    "entry", [e for e in get_registry().list("model") if "activation" in {f.name for f in dataclasses.fields(e.item.config)}],
    ids=lambda e: e.name,
)  # fmt: skip
def test_an_activation_keras_does_not_know_is_one_line_listing_those_it_does(entry):
    """It had been "keras failed: ValueError: Could not interpret activation function identifier"."""
    # Data each model can learn (values in [0, 1]: an autoencoder's sigmoid output reproduces only those).
    spec = zoo.DataSpec(zoo.CLASSIFICATION, (4,), num_classes=2, value_range=(0.0, 1.0)) if zoo.CLASSIFICATION in entry.item.tasks else (
        zoo.DataSpec(zoo.RECONSTRUCTION, (4,), value_range=(0.0, 1.0))
    )  # fmt: skip
    with pytest.raises(zoo.ZooError) as info:
        zoo.create_model(entry.name, spec, activation="relu7")
    assert str(info.value).startswith("model.activation='relu7' is not a Keras activation; choose one of: celu, elu")
    assert "relu6" in str(info.value) and "threshold" not in str(info.value)  # threshold needs more than the layer's input


def _plugin(name: str, units_help: str = "Units."):
    @dataclasses.dataclass
    class Config:
        units: int = dataclasses.field(default=4, metadata={"help": units_help})

    class Plugin:
        @zoo.hookimpl
        def register_models(self):
            return [zoo.ModelPlugin(name, "A test model.", Config, lambda config, spec: None)]

    return Plugin()


def test_same_name_from_two_plugins_is_a_conflict_naming_both():
    registry = Registry()
    registry.register_plugin(_plugin("twin"), name="first")
    registry.register_plugin(_plugin("twin"), name="second")
    assert len(registry.conflicts()) == 1
    with pytest.raises(zoo.ZooError, match="registered by both .*'first'.* and .*'second'"):
        registry.get("model", "twin")


def test_invalid_hook_implementations_are_rejected():
    class Typo:
        @zoo.hookimpl
        def register_model(self):  # missing "s"
            return []

    class BadArgument:
        @zoo.hookimpl
        def register_models(self, unexpected):
            return []

    class WrongType:
        @zoo.hookimpl
        def register_models(self):
            return ["not a ModelPlugin"]

    @dataclasses.dataclass
    class NoOptions:
        pass

    class OneItem:  # the item itself instead of a list of items
        @zoo.hookimpl
        def register_models(self):
            return zoo.ModelPlugin("single", "One model.", NoOptions, lambda config, spec: None)

    registry = Registry()
    with pytest.raises(zoo.PluginError, match=r"register_models\(\) must return a list, e.g. \[ModelPlugin\(...\)\]"):
        registry.register_plugin(OneItem())
    with pytest.raises(zoo.PluginError, match="did you mean 'register_models'"):
        registry.register_plugin(Typo())
    with pytest.raises(zoo.PluginError, match="unexpected"):
        registry.register_plugin(BadArgument())
    with pytest.raises(zoo.PluginError, match="must return ModelPlugin"):
        registry.register_plugin(WrongType())
    assert registry.names("model") == []


def test_item_declarations_are_checked():
    @dataclasses.dataclass
    class Config:
        name: str = "reserved"

    with pytest.raises(ValueError, match="reserved"):
        zoo.ModelPlugin("m", "A model.", Config, lambda c, s: None)
    with pytest.raises(TypeError, match="dataclass"):
        zoo.ModelPlugin("m", "A model.", dict, lambda c, s: None)
    with pytest.raises(ValueError, match="identifier"):
        zoo.ModelPlugin("my model", "A model.", Config, lambda c, s: None)

    @dataclasses.dataclass
    class Plain:
        units: int = 4

    # Names Hydra's command line reads as values: listed, they could never be chosen (model=null is no model).
    for name in ("null", "True", "FALSE", "inf", "NaN"):
        with pytest.raises(ValueError, match=f"model name '{name}' is a value to Hydra's command line"):
            zoo.ModelPlugin(name, "A model.", Plain, lambda c, s: None)
    with pytest.raises(ValueError, match="without_starting_weights names weights, not fields of its config"):
        zoo.ModelPlugin("m", "A model.", Plain, lambda c, s: None, without_starting_weights={"weights": "none"})


NO_TF_SCRIPT = """
import sys
from zoo.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
else:
    code = 0
heavy = sorted(m for m in ("tensorflow", "keras") if m in sys.modules)
print("HEAVY=" + ",".join(heavy), file=sys.stderr)
"""


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["list"],
        ["list", "--json"],
        ["list", "metric", "a*"],
        ["info", "cnn_classifier", "--no-cost"],
        ["info", "metric", "auc", "--json"],
        ["info", "trainer"],
        ["info", "callback", "snapshots"],
        ["train", "--help"],
        ["train", "--cfg", "job"],
        ["train", "model=no_such_model"],
        ["train", "trainer.epoch=3"],
        ["train", "model=gru_text_generator", "dataset=digits"],
        ["train", "model=gan", "metrics=[auc]"],
        ["train", "dataset=text", "model=gru_text_generator", "--cfg", "job"],
        ["train", "dataset=image_folder", "dataset.path=/no/such/folder"],
        ["info", "image_folder"],
        ["evaluate", "/no/such/run"],
        ["predict", "/no/such/run", "x.png"],
        ["explain", "/no/such/run", "x.png", "--method", "gradcm"],
        ["generate", "/no/such/run"],
        ["train", "device=multi_worker", "device.workers=[127.0.0.1:1]"],
        ["train", "trainer.precision=float16"],
        ["train", "model=mlp_classifier", "trainer.distillation.teacher=/no/such/run"],
        ["compare", "/no/such/run"],
        ["__complete", "bash", "zoo train model=cnn_classifier model.f"],
    ],
    ids=" ".join,
)
def test_listing_describing_and_validating_never_import_tensorflow(args):
    result = subprocess.run(
        [sys.executable, "-c", NO_TF_SCRIPT, *args], capture_output=True, text=True, timeout=120
    )
    assert "HEAVY=\n" in result.stderr + "\n", result.stderr[-2000:]


@pytest.mark.parametrize(
    "args, line",
    [
        (["trian"], "unknown command 'trian'; did you mean 'train'? (see 'zoo --help')"),
        (["Evaluate", "x"], "unknown command 'Evaluate'; did you mean 'evaluate'? (see 'zoo --help')"),
        (["help", "train"], "there is no help command: 'zoo --help' lists the commands, 'zoo COMMAND --help' explains one"),
        (["new", "plgin", "x"], "argument what: invalid choice: 'plgin' (choose from 'plugin'); did you mean 'plugin'? (see 'zoo new --help')"),
        # KEY=VALUE words are optional: they had been named among the missing arguments
        (["evaluate"], "the following arguments are required: RUN_DIR (see 'zoo evaluate --help')"),
        (["generate"], "the following arguments are required: RUN_DIR (see 'zoo generate --help')"),
        (["train", "help"], "help: a setting is KEY=VALUE (model=cnn_classifier, trainer.epochs=5); 'zoo train --help' lists them"),
    ],
)
def test_a_mistyped_command_line_gets_the_fix_a_new_user_needs(args, line):
    result = run_zoo(*args)
    assert result.returncode == 2 and error_lines(result.stderr) == [f"zoo: error: {line}"], result.stderr


def test_zoo_list_shows_kind_name_distribution_and_summary():
    result = run_zoo("list")
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["KIND", "NAME", "DISTRIBUTION", "SUMMARY"]
    listed = {(r.split()[0], r.split()[1]) for r in rows if r.strip()}
    for kind, names in FIRST_PARTY.items():
        assert {(kind, n) for n in names} <= listed
    assert all("keras-zoo" in r for r in rows if r.strip())


def test_zoo_list_json_is_machine_readable():
    result = run_zoo("list", "--json")
    data = json.loads(result.stdout)
    flag_between = run_zoo("list", "metric", "--json", "a*")  # argparse had refused the word after the flag
    assert [item["name"] for item in json.loads(flag_between.stdout)["items"]] == ["accuracy", "auc"], flag_between.stderr
    names = {(i["kind"], i["name"]) for i in data["items"]}
    assert ("model", "cnn_classifier") in names
    sources = {p["entry_point"]: p for p in data["plugins"]}
    assert sources["metrics"]["status"] == "ok"
    assert sources["metrics"]["hooks"] == ["register_metrics"]
    assert "metric/auc" in sources["metrics"]["registered"]


def test_zoo_info_shows_config_fields_with_types_defaults_and_help():
    result = run_zoo("info", "cnn_classifier", "--no-cost")
    assert result.returncode == 0, result.stderr
    assert "model.<field>=<value>" in result.stdout
    filters = next(line for line in result.stdout.splitlines() if line.split()[:1] == ["filters"])
    assert filters.split()[1:3] == ["int", str(get_registry().get("model", "cnn_classifier").item.config().filters)]
    data = json.loads(run_zoo("info", "metric", "f1", "--json").stdout)
    assert {f["name"] for f in data["config"]} == {"average", "threshold"}


def test_zoo_info_unknown_name_is_one_line():
    result = run_zoo("info", "cnn_clasifier")
    assert result.returncode == 2
    assert error_lines(result.stderr) == [result.stderr.strip()]
    assert "cnn_classifier" in result.stderr
    # A kind alone, or a trainer key: had been "unknown plugin or item 'model'; did you mean 'mse' or 'mae'?"
    for args, said in ((["model"], "which model? zoo info model NAME, one of: autoencoder, cnn_cat_classifier"),
                       (["trainer.epochs"], "trainer.epochs is a key of trainer: 'zoo info trainer' describes each")):  # fmt: skip
        result = run_zoo("info", *args)
        [line] = error_lines(result.stderr)
        assert result.returncode == 2 and line.startswith(f"zoo: error: {said}"), result.stderr


@pytest.mark.parametrize("closed", ["stdout", "stderr"])
def test_a_command_started_with_its_output_closed_still_does_its_work(closed, tmp_path):
    """`zoo ... >&-` (or a service started without a stdout): Python makes sys.stdout None,
    and `zoo list` failed on it; what would be printed is dropped, the exit status stays."""
    redirect = ">&-" if closed == "stdout" else "2>&-"
    listed = subprocess.run(["bash", "-c", f"'{sys.executable}' -m zoo list --json {redirect}"], capture_output=True, text=True)
    assert listed.returncode == 0 and listed.stderr == "", listed.stderr
    wrong = subprocess.run(["bash", "-c", f"'{sys.executable}' -m zoo info cnn_clasifier {redirect}"], capture_output=True, text=True)
    assert wrong.returncode == 2 and "Traceback" not in wrong.stderr + wrong.stdout


def test_autoload_can_be_switched_off():
    result = run_zoo("list", "--json", env={"ZOO_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert json.loads(result.stdout) == {"items": [], "plugins": []}


@pytest.mark.parametrize("args", [["list"], ["list", "--json"], ["info", "cnn_classifier"]])
def test_a_reader_gone_ends_a_command_with_status_1_and_no_traceback(args):
    """``zoo list | head -1`` past the pipe's buffer, here a pipe whose reader left before
    the first byte: status 1 and nothing on stderr (the command's output now goes out at its
    end, through a stream of its own, whose error had been swallowed: status 0)."""
    read, write = os.pipe()
    os.close(read)
    try:
        result = subprocess.run([sys.executable, "-m", "zoo", *args], stdout=write, stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write)
    assert result.returncode == 1 and result.stderr == "", result.stderr[-2000:]
