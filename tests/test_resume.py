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

STEPS_PER_EPOCH = 40  # digits' 1,257 training examples in batches of 32
CNN = ["model=cnn_classifier", "model.filters=8", "trainer.epochs=3", "trainer.checkpoint_every=3", "trainer.deterministic=true"]


def checkpoint_steps(run_dir: Path, task: str = "") -> list[int]:
    folder = run_dir / "checkpoints" / task
    return sorted(int(m.group(1)) for p in folder.glob("step-*.npz") if (m := re.fullmatch(r"step-(\d+)\.npz", p.name)))


def start_zoo(args: list[str], cwd: Path, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "zoo", "train", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONWARNINGS": "ignore::DeprecationWarning", **(env or {})},
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
    result = run_zoo("train", *CNN, f"hydra.run.dir={reference}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]

    # Killed in its second epoch, some steps after a checkpoint.
    first = start_zoo([*CNN, f"hydra.run.dir={attempt}"], tmp_path)
    kill_when([first], lambda: any(s > STEPS_PER_EPOCH + 3 for s in checkpoint_steps(attempt)))
    killed_at = checkpoint_steps(attempt)[-1]
    assert STEPS_PER_EPOCH < killed_at < 2 * STEPS_PER_EPOCH

    # Unfinished, and every command says so rather than using it.
    assert not (attempt / "metrics.json").exists()
    for command in (["evaluate", str(attempt)], ["export", str(attempt)], ["predict", str(attempt), "x.csv"]):
        failed = run_zoo(*command, cwd=tmp_path)
        assert failed.returncode == 2 and "did not finish" in error_lines(failed.stderr)[0], command
    compared = run_zoo("compare", str(reference), str(attempt), cwd=tmp_path)
    assert compared.returncode == 0 and re.search(r"killed\s.*unfinished", compared.stdout), compared.stdout

    again = run_zoo("train", *CNN, f"hydra.run.dir={attempt}", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert resumed_from(attempt) == killed_at
    position, optimizer_steps = final_position(attempt)
    assert position["epoch"] == 3 and position["step"] == 0
    assert optimizer_steps == 3 * STEPS_PER_EPOCH  # no batch replayed, none skipped
    # With op determinism, the run is bit for bit the uninterrupted one: the same weights,
    # the same per-epoch metrics (the interrupted epoch's running totals were restored).
    for name in ("metrics.json", "history.csv"):
        assert (attempt / name).read_bytes() == (reference / name).read_bytes(), name

    # A finished run started again returns its metrics without training again.
    once_more = run_zoo("train", *CNN, f"hydra.run.dir={attempt}", cwd=tmp_path)
    assert once_more.returncode == 0 and "TEST METRIC" in once_more.stdout
    assert checkpoint_steps(attempt)[-1] == 3 * STEPS_PER_EPOCH
    assert (attempt / "train.log").read_text().count("steps per epoch") == 2


@pytest.mark.slow
@pytest.mark.parametrize("model", ["gan", "vae"])
def test_models_with_their_own_training_step_resume_exactly(model, tmp_path):
    args = [f"model={model}", "dataset=digits", "trainer.epochs=2", "trainer.checkpoint_every=3", "trainer.deterministic=true"]
    # The VAE's evaluation graph depends on Python's string hash order (its validation loss
    # moved by one float32 ulp between PYTHONHASHSEED values here, resumed or not): every
    # process gets the same one.
    env = {"PYTHONHASHSEED": "0"}
    reference, attempt = tmp_path / "uninterrupted", tmp_path / "killed"
    assert run_zoo("train", *args, f"hydra.run.dir={reference}", cwd=tmp_path, env=env).returncode == 0
    first = start_zoo([*args, f"hydra.run.dir={attempt}"], tmp_path, env=env)
    kill_when([first], lambda: any(s > 5 for s in checkpoint_steps(attempt)))
    again = run_zoo("train", *args, f"hydra.run.dir={attempt}", cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert 5 < resumed_from(attempt) < 2 * STEPS_PER_EPOCH
    assert final_position(attempt)[1] == 2 * STEPS_PER_EPOCH
    for name in ("metrics.json", "history.csv"):
        assert (attempt / name).read_bytes() == (reference / name).read_bytes(), name


@pytest.mark.slow
def test_two_workers_killed_together_resume_together(tmp_path):
    from test_distribution import final_digest, free_ports

    def workers(run_dirs: list[Path]) -> list[subprocess.Popen]:
        ports = free_ports(2)
        cluster = f"device.workers=[127.0.0.1:{ports[0]},127.0.0.1:{ports[1]}]"
        return [
            start_zoo([*CNN, "device=multi_worker", cluster, f"device.rank={rank}", f"hydra.run.dir={run_dirs[rank]}"], tmp_path)
            for rank in (0, 1)
        ]

    def wait(processes: list[subprocess.Popen]) -> None:
        for process in processes:
            assert process.wait(timeout=400) == 0, process.stderr.read()[-3000:]
            process.stderr.close()

    reference = [tmp_path / "reference0", tmp_path / "reference1"]
    wait(workers(reference))
    attempt = [tmp_path / "chief", tmp_path / "worker1"]
    # Each global batch of 32 is split over the workers; the steps per epoch are the same.
    kill_when(workers(attempt), lambda: any(s > STEPS_PER_EPOCH + 3 for s in checkpoint_steps(attempt[1], "worker-1")))
    wait(workers(attempt))
    steps = 3 * (1257 // 32)  # whole global batches only, under several replicas
    assert final_position(attempt[0])[1] == steps and final_position(attempt[1], "worker-1")[1] == steps
    assert resumed_from(attempt[0]) > STEPS_PER_EPOCH - 1
    assert final_digest(attempt[0]) == final_digest(attempt[1]) == final_digest(reference[0])
    assert (attempt[0] / "history.csv").read_bytes() == (reference[0] / "history.csv").read_bytes()


def test_a_kill_while_saving_a_checkpoint_leaves_the_previous_one_whole(tmp_path):
    """A child process saves a checkpoint and is SIGKILLed half way through writing it."""
    script = f"""
import os, signal, numpy as np, keras
from zoo.checkpoints import Checkpoints, Position
variables = [keras.Variable(np.full((1000,), 1.0), name="w")]
checkpoints = Checkpoints({str(tmp_path)!r})
checkpoints.save(variables, Position(0, 1, 10))
variables[0].assign(np.full((1000,), 2.0))
real_savez = np.savez
def savez_then_die(handle, **arrays):
    real_savez(handle, **arrays)
    handle.truncate(handle.tell() // 2)
    os.kill(os.getpid(), signal.SIGKILL)
np.savez = savez_then_die
checkpoints.save(variables, Position(0, 2, 10))
"""
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert child.returncode == -signal.SIGKILL, child.stderr[-3000:]
    left = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert left[-1] == "step-000000001.npz" and len(left) == 2  # and the half-written temporary file

    from zoo.checkpoints import Checkpoints

    path, position, arrays = Checkpoints(tmp_path).latest()
    assert position.step == 1 and np.all(arrays["v0"] == 1.0)
    # A newest file that does not read back (a disk error) falls back to the one before.
    (tmp_path / "checkpoints" / "step-000000005.npz").write_bytes(b"PK\x03\x04 broken")
    assert Checkpoints(tmp_path).latest()[1].step == 1


def test_a_run_directory_is_never_shared_or_reused_for_another_run(default_run, tmp_path):
    from zoo import artifacts

    run_dir = tmp_path / "run"
    with artifacts.exclusive(run_dir):  # held as a running `zoo train` holds it
        busy = run_zoo("train", *CNN, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert busy.returncode == 2
    assert f"{run_dir} is in use by another zoo process" in error_lines(busy.stderr)[0]

    finished = default_run[0]
    changed = run_zoo("train", "trainer.learning_rate=0.01", f"hydra.run.dir={finished}", cwd=tmp_path)
    assert changed.returncode == 2
    [line] = error_lines(changed.stderr)
    assert "holds a run with trainer.learning_rate=0.001, not 0.01" in line and "another hydra.run.dir" in line
    never = run_zoo("train", "trainer.resume=never", f"hydra.run.dir={finished}", cwd=tmp_path)
    assert never.returncode == 2 and "already holds a run and trainer.resume=never" in error_lines(never.stderr)[0]
