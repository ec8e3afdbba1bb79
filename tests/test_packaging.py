"""The project as users install it: a built wheel, and the `zoo` console script."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import REPO, run_zoo


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    # Build from a copy: setuptools leaves build/ and *.egg-info/ beside the sources, and an
    # egg-info in the checkout would shadow the installed metadata for `python -m zoo` there.
    source = tmp_path_factory.mktemp("source") / "keras-zoo"
    ignored = shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__", ".pytest_cache", "runs")
    shutil.copytree(REPO, source, ignore=ignored)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(out), str(source)],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    (path,) = out.glob("keras_zoo-*.whl")
    return path


def test_wheel_installs_only_namespaced_top_level_packages(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names}
    assert {t for t in top_level if not t.endswith(".dist-info")} == {"zoo", "zoo_plugins", "hydra_plugins"}
    # hydra_plugins is Hydra's namespace package: the zoo adds its own folder and no __init__.py.
    assert {n.split("/")[1] for n in names if n.startswith("hydra_plugins/")} == {"zoo_optuna_sweeper"}
    assert "hydra_plugins/__init__.py" not in names
    shipped = {name.removeprefix("zoo/") for name in names if name.startswith("zoo/conf/") and name.endswith(".yaml")}
    in_tree = {str(p.relative_to(REPO)) for p in (REPO / "conf").rglob("*.yaml")}
    assert shipped == in_tree, "every config file of conf/ is in the wheel"
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "[zoo.plugins]" in text and "zoo = zoo.cli:main" in text


def test_installed_wheel_trains_from_any_directory(wheel, tmp_path):
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site), str(wheel)],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    env = {"PYTHONPATH": str(site)}
    where = subprocess.run(
        [sys.executable, "-c", "import zoo, zoo_plugins; print(zoo.__file__); print(zoo_plugins.__file__)"],
        cwd=tmp_path, env={**__import__("os").environ, **env}, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert all(line.startswith(str(site)) for line in where.stdout.split()), where.stdout
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = run_zoo(
        "train", "trainer.epochs=1", "metrics=[accuracy]", "hydra.run.dir=out", cwd=elsewhere, env=env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert set(json.loads((elsewhere / "out" / "metrics.json").read_text())) == {"loss", "accuracy"}


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "zoo"
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.startswith("zoo ")
