"""Tab completion in real shells: the scripts `zoo completion bash|zsh` print, sourced as a
user sources them, asked what a TAB at the end of a line would offer."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_zoo

# The `zoo` these tests installed: the one beside this Python.
PATH = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"


def bash_tab(line: str) -> list[str]:
    """What bash's completion function puts in COMPREPLY for ``line`` (cursor at its end)."""
    script = (
        'eval "$(zoo completion bash)"\n'
        'complete -p zoo >/dev/null || exit 3\n'
        'COMP_LINE="$1"; COMP_POINT=${#COMP_LINE}\n'
        "_zoo_complete 2>/dev/null\n"
        "printf '%s\\n' \"${COMPREPLY[@]}\"\n"
    )
    result = subprocess.run(["bash", "-c", script, "bash", line], capture_output=True, text=True, env={**os.environ, "PATH": PATH}, timeout=60)
    assert result.returncode == 0, result.stderr
    return [w for w in result.stdout.splitlines() if w]


def test_bash_completes_commands_groups_items_and_their_fields():
    assert {"train", "list", "check", "evaluate", "completion"} <= set(bash_tab("zoo "))
    assert bash_tab("zoo tr") == ["train"]
    assert {"model=", "model.", "dataset=", "trainer.", "device=", "experiment=", "hydra/launcher="} <= set(bash_tab("zoo train "))
    # bash breaks words at '=': what it completes is the value after it.
    assert bash_tab("zoo train model=cnn_c") == ["cnn_cat_classifier", "cnn_classifier"]
    assert set(bash_tab("zoo train model=cnn_classifier model.")) >= {"model.filters=", "model.dropout="}
    assert bash_tab("zoo train model=mlp_classifier model.fil") == []  # that model has no filters
    assert bash_tab("zoo train trainer.early_stopping.mo") == ["trainer.early_stopping.mode=", "trainer.early_stopping.monitor="]
    assert bash_tab("zoo train trainer.precision=mixed_b") == ["mixed_bfloat16"]
    assert bash_tab("zoo train metrics=[accuracy,au") == ["[accuracy,auc"]
    assert "cats_cnn" in bash_tab("zoo train experiment=cats")
    assert "median" in bash_tab("zoo train hydra/sweeper/pruner=")
    assert "digits" in bash_tab("zoo train dataset=")
    assert "--multirun" in bash_tab("zoo train --")
    assert bash_tab("zoo list m") == ["metric", "model"]
    assert "cnn_classifier" in bash_tab("zoo info model ") and "accuracy" not in bash_tab("zoo info model ")
    assert "keras-zoo" in bash_tab("zoo check ")


def test_bash_leaves_paths_to_its_own_file_completion(tmp_path):
    (tmp_path / "run-one").mkdir()
    assert bash_tab("zoo evaluate ") == []  # nothing offered: `complete -o default` lists files
    result = subprocess.run(
        ["bash", "-c", 'eval "$(zoo completion bash)"; complete -p zoo'], capture_output=True, text=True, env={**os.environ, "PATH": PATH}
    )
    assert "-o default" in result.stdout and "-F _zoo_complete zoo" in result.stdout


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed here")
def test_zsh_completes_whole_words_without_a_space_after_a_key():
    script = (
        "compdef() { : }\n"  # compinit's, not needed to call the function
        'eval "$(zoo completion zsh)"\n'
        "compadd() { print -r -- \"compadd $*\" }\n"
        "_files() { print -r -- _files }\n"
        'BUFFER="$1"; CURSOR=${#BUFFER}; _zoo\n'
    )

    def zsh_tab(line: str) -> list[str]:
        result = subprocess.run(["zsh", "-f", "-c", script, "zsh", line], capture_output=True, text=True, env={**os.environ, "PATH": PATH}, timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stdout.splitlines()

    assert zsh_tab("zoo train model=cnn_c") == ["compadd -Q -- model=cnn_cat_classifier model=cnn_classifier"]
    assert zsh_tab("zoo train trainer.early_stopping.mod") == ["compadd -Q -S  -- trainer.early_stopping.mode="]
    assert zsh_tab("zoo predict ") == ["_files"]


def test_hydras_completion_flag_gets_the_zoos_completion():
    installed = run_zoo("train", "-sc", "install=bash")
    assert installed.returncode == 0 and installed.stdout == run_zoo("completion", "bash").stdout
    # The script Hydra installed earlier calls `zoo -sc query=bash` with the line in COMP_LINE.
    query = run_zoo("-sc", "query=bash", env={"COMP_LINE": "zoo train model=cnn_c", "COMP_POINT": "21"})
    assert query.stdout.split() == ["model=cnn_cat_classifier", "model=cnn_classifier"]
    assert run_zoo("train", "-sc", "install=fish").returncode == 2
    after = run_zoo("train", "seed=1", "--shell-completion", "install=bash")  # after overrides: had been Hydra's ValueError
    assert after.returncode == 0 and after.stdout == installed.stdout, after.stderr
