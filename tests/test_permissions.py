"""Files and folders this user may not read or write: another user's runs, data and folders
on a shared machine. Each is one line naming the path and what to do, before TensorFlow
starts; none is taken for damaged, empty or missing, and none is passed over unsaid.

The commands run where file permissions bind them: as they are for a user; as root (CI's),
in a user namespace of their own (``unshare --user``), which root's override does not reach.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import error_lines
from test_file_datasets import write_pngs
from test_registry import NO_TF_SCRIPT

REFUSED = r"cannot be read by user \S+ \(its permissions refuse it\); ask its owner to let you read it \(chmod\), or use a copy you can read"


@functools.cache
def bound_by_permissions() -> tuple[str, ...]:
    """The prefix under which a command is refused a file of mode 000 (skips where none is)."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        locked = Path(folder, "locked")
        locked.write_text("x")
        locked.chmod(0)
        for prefix in ((), ("unshare", "--user")):
            if prefix and shutil.which(prefix[0]) is None:
                continue
            probe = subprocess.run([*prefix, sys.executable, "-c", f"open({str(locked)!r})"], capture_output=True, text=True)
            if "PermissionError" in probe.stderr:
                return prefix
    pytest.skip("no way here to run a command that file permissions bind (root without user namespaces)")


def zoo_bound(*args: str, cwd: Path | None = None, env: dict | None = None) -> tuple[subprocess.CompletedProcess, bool]:
    """``zoo ARGS`` under file permissions, and whether it imported TensorFlow."""
    result = subprocess.run(
        [*bound_by_permissions(), sys.executable, "-c", NO_TF_SCRIPT + "sys.exit(code)", *args], capture_output=True, text=True,
        timeout=300, cwd=cwd, env={**os.environ, **(env or {})},
    )  # fmt: skip
    return result, "HEAVY=\n" not in result.stderr


def assert_refused(args: list[str], pattern: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    result, loaded_tensorflow = zoo_bound(*args, cwd=cwd)
    assert result.returncode == 2, result.stderr[-2000:]
    [line] = error_lines(result.stderr)
    assert re.fullmatch(f"zoo: error: {pattern}", line), line
    assert not loaded_tensorflow, "refused after TensorFlow started"
    return result


def test_image_folders_this_user_may_not_read_are_named_not_passed_over(tmp_path):
    """pathlib's rglob passes over a folder it may not list: a class's sub-folder of images
    was left out of training (and of predictions) without a word, and a class folder itself
    was called empty ("add images")."""
    data = tmp_path / "images"
    write_pngs(data / "dark", 8, 30)
    write_pngs(data / "dark" / "more", 8, 40)
    write_pngs(data / "light", 8, 220)
    train = ["train", "model=cnn_classifier", "dataset=image_folder", f"dataset.path={data}", "dataset.image_size=[16,16]",
             "trainer.epochs=1", f"hydra.run.dir={tmp_path / 'run'}"]  # fmt: skip
    for locked in (data / "dark" / "more", data / "light", data):
        locked.chmod(0)
        try:
            assert_refused(train, re.escape(str(locked)) + " " + REFUSED)
        finally:
            locked.chmod(0o755)
    assert not (tmp_path / "run").exists()


def test_predict_names_a_folder_or_file_this_user_may_not_read(default_run, tmp_path):
    from PIL import Image

    inputs = tmp_path / "digits"
    for folder in (inputs, inputs / "more"):
        folder.mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((8, 8), 40 * i, dtype=np.uint8)).save(folder / f"{i}.png")
    run_dir = str(default_run[0])
    (inputs / "more").chmod(0)
    try:
        assert_refused(["predict", run_dir, str(inputs)], re.escape(str(inputs / "more")) + " " + REFUSED)
    finally:
        (inputs / "more").chmod(0o755)
    (inputs / "1.png").chmod(0)
    assert_refused(["predict", run_dir, str(inputs / "1.png")], re.escape(str(inputs / "1.png")) + " " + REFUSED)
    # Found in a folder, it is skipped like a file that does not decode, and said so.
    result, _ = zoo_bound("predict", run_dir, str(inputs))
    assert result.returncode == 0, result.stderr[-2000:]
    assert re.search(rf"skipped {re.escape(str(inputs / '1.png'))}: cannot be read by user \S+ \(its permissions refuse it\)", result.stderr)
    assert len(re.findall(r"\.png ", result.stdout)) == 5


def test_a_run_whose_model_this_user_may_not_read_is_not_called_damaged(default_run, tmp_path):
    """It had been "damaged (not a whole .keras file: Permission denied); restore it from a
    backup", once TensorFlow had loaded (a new run's folder made first, for init_from)."""
    run_dir = tmp_path / "colleagues_run"
    shutil.copytree(default_run[0], run_dir)
    (run_dir / "model.keras").chmod(0)
    refused = re.escape(str(run_dir / "model.keras")) + " " + REFUSED
    for args in (
        ["evaluate", str(run_dir)],
        ["export", str(run_dir), "--output", str(tmp_path / "out.keras")],
        ["train", f"trainer.init_from={run_dir}", f"hydra.run.dir={tmp_path / 'new'}"],
        ["train", "model=mlp_classifier", f"trainer.distillation.teacher={run_dir}", f"hydra.run.dir={tmp_path / 'new'}"],
    ):
        assert_refused(args, refused)
    assert not (tmp_path / "new").exists() and not (tmp_path / "out.keras").exists()
    # Continuing it in a folder this user may not write: said as such, not "no folder can be made".
    (run_dir / "model.keras").chmod(0o644)
    run_dir.chmod(0o555)
    try:
        assert_refused(["train", f"hydra.run.dir={run_dir}"], re.escape(f"hydra.run.dir={run_dir}: {run_dir} cannot be written (Permission denied); choose a hydra.run.dir you can write"))
    finally:
        run_dir.chmod(0o755)


def test_outputs_in_a_folder_this_user_may_not_write_are_refused_before_the_work(default_run, tmp_path):
    """`predict -o`, `generate -o` and `compare --plot` found it after the work (TensorFlow
    loaded, a table printed), naming the temporary file: "locked/.p-8x1k.csv: Permission
    denied"; `zoo new plugin` named its staging folder."""
    from PIL import Image

    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    Image.new("L", (8, 8)).save(tmp_path / "digit.png")
    run_dir = str(default_run[0])
    for args, option in (
        (["predict", run_dir, str(tmp_path / "digit.png"), "--output", str(locked / "p.csv")], "--output"),
        (["compare", run_dir, "--plot", str(locked / "c.png")], "--plot"),
        (["new", "plugin", "demo", "--directory", str(locked)], "--directory"),
    ):
        result = assert_refused(args, re.escape(f"cannot write in {locked} (Permission denied); give {option} a folder you can write"))
        assert result.stdout == ""
    assert list(locked.iterdir()) == []


def test_data_files_this_user_may_not_read_are_not_called_damaged(tmp_path):
    """A CIFAR archive was "not a readable tar archive (Permission denied); re-download",
    after TensorFlow started; a weights file failed inside Keras' HDF5 reader."""
    from zoo_plugins.cifar10 import write_example_archive

    archive = Path(write_example_archive(tmp_path)["path"])
    archive.chmod(0)
    assert_refused(["train", "dataset=cifar10", f"dataset.path={archive}", f"hydra.run.dir={tmp_path / 'run'}"], re.escape(str(archive)) + " " + REFUSED)
    weights = tmp_path / "backbone.weights.h5"
    weights.write_bytes(b"\x89HDF\r\n\x1a\n")
    weights.chmod(0)
    assert_refused(
        ["train", "model=pretrained_classifier", "dataset=synthetic_cats", f"model.weights={weights}", f"hydra.run.dir={tmp_path / 'run'}"],
        re.escape(f"model.weights={str(weights)!r}: this user may not read that file (its permissions refuse it); ask its owner, or use a copy (model 'pretrained_classifier')"),
    )
    assert not (tmp_path / "run").exists()


def test_a_sweep_of_ones_own_is_not_refused_for_another_users_runs_folder(tmp_path):
    """A sweep checked the single-run folder too: started in a team's folder whose `runs/`
    was another user's, `-m ... hydra.sweep.dir=mine` was refused for hydra.run.dir."""
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs").chmod(0o555)
    result, _ = zoo_bound("train", "-m", "seed=1", "trainer.epochs=1", "metrics=[accuracy]", f"hydra.sweep.dir={tmp_path / 'mine'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "mine" / "summary.csv").is_file() and list((tmp_path / "runs").iterdir()) == []


def test_a_study_this_user_may_not_write_is_said_before_a_trial(tmp_path):
    """Another user's study (a team's shared SQLite file) failed at the first trial's commit
    with Optuna's "invalid data in the commit, e.g. exceeding max length"."""
    import optuna

    shared = tmp_path / "team"
    shared.mkdir()
    optuna.create_study(study_name="digits_cnn", storage=f"sqlite:///{shared / 'study.db'}", direction="maximize")
    shared.chmod(0o555)
    assert_refused(
        ["train", "-m", "hparams_search=digits_cnn", "hydra.sweeper.n_trials=1", f"hydra.sweeper.storage=sqlite:///{shared / 'study.db'}",
         f"hydra.sweep.dir={tmp_path / 'sweep'}"],
        re.escape(f"hydra.sweeper.storage: {shared} cannot be written by ") + r"user \S+ \(its permissions refuse it\), and a search "
        r"records its trials there; give a database of your own \(hydra.sweeper.storage=sqlite:///PATH\)",
    )  # fmt: skip
    assert not (tmp_path / "sweep").exists()


def test_an_image_cache_another_user_wrote_is_read_and_a_missing_one_said(tmp_path):
    """A team's cache folder, read-only to this user: its lock file had been opened to write
    ("Permission denied"), so a cache written already could not be read."""
    from conftest import run_zoo

    data = tmp_path / "images"
    write_pngs(data / "dark", 8, 30)
    write_pngs(data / "light", 8, 220)
    cache = tmp_path / "team_cache"
    cache.mkdir()
    train = ["train", "model=cnn_classifier", "dataset=image_folder", f"dataset.path={data}", f"dataset.cache={cache / 'images'}",
             "trainer.epochs=1", "metrics=[accuracy]", "loggers=none"]  # fmt: skip
    written = run_zoo(*train, "dataset.image_size=[16,16]", f"hydra.run.dir={tmp_path / 'writer'}")
    assert written.returncode == 0, written.stderr[-2000:]
    cache.chmod(0o555)
    before = sorted(p.name for p in cache.iterdir())
    read, _ = zoo_bound(*train, "dataset.image_size=[16,16]", f"hydra.run.dir={tmp_path / 'reader'}")
    assert read.returncode == 0, read.stderr[-2000:]
    other_size, _ = zoo_bound(*train, "dataset.image_size=[12,12]", f"hydra.run.dir={tmp_path / 'other'}")
    assert other_size.returncode == 2
    [line] = error_lines(other_size.stderr)
    assert re.fullmatch(rf"zoo: error: dataset.cache={re.escape(str(cache))}/images_\w+_[0-9a-f]+: {re.escape(str(cache))} cannot be written by "
                        r"user \S+ and does not hold these images' cache yet; give a prefix in a folder you can write", line), line  # fmt: skip
    assert sorted(p.name for p in cache.iterdir()) == before


def test_forcing_over_another_users_file_in_a_sticky_folder_is_refused_before_the_work(tmp_path, monkeypatch):
    """`zoo predict RUN X -o /tmp/theirs.csv --force` predicted, then failed on "Operation not
    permitted": in a sticky folder (as /tmp) only a file's owner may replace it."""
    import zoo
    from zoo.cli import check_output_file

    if os.geteuid() != 0:
        pytest.skip("giving a file to another user takes root")
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    theirs, mine = shared / "theirs.csv", shared / "mine.csv"
    for path, owner in ((theirs, 4242), (mine, 5555)):
        path.write_text("kept")
        os.chown(path, owner, owner)
    monkeypatch.setattr(os, "geteuid", lambda: 5555)
    with pytest.raises(zoo.ZooError, match=re.escape(f"--output {theirs} is another user's, in a folder where only a file's owner may replace it")):
        check_output_file(theirs, "--output", True, "predictions.csv")
    check_output_file(mine, "--output", True, "predictions.csv")
    assert theirs.read_text() == "kept"
    from zoo.export import MARKER, check_output

    exported = shared / "saved_model"  # another user's export, which --force would otherwise replace
    exported.mkdir()
    (exported / MARKER).write_text("{}")
    os.chown(exported, 4242, 4242)
    with pytest.raises(zoo.ZooError, match=re.escape(f"{exported} is another user's, in a folder where only its owner may replace it")):
        check_output(exported, tmp_path / "run", True)


def test_force_keeps_an_export_folders_contents_it_cannot_see(default_run, tmp_path):
    """--force replaces the zoo's earlier export only if nothing else is in it; pathlib's
    rglob passed over a folder it may not list and over links to folders, so what was in
    them went with the export."""
    from conftest import run_zoo

    output = tmp_path / "served"
    exported = run_zoo("export", str(default_run[0]), "--format", "saved_model", "--output", str(output))
    assert exported.returncode == 0, exported.stderr[-2000:]
    (tmp_path / "elsewhere").mkdir()
    (output / "linked").symlink_to(tmp_path / "elsewhere")
    (output / "private").mkdir()
    (output / "private" / "notes.txt").write_text("mine")
    (output / "private").chmod(0)
    try:
        result, _ = zoo_bound("export", str(default_run[0]), "--format", "saved_model", "--output", str(output), "--force")
        assert result.returncode == 2
        [line] = error_lines(result.stderr)
        assert re.fullmatch(rf"zoo: error: {re.escape(str(output))} holds {re.escape(str(output / 'private'))}, which {REFUSED.split(';')[0]}; "
                            "move it out, or choose another --output", line), line  # fmt: skip
    finally:
        (output / "private").chmod(0o755)
    assert (output / "private" / "notes.txt").read_text() == "mine"
    (output / "private" / "notes.txt").unlink()
    (output / "private").rmdir()
    linked = run_zoo("export", str(default_run[0]), "--format", "saved_model", "--output", str(output), "--force")
    assert linked.returncode == 2 and "holds files the zoo's export did not write (linked)" in linked.stderr, linked.stderr[-2000:]
    assert (output / "linked").is_symlink()


def test_a_plugin_installed_unreadable_is_listed_broken_not_fine_and_empty(tmp_path):
    """Python imports a package folder whose __init__.py it cannot read as an empty
    namespace package: a plugin installed unreadable to other users (`sudo pip install`
    under umask 077) was listed "ok", registering nothing."""
    import json

    site = tmp_path / "site"
    for name, package in (("locked", "locked_plugin"), ("bare", "bare_plugin")):
        info = site / f"{name}-1.0.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
        (info / "entry_points.txt").write_text(f"[zoo.plugins]\n{name} = {package}\n")
        (site / package).mkdir()
    (site / "locked_plugin" / "__init__.py").write_text("import zoo\n")
    (site / "locked_plugin").chmod(0)
    result, loaded_tensorflow = zoo_bound("list", "--json", env={"PYTHONPATH": str(site)})
    assert result.returncode == 0 and not loaded_tensorflow, result.stderr[-2000:]
    plugins = {p["distribution"]: p for p in json.loads(result.stdout)["plugins"]}
    assert plugins["locked"]["status"] == plugins["bare"]["status"] == "broken"
    assert re.fullmatch(
        rf"'locked_plugin' imports as an empty package: its folder {re.escape(str(site / 'locked_plugin'))} cannot be read by user \S+ "
        r"\(its permissions refuse it\); reinstall it readable to all \(umask 022\)", plugins["locked"]["error"]
    ), plugins["locked"]["error"]
    assert plugins["bare"]["error"] == "'bare_plugin' imports as an empty package (a folder without __init__.py), which has no hooks; point the entry point at a module"


def test_a_home_this_user_may_not_write_gets_no_matplotlib_warnings(default_run, tmp_path):
    """In a container run as a user whose home is not theirs (HOME=/) Matplotlib warned
    twice in every command that draws ("Matplotlib created a temporary cache directory")
    and built its font cache anew each time."""
    (tmp_path / "home").write_text("a file: nothing can be made under it")
    env = {k: v for k, v in os.environ.items() if k not in ("MPLCONFIGDIR", "XDG_CONFIG_HOME", "XDG_CACHE_HOME")}
    env.update(HOME=str(tmp_path / "home"), TMPDIR=str(tmp_path))
    for plot in ("first.png", "second.png"):
        result = subprocess.run(
            [sys.executable, "-m", "zoo", "compare", str(default_run[0]), "--plot", str(tmp_path / plot)],
            capture_output=True, text=True, env=env, timeout=120,
        )  # fmt: skip
        assert result.returncode == 0 and (tmp_path / plot).is_file(), result.stderr[-2000:]
        assert "matplotlib" not in (result.stdout + result.stderr).lower()
    private = tmp_path / f"zoo-matplotlib-{os.geteuid()}"
    assert private.is_dir() and private.stat().st_mode & 0o777 == 0o700 and any(private.iterdir())  # its font cache, kept


UNKNOWN_USER = 54321


def homeless(args: list[str], cwd: Path, temporary: Path) -> subprocess.CompletedProcess:
    """``zoo ARGS`` as a user id the machine's user database does not know, without HOME:
    a container started with ``--user 54321`` (in a user namespace that maps this user so)."""
    prefix = ["unshare", "--user", f"--map-user={UNKNOWN_USER}", f"--map-group={UNKNOWN_USER}"]
    hidden = ("HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "MPLCONFIGDIR", "KERAS_HOME", "ZOO_CACHE_DIR")
    env = {key: value for key, value in os.environ.items() if key not in hidden} | {"TMPDIR": str(temporary)}
    probe = subprocess.run([*prefix, sys.executable, "-c", "import os; print(os.path.expanduser('~'))"], capture_output=True, text=True, env=env)
    if probe.stdout.strip() != "~":
        pytest.skip(f"no way here to run as a user without a home ({probe.stderr.strip()[-200:]})")
    return subprocess.run([*prefix, sys.executable, "-m", "zoo", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def test_a_user_without_a_home_gets_no_folder_named_tilde_in_the_working_folder(default_run, tmp_path):
    """Without HOME and unknown to the user database, os.path.expanduser leaves "~" as it
    is: Keras (its settings) and the zoo (its listing cache) made a folder named "~" in the
    working folder, one `rm -rf ~` away from a real home. They go to private folders in the
    temporary folder, as Matplotlib's does."""
    work = tmp_path / "work"
    work.mkdir()
    for args in (["list"], ["evaluate", str(default_run[0])], ["compare", str(default_run[0]), "--plot", "runs.png"]):
        result = homeless(args, work, tmp_path)
        assert result.returncode == 0, result.stderr[-2000:]
        assert "matplotlib" not in result.stderr.lower(), result.stderr[-2000:]
    # A ~ typed for a setting (quoted, so the shell left it) names nothing: one line, no folder "~"
    refused = homeless(["train", "hydra.run.dir=~/runs/x"], work, tmp_path)
    assert refused.returncode == 2 and error_lines(refused.stderr) == [
        "zoo: error: hydra.run.dir=~/runs/x: ~ names no folder here (HOME is not set, and this user has no home); give the path in full"
    ], refused.stderr[-2000:]
    assert sorted(os.listdir(work)) == ["runs.png"]
    for purpose in ("cache", "keras", "matplotlib"):
        private = tmp_path / f"zoo-{purpose}-{UNKNOWN_USER}"
        assert private.is_dir() and private.stat().st_mode & 0o777 == 0o700 and any(private.iterdir()), purpose


def test_compare_passes_over_a_private_run_among_a_teams_and_says_so(default_run, tmp_path):
    """`zoo compare runs/` of a team's folder failed whole on one run its owner keeps private."""
    team = tmp_path / "team"
    for name in ("alice", "bob"):
        shutil.copytree(default_run[0], team / name)
    (team / "bob").chmod(0)
    try:
        result, _ = zoo_bound("compare", str(team))
        assert result.returncode == 0, result.stderr[-2000:]
        assert re.search(rf"zoo: warning: skipped {re.escape(str(team / 'bob'))}: it cannot be read by user \S+ \(its permissions refuse it\)", result.stderr)
        assert "alice" in result.stdout and "bob" not in result.stdout
        (team / "alice").chmod(0)
        assert_refused(["compare", str(team)], re.escape(str(team / "alice")) + " " + REFUSED)
        # One record of a run: its history (curves only) leaves the run in the table; its test
        # metrics' record passes the run over. Either had failed the whole comparison.
        (team / "alice").chmod(0o755)
        (team / "bob").chmod(0o755)
        (team / "bob" / "history.csv").chmod(0)
        result, _ = zoo_bound("compare", str(team))
        assert result.returncode == 0 and "bob" in result.stdout, result.stderr[-2000:]
        assert re.search(rf"zoo: warning: {re.escape(str(team / 'bob' / 'history.csv'))} cannot be read by user \S+ \(its permissions "
                         r"refuse it\): its run is compared without its curves", result.stderr), result.stderr  # fmt: skip
        (team / "bob" / "metrics.json").chmod(0)
        result, _ = zoo_bound("compare", str(team))
        assert result.returncode == 0 and "bob" not in result.stdout, result.stderr[-2000:]
        assert re.search(rf"skipped {re.escape(str(team / 'bob'))}: its metrics.json cannot be read by user \S+", result.stderr)
    finally:
        (team / "alice").chmod(0o755)
        (team / "bob").chmod(0o755)
        for name in ("history.csv", "metrics.json"):
            (team / "bob" / name).chmod(0o644)
