"""Finding plugins: entry points in the ``zoo.plugins`` group, loaded into pluggy.

One broken distribution must not take the tool down (pluggy's own
``load_setuptools_entrypoints`` aborts on the first failing import), so each entry point
is loaded on its own and failures are kept as :class:`PluginSource` records with their
error. Strict mode turns the first failure into an exception.

A plugin distribution states the zoo versions it supports the standard way, as a
requirement on ``keras-zoo`` (``dependencies = ["keras-zoo>=0.1,<0.2"]``); outside that
range it is reported and not imported, since pip only warns about such a conflict.

Plugin code runs inside the tool's process, so what it can do there is contained: an
exception, ``sys.exit()``, ``os._exit()`` or ``os.abort()`` in its import or hooks marks it
broken, its prints go to stderr (stdout carries ``zoo list --json``), and an import or hooks
slower than a bound are named.

Environment:
    ZOO_DISABLE_PLUGIN_AUTOLOAD=1  load no entry points at all.
    ZOO_DISABLE_PLUGINS=a,b        skip the entry points of these distributions.
    ZOO_STRICT_PLUGINS=1           a plugin that fails to load (or is slow, or shadowed) is an error, not a warning.
    ZOO_PLUGIN_IMPORT_LIMIT=2      seconds a plugin's import may take before it is named as slow
                                   (at five times that, a still running import is named as it runs).
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import importlib.metadata
import json
import math
import os
import re
import sys
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import pluggy

from zoo import errors, hookspecs
from zoo.errors import PluginError, PluginWarning, ZooError

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
    import_seconds: float = 0.0  # how long importing its entry point took
    hook_seconds: float = 0.0  # how long its hooks took to return their items

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
        source.error = f"invalid hook implementation: {one_line(exc)}"
        return
    known = sorted(n for n in vars(pm.hook) if not n.startswith("_") and getattr(pm.hook, n).has_spec())
    for caller in pm.get_hookcallers(source.plugin) or ():
        if not caller.has_spec():
            pm.unregister(source.plugin)
            close = difflib.get_close_matches(caller.name, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known hooks: {', '.join(known)}"
            source.error = f"unknown hook {caller.name!r}{hint}"
            return


def load_entry_points(
    pm: pluggy.PluginManager, strict: bool, collect: Callable[[PluginSource], None]
) -> list[PluginSource]:
    """Load every entry point of the ``zoo.plugins`` group into ``pm``, and ``collect`` the
    items of each that loads (calling its hooks, which set ``source.error`` if they fail)."""
    if env_flag("ZOO_DISABLE_PLUGIN_AUTOLOAD"):
        return []
    disabled = {normalise_name(d) for d in os.environ.get("ZOO_DISABLE_PLUGINS", "").split(",") if d.strip()}
    sources = []
    entry_points, unreadable = zoo_entry_points()
    for distribution, version, why in unreadable:
        if normalise_name(distribution) not in disabled:
            fix = f"reinstall it (pip install --force-reinstall {distribution}), or skip it with ZOO_DISABLE_PLUGINS={distribution}"
            sources.append(PluginSource(name=distribution, value="entry_points.txt", distribution=distribution, version=version,
                                        error=f"its entry points cannot be read ({why}); {fix}"))  # fmt: skip
            report_broken(sources[-1], strict)
    with LoadWatch(import_limit()) as watch:  # the limit read here: a mistake in it is one line
        for ep in entry_points:
            source = _load_entry_point(pm, ep, disabled, strict, watch, collect)
            if source is not None:
                sources.append(source)
    return sources


def load_hydra_plugins() -> None:
    """Have Hydra import every installed Hydra plugin (``hydra_plugins.*``: launchers,
    sweepers), as it does on its first use whichever the command needs. One failing with an
    ImportError was Hydra's six-line warning on every command; any other error failed every
    command, naming a module but neither its distribution nor the fix. Both are one line
    naming them; the first is skipped, as Hydra skips it."""
    from hydra.core.plugins import Plugins

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            Plugins.instance()
        except (Exception, SystemExit) as exc:
            module = _hydra_plugin_module(exc)
            from zoo.cli import traceback_requested

            if module is None or traceback_requested():
                raise
            raise ZooError(
                f"Hydra's plugin {module}{_owner(module)} fails as Hydra imports it ({one_line(exc)}); Hydra imports every "
                "installed plugin as it starts: upgrade it, or uninstall it"
            ) from None
    for found in caught:
        text = str(found.message)
        skipped = re.search(r"Error importing '([\w.]+)'.*\n\t\t(.+?)\s*$", text, re.S)
        if skipped and issubclass(found.category, UserWarning):
            module, why = skipped.groups()
            why = re.sub(r"^(\w+) : ", r"\1: ", " ".join(why.split()))  # Hydra's "ModuleNotFoundError : ..."
            warnings.warn(f"Hydra's plugin {module}{_owner(module)} cannot be imported ({why}); "
                          "Hydra skips it: upgrade it, or uninstall it", PluginWarning, stacklevel=2)  # fmt: skip
        else:
            warnings.warn_explicit(found.message, found.category, found.filename, found.lineno)


def _hydra_plugin_module(exc: BaseException) -> Optional[str]:
    """The ``hydra_plugins.X`` module an exception was raised in (or could not be parsed)."""
    files = [getattr(exc, "filename", None) or "", *(frame.filename for frame in traceback.extract_tb(exc.__traceback__))]
    for name in files:
        parts = Path(name).parts
        if "hydra_plugins" in parts[:-1]:
            return ".".join(parts[parts.index("hydra_plugins") : parts.index("hydra_plugins") + 2]).removesuffix(".py")
    return None


def _owner(module: str) -> str:
    """`` (from distribution D)`` for the installed distribution holding ``module``'s files."""
    prefix = module.replace(".", "/")
    for dist in importlib.metadata.distributions():
        try:
            if any(str(file).startswith((f"{prefix}/", f"{prefix}.py")) for file in dist.files or ()):
                return f" (from distribution {dist.metadata['Name']})"
        except Exception:  # noqa: BLE001 - a damaged record of another package
            continue
    return ""


def zoo_entry_points() -> tuple[list, list[tuple[str, str, str]]]:
    """The ``zoo.plugins`` entry points of the installed distributions (the first of each
    name on the path, as ``importlib.metadata.entry_points`` counts them), and the
    distributions that hold some but whose entry points cannot be read, with their version and why. Read all
    at once, one damaged ``entry_points.txt`` of any package (a pip install killed half-way)
    had failed every zoo command, naming no package; one that is not the zoo's is passed over."""
    found, unreadable, seen = [], [], set()
    for dist in importlib.metadata.distributions():
        name = getattr(dist, "_normalized_name", None) or "?"  # from its folder's name, as importlib.metadata's own
        try:
            if name == "?":
                name = dist.metadata["Name"] or "?"
            if normalise_name(name) in seen:
                continue
            seen.add(normalise_name(name))
            found += dist.entry_points.select(group=hookspecs.ENTRY_POINT_GROUP)
        except Exception as exc:  # noqa: BLE001 - a damaged file fails in the parser's or codec's own way
            path = getattr(dist, "_path", None)
            try:
                text = (Path(path) / "entry_points.txt").read_bytes() if path else b""
            except OSError:
                text = b""
            if hookspecs.ENTRY_POINT_GROUP.encode() in text:
                try:
                    name, version = dist.metadata["Name"] or name, dist.version or "?"  # as pip names it
                except Exception:  # noqa: BLE001 - its METADATA damaged too
                    version = "?"
                unreadable.append((name, version, one_line(exc)))
    return found, unreadable


def not_a_plugin(name: str) -> Optional[str]:
    """Why an installed distribution ``name`` (or ``zoo-name``, as ``zoo new plugin`` names
    them) lists nothing: it declares no ``zoo.plugins`` entry point. Its author saw only
    "unknown" after ``pip install``, with no word of the group spelt otherwise."""
    for candidate in dict.fromkeys([name, f"zoo-{name}"]):
        try:
            dist = importlib.metadata.distribution(candidate)
            groups = sorted({ep.group for ep in dist.entry_points})
            # a plugin project (`zoo new plugin`'s name, or one requiring keras-zoo), not numpy
            meant = normalise_name(dist.metadata["Name"] or "").startswith("zoo-") or any(map(_ZOO_REQUIREMENT.match, dist.requires or ()))
        except Exception:  # noqa: BLE001 - not installed, or its records damaged (said elsewhere)
            continue
        if hookspecs.ENTRY_POINT_GROUP in groups or not meant:
            return None
        found = f" (its entry points are under {', '.join(map(repr, groups))})" if groups else ""
        return (
            f"distribution {dist.metadata['Name']} is installed but declares no {hookspecs.ENTRY_POINT_GROUP!r} entry point{found}; "
            f'declare one in its pyproject.toml, [project.entry-points."{hookspecs.ENTRY_POINT_GROUP}"], and install it again'
        )
    return None


def _load_entry_point(
    pm: pluggy.PluginManager, ep, disabled: set[str], strict: bool, watch: LoadWatch, collect: Callable[[PluginSource], None]
) -> Optional[PluginSource]:
    folder_name = getattr(ep.dist, "_normalized_name", None) or "?"
    try:
        metadata = ep.dist.metadata if ep.dist else None  # read once: each access re-reads the file
        unreadable = None
    except Exception as exc:  # noqa: BLE001 - a damaged METADATA had failed every command (UnicodeDecodeError)
        metadata, unreadable = None, one_line(exc)
    source = PluginSource(
        name=ep.name,
        value=ep.value,
        distribution=(metadata["Name"] if metadata else None) or folder_name,
        version=(metadata["Version"] if metadata else None) or "?",
    )
    if normalise_name(source.distribution) in disabled:
        return None
    if unreadable:
        source.error = f"its METADATA cannot be read ({unreadable}); reinstall it (pip install --force-reinstall {source.distribution})"
    if metadata and normalise_name(source.distribution) != ZOO_DISTRIBUTION:
        source.supports = supported_zoo_versions(metadata.get_all("Requires-Dist") or [])
        _check_zoo_version(source)
    if source.error is None and (not ep.name or ep.pattern.match(ep.value) is None):  # loading it failed on an AttributeError
        source.error = f"its entry point {ep.name!r} = {ep.value!r} is not name = module or name = module:attribute; reinstall it, or correct its entry_points"
    if source.error is None:
        heavy_before = loaded(HEAVY_MODULES)
        started = time.perf_counter()
        try:
            with watch.running(source, "importing"):
                source.plugin = ep.load()
        except (Exception, SystemExit) as exc:  # a plugin's import can raise anything, or exit
            source.error = f"failed to import {ep.value!r}: {one_line(exc)}"
            source.details = traceback.format_exc()
        else:
            source.error = namespace_package(source.plugin, ep.value)
        source.import_seconds = time.perf_counter() - started
        if source.error is None and source.import_seconds > import_limit():
            report_slow(source, sorted(loaded(HEAVY_MODULES) - heavy_before), strict)
    if source.error is None:
        register(pm, source)
    if source.error is None:
        started = time.perf_counter()
        with watch.running(source, "running the hooks of"):
            collect(source)
        source.hook_seconds = time.perf_counter() - started
        if source.error is None and source.hook_seconds > import_limit():
            _report(
                f"plugin {source.name!r} from distribution {source.distribution!r} took {source.hook_seconds:.1f} s in "
                "its hooks; every zoo command waits for them: a hook should only return its list of items "
                f"(limit {import_limit():g} s, ZOO_PLUGIN_IMPORT_LIMIT)",
                strict,
            )
    if source.error:
        report_broken(source, strict)
    return source


def namespace_package(plugin: Any, value: str) -> Optional[str]:
    """Why an entry point that imported as a namespace package registers nothing, or None.
    Python imports a folder whose ``__init__.py`` it cannot read as such a package, without
    a word: a plugin installed unreadable to other users (``sudo pip install`` under umask
    077) was listed as fine, with no items."""
    import types

    if not isinstance(plugin, types.ModuleType) or getattr(plugin, "__file__", None) is not None or not hasattr(plugin, "__path__"):
        return None
    from zoo.artifacts import this_user

    unreadable = [folder for folder in plugin.__path__ if not os.access(folder, os.R_OK | os.X_OK)]
    if unreadable:
        return f"{value!r} imports as an empty package: its folder {unreadable[0]} cannot be read by {this_user()} (its permissions refuse it); reinstall it readable to all (umask 022)"
    return f"{value!r} imports as an empty package (a folder without __init__.py), which has no hooks; point the entry point at a module"


class LoadWatch:
    """Names, on stderr, a plugin whose import or hooks are still running at five times the
    slow limit (10 s by default), and again every 30 s: plugin code that hangs (a network
    call, a lock) is not a silent wait. It cannot be stopped from here; the line says how to
    skip it."""

    REPEAT = 30.0
    HANGING = 5  # times import_limit()

    def __init__(self, limit: float) -> None:
        import threading

        self.limit = limit
        self._current: Optional[tuple[PluginSource, str, float]] = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="zoo-plugin-import-watch", daemon=True)

    def __enter__(self) -> "LoadWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._done.set()

    @contextlib.contextmanager
    def running(self, source: PluginSource, doing: str):
        self._current = (source, doing, time.monotonic())
        try:
            yield
        finally:
            self._current = None

    def _watch(self) -> None:
        said: Optional[tuple[tuple, float]] = None  # what was last named, and when
        while not self._done.wait(0.2):
            current = self._current
            if current is None:
                continue
            source, doing, since = current
            now = time.monotonic()
            due = since + self.HANGING * self.limit if said is None or said[0] is not current else said[1] + self.REPEAT
            if now >= due:
                print(
                    f"zoo: still {doing} plugin {source.name!r} from distribution {source.distribution!r} after "
                    f"{now - since:.1f} s; ZOO_DISABLE_PLUGINS={source.distribution} skips it",
                    file=sys.__stderr__, flush=True,
                )
                said = (current, now)


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


# Frameworks whose import alone takes seconds: a plugin importing one at module level makes
# every `zoo list` wait for it (the zoo's own plugins import them inside their factories).
HEAVY_MODULES = frozenset({"tensorflow", "keras", "torch", "jax", "sklearn", "pandas", "matplotlib.pyplot"})


def loaded(modules: frozenset) -> set[str]:
    return {name for name in modules if name in sys.modules}


def import_limit() -> float:
    typed = os.environ.get("ZOO_PLUGIN_IMPORT_LIMIT", "2")
    try:
        limit = float(typed)
    except ValueError:
        limit = math.nan
    if not limit > 0:  # also NaN
        raise ZooError(f"ZOO_PLUGIN_IMPORT_LIMIT={typed}: give a number of seconds above 0 (2 when unset; inf: no limit)")
    return limit


def report_slow(source: PluginSource, heavy: list[str], strict: bool) -> None:
    cause = f" (it imports {', '.join(heavy)} at module level)" if heavy else ""
    message = (
        f"plugin {source.name!r} from distribution {source.distribution!r} took {source.import_seconds:.1f} s to "
        f"import{cause}; every zoo command waits for it: import heavy modules inside the factories "
        f"(limit {import_limit():g} s, ZOO_PLUGIN_IMPORT_LIMIT)"
    )
    _report(message, strict)


def report_shadowed(kind: str, name: str, others: list[PluginSource], strict: bool) -> None:
    owners = " and ".join(repr(s.distribution) for s in others)
    message = (
        f"{kind} {name!r} of {owners} is shadowed by the zoo's own {kind} of that name, which keeps it; "
        f"rename it in {owners}"
    )
    _report(message, strict)


class ExitCalled(SystemExit):
    """``os._exit()`` or ``os.abort()`` called by plugin code while it is loaded: raised in
    their place, so that the plugin is reported broken instead of ending the process
    without a word (no handler, no flushed output)."""

    def __init__(self, call: str) -> None:
        super().__init__(1)
        self.call = call


class StderrForPlugins:
    """Where plugin code's prints go while it is loaded: stderr, which it cannot close
    (``sys.stdout.close()`` in a plugin would otherwise close the zoo's stderr)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def close(self) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        return getattr(sys.stderr, name)


@contextlib.contextmanager
def plugin_code_contained():
    """While plugin code is loaded (imports, hooks): what it prints goes to stderr, since
    stdout carries the zoo's own output, which programs read (``zoo list --json``), at the
    descriptor too for prints from C code; and ``os._exit``/``os.abort`` raise
    :class:`ExitCalled`, handled like ``sys.exit()``."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
        os.dup2(2, 1)
    except OSError:  # no descriptor 1 or 2 (a detached process): Python's level only
        saved = None
    exits, zoo_process = (os._exit, os.abort), os.getpid()

    def exit_called(code: int = 0) -> None:
        if os.getpid() != zoo_process:  # a process the plugin forked ends as it asks, not as the zoo going on
            exits[0](code)
        raise ExitCalled(f"os._exit({code!r})")

    def abort_called() -> None:
        if os.getpid() != zoo_process:
            exits[1]()
        raise ExitCalled("os.abort()")

    os._exit, os.abort = exit_called, abort_called
    try:
        with contextlib.redirect_stdout(StderrForPlugins()):
            yield
    finally:
        os._exit, os.abort = exits
        sys.stderr.flush()
        if saved is not None:
            os.dup2(saved, 1)
            os.close(saved)


def report_broken(source: PluginSource, strict: bool) -> None:
    problem = "is not loaded" if source.incompatible else "is broken"
    message = f"plugin {source.name!r} from distribution {source.distribution!r} {problem}: {source.error}"
    _report(message, strict, " (it is skipped; set ZOO_STRICT_PLUGINS=1 to make this fatal)")


def _report(message: str, strict: bool, lenient_note: str = "") -> None:
    """A plugin problem: an error in strict mode, else a warning (one line either way)."""
    if strict:
        raise PluginError(message + " (strict plugin mode is on)")
    warnings.warn(message + lenient_note, PluginWarning, stacklevel=3)


def one_line(exc: BaseException) -> str:
    if isinstance(exc, ExitCalled):
        return f"it called {exc.call}"
    if isinstance(exc, SystemExit):
        return f"it called sys.exit({exc.code!r})"
    text = errors.one_line(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# -- the listing cache ------------------------------------------------------------------
#
# `zoo list` with a thousand plugin distributions spends most of its time importing them.
# What it shows is kept in a cache file, used only while it describes exactly what is
# installed: the key is every entry point of the group with its distribution's folder and
# that folder's modification stamp (installing, upgrading or removing a distribution changes
# it), and every source file imported while the listing was made is checked against its
# stamp (an edited plugin, also one installed in editable mode). Strict mode never uses it.

CACHE_VERSION = 1


def cache_file() -> Optional[Path]:
    """Where this Python environment's listing is cached; None when caching is off, or no
    folder of this user's can hold it (no home: a private one in the temporary folder)."""
    if os.environ.get("ZOO_PLUGIN_CACHE", "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    import hashlib

    from zoo.artifacts import private_temp_folder, user_folder

    cache = user_folder("XDG_CACHE_HOME", ".cache")
    given = os.environ.get("ZOO_CACHE_DIR", "")
    # A relative one is ignored, as XDG's are: it would make a folder in every working folder.
    root = given if os.path.isabs(given) else (cache / "keras-zoo" if cache else private_temp_folder("cache"))
    if root is None:
        return None
    environment = hashlib.sha256(f"{sys.prefix}\n{sys.version}".encode()).hexdigest()[:16]
    return Path(root) / f"plugins-{environment}.json"


def cached_listing(build: Callable[[], dict]) -> dict:
    """``build()``'s result, from the cache when it still describes what is installed."""
    from zoo import __version__

    path = cache_file()
    if path is None or env_flag("ZOO_STRICT_PLUGINS"):
        return build()
    key = [CACHE_VERSION, __version__, sys.version, sys.path, *_environment_flags(), *_installed_entry_points()]
    try:
        if not path.is_file():  # none yet; or a pipe in its place, which reading would wait on for ever
            raise FileNotFoundError(path)
        cached = json.loads(path.read_text(encoding="utf-8"))
        if cached["key"] == json.loads(json.dumps(key)) and all(_stamp(f) == stamp for f, stamp in cached["files"]):
            for message in cached["warnings"]:  # what a broken, slow or shadowed plugin said, said again
                warnings.warn(message, PluginWarning, stacklevel=2)
            return cached["listing"]
    except (OSError, ValueError, KeyError, TypeError):
        pass  # none yet, stale or damaged: made again
    before = set(sys.modules)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PluginWarning)
        listing = build()
    said = []
    for warning in caught:
        if issubclass(warning.category, PluginWarning):
            said.append(str(warning.message))
        warnings.warn(warning.message, warning.category, stacklevel=2)
    files = sorted(
        {m.__file__ for name, m in list(sys.modules.items()) if (name not in before or name.split(".")[0] == "zoo")
         and isinstance(getattr(m, "__file__", None), str)}
    )  # fmt: skip
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}")
        record = {"key": key, "files": [[f, _stamp(f)] for f in files], "warnings": said, "listing": listing}
        temporary.write_text(json.dumps(record))
        os.replace(temporary, path)
    except OSError:  # a read-only home: listing works, uncached
        pass
    return listing


def _environment_flags() -> list[str]:
    return [os.environ.get(name, "") for name in ("ZOO_DISABLE_PLUGIN_AUTOLOAD", "ZOO_DISABLE_PLUGINS", "ZOO_PLUGIN_IMPORT_LIMIT")]


def _installed_entry_points() -> list[list]:
    found = []
    for ep in zoo_entry_points()[0]:
        folder = getattr(ep.dist, "_path", None)  # the .dist-info (or .egg-info) folder
        found.append([ep.name, ep.value, str(folder), _stamp(str(folder)) if folder else None])
    return found


def _stamp(path: str) -> Optional[list[int]]:
    """When ``path`` last changed; for a file inside a zip archive on ``sys.path`` (a wheel or
    zip put there as it is), the archive's: its members have no stamp of their own."""
    for candidate in (path, *Path(path).parents):
        try:
            status = os.stat(candidate)
        except NotADirectoryError:  # a file in the way: an archive, read by zipimport
            continue
        except OSError:
            return None
        return [status.st_mtime_ns, status.st_size]
    return None
