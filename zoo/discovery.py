"""Finding plugins: entry points in the ``zoo.plugins`` group, loaded into pluggy.

One broken distribution must not take the tool down (pluggy's own
``load_setuptools_entrypoints`` aborts on the first failing import), so each entry point
is loaded on its own and failures are kept as :class:`PluginSource` records with their
error. Strict mode turns the first failure into an exception.

Environment:
    ZOO_DISABLE_PLUGIN_AUTOLOAD=1  load no entry points at all.
    ZOO_DISABLE_PLUGINS=a,b        skip the entry points of these distributions.
    ZOO_STRICT_PLUGINS=1           a plugin that fails to load is an error, not a warning.
"""

from __future__ import annotations

import difflib
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


@dataclass
class PluginSource:
    """Where a plugin came from, and whether it loaded."""

    name: str  # the entry point's name, or the name given to register_plugin
    value: str  # "module" or "module:attr"
    distribution: str
    version: str
    error: Optional[str] = None  # one line; None when the plugin is healthy
    details: Optional[str] = None  # the original traceback, for --verbose output
    plugin: Any = None  # the loaded module or object

    @property
    def label(self) -> str:
        return f"{self.distribution}:{self.name}"


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no", "off")


def _normalise(dist_name: str) -> str:
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
    disabled = {_normalise(d) for d in os.environ.get("ZOO_DISABLE_PLUGINS", "").split(",") if d.strip()}
    sources = []
    for ep in importlib.metadata.entry_points(group=hookspecs.ENTRY_POINT_GROUP):
        dist = ep.dist
        source = PluginSource(
            name=ep.name,
            value=ep.value,
            distribution=dist.name if dist else "?",
            version=dist.version if dist else "?",
        )
        if _normalise(source.distribution) in disabled:
            continue
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


def report_broken(source: PluginSource, strict: bool) -> None:
    message = f"plugin {source.name!r} from distribution {source.distribution!r} is broken: {source.error}"
    if strict:
        raise PluginError(message + " (strict plugin mode is on)")
    warnings.warn(message + " (it is skipped; set ZOO_STRICT_PLUGINS=1 to make this fatal)", PluginWarning, stacklevel=2)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
