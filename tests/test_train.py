"""`zoo train` end to end, started the way users start it."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

import zoo

from conftest import control_group, error_lines, remove_control_group, run_zoo

METRICS = ["accuracy", "precision", "recall", "f1", "auc"]


def test_default_run_reaches_the_accuracy_bar(default_run):
    run_dir, _ = default_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics) == {"loss", *METRICS}
    assert metrics["accuracy"] >= 0.97


def test_run_directory_holds_every_artifact(default_run):
    run_dir, result = default_run
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["model"]["name"] == "cnn_classifier" and config["dataset"]["name"] == "digits"
    assert set(config["metrics"]) == set(METRICS), "config.yaml records the metrics metrics=auto chose"
    assert "${" not in (run_dir / "config.yaml").read_text(), "the saved config is resolved"

    with (run_dir / "history.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == list(range(1, config["trainer"]["epochs"] + 1))
    for name in ["loss", *METRICS]:
        assert name in rows[0] and f"val_{name}" in rows[0]
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])

    for picture in ("training_curves", "roc_curve", "confusion_matrix"):
        png = (run_dir / "plots" / f"{picture}.png").read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 20_000, picture

    for part in ("train", "validation"):
        assert list((run_dir / "tensorboard" / part).glob("events.out.tfevents.*"))

    # A finished run never reads its checkpoints again: none are kept (trainer.keep_checkpoints=auto).
    assert not (run_dir / "checkpoints").exists()
    hidden = [p for p in run_dir.rglob(".*") if p.name not in (".hydra", ".lock") and ".hydra" not in p.parts]
    assert not hidden, "temp files left"

    # The terminal starts with the run directory (where to look while it trains) and ends
    # with the test metrics and the run directory.
    lines = result.stdout.strip().splitlines()
    assert lines[0] == lines[-1] == f"run directory: {run_dir}"
    assert any(line.split()[:1] == ["accuracy"] for line in lines)


def test_saved_model_loads_with_plain_keras_and_reproduces_the_test_metrics(default_run, tmp_path):
    import zoo

    run_dir, _ = default_run
    x_test, y_test = zoo.create_dataset("digits").load(seed=0).test
    np.save(tmp_path / "x.npy", x_test)
    # A fresh process that imports Keras alone, as a user of the file would.
    script = (
        "import sys, numpy as np, keras; "
        "m = keras.saving.load_model(sys.argv[1]); "
        "np.save(sys.argv[3], m.predict(np.load(sys.argv[2]), verbose=0))"
    )
    subprocess.run(
        [sys.executable, "-c", script, str(run_dir / "model.keras"), str(tmp_path / "x.npy"), str(tmp_path / "p.npy")],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    predictions = np.load(tmp_path / "p.npy")
    accuracy = float(np.mean(predictions.argmax(axis=1) == y_test))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert accuracy == pytest.approx(metrics["accuracy"], abs=1e-6)


def test_sweep_leaves_one_run_directory_per_job_and_a_summary(tmp_path):
    sweep_dir = tmp_path / "sweep"
    result = run_zoo(
        "train", "-m", "model.filters=4,8", "trainer.epochs=1", "metrics=[accuracy]",
        f"hydra.sweep.dir={sweep_dir}", "hydra.job.name=filters", cwd=tmp_path,  # a job name, as SLURM shows it
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = sorted(p for p in sweep_dir.iterdir() if p.is_dir())
    assert len(jobs) == 2
    filters = []
    for job in jobs:
        assert set(json.loads((job / "metrics.json").read_text())) == {"loss", "accuracy"}
        assert [p.name for p in job.glob("*.log")] == ["train.log"]  # the log keeps its name: the run's folder stays the zoo's
        filters.append(yaml.safe_load((job / "config.yaml").read_text())["model"]["filters"])
    assert sorted(filters) == [4, 8]
    summary = (sweep_dir / "summary.csv").read_text().splitlines()
    assert summary[0] == "run,model.filters,loss,accuracy" and len(summary) == 3


def test_gpu_device_without_a_gpu_fails_clearly(tmp_path):
    result = run_zoo("train", "device=gpu", "trainer.epochs=1", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 2
    assert error_lines(result.stderr) == [
        "zoo: error: device=gpu but TensorFlow sees no GPU (is the GPU build installed: pip install "
        "'keras-zoo[gpu]'?); use device=cpu or device=auto"
    ]
    assert not (tmp_path / "run").exists()  # the folder Hydra made for the failed run is gone
    # A folder the user had is never removed, even when the run in it fails.
    (tmp_path / "mine").mkdir()
    result = run_zoo("train", "device=gpu", "trainer.epochs=1", f"hydra.run.dir={tmp_path / 'mine'}", cwd=tmp_path)
    assert result.returncode == 2 and (tmp_path / "mine").is_dir()


@pytest.mark.parametrize("where, message", [("/proc/nope", "no folder can be made in /proc"), ("afile/run", "is a file, not a folder")])
@pytest.mark.parametrize("key", ["hydra.run.dir", "hydra.sweep.dir"])
def test_a_run_directory_that_cannot_be_made_fails_in_one_line(key, where, message, tmp_path):
    (tmp_path / "afile").write_text("mine")
    result = run_zoo("train", *(["-m"] if "sweep" in key else []), f"{key}={where}", cwd=tmp_path)
    assert result.returncode == 2
    assert len(error_lines(result.stderr)) == 1 and message in result.stderr and "Traceback" not in result.stderr
    assert (tmp_path / "afile").read_text() == "mine"


def test_a_run_never_writes_into_a_folder_holding_files_it_did_not_write(tmp_path):
    """A run would replace a model.keras of the same name and append to a train.log: the
    folder must be new, empty or a zoo run's; a sweep's new, empty or a sweep's. Refused
    before Hydra writes anything, and every job checks its own folder once more."""
    from zoo.config import compose, plan_run
    from zoo.errors import ZooError
    from zoo.run import claim_run_dir

    mine, other, sweep = tmp_path / "mine", tmp_path / "other", tmp_path / "sweep"
    for folder, files in ((mine, {"model.keras": "my model", "train.log": "my log\n"}), (other, {"config.yaml": "a: 1\n"}),
                          (sweep, {"notes.txt": "mine"})):  # fmt: skip
        folder.mkdir()
        for name, text in files.items():
            (folder / name).write_text(text)
    # Hydra's settings from a config of the user's: a sweep by hydra.mode, folders of its own
    (tmp_path / "configs" / "experiment").mkdir(parents=True)
    for name, settings in (("as_sweep", f"mode: MULTIRUN\n  sweep: {{dir: {sweep}}}"), ("in_mine", f"run: {{dir: {mine}}}")):
        (tmp_path / "configs" / "experiment" / f"{name}.yaml").write_text(f"# @package _global_\nhydra:\n  {settings}\n")
    before = {path: path.read_text() for path in tmp_path.rglob("*") if path.is_file()}
    for args, problem in (
        ([f"hydra.run.dir={mine}"], "already holds files the zoo did not write (model.keras)"),
        ([f"hydra.run.dir={other}"], "holds a config.yaml that is not a zoo run's"),
        (["-m", "seed=1,2", f"hydra.sweep.dir={sweep}"], "already holds files that are not a zoo sweep's"),
        # the same folders, spelt through interpolations: checked where they lead
        (["hydra.run.dir=${oc.env:MINE}"], "already holds files the zoo did not write (model.keras)"),
        (["-m", "seed=1,2", f"hydra.sweep.dir={tmp_path}/${{oc.select:nope,sweep}}"], "already holds files that are not a zoo sweep's"),
        # and spelt as dicts of Hydra's settings (Hydra used to write its records in first)
        ([f"hydra.run={{dir: {mine}}}"], "already holds files the zoo did not write (model.keras)"),
        ([f"hydra={{run: {{dir: {mine}}}}}"], "already holds files the zoo did not write (model.keras)"),
        (["-m", "seed=1,2", f"hydra.sweep={{dir: {sweep}, subdir: x}}"], "already holds files that are not a zoo sweep's"),
        # a sweep without -m, in any spelling Hydra reads as one (it used to write its multirun.yaml in)
        (["hydra.mode=2", f"hydra.sweep.dir={sweep}"], "already holds files that are not a zoo sweep's"),
        (["++hydra.mode=MULTIRUN", "seed=1,2", f"hydra.sweep.dir={sweep}"], "already holds files that are not a zoo sweep's"),
        ([f"hydra={{mode: MULTIRUN, sweep: {{dir: {sweep}}}}}"], "already holds files that are not a zoo sweep's"),
        (["--config-dir", "configs", "+experiment=as_sweep"], "already holds files that are not a zoo sweep's"),
        (["--config-dir", "configs", "+experiment=in_mine"], "already holds files the zoo did not write (model.keras)"),
    ):
        result = run_zoo("train", *args, "trainer.epochs=1", cwd=tmp_path, env={"MINE": str(mine)})
        assert result.returncode == 2 and problem in error_lines(result.stderr)[0], result.stderr[-2000:]
    assert {path: path.read_text() for path in tmp_path.rglob("*") if path.is_file()} == before  # nothing added or changed
    zoo_run = tmp_path / "zoo_run"  # a zoo run's folder with a pipe where Hydra writes or the lock is
    (zoo_run / ".hydra").mkdir(parents=True)
    (zoo_run / "config.yaml").write_text("model: {name: cnn_classifier}\ndataset: {name: digits}\ntrainer: {}\n")
    for name in (".lock", "train.log", "metrics.json", "checkpoints/step-000000040.npz"):  # or read: resuming waited for ever
        (zoo_run / name).parent.mkdir(exist_ok=True)
        os.mkfifo(zoo_run / name)
        result = run_zoo("train", "trainer.epochs=1", f"hydra.run.dir={zoo_run}", cwd=tmp_path, timeout=60)
        assert result.returncode == 2 and f"{zoo_run / name} is not a regular file" in error_lines(result.stderr)[0], result.stderr[-2000:]
        (zoo_run / name).unlink()
    # ... or a link anywhere in it: to a file Hydra writes, or to a folder (Hydra's records'
    # folder, where its config.yaml would replace one of yours; the plots' or checkpoints')
    (mine / "config.yaml").write_text("mine")
    for name, target in ((".hydra/config.yaml", mine / "model.keras"), ("plots", mine), (".hydra", mine)):
        if (zoo_run / name).is_dir():
            (zoo_run / name).rmdir()
        os.symlink(target, zoo_run / name)
        result = run_zoo("train", "trainer.epochs=1", f"hydra.run.dir={zoo_run}", cwd=tmp_path, timeout=60)
        assert result.returncode == 2, result.stderr[-2000:]
        assert f"{zoo_run / name} is a symbolic link (to {target}); the zoo writes into a run's folder" in error_lines(result.stderr)[0]
        (zoo_run / name).unlink()
    assert (mine / "model.keras").read_text() == "my model" and (mine / "config.yaml").read_text() == "mine"
    assert sorted(p.name for p in mine.iterdir()) == ["config.yaml", "model.keras", "train.log"]
    for inside in (zoo_run / ".hydra", zoo_run / "plots" / "new"):  # Hydra's records of a run hold a run's config.yaml too
        result = run_zoo("train", "trainer.epochs=1", f"hydra.run.dir={inside}", cwd=tmp_path, timeout=60)
        assert result.returncode == 2, result.stderr[-2000:]
        assert f"{inside} is inside the run in {zoo_run}, whose files it could replace" in error_lines(result.stderr)[0]
    result = run_zoo("train", "-m", "seed=1,2", f"hydra.sweep.dir={zoo_run / 'sweep'}", cwd=tmp_path, timeout=60)
    assert result.returncode == 2 and "is inside the run in" in error_lines(result.stderr)[0], result.stderr[-2000:]
    job = sweep / "0"  # a sweep's job folder, after Hydra made its records in it
    (job / ".hydra").mkdir(parents=True)
    (job / "train.log").write_text("")
    assert claim_run_dir(job, {}, plan_run(compose([]))) is None
    (job / "predictions.csv").write_text("mine")
    with pytest.raises(ZooError, match=r"already holds files the zoo did not write \(predictions.csv\)"):
        claim_run_dir(job, {}, plan_run(compose([])))


def test_another_runs_folder_is_refused_before_hydra_writes_its_records_over_that_runs(default_run, tmp_path):
    """A finished run, alone or as a sweep's job, given to a command with another config:
    refused in one line before Hydra starts, so its .hydra records and log stay its own. A
    project's config.yaml naming a model and a dataset as strings is not a run's."""
    import shutil

    def files(folder: Path) -> dict:
        return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}

    run_dir = tmp_path / "run"
    shutil.copytree(default_run[0], run_dir)
    sweep = tmp_path / "sweep"
    shutil.copytree(default_run[0], sweep / "0_cnn_classifier")
    (sweep / "multirun.yaml").write_text((default_run[0] / "config.yaml").read_text())  # as Hydra's: the sweep's config
    other_app = tmp_path / "other_app"  # another Hydra application's sweep: its records are its own
    (other_app / "0" / ".hydra").mkdir(parents=True)
    (other_app / "multirun.yaml").write_text("hydra: {}\nlr: 0.1\n")
    (other_app / "0" / ".hydra" / "config.yaml").write_text("lr: 0.1\n")
    project = tmp_path / "project"
    project.mkdir()
    (project / "config.yaml").write_text("model: resnet\ndataset: imagenet\ntrainer: {epochs: 3}\n")
    linked_sweep = tmp_path / "linked_sweep"  # a sweep copied from elsewhere, its records links: Hydra writes through them
    shutil.copytree(sweep, linked_sweep)
    (linked_sweep / "multirun.yaml").unlink()
    (linked_sweep / "multirun.yaml").symlink_to(sweep / "multirun.yaml")
    shutil.copytree(default_run[0], tmp_path / "runs" / "cats_mlp_sgd" / "seed_0")
    lost_metrics = tmp_path / "lost_metrics"  # a finished run whose metrics.json was deleted: not trained again over its model
    shutil.copytree(default_run[0], lost_metrics)
    (lost_metrics / "metrics.json").unlink()
    before = files(tmp_path)
    for args, problem in (
        (["-m", "seed=0,1", f"hydra.sweep.dir={linked_sweep}"], f"{linked_sweep / 'multirun.yaml'} is a symbolic link"),
        (["seed=5", f"hydra.run.dir={run_dir}"], f"{run_dir} holds a run with seed=0, not 5"),
        (["cv.folds=2", f"hydra.run.dir={run_dir}"], f"{run_dir} holds a run with cv.folds=0, not 2"),
        (["trainer.resume=never", f"hydra.run.dir={run_dir}"], "already holds a run and trainer.resume=never"),
        # more epochs continue an unfinished run only: a finished one said "finished already" and trained none
        (["trainer.epochs=99", f"hydra.run.dir={run_dir}"], f"{run_dir} holds a finished run of trainer.epochs=20: a finished run trains no further"),
        ([f"hydra.run.dir={lost_metrics}"], f"{lost_metrics} holds a finished run's model.keras but no metrics.json (deleted?)"),
        (["-m", "seed=5,6", f"hydra.sweep.dir={sweep}"], f"{sweep / '0_cnn_classifier'} holds a run with seed=0, not 5"),
        (["-m", "seed=5,6", f"hydra.sweep.dir={other_app}", "hydra.sweep.subdir=0"], "already holds files that are not a zoo sweep's"),
        ([f"hydra.run.dir={project}"], "holds a config.yaml that is not a zoo run's"),
        # an experiment's own folder (runs/cats_mlp_sgd/seed_0) holding another run
        (["+experiment=cats_mlp_sgd"], "runs/cats_mlp_sgd/seed_0 holds a run with model.name='cnn_classifier', not 'mlp_classifier'"),
    ):
        result = run_zoo("train", *args, cwd=tmp_path)
        assert result.returncode == 2 and problem in error_lines(result.stderr)[0], result.stderr[-2000:]
    assert files(tmp_path) == before
    again = run_zoo("train", f"hydra.run.dir={run_dir}", cwd=tmp_path)  # the same config: its metrics, nothing trained
    assert again.returncode == 0 and "finished already" in again.stdout, again.stderr[-2000:]


@pytest.mark.slow  # the default suite stays near 15 minutes
def test_names_that_are_not_utf8_are_trained_in_predicted_printed_and_plotted(tmp_path):
    """Linux file names are bytes. A run in a folder whose name is not UTF-8, an image so
    named, in a UTF-8 locale whose terminal refuses what is not UTF-8 (Python keeps such
    bytes as lone surrogates): the run's TensorBoard logs are written, the name is printed
    as its bytes (as ls does), and the comparison plot shows it escaped."""
    from PIL import Image

    parent = Path(os.fsdecode(bytes(tmp_path) + b"/caf\xe9"))
    run_dir = parent / "run"
    parent.mkdir()

    def zoo(*args: str, cwd: Path) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "zoo", *args], capture_output=True, cwd=cwd, stdin=subprocess.DEVNULL, timeout=300,
            env={**os.environ, "PYTHONIOENCODING": "utf-8:strict", "PYTHONWARNINGS": "ignore::DeprecationWarning"},
        )  # fmt: skip

    # Hydra's override grammar takes no such name; started from that folder, the run is in it.
    trained = zoo("train", "model.filters=4", "trainer.epochs=1", "hydra.run.dir=run", cwd=parent)
    assert trained.returncode == 0 and b"Traceback" not in trained.stderr and b"failed" not in trained.stderr, trained.stderr[-2000:]
    assert list((run_dir / "tensorboard" / "train").iterdir())
    image = Path(os.fsdecode(bytes(tmp_path) + b"/\xff.png"))
    Image.fromarray(np.full((8, 8), 128, dtype=np.uint8)).save(image)
    predicted = zoo("predict", str(run_dir), str(image), cwd=tmp_path)
    assert predicted.returncode == 0 and bytes(image) in predicted.stdout, predicted.stderr[-2000:]
    compared = zoo("compare", str(parent), "--plot", str(tmp_path / "compare.png"), cwd=tmp_path)
    assert compared.returncode == 0 and (tmp_path / "compare.png").is_file(), compared.stderr[-2000:]


def test_a_run_whose_weights_would_never_change_is_refused(tmp_path):
    """Gradients accumulated over more steps than the run trains are never applied: the
    run would end with its initial weights and report their metrics as trained ones."""
    run_dir = tmp_path / "run"
    result = run_zoo("train", "model.filters=4", "trainer.epochs=2", "trainer.accumulate_steps=81", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 2 and not run_dir.exists(), result.stderr[-2000:]
    assert error_lines(result.stderr) == [
        "zoo: error: trainer.accumulate_steps=81 is more than the 80 steps the run trains (2 epochs of 40): no update "
        "would be applied; accumulate over at most 40 steps"
    ]


def test_cfg_job_prints_the_composed_config_without_training(tmp_path):
    result = run_zoo("train", "--cfg", "job", "model.filters=8", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout)["model"]["filters"] == 8
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "args,metrics",
    [([], ["accuracy", "auc", "f1", "precision", "recall"]), (["model=autoencoder"], ["mae", "mse", "reconstruction_error"]),
     (["metrics=[f1]"], ["f1"])],
)  # fmt: skip
def test_cfg_job_shows_the_metrics_auto_chooses(tmp_path, args, metrics):
    result = run_zoo("train", *args, "--cfg", "job", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(yaml.safe_load(result.stdout)["metrics"]) == metrics


def test_hydra_help_lists_the_plugin_groups(tmp_path):
    result = run_zoo("train", "--help", cwd=tmp_path)
    assert result.returncode == 0
    for word in ("model:", "cnn_classifier", "dataset:", "digits", "metrics:", "auc"):
        assert word in result.stdout
    # Hydra's own help whatever else is on the line: after an override it had been "zoo failed: IndexError"
    hydras = run_zoo("train", "trainer.epochs=1", "--hydra-help", cwd=tmp_path)
    assert hydras.returncode == 0 and "== Flags ==" in hydras.stdout and "hydra/launcher:" in hydras.stdout, hydras.stderr[-2000:]
    swept = run_zoo("train", "-m", "seed=1,2", "--help", cwd=tmp_path)  # had been Hydra's "add --multirun" to a line with -m
    assert swept.returncode == 2 and error_lines(swept.stderr) == [
        "zoo: error: --help shows one run's config; ask without -m (--multirun, hydra.mode=MULTIRUN) to see it"
    ]


def run_in_terminal(args: list[str], cwd, columns: int = 80) -> tuple[int, str]:
    """Run `zoo` with a pseudo-terminal of ``columns`` as its stdout and stderr, as at an
    interactive shell."""
    import fcntl
    import os
    import pty
    import struct
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "zoo", *args], stdout=follower, stderr=follower, stdin=subprocess.DEVNULL, cwd=cwd, env=env
    )
    os.close(follower)
    output = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
    os.close(leader)
    return proc.wait(timeout=300), output.decode(errors="replace")


def test_progress_fits_the_terminal_and_is_a_line_per_epoch_otherwise(default_run, tmp_path):
    import re

    code, output = run_in_terminal(
        ["train", "trainer.epochs=2", f"hydra.run.dir={tmp_path / 'run'}"], tmp_path, columns=60
    )
    assert code == 0, output[-3000:]
    assert "/step" in output and "━" in output  # the bar, rewritten in place
    progress = [re.sub(r"\x1b\[K", "", piece) for piece in re.split(r"[\r\n]+", output) if piece.startswith("epoch ")]
    assert progress and max(len(piece) for piece in progress) < 60  # never wraps: no stale lines
    assert any(piece.startswith("epoch 2/2") for piece in progress)
    _, piped = default_run  # to a pipe: one plain line per epoch, with the validation values
    lines = [line for line in piped.stdout.splitlines() if line.startswith("epoch ")]
    assert len(lines) == 20 and "val_accuracy" in lines[-1] and "━" not in piped.stdout


def test_binary_run_reports_what_scikit_learn_computes_from_the_saved_model(tmp_path):
    """The whole binary path: sigmoid head, binary metrics in fit/evaluate, the saved model."""
    import keras
    from sklearn import metrics as sk

    import zoo

    run_dir = tmp_path / "run"
    result = run_zoo(
        "train", "+experiment=breast_cancer_mlp", "trainer.epochs=5", f"hydra.run.dir={run_dir}", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    reported = json.loads((run_dir / "metrics.json").read_text())
    x_test, y_test = zoo.create_dataset("breast_cancer").load(seed=0).test
    probability = keras.saving.load_model(run_dir / "model.keras").predict(x_test, verbose=0).reshape(-1)
    predicted = (probability >= 0.5).astype(int)
    expected = {
        "accuracy": sk.accuracy_score(y_test, predicted),
        "precision": sk.precision_score(y_test, predicted, zero_division=0),
        "recall": sk.recall_score(y_test, predicted, zero_division=0),
        "f1": sk.f1_score(y_test, predicted, zero_division=0),
        "auc": sk.roc_auc_score(y_test, probability),
    }
    for name, value in expected.items():
        assert reported[name] == pytest.approx(value, abs=2e-4 if name == "auc" else 1e-6), name
    assert reported["auc"] > 0.95


def test_reconstruction_run_reports_its_error_and_draws_reconstructions(tmp_path):
    import keras

    import zoo

    run_dir = tmp_path / "run"
    result = run_zoo(
        "train", "+experiment=digits_conv_autoencoder", "trainer.epochs=2", f"hydra.run.dir={run_dir}", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    reported = json.loads((run_dir / "metrics.json").read_text())
    assert set(reported) == {"loss", "mse", "mae", "reconstruction_error"}
    x_test, _ = zoo.create_dataset("digits").load(seed=0).test
    reconstructed = keras.saving.load_model(run_dir / "model.keras").predict(x_test, verbose=0)
    assert reconstructed.shape == x_test.shape
    assert reported["mse"] == pytest.approx(float(np.mean((reconstructed - x_test) ** 2)), rel=1e-4)
    assert reported["mae"] == pytest.approx(float(np.mean(np.abs(reconstructed - x_test))), rel=1e-4)
    per_image = np.sum(np.square(reconstructed - x_test).reshape(len(x_test), -1), axis=1)
    assert reported["reconstruction_error"] == pytest.approx(float(per_image.mean()), rel=1e-4)
    png = (run_dir / "plots" / "reconstructions.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert not (run_dir / "plots" / "roc_curve.png").exists()


@pytest.mark.slow
def test_evaluate_says_when_another_split_tests_on_examples_the_run_trained_on(default_run):
    """`zoo evaluate RUN seed=3` drew another split: most of its test examples had been
    trained on, and the accuracy rose from 0.88 to 0.93 without a word."""
    run_dir, _ = default_run
    reseeded = run_zoo("evaluate", str(run_dir), "seed=3")
    assert reseeded.returncode == 0, reseeded.stderr[-2000:]
    [warning] = [line for line in reseeded.stderr.splitlines() if line.startswith("zoo: warning:")]
    assert re.search(r"the run trained on \d+ of the 360 test examples \(the split's own training examples hold 0", warning), warning
    subset = run_zoo("evaluate", str(run_dir), "dataset.test_fraction=0.1")  # a part of its own test split: nothing seen
    assert subset.returncode == 0 and "zoo: warning:" not in subset.stderr, subset.stderr[-2000:]


def test_examples_a_model_trained_on_are_found_also_where_a_split_standardises_them():
    """breast_cancer standardises each split with its training split's statistics, so under
    another seed no example kept its values: `zoo evaluate RUN seed=7` (or a teacher of
    another seed) tested on 72 of 114 examples the run had trained on, without a word.
    Datasets of a fixed source name their examples (Splits.ids); where both ways can
    tell (digits, not standardised), they count alike."""
    import warnings

    from zoo.run import example_digests, warn_of_trained_examples

    from conftest import tiny_overrides

    def seen(name: str, seed: int, trained_seed: int, named: bool = True) -> list[str]:
        data = zoo.create_dataset(name, **(tiny_overrides(name) if name == "image_folder" else {}))
        splits, trained = data.load(seed=seed), data.load(seed=trained_seed)
        if not named:
            splits, trained = (zoo.Splits(s.train, s.validation, s.test) for s in (splits, trained))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            warn_of_trained_examples(splits, trained, "the run", "evaluate with the run's seed and split")
        return [str(w.message) for w in caught]

    [said] = seen("breast_cancer", 7, 0)
    count = int(re.search(r"the run trained on (\d+) of the 114 test examples", said).group(1))
    splits = zoo.create_dataset("breast_cancer").load(seed=7)
    assert len(set(splits.ids["test"])) == 114 and count == len(set(splits.ids["test"]) & set(zoo.create_dataset("breast_cancer").load(seed=0).ids["train"]))
    assert count > 50 and seen("breast_cancer", 0, 0) == []
    for name in ("digits", "image_folder"):  # named by rows, by files
        assert seen(name, 3, 0) == seen(name, 3, 0, named=False) != []
    assert example_digests(splits.test) != example_digests(zoo.create_dataset("breast_cancer").load(seed=0).test)


def test_evaluate_reproduces_the_run_and_refuses_what_is_not_a_finished_run(default_run, tmp_path):
    import shutil

    run_dir, _ = default_run
    result = run_zoo("evaluate", str(run_dir), "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    recorded = json.loads((run_dir / "metrics.json").read_text())
    assert json.loads(result.stdout) == pytest.approx(recorded, abs=1e-6)

    chosen = json.loads(run_zoo("evaluate", str(run_dir), "metrics=[f1]", "--json").stdout)
    assert set(chosen) == {"loss", "f1"} and chosen["f1"] == pytest.approx(recorded["f1"], abs=1e-6)
    flag_first = run_zoo("evaluate", str(run_dir), "--json", "metrics=[f1]")  # argparse had left metrics=[f1] over
    assert flag_first.returncode == 0 and json.loads(flag_first.stdout) == chosen, flag_first.stderr[-2000:]

    unfinished = tmp_path / "unfinished"
    shutil.copytree(run_dir, unfinished)
    (unfinished / "metrics.json").unlink()
    for directory, overrides, problem in (
        (unfinished, [], "did not finish"),
        (tmp_path, [], "is not a run directory"),
        (run_dir, ["dataset=breast_cancer"], "a finished run keeps its dataset; change its keys instead"),
        (run_dir, ["dataset.test_fraction=${oc.env:HOME}"], "give the value itself; interpolations are not resolved here"),
        (run_dir, ["seed=[1"], "seed=[1: not a value the zoo can read (while parsing a flow sequence"),
        (run_dir, ["seed=[&a 1, *a]"], "not a value the zoo can read (an alias (*a)"),
        (run_dir, ["trainer.batch_size=" + "[" * 3000 + "]" * 3000], "not a value the zoo can read (nested too deeply)"),
        # had blamed an edited config.yaml for what the command line changed
        (run_dir, ["model.filters=3"], "model.filters=3: the weights in"),
        # Read as the text "nan", a float only once typed: training's check had let it through here.
        (run_dir, ["metrics=[f1]", "metrics.f1.threshold=nan"], "metrics.f1.threshold=nan must be a finite number"),
        (run_dir, ["metrics=[accuracy]", "metrics.accuracy.threshold=-1"], "threshold is a probability, from 0 to 1; got -1.0"),
        # Training's keys had been taken and ignored: the same metrics, status 0.
        (run_dir, ["trainer.epochs=100"], "trainer.epochs=100: only training reads this; a finished run is scored with seed"),
        (run_dir, ["cv.folds=3"], "cv.folds=3: only training reads this"),
    ):
        refused = run_zoo("evaluate", str(directory), *overrides)
        assert refused.returncode == 2 and "Traceback" not in refused.stderr
        (line,) = error_lines(refused.stderr)
        assert problem in line
    unknown = run_zoo("info", "cnn_classifier", "dataset=nope")  # the cost on a dataset that is not installed
    assert unknown.returncode == 2 and "unknown dataset 'nope'" in error_lines(unknown.stderr)[0], unknown.stderr[-2000:]


@pytest.mark.parametrize(
    "overrides,expected",
    [
        # The loss diverged because of l1, and the line had sent the user to the learning rate alone.
        (["model=mlp_classifier", "dataset=breast_cancer", "model.l1=1e30"],
         "lower trainer.learning_rate (it is 0.001), or the settings set far above their defaults (model.l1=1e+30)"),
        # Sizes whose weights no memory could hold: "keras failed: InvalidArgumentError: {{function_node ...".
        (["model.filters=4611686018427387904"],
         "too large to exist: a tensor of shape [3,3,1,4611686018427387904] would have more than 2**63 - 1 elements; make the model"),
    ],
    ids=["l1-diverges", "filters-beyond-any-memory"],
)  # fmt: skip
def test_a_setting_that_breaks_training_is_named_in_the_line(overrides, expected, tmp_path):
    result = run_zoo("train", *overrides, "trainer.epochs=1", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    [line] = error_lines(result.stderr)
    assert expected in line, line


def test_a_keras_layers_failure_is_quoted_without_its_terminal_styling():
    """Keras wraps a layer's error in bold (ANSI escapes, printed escaped as "\\x1b[1m") between
    "Exception encountered when calling" and the arguments it lists."""
    import keras

    from zoo.errors import one_line

    with pytest.raises(Exception) as raised:
        keras.layers.Resizing(3_000_000_000, 3)(np.zeros((1, 4, 4, 1)))
    assert "\x1b[1m" in str(raised.value)
    assert one_line(raised.value) == "Resizing.call(): Dimension -1294967296 must be >= 0"


def test_a_diverging_run_stops_in_one_line_and_stays_unfinished(tmp_path):
    run_dir = tmp_path / "run"
    result = run_zoo(
        "train", "model=mlp_classifier", "dataset=breast_cancer", "trainer.optimizer=sgd", "trainer.learning_rate=1e6",
        "trainer.epochs=5", f"hydra.run.dir={run_dir}", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2
    [line] = error_lines(result.stderr)
    assert "training diverged: loss became nan at step" in line and "lower trainer.learning_rate (it is 1e+06)" in line
    assert "Traceback" not in result.stderr
    assert not (run_dir / "metrics.json").exists() and not (run_dir / "model.keras").exists()
    history = (run_dir / "history.csv").read_text().splitlines() if (run_dir / "history.csv").exists() else []
    assert len(history) <= 2  # it stopped in its first epoch, not after five
    # Its log says why too: under nohup, a scheduler or a sweep, the terminal's line is elsewhere.
    assert (run_dir / "train.log").read_text().splitlines()[-1].endswith(f"[zoo][INFO] - stopped: {line.removeprefix('zoo: error: ')}")


@pytest.mark.slow  # the default suite stays near 15 minutes
def test_a_run_past_its_open_file_limit_says_which_limit_and_continues_once_raised(tmp_path):
    """Saving the model under ``ulimit -n 8`` had failed as "model.keras: Too many open
    files": neither the limit nor that the run continues from its checkpoint."""
    import resource

    run_dir = tmp_path / "run"
    args = ("train", "model=mlp_classifier", "dataset=breast_cancer", "trainer.epochs=1", "loggers=none", f"hydra.run.dir={run_dir}")
    limited = subprocess.run(
        [sys.executable, "-m", "zoo", *args], cwd=tmp_path, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (8, resource.getrlimit(resource.RLIMIT_NOFILE)[1])),
    )  # fmt: skip
    assert limited.returncode == 2, limited.stderr[-2000:]
    [line] = error_lines(limited.stderr)
    assert "this process may hold at most 8 open files (ulimit -n); raise it" in line, line
    assert "the run keeps its checkpoint at the end of epoch 1" in line and "run the same command to continue" in line, line
    resumed = run_zoo(*args, cwd=tmp_path)
    assert resumed.returncode == 0 and (run_dir / "metrics.json").is_file(), resumed.stderr[-2000:]


@pytest.mark.slow  # TensorFlow starts to find out: 20 s
def test_a_model_too_large_for_memory_is_one_line_and_leaves_nothing(tmp_path):
    """TensorFlow's out-of-memory error while the model is built: a config mistake."""
    run_dir = tmp_path / "run"
    result = run_zoo("train", "model=mlp_classifier", "dataset=digits", "model.hidden_units=[1000000000]",
                     f"hydra.run.dir={run_dir}", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    [line] = error_lines(result.stderr)
    assert "out of memory (a tensor of shape[64,1000000000])" in line and "make the model, the batch or the images smaller" in line
    assert "Traceback" not in result.stderr and not run_dir.exists()


@pytest.mark.parametrize("model", ["cnn_classifier", pytest.param("gan", marks=pytest.mark.slow)])
def test_the_same_config_and_seed_give_byte_identical_results_on_the_cpu(model, tmp_path):
    runs = []
    for name in ("first", "second"):
        run_dir = tmp_path / name
        result = run_zoo("train", f"model={model}", "trainer.epochs=1", "device=cpu", f"hydra.run.dir={run_dir}", cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
        runs.append(run_dir)
    for name in ("metrics.json", "history.csv"):
        assert (runs[0] / name).read_bytes() == (runs[1] / name).read_bytes(), name


def test_trainings_started_in_threads_of_one_process_give_what_each_gives_alone(tmp_path):
    """Keras' session, seed and precision policy are the process's: two `zoo.run.train` at
    once in threads (a notebook's thread pool) cleared each other's session and drew each
    other's random numbers, each ending with other metrics than it gives alone (and two
    `zoo.config.compose` at once failed on "GlobalHydra is already initialized")."""
    import threading

    from zoo.config import compose
    from zoo.run import train

    def overrides(seed: int) -> list[str]:
        return [f"seed={seed}", "trainer.epochs=1", "model.filters=4", "model.dense_units=8", "metrics=[accuracy]"]

    alone = {seed: train(compose(overrides(seed)), tmp_path / f"alone{seed}") for seed in (1, 2)}
    together, failures = {}, []

    def run(seed: int) -> None:
        try:
            together[seed] = train(compose(overrides(seed)), tmp_path / f"together{seed}")
        except Exception as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(seed,)) for seed in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert not failures and together == alone, failures or (together, alone)


@pytest.mark.parametrize(
    "damage, command, problem",
    [
        ("metrics.json", "compare", "metrics.json is damaged (not the JSON the zoo wrote"),
        ("config.yaml", "evaluate", "config.yaml is damaged (not the YAML the zoo wrote"),
        ("config.yaml:other", "evaluate", "config.yaml is not a zoo run's config"),
        ("spec.json", "predict", "spec.json is damaged (not the JSON the zoo wrote"),
        ("model.keras", "predict", "model.keras is damaged (not a whole .keras file"),
        ("model.keras:folder", "evaluate", "model.keras is a folder, not the file the zoo wrote"),
        # a byte flipped in a member's name: "zipfile failed: KeyError: There is no item named 'model.weights.h5'"
        ("model.keras:renamed", "predict", "model.keras is damaged (its archive is garbled: \"There is no item named"),
        # Hydra's records in a run continued: "logging failed: ValueError: Unable to configure handler 'file'", "File exists"
        ("train.log:folder", "train", "train.log is a folder, not the file the zoo wrote"),
        (".hydra:file", "train", ".hydra is a file, not the folder Hydra keeps the run's records in"),
        ("model.keras:pipe", "compare", ""),  # compare reads no model
        ("model.keras:pipe", "evaluate", "model.keras is not a regular file (a pipe"),  # not "did not finish"
        ("model.keras:bomb", "predict", "MB, far more than the"),
        ("training.json:pipe", "compare", ""),  # an optional record, left out: compare used to wait on it
        ("spec.json:pipe", "predict", "spec.json is not a regular file (a pipe"),
        ("config.yaml:pipe", "evaluate", "config.yaml is not a regular file (a pipe"),
        # a few aliases nested make billions of nodes for whatever walks the result (it hung)
        ("config.yaml:aliases", "compare", "an alias (*a0), which the zoo does not read"),
        ("config.yaml:aliases", "evaluate", "an alias (*a0), which the zoo does not read"),
        ("config.yaml:python", "evaluate", "could not determine a constructor for the tag"),  # never run
        ("metrics.json:deep", "compare", "metrics.json is damaged (nested too deeply"),  # RecursionError
        ("spec.json:deep", "predict", "spec.json is damaged (nested too deeply"),
        ("env.json:deep", "compare", ""),  # an optional record, left out
        ("history.csv:text", "compare", "history.csv is damaged (not the CSV the zoo wrote: could not convert"),
        ("history.csv:wide", "compare", "history.csv is damaged (not the CSV the zoo wrote: field larger than field limit"),
        ("history.csv:extra", "compare", "history.csv is damaged (not the CSV the zoo wrote"),  # more fields than the header
        ("spec.json:classes", "predict", "spec.json is damaged (2 class names for 10 classes)"),  # an IndexError once
        ("config.yaml:huge", "evaluate", "out of memory (a tensor of shape["),  # TensorFlow's OOM line, as it was
        ("history.csv:long", "compare", "MB: far more rows than epochs a run trains)"),  # minutes of reading and plotting
        ("config.yaml:long", "evaluate", "MB, far more than the zoo writes there: at most 1 MB)"),  # read for hours
        # a number longer than Python reads: "yaml failed: ValueError: Exceeds the limit (4300 digits) ... use
        # sys.set_int_max_str_digits()", the file unnamed; the JSON records' reading said it already
        ("config.yaml:digits", "evaluate", "config.yaml is damaged (not the YAML the zoo wrote: a number longer than Python reads)"),
        ("config.yaml:digits", "compare", "config.yaml is damaged (not the YAML the zoo wrote: a number longer than Python reads)"),
        ("spec.json:digits", "predict", "spec.json is damaged (not the JSON the zoo wrote: Exceeds the limit"),
        # JSON of other types than the zoo writes: "zoo failed: AttributeError: 'list' object has no attribute 'get'"
        ("metrics.json:typed=[1, 2]", "train", "metrics.json is damaged (not a mapping of metric names to numbers)"),
        ('metrics.json:typed={"accuracy": "high"}', "train", "metrics.json is damaged (not a mapping of metric names to numbers)"),
        ("metrics.json:typed={}", "train", "metrics.json is damaged"),  # was "this worker's share of training is done"
        ('metrics.json:typed={"accuracy": null}', "compare", "metrics.json is damaged (not a mapping of metric names to numbers)"),
        ("spec.json:typed=[]", "evaluate", "spec.json is damaged (not a mapping of the data's facts)"),
        ('spec.json:typed={"shape": [8, 8]}', "predict", "spec.json is damaged (its keys are class_names, feature_names, input_shape"),
        ('spec.json:typed={"task": "teleport"}', "predict", "spec.json is damaged (task 'teleport' is none of"),
        ('spec.json:typed={"class_names": 5}', "predict", "spec.json is damaged (class_names is not a list of names)"),
        ('spec.json:typed={"value_range": "wide"}', "evaluate", "spec.json is damaged (value_range wide is not null or [low, high])"),
        ('env.json:typed={"plugins": 5, "libraries": ["x"]}', "compare", ""),  # an optional record's damaged parts left out
        ('training.json:typed={"search_trial": "x", "init_from": {"run": 5}}', "compare", ""),
        ('training.json:typed={"early_stopping": {"stopped_epoch": 2}}', "train", ""),
    ],
)
def test_a_damaged_run_file_is_named_in_one_line(default_run, damage, command, problem, tmp_path):
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(default_run[0], run_dir, ignore=shutil.ignore_patterns("tensorboard", "checkpoints"))
    name, _, how = damage.partition(":")
    how, _, typed = how.partition("=")
    target = run_dir / name
    if how == "typed" and name == "spec.json" and typed.startswith("{"):  # one field of the spec the run wrote
        target.write_text(json.dumps({**json.loads(target.read_text()), **json.loads(typed)}))
    elif how == "typed":
        target.write_text(typed)
    elif how == "folder":
        target.unlink()
        target.mkdir()
    elif how == "file":
        shutil.rmtree(target)
        target.write_text("x")
    elif how == "renamed":  # the archive whole, one member's name garbled
        import zipfile

        members = {}
        with zipfile.ZipFile(target) as archive:
            members = {info.filename: archive.read(info) for info in archive.infolist()}
        with zipfile.ZipFile(target, "w") as archive:
            for member, data in members.items():
                archive.writestr(member.replace("model.weights.h5", "model.weighta.h5"), data)
    elif how == "other":
        target.write_text("hello: 1\n")  # YAML, but not a run's config
    elif how == "bomb":  # the zoo's own archive and a 200 MB member of zeros (200 KB packed)
        import zipfile

        with zipfile.ZipFile(target, "a", compression=zipfile.ZIP_DEFLATED) as archive:
            with archive.open("padding.bin", "w", force_zip64=True) as member:
                for _ in range(200):
                    member.write(bytes(2**20))
    elif how == "pipe":  # reading it would wait for a writer for ever
        target.unlink()
        os.mkfifo(target)
    elif how == "aliases":  # "billion laughs": 9 levels of 9 aliases each
        lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
        lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
        target.write_text(target.read_text() + "\n".join(lines) + "\n")
    elif how == "python":  # a tag that an unsafe loader would run
        sentinel = tmp_path / "ran"
        target.write_text(target.read_text().replace("seed: 0", f"seed: !!python/object/apply:os.mkdir ['{sentinel}']"))
    elif how == "deep":
        target.write_text("[" * 100_000 + "]" * 100_000)
    elif how in ("text", "wide"):
        target.write_text(target.read_text() + ("1,abc" if how == "text" else "1," + "1" * 200_000) + "\n")
    elif how == "extra":
        target.write_text("epoch,loss\n1,0.5,7,8\n")
    elif how == "classes":
        target.write_text(json.dumps({**json.loads(target.read_text()), "class_names": ["a", "b"]}))
    elif how == "long" and name == "history.csv":  # sparse: 65 MB that take no room
        with target.open("r+b") as handle:
            handle.truncate(2**26 + 1)
    elif how == "long":  # YAML's reader takes seconds a megabyte
        target.write_text(target.read_text() + "".join(f"k{i}: {i}\n" for i in range(200_000)))
    elif how == "digits" and name == "config.yaml":
        target.write_text(target.read_text().replace("seed: 0", "seed: " + "9" * 5000))
    elif how == "digits":
        target.write_text(target.read_text().replace('"num_classes": 10', '"num_classes": ' + "9" * 5000))
    elif how == "huge":  # a model of 400 GB to build
        target.write_text(target.read_text().replace("dense_units: 128", "dense_units: 100000000"))
    else:
        target.write_bytes(target.read_bytes()[: len(target.read_bytes()) // 2] if name == "model.keras" else b"{not: [valid")
    picture = tmp_path / "x.png"
    shutil.copy(run_dir / "plots" / "confusion_matrix.png", picture)
    args = {"compare": [str(run_dir)], "evaluate": [str(run_dir)], "predict": [str(run_dir), str(picture)],
            "train": [f"hydra.run.dir={run_dir}"]}[command]  # fmt: skip
    result = run_zoo(command, *args, timeout=120)
    if not problem:
        assert result.returncode == 0 and ("accuracy" in result.stdout or "probability" in result.stdout), result.stderr[-500:]
        return
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(error_lines(result.stderr)) == 1 and problem in result.stderr, result.stderr[-500:]
    assert not (tmp_path / "ran").exists()


def test_control_characters_from_run_files_and_arguments_are_shown_not_sent_to_the_terminal(default_run, tmp_path):
    """A run's files and folder names are anyone's to write: an escape sequence in them
    (setting the terminal's title, clearing the screen) is printed as an escape, in tables
    and in error lines alike."""
    import shutil

    title = "\x1b]0;pwned\x07\x1b[2J\u202e"  # the last: a right-to-left override ("r\u202egnp.exe" shows as "rexe.png")
    run_dir = tmp_path / f"run{title}"
    shutil.copytree(default_run[0], run_dir, ignore=shutil.ignore_patterns("tensorboard", "checkpoints"))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    (run_dir / "metrics.json").write_text(json.dumps({**metrics, f"f1{title}": 0.5}))
    for args in (["compare", str(tmp_path)], ["train", f"model={title}"], ["info", "model", title]):
        result = run_zoo(*args, cwd=tmp_path)
        shown = result.stdout + result.stderr
        assert "\x1b" not in shown and "\u202e" not in shown, (args, shown[-1000:])
        assert "\\x1b]0;pwned\\x07\\x1b[2J\\u202e" in shown, (args, shown[-1000:])


@pytest.mark.slow  # the default suite stays near 15 minutes
@pytest.mark.parametrize(
    "logging, logs",
    [(["hydra/job_logging=disabled"], []), (["hydra/job_logging=default", "hydra.job.name=slurmy"], ["slurmy.log"])],
)
def test_hydras_own_logging_configs_train_and_continue(tmp_path, logging, logs):
    """Hydra's own job logging choices work as Hydra documents them: disabled (no log;
    the zoo's handlers were merged into it and failed) and default, whose log is named after
    the job (the run's folder is still the zoo's, so it continues)."""
    run_dir = tmp_path / "run"
    for attempt in range(2):  # the second finds the run finished
        result = run_zoo("train", *logging, "trainer.epochs=1", "metrics=[accuracy]", f"hydra.run.dir={run_dir}", cwd=tmp_path)
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert (run_dir / "metrics.json").is_file() and sorted(p.name for p in run_dir.glob("*.log")) == logs


def test_training_in_a_deleted_working_directory_is_one_line(tmp_path):
    gone = tmp_path / "gone"
    gone.mkdir()
    script = "import os, sys; os.chdir(sys.argv[1]); os.rmdir(sys.argv[1]); from zoo.cli import main; main(['train'])"
    result = subprocess.run([sys.executable, "-c", script, str(gone)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and error_lines(result.stderr) == [
        "zoo: error: the working directory no longer exists (deleted or moved); cd into a folder that does"
    ], result.stderr[-2000:]


def test_tensorflows_log_lines_while_it_builds_a_step_go_to_the_log_and_the_rest_to_the_terminal(capfd, caplog):
    """Every VAE and GAN training had shown "E0000 ... remapper failed: INVALID_ARGUMENT:
    Mutation::Apply error ..." (grappler declining a fusion it cannot make) on the terminal,
    and mixed_float16 oneDNN's "supports DT_HALF only on platforms with AVX-512". Whatever
    else reaches stderr meanwhile, a fatal line included, still does. The real GAN: the slow
    suite's test_gan_run_trains_both_networks_and_only_generates."""
    import logging

    from zoo.training import native_log_lines_logged

    remapper = b"E0000 00:00:1796658842.135487   28807 meta_optimizer.cc:967] remapper failed: INVALID_ARGUMENT: fanout\n"
    notice = b"W1207 15:54:09.799260   28853 util.cc:131] oneDNN supports DT_HALF only on platforms with AVX-512.\n"
    others = b"a warning of Python's\nF0000 00:00:1.5 7 check.cc:9] Check failed: a fatal one\nno line end"
    with caplog.at_level(logging.INFO, logger="zoo.training"):
        with native_log_lines_logged("TensorFlow, building the training step"):
            for chunk in (remapper[:20], remapper[20:] + notice, others):  # as the pipe may cut them
                os.write(2, chunk)
        os.write(2, b"after\n")
    assert capfd.readouterr().err == others.decode() + "after\n"
    assert "TensorFlow, building the training step said: E0000" in caplog.text and "remapper failed" in caplog.text
    assert "DT_HALF" in caplog.text


WITHOUT_NINES = """
import dataclasses, sys
import zoo_plugins.datasets as datasets
split = datasets.stratified_splits
def without_nines(*args, **kwargs):  # a dataset whose training split lacks a class, as a plugin's may
    splits = split(*args, **kwargs)
    x, y = splits.train
    return dataclasses.replace(splits, train=(x[y != 9], y[y != 9]), ids=None)
datasets.stratified_splits = without_nines
from zoo.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_training_split_without_a_class_is_said(tmp_path):
    """A model trained on no example of a class never predicts it: the run had said so of
    the test split only."""
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_NINES, "train", "model=mlp_classifier", "trainer.epochs=1", f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=tmp_path, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "zoo: warning: the training split (1131 examples) holds no example of class '9': the model cannot learn it" in result.stderr


def test_logged_warnings_reach_the_terminal_as_the_zoos_lines_naming_a_librarys_or_plugins_logger():
    import logging

    from zoo.cli import TerminalFormatter

    def shown(logger: str, message: str) -> str:
        return TerminalFormatter().format(logging.LogRecord(logger, logging.WARNING, "f.py", 1, message, None, None))

    assert shown("zoo.optimization", "init_from: these layers start untrained") == "zoo: warning: init_from: these layers start untrained"
    assert shown("zoo_tabular.data", "rows dropped") == "zoo: warning: zoo_tabular.data: rows dropped"
    assert shown("zoo.run", "a \x1b]0;title\x07 name") == "zoo: warning: a \\x1b]0;title\\x07 name"  # escapes shown, not sent


def test_tables_stay_aligned_with_wide_and_combining_characters(capsys):
    """A terminal gives 猫 two columns and a combining accent none: padded by characters,
    the columns after a class name of Chinese characters stood out of line."""
    from zoo.tables import columns, print_table

    print_table(["class", "images"], [["猫", "3"], ["狗 dog", "4"], ["cafe\u0301", "5"], ["dog", "6"]])
    lines = capsys.readouterr().out.splitlines()
    assert {columns(line[: line.rindex(" ") + 1]) for line in lines} == {len("class   ")}, lines


def test_a_run_copied_with_hard_links_is_continued_without_changing_the_original(default_run, tmp_path):
    """cp -al (or a backup by rsync --link-dest) shares the files' contents: Hydra rewrites
    its records and appends to the log in place, through every link. The copy's files
    Hydra writes become its own first; the original keeps its bytes."""
    import shutil

    original = tmp_path / "original"
    copy = tmp_path / "copy"
    shutil.copytree(default_run[0], original)
    shutil.copytree(original, copy, copy_function=os.link)  # cp -al: the same files under other names
    before = {p: p.read_bytes() for p in original.rglob("*") if p.is_file()}
    assert (original / "train.log").stat().st_nlink == 2
    again = run_zoo("train", f"hydra.run.dir={copy}", cwd=tmp_path)  # the same config: finished, nothing trained
    assert again.returncode == 0 and "finished already" in again.stdout, again.stderr[-2000:]
    assert {p: p.read_bytes() for p in original.rglob("*") if p.is_file()} == before
    assert str(copy) in (copy / ".hydra" / "hydra.yaml").read_text() and (copy / "train.log").stat().st_nlink == 1


def test_ctrl_c_outside_training_ends_in_one_line(default_run, tmp_path):
    """zoo evaluate (or list, predict, export...) stopped by Ctrl-C: exit status 130 and one
    line, not Python's KeyboardInterrupt traceback; zoo train stopped while it starts up
    (Hydra has made the run's folder, TensorFlow is loading) leaves no folder."""
    import signal
    import time

    run_dir = tmp_path / "run"
    for args in (["evaluate", str(default_run[0])], ["train", f"hydra.run.dir={run_dir}"]):
        process = subprocess.Popen(
            [sys.executable, "-m", "zoo", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
            # a pytest-xdist worker ignores SIGINT, and a child would inherit that: Python then never raises KeyboardInterrupt
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while args[0] == "train" and not (run_dir / "train.log").exists() and time.monotonic() < deadline:
            time.sleep(0.01)  # Hydra has made the folder and its log: the job is starting
        time.sleep(1 if args[0] == "evaluate" else 0.3)  # loading TensorFlow (seconds), not yet training
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=120)
        assert process.returncode == 130 and "Traceback" not in err, (args[0], _[-500:], err[-2000:])
        assert err.strip().splitlines()[-1] == "zoo: interrupted"
    assert not run_dir.exists()


def test_output_that_cannot_be_written_ends_zoo_train_in_one_line(tmp_path):
    """`zoo train > FILE` on a full disk (here /dev/full): the first line it prints failed
    outside the job's handler, and Hydra added its own "Error executing job" line."""
    with open("/dev/full", "w") as full:
        result = subprocess.run(
            [sys.executable, "-m", "zoo", "train", "trainer.epochs=1", f"hydra.run.dir={tmp_path / 'run'}"],
            cwd=tmp_path, stdout=full, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, timeout=120,
        )  # fmt: skip
    assert result.returncode == 2 and "Error executing job" not in result.stderr, result.stderr[-2000:]
    [line] = [line for line in result.stderr.splitlines() if line.strip()]
    assert line.startswith("zoo: error: could not write") and "No space left on device" in line, line
    assert not (tmp_path / "run").exists()  # nothing of the run was written: no folder left


@pytest.mark.parametrize("limit_mb", [600, 1465])
def test_a_memory_limit_too_low_for_tensorflow_is_said_as_such_not_as_tensorflow_missing(limit_mb, tmp_path):
    """Under `ulimit -v` (a batch system's vmem limit) of 600 MB TensorFlow's libraries could
    not be mapped: the zoo had said "TensorFlow is not installed" and advised installing it.
    Under 1.4 GB TensorFlow loaded, then aborted the process starting a thread (exit 134, a
    C++ stack), or crashed (exit 139)."""
    import resource

    def limited():
        resource.setrlimit(resource.RLIMIT_AS, (limit_mb * 2**20, resource.getrlimit(resource.RLIMIT_AS)[1]))

    result = subprocess.run(
        [sys.executable, "-m", "zoo", "train", "trainer.epochs=1", f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, preexec_fn=limited,
    )  # fmt: skip
    lines = error_lines(result.stderr)
    assert result.returncode == 2 and len(lines) == 1, result.stderr[-2000:]
    assert re.fullmatch(rf"zoo: error: this process may use {limit_mb:,} MB of address space \(ulimit -v\), and TensorFlow needs "
                        r"at least [\d,]+ MB here \(its libraries, and a stack of 8 MB for each of its threads\); raise it.*", lines[0]), lines[0]  # fmt: skip
    assert not (tmp_path / "run").exists()


def test_a_folder_your_own_primary_config_names_is_checked_before_hydra_writes_into_it(tmp_path):
    """With --config-name, the checks composed the zoo's `train` instead: a folder of yours
    that your primary config named as hydra.run.dir had its .hydra/config.yaml overwritten."""
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "myexp.yaml").write_text(
        "defaults:\n  - train\n  - _self_\ntrainer:\n  epochs: 1\nhydra:\n  run:\n    dir: precious\n"
    )
    (tmp_path / "precious" / ".hydra").mkdir(parents=True)
    (tmp_path / "precious" / "notes.txt").write_text("mine")
    (tmp_path / "precious" / ".hydra" / "config.yaml").write_text("my own hydra config\n")
    result = run_zoo("train", "--config-dir", "mine", "--config-name", "myexp", cwd=tmp_path)
    assert result.returncode == 2 and error_lines(result.stderr) == [
        "zoo: error: precious already holds files the zoo did not write (notes.txt); a run writes only into a new or "
        "empty folder or its own run's: choose another hydra.run.dir"
    ], result.stderr[-2000:]
    assert (tmp_path / "precious" / ".hydra" / "config.yaml").read_text() == "my own hydra config\n"
    assert sorted(p.name for p in (tmp_path / "precious").rglob("*")) == [".hydra", "config.yaml", "notes.txt"]


def test_a_terminal_whose_encoding_lacks_a_character_never_fails_a_run(tmp_path):
    """On a Latin-1 terminal the progress bar's box-drawing characters failed the run at its
    first refresh ("UnicodeEncodeError"); the bar is drawn in ASCII there, and any other
    character the encoding lacks is written as its escape (a name's undecodable bytes as
    those bytes, as before)."""
    import codecs

    from zoo.cli import TERMINAL_ERRORS, terminal_errors

    codecs.register_error(TERMINAL_ERRORS, terminal_errors)
    assert "猫 \udcff".encode("latin-1", TERMINAL_ERRORS) == b"\\u732b \xff"
    result = run_zoo(
        "train", "model=mlp_classifier", "dataset=breast_cancer", "trainer.epochs=1", "trainer.progress=bar",
        f"hydra.run.dir={tmp_path / 'run'}", env={"PYTHONIOENCODING": "latin-1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert re.search(r"epoch 1/1  #+-*", result.stdout.replace("\r", "\n")), result.stdout[:500]


def test_too_few_threads_for_tensorflow_is_one_line_not_an_abort(tmp_path):
    """Under a container's or a job's cap on tasks (pids.max; ulimit -u too) TensorFlow could
    not start its threads and aborted the process: "Check failed: ... Thread tf_Compute
    creation via pthread_create() failed", 60 lines of C++ stack, exit 134."""
    group = control_group("pids", tmp_path)

    def zoo_in_group(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "zoo", "train", *args, "trainer.epochs=1"], cwd=tmp_path, capture_output=True, text=True,
            timeout=120, stdin=subprocess.DEVNULL, preexec_fn=lambda: (group / "cgroup.procs").write_text(f"{os.getpid()}\n"),
        )  # fmt: skip

    try:
        (group / "pids.max").write_text("16\n")
        single = zoo_in_group(f"hydra.run.dir={tmp_path / 'run'}")
        # a parallel sweep's jobs start together, each its own TensorFlow: each had passed its own check
        (group / "pids.max").write_text("60\n")
        sweep = zoo_in_group("-m", "hydra/launcher=local", "hydra.launcher.n_jobs=4", "seed=1,2,3,4", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    finally:
        remove_control_group(group)
    assert single.returncode == 2, single.stderr[-3000:]
    [line] = error_lines(single.stderr)
    assert re.search(rf"this process may start \d+ more threads \(pids\.max 16 in {re.escape(str(group))}\), and TensorFlow starts about \d+", line), line
    assert "raise the limit" in line and not (tmp_path / "run").exists()
    assert sweep.returncode == 2, sweep.stderr[-3000:]
    [line] = error_lines(sweep.stderr)
    assert re.search(r"hydra\.launcher\.n_jobs=4: 4 jobs at once would start about \d+ threads, \d+ each .*; run at most \d at once", line), line
    assert not (tmp_path / "sweep").exists()


def test_a_thread_python_cannot_start_names_the_caps_on_threads():
    """tf.data's and the zoo's Python threads failing to start under such a cap had been
    "threading failed: RuntimeError: can't start new thread"."""
    import resource

    from zoo.cli import describe_failure
    from zoo.limits import cgroup_task_room

    line = describe_failure(RuntimeError("can't start new thread"))
    assert line.startswith("could not start a thread (") and line.endswith("): raise the limit"), line
    if resource.getrlimit(resource.RLIMIT_AS)[0] == resource.RLIM_INFINITY and not cgroup_task_room():
        assert line == "could not start a thread (the machine is at its limit of threads): raise the limit"


def test_a_thread_pool_no_machine_can_start_is_refused_not_waited_on(tmp_path):
    """``TF_NUM_INTEROP_THREADS=100000`` left in the environment: TensorFlow tried to start
    them, printed "RAW: mmap error: 12" and hung. Past 2**22 no Linux machine runs them."""
    result = run_zoo("train", "trainer.epochs=1", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path,
                     env={"TF_NUM_INTEROP_THREADS": "5000000"}, timeout=120)  # fmt: skip
    assert result.returncode == 2, result.stderr[-3000:]
    [line] = error_lines(result.stderr)
    assert re.search(r"may start [\d,]+ more threads \(the machine's kernel\.pid_max or threads-max, [\d,]+, with [\d,]+ running\), "
                     r"and TensorFlow starts about 5,000,\d+ here \(.*TF_NUM_INTEROP_THREADS=5000000\); unset or lower "
                     r"TF_NUM_INTEROP_THREADS$", line), line  # fmt: skip
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("term,redrawn", [("xterm-256color", True), ("dumb", False)])
def test_progress_is_redrawn_in_place_only_on_a_terminal_that_can(term, redrawn, monkeypatch):
    """Emacs' shell and compile buffers are terminals that say ``TERM=dumb``: a training bar's
    carriage returns and erase escapes showed there as ``^[[K`` between copies of the bar.
    There, as in a file, a line per epoch (and a status line more, not one rewritten)."""
    from zoo.run import progress_mode
    from zoo.tables import Progress

    monkeypatch.setenv("TERM", term)
    controller, terminal = os.openpty()
    try:
        with open(terminal, "w") as stream, open(os.devnull, "w") as file:
            monkeypatch.setattr(sys, "stdout", stream)
            monkeypatch.setattr(sys, "stderr", stream)
            assert progress_mode("auto") == ("bar" if redrawn else "epoch")
            assert Progress("checking images", 10).terminal is redrawn
            monkeypatch.setattr(sys, "stdout", file)
            assert progress_mode("auto") == "epoch"
    finally:
        os.close(controller)


@pytest.mark.parametrize("traceback", ["", "1"])
def test_an_error_in_a_finalizer_is_logged_not_printed_as_a_traceback(traceback):
    """Keras 3.15.0's ZipFile after a failed checkpoint write, and TensorFlow 2.16's process
    pool after a lost peer, raised in their finalizers: Python printed "Exception ignored in"
    and a traceback under the zoo's one line. ZOO_TRACEBACK=1 still shows it."""
    script = (
        "import zoo.cli\n"
        "class Closing:\n"
        "    def __del__(self):\n"
        "        raise ValueError('seek of closed file')\n"
        "zoo.cli.main(['list', 'model'])\n"
        "Closing()\n"
    )
    env = {**os.environ, "ZOO_TRACEBACK": traceback}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0 and "cnn_classifier" in result.stdout, result.stderr[-2000:]
    shown = "Exception ignored in" in result.stderr and "ValueError: seek of closed file" in result.stderr
    assert shown == bool(traceback), result.stderr[-2000:]
