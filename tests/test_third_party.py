"""Throwaway third-party distributions, built and installed for real, found by `zoo`."""

from __future__ import annotations

import json
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


def test_third_party_config_is_checked(site, tmp_path):
    result = run_zoo("train", "model=tiny_dense", "model.unit=8", cwd=tmp_path, env=env_with(site))
    assert result.returncode == 2
    (error,) = error_lines(result.stderr)
    assert "did you mean 'model.units'" in error
    # Besides the error, only the warning about the other, broken distribution.
    assert [line for line in result.stderr.splitlines() if line != error][0].startswith("zoo: warning:")


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
