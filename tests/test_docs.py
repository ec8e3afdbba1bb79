"""Documentation keeps up with the code: every hook and every first-party item is described."""

from __future__ import annotations

import inspect
import re

import pytest

from zoo import hookspecs

from conftest import REPO, entries, run_zoo

README = (REPO / "README.md").read_text(encoding="utf-8")
HOOKS = [name for name, _ in hookspecs.KINDS.values()]


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented(hook):
    function = getattr(hookspecs, hook)
    assert inspect.getdoc(function), f"hook {hook} has no docstring"
    assert f"`{hook}`" in README, f"hook {hook} is not in the README"


@pytest.mark.parametrize(
    "entry",
    [e for kind in hookspecs.KINDS for e in entries(kind) if e.source.distribution == "keras-zoo"],
    ids=lambda e: f"{e.kind}-{e.name}",
)
def test_every_first_party_item_is_in_the_readme(entry):
    assert f"`{entry.name}`" in README, f"{entry.kind} {entry.name} is not in the README's tables"


def test_every_experiment_preset_is_in_the_readme():
    for preset in (REPO / "conf" / "experiment").glob("*.yaml"):
        assert f"`{preset.stem}`" in README, f"preset {preset.stem} is not in the README"


def test_every_device_launcher_and_search_preset_is_in_the_readme():
    shipped = {
        "device=": REPO / "conf" / "device",
        "hydra/launcher=": REPO / "conf" / "hydra" / "launcher",
        "hparams_search=": REPO / "conf" / "hparams_search",
    }
    for prefix, folder in shipped.items():
        for config in folder.glob("*.yaml"):
            named = f"{prefix}{config.stem}" in README or (prefix == "device=" and f"`{config.stem}`" in README)
            assert named, f"{prefix}{config.stem} is not in the README"


def test_scaling_out_covers_each_kind_of_machine():
    section = README.split("## Scaling out", 1)[1].split("\n## ", 1)[0]
    for heading in ("**A GPU box**", "**A TPU**", "**A SLURM cluster**", "**A Ray cluster**", "**Several machines**"):
        assert heading in section


GUIDE = (REPO / "docs" / "writing-plugins.md").read_text(encoding="utf-8")


def test_the_plugin_guide_covers_every_hook_and_every_check():
    from zoo.testing import CHECKS

    for hook in HOOKS + ["register_config_paths"]:
        assert f"`{hook}`" in GUIDE, f"hook {hook} is not in docs/writing-plugins.md"
    for kind, checks in CHECKS.items():
        for check in checks:
            assert f"`{check}`" in GUIDE, f"{kind} check {check} is not in docs/writing-plugins.md"


def test_the_plugin_guides_excerpts_are_the_examples_code():
    """Each code block that names a file of examples/ holds lines of that file, in order."""
    blocks = re.findall(r"```\w*\n# (examples/\S+)\n(.*?)```", GUIDE, re.DOTALL)
    assert len(blocks) >= 8
    for path, body in blocks:
        source = (REPO / path).read_text(encoding="utf-8").splitlines()
        position = 0
        for line in filter(str.strip, body.splitlines()):
            assert line in source[position:], f"{path} has no line {line!r} (in this order)"
            position = source.index(line, position) + 1


def readme_train_commands() -> list[str]:
    """Every `zoo train ...` in the README's shell blocks, as written (comments dropped,
    chains split at &&)."""
    return readme_commands("zoo train")


def readme_commands(start: str) -> list[str]:
    """Every command in the README's shell blocks that begins with ``start``, as written."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():  # continuation lines joined
            line = line.split("  #", 1)[0].strip()
            for part in line.split("&&"):
                part = part.strip()
                # <placeholders> are for the reader; demo_* is the plugin guide's scaffold, not installed here
                if part.startswith(start) and "<" not in part and "demo_" not in part:
                    commands.append(part)
    return commands


# Problems a README command may have on this machine only: the files and runs it names are
# the reader's. Anything else (grammar, keys, values, combinations) must compose and check.
MISSING_HERE = ("is not a folder", "is not a run directory", "no such file", "did not finish", "does not exist")


@pytest.mark.parametrize("command", readme_train_commands())
def test_every_readme_train_command_composes_as_written(command):
    import shlex

    from hydra.core.override_parser.overrides_parser import OverridesParser

    from zoo.arguments import overrides_only, quote_home_paths, user_configs
    from zoo.config import check_run_references, compose, plan_run
    from zoo.errors import ZooError

    args = quote_home_paths(shlex.split(command)[2:])
    configs = user_configs(args)
    if configs.folder is not None and not configs.folder.is_dir():
        return  # the reader's own configs (zoo train --config-dir my_conf ...)
    overrides = overrides_only(args)
    parsed = OverridesParser.create().parse_overrides(overrides)  # Hydra's grammar, as the shell passes them
    if any(o.is_sweep_override() for o in parsed):
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

        try:
            jobs = [list(job) for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]
        except Exception:  # an Optuna search space: its sweeper reads it
            jobs = [[o for o in overrides if "hparams_search" in o or "," not in o]]
    else:
        jobs = [overrides]
    for job in jobs:
        try:
            check_run_references(plan_run(compose(job, configs)))
        except ZooError as exc:
            assert any(reason in str(exc) for reason in MISSING_HERE), f"{command}: {exc}"
    assert len(readme_train_commands()) >= 30


@pytest.mark.parametrize("command", readme_commands("zoo info") + readme_commands("zoo list"))
def test_every_readme_info_and_list_command_runs_as_written(command):
    """These name nothing of the reader's, so each must work here as printed: the quick
    start's `zoo info cnn_classifier dataset=breast_cancer` had failed (a CNN takes images)."""
    import shlex

    result = run_zoo(*shlex.split(command)[1:])
    assert result.returncode == 0 and result.stdout.strip(), f"{command}: {result.stderr[-1000:]}"
    assert "warning" not in result.stderr, f"{command}: {result.stderr[-1000:]}"
