"""Tab completion for bash and zsh: commands, options, Hydra overrides and plugin names.

The shell scripts (``zoo completion bash|zsh``) hand the line up to the cursor to
``zoo __complete SHELL LINE``, which prints one candidate per line. Candidates come from the
argument parser, the registry (items and their config fields) and the config folders: no
TensorFlow, no Hydra composition, so a TAB costs what ``zoo list`` does.

Bash splits words at ``=`` and ``:`` (``COMP_WORDBREAKS``), so its candidates are the part
after the last such character; zsh and Hydra's own script take whole words.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
from pathlib import Path
from typing import Any, Iterable, Optional

BASH = r"""# zoo completion for bash: eval "$(zoo completion bash)" (or put it in ~/.bashrc)
_zoo_complete() {
    local IFS=$'\n'
    COMPREPLY=($(zoo __complete bash "${COMP_LINE:0:COMP_POINT}" 2>/dev/null))
    if [[ ${#COMPREPLY[@]} -eq 1 && ${COMPREPLY[0]} == *[=.\[/,] ]]; then
        compopt -o nospace  # a key or a list goes on: no space after it
    fi
}
complete -o default -o bashdefault -F _zoo_complete zoo
"""

ZSH = r"""#compdef zoo
# zoo completion for zsh: eval "$(zoo completion zsh)" (after compinit), or save as _zoo on $fpath
_zoo() {
    local -a found open closed
    found=("${(@f)$(zoo __complete zsh "${BUFFER[1,CURSOR]}" 2>/dev/null)}")
    found=(${found:#})
    if (( ${#found} == 0 )); then
        _files
        return
    fi
    open=(${(M)found:#*[=.\[/,]})
    closed=(${found:#*[=.\[/,]})
    local offered=1  # 0 once something was offered, as zsh expects of a completer
    (( ${#open} )) && compadd -Q -S '' -- "${open[@]}" && offered=0
    (( ${#closed} )) && compadd -Q -- "${closed[@]}" && offered=0
    return offered
}
compdef _zoo zoo
"""

SCRIPTS = {"bash": BASH, "zsh": ZSH}
BASH_WORD_BREAKS = "=:"

# Hydra's own flags of `zoo train`, beside the overrides.
TRAIN_FLAGS = ("--multirun", "-m", "--cfg", "--help", "--info", "--resolve", "--package", "--config-dir", "--config-name")
# Hydra groups of `zoo train` read from files, by the folder that holds their options.
FILE_GROUPS = {
    "device": "device",
    "experiment": "experiment",
    "hparams_search": "hparams_search",
    "hydra/launcher": "hydra/launcher",
    "hydra/sweeper": "hydra/sweeper",
    "hydra/sweeper/sampler": "hydra/sweeper/sampler",
    "hydra/sweeper/pruner": "hydra/sweeper/pruner",
}


def script(shell: str) -> str:
    return SCRIPTS[shell]


def complete(shell: str, line: str, parser: argparse.ArgumentParser) -> list[str]:
    """The candidates for the last word of ``line`` (the command line up to the cursor)."""
    words, current = split_line(line)
    words = words[1:]  # the program's name
    while words and words[0].startswith("-"):  # zoo --strict-plugins train ...
        words = words[1:]
    if not words:
        found = [*_subcommands(parser), "--help", "--version", "--strict-plugins"]
    elif words[0] == "train":
        found = train_candidates(words[1:], current)
    else:
        found = command_candidates(parser, words[0], words[1:], current)
    found = sorted({c for c in found if c.startswith(current)})
    if shell == "bash":
        cut = max(current.rfind(c) for c in BASH_WORD_BREAKS) + 1
        found = [c[cut:] for c in found]
    return found


def split_line(line: str) -> tuple[list[str], str]:
    """The finished words and the one being typed ("" after a space), shell quoting honoured
    where it is complete."""
    try:
        words = shlex.split(line)
    except ValueError:  # an open quote: the word being typed is still in it
        words = line.split()
    if not line or line[-1].isspace():
        return words, ""
    return words[:-1], words[-1] if words else ""


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse keeps its subparsers here; no public accessor
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def command_candidates(parser: argparse.ArgumentParser, command: str, words: list[str], current: str) -> list[str]:
    sub = _subcommands(parser).get(command)
    if sub is None:
        return []
    if current.startswith("-"):
        return [flag for action in sub._actions for flag in action.option_strings]
    positional = [w for w in words if not w.startswith("-")]
    if command == "completion":
        return list(SCRIPTS) if not positional else []
    if command == "list" and not positional:
        return _kinds()
    if command == "info":
        if len(positional) == 1 and positional[0] in _kinds():
            return _item_names(positional[0])
        return [*_kinds(), "trainer", "device", "cv", *_item_names(None), *_plugin_names()] if not positional else []
    if command == "check" and not positional:
        return [*_plugin_names(), *_item_names(None)]
    if command == "new":
        return ["plugin"] if not positional else []
    return []  # run directories and files: the shell's own file completion


def train_candidates(words: list[str], current: str) -> list[str]:
    """Hydra overrides: groups and keys, then options and field names of the chosen items."""
    if current.startswith("-"):
        return list(TRAIN_FLAGS)
    from zoo import config

    chosen = dict(w.lstrip("+~").split("=", 1) for w in words if "=" in w)
    key, has_value, value = current.lstrip("+~").partition("=")
    prefix = current[: len(current) - len(current.lstrip("+~"))]
    if has_value:
        return [f"{prefix}{key}={v}" for v in _values(key, value, chosen)]
    found = [f"{g}=" for g in ("model", "dataset", "metrics", "callbacks", "loggers", "seed", "objective", *FILE_GROUPS)]
    found += ["model.", "dataset.", "trainer.", "device.", "cv.", "hydra.run.dir=", "hydra.sweep.dir="]
    if "." in key:  # a field of a config: model.filters=, trainer.distillation.teacher=
        section, _, rest = key.partition(".")
        target = _config_of(section, chosen)
        if section in config.LIST_GROUPS:  # metrics.<name>.<field>
            name, _, rest = rest.partition(".")
            names = _item_names(config.LIST_GROUPS[section])
            target = _item_config(config.LIST_GROUPS[section], name) if name in names else None
            if target is None:
                return [f"{prefix}{section}.{n}." for n in names]
            section = f"{section}.{name}"
        found = [f"{prefix}{section}.{field}" for field in _fields(target)]
    return [prefix + f if not f.startswith(prefix) else f for f in found]


def _values(key: str, typed: str, chosen: dict[str, str]) -> list[str]:
    from zoo import config

    if key in ("model", "dataset"):
        return _item_names(key)
    if key in config.LIST_GROUPS:  # metrics=[f1,au -> metrics=[f1,auc
        head, _, last = typed.lstrip("[").rpartition(",")
        done = f"[{head}," if head else "["
        return [done + name for name in _item_names(config.LIST_GROUPS[key])]
    if key in FILE_GROUPS:
        return _file_options(FILE_GROUPS[key])
    if key == "device.kind" or key == "device":
        return list(config.DEVICE_KINDS)
    section, _, field_path = key.partition(".")
    target = _config_of(section, chosen)
    for part in field_path.split(".")[:-1]:  # trainer.early_stopping.mode: into the nested config
        inner = next((f for f in _dataclass_fields(target) if f.name == part), None)
        target = _default(inner) if inner is not None else None
    field = next((f for f in _dataclass_fields(target) if f.name == field_path.split(".")[-1]), None)
    if field is None:
        return []
    if field.type in ("bool", bool) or str(field.type).startswith("bool"):
        return ["true", "false"]
    return list(field.metadata.get("choices", ()))  # a choice field's metadata names its options


def _config_of(section: str, chosen: dict[str, str]) -> Any:
    from zoo import config

    if section in ("model", "dataset"):
        name = chosen.get(section) or _default_choice(section)
        return _item_config(section, name)
    if section in config.CONFIG_SECTIONS:
        return getattr(config, config.CONFIG_SECTIONS[section])
    return None


def _default_choice(section: str) -> Optional[str]:
    import yaml

    from zoo import config

    defaults = yaml.safe_load((_conf_folder() / f"{config.PRIMARY_CONFIG}.yaml").read_text()).get("defaults", [])
    for entry in defaults:
        if isinstance(entry, dict) and section in entry:
            return entry[section]
    return None


def _item_config(kind: str, name: Optional[str]) -> Any:
    from zoo.registry import get_registry

    if name is None or name not in get_registry().names(kind):
        return None
    try:
        return get_registry().get(kind, name).item.config
    except Exception:  # a conflicted name: nothing to offer
        return None


def _dataclass_fields(target: Any) -> list[dataclasses.Field]:
    return list(dataclasses.fields(target)) if target is not None and dataclasses.is_dataclass(target) else []


def _default(field: dataclasses.Field) -> Any:
    return field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default


def _fields(target: Any, prefix: str = "") -> Iterable[str]:
    for field in _dataclass_fields(target):
        default = _default(field)
        if dataclasses.is_dataclass(default):
            yield f"{prefix}{field.name}."
            yield from _fields(default, f"{prefix}{field.name}.")
        else:
            yield f"{prefix}{field.name}="


def _kinds() -> list[str]:
    from zoo import hookspecs

    return list(hookspecs.KINDS)


def _item_names(kind: Optional[str]) -> list[str]:
    from zoo.registry import get_registry

    registry = get_registry()
    kinds = [kind] if kind else _kinds()
    return sorted({name for k in kinds for name in registry.names(k)})


def _plugin_names() -> list[str]:
    from zoo.registry import get_registry

    return sorted({s.distribution for s in get_registry().sources})


def _conf_folder() -> Path:
    import importlib.resources

    from zoo import config

    return Path(str(importlib.resources.files(config.CONFIG_MODULE)))


def _file_options(group: str) -> list[str]:
    """The options of a config group: its YAML files in the zoo's conf/ and in plugins' config paths."""
    from zoo import config
    from zoo.registry import get_registry
    from zoo.testing import group_options

    paths = [f"pkg://{config.CONFIG_MODULE}", *(path for _, path in get_registry().config_paths)]
    return sorted({option for path in paths for option in group_options(path, group)})
