"""The registry: every model, dataset and metric the installed plugins provide.

Items are cheap descriptions (name, summary, config dataclass, factory); nothing heavy is
imported until a factory is called. A name is unique within its kind. When a plugin
registers a name the zoo's own plugins use, the zoo's item keeps it (installing a plugin
must not change what `zoo train` does) and the other is reported as shadowed. When two other
plugins register the same name, neither wins silently: the name is reported as a conflict
naming both distributions, and using it is an error until one is uninstalled or disabled.
"""

from __future__ import annotations

import difflib
import fnmatch
import traceback
from dataclasses import dataclass
from typing import Any, Iterable, Optional, Union

from zoo import discovery, hookspecs
from zoo.discovery import PluginSource
from zoo.errors import PluginError, UnknownNameError, ZooError

__all__ = ["Registered", "Registry", "get_registry", "register_plugin", "reset_registry"]

Item = Union[
    hookspecs.ModelPlugin, hookspecs.DatasetPlugin, hookspecs.MetricPlugin, hookspecs.CallbackPlugin, hookspecs.LoggerPlugin
]


@dataclass(frozen=True)
class Registered:
    """One registered item and the plugin it came from."""

    kind: str
    item: Item
    source: PluginSource

    @property
    def name(self) -> str:
        return self.item.name

    @property
    def summary(self) -> str:
        return self.item.summary

    @property
    def distribution(self) -> str:
        return self.source.distribution


class Registry:
    """Items by kind and name, plus every plugin source (healthy or broken)."""

    def __init__(self, strict: bool = False) -> None:
        self.strict = strict
        self.plugin_manager = discovery.new_plugin_manager()
        self.sources: list[PluginSource] = []
        # Hydra search-path entries from register_config_paths, with the plugin of each.
        self.config_paths: list[tuple[PluginSource, str]] = []
        self._claims: dict[str, dict[str, list[Registered]]] = {kind: {} for kind in hookspecs.KINDS}

    # -- building ---------------------------------------------------------------------

    def load_entry_points(self) -> None:
        with discovery.plugin_code_contained():
            self.sources.extend(discovery.load_entry_points(self.plugin_manager, self.strict, self._collect_items))
        for claims in self.shadowed():
            discovery.report_shadowed(claims[0].kind, claims[0].name, [c.source for c in claims[1:]], self.strict)

    def register_plugin(self, plugin: Any, name: Optional[str] = None) -> PluginSource:
        """Register a plugin object (a module or any object with hookimpls) directly."""
        source = PluginSource(
            name=name or getattr(plugin, "__name__", type(plugin).__name__),
            value=getattr(plugin, "__name__", repr(plugin)),
            distribution="(registered at run time)",
            version="",
            plugin=plugin,
        )
        discovery.register(self.plugin_manager, source)
        if source.error is None:
            self._collect_items(source)
        if source.error:
            raise PluginError(f"plugin {source.name!r}: {source.error}")
        self.sources.append(source)
        return source

    def _collect_items(self, source: PluginSource) -> None:
        """Call the plugin's hooks and claim the names of what they return; a failing hook
        marks the whole plugin broken and claims nothing."""
        try:
            collected = list(self._collect(source))
            paths = list(self._collect_config_paths(source))
        except (Exception, SystemExit) as exc:  # a hook implementation can raise anything, or exit
            source.error = discovery.one_line(exc)
            source.details = traceback.format_exc()
            self.plugin_manager.unregister(source.plugin)
            return
        for entry in collected:
            self._claims[entry.kind].setdefault(entry.name, []).append(entry)
        self.config_paths.extend((source, path) for path in paths)

    def _results(self, source: PluginSource, hook_name: str) -> Iterable[Any]:
        """What ``source``'s implementations of ``hook_name`` return, one by one."""
        for impl in getattr(self.plugin_manager.hook, hook_name).get_hookimpls():
            if impl.plugin is source.plugin:
                returned = impl.function()
                if returned is not None and not isinstance(returned, (list, tuple)):
                    raise TypeError(f"{hook_name}() must return a list, e.g. [{type(returned).__name__}(...)], got {returned!r:.120}")
                yield from returned or ()

    def _collect(self, source: PluginSource) -> Iterable[Registered]:
        for kind, (hook_name, item_type) in hookspecs.KINDS.items():
            for item in self._results(source, hook_name):
                if not isinstance(item, item_type):
                    raise TypeError(f"{hook_name}() must return {item_type.__name__} objects, got {item!r}")
                yield Registered(kind, item, source)

    def _collect_config_paths(self, source: PluginSource) -> Iterable[str]:
        for path in self._results(source, "register_config_paths"):
            if not (isinstance(path, str) and path.startswith(("pkg://", "file://"))):
                raise TypeError(f"register_config_paths() must return 'pkg://...' or 'file://...' strings, got {path!r}")
            yield path

    # -- looking up -------------------------------------------------------------------

    def conflicts(self) -> list[list[Registered]]:
        """Names claimed by more than one plugin, none of them the zoo's own."""
        return [claims for by_name in self._claims.values() for claims in by_name.values() if _winner(claims) is None]

    def shadowed(self) -> list[list[Registered]]:
        """Names the zoo's own plugins claim that others claim too: the zoo's item first."""
        found = []
        for by_name in self._claims.values():
            for claims in by_name.values():
                winner = _winner(claims)
                if winner is not None and len(claims) > 1:
                    found.append([winner, *(c for c in claims if c is not winner)])
        return found

    def names(self, kind: str) -> list[str]:
        return sorted(self._claims[_check_kind(kind)])

    def get(self, kind: str, name: str) -> Registered:
        """The item ``name`` of ``kind``; unknown or conflicting names raise a one-line error."""
        claims = self._claims[_check_kind(kind)].get(name)
        if not claims:
            raise UnknownNameError(unknown_name_message(kind, name, self.names(kind)))
        if len(claims) > 1 and _winner(claims) is not None:
            return _winner(claims)
        if len(claims) > 1:
            owners = " and ".join(f"{c.source.distribution} (entry point {c.source.name!r})" for c in claims)
            raise ZooError(
                f"{kind} {name!r} is registered by both {owners}; uninstall one, or skip one with "
                f"ZOO_DISABLE_PLUGINS=<distribution>"
            )
        return claims[0]

    def list(self, kind: Optional[str] = None, pattern: str = "*") -> list[Registered]:
        """Every registered item (each claim, conflicts included), sorted by kind and name."""
        kinds = [_check_kind(kind)] if kind else list(hookspecs.KINDS)
        return [
            entry
            for k in kinds
            for name in sorted(self._claims[k])
            if fnmatch.fnmatchcase(name, pattern)
            for entry in self._claims[k][name]
        ]

    def broken(self) -> list[PluginSource]:
        return [s for s in self.sources if s.error]


def _winner(claims: list[Registered]) -> Optional[Registered]:
    """The claim that keeps a name: the only claim, or the zoo's own among several."""
    if len(claims) == 1:
        return claims[0]
    own = [c for c in claims if discovery.normalise_name(c.source.distribution) == discovery.ZOO_DISTRIBUTION]
    return own[0] if len(own) == 1 else None


def unknown_name_message(kind: str, name: str, known: list[str], see: Optional[str] = None) -> str:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    if close:
        hint = "did you mean " + " or ".join(repr(c) for c in close) + "?"
    elif known:
        hint = "known: " + ", ".join(known)
    else:
        hint = f"no {kind} is registered; is a plugin installed?"
    return f"unknown {kind} {name!r}; {hint} (see '{see or f'zoo list {kind}'}')"


def _check_kind(kind: str) -> str:
    if kind not in hookspecs.KINDS:
        raise UnknownNameError(unknown_name_message("kind", kind, list(hookspecs.KINDS)))
    return kind


_registry: Optional[Registry] = None


def get_registry() -> Registry:
    """The process-wide registry, discovered from entry points on first use."""
    global _registry
    if _registry is None:
        registry = Registry(strict=discovery.env_flag("ZOO_STRICT_PLUGINS"))
        registry.load_entry_points()
        _registry = registry
    return _registry


def register_plugin(plugin: Any, name: Optional[str] = None) -> PluginSource:
    """Add a plugin object to the process-wide registry (e.g. from a notebook or a test)."""
    return get_registry().register_plugin(plugin, name)


def reset_registry() -> None:
    """Forget the process-wide registry; the next use discovers plugins again."""
    global _registry
    _registry = None
