"""``zoo new plugin NAME``: a plugin distribution that installs, lists, trains and passes
``zoo check`` and its own tests as it is, to be edited from there.

The files come from ``zoo/templates/plugin/`` with ``$name``-style placeholders (Python's
``string.Template``: the templates' code never needs a dollar sign).
"""

from __future__ import annotations

import os
import re
import shutil
import string
import tempfile
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from zoo import __version__
from zoo.artifacts import FOLDER_MODE, check_output_folder
from zoo.errors import ZooError

# Where each template goes in the new project.
FILES = {
    "pyproject.toml": "pyproject.toml.tmpl",
    "README.md": "README.md.tmpl",
    "{package}/__init__.py": "init.py.tmpl",
    "{package}/plugin.py": "plugin.py.tmpl",
    "{package}/keras_objects.py": "keras_objects.py.tmpl",
    "{package}/conf/__init__.py": None,  # a package, so that pkg://{package}.conf resolves
    "{package}/conf/experiment/{prefix}_quick.yaml": "experiment.yaml.tmpl",
    "tests/test_conformance.py": "test_conformance.py.tmpl",
    "tests/test_blobs.py": "test_blobs.py.tmpl",
}


@dataclass
class NewPlugin:
    path: Path
    name: str  # the entry point's name, what `zoo check NAME` takes
    dist: str
    package: str
    prefix: str  # of the registered item names

    def summary(self) -> str:
        # pip takes `./zoo-demo[test]` as a path; `zoo-demo[test]` could be read as a name.
        where = self.path if self.path.is_absolute() else f"./{self.path}"
        return (
            f"created {self.path}/ (distribution {self.dist}, package {self.package}) with the model "
            f"{self.prefix}_mlp, the dataset {self.prefix}_blobs, the metric {self.prefix}_error_rate and "
            f"the preset {self.prefix}_quick. Next:\n"
            f"  pip install -e '{where}[test]'\n"
            f"  zoo list '{self.prefix}_*'\n"
            f"  zoo train +experiment={self.prefix}_quick\n"
            f"  zoo check {self.name}\n"
            f"  (cd {self.path} && pytest)"
        )


def supported_range(version: str) -> str:
    """The releases a new plugin declares it supports: this minor series before 1.0 (where
    minors may break), this major series after."""
    major, minor = (int(part) for part in version.split(".")[:2])
    return f">={major}.{minor},<{major}.{minor + 1}" if major == 0 else f">={major}.{minor},<{major + 1}"


MAX_NAME = 64


def new_plugin(name: str, directory: Path) -> NewPlugin:
    """Write a new plugin project named after ``name`` into ``directory``; nothing is left
    behind if that fails."""
    name = re.sub(r"^zoo[-_]", "", name.strip().lower())
    if not re.fullmatch(r"[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*", name):
        raise ZooError(
            f"plugin name {name!r} must be ASCII letters and digits (it names a distribution and a module), "
            "words joined by - or _, e.g. 'my-models'"
        )
    if len(name) > MAX_NAME:  # the project folder, its package and its distribution are named after it
        raise ZooError(f"plugin name {name[:20]}... has {len(name)} characters; give at most {MAX_NAME}")
    prefix = name.replace("-", "_")
    plugin = NewPlugin(Path(os.path.normpath(Path(directory) / f"zoo-{name}")), name, f"zoo-{name}", f"zoo_{prefix}", prefix)
    if os.path.lexists(plugin.path):  # a link to nowhere too: the rename onto it failed
        raise ZooError(f"{plugin.path} already exists; choose another name or remove it")
    if not Path(directory).is_dir():
        raise ZooError(f"{directory} is not a directory; create it first or pass another --directory")
    check_output_folder(Path(directory), "--directory")
    _refuse_taken_names(prefix, plugin.package, plugin.dist)
    values = {
        "name": name, "dist": plugin.dist, "package": plugin.package, "prefix": prefix,
        "zoo_range": supported_range(__version__),
    }  # fmt: skip
    templates = files("zoo") / "templates" / "plugin"
    staging = Path(tempfile.mkdtemp(prefix=f".{plugin.dist}-", dir=directory))
    try:
        for target, template in FILES.items():
            path = staging / target.format(**values)
            path.parent.mkdir(parents=True, exist_ok=True)
            text = string.Template((templates / template).read_text()).substitute(values) if template else ""
            path.write_text(text)
        os.chmod(staging, FOLDER_MODE)  # as mkdir makes folders: mkdtemp's are private (0700)
        os.rename(staging, plugin.path)  # the whole project appears at once
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return plugin


def _refuse_taken_names(prefix: str, package: str, dist: str) -> None:
    import importlib.metadata
    import importlib.util

    from zoo.registry import get_registry

    # `zoo new plugin plugins` made a package zoo_plugins: installed, it shadowed the zoo's own (or was shadowed).
    if importlib.util.find_spec(package) is not None:
        raise ZooError(f"a package named {package} is installed already; the new plugin's would shadow it or be shadowed by it: choose another plugin name")
    try:
        importlib.metadata.distribution(dist)
    except importlib.metadata.PackageNotFoundError:
        pass
    else:
        raise ZooError(f"a distribution named {dist} is installed already; choose another plugin name")

    registry = get_registry()
    for kind, name in (("model", f"{prefix}_mlp"), ("dataset", f"{prefix}_blobs"), ("metric", f"{prefix}_error_rate")):
        if name in registry.names(kind):
            owner = registry.list(kind, name)[0].distribution
            raise ZooError(f"{kind} {name!r} is already registered by {owner}; choose another plugin name")
