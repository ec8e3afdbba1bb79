"""What ``zoo train`` accepts on its command line, checked before Hydra sees it.

Hydra reports most mistakes in many lines, and some of its features would let an argument
import a module, unpickle a file or write outside the run's folder. The zoo composes the
config itself first (no TensorFlow) and refuses such arguments in one line each.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import itertools
import math
import os
import re
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple, NoReturn, Optional

from zoo.config import PRIMARY_CONFIG, UserConfigs, leads_outside
from zoo.errors import ZooError, long_number, number_too_long, one_line
from zoo.tables import Progress, shorten


def parse_hydra_args(args: list[str]) -> argparse.Namespace:
    """The arguments as Hydra's own parser will read them, so that each flag is checked in
    every spelling it accepts (``--config-dir=D``, ``-cd D``, abbreviations such as
    ``--config-d D``); a mistake is one line here rather than Hydra's usage text. Read once
    for the several checks that ask (the result is not to be changed)."""
    return _parse_hydra_args(tuple(args))


@functools.lru_cache(maxsize=4)
def _parse_hydra_args(args: tuple[str, ...]) -> argparse.Namespace:
    from hydra._internal.utils import get_args_parser

    parser = get_args_parser()

    def refuse(message: str) -> NoReturn:
        if message.startswith("unrecognized arguments"):  # Hydra reads overrides after its flags only
            message += "; put Hydra's flags (-m, --cfg, --config-dir, ...) before the overrides"
        raise ZooError(f"{message} (see 'zoo train --help')")

    parser.error = refuse  # type: ignore[method-assign]
    return parser.parse_args(list(args))


def is_multirun(args: list[str]) -> bool:
    """Whether Hydra will run a sweep: ``-m``, or ``hydra.mode`` as Hydra reads it from the
    composed config (``hydra.mode=2``, ``hydra={mode: MULTIRUN}``, a config of the user's)."""
    return parse_hydra_args(args).multirun or configured_output(args).multirun


# Override roots that are the zoo's run config: they cannot change Hydra's settings, so a
# command of only these needs no composition of them (the default job starts sooner).
RUN_CONFIG_ROOTS = ("model", "dataset", "trainer", "device", "metrics", "callbacks", "loggers", "seed", "objective", "cv")


class ConfiguredOutput(NamedTuple):
    """Hydra's mode and output folders as a config (not the command line) sets them."""

    multirun: bool = False
    run_dir: Optional[str] = None
    sweep_dir: Optional[str] = None


def configured_output(args: list[str]) -> ConfiguredOutput:
    """Hydra's mode and folders from the config the arguments compose, when anything but the
    zoo's run keys could set them (an override of ``hydra``, an experiment such as
    ``cats_mlp_sgd`` with its own ``hydra.run.dir``, configs of the user's); the zoo's
    defaults (one run, a new timestamped folder) otherwise, or when the composition fails
    (the run's own composition reports it)."""
    return _configured_output(tuple(args))


@functools.lru_cache(maxsize=4)
def _configured_output(args: tuple[str, ...]) -> ConfiguredOutput:
    from omegaconf import OmegaConf

    given = parse_hydra_args(list(args))
    parsed = parsed_overrides(list(args))
    roots = {o.key_or_group.split(".", 1)[0].split("/", 1)[0] for o in parsed}
    if not (given.config_dir or given.config_path or given.config_name or roots - set(RUN_CONFIG_ROOTS)):
        return ConfiguredOutput()
    from hydra.types import RunMode

    from zoo.config import compose

    try:
        cfg = compose([o.input_line for o in parsed if not o.is_sweep_override()], user_configs(list(args)), with_hydra=True)
    except Exception:  # Hydra's and OmegaConf's errors: reported by check_overrides
        return ConfiguredOutput()

    def folder(key: str) -> Optional[str]:
        try:
            return str(OmegaConf.select(cfg, key, throw_on_resolution_failure=True))
        except Exception:  # a resolver only a running job can answer: checked in the job
            return None

    return ConfiguredOutput(cfg.hydra.mode == RunMode.MULTIRUN, folder("hydra.run.dir"), folder("hydra.sweep.dir"))


def overrides_only(args: list[str]) -> list[str]:
    """The override arguments, without Hydra's flags (and their values)."""
    return list(parse_hydra_args(args).overrides or [])


def parsed_overrides(args: list[str]) -> list:
    """The overrides as Hydra's grammar reads them; a syntax error is one line."""
    return parsed_lines(overrides_only(args), user_configs(args))


def parsed_lines(lines: list[str], configs: UserConfigs) -> list:
    """Override lines as Hydra's grammar reads them. A sweep over ``glob(...)`` lists the
    group's options as Hydra's sweeper will, from the same configs."""
    from hydra.core.override_parser.types import ValueType

    parsed = _parsed_overrides(tuple(lines))
    globs = [override for override in parsed if override.value_type == ValueType.GLOB_CHOICE_SWEEP]
    if globs and any(override.config_loader is None for override in globs):
        from zoo.config import config_loader

        loader = config_loader(configs)
        for override in globs:
            override.config_loader = loader
    return parsed


def invisible_characters(text: str) -> str:
    """The characters of ``text`` that look like a space but are not one, or like nothing
    (a no-break space, a zero-width space, a byte order mark), in order."""
    import unicodedata

    return "".join(ch for ch in text if not ch.isascii() and unicodedata.category(ch) in ("Zs", "Cf"))


# Signs that typeset text puts where a number has ASCII's (a minus sign, dashes, hyphens).
TYPESET_SIGNS = str.maketrans({"\u2212": "-", "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-"})


@functools.lru_cache(maxsize=4)
def _parsed_overrides(overrides: tuple[str, ...]) -> list:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    parsed = []
    for override in overrides:
        try:
            parsed.append(parser.parse_override(override))
        except HydraException as exc:  # the grammar's reason alone does not say which argument
            reason = one_line(exc)
            key, _, value = override.partition("=")
            if "while evaluating" in reason:  # a function's own complaint (choice(), os(1)): it says what is wrong
                raise ZooError(f"{shorten(override)}: Hydra cannot read it ({reason})") from None
            if "=" not in override and not override.startswith("~"):  # `zoo train help`, `zoo train cnn_classifier`
                from zoo.artifacts import CONFIG

                if Path(override, CONFIG).is_file():  # `zoo train runs/x`, to go on with it
                    raise ZooError(
                        f"{shorten(override)} is a run's directory, not a setting: to continue it, name it as "
                        f"hydra.run.dir={hydra_quoted(override)} with the settings it was started with; to train on from "
                        f"its weights in a new run, trainer.init_from={hydra_quoted(override)}"
                    ) from None
                raise ZooError(f"{shorten(override)}: a setting is KEY=VALUE (model=cnn_classifier, trainer.epochs=5); "
                               "'zoo train --help' lists them") from None  # fmt: skip
            import unicodedata

            unseen = invisible_characters(override)
            if unseen:  # copied from a web page or a chat: it looks like a space, or like nothing
                shown = "".join(f"\\u{ord(ch):04x}" if ch in unseen else ch for ch in override)
                name = unicodedata.name(unseen[0], "an invisible character").lower()
                raise ZooError(
                    f"{shorten(shown)}: it holds a {name} (U+{ord(unseen[0]):04X}), which text copied from a web page or a "
                    "chat carries, looking like a space or like nothing; type the argument again"
                ) from None
            typed = unicodedata.normalize("NFKC", value).translate(TYPESET_SIGNS)
            if not value.isascii() and re.fullmatch(r"[-+]?(\d[\d_]*)?\.?\d*([eE][-+]?\d+)?", typed) and any(c.isdigit() for c in typed):
                # A number as typeset text writes it (1e−3 with a minus sign, –0.1 with an en dash, from a
                # paper or a chat's autocorrect) or an East Asian input method types it (full-width １e-3)
                odd = next(ch for ch in value if not ch.isascii())
                name = unicodedata.name(odd, "a character").lower()
                hint = f"it holds U+{ord(odd):04X} ({name}) where a number has {unicodedata.normalize('NFKC', odd).translate(TYPESET_SIGNS)!r}; type {key}={typed}"
            elif not value.isascii():  # é, 猫 in a path or a name: the grammar's unquoted values are ASCII
                hint = f"Hydra reads letters beyond ASCII only in a quoted value: {shell_quoted(f'{key}={hydra_quoted(value)}')}"
            elif "/" in value:  # a path: the spelling that reads it back, ready for the shell (it's, a,b, [1])
                hint = f"a path holding brackets, commas, quotes or spaces is quoted: {shell_quoted(f'{key}={hydra_quoted(value)}')}"
            else:
                hint = "a list is [a,b], and a value holding other brackets, commas or spaces is quoted: key='...'"
            raise ZooError(f"{shorten(override)}: Hydra cannot read it ({reason}); {hint}") from None
        except RecursionError:  # the grammar's parser recurses once per bracket
            raise ZooError(f"{shorten(override)}: nested too deeply; give a flatter value") from None
        except ValueError:  # an integer of over 4300 digits (Python's advice is for its own programs)
            digits = max(len(run) for run in re.findall(r"\d+", override))
            raise ZooError(f"{shorten(override)}: a number of {digits} digits is beyond any setting; give a smaller one") from None
    return parsed


def user_configs(args: list[str]) -> UserConfigs:
    """The configs the arguments name (``--config-dir``, ``--config-name``): what the checks
    before Hydra starts compose, as Hydra will (the zoo's `train` had been composed in their
    place, so a folder your own primary config sets went unchecked)."""
    given = parse_hydra_args(args)
    folder = given.config_dir or given.config_path
    return UserConfigs(Path(folder).expanduser() if folder else None, given.config_name or PRIMARY_CONFIG)


def check_config_flags(args: list[str]) -> None:
    """Hydra reports a missing ``--config-dir`` or ``--config-name`` in several lines and
    exit status 1; here they are one line, before it starts. A ``pkg://`` config path would
    make Hydra import that package."""
    from importlib.resources import files

    from zoo.config import CONFIG_MODULE

    given = parse_hydra_args(args)
    for flag, value in (("--config-path", given.config_path), ("--config-dir", given.config_dir)):
        if value and str(value).startswith("pkg://"):
            raise ZooError(f"{flag} {value}: a pkg:// path makes Hydra import that package; give a folder of your own")
    folders = [files(CONFIG_MODULE)]
    if given.config_dir:
        folder = Path(given.config_dir).expanduser()
        if not folder.is_dir():
            raise ZooError(f"--config-dir {given.config_dir} is not a folder; give the folder that holds your own configs")
        folders.append(folder)
        check_config_files(folder)
    if given.config_name and leads_outside(given.config_name):
        raise ZooError(
            f"--config-name {given.config_name}: a config name, not a path; put your own config in a --config-dir "
            "(--config-dir FOLDER --config-name NAME)"
        )
    if given.config_name and not given.config_path:
        name = given.config_name if given.config_name.endswith((".yaml", ".yml")) else f"{given.config_name}.yaml"
        if not any(folder.joinpath(name).is_file() for folder in folders):
            raise ZooError(f"--config-name {given.config_name}: no {name} in the zoo's configs or a --config-dir; the zoo's own is 'train'")


# The most values a config file of the user's may spell out, aliases counted as the copies
# OmegaConf makes of them: ten levels of ten aliases make a small file 10^10 values (a hang).
CONFIG_VALUES_MAX = 100_000
CONFIG_FILES_CHECKED = 1_000  # a --config-dir given a home folder by mistake is not read through


def check_config_files(folder: Path) -> None:
    """The YAML files of the user's config folder, before Hydra reads any: one that is not
    UTF-8 (Hydra's "UnicodeDecodeError" named no file) or whose aliases expand beyond
    CONFIG_VALUES_MAX values is refused in one line. Syntax errors are Hydra's to name (with
    the file and line), for the files it reads."""
    import stat

    import yaml

    for path in itertools.islice(_yaml_files(folder), CONFIG_FILES_CHECKED):
        try:
            if not stat.S_ISREG(os.stat(path).st_mode) or os.stat(path).st_size > 2**24:
                continue  # a pipe (Hydra reads only the files it composes), or no config
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ZooError(f"{path} is not UTF-8 text (byte {exc.start}); save it as UTF-8, or remove it from --config-dir") from None
        except OSError:
            continue
        if re.match(r"\ufeff\s*#\s*@package", text):  # Hydra reads its header after the mark as none
            raise ZooError(
                f"{path} starts with a byte order mark (EF BB BF), which hides its '# @package' line from Hydra (its keys "
                "would land elsewhere); save it as UTF-8 without BOM"
            )
        refuse_unreadable_number(path, text)
        if "&" not in text or "*" not in text:
            continue  # no anchor or no alias: nothing is copied out (a long list of values is not composed)
        try:
            node = yaml.compose(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        except yaml.YAMLError:
            continue
        sizes: dict = {}
        try:
            values = _expanded_size(node, sizes)
        except RecursionError:
            raise ZooError(f"{path} is nested too deeply to be a config") from None
        copied = values - len(sizes)  # the values written out in the file are not counted
        if copied > CONFIG_VALUES_MAX:
            raise ZooError(
                f"{path}: its aliases (*name) spell out {copied:,} copies of values, more than a config holds "
                f"({CONFIG_VALUES_MAX:,}); write the values out, or fewer aliases of aliases"
            )


def refuse_unreadable_number(path: Path, text: str) -> None:
    """A number of more digits than Python reads (4,300 unless set otherwise) in a YAML file
    of the user's: Hydra's reading had failed on "yaml failed: ValueError: Exceeds the limit
    ... use sys.set_int_max_str_digits()", naming neither the file nor a fix the user has."""
    import yaml

    number = long_number(text)
    if number is None:
        return
    try:
        yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError:
        return  # Hydra names the file and line of a mistake in the YAML itself
    except ValueError as exc:
        if type(exc) is ValueError:  # the number's own conversion (a UnicodeDecodeError is one too)
            start, digits = number
            raise ZooError(f"{path} line {text.count(chr(10), 0, start) + 1}: {number_too_long(digits)}") from None


def _yaml_files(folder: Path) -> Iterator[Path]:
    """The YAML files under ``folder``, in order, hidden folders left out (links to folders
    not followed)."""
    from zoo.artifacts import walk

    for root, folders, names in itertools.islice(walk(folder), CONFIG_FILES_CHECKED * 10):
        folders[:] = sorted(name for name in folders if not name.startswith("."))
        yield from (Path(root) / name for name in sorted(names) if name.endswith((".yaml", ".yml")))


def _expanded_size(node: Any, sizes: dict) -> int:
    """How many values a YAML node graph holds once every alias is copied out, as OmegaConf
    copies it; each shared node is counted once per use, computed once."""
    import yaml

    if node is None or id(node) in sizes:
        return sizes.get(id(node), 1)
    sizes[id(node)] = 1  # a recursive alias counts once
    if isinstance(node, yaml.SequenceNode):
        sizes[id(node)] = 1 + sum(_expanded_size(item, sizes) for item in node.value)
    elif isinstance(node, yaml.MappingNode):
        sizes[id(node)] = 1 + sum(_expanded_size(key, sizes) + _expanded_size(value, sizes) for key, value in node.value)
    return sizes[id(node)]


# Hydra's own folders, which Hydra takes as typed: a ~ there made a folder named "~" in the
# working folder (and a --config-dir Hydra could not find), where the zoo's checks had looked
# in the home folder.
HOME_EXPANDED = ("hydra.run.dir", "hydra.sweep.dir", "--config-dir", "-cd", "--config-path", "-cp")


def quote_home_paths(args: list[str]) -> list[str]:
    """``key=~/pets`` as ``key='~/pets'``: Hydra's grammar takes ``~`` only before a key (to
    delete it), and the shell leaves a ``~`` after ``=`` (or in quotes) alone. The zoo
    expands it in path settings; in Hydra's own folders (``HOME_EXPANDED``), here."""
    from zoo.artifacts import user_path

    quoted = []
    for previous, arg in zip(["", *args], args):
        key, sep, value = arg.partition("=")
        if previous in HOME_EXPANDED and previous.startswith("-") and arg.startswith("~"):  # --config-dir '~/conf'
            arg = str(user_path(arg, previous))
        elif sep and key.lstrip("+") in HOME_EXPANDED and value.startswith("~"):
            expanded = str(user_path(value, key.lstrip("+")))
            arg = f"{key}={expanded if key.startswith('-') else hydra_quoted(expanded)}"
        elif sep and not arg.startswith("-") and value.startswith("~") and not set(value) & set("'\",[]{}$"):
            arg = f"{key}='{value}'"
        quoted.append(arg)
    return quoted



def hydra_quoted(value: str) -> str:
    """A path as an override's value that Hydra reads back as this very text: quoted when it
    holds what the grammar or OmegaConf would read otherwise (``a,b`` a list, ``it's`` an
    error, ``${x}`` an interpolation, a space at an end trimmed), as the zoo prints commands."""
    if re.fullmatch(r"/[\w/.+@:%-]*", value, re.ASCII):
        return value
    # Inside quotes a backslash is kept as it is, save before a quote, an interpolation or the end.
    escaped = re.sub(r"(\\+)(?='|\$\{|$)", lambda m: m.group(1) * 2, value)
    return "'" + escaped.replace("'", "\\'").replace("${", "\\${") + "'"


def shell_quoted(arg: str) -> str:
    """``arg`` for a POSIX shell, in double quotes where it holds single ones (a value
    quoted for Hydra reads better so than in shlex's ``'"'"'``)."""
    import shlex

    if "'" in arg and not set(arg) & set('"$`!'):  # inside double quotes a backslash escapes only \\ " $ `
        return '"' + arg.replace("\\", "\\\\") + '"'
    return shlex.quote(arg)


# Config keys through which Hydra or logging would import a module named on the command line.
IMPORTING_KEYS = ("_target_", "class", "()")
# In values: logging's references to importable objects, and resolvers that turn a string
# into config nodes (which could hold the keys above, out of sight of the check).
IMPORTING_VALUES = ("ext://", "cfg://", "oc.create", "oc.decode")
# The only Hydra settings that take an interpolation on the command line: the folders, which
# are resolved and checked before Hydra starts. Anywhere else under ``hydra.`` an
# interpolation is resolved after these checks, and could bring in a node from elsewhere
# (``hydra.launcher.ray.init=${hydra.x}``) or build one (``${oc.${name}:...}`` spells a
# resolver's name out of sight): a launcher's setup hook, a logging stream, a library to preload.
INTERPOLATED_HYDRA_KEYS = ("hydra.run.dir", "hydra.sweep.dir", "hydra.sweep.subdir")
# Launcher options that run code: submitit's shell lines before each job and the options it
# hands sbatch and srun as they are (srun's --prolog runs a program, --export sets
# LD_PRELOAD), Ray's runtime environment (packages to install, a setup hook to import).
LAUNCHER_CODE_KEYS = ("setup", "srun_args", "additional_parameters", "runtime_env", "worker_process_setup_hook")


def refuse_code_from_the_command_line(args: list[str]) -> None:
    """Plugins are chosen by registered name; no argument may name a module to import:
    ``_target_`` anywhere, Hydra callbacks, logging handler/formatter classes, a package on
    the search path, a launcher's setup code, an environment variable for the job, or a
    pickled config to re-run (unpickling runs code)."""
    if parse_hydra_args(args).experimental_rerun is not None:  # also --experimental-rerun=F, --exp F
        raise ZooError("--experimental-rerun loads a pickle, which can run code; rerun with the run's overrides instead")
    for override in overrides_only(args):  # as typed: also what the parser would reject
        importing_value = next((marker for marker in IMPORTING_VALUES if marker in override.partition("=")[2]), None)
        if importing_value:
            raise ZooError(
                f"{override}: zoo train takes no module to import from the command line ({importing_value} "
                "makes logging import one, or builds config nodes the zoo cannot check); put it in a config file of your own"
            )
    groups = functools.cache(lambda: top_level_groups(user_configs(args)))
    for override in parsed_overrides(args):
        key = override.key_or_group
        if override.package is not None and (key.startswith("hydra/") or override.package.split(".")[0] in ("hydra", "_global_")):
            # +hydra/launcher@hydra.callbacks.x=joblib had Hydra instantiate a launcher as a callback
            raise ZooError(
                f"{override.input_line}: on the command line, Hydra's configs keep their place and no config moves into "
                "Hydra's settings (@...: there it could become a callback or a logging handler Hydra instantiates); "
                "put it in a config file of your own"
            )
        values = given_values(override)
        problem = (
            _sweep_inside_a_value(key, values) or _runs_code(key, values) or _written_outside_the_run(key, values)
            or _path_as_choice(key, values, groups)
            or _moves_the_job(key, values) or _search_space_path(key, values) or _copies_an_unset_variable(key, values)
        )  # fmt: skip
        if problem:
            raise ZooError(f"{shorten(override.input_line)}: {problem}")


def _sweep_inside_a_value(key: str, values: list) -> Optional[str]:
    """A sweep written inside a list, a dict or another sweep's values (``[choice(1,2)]``,
    ``choice(choice(1,2),3)``), or None: Hydra's grammar reads it, then neither its sweeper
    nor OmegaConf knows what to do with it ("Unexpected type annotation: Set[str]")."""
    from hydra.core.override_parser.types import Glob, Sweep

    if any(isinstance(leaf, (Sweep, Glob)) for value in values for _, leaf in _paths(key, value)):
        return "a sweep is the whole value (key=choice(a,b), key=range(1,4)), not inside a list, a dict or another sweep"
    return None


def _copies_an_unset_variable(key: str, values: list) -> Optional[str]:
    """``hydra.job.env_copy=[NAME]`` where NAME is not set: Hydra reads each from this
    process's environment, and had failed on "os failed: KeyError: 'NAME'"."""
    for path, leaf in (pair for value in values for pair in _paths(key, value)):
        if path.split(".")[:3] == ["hydra", "job", "env_copy"] and isinstance(leaf, str) and leaf not in os.environ:
            return f"names {shorten(leaf, 40)}, which is not set in this environment; set it (export {shorten(leaf, 40)}=...) or leave it out"
    return None


def _runs_code(key: str, values: list) -> Optional[str]:
    """How an override would make Hydra, logging, a launcher or a job's programs run code
    named on the command line, or None. Checked on every key path a value spells out, so
    ``hydra.job={env_set: {...}}`` is seen as ``hydra.job.env_set....``."""
    for path, leaf in (pair for value in values for pair in _paths(key, value)):
        parts = path.split(".")
        if path.startswith("hydra.callbacks") or set(parts) & set(IMPORTING_KEYS):
            return (
                "zoo train takes no module to import from the command line (plugins are chosen by name); "
                "put Hydra callbacks or logging classes in a config file of your own"
            )
        if path.startswith("hydra.") and any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in str(leaf)):
            # submitit writes SLURM options (the job's name, the sweep's folder, a comment) into the batch
            # script as "#SBATCH --comment='...'": a newline ends the comment and starts a command
            return (
                "Hydra's settings take no control characters on the command line (a newline in a SLURM option "
                "would start a command in the job's batch script); give the value on one line"
            )
        if path.startswith("hydra.") and path not in INTERPOLATED_HYDRA_KEYS and "${" in str(leaf):
            return (
                "Hydra's settings take literal values on the command line, not interpolations "
                "(hydra.run.dir, hydra.sweep.dir and hydra.sweep.subdir excepted); put it in a config file of your own"
            )
        if path.startswith("hydra.searchpath") and str(leaf).startswith("pkg://"):
            return "a pkg:// search path makes Hydra import that package; give a folder of your own (file://PATH)"
        if path.startswith("hydra.launcher") and set(parts) & set(LAUNCHER_CODE_KEYS):
            return (
                "setup lines, options handed to sbatch or srun as they are, and runtime environments can run code; put "
                "them in a launcher config file of your own (hydra/launcher/NAME.yaml in your --config-dir)"
            )
        if path == "hydra.launcher.ray.init.address" and not _this_machine(leaf):
            return (
                "a Ray cluster runs the jobs' code and sends back pickles, which Ray unpickles here; name a cluster of "
                "your own in your shell (RAY_ADDRESS=HEAD:6379 zoo train ...) or in a launcher config of your own "
                "(on the command line: auto, local, or this machine's 127.0.0.1:PORT)"
            )
        if path.startswith("hydra.job.env_set."):
            # No list of harmless variables holds: TF_PLUGGABLE_DEVICE_LIBRARY_PATH loads a library
            # into TensorFlow, GIT_CONFIG_* or HOME give the git the run asks for its commit a
            # command to run, LD_*/PYTHON* load code into any program a job starts.
            return (
                "zoo train sets no environment variable from the command line (TensorFlow, git and Python read some "
                f"as code to load); set it in your shell ({parts[3]}=... zoo train ...) or in a config file of your own"
            )
    return None


def _search_space_path(key: str, values: list) -> Optional[str]:
    """``hydra.sweeper.params.model.dropout=...``: the space's keys are whole dotted names,
    which a key path splits (it failed as "unknown config key", or "no viable alternative at
    input"; ``hydra.sweeper.params={...}`` as OmegaConf's AttributeError). Both sweepers
    take a swept override in their place."""
    paths = [path for value in values for path, _ in _paths(key, value) if f"{path}.".startswith("hydra.sweeper.params.")]
    if f"{key}.".startswith("hydra.sweeper.params."):  # also a sweep, unquoted: Hydra's "Sweeping over Hydra's configuration"
        paths = paths or [key]
    if not paths:
        return None
    setting = paths[0].removeprefix("hydra.sweeper.params").removeprefix(".") or "model.dropout"
    return (
        f"a search's space is keyed by whole names ('{setting}'), which a key path cannot spell; give the range as a "
        f"swept override instead, e.g. -m '{setting}=interval(0.1,0.5)' or '{setting}=choice(8,16)' (it replaces the config's)"
    )


def _moves_the_job(key: str, values: list) -> Optional[str]:
    """``hydra.job.chdir=true`` would have the job read the paths typed beside it
    (``dataset.path=pets``) from inside the new run's folder, where they are not."""
    if any(path == "hydra.job.chdir" and leaf not in (False, "false", "False", None) for value in values for path, leaf in _paths(key, value)):
        return (
            "zoo train keeps the working directory, so that the paths you give are read from where you type them "
            "(the run's files go to its folder either way); leave hydra.job.chdir unset"
        )
    return None


def _this_machine(address: Any) -> bool:
    """Whether a Ray address names this machine's runtime: none (a local one), ``auto`` or
    ``local``, or a loopback host."""
    if address is None or str(address).strip() in ("", "auto", "local"):
        return True
    import ipaddress

    where = str(address).strip().removeprefix("ray://")
    host = (where.rpartition(":")[0] if where.count(":") == 1 or where.startswith("[") else where).strip("[]")
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: another machine, or one that could be
        return False


def top_level_groups(configs: UserConfigs) -> set[str]:
    """The config groups at the top of the search path (model, experiment, a group of the
    user's --config-dir...), as Hydra lists them."""
    from zoo.config import config_loader

    return set(config_loader(configs).list_groups(""))


def _path_as_choice(key: str, values: list, groups: Callable[[], set[str]]) -> Optional[str]:
    """A config group's choice is a name in that group, typed as it is: ``+experiment=../../x``,
    ``/x`` or an interpolation leading there (``${oc.env:X}``) would have Hydra read any YAML
    file, which may name classes for it to import. A value of a key that is no group
    (``seed=${oc.env:SLURM_ARRAY_TASK_ID}``) is Hydra's to resolve."""
    for path, leaf in (pair for value in values for pair in _paths(key, value)):
        if "." in path:  # a config key, not a group (groups are spelt with '/': hydra/launcher)
            continue
        if not (isinstance(leaf, str) and (leads_outside(leaf) or "${" in leaf)):
            continue
        if "/" in path or path in groups():
            return (
                "a config choice is a name in its group, not a path or an interpolation ('zoo train --help' lists "
                "them); put config files of your own in a --config-dir"
            )
    return None


def _paths(key: str, value: Any) -> list[tuple[str, Any]]:
    """``(key path, leaf)`` for every leaf of ``value`` set at ``key`` (list items keep the
    list's path)."""
    if isinstance(value, dict) and value:
        return [pair for k, v in value.items() for pair in _paths(f"{key}.{k}", v)]
    if isinstance(value, list) and value:
        return [pair for v in value for pair in _paths(key, v)]
    return [(key, value)]


# Keys whose values name where Hydra writes, relative to the run's (or sweep's) folder.
INSIDE_THE_RUN = ("hydra.output_subdir", "hydra.sweep.subdir", "hydra.job.name")
# Folders where launchers write their own files (submitit's pickles and logs, joblib's and
# Ray's temporary files), in the sweep's folder or the system's temporary one by default.
LAUNCHER_FOLDERS = ("hydra.launcher.submitit_folder", "hydra.launcher.temp_folder", "hydra.launcher.ray.init._temp_dir")


def _written_outside_the_run(key: str, values: list) -> Optional[str]:
    """What is wrong with a setting that would make Hydra write outside the run's folder (its
    records over a config.yaml of yours, its log onto a file of yours), or None. Checked on
    every key path a value spells out (``hydra={output_subdir: ...}``)."""
    for path, value in (pair for value in values for pair in _paths(key, value)):
        if path.startswith(("hydra.job_logging.", "hydra.hydra_logging.")) and path.endswith((".filename", ".mode")):
            return "the log is RUN_DIR/train.log; to log elsewhere, use a config file of your own"
        if path in LAUNCHER_FOLDERS:
            return (
                "a launcher's own files go where its config puts them (the sweep's folder); to put them elsewhere, "
                "use a launcher config file of your own (hydra/launcher/NAME.yaml in your --config-dir)"
            )
        if path in INSIDE_THE_RUN and value is not None:
            parts = Path(str(value)).parts
            if (
                leads_outside(str(value))
                or (path == "hydra.job.name" and len(parts) != 1)
                or (path != "hydra.job.name" and not parts)  # ".": Hydra's records over the run's own
            ):
                return "it must stay inside the run's folder: give a relative name of a sub-folder, without '..'"
    return None


# The deepest folder on the way to the run's directory that was there before this command
# (None: the run's directory itself was): a run that fails before writing anything removes
# the folders Hydra made for it below that one, never one it found.
FOUND_BEFORE: list[Optional[Path]] = [None]


def check_output_dir(path: str, key: str, named: bool = True) -> Path:
    """One line where the run's (or sweep's) directory cannot be made; Hydra would print a
    traceback. Probed with a temporary folder, removed at once: nothing is left behind.
    Returns the deepest folder of the way there that exists. ``named``: ``path`` is the
    folder itself, not the one the default folders go under."""
    import tempfile

    from zoo.artifacts import deepest_existing, out_of_room

    try:
        ancestor = deepest_existing(Path(path.split("${", 1)[0] or ".").expanduser(), f"{key}={shorten(path)}", key)
    except OSError as exc:  # a name too long for the file system, a loop of links
        raise ZooError(f"{key}={shorten(path)}: {exc.strerror}; choose another {key}") from None
    if not ancestor.is_dir():
        raise ZooError(f"{key}={path}: {ancestor} is a file, not a folder; choose another {key}")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".zoo-probe-", dir=ancestor))
    except OSError as exc:
        if ancestor == Path(os.path.abspath(os.path.expanduser(path))) and named:  # the folder is there: another user's run, say
            raise ZooError(f"{key}={path}: {ancestor} cannot be written ({out_of_room(exc.strerror, ancestor)}); choose a {key} you can write") from None
        raise ZooError(f"{key}={path}: no folder can be made in {ancestor} ({out_of_room(exc.strerror, ancestor)}); choose a writable {key}") from None
    return ancestor


def refuse_foreign_output_dir(path: Path, key: str) -> None:
    """Before Hydra writes its records (``.hydra/``, ``train.log``) into the folder: a run's
    must be new, empty or a zoo run's; a sweep's new, empty or a sweep's (Hydra's
    ``multirun.yaml``, or a search's study that has not launched a trial yet)."""
    from zoo.artifacts import refuse_links_and_pipes
    from zoo.run import refuse_folder_inside_a_run, refuse_foreign_folder

    if key == "hydra.run.dir":
        refuse_foreign_folder(path, key)
        return
    refuse_folder_inside_a_run(path, key)
    if path.is_dir() and any(path.iterdir()):
        refuse_links_and_pipes(path, key)  # Hydra's multirun.yaml, a job's records: written where a link would lead
        if not is_zoo_sweep(path):
            raise ZooError(f"{path} already holds files that are not a zoo sweep's; choose another {key} (a new or empty folder)")


def is_zoo_sweep(path: Path) -> bool:
    """Whether a folder is a zoo sweep's: Hydra's ``multirun.yaml`` of a zoo run's config (not
    another Hydra app's, whose records Hydra would write over), or a search's Optuna study."""
    from zoo import artifacts
    from zoo.run import is_run_config
    from zoo.search import OPTUNA_TABLES

    records = path / "multirun.yaml"
    if records.is_file() and not records.is_symlink():
        try:
            recorded = artifacts.read_yaml(records)
        except ZooError:  # damaged: not the zoo's to write over
            return False
        return is_run_config(recorded)
    study = path / "optuna.db"
    return study.is_file() and not study.is_symlink() and OPTUNA_TABLES <= artifacts.sqlite_tables(study)


def check_overrides(args: list[str]) -> None:
    """Compose the config for each job the arguments describe and validate it (no TF)."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from zoo.artifacts import refuse_if_in_use, unshare
    from zoo.config import check_run_references, compose, compose_job, describe_composition_error, flat_keys, plan_run
    from zoo.run import OPENED_FIRST, claim_run_dir, recorded_config

    overrides = overrides_only(args)
    parsed = parsed_overrides(args)
    multirun = is_multirun(args)
    from hydra.core.override_parser.types import ValueType

    swept = next((o for o in parsed if o.value_type == ValueType.SIMPLE_CHOICE_SWEEP), None)
    if swept is not None and not multirun:
        # Before the jobs are checked: `trainer.learning_rate=0,001` had been "must be positive, got 0.0"
        from zoo.config import sweep_without_multirun

        raise ZooError(sweep_without_multirun(*swept.input_line.split("=", 1)))
    # Where each setting is spelled out: hydra.run.dir=D, but also hydra.run={dir: D}.
    given = {path: leaf for o in parsed if not o.is_sweep_override() for path, leaf in _paths(o.key_or_group, o.value())}
    configs = user_configs(args)
    run_dir = sweep_dir = None  # a single run's folder, or a sweep's, named
    configured = configured_output(args)
    # The folder this command writes: a sweep's alone for -m (the run folder's parent had been
    # checked too, and a sweep into a folder of one's own refused for a runs/ of another user's).
    for key in ("hydra.sweep.dir",) if multirun else ("hydra.run.dir",):
        path = str(given[key]) if given.get(key) is not None else None
        if path is None or "${" in path:
            # Where the composed config leads: a folder a config sets (an experiment's own), an
            # interpolation (${now:...} differs by a moment: a new folder either way), the zoo's default.
            composed = configured.run_dir if key == "hydra.run.dir" else configured.sweep_dir
            if composed is None and path is not None:  # it cannot be resolved before the run: that says why
                composed = resolved_output_dir(key, path, [o.input_line for o in parsed if not o.is_sweep_override()], configs)
            path = composed
        if path is not None and "${" in path:  # an escaped \${ leaves one: Hydra resolves the log's name within the folder's
            raise ZooError(f"{key}={shorten(path)}: Hydra would read the '${{' in this folder's name as an interpolation; choose a name without it")
        found = check_output_dir(path or "runs", key, named=path is not None)
        if key == "hydra.run.dir":
            FOUND_BEFORE[0] = None if path is not None and Path(path).expanduser().exists() else found
        if path is not None:
            refuse_foreign_output_dir(Path(path).expanduser(), key)
            run_dir, sweep_dir = (None, Path(path).expanduser()) if multirun else (Path(path).expanduser(), None)
    if sweep_dir is not None and sweep_dir.is_dir():  # what Hydra and Optuna rewrite in place, the jobs' records too
        unshare([sweep_dir / "multirun.yaml", sweep_dir / "optuna.db"])
        unshare(job / name for job in sweep_dir.iterdir() if job.is_dir() and not job.is_symlink() for name in OPENED_FIRST)
    sweep_settings = None  # Hydra's settings of the sweep: its launcher, its jobs' folders
    if multirun:
        try:
            sweep_settings = compose([o.input_line for o in parsed if not o.is_sweep_override()], configs, with_hydra=True).hydra
        except (HydraException, OmegaConfBaseException):
            pass  # the jobs' composition below names the mistake
        check_launcher(sweep_settings.launcher if sweep_settings is not None else None)
        check_sweeper(sweep_settings.sweeper if sweep_settings is not None else None, parsed)
        params = grid_sweep_params(sweep_settings)
        if params:  # a config's own sweep: Hydra's grid sweeper puts it before the command line's
            overrides, parsed = params + overrides, parsed_lines(params, configs) + parsed
    jobs, folders = [overrides], None
    if any(o.is_sweep_override() for o in parsed):
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

        sizes = {o.input_line: sweep_size(o) for o in parsed if o.is_discrete_sweep()}
        refuse_empty_sweeps([o for o in parsed if o.is_discrete_sweep() and not sizes[o.input_line]])
        if math.prod(sizes.values()) > MAX_SWEEP_JOBS:  # Hydra's grid sweeper would list every job first
            if not grid_sweep(parsed, configs):
                return  # a search samples its ranges; the sweeper checks them
            swept = ", ".join(
                f"{shorten(line, 40)}: {'over ' if n > MAX_SWEEP_JOBS else ''}{min(n, MAX_SWEEP_JOBS):,}" for line, n in sizes.items()
            )
            raise ZooError(
                f"the sweep would run more than {MAX_SWEEP_JOBS:,} jobs ({swept}); sweep fewer values, or search the "
                "space with Optuna (hparams_search=...)"
            )
        try:
            jobs = [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]
        except Exception:  # a search's ranges (interval): its trials draw between their ends, checked here
            jobs = space_ends(parsed)
        if sweep_settings is not None:
            folders = job_folders(jobs, sweep_settings, configs)
            check_job_folders(folders)
    if sweep_dir is not None and sweep_dir.is_dir() and not grid_sweep(parsed, configs):
        sweep_dir = None  # a search's trials get their configs, and folders, from the study
    checked = covering(jobs)
    composed = None  # (overrides, config) of a job composed by Hydra, which jobs differing in values derive from
    with Progress("checking the sweep's jobs", len(checked)) if multirun else contextlib.nullcontext() as progress:
        for number, job in enumerate(jobs):
            if sweep_dir is not None and sweep_dir.is_dir():  # a sweep run again: its jobs' folders may hold runs
                run_dir = sweep_dir / (folders[number] if folders else job_subdir(list(job), number, configs))
            if number not in checked and not (run_dir is not None and run_dir.exists()):
                continue
            cfg = derived_config(*composed, list(job)) if composed and not (run_dir is not None and run_dir.exists()) else None
            if cfg is None:
                try:
                    cfg = compose_job(list(job), configs, number if multirun else None)
                except (HydraException, OmegaConfBaseException) as exc:
                    try:
                        known = flat_keys(compose([], configs))
                    except Exception:
                        known = []
                    raise ZooError(describe_composition_error(exc, known)) from None
                composed = (list(job), cfg)
            if progress:
                progress.advance()
            plan = plan_run(cfg)
            check_run_references(plan)
            refuse_output_in_data(plan, sweep_dir or run_dir or Path("runs"), "hydra.sweep.dir" if multirun else "hydra.run.dir")
            if run_dir is not None and run_dir.exists():
                # Another run's folder, or one of files of yours, is refused before Hydra writes this command's records in it.
                try:
                    if plan.device.kind != "multi_worker":  # the other workers of one run share its folder
                        refuse_if_in_use(run_dir)
                    claim_run_dir(run_dir, recorded_config(cfg, plan), plan, say=False)
                except ZooError as exc:
                    raise ZooError(in_sweep_terms(str(exc)) if multirun else str(exc)) from None
                unshare(run_dir / name for name in OPENED_FIRST)


def derived_config(composed_overrides: list[str], composed: Any, overrides: list[str]) -> Any:
    """The config of a sweep's job that differs from a composed one only in the values of
    plain keys (``seed=3`` for ``seed=2``), set on a copy, or None where it differs in more
    (a group, a key added or removed, an interpolation): Hydra then composes it. Composing
    each job took 0.17 s: a 2,000-seed sweep had been checked for 2.5 minutes, silently."""
    import copy

    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import DictConfig, ListConfig, OmegaConf, read_write
    from omegaconf.errors import OmegaConfBaseException

    if len(overrides) != len(composed_overrides) or any("${" in line for line in overrides):
        return None
    changed = [(a, b) for a, b in zip(composed_overrides, overrides) if a != b]
    if any(override_key(a) != override_key(b) or not re.fullmatch(r"[\w.]+=.*", b, re.DOTALL) for a, b in changed):
        return None
    cfg = copy.deepcopy(composed)
    parser = OverridesParser.create()
    for _, line in changed:
        key = override_key(line)
        now = OmegaConf.select(cfg, key, default=KeyError)
        if key.startswith("hydra") or now is KeyError or isinstance(now, (DictConfig, ListConfig)):
            return None  # Hydra's setting, a key the composed job lacks, or a node (a group's choice)
        value = parser.parse_override(line).value()
        if not isinstance(value, (str, int, float, bool, type(None))):
            return None
        try:
            with read_write(cfg):
                OmegaConf.update(cfg, key, value, merge=False)
        except OmegaConfBaseException:  # a value its typed node refuses: Hydra's composition says so, as ever
            return None
    return cfg


def refuse_output_in_data(plan, output: Path, key: str) -> None:
    """A run's folder inside a folder of data it reads (``zoo train dataset.path=.`` started
    in an image folder, whose default ``runs/`` Hydra makes there first) would be read as
    data: its folder a class of images, or the class folder the run stops on."""
    from zoo.config import data_paths

    output = Path(os.path.abspath(output.expanduser()))
    for data_key, path in data_paths(plan).items():
        folder = Path(path)
        if folder.is_dir() and (output == folder or folder in output.parents):
            raise ZooError(
                f"the {'sweep' if 'sweep' in key else 'run'}'s folder ({key}={output}) would be inside {data_key}={path}, the "
                f"data it reads, and its files would be read as data; give {key} a folder outside it"
            )


def in_sweep_terms(message: str) -> str:
    """A message about a run's folder, said to a sweep's user: a job's folder comes from
    ``hydra.sweep.dir`` (and the job's subdir), the option to change there."""
    return message.replace("hydra.run.dir", "hydra.sweep.dir")


# A grid sweep beyond this many jobs is refused: Hydra lists them all before the first starts.
MAX_SWEEP_JOBS = 10_000

# joblib starts all n_jobs worker processes at once, however few jobs there are, and each
# loads TensorFlow: n_jobs=100000 started processes until the machine's memory ran out.
JOBLIB_PROCESSES_PER_CPU = 4


def refuse_shadowing_files(folder: Path) -> None:
    """Ray puts the working folder first on its workers' path (no setting turns it off): a
    Python file there named like an installed module (``numpy.py``, ``json.py``) would be
    imported by every job in its place, its code run. Refused before Ray starts."""
    import importlib.machinery
    import sys

    elsewhere = [entry for entry in sys.path if entry and os.path.abspath(entry) != str(folder.absolute())]  # `python -m zoo` has it first
    for entry in sorted(folder.iterdir()):
        name = entry.stem if entry.suffix == ".py" else entry.name if (entry / "__init__.py").is_file() else None
        if name and name.isidentifier() and importlib.machinery.PathFinder.find_spec(name, elsewhere) is not None:
            raise ZooError(
                f"{entry} is named like the installed module {name!r}, which Ray's workers would import from this folder "
                "in its place (Ray puts the working folder first on their path); start the sweep from another folder"
            )


def semaphores_missing(why: str) -> str:
    """The line for a machine where joblib's worker processes cannot share semaphores: they
    live in /dev/shm, which a container may give 64 MB of, or none, or read-only."""
    return (
        f"joblib cannot start its worker processes here: the semaphores they share live in /dev/shm ({why}); give /dev/shm "
        "room and write access (docker run --shm-size=1g), or run the jobs one after another: hydra.launcher.n_jobs=1"
    )


def check_launcher(launcher: Any) -> None:
    """What a launcher's settings would do to the machine, before it starts: joblib's
    ``n_jobs`` is a whole number from -CPUs (-1: one process per CPU) to a few per CPU;
    submitit's ``timeout_min`` at least a minute (0 had each job killed as it started, the
    sweep failing on "has not produced any output"); Ray's jobs ask for what its cluster has."""
    target = str(launcher.get("_target_", "")) if launcher is not None else ""
    if target.startswith("hydra_plugins.hydra_submitit_launcher."):
        timeout = launcher.get("timeout_min")
        if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 1:
            raise ZooError(f"hydra.launcher.timeout_min={timeout}: give the minutes a job may run, a whole number from 1")
    if target.startswith("hydra_plugins.hydra_ray_launcher."):
        from zoo.sweeps import check_ray_resources

        refuse_shadowing_files(Path.cwd())
        check_ray_resources(launcher.get("ray") or {})
    if not target.endswith("JoblibLauncher"):
        return
    import warnings

    with warnings.catch_warnings(record=True) as said:  # joblib's "... joblib will operate in serial mode"
        warnings.simplefilter("always")
        try:
            import joblib
            from joblib import _multiprocessing_helpers
        except ValueError:  # its int() of the setting
            setting = shorten(os.environ.get("JOBLIB_MULTIPROCESSING", ""), 20)
            raise ZooError(f"JOBLIB_MULTIPROCESSING={setting} in the environment: joblib reads 0 (no worker processes) or 1; unset it") from None

    # The CPUs joblib counts for n_jobs=-1: those this process may run on (a SLURM job's
    # --cpus-per-task, taskset, a container's CPU quota), not the machine's.
    n_jobs, cpus = launcher.get("n_jobs"), joblib.cpu_count()
    most = JOBLIB_PROCESSES_PER_CPU * cpus
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs == 0 or not -cpus <= n_jobs <= most:
        raise ZooError(
            f"hydra.launcher.n_jobs={n_jobs}: give the number of jobs to run at once, 1 to {most} ({JOBLIB_PROCESSES_PER_CPU} "
            "per CPU here: joblib starts each as a process loading TensorFlow, all at once), or -1 for one per CPU"
        )
    if _multiprocessing_helpers.mp is None and n_jobs != 1:
        # joblib would run the jobs as threads of this process, which share Keras' and Hydra's state.
        if os.environ.get("JOBLIB_MULTIPROCESSING", "").strip() == "0":
            raise ZooError(f"hydra.launcher.n_jobs={n_jobs}: JOBLIB_MULTIPROCESSING=0 in the environment keeps joblib from starting worker processes; unset it, or give hydra.launcher.n_jobs=1")
        why = next((str(w.message).split(".  joblib")[0] for w in said if "joblib will operate in serial mode" in str(w.message)), "")
        raise ZooError(f"hydra.launcher.n_jobs={n_jobs}: {semaphores_missing(why or 'they cannot be made')}")
    if _multiprocessing_helpers.mp is None:  # one job at a time, as asked: Hydra's launcher's notice of threads is noise
        warnings.filterwarnings("ignore", message="joblib backend 'loky' is not available", category=UserWarning)
    from zoo.limits import thread_shortfall  # each job starts TensorFlow's threads: past a cap on them, it aborts

    shortfall = thread_shortfall(processes=n_jobs if n_jobs > 0 else cpus + 1 + n_jobs)
    if shortfall:
        raise ZooError(f"hydra.launcher.n_jobs={n_jobs}: {shortfall}")
    timeout = launcher.get("timeout")  # 0 or less: every job "ran longer", killed as it started
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0):
        raise ZooError(f"hydra.launcher.timeout={timeout}: give the seconds a job may run, more than 0, or null for no limit")
    size = launcher.get("batch_size")
    with contextlib.suppress(TypeError, ValueError):  # Hydra's launcher gives joblib a number written as text as that number
        size = int(size) if isinstance(size, str) and size != "auto" else size
    if size != "auto" and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise ZooError(f"hydra.launcher.batch_size={size}: give how many jobs a worker takes at a time, 1 or more, or auto")
    pre_dispatch = launcher.get("pre_dispatch")  # how many jobs joblib hands out first: with 0 the sweep ran none, status 0
    if pre_dispatch != "all":
        from joblib._utils import eval_expr  # joblib's own reading of it: arithmetic on n_jobs, nothing else

        workers = n_jobs if n_jobs > 0 else cpus + 1 + n_jobs
        try:
            count = pre_dispatch if isinstance(pre_dispatch, int) else eval_expr(str(pre_dispatch).replace("n_jobs", str(workers)))
        except (ValueError, TypeError, SyntaxError, ZeroDivisionError):
            count = None
        if isinstance(count, bool) or not isinstance(count, (int, float)) or count < 1:
            raise ZooError(
                f"hydra.launcher.pre_dispatch={pre_dispatch}: give how many jobs to hand out at first, 1 or more, "
                "as a number, arithmetic of n_jobs (2*n_jobs, the default) or all"
            )


def is_grid_sweeper(sweeper: Any) -> bool:
    """Whether Hydra's settings of a sweeper name its own grid sweeper."""
    return str(sweeper.get("_target_", "")).endswith(".BasicSweeper")


def grid_sweep_params(settings: Any) -> list[str]:
    """The sweep a config sets for Hydra's grid sweeper (``hydra.sweeper.params`` in an
    experiment), as the override lines the sweeper makes of it: checked as the command
    line's are (10^8 jobs had been listed for ever, a job that could not run found only
    after the jobs before it had trained)."""
    from omegaconf import OmegaConf

    if settings is None or not is_grid_sweeper(settings.sweeper):
        return []
    params = OmegaConf.to_container(settings.sweeper, resolve=True).get("params") or {}
    return [f"{key}={value}" for key, value in params.items()]


def check_sweeper(sweeper: Any, parsed: list) -> None:
    """Hydra's grid sweeper launches ``max_batch_size`` jobs at a time: none or a positive
    number (0 or less failed on a bare assertion deep in Hydra); it lists values, so an
    ``interval(...)`` (a search's range to sample) is not for it."""
    from hydra.core.override_parser.types import ValueType

    from zoo.config import refuse_password_in_url

    if sweeper is not None and sweeper.get("storage"):
        refuse_password_in_url(
            "hydra.sweeper.storage", str(sweeper.storage),
            "PostgreSQL reads it from PGPASSWORD or ~/.pgpass, MySQL from an option file (?read_default_file=PATH)",
        )  # fmt: skip
    if sweeper is None or not is_grid_sweeper(sweeper):
        return
    interval = next((o for o in parsed if o.value_type == ValueType.INTERVAL_SWEEP), None)
    if interval is not None:
        raise ZooError(
            f"{shorten(interval.input_line)}: interval(...) is a range for a search to sample (hparams_search=NAME, "
            "hydra/sweeper=optuna); a grid sweep takes choice(...), range(...) or glob(...)"
        )
    size = sweeper.get("max_batch_size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise ZooError(f"hydra.sweeper.max_batch_size={size}: give how many jobs to launch at a time, 1 or more, or null for all")


def given_values(override) -> list:
    """The values an override gives: a sweep's (listed), none for a search's range to
    sample, else its one value."""
    if override.is_sweep_override():
        return sweep_values(override) if override.is_discrete_sweep() else []
    return [override.value()]


def sweep_values(override) -> list:
    """A sweep override's values, no more than MAX_SWEEP_JOBS + 1 of them: ``range(0,10**8)``
    is not listed (its values are numbers: the first ones show what the rest are)."""
    try:
        return list(itertools.islice(override.sweep_iterator(), MAX_SWEEP_JOBS + 1))
    except (ValueError, TypeError) as exc:  # range(1,3,0): Python's range refuses it
        raise ZooError(f"{shorten(override.input_line)}: Hydra cannot list its values ({exc})") from None


def refuse_empty_sweeps(empty: list) -> None:
    """A sweep over no value (``range(1,1)``, a ``glob`` matching nothing) had Hydra launch
    no job and exit 0, as if the sweep had run."""
    from hydra.core.override_parser.types import ObjectType, ValueType

    for override in empty:
        if override.value_type == ValueType.GLOB_CHOICE_SWEEP:
            group = override.key_or_group
            options = override.config_loader.get_group_options(group, results_filter=ObjectType.CONFIG)
            if not options:
                raise ZooError(
                    f"{shorten(override.input_line)}: glob(...) picks among a config group's options (model=glob(cnn*)), "
                    f"and {group} is not a group; sweep its values with choice(...) or range(...)"
                )
            raise ZooError(f"{shorten(override.input_line)} matches none of {group}'s options ({', '.join(options) or 'none'})")
        raise ZooError(f"{shorten(override.input_line)} holds no value, so the sweep would launch no job; give one or more")


def sweep_size(override) -> int:
    """How many values a sweep override takes, counted no further than MAX_SWEEP_JOBS + 1."""
    return len(sweep_values(override))


def space_ends(parsed: list) -> list[list[str]]:
    """Jobs at the ends of a search's space, for checking before any trial: every swept key at
    its low end, then at its high end, then each choice of a ``choice(...)`` (a bound no run
    accepts, ``model.dense_units=int(interval(1, 10**20))``, had failed the trial that drew it)."""
    from hydra.core.override_parser.types import Transformer

    from zoo.search import range_ends

    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    ends: dict[str, list[str]] = {}
    for override in parsed:
        value = override.value() if override.is_sweep_override() else None
        if override.is_interval_sweep():
            ends[override.get_key_element()] = [str(value.start), str(value.end)]
        elif override.is_range_sweep() and not value.shuffle:
            found = range_ends(value)
            ends[override.get_key_element()] = [str(end) for end in found[0]] if found else []
        elif override.is_sweep_override():
            ends[override.get_key_element()] = list(itertools.islice(override.sweep_iterator(transformer=Transformer.encode), 64))
    if not ends or not all(ends.values()):  # an empty one is the sweeper's to name
        return []
    low = {key: values[0] for key, values in ends.items()}
    high = {key: values[-1] for key, values in ends.items()}
    chosen = [{**low, key: value} for key, values in ends.items() for value in values[1:-1]]
    return [fixed + [f"{key}={value}" for key, value in end.items()] for end in (low, high, *chosen)]


def covering(jobs: list, whole: int = 64) -> set[int]:
    """The jobs of a sweep whose configs are composed and checked before it starts: all of a
    small one; of a larger one, enough for every value of every swept key to be checked
    once (a combination that does not fit fails in its own job, in one line)."""
    if len(jobs) <= whole:
        return set(range(len(jobs)))
    seen: set[str] = set()
    chosen = set()
    for number, job in enumerate(jobs):
        if not set(job) <= seen:
            chosen.add(number)
            seen.update(job)
    return chosen


def grid_sweep(parsed: list, configs: UserConfigs) -> bool:
    """Whether Hydra's own grid sweeper runs the sweep (not a search's)."""
    from zoo.config import compose

    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    return is_grid_sweeper(compose(fixed, configs, with_hydra=True).hydra.sweeper)


def check_job_folders(folders: list[str]) -> None:
    """Each job of a sweep gets its own folder inside the sweep's (``hydra.sweep.subdir``,
    resolved: :func:`job_folders`): two jobs given one folder (``hydra.sweep.subdir=x``) would
    have the second job's Hydra records written over the first job's run."""
    seen: dict[str, int] = {}
    for number, folder in enumerate(folders):
        if leads_outside(folder) or not Path(folder).parts:  # resolved: an interpolation may make it absolute
            raise ZooError(
                f"job {number} of the sweep would get the folder {folder!r}, not a sub-folder of the sweep's; give a "
                "hydra.sweep.subdir that resolves to a relative name without '..'"
            )
        long_name = next((part for part in Path(folder).parts if len(os.fsencode(part)) > NAME_MAX), None)
        if long_name is not None:  # Hydra would fail making it, the sweep begun ("File name too long")
            raise ZooError(
                f"job {number} of the sweep would get the folder {shorten(long_name)!r}, a name of {len(os.fsencode(long_name))} "
                f"bytes, past the {NAME_MAX} a file system takes; give a shorter hydra.sweep.subdir (with "
                "${hydra.job.override_dirname}, leave keys out: hydra.job.config.override_dirname.exclude_keys=[KEY,...])"
            )
        if folder in seen:
            raise ZooError(
                f"jobs {seen[folder]} and {number} of the sweep would share the folder {folder!r}, each writing its "
                "records over the other's; give a hydra.sweep.subdir that differs per job "
                "(the default, ${hydra.job.num}_${hydra:runtime.choices.model}, does)"
            )
        seen[folder] = number


# What a sweep's subdir may interpolate that is resolved here without composing each job's
# config, as Hydra does (about 0.1 s a job: a 200-job sweep had been checked for 26 s).
QUICK_SUBDIR = re.compile(r"\$\{(hydra\.job\.num|hydra\.job\.override_dirname|hydra[.:]runtime\.choices\.([\w/.-]+))\}")


def job_folders(jobs: list, settings: Any, configs: UserConfigs) -> list[str]:
    """The sub-folder of the sweep's folder Hydra gives each job (``hydra.sweep.subdir``,
    resolved); ``settings``: Hydra's settings composed from the sweep's fixed overrides."""
    from omegaconf import OmegaConf

    subdir = str(OmegaConf.to_container(settings.sweep)["subdir"])
    if "${" not in subdir:
        return [subdir] * len(jobs)
    naming = settings.job.config.override_dirname
    folders = []
    for number, job in enumerate(jobs):
        given = {override_key(line): line.split("=", 1)[1] for line in job if "=" in line}

        def quick(match: re.Match) -> str:
            if match.group(1) == "hydra.job.num":
                return str(number)
            if match.group(2) is None:  # Hydra's override_dirname: the job's overrides but Hydra's own, sorted
                lines = sorted(line for line in job if not override_key(line).startswith(("hydra.", "hydra/"))
                               and override_key(line) not in naming.exclude_keys)  # fmt: skip
                return naming.item_sep.join(lines).replace("=", naming.kv_sep)
            return str(given.get(match.group(2), settings.runtime.choices.get(match.group(2))))

        quick_enough = "${" not in QUICK_SUBDIR.sub("", subdir) and not any(
            set(given.get(m.group(2), "")) & set("[],{}") for m in QUICK_SUBDIR.finditer(subdir) if m.group(2)
        )  # a list of choices (metrics=[a,b]) is Hydra's to spell
        folders.append(QUICK_SUBDIR.sub(quick, subdir) if quick_enough else job_subdir(list(job), number, configs))
    return folders


def override_key(line: str) -> str:
    """The key or group an override sets (``+model.x@p=1``: ``model.x``)."""
    return re.match(r"(?:\+\+|\+|~)?([^=@]*)", line).group(1)


# The longest file name Linux's file systems take, in bytes (NAME_MAX).
NAME_MAX = 255


def job_subdir(overrides: list[str], number: int, configs: UserConfigs) -> str:
    """The sub-folder of the sweep's folder that Hydra gives the sweep's job ``number``."""
    from omegaconf import OmegaConf, open_dict, read_write

    from zoo.config import compose

    cfg = compose(overrides, configs, with_hydra=True)
    with read_write(cfg.hydra), open_dict(cfg.hydra):
        cfg.hydra.job.num = number
    return str(OmegaConf.select(cfg, "hydra.sweep.subdir"))


# Config groups a run needs one choice of, and those that take a list of names.
REQUIRED_GROUPS = ("model", "dataset", "trainer", "device")


def check_group_choices(args: list[str]) -> None:
    """Choices of the zoo's config groups in shapes Hydra's defaults list fails on with a
    traceback (``~model``, ``model=null``, ``metrics={a: 1}``)."""
    for override in parsed_overrides(args):
        problem = _group_choice_problem(override)
        if problem:
            raise ZooError(f"{shorten(override.input_line)}: {problem}")


# Hydra looks up each key as a config group's folder, and each choice as a file, before the
# zoo reads any: a name longer than a file name may be failed on "File name too long",
# naming a file inside Hydra's package.
NAME_MAX_BYTES = 250


def _group_choice_problem(override) -> Optional[str]:
    from zoo.config import LIST_GROUPS, PRESET_GROUPS

    group = override.key_or_group
    values = given_values(override)
    names = group.split("/")
    if group in (*REQUIRED_GROUPS, *LIST_GROUPS, *PRESET_GROUPS) or "/" in group or (override.is_add() and "." not in group):
        names += [part for value in values for item in (value if isinstance(value, list) else [value]) if isinstance(item, str) for part in item.split("/")]
    long = next((name for name in names if len(name.encode("utf-8", "surrogateescape")) > NAME_MAX_BYTES), None)
    if long is not None:
        return f"{shorten(long, 40)!r} is {len(long):,} characters long: no config key or choice has such a name; check the override"
    if override.is_delete() and group.split(".")[0].split("/")[0] == "hydra":
        # Hydra's own settings and choices have nothing to fall back on: deleting one fails inside Hydra
        if "/" in group:
            return f"Hydra's choices cannot be deleted; choose another ({group}=NAME; 'none' for the logging ones)"
        return "Hydra's settings cannot be deleted" + (f"; set {group}=... instead" if "." in group else "")
    if group not in (*REQUIRED_GROUPS, *LIST_GROUPS):
        return None
    if override.is_delete():
        return f"{group} cannot be deleted; choose one instead ({group}=NAME{', or none' if group in LIST_GROUPS else ''}; see 'zoo train --help')"
    for value in values:
        if group in REQUIRED_GROUPS and not isinstance(value, str):
            return f"{group} takes one name ({group}=NAME, see 'zoo train --help'), not {value!r}"
        if group in LIST_GROUPS and not (isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))):
            return f"{group} takes a name or a list of names ({group}=[a,b], see 'zoo list {LIST_GROUPS[group]}'), not {value!r}"
    return None


def check_composes(args: list[str]) -> None:
    """For the flags that show a config or help: Hydra composes it first, and reports a
    mistake in it with a traceback."""
    from zoo.config import compose, describe_composition_error

    try:
        compose(overrides_only(args), user_configs(args))
    except Exception as exc:  # Hydra's and OmegaConf's errors, as check_overrides reports them
        raise ZooError(describe_composition_error(exc)) from None


def resolved_output_dir(key: str, typed: str, overrides: list[str], configs: UserConfigs) -> str:
    """Where an interpolated ``hydra.run.dir`` or ``hydra.sweep.dir`` leads, composed as
    Hydra will compose it."""
    from omegaconf import OmegaConf

    from zoo.config import compose, describe_composition_error

    try:
        cfg = compose(overrides, configs, with_hydra=True)
    except Exception as exc:  # Hydra's and OmegaConf's errors: the composition is reported as such
        raise ZooError(describe_composition_error(exc)) from None
    try:
        return str(OmegaConf.select(cfg, key, throw_on_resolution_failure=True))
    except Exception as exc:  # a resolver that fails, or one only a running job can answer
        raise ZooError(f"{key}={typed}: it cannot be resolved before the run ({one_line(exc)[:200]}); give the folder itself") from None
