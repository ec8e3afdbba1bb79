"""Faults: a run killed with SIGKILL continues exactly where its last checkpoint stood; a
kill while saving loses nothing; a run directory is never shared; an unfinished run is
never taken for a finished one."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import error_lines, run_zoo
from test_file_datasets import write_pngs

STEPS_PER_EPOCH = 40  # digits' 1,257 training examples in batches of 32
# keep_checkpoints=last: the final position is read from the finished run's last checkpoint.
CNN = ["model=cnn_classifier", "model.filters=8", "trainer.epochs=3", "trainer.checkpoint_every=3", "trainer.deterministic=true",
       "trainer.keep_checkpoints=last"]  # fmt: skip
# The controls whose state a checkpoint must carry: accumulated gradients (checkpoints fall
# between updates), a plateau schedule and early stopping whose counters move every epoch
# (val_accuracy cannot rise by 0.99: each epoch after the first is a plateau; stopping comes
# after epoch 3 of 4, ending on epoch 1's weights), and pruning's masks (updated every 5 steps).
STEERED = [
    *CNN[:2], "trainer.epochs=4", *CNN[3:], "trainer.accumulate_steps=2", "trainer.lr_schedule=plateau",
    "trainer.plateau.patience=1", "trainer.plateau.monitor=val_accuracy", "trainer.plateau.min_delta=0.99",
    "trainer.early_stopping.patience=2", "trainer.early_stopping.monitor=val_accuracy", "trainer.early_stopping.min_delta=0.99",
    "loggers=[tensorboard,mlflow]", "trainer.pruning.sparsity=0.5", "trainer.pruning.frequency=5",
]  # fmt: skip


def checkpoint_steps(run_dir: Path, task: str = "") -> list[int]:
    folder = run_dir / "checkpoints" / task
    return sorted(int(m.group(1)) for p in folder.glob("step-*.npz") if (m := re.fullmatch(r"step-(\d+)\.npz", p.name)))


def start_zoo(args: list[str], cwd: Path, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "zoo", "train", *args],
        cwd=cwd,
        # A process that aborts prints every thread's Python stack (for a test's failure message).
        env={**os.environ, "PYTHONWARNINGS": "ignore::DeprecationWarning", "PYTHONFAULTHANDLER": "1", **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def kill_when(processes: list[subprocess.Popen], ready, timeout: float = 300) -> None:
    """SIGKILL every process as soon as ``ready()`` holds; fail if they end first."""
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            finished = [p for p in processes if p.poll() is not None]
            assert not finished, f"ended before the kill: {finished[0].stderr.read()[-3000:]}"
            assert time.monotonic() < deadline, "no checkpoint to kill at"
            time.sleep(0.01)
    finally:
        for process in processes:
            process.send_signal(signal.SIGKILL)
    for process in processes:
        assert process.wait(timeout=60) == -signal.SIGKILL
        process.stderr.close()


def final_position(run_dir: Path, task: str = "") -> tuple[dict, int]:
    """The newest checkpoint's position and the step counter of the (first) optimizer in it."""
    path = run_dir / "checkpoints" / task / f"step-{checkpoint_steps(run_dir, task)[-1]:09d}.npz"
    with np.load(path) as archive:
        paths = list(archive["paths"])
        counter = next(i for i, name in enumerate(paths) if name.endswith("/iteration"))
        return json.loads(str(archive["position"])), int(archive[f"v{counter}"])


def resumed_from(run_dir: Path) -> int:
    found = re.findall(r"resumed from step-(\d+)\.npz", (run_dir / "train.log").read_text())
    assert found, "the second attempt did not resume"
    return int(found[-1])


def test_a_run_killed_mid_epoch_continues_exactly_where_it_stopped(tmp_path):
    reference, attempt = tmp_path / "uninterrupted", tmp_path / "killed"
    result = run_zoo("train", *STEERED, f"hydra.run.dir={reference}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]

    first = start_zoo([*STEERED, f"hydra.run.dir={attempt}"], tmp_path)
    # In the middle of an epoch (metric totals and half-accumulated gradients in flight),
    # once the tracker run has started (mlflow.json names it).
    kill_when(
        [first],
        lambda: (attempt / "mlflow.json").exists() and any(s % STEPS_PER_EPOCH > 3 for s in checkpoint_steps(attempt)[-1:]),
    )
    killed_at = checkpoint_steps(attempt)[-1]
    assert killed_at % STEPS_PER_EPOCH and killed_at < 3 * STEPS_PER_EPOCH

    # Unfinished, and every command says so rather than using it.
    assert not (attempt / "metrics.json").exists()
    for command in (["evaluate", str(attempt)], ["export", str(attempt)], ["predict", str(attempt), "x.csv"]):
        failed = run_zoo(*command, cwd=tmp_path)
        [line] = error_lines(failed.stderr)
        assert failed.returncode == 2 and line.endswith(
            f"did not finish (no metrics.json); the zoo train command that started it continues it (its overrides are in "
            f"{attempt / '.hydra' / 'overrides.yaml'})"), command  # fmt: skip
    compared = run_zoo("compare", str(reference), str(attempt), cwd=tmp_path)
    assert compared.returncode == 0 and re.search(r"killed\s.*unfinished", compared.stdout), compared.stdout

    again = run_zoo("train", *STEERED, f"hydra.run.dir={attempt}", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert resumed_from(attempt) == killed_at
    position, optimizer_steps = final_position(attempt)
    assert position["epoch"] == 3 and position["step"] == 0
    assert optimizer_steps == 3 * STEPS_PER_EPOCH  # no batch replayed, none skipped
    # With op determinism, the run is bit for bit the uninterrupted one: the same weights,
    # the same per-epoch metrics (the interrupted epoch's running totals were restored).
    for name in ("metrics.json", "history.csv", "training.json"):
        assert (attempt / name).read_bytes() == (reference / name).read_bytes(), name
    training = json.loads((attempt / "training.json").read_text())
    assert training["early_stopping"]["stopped_epoch"] == 3
    assert abs(training["pruning"]["zero_kernel_weights"] - 0.5) < 1e-3  # pruned again after the best epoch's restore
    assert [row["lr"] for row in read_history(attempt)] == ["0.0010000000474974513", "0.0010000000474974513", "0.0005000000237487257"]  # lowered after epoch 2
    # The tracker run the killed attempt started is the one the resumed attempt finished.
    from zoo.hookspecs import RunInfo
    from zoo_plugins.loggers import MLflowConfig, read_mlflow

    tracked = read_mlflow(MLflowConfig(), RunInfo(run_dir=attempt, name="killed", params={}, spec=None, seed=0))
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("zoo").experiment_id
    assert len(client.search_runs([experiment], "attributes.run_name = 'killed'")) == 1
    for name, values in read_history(attempt)[0].items():
        if name != "epoch":
            assert tracked[name] == [float(row[name]) for row in read_history(attempt)], name

    # A finished run started again returns its metrics without training again.
    once_more = run_zoo("train", *STEERED, f"hydra.run.dir={attempt}", cwd=tmp_path)
    assert once_more.returncode == 0 and "TEST METRIC" in once_more.stdout
    assert once_more.stdout.splitlines()[0] == f"run directory: {attempt} (finished already: nothing to train)"
    assert checkpoint_steps(attempt)[-1] == 3 * STEPS_PER_EPOCH
    assert (attempt / "train.log").read_text().count("steps per epoch") == 2


@pytest.mark.slow
@pytest.mark.parametrize("model", ["gan", "vae"])
def test_models_with_their_own_training_step_resume_exactly(model, tmp_path):
    args = [f"model={model}", "dataset=digits", "trainer.epochs=2", "trainer.checkpoint_every=3", "trainer.deterministic=true",
            "trainer.keep_checkpoints=last"]  # fmt: skip
    reference, attempt = tmp_path / "uninterrupted", tmp_path / "killed"
    assert run_zoo("train", *args, f"hydra.run.dir={reference}", cwd=tmp_path).returncode == 0
    first = start_zoo([*args, f"hydra.run.dir={attempt}"], tmp_path)
    kill_when([first], lambda: any(s > 5 for s in checkpoint_steps(attempt)))
    again = run_zoo("train", *args, f"hydra.run.dir={attempt}", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert 5 < resumed_from(attempt) < 2 * STEPS_PER_EPOCH
    assert final_position(attempt)[1] == 2 * STEPS_PER_EPOCH
    if model == "gan":
        for name in ("metrics.json", "history.csv"):
            assert (attempt / name).read_bytes() == (reference / name).read_bytes(), name
        return
    # The VAE's evaluated total loss (only it) differs by a float32 ulp between processes,
    # resumed or not: its weights, its other numbers and every training number are exact.
    from test_distribution import final_digest

    assert final_digest(attempt) == final_digest(reference)
    for read in (read_history, lambda run: [json.loads((run / "metrics.json").read_text())]):
        for got, expected in zip(read(attempt), read(reference), strict=True):
            assert {k: v for k, v in got.items() if k not in LOOSE} == {k: v for k, v in expected.items() if k not in LOOSE}
            for key in LOOSE.intersection(got):
                assert float(got[key]) == pytest.approx(float(expected[key]), rel=1e-6)


LOOSE = {"loss", "val_loss"}


def read_history(run_dir: Path) -> list[dict]:
    import csv

    with (run_dir / "history.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize(
    "signal_name",
    ["SIGINT", pytest.param("SIGTERM", marks=pytest.mark.slow), pytest.param("SIGHUP", marks=pytest.mark.slow), "SIGUSR1",
     pytest.param("SIGUSR2", marks=pytest.mark.slow), pytest.param("SIGXCPU", marks=pytest.mark.slow)],  # fmt: skip
)  # SIGHUP: the terminal hung up (an ssh connection lost); it had killed the run with nothing said, in train.log either.
# SIGUSR1/2, SIGXCPU: a batch system's notice that the job's time is nearly up (SLURM's --signal=USR1@120, SGE's -notify,
# LSF's), `ulimit -t`: by default they end a process, and had killed the run where it stood, its last minutes lost.
def test_ctrl_c_or_preemption_saves_the_step_and_says_how_to_continue(signal_name, tmp_path):
    import shlex

    from zoo.arguments import hydra_quoted

    run_dir = tmp_path / "it's, mine"  # a folder Hydra's grammar reads only quoted: the printed command quotes it
    # Ten epochs: the signal, sent at the first one's end, lands in training also where an epoch takes 0.1 s.
    args = ["model=cnn_classifier", "model.filters=8", "trainer.epochs=10", f"hydra.run.dir={hydra_quoted(str(run_dir))}"]
    process = subprocess.Popen(
        [sys.executable, "-m", "zoo", "train", *args], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore::DeprecationWarning"},
        # as from a terminal: a suite started under nohup passes SIGHUP on ignored, which the zoo respects
        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL),
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while not checkpoint_steps(run_dir):  # the first epoch's end: training is under way
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()[-3000:]
        time.sleep(0.02)
    time.sleep(0.2)
    process.send_signal(getattr(signal, signal_name))
    out, err = process.communicate(timeout=120)
    assert process.returncode == 128 + getattr(signal, signal_name)
    assert out.splitlines()[0] == f"run directory: {run_dir}"
    [line] = error_lines(err)
    assert f"stopped by {signal_name}" in line and "saved in a checkpoint" in line
    assert line.removeprefix("zoo: error: ") in (run_dir / "train.log").read_text()
    stopped_at = checkpoint_steps(run_dir)[-1]
    assert 0 < stopped_at < 10 * STEPS_PER_EPOCH and not (run_dir / "metrics.json").exists()

    command = shlex.split(line.split("to continue: ")[1])
    assert command[:2] == ["zoo", "train"] and f"hydra.run.dir={hydra_quoted(str(run_dir))}" in command
    again = run_zoo(*command[1:], cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert resumed_from(run_dir) == stopped_at and (run_dir / "metrics.json").is_file()


def test_a_notice_signal_someone_else_handles_stays_theirs():
    """Under submitit, SIGUSR2 is submitit's (it checkpoints and requeues the job): training
    takes over only the notice signals nobody handles, and gives them back after."""
    from zoo.training import SignalCatcher

    def submitits(number, frame):
        pass

    before = {name: signal.getsignal(getattr(signal, name)) for name in ("SIGUSR1", "SIGUSR2")}
    signal.signal(signal.SIGUSR1, signal.SIG_DFL)
    signal.signal(signal.SIGUSR2, submitits)
    try:
        catcher = SignalCatcher()
        assert signal.getsignal(signal.SIGUSR2) is submitits and signal.getsignal(signal.SIGUSR1) == catcher._note
        catcher.release()
        assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL
    finally:
        for name, handler in before.items():
            signal.signal(getattr(signal, name), handler)


def test_a_signal_a_library_turned_into_its_own_error_still_stops_the_command(monkeypatch, capsys):
    """SIGTERM landing inside Matplotlib while `zoo explain` drew: Matplotlib caught the
    exception raised in its midst and failed in its own words ("matplotlib failed:
    ValueError: Invalid affine transformation matrix", exit 2). The signal is what ends it."""
    from zoo import cli

    def drawing(args):
        cli.TERMINATED.append(signal.SIGTERM)  # as the handler does, before the library's own error
        raise ValueError("Invalid affine transformation matrix")

    monkeypatch.setattr(cli, "list_command", drawing)
    monkeypatch.setattr(cli, "TERMINATED", [])
    with pytest.raises(SystemExit) as ended:
        cli.main(["list"])
    assert ended.value.code == 128 + signal.SIGTERM and capsys.readouterr().err.strip() == "zoo: stopped by SIGTERM"


def test_sigterm_outside_the_training_loop_is_one_line_too(tmp_path):
    """While the run starts up (TensorFlow loading) SIGTERM had killed it with nothing said;
    it stops in one line, leaving no folder, as Ctrl-C does."""
    run_dir = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "zoo", "train", "trainer.epochs=1", f"hydra.run.dir={run_dir}"], cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert process.stdout.readline() == f"run directory: {run_dir}\n"  # TensorFlow loads next, for seconds
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM and err.strip() == "zoo: stopped by SIGTERM", err[-2000:]
    assert not run_dir.exists()


@pytest.mark.slow
def test_sigterm_between_the_folds_of_a_cross_validation_says_how_to_continue(tmp_path):
    """Between two folds (the next one's data and model being made) or after a fold's
    training (its records being written), SIGTERM had ended the run unsaid, in train.log too."""
    import shlex

    run_dir = tmp_path / "cv"
    args = ["model.filters=4", "metrics=[accuracy]", "cv.folds=2", "trainer.epochs=1", f"hydra.run.dir={run_dir}"]
    process = subprocess.Popen(
        [sys.executable, "-m", "zoo", "train", *args], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while not (run_dir / "folds" / "1" / "metrics.json").exists():  # the first fold is done: the second starts
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()[-3000:]
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, err[-2000:]
    [line] = error_lines(err)
    assert "stopped by SIGTERM" in line and line.removeprefix("zoo: error: ") in (run_dir / "train.log").read_text()
    again = run_zoo(*shlex.split(line.split("to continue: ")[1])[1:], cwd=tmp_path)
    assert again.returncode == 0 and (run_dir / "metrics.json").is_file(), again.stderr[-2000:]


def test_a_closed_output_stops_the_run_with_a_checkpoint(tmp_path):
    """``zoo train | head -1``: once the pipe's reader has left, the next progress line had
    failed the run ("zoo: error: [Errno 32] Broken pipe", exit 2) with no checkpoint of the
    step it was at. Now it stops as on SIGPIPE, saved, and says how to continue."""
    import shlex

    run_dir = tmp_path / "piped"
    args = ["model=cnn_classifier", "model.filters=4", "metrics=[accuracy]", "trainer.epochs=20", f"hydra.run.dir={run_dir}"]
    process = subprocess.Popen(
        [sys.executable, "-m", "zoo", "train", *args], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore::DeprecationWarning"},
    )  # fmt: skip
    assert process.stdout.readline() == f"run directory: {run_dir}\n"
    process.stdout.close()  # as head does after its line
    err = process.stderr.read()
    assert process.wait(timeout=300) == 128 + signal.SIGPIPE, err[-3000:]
    [line] = error_lines(err)
    assert "stopped by SIGPIPE (the standard output's reader left) at " in line and "saved in a checkpoint" in line
    assert "Traceback" not in err and line.removeprefix("zoo: error: ") in (run_dir / "train.log").read_text()
    stopped_at = checkpoint_steps(run_dir)[-1]
    assert 0 < stopped_at < 20 * STEPS_PER_EPOCH and not (run_dir / "metrics.json").exists()
    command = shlex.split(line.split("to continue: ")[1])
    again = run_zoo(*command[1:-1], "trainer.epochs=2", command[-1], cwd=tmp_path)  # two epochs: a short test
    assert again.returncode == 0, again.stderr[-3000:]
    assert resumed_from(run_dir) == stopped_at and (run_dir / "metrics.json").is_file()


@pytest.mark.slow  # a run trained to its end
def test_a_run_started_with_nohup_ignores_sighup(tmp_path):
    run_dir = tmp_path / "nohup"
    args = ["model=cnn_classifier", "model.filters=4", "metrics=[accuracy]", "trainer.epochs=3", f"hydra.run.dir={run_dir}"]
    process = subprocess.Popen(
        [sys.executable, "-m", "zoo", "train", *args], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL, text=True, preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN),  # as nohup does
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while not checkpoint_steps(run_dir):
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()[-3000:]
        time.sleep(0.02)
    process.send_signal(signal.SIGHUP)
    err = process.communicate(timeout=300)[1]
    assert process.returncode == 0, err[-3000:]
    assert (run_dir / "metrics.json").is_file()


def test_fewer_epochs_than_the_checkpoint_holds_are_refused_and_change_nothing(tmp_path):
    run_dir = tmp_path / "run"
    args = ["model=cnn_classifier", "model.filters=4", "metrics=[accuracy]", "loggers=none", "trainer.keep_checkpoints=last"]
    assert run_zoo("train", *args, "trainer.epochs=2", f"hydra.run.dir={run_dir}", cwd=tmp_path).returncode == 0
    (run_dir / "metrics.json").unlink()  # as if killed after its last checkpoint
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file() and p.name != "train.log"}
    refused = run_zoo("train", *args, "trainer.epochs=1", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert refused.returncode == 2
    assert error_lines(refused.stderr) == [
        f"zoo: error: {run_dir} holds a checkpoint at the end of epoch 2, further than trainer.epochs=1; "
        "continue it with trainer.epochs=2 or more, or start a new run in another hydra.run.dir"
    ]
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file() and p.name != "train.log"} == before
    assert checkpoint_steps(run_dir) == [2 * STEPS_PER_EPOCH]


def test_an_attempt_that_kept_no_training_takes_the_fix_its_error_names_in_the_same_folder(tmp_path):
    """A run that diverges in its first epoch says "lower trainer.learning_rate"; run so in
    the same folder, it had been refused as another run ("holds a run with
    trainer.learning_rate=1e9, not 0.001"), its folder kept for nothing. With no checkpoint
    there is nothing to continue: it starts anew with the settings given, and says so."""
    run_dir = tmp_path / "run"
    args = ["metrics=[accuracy]", "loggers=none", "trainer.epochs=1", f"hydra.run.dir={run_dir}"]
    diverged = run_zoo("train", *args, "trainer.learning_rate=1e9", cwd=tmp_path)
    assert diverged.returncode == 2 and "lower trainer.learning_rate" in diverged.stderr, diverged.stderr[-2000:]
    assert not (run_dir / "checkpoints").exists() and (run_dir / "config.yaml").is_file()
    fixed = run_zoo("train", *args, "trainer.learning_rate=0.001", cwd=tmp_path)
    assert fixed.returncode == 0, fixed.stderr[-2000:]
    # A logged warning, said as the zoo's others are (it had been "[date][zoo.run][WARNING] - ..." on stdout).
    assert ("zoo: warning: " + run_dir.name) not in fixed.stdout
    assert ("zoo: warning: " + str(run_dir) + ": its earlier attempt saved no training (no checkpoint), so it starts anew with "
            "trainer.learning_rate=0.001 (was 1000000000.0)") in fixed.stderr.splitlines(), fixed.stderr[-2000:]  # fmt: skip
    assert "learning_rate: 0.001" in (run_dir / "config.yaml").read_text() and (run_dir / "metrics.json").is_file()
    # Once an epoch is kept, other settings are another run's, as before.
    (run_dir / "metrics.json").unlink()
    refused = run_zoo("train", *args, "trainer.learning_rate=0.01", cwd=tmp_path)
    assert refused.returncode == 2
    assert error_lines(refused.stderr) == [
        f"zoo: error: {run_dir} holds a run with trainer.learning_rate=0.001, not 0.01; to continue it, use its config; "
        "for a new run, choose another hydra.run.dir"
    ]
    # So are a cross-validation's once a fold kept anything (its parent has no checkpoint of its own).
    from zoo.run import saved_no_training

    fold = tmp_path / "cv" / "folds" / "2"
    (fold / "checkpoints").mkdir(parents=True)
    assert saved_no_training(tmp_path / "cv")
    (fold / "checkpoints" / "step-000000040.npz").write_bytes(b"")
    assert not saved_no_training(tmp_path / "cv")


NO_LOCKS = """
import errno, fcntl, sys

def cannot_lock(*args):
    raise OSError(errno.ENOSYS, "Function not implemented")  # Lustre mounted without its flock option

fcntl.flock = cannot_lock
from zoo.cli import main

main(sys.argv[1:])
"""


def test_a_file_system_that_cannot_lock_files_trains_and_says_so(tmp_path):
    """Lustre mounted without flock (ENOSYS), NFS without its lock daemon (ENOLCK): every
    zoo train there had failed on "[Errno 38] Function not implemented", naming nothing."""
    images = tmp_path / "images"
    for name, value in (("dark", 30), ("light", 220)):
        write_pngs(images / name, 6, value)
    result = subprocess.run(
        [sys.executable, "-c", NO_LOCKS, "train", "model=cnn_classifier", "model.filters=4", "dataset=image_folder", f"dataset.path={images}",
         "dataset.image_size=[8,8]", f"dataset.cache={tmp_path / 'cache' / 'c'}", "trainer.epochs=1", "metrics=[accuracy]",
         f"hydra.run.dir={tmp_path / 'run'}"], capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0 and (tmp_path / "run" / "metrics.json").is_file(), result.stderr[-3000:]
    said = (result.stdout + result.stderr + (tmp_path / "run" / "train.log").read_text())
    for folder in (tmp_path / "run", tmp_path / "cache"):
        assert f"the file system of {folder} cannot lock files (Function not implemented): two commands using it at once are not kept apart" in said


def test_a_run_in_use_is_refused_before_hydra_writes_into_its_folder(tmp_path):
    """A second command given the folder of a run that is training (a requeued job, a typo
    in a loop) had Hydra write its own records over the running run's (.hydra/ saying
    trainer.epochs=7 of a run of 1000), and its refusal into the run's train.log."""
    run_dir = tmp_path / "run"
    args = ["model=cnn_classifier", "model.filters=4", "metrics=[accuracy]", "loggers=none", f"hydra.run.dir={run_dir}"]
    process = start_zoo([*args, "trainer.epochs=1000"], tmp_path)
    try:
        deadline = time.monotonic() + 120
        while not checkpoint_steps(run_dir):  # training, its lock held
            assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()[-3000:]
            time.sleep(0.05)
        records = {p: p.read_bytes() for p in (run_dir / ".hydra").iterdir()}
        second = run_zoo("train", *args, "trainer.epochs=7", cwd=tmp_path)
        assert second.returncode == 2
        assert error_lines(second.stderr) == [f"zoo: error: {run_dir} is in use by another zoo process; wait for it to end, or choose another hydra.run.dir"]
        assert {p: p.read_bytes() for p in (run_dir / ".hydra").iterdir()} == records
        assert "stopped" not in (run_dir / "train.log").read_text()
        # The commands that read a finished run say it is still training ("did not finish;
        # train it to the end first" had sent the user to start it a second time).
        for command in (["evaluate", str(run_dir)], ["train", *args[:-1], f"trainer.init_from={run_dir}", f"hydra.run.dir={tmp_path / 'warm'}"]):
            reader = run_zoo(*command, cwd=tmp_path)
            assert reader.returncode == 2 and error_lines(reader.stderr)[0].endswith(
                "is still training (no metrics.json yet); wait for it to end"), reader.stderr[-2000:]  # fmt: skip
    finally:
        process.kill()
        process.communicate()


def test_two_commands_given_one_new_folder_at_once_leave_the_winners_run_whole(tmp_path):
    """Both passed the check before Hydra (the folder was not there yet); the one refused at
    the lock ("in use by another zoo process") then removed the folder as unused, under the
    other's training, which failed in turn ("moved or deleted while it trained"): both lost."""
    run_dir = tmp_path / "run"
    args = ["model=mlp_classifier", "metrics=[accuracy]", "loggers=none", "trainer.epochs=1", f"hydra.run.dir={run_dir}"]
    processes = [start_zoo([*args, f"seed={seed}"], tmp_path) for seed in (1, 2)]
    results = [(p.wait(timeout=240), p.stderr.read()) for p in processes]
    assert sorted(code for code, _ in results) == [0, 2], [err[-2000:] for _, err in results]
    [refused] = [err for code, err in results if code == 2]
    assert error_lines(refused) == [f"zoo: error: {run_dir} is in use by another zoo process; wait for it to end, or choose another hydra.run.dir"]
    assert (run_dir / "metrics.json").is_file() and "in use" not in (run_dir / "train.log").read_text()
    for process in processes:
        process.stderr.close()


@pytest.mark.slow  # a run, moved, then continued
def test_a_run_whose_folder_is_moved_while_it_trains_stops_saying_so_and_continues_where_it_went(tmp_path):
    """Moved (or deleted) mid-run, the run had written a stray folder at the old path (part
    of history.csv) and stopped on "No such file or directory", blamed on a full disk."""
    run_dir, moved = tmp_path / "run", tmp_path / "moved"
    args = ["model=cnn_classifier", "model.filters=4", "metrics=[accuracy]", "loggers=none"]
    process = start_zoo([*args, "trainer.epochs=1000", f"hydra.run.dir={run_dir}"], tmp_path)
    deadline = time.monotonic() + 120
    while not checkpoint_steps(run_dir):
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()[-3000:]
        time.sleep(0.05)
    run_dir.rename(moved)
    err = process.communicate(timeout=120)[1]
    assert process.returncode == 2, err[-3000:]
    said = f"zoo: error: the run's folder {run_dir} was moved or deleted while it trained"
    assert error_lines(err)[0].startswith(said), err[-3000:]
    assert not run_dir.exists() and said.removeprefix("zoo: error: ") in (moved / "train.log").read_text()
    done = max(checkpoint_steps(moved)) // STEPS_PER_EPOCH
    continued = run_zoo("train", *args, f"trainer.epochs={done + 1}", f"hydra.run.dir={moved}", cwd=tmp_path)
    assert continued.returncode == 0, continued.stderr[-3000:]
    assert (moved / "metrics.json").is_file()


@pytest.mark.slow  # two short trainings
def test_a_run_continued_on_other_data_says_so(tmp_path):
    """Images added to the folder between a run's attempts: the split it goes on with is not
    the one it began with. It goes on (the data is the user's to change) and says what
    changed, with the first attempt's report still in data.json until then."""
    import shutil

    from zoo_plugins.image_folder import write_example_folder

    data = write_example_folder(tmp_path / "data")
    run_dir = tmp_path / "run"
    args = ["model=mlp_classifier", "dataset=image_folder", *(f"dataset.{k}={v}" for k, v in data.items()), "metrics=[accuracy]",
            "trainer.keep_checkpoints=last", f"hydra.run.dir={run_dir}"]  # fmt: skip
    first = run_zoo("train", *args, "trainer.epochs=1", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    (run_dir / "metrics.json").unlink()  # as if killed after its last checkpoint
    folder = Path(data["path"])
    for image in sorted(folder.rglob("*.png"))[:4]:
        shutil.copy(image, image.with_name(f"copy-{image.name}"))
    again = run_zoo("train", *args, "trainer.epochs=2", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    [warning] = [line for line in again.stderr.splitlines() if "the data is not what this run read when it started" in line]
    assert "images: {" in warning and "then" in warning and "now" in warning
    (run_dir / "metrics.json").unlink()
    unchanged = run_zoo("train", *args, "trainer.epochs=3", cwd=tmp_path)  # the same data as the last attempt: no word
    assert unchanged.returncode == 0 and "the data is not what" not in unchanged.stderr, unchanged.stderr[-2000:]
    assert resumed_from(run_dir) > 0  # it did go on from a checkpoint
    # Evaluated on its data as it was: no word; on data changed since, its test split is drawn
    # anew, and may hold examples it trained on (the metrics had been printed quietly).
    evaluated = run_zoo("evaluate", str(run_dir), cwd=tmp_path)
    assert evaluated.returncode == 0 and "the data is not what" not in evaluated.stderr, evaluated.stderr[-2000:]
    for image in sorted(folder.rglob("*.png"))[-3:]:
        shutil.copy(image, image.with_name(f"more-{image.name}"))
    evaluated = run_zoo("evaluate", str(run_dir), cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    [warning] = [line for line in evaluated.stderr.splitlines() if "the data is not what this run trained on" in line]
    assert "its test split is drawn anew from the data as it is now and may hold examples it trained on" in warning


def limit_file_size(limit: int):
    """For a subprocess: files it writes cannot grow beyond ``limit`` bytes (EFBIG, what a
    disk that is full for big files looks like to the writer)."""
    import resource

    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


@pytest.mark.slow  # three short trainings
def test_a_full_disk_while_checkpointing_or_saving_the_model_leaves_a_resumable_run(tmp_path):
    import resource

    job = ["trainer.optimizer=sgd", "trainer.epochs=3"]  # its checkpoints: a little smaller than its model
    run_dir = tmp_path / "run"
    # Mid-run: the disk fills after the first checkpoint.
    process = start_zoo([*job, f"hydra.run.dir={run_dir}"], tmp_path)
    deadline = time.monotonic() + 300
    while not checkpoint_steps(run_dir) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    resource.prlimit(process.pid, resource.RLIMIT_FSIZE, (100_000, 100_000))
    err = process.communicate(timeout=300)[1]
    assert process.returncode == 2, err[-5000:]
    assert len(error_lines(err)) == 1 and "Traceback" not in err, err[-3000:]
    assert error_lines(err)[0].startswith(f"zoo: error: could not write a checkpoint in {run_dir / 'checkpoints'} (File too large); ")
    # A file-size limit stands in for a full disk; its own fix is named (it had been "free space").
    assert error_lines(err)[0].endswith(": raise the limit on file sizes (ulimit -f; a FAT disk holds none over 4 GB), then run the same command to continue from there")
    assert "the run keeps its checkpoint at the end of epoch 1" in err
    again = run_zoo("train", *job, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert again.returncode == 0 and (run_dir / "metrics.json").is_file(), again.stderr[-3000:]
    assert "continuing from the end of epoch 1 (checkpoint step-" in again.stdout

    # At the end: the checkpoints fit, the model does not.
    other = tmp_path / "other"
    result = subprocess.run(
        [sys.executable, "-m", "zoo", "train", *job, "trainer.epochs=1", f"hydra.run.dir={other}"], cwd=tmp_path,
        capture_output=True, text=True, stdin=subprocess.DEVNULL, preexec_fn=limit_file_size(549_000), timeout=300,
    )  # fmt: skip
    checkpoint = max((other / "checkpoints").glob("step-*.npz")).stat().st_size
    assert checkpoint < 549_000, f"the checkpoint ({checkpoint} bytes) no longer fits under the limit: raise it"
    assert result.returncode == 2, result.stderr[-3000:]
    assert error_lines(result.stderr) == [
        f"zoo: error: could not write {other / 'model.keras'} (File too large); the run keeps its checkpoint at the "
        f"end of epoch 1: raise the limit on file sizes (ulimit -f; a FAT disk holds none over 4 GB), then run the same command to continue from there"
    ], result.stderr[-3000:]
    assert not (other / "model.keras").exists() and not (other / "metrics.json").exists()
    assert not [p for p in other.iterdir() if p.name.startswith(".model")]  # no half-written file left
    finished = run_zoo("train", *job, "trainer.epochs=1", f"hydra.run.dir={other}", cwd=tmp_path)
    assert finished.returncode == 0 and (other / "model.keras").is_file(), finished.stderr[-3000:]

    # At the start: Hydra's own records of the run do not fit (its error names no file).
    first = tmp_path / "first"
    result = subprocess.run(
        [sys.executable, "-m", "zoo", "train", *job, "trainer.epochs=1", f"hydra.run.dir={first}"], cwd=tmp_path,
        capture_output=True, text=True, stdin=subprocess.DEVNULL, preexec_fn=limit_file_size(500), timeout=300,
    )  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert error_lines(result.stderr) == [
        "zoo: error: could not write a file (File too large); raise the limit on file sizes (ulimit -f; a FAT disk holds none over 4 GB), or write elsewhere, then run the command again"
    ]
    again = run_zoo("train", *job, "trainer.epochs=1", f"hydra.run.dir={first}", cwd=tmp_path)
    assert again.returncode == 0 and (first / "model.keras").is_file(), again.stderr[-3000:]


def test_a_checkpoint_declaring_more_than_it_holds_is_refused_before_numpy_allocates_it(tmp_path, caplog):
    """NumPy allocates what an array's header declares, then reads: a damaged or crafted
    checkpoint claiming 40 GB in a 1 MB member would exhaust memory (the kernel kills the run).
    It is refused as unreadable, and a run with no readable checkpoint says it starts over."""
    import io
    import zipfile

    from zoo.checkpoints import Checkpoints
    from zoo.errors import ZooError

    checkpoints = Checkpoints(tmp_path)
    checkpoints.folder.mkdir(parents=True)
    position = json.dumps({"epoch": 1, "step": 0, "steps_per_epoch": 40})
    path = checkpoints.path(40)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        buffer = io.BytesIO()
        np.lib.format.write_array(buffer, np.array(position))
        archive.writestr("position.npy", buffer.getvalue())
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (10_000_000_000,)})
        archive.writestr("v0.npy", header.getvalue() + bytes(2**20))
    assert checkpoints.newest_position().epoch == 1  # the position alone still reads
    with pytest.raises(ZooError, match=r"is unreadable \(v0.npy declares 37.3 GB but holds 1.0 MB\)"):
        checkpoints.load(40)
    with caplog.at_level("WARNING"):
        assert checkpoints.latest() is None
    assert "reads back whole: the run starts again from its first epoch" in caplog.text


def test_a_checkpoint_whose_metric_totals_have_another_form_resumes_the_training(tmp_path, caplog):
    """A run interrupted mid-epoch under a version whose metrics kept other totals (a
    confusion matrix of n x n where n x 3 counts are kept now) had been refused as "another
    model", its training lost: the weights and the optimizer carry on, the totals start
    afresh, and the log says so. A model of other shapes is still refused."""
    import keras

    import zoo
    from zoo.checkpoints import Checkpoints, Position, restore, training_state
    from zoo.errors import ZooError

    spec = zoo.DataSpec(zoo.CLASSIFICATION, (4,), num_classes=3)
    x, y = np.random.default_rng(0).normal(size=(8, 4)).astype("float32"), np.arange(8) % 3

    def trained(seed: int, inputs: int = 4):
        keras.utils.set_random_seed(seed)
        model = keras.Sequential([keras.Input((inputs,)), keras.layers.Dense(3, activation="softmax")])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=[zoo.create_metric("f1", spec)])
        model.train_on_batch(np.resize(x, (8, inputs)), y)
        return model, training_state(model)

    saved, state = trained(0)
    checkpoints = Checkpoints(tmp_path)
    checkpoints.save(state, Position(0, 1, 4), metrics=True)
    checkpoints.wait()
    path, _, arrays = checkpoints.load(1)
    totals = range(state.metrics_from, len(state))
    assert totals and all(arrays[f"v{i}"].any() for i in totals)
    for i in totals:
        arrays[f"v{i}"] = np.ones((3, 3))  # the earlier form

    model, fresh = trained(1)
    with caplog.at_level("WARNING"):
        restore(fresh, arrays, path)
    assert "its metric totals are of another form" in caplog.text
    for a, b in zip(saved.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert int(model.optimizer.iterations) == int(saved.optimizer.iterations)
    assert not any(np.asarray(fresh[i]).any() for i in totals)

    _, wider = trained(1, inputs=5)
    with pytest.raises(ZooError, match="start a new run"):
        restore(wider, arrays, path)


def test_a_stopped_run_continues_after_an_upgrade_added_settings_at_their_defaults(tmp_path, caplog):
    """A requeued job that installs the newest keras-zoo (or plugin) composes settings its
    stopped run never recorded: it had been refused as another run ("holds a run with
    trainer.x=None, not 0.0"), and could never continue. A new setting at its default goes
    on (and is logged); given another value, or a setting the code no longer has, or an item
    the run did not have, it is refused naming the setting."""
    import logging

    import yaml

    from zoo.config import compose, plan_run
    from zoo.errors import ZooError
    from zoo.run import claim_run_dir, recorded_config

    def claim(recorded: dict, *overrides: str):
        run_dir = tmp_path / f"run{len(list(tmp_path.iterdir()))}"
        (run_dir / "checkpoints").mkdir(parents=True)  # stopped in training: a run that kept nothing would start anew
        (run_dir / "checkpoints" / "step-000000001.npz").write_bytes(b"")
        (run_dir / "config.yaml").write_text(yaml.safe_dump(recorded))
        cfg = compose(["model=mlp_classifier", *overrides])
        plan = plan_run(cfg)
        return claim_run_dir(run_dir, recorded_config(cfg, plan), plan)

    cfg = compose(["model=mlp_classifier"])
    current = recorded_config(cfg, plan_run(cfg))
    older = yaml.safe_load(yaml.safe_dump(current))
    del older["trainer"]["label_smoothing"], older["model"]["batch_norm"]  # as a version without them recorded it
    with caplog.at_level(logging.INFO, logger="zoo.run"):
        assert claim(older) is None
    assert "at their defaults: model.batch_norm=False, trainer.label_smoothing=0.0" in caplog.text

    with pytest.raises(ZooError, match=r"holds a run with no trainer.label_smoothing \(given 0.1; its default 0.0 would continue it\)"):
        claim(older, "trainer.label_smoothing=0.1")
    removed = {**current, "model": {**current["model"], "units": 32}}  # a setting the plugin has since dropped
    with pytest.raises(ZooError, match=r"holds a run with model.units=32, a setting this config does not have"):
        claim(removed)
    fewer_metrics = {**current, "metrics": {"accuracy": current["metrics"]["accuracy"]}}
    with pytest.raises(ZooError, match=r"holds a run with no metrics.auc"):
        claim(fewer_metrics)


def test_a_stopped_run_is_not_continued_on_data_whose_classes_moved(tmp_path):
    """A class folder renamed between two attempts (dog -> a_dog: now first) kept the
    same config and image counts: the run went on from its checkpoint with every label
    meaning the other class, and spec.json was written over with the new names."""
    import dataclasses
    import shutil

    import yaml

    from zoo.config import compose, plan_run
    from zoo.errors import ZooError
    from zoo.run import claim_run_dir, recorded_config

    from conftest import tiny_overrides

    data = tmp_path / "pets"
    shutil.copytree(tiny_overrides("image_folder")["path"], data)
    overrides = ["model=mlp_classifier", "dataset=image_folder", f"dataset.path={data}"]
    cfg = compose(overrides)
    plan = plan_run(cfg)
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "step-000000039.npz").write_bytes(b"")
    (run_dir / "config.yaml").write_text(yaml.safe_dump(recorded_config(cfg, plan)))
    (run_dir / "spec.json").write_text(json.dumps(dataclasses.asdict(plan.spec)))
    assert claim_run_dir(run_dir, recorded_config(cfg, plan), plan) is None  # the data as it began: goes on

    first, second = plan.spec.class_names
    (data / second).rename(data / f"0_{second}")  # now sorted first
    cfg = compose(overrides)
    moved = plan_run(cfg)
    with pytest.raises(ZooError, match=rf"began on data whose class_names was \['{first}', '{second}'\], and the data now gives "
                                       rf"\['0_{second}', '{first}'\]: its checkpoint's outputs \(one per class, in order\)"):  # fmt: skip
        claim_run_dir(run_dir, recorded_config(cfg, moved), moved)


FAULTY_STORAGE = """
import errno, os, sys
number, call, after, name = getattr(errno, sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
real, calls = getattr(os, call), []
def failing(*args, **kwargs):  # from the (after + 1)th call on (for a file of that name), as a disk going bad
    if str(args[-1]).endswith(name):
        calls.append(args)
    if len(calls) > after:
        raise OSError(number, os.strerror(number))
    return real(*args, **kwargs)
setattr(os, call, failing)
from zoo.cli import main
sys.exit(main(sys.argv[5:]))
"""


@pytest.mark.parametrize(
    "failure, call, after, name, line",
    [
        # A checkpoint's fsync, after the first epoch's had gone through.
        ("EIO", "fsync", 1, "", "could not write a checkpoint in {run}/checkpoints (Input/output error); the run keeps its "
         "checkpoint at the end of epoch 1: check the disk, which reported an I/O error (dmesg says which), then run the "
         "same command to continue from there"),  # fmt: skip
        # The model, as its file takes its name at the end.
        ("ESTALE", "replace", 0, "model.keras", "{run}/model.keras: Stale file handle; the run keeps its checkpoint at the end of epoch 2: "
         "mount the network or FUSE file system that holds it again, then run the same command to continue from there"),
    ],
)
def test_a_failing_disk_or_a_network_file_system_gone_is_named_with_its_own_fix(tmp_path, failure, call, after, name, line):
    """A disk's I/O error and an NFS mount gone stale had been "could not write ... ; free
    space" (the checkpoint) or "model.keras: Stale file handle" with no word of the run."""
    run_dir = tmp_path / "run"
    job = ["train", "model=mlp_classifier", "trainer.epochs=2", "trainer.progress=off", f"hydra.run.dir={run_dir}"]
    result = subprocess.run(
        [sys.executable, "-c", FAULTY_STORAGE, failure, call, str(after), name, *job],
        cwd=tmp_path, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2 and error_lines(result.stderr) == ["zoo: error: " + line.format(run=run_dir)], result.stderr[-3000:]
    again = run_zoo(*job, cwd=tmp_path)  # the disk back: the run continues
    assert again.returncode == 0 and "continuing from the end of epoch" in again.stdout, again.stderr[-3000:]


def test_a_file_unreadable_on_a_failing_disk_names_the_fix_and_so_does_tensorflows_reading_of_one(tmp_path):
    import errno

    from zoo.artifacts import cannot_read
    from zoo.run import input_failures_in_one_line

    line = str(cannot_read(tmp_path / "model.keras", OSError(errno.EIO, os.strerror(errno.EIO))))
    assert line == f"{tmp_path / 'model.keras'} cannot be read (Input/output error); check the disk, which reported an I/O error (dmesg says which), then run the command again"

    class ReadFileError(Exception):  # as tf.errors.OpError carries it: a code and text, no errno
        error_code = 2

    with pytest.raises(OSError) as raised:
        with input_failures_in_one_line(tmp_path):
            raise ReadFileError("{{function_node __wrapped__IteratorGetNext}} /data/cat/1.png; Stale file handle [[{{node ReadFile}}]]")
    assert (raised.value.errno, raised.value.filename) == (errno.ESTALE, "/data/cat/1.png")


def test_what_an_older_datasets_report_did_not_say_is_not_taken_for_changed_data(tmp_path, recwarn):
    """A run begun before the image folder listed copies of training images: continued, its
    data.json lacks the key the report now has. Data is changed where a key it had differs."""
    from zoo.errors import InputWarning
    from zoo.run import warn_of_changed_data

    before = {"images": {"train": 10, "test": 2}, "skipped": []}
    warn_of_changed_data(before, {**before, "test_copies_of_training_images": [["/d/a/1.png", "/d/a/2.png"]]}, tmp_path)
    assert not [w for w in recwarn if issubclass(w.category, InputWarning)]
    with pytest.warns(InputWarning, match=r"the data is not what this run read when it started \(images: .* then, .* now\)"):
        warn_of_changed_data(before, {**before, "images": {"train": 11, "test": 2}}, tmp_path)
