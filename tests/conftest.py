"""Shared helpers: running the real `zoo` command, and the registry the tests iterate."""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

import zoo
from zoo.config import make_config
from zoo.registry import get_registry

REPO = Path(__file__).resolve().parents[1]


def run_zoo(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 600):
    """Run ``python -m zoo ARGS`` as a user would; returns the CompletedProcess."""
    full_env = {**os.environ, "PYTHONWARNINGS": "ignore::DeprecationWarning", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "zoo", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        errors="surrogateescape",  # file names that are not UTF-8 come back as Python keeps them
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@functools.lru_cache(maxsize=1)
def own_mount_namespace_possible() -> bool:
    """Whether a test can mount file systems of its own (a tmpfs: a small /dev/shm, a disk out
    of room) in a mount namespace, seen by its commands alone."""
    return shutil.which("unshare") is not None and subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode == 0


@pytest.fixture(scope="session")
def default_run(tmp_path_factory):
    """`zoo train` with no overrides but the run directory: the README's main job."""
    cwd = tmp_path_factory.mktemp("default")
    run_dir = cwd / "run"
    result = run_zoo("train", f"hydra.run.dir={run_dir}", cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir, result


def make_distribution(
    root: Path, name: str, module_source: str, entry_point: str = "", requires: str = "keras-zoo"
) -> Path:
    """A minimal distribution with its own pyproject.toml and a `zoo.plugins` entry point
    (``entry_point``: its target, the package itself by default)."""
    package = name.replace("-", "_")
    project = root / name
    (project / package).mkdir(parents=True)
    (project / package / "__init__.py").write_text(textwrap.dedent(module_source))
    (project / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""
            [build-system]
            requires = ["setuptools>=68"]
            build-backend = "setuptools.build_meta"

            [project]
            name = "{name}"
            version = "1.2.3"
            dependencies = ["{requires}"]

            [project.entry-points."zoo.plugins"]
            {package} = "{entry_point or package}"
            """
        )
    )
    return project


def install(project: Path, target: Path) -> None:
    """`pip install` the distribution (as a wheel) into its own site directory."""
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(target), str(project)],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("zoo: error:")]


def entries(kind: str):
    return get_registry().list(kind)


TINY_FILES = Path(tempfile.mkdtemp(prefix="zoo-tiny-"))
atexit.register(shutil.rmtree, TINY_FILES, True)

# The discovery cache of this session's `zoo` processes: its own folder, not the user's.
os.environ["ZOO_CACHE_DIR"] = str(TINY_FILES / "cache")


@functools.cache
def tiny_overrides(name: str) -> dict:
    """The config overrides that make dataset ``name`` small, writing its example files
    (once per test session) where it reads files."""
    tiny = get_registry().get("dataset", name).item.tiny
    return dict(tiny(TINY_FILES / name) if callable(tiny) else tiny)


def tiny_dataset(name: str):
    """The dataset ``name`` at the small size its plugin declares for tests."""
    return zoo.create_dataset(name, **tiny_overrides(name))


def model_overrides(name: str) -> list[str]:
    """``model.key=value`` for the model's ``tiny`` config (no downloads, small sizes)."""
    return [f"model.{key}={value}" for key, value in get_registry().get("model", name).item.tiny.items()]


def compatible_pairs():
    """Every (model, dataset) pair whose declared task, input rank and checks fit."""
    pairs = []
    for model in entries("model"):
        for dataset in entries("dataset"):
            spec = tiny_dataset(dataset.name).spec
            rank = model.item.input_rank
            fits = spec.task in model.item.tasks and (rank is None or rank == len(spec.input_shape))
            config = make_config(model, model.item.tiny)
            if fits and not (model.item.accepts and model.item.accepts(config, spec)):
                pairs.append(pytest.param(model.name, dataset.name, id=f"{model.name}-{dataset.name}"))
    return pairs


def control_group(controller: str, tmp_path: Path) -> Path:
    """A new control group of this machine's with ``controller`` (``pids``, ``memory``) that
    this process may make (root; cgroup v1 or v2), or a skip. The caller removes it
    (``remove_control_group``)."""
    for top in (Path("/sys/fs/cgroup") / controller, Path("/sys/fs/cgroup")):
        try:
            usable = (top / "cgroup.procs").exists() and (top.name == controller or controller in (top / "cgroup.subtree_control").read_text())
        except OSError:
            usable = False
        if not usable:
            continue
        group = top / f"zoo-test-{os.getpid()}-{tmp_path.name}"
        try:
            group.mkdir()
        except OSError:
            continue
        if any(path.name.startswith(f"{controller}.") for path in group.iterdir()):
            return group
        group.rmdir()
    pytest.skip(f"no control group with a {controller} controller can be made here")


def remove_control_group(group: Path, timeout: float = 60) -> None:
    """Remove ``group`` once the processes in it have ended: a sweep's worker processes
    (joblib's, submitit's) outlive the command that started them by a moment."""
    import time

    deadline = time.monotonic() + timeout
    while (group / "cgroup.procs").read_text().strip() and time.monotonic() < deadline:
        time.sleep(0.2)
    group.rmdir()
