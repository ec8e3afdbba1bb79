"""`zoo export`: every format serves the predictions of the run's own model."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import warnings

import numpy as np
import pytest

import zoo

from conftest import error_lines, own_mount_namespace_possible, run_zoo
from test_registry import NO_TF_SCRIPT

OUTPUT = {"keras": "model.keras", "saved_model": "saved_model", "tflite": "model.tflite"}


def tflite_predict(path, x):
    import tensorflow as tf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's notice about LiteRT
        interpreter = tf.lite.Interpreter(model_path=str(path))
    (input_detail,) = interpreter.get_input_details()
    output_detail = interpreter.get_output_details()[0]
    interpreter.resize_tensor_input(input_detail["index"], x.shape)
    interpreter.allocate_tensors()
    if input_detail["dtype"] == np.int8:  # full-integer model: quantise in, dequantise out
        scale, zero_point = input_detail["quantization"]
        x = np.clip(np.round(x / scale + zero_point), -128, 127).astype(np.int8)
    interpreter.set_tensor(input_detail["index"], x)
    interpreter.invoke()
    y = interpreter.get_tensor(output_detail["index"])
    if output_detail["dtype"] == np.int8:
        scale, zero_point = output_detail["quantization"]
        y = (y.astype(np.float32) - zero_point) * scale
    return y


@pytest.mark.parametrize(
    "fmt,quantize",
    [("keras", None), ("saved_model", None), ("tflite", None), pytest.param("tflite", "dynamic", marks=pytest.mark.slow),
     pytest.param("tflite", "float16", marks=pytest.mark.slow), ("tflite", "int8")],
)  # fmt: skip
def test_export_serves_the_models_predictions(default_run, tmp_path, fmt, quantize):
    import keras
    import tensorflow as tf

    run_dir, _ = default_run
    output = tmp_path / OUTPUT[fmt]
    # --quantize alone means dynamic, as it always did
    args = ["export", str(run_dir), "--format", fmt, "--output", str(output)] + {
        None: [], "dynamic": ["--quantize"], "float16": ["--quantize", "float16"], "int8": ["--quantize", "int8"],
    }[quantize]
    result = run_zoo(*args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith(f"exported {fmt}")

    x_test, _ = zoo.create_dataset("digits").load(seed=0).test
    expected = keras.saving.load_model(run_dir / "model.keras").predict(x_test, verbose=0)
    if fmt == "keras":
        served = keras.saving.load_model(output).predict(x_test, verbose=0)
    elif fmt == "saved_model":
        loaded = tf.saved_model.load(str(output))  # kept referenced: it owns the variables
        served = loaded.serve(tf.constant(x_test)).numpy()
    else:
        served = tflite_predict(output, x_test)
    agreement = np.mean(served.argmax(axis=1) == expected.argmax(axis=1))
    if quantize:  # fewer bits: small differences, the same decisions almost always
        assert np.abs(served - expected).max() < (0.1 if quantize == "int8" else 0.05)
        assert agreement >= 0.98
        smaller = 0.6 if quantize == "float16" else 0.4
        assert output.stat().st_size < smaller * (run_dir / "model.keras").stat().st_size
    else:
        np.testing.assert_allclose(served, expected, atol=1e-5)
    # What the command measured, recorded beside the run's model (never beside the user's file).
    report = json.loads((run_dir / "export" / "report.json").read_text())[str(output)]
    assert report["bytes"] == (output.stat().st_size if output.is_file() else sum(p.stat().st_size for p in output.rglob("*") if p.is_file()))
    assert 0 < report["gzip_bytes"] <= 1.05 * report["bytes"]
    assert report["quantize"] == quantize and report["format"] == fmt
    # The model takes what the dataset yields; digits prepares raw pictures first (zoo predict does).
    assert report["inputs"] == {"shape": [8, 8, 1], "value_range": [0.0, 1.0], "prepared_by": "dataset 'digits'"}
    assert result.stdout.splitlines()[1] == (
        "it takes inputs of shape (8, 8, 1) as dataset 'digits' prepares them from raw data (zoo predict does): "
        "raw inputs give other predictions"
    )
    if fmt == "keras":  # Keras' own classes only: plain load_model needs nothing imported
        assert report["load_needs"] == [] and len(result.stdout.splitlines()) == 2
    if fmt == "tflite":  # the command's own check, against this test's
        assert report["agreement"] == pytest.approx(agreement, abs=0.01) and report["test_examples"] == len(x_test)
    assert not (tmp_path / "report.json").exists()
    files = [output] if output.is_file() else [p for p in output.rglob("*") if p.is_file()]
    assert all(stat.S_IMODE(p.stat().st_mode) & stat.S_IRGRP for p in files), "exports are readable like normal files"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no temporary files left"


def test_a_keras_export_holding_the_zoos_own_classes_says_what_loading_it_needs(tmp_path):
    """The cat CNN's file holds its augmentation layer: given to someone who had not imported
    zoo_plugins, plain keras.saving.load_model failed on "Could not locate class
    'RandomAffine'". The command and the report name the import it takes."""
    run_dir, output = tmp_path / "cats", tmp_path / "cats.keras"
    trained = run_zoo("train", "model=cnn_cat_classifier", "dataset=synthetic_cats", "dataset.image_size=48",
                      "dataset.num_images=60", "trainer.epochs=1", f"hydra.run.dir={run_dir}")  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-2000:]
    result = run_zoo("export", str(run_dir), "--format", "keras", "--output", str(output))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "needs `import zoo_plugins.augmentation` first" in result.stdout.splitlines()[1]
    assert json.loads((run_dir / "export" / "report.json").read_text())[str(output)]["load_needs"] == ["zoo_plugins.augmentation"]
    load = f"import keras; keras.saving.load_model({str(output)!r})"
    plain = subprocess.run([sys.executable, "-c", load], capture_output=True, text=True, timeout=300)
    assert plain.returncode != 0 and "Could not locate class 'RandomAffine'" in plain.stderr  # why the line is there
    told = subprocess.run([sys.executable, "-c", f"import zoo_plugins.augmentation; {load}"], capture_output=True, text=True, timeout=300)
    assert told.returncode == 0, told.stderr[-2000:]


@pytest.mark.parametrize(
    "args,problem",
    [
        (["--format", "onnx"], "unknown export format 'onnx'"),
        (["--format", "keras", "--quantize"], "--quantize applies to --format tflite only"),
        (["--format", "tflite", "--quantize", "int4"], "unknown quantisation 'int4'; choose one of: dynamic, float16, int8"),
        (["--format", "keras", "--output", "model.h5"], "must end in .keras"),
    ],
)
def test_export_mistakes_are_one_line(default_run, args, problem):
    run_dir, _ = default_run
    result = run_zoo("export", str(run_dir), *args)
    assert result.returncode == 2
    (line,) = error_lines(result.stderr)
    assert problem in line


def test_export_refuses_an_unfinished_run(default_run, tmp_path):
    import shutil

    unfinished = tmp_path / "run"
    shutil.copytree(default_run[0], unfinished)
    (unfinished / "metrics.json").unlink()
    shutil.rmtree(unfinished / "export", ignore_errors=True)  # other tests' reports
    result = run_zoo("export", str(unfinished), "--format", "tflite")
    assert result.returncode == 2 and "did not finish" in result.stderr
    assert not (unfinished / "export").exists()


@pytest.mark.parametrize("fmt", ["saved_model", "keras"])
def test_export_never_writes_over_what_the_zoo_did_not_write(default_run, tmp_path, fmt):
    run_dir, _ = default_run
    mine = tmp_path / ("mine" if fmt == "saved_model" else "mine.keras")
    if fmt == "saved_model":
        mine.mkdir()
        (mine / "notes.txt").write_text("my notes")
    else:
        mine.write_text("my file")
    for extra in ([], ["--force"]):
        result = run_zoo("export", str(run_dir), "--format", fmt, "--output", str(mine), *extra)
        assert result.returncode == 2
        [line] = error_lines(result.stderr)
        assert f"{mine} exists" in line and "an export the zoo can tell as its own" in line
    assert (mine / "notes.txt").read_text() == "my notes" if fmt == "saved_model" else mine.read_text() == "my file"


def test_a_folder_made_while_exporting_is_neither_written_over_nor_deleted(default_run, tmp_path):
    """The output is checked when the command starts and again when the export is placed:
    a folder of yours made there in between (or a second export given the same name) had
    been moved aside and deleted."""
    import time

    output = tmp_path / "served"
    exporting = subprocess.Popen(
        [sys.executable, "-m", "zoo", "export", str(default_run[0]), "--format", "saved_model", "--output", str(output)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not any(p.name.startswith(".served-") for p in tmp_path.iterdir()):  # the export is being written
        assert exporting.poll() is None and time.monotonic() < deadline, exporting.communicate()
        time.sleep(0.02)
    output.mkdir()
    (output / "notes.txt").write_text("mine")
    _, stderr = exporting.communicate(timeout=120)
    assert exporting.returncode == 2
    [line] = error_lines(stderr)
    assert f"{output} exists" in line and "an export the zoo can tell as its own" in line
    assert [p.name for p in output.iterdir()] == ["notes.txt"] and (output / "notes.txt").read_text() == "mine"
    assert [p.name for p in tmp_path.iterdir()] == ["served"], "nothing of the export is left beside it"


def test_a_file_made_while_a_command_writes_its_output_is_kept(tmp_path):
    from zoo import artifacts

    output = tmp_path / "predictions.csv"

    def write(tmp):
        tmp.write_text("the zoo's")
        output.write_text("yours")  # another program, as the zoo was writing

    artifacts.output_checked(output, free=True)
    with pytest.raises(zoo.ZooError, match="made by another program while this command ran; it is kept"):
        artifacts.write_atomic(output, write)
    assert output.read_text() == "yours" and [p.name for p in tmp_path.iterdir()] == ["predictions.csv"]
    artifacts.output_checked(output, free=False)  # --force: replacing it is what the user asked
    artifacts.write_atomic(output, lambda tmp: tmp.write_text("the zoo's"))
    assert output.read_text() == "the zoo's"


def test_exports_of_one_run_at_once_each_keep_their_record(tmp_path, monkeypatch):
    # Each export reads report.json, adds its record and writes it back: two at once had
    # each written what it read plus its own, and the later one's file lost the other's.
    import threading
    import time
    import types

    from zoo import artifacts
    from zoo.export import record_export

    read_record = artifacts.read_record

    def slow_read(path):
        records = read_record(path)
        time.sleep(0.2)  # the other exports read meanwhile
        return records

    monkeypatch.setattr(artifacts, "read_record", slow_read)
    run_dir = tmp_path / "run"
    outputs = [tmp_path / f"model{n}.tflite" for n in range(4)]
    for output in outputs:
        output.write_bytes(b"flat buffer")
    no_weights = types.SimpleNamespace(weights=[])
    threads = [threading.Thread(target=record_export, args=(run_dir, output, {"format": "tflite"}, no_weights)) for output in outputs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    recorded = json.loads((run_dir / "export" / "report.json").read_text())
    assert sorted(recorded) == sorted(str(output.resolve()) for output in outputs)


def test_commands_that_write_into_a_run_follow_no_link_out_of_it(default_run, tmp_path):
    """A run folder copied from elsewhere with its export/ or explanations/ a link to a
    folder of yours: `zoo export` wrote its report.json over yours there. Refused in one
    line, before anything is written; an --output outside the run is the user's choice."""
    import shutil

    from PIL import Image

    run_dir = tmp_path / "copied"
    shutil.copytree(default_run[0], run_dir, symlinks=True)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "report.json").write_text("my report")
    Image.new("L", (8, 8)).save(tmp_path / "digit.png")
    for folder, args in (("export", ["export", str(run_dir)]), ("explanations", ["explain", str(run_dir), str(tmp_path / "digit.png")])):
        shutil.rmtree(run_dir / folder, ignore_errors=True)  # the shared run may hold other tests' exports
        (run_dir / folder).symlink_to(mine, target_is_directory=True)
        result = run_zoo(*args)
        assert result.returncode == 2, result.stderr[-2000:]
        assert error_lines(result.stderr) == [
            f"zoo: error: {run_dir / folder} is a symbolic link (to {mine}); the zoo writes into a run's folder and follows "
            "no link out of it: replace the link by what it points to, or choose another --output"
        ]
        (run_dir / folder).unlink()
    assert [p.name for p in mine.iterdir()] == ["report.json"] and (mine / "report.json").read_text() == "my report"
    (run_dir / "plots").rename(tmp_path / "plots")  # a link in the run, and a place outside it to write to
    (run_dir / "plots").symlink_to(tmp_path / "plots")
    elsewhere = run_zoo("export", str(run_dir), "--output", str(tmp_path / "out.keras"))
    assert elsewhere.returncode == 0 and (tmp_path / "out.keras").is_file(), elsewhere.stderr[-2000:]


def test_a_run_that_cannot_be_written_exports_elsewhere_and_says_where_it_cannot(default_run, tmp_path):
    """A run on a read-only disk (here its export/ and explanations/ are files, under which no
    folder can be made; the root CI runs as writes through a read-only mode): an export
    --output elsewhere failed at its very end on the run's report.json. It is written, the
    report said unrecorded; a default output inside the run is one line, before TensorFlow."""
    import shutil

    from PIL import Image

    run_dir = tmp_path / "copied"
    shutil.copytree(default_run[0], run_dir, symlinks=True)
    for folder in ("export", "explanations"):
        shutil.rmtree(run_dir / folder, ignore_errors=True)
        (run_dir / folder).write_text("in the way")
    elsewhere = run_zoo("export", str(run_dir), "--format", "keras", "--output", str(tmp_path / "out.keras"))
    assert elsewhere.returncode == 0 and (tmp_path / "out.keras").is_file(), elsewhere.stderr[-2000:]
    assert f"zoo: warning: the export is not recorded in {run_dir / 'export' / 'report.json'} (File exists)" in elsewhere.stderr
    assert "recorded in" not in elsewhere.stdout and "same class as the Keras model" not in elsewhere.stdout
    Image.new("L", (8, 8)).save(tmp_path / "digit.png")
    for args, folder in ((["export", str(run_dir)], "export"), (["explain", str(run_dir), str(tmp_path / "digit.png")], "explanations")):
        result = subprocess.run([sys.executable, "-c", NO_TF_SCRIPT, *args], capture_output=True, text=True, timeout=120)
        assert error_lines(result.stderr) == [
            f"zoo: error: cannot write in {run_dir / folder} (Not a directory); give --output a folder you can write"
        ]
        assert "HEAVY=\n" in result.stderr, "refused before TensorFlow was imported"
        assert (run_dir / folder).read_text() == "in the way"


@pytest.mark.slow
def test_export_into_a_folder_whose_name_is_not_utf8(default_run, tmp_path):
    """A folder named on a Latin-1 machine (Python keeps its bytes as lone surrogates):
    TensorFlow's SavedModel writer and TFLite's converter encode paths as UTF-8, and both
    formats failed on "UnicodeEncodeError: ... surrogates not allowed"."""
    run_dir, _ = default_run
    folder = tmp_path / "caf\udce9"  # b"caf\xe9", café in Latin-1
    for fmt, name in [("saved_model", "served\udcff"), ("tflite", "model\udcff.tflite")]:
        result = run_zoo("export", str(run_dir), "--format", fmt, "--output", str(folder / name))
        assert result.returncode == 0, result.stderr[-2000:]
    assert (folder / "served\udcff" / "saved_model.pb").is_file()
    assert (folder / "model\udcff.tflite").read_bytes()[4:8] == b"TFL3"
    assert sorted(p.name for p in folder.iterdir()) == ["model\udcff.tflite", "served\udcff"], "no staging folder left"


@pytest.mark.slow
def test_export_replaces_its_own_earlier_export_only_when_forced(default_run, tmp_path):
    run_dir, _ = default_run
    output = tmp_path / "served"
    assert run_zoo("export", str(run_dir), "--format", "saved_model", "--output", str(output)).returncode == 0
    again = run_zoo("export", str(run_dir), "--format", "saved_model", "--output", str(output))
    assert again.returncode == 2 and "--force to replace the zoo's earlier export" in error_lines(again.stderr)[0]
    forced = run_zoo("export", str(run_dir), "--format", "saved_model", "--output", str(output), "--force")
    assert forced.returncode == 0, forced.stderr[-2000:]
    assert (output / "saved_model.pb").is_file() and (output / ".zoo-export").is_file()
    # A file of yours put into the export since, or beside it under a name like its old copy's,
    # is not the zoo's to delete: --force refuses, and the folder beside it is left alone.
    (output / "variables" / "notes.txt").write_text("mine")
    (tmp_path / ".served-old").mkdir()
    (tmp_path / ".served-old" / "keep.txt").write_text("mine")
    refused = run_zoo("export", str(run_dir), "--format", "saved_model", "--output", str(output), "--force")
    assert refused.returncode == 2 and error_lines(refused.stderr) == [
        f"zoo: error: {output} holds files the zoo's export did not write (variables/notes.txt); move them out, or choose another --output"
    ]
    (output / "variables" / "notes.txt").unlink()
    forced = run_zoo("export", str(run_dir), "--format", "saved_model", "--output", str(output), "--force")
    assert forced.returncode == 0, forced.stderr[-2000:]
    assert (tmp_path / ".served-old" / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".served-old", "served"]


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["saved_model", "tflite", "keras"])
def test_a_full_disk_while_exporting_is_one_line_and_leaves_no_part_of_the_export(default_run, tmp_path, fmt):
    """A file-size limit is what a disk full for big files looks like to the writer:
    TensorFlow's SavedModel writer had failed with a line of its internals."""
    import os
    import resource
    import subprocess
    import sys

    output = tmp_path / "out" / OUTPUT[fmt]
    result = subprocess.run(
        [sys.executable, "-m", "zoo", "export", str(default_run[0]), "--format", fmt, "--output", str(output)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONWARNINGS": "ignore"},
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000)),
    )  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    [line] = error_lines(result.stderr)
    assert "File too large" in line, line
    assert list((tmp_path / "out").iterdir()) == []  # nothing half-written, no staging folder left


@pytest.mark.skipif(not own_mount_namespace_possible(), reason="needs a mount namespace of its own (root, util-linux's unshare)")
def test_a_disk_out_of_inodes_is_said_to_be_so_and_the_output_named(default_run, tmp_path):
    """A file system can have no inode left for another file with its space free (a
    container's tmpfs, a volume of many small images): "No space left on device" beside free
    gigabytes in ``df -h`` had sent users to free space they had, and export and writes
    through a temporary file had named the temporary (``./.sm-g6_3m4lq``). A tmpfs of one
    inode (its root folder's) here, as such a disk."""
    import subprocess
    import sys

    full = tmp_path / "full"
    full.mkdir()
    write = f"from pathlib import Path; from zoo import artifacts; artifacts.write_atomic(Path({str(full / 'history.csv')!r}), lambda tmp: tmp.write_text('x'))"
    commands = [
        f"{sys.executable} -m zoo export {default_run[0]} --format saved_model --output {full / 'served'}",
        f"{sys.executable} -m zoo train trainer.epochs=1 hydra.run.dir={full / 'run'}",
        f"{sys.executable} -c \"{write}\"",
    ]
    script = " ; ".join([f"mount -t tmpfs -o size=20m,nr_inodes=1 tmpfs {full}", *(f"{c} ; echo rc=$?" for c in commands)])
    result = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert result.stdout.split().count("rc=2") == 2 and "rc=1" in result.stdout, result.stdout + result.stderr[-3000:]
    inodes = "(No space left on device: all 1 inodes of its file system are in use, though 20 MB are free (df -i); delete files there)"
    export_line, train_line = error_lines(result.stderr)
    assert export_line == f"zoo: error: could not write {full / 'served'} {inodes}; free space, or write elsewhere, then run the command again"
    assert train_line == f"zoo: error: hydra.run.dir={full / 'run'}: no folder can be made in {full} {inodes}; choose a writable hydra.run.dir"
    # A record written through a temporary file is named as itself, not as its temporary.
    assert "OSError: [Errno 28] No space left on device: all 1 inodes" in result.stderr and f"'{full / 'history.csv'}'" in result.stderr
    assert not list(full.iterdir())  # the namespace's tmpfs is gone: the folder beneath is as it was


@pytest.mark.parametrize("year", [1975, 2110])
def test_a_clock_zip_archives_cannot_date_is_named_before_any_work(default_run, tmp_path, monkeypatch, year):
    """Checkpoints (.npz) and model files (.keras) are ZIP archives, dated from 1980 to 2107:
    on a machine whose clock is outside (a board without a clock battery or network starts
    in 1970) every run had trained to its first checkpoint and failed there on zipfile's
    "ZIP does not support timestamps before 1980", an export to .keras at its end."""
    import calendar
    import subprocess
    import sys
    import time

    from zoo.export import export

    now = float(calendar.timegm((year, 1, 1, 12, 0, 0)))
    clock = f"this machine's clock says {year}-01-01 "
    script = f"import sys, time\ntime.time = lambda: {now}\nfrom zoo.cli import main\nmain(sys.argv[1:])\n"
    result = subprocess.run([sys.executable, "-c", script, "train", "trainer.epochs=1", f"hydra.run.dir={tmp_path / 'run'}"],
                            capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    [line] = error_lines(result.stderr)
    assert line.startswith(f"zoo: error: {clock}") and line.endswith(
        "checkpoints and model files (ZIP archives) can only be dated 1980 to 2107; set the clock (timedatectl set-ntp true, "
        "or date -s), then run the same command"
    ), line
    assert not (tmp_path / "run").exists()  # nothing trained, nothing left
    monkeypatch.setattr(time, "time", lambda: now)
    with pytest.raises(zoo.ZooError, match=clock):
        export(default_run[0], "keras", tmp_path / "model.keras")
    assert not list(tmp_path.iterdir())
