"""Finding plugins: entry points in the ``zoo.plugins`` group, loaded into pluggy.

One broken distribution must not take the tool down (pluggy's own
``load_setuptools_entrypoints`` aborts on the first failing import), so each entry point
is loaded on its own and failures are kept as :class:`PluginSource` records with their
error. Strict mode turns the first failure into an exception.

A plugin distribution states the zoo versions it supports the standard way, as a
requirement on ``keras-zoo`` (``dependencies = ["keras-zoo>=0.1,<0.2"]``); outside that
range it is reported and not imported, since pip only warns about such a conflict.

Environment:
    ZOO_DISABLE_PLUGIN_AUTOLOAD=1  load no entry points at all.
    ZOO_DISABLE_PLUGINS=a,b        skip the entry points of these distributions.
    ZOO_STRICT_PLUGINS=1           a plugin that fails to load is an error, not a warning.
"""

from __future__ import annotations

import difflib
import functools
import importlib.metadata
import os
import re
import traceback
import warnings
from dataclasses import dataclass
from typing import Any, Optional

import pluggy

from zoo import hookspecs
from zoo.errors import PluginError, PluginWarning

ZOO_DISTRIBUTION = "keras-zoo"


@dataclass
class PluginSource:
    """Where a plugin came from, and whether it loaded."""

    name: str  # the entry point's name, or the name given to register_plugin
    value: str  # "module" or "module:attr"
    distribution: str
    version: str
    error: Optional[str] = None  # one line; None when the plugin is healthy
    details: Optional[str] = None  # the original traceback, for ZOO_TRACEBACK=1 output
    plugin: Any = None  # the loaded module or object
    supports: str = ""  # the keras-zoo versions its distribution requires, e.g. ">=0.1,<0.2"
    incompatible: bool = False  # not loaded: the installed zoo is outside `supports`

    @property
    def label(self) -> str:
        return f"{self.distribution}:{self.name}"

    @property
    def status(self) -> str:
        return "incompatible" if self.incompatible else "broken" if self.error else "ok"


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no", "off")


def normalise_name(dist_name: str) -> str:
    return re.sub(r"[-_.]+", "-", dist_name).lower()


def new_plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


def register(pm: pluggy.PluginManager, source: PluginSource) -> None:
    """Register ``source.plugin`` with ``pm``; on failure set ``source.error`` instead."""
    try:
        pm.register(source.plugin, name=source.label)
    except (pluggy.PluginValidationError, ValueError) as exc:
        source.error = f"invalid hook implementation: {_one_line(exc)}"
        return
    known = sorted(n for n in vars(pm.hook) if not n.startswith("_") and getattr(pm.hook, n).has_spec())
    for caller in pm.get_hookcallers(source.plugin) or ():
        if not caller.has_spec():
            pm.unregister(source.plugin)
            close = difflib.get_close_matches(caller.name, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known hooks: {', '.join(known)}"
            source.error = f"unknown hook {caller.name!r}{hint}"
            return


def load_entry_points(pm: pluggy.PluginManager, strict: bool) -> list[PluginSource]:
    """Load every entry point of the ``zoo.plugins`` group into ``pm``."""
    if env_flag("ZOO_DISABLE_PLUGIN_AUTOLOAD"):
        return []
    disabled = {normalise_name(d) for d in os.environ.get("ZOO_DISABLE_PLUGINS", "").split(",") if d.strip()}
    sources = []
    for ep in importlib.metadata.entry_points(group=hookspecs.ENTRY_POINT_GROUP):
        metadata = ep.dist.metadata if ep.dist else None  # read once: each access re-reads the file
        source = PluginSource(
            name=ep.name,
            value=ep.value,
            distribution=metadata["Name"] if metadata else "?",
            version=metadata["Version"] if metadata else "?",
        )
        if normalise_name(source.distribution) in disabled:
            continue
        if metadata and normalise_name(source.distribution) != ZOO_DISTRIBUTION:
            source.supports = supported_zoo_versions(metadata.get_all("Requires-Dist") or [])
            _check_zoo_version(source)
        if source.error is None:
            try:
                source.plugin = ep.load()
            except Exception as exc:  # a plugin's import can raise anything
                source.error = f"failed to import {ep.value!r}: {_one_line(exc)}"
                source.details = traceback.format_exc()
        if source.error is None:
            register(pm, source)
        sources.append(source)
        if source.error:
            report_broken(source, strict)
    return sources


# `keras-zoo [extras] (specifier) ; marker` as it appears in Requires-Dist; a regular
# expression, not packaging.requirements, whose import costs ~25 ms of every `zoo list`.
_ZOO_REQUIREMENT = re.compile(
    r"\s*keras[-_.]zoo\s*(?:\[[^\]]*\])?\s*\(?\s*((?:[<>=!~][^;()]*)?)\)?\s*(?:;(.*))?$", re.IGNORECASE
)


def supported_zoo_versions(requirements: list[str]) -> str:
    """The version specifier of a ``keras-zoo`` requirement that applies whatever extras are
    installed, or ``""``."""
    for line in requirements:
        match = _ZOO_REQUIREMENT.match(line)
        if match and "extra" not in (match.group(2) or ""):
            return match.group(1).strip()
    return ""


def _check_zoo_version(source: PluginSource) -> None:
    from zoo import __version__

    if source.supports and not _supports(source.supports, __version__):
        source.incompatible = True
        source.error = (
            f"supports keras-zoo{source.supports} but {__version__} is installed; install a release of "
            f"{source.distribution} made for keras-zoo {__version__}, or a keras-zoo it supports"
        )


@functools.lru_cache(maxsize=None)  # most plugins state the same few ranges
def _supports(specifier: str, version: str) -> bool:
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    try:
        return SpecifierSet(specifier).contains(version, prereleases=True)
    except InvalidSpecifier:  # pip would not have installed it; do not second-guess
        return True


def report_broken(source: PluginSource, strict: bool) -> None:
    problem = "is not loaded" if source.incompatible else "is broken"
    message = f"plugin {source.name!r} from distribution {source.distribution!r} {problem}: {source.error}"
    if strict:
        raise PluginError(message + " (strict plugin mode is on)")
    warnings.warn(message + " (it is skipped; set ZOO_STRICT_PLUGINS=1 to make this fatal)", PluginWarning, stacklevel=2)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
