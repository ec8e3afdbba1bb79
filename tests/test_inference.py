"""Using finished runs: `zoo predict` on files, `zoo generate`, and the outputs of
generative runs (samples, reconstructions), started as users start them."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import error_lines, run_zoo, tiny_overrides


def train(tmp_path, *overrides: str):
    run_dir = tmp_path / "run"
    result = run_zoo("train", *overrides, "trainer.progress=off", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


@pytest.mark.slow
def test_predict_reads_digit_pictures_drawn_dark_on_light(default_run, tmp_path):
    """Test digits saved as 32x32 PNGs, dark ink on white paper, as a person would draw
    them: the digits dataset's prepare step inverts them, and the CNN still reads them."""
    from PIL import Image

    import zoo

    run_dir, _ = default_run
    x_test, y_test = zoo.create_dataset("digits").load(seed=0).test
    folder = tmp_path / "drawings"
    folder.mkdir()
    for i in range(40):
        pixels = (255 * (1.0 - x_test[i, :, :, 0])).astype(np.uint8)
        Image.fromarray(pixels).resize((32, 32), Image.Resampling.NEAREST).save(folder / f"{i:02d}_{y_test[i]}.png")
    result = run_zoo("predict", str(run_dir), str(folder), "--csv", "-o", str(tmp_path / "out.csv"))
    assert result.returncode == 0, result.stderr[-3000:]
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == 40 and set(rows[0]) == {"input", "predicted", "probability"}
    correct = sum(row["predicted"] == row["input"].rsplit("_", 1)[1].split(".")[0] for row in rows)
    assert correct >= 34, f"{correct}/40 read correctly"
    assert all(0.0 <= float(row["probability"]) <= 1.0 for row in rows)
    assert (tmp_path / "out.csv").read_text() == result.stdout

    table = run_zoo("predict", str(run_dir), str(next(folder.glob("00_*.png"))))
    assert table.returncode == 0 and table.stdout.splitlines()[0].split() == ["input", "predicted", "probability"]

    # An output file the user named: a file of theirs is never written over without --force,
    # a folder or a missing folder is one line; the same for compare --plot.
    image = str(next(folder.glob("00_*.png")))
    mine = tmp_path / "mine.csv"
    mine.write_text("my notes")
    (tmp_path / "plots_link").symlink_to(run_dir / "plots")
    # --force had replaced what is not a file with one: /dev/null (as root), /dev/stdout, a link, a pipe
    (tmp_path / "null_link.csv").symlink_to(os.devnull)
    os.mkfifo(tmp_path / "pipe.csv")
    for command, problem in (
        (["predict", str(run_dir), image, "-o", str(tmp_path / "null_link.csv"), "--force"], "is a symbolic link, not a file the zoo may replace"),
        (["predict", str(run_dir), image, "-o", str(tmp_path / "pipe.csv"), "--force"], "is a named pipe, not a file the zoo may replace"),
        (["predict", str(run_dir), image, "-o", "-"], "--output -: give a file name"),  # it wrote a file named "-"
        (["predict", str(run_dir), image, "-o", str(mine)], f"--output {mine} exists; choose another name, or add --force"),
        (["predict", str(run_dir), image, "-o", str(folder)], f"--output {folder} is a folder; give a file name"),
        (["predict", str(run_dir), image, "-o", str(tmp_path / "nope" / "p.csv")], "the folder"),
        (["compare", str(run_dir), "--plot", str(folder)], f"--plot {folder} is a folder"),
        (["compare", str(run_dir), "--plot", str(mine)], f"--plot {mine} exists"),
        # a name in another format would hold a PNG under it
        (["compare", str(run_dir), "--plot", str(tmp_path / "curves.docx")], "name a .png, .svg or .pdf file"),
        (["compare", str(run_dir), "--plot", str(tmp_path / "curves")], "name a .png, .svg or .pdf file"),
        # --force never replaces the run's own records
        (["predict", str(run_dir), image, "-o", str(run_dir / "metrics.json"), "--force"], "is one of the records of the run in"),
        (["compare", str(run_dir), "--plot", str(run_dir / "plots" / "training_curves.png"), "--force"], "is one of the records"),
        # ... also through a link to one of its folders
        (["compare", str(run_dir), "--plot", str(tmp_path / "plots_link" / "training_curves.png"), "--force"], "is one of the records"),
    ):
        refused = run_zoo(*command)
        assert refused.returncode == 2 and len(error_lines(refused.stderr)) == 1 and problem in refused.stderr, command
        assert "Traceback" not in refused.stderr
    assert mine.read_text() == "my notes"
    forced = run_zoo("predict", str(run_dir), image, "-o", str(mine), "--force")
    assert forced.returncode == 0 and mine.read_text().startswith("input,predicted,probability")
    drawn = run_zoo("compare", str(run_dir), "--plot", str(tmp_path / "curves.SVG"))  # the format the name says
    assert drawn.returncode == 0 and (tmp_path / "curves.SVG").read_text().startswith("<?xml"), drawn.stderr[-2000:]
    assert not (tmp_path / "curves.docx").exists() and not (tmp_path / "curves").exists()
    table = run_zoo("compare", str(run_dir), "--csv")  # a run given itself is named by its path, not "."
    assert table.returncode == 0 and table.stdout.splitlines()[1].split(",")[0] == str(run_dir), table.stdout


def test_a_csv_header_naming_the_features_puts_the_columns_in_the_models_order(tmp_path, monkeypatch):
    """pandas and spreadsheets reorder columns: read by position, the rows would be predicted
    quietly wrong. A header of the dataset's feature names is read by name (a byte-order
    mark included); one naming others, or a name twice, is refused; other headers are
    skipped and the columns taken in order."""
    from zoo import inference
    from zoo.errors import ZooError
    from zoo.inference import csv_chunks

    features = ("radius", "texture", "area")
    rows = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=np.float32)

    def read(header: str, columns: list[int], bom: str = "") -> np.ndarray:
        path = tmp_path / "rows.csv"
        path.write_text(bom + header + "\n" + "\n".join(",".join(str(v) for v in row[columns]) for row in rows) + "\n")
        return np.concatenate([x for _, x in csv_chunks([str(path)], 3, features)])

    np.testing.assert_array_equal(read("area,radius,texture", [2, 0, 1]), rows)
    monkeypatch.setattr(inference, "CSV_CHUNK", 1)  # a file is read a chunk of rows at a time
    assert [len(x) for _, x in csv_chunks([str(tmp_path / "rows.csv")], 3, features)] == [1, 1]
    np.testing.assert_array_equal(read(" texture , area,radius", [1, 2, 0], bom="\ufeff"), rows)
    np.testing.assert_array_equal(read("a,b,c", [0, 1, 2]), rows)  # not the features' names: by position
    with pytest.raises(ZooError, match="its header names volume, which the model was not trained on, and lacks area"):
        read("radius,texture,volume", [0, 1, 2])
    with pytest.raises(ZooError, match="its header names radius more than once"):
        read("radius,radius,area", [0, 1, 2])
    # A cell that is not a number is named, with the cause when a common one shows.
    for line, problem in (
        ("1,,3", "rows.csv:2: column 2 ('') is not a number (an empty cell)"),
        ("1;2;3", "column 1 ('1;2;3') is not a number (the zoo reads comma-separated values"),
        ('1,"2,5",3', "column 2 ('2,5') is not a number (a decimal comma: write decimals with a point)"),
        ("1,2,x", "column 3 ('x') is not a number; each row needs 3 numbers"),
    ):
        (tmp_path / "rows.csv").write_text("1,2,3\n" + line + "\n")  # a first row not of numbers is a header
        with pytest.raises(ZooError) as info:
            list(csv_chunks([str(tmp_path / "rows.csv")], 3, ()))
        assert problem in str(info.value)
    # A header after blank lines is still one (it had been "column 1 ('radius') is not a number").
    np.testing.assert_array_equal(read("\n\narea,radius,texture", [2, 0, 1]), rows)
    # A first row of data with one bad cell is no header: it had been dropped unsaid. Nor are
    # 1_0 (10 to Python) or digits of other scripts numbers, as to every CSV reader.
    for text, problem in (("1,x,3\n4,5,6\n", "rows.csv:1: column 2 ('x') is not a number"),
                          ("1,2,3\n1_0,2,3\n", "rows.csv:2: column 1 ('1_0') is not a number"),
                          ("1,2,3\n\u0661,2,3\n", "rows.csv:2: column 1 ('\u0661') is not a number")):  # fmt: skip
        (tmp_path / "rows.csv").write_text(text)
        with pytest.raises(ZooError, match=re.escape(problem)):
            list(csv_chunks([str(tmp_path / "rows.csv")], 3, ()))


@pytest.mark.slow
def test_predict_standardises_raw_csv_rows_as_training_did(tmp_path):
    """Rows straight from scikit-learn's table (unstandardised): the breast_cancer prepare
    step applies the training split's statistics, so predictions match the model's own."""
    import keras
    from sklearn.datasets import load_breast_cancer

    import zoo

    run_dir = train(tmp_path, "+experiment=breast_cancer_mlp", "trainer.epochs=5")
    raw = load_breast_cancer().data[:25]
    path = tmp_path / "tumours.csv"
    header = ",".join(f"feature_{i}" for i in range(30))
    path.write_text(header + "\n" + "\n".join(",".join(f"{v:.6g}" for v in row) for row in raw) + "\n")
    result = run_zoo("predict", str(run_dir), str(path), "--csv")
    assert result.returncode == 0, result.stderr[-3000:]
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [row["input"] for row in rows] == [f"{path}:{i}" for i in range(2, 27)]

    splits = zoo.create_dataset("breast_cancer", standardize=False).load(seed=0)
    mean, std = splits.train[0].mean(axis=0), splits.train[0].std(axis=0) + 1e-7
    model = keras.saving.load_model(run_dir / "model.keras")
    expected = model.predict(((raw - mean) / std).astype(np.float32), verbose=0).reshape(-1)
    np.testing.assert_allclose([float(row["p(malignant)"]) for row in rows], expected, atol=1e-4)
    assert [row["predicted"] for row in rows] == ["malignant" if p >= 0.5 else "benign" for p in expected]

    # Rows are read and predicted a chunk at a time (a 63 MB file of 300,000 rows took 1.1 GB
    # held whole): past the first chunk they come out the same, and a bad row there still
    # leaves no --output file.
    from zoo import inference

    many, written = tmp_path / "many.csv", tmp_path / "predictions.csv"
    lines = path.read_text().splitlines()[1:]
    many.write_text("\n".join(lines[i % len(lines)] for i in range(inference.CSV_CHUNK + 10)) + "\n")
    result = run_zoo("predict", str(run_dir), str(many), "--csv", "-o", str(written))
    assert result.returncode == 0, result.stderr[-3000:]
    streamed = list(csv.DictReader(io.StringIO(result.stdout)))
    assert written.read_text() == result.stdout and len(streamed) == inference.CSV_CHUNK + 10
    assert all(row["p(malignant)"] == streamed[i % 25]["p(malignant)"] for i, row in enumerate(streamed))
    many.write_text(many.read_text() + "1,2,3\n")
    bad = run_zoo("predict", str(run_dir), str(many), "-o", str(tmp_path / "never.csv"))
    assert bad.returncode == 2 and f"many.csv:{inference.CSV_CHUNK + 11} has 3 values" in error_lines(bad.stderr)[0], bad.stderr[-2000:]
    assert not (tmp_path / "never.csv").exists() and not list(tmp_path.glob(".never*"))

    ragged = tmp_path / "ragged.csv"
    ragged.write_text(path.read_text().splitlines()[1] + "\n1,2,3\n")  # a good row, then a short one
    bad = run_zoo("predict", str(run_dir), str(ragged))
    assert bad.returncode == 2
    assert "ragged.csv:2 has 3 values; the model takes 30 per row" in error_lines(bad.stderr)[0]
    # Rows a model would still give a confident class for, and files that are not CSV text.
    good = path.read_text().splitlines()[1]
    for name, text, problem in (
        ("nan.csv", good + "\n" + ",".join(["nan"] + ["1"] * 29) + "\n", "nan.csv:2 has a value that is not a finite number"),
        ("inf.csv", ",".join(["1e39"] + ["1"] * 29) + "\n", "inf.csv:1 has a value that is not a finite number"),
        ("latin1.csv", None, "latin1.csv is not UTF-8 text"),
        ("huge.csv", "1," + "9" * 200_000 + "\n", "huge.csv: not a readable CSV (field larger than field limit"),
    ):
        target = tmp_path / name
        if text is None:
            target.write_bytes("caf\xe9,".encode("latin-1") * 30 + b"\n")
        else:
            target.write_text(text)
        bad = run_zoo("predict", str(run_dir), str(target))
        assert bad.returncode == 2 and len(error_lines(bad.stderr)) == 1 and problem in bad.stderr, (name, bad.stderr[-500:])
        assert "Warning" not in bad.stderr, bad.stderr  # NumPy's "overflow encountered in cast" had come with 1e39
    # Rows piped in (`... | zoo predict RUN -`) and a file not there: each had been "this model takes rows of 30 numbers;
    # pass CSV files", said of what were CSV rows.
    piped = subprocess.run([sys.executable, "-m", "zoo", "predict", str(run_dir), "-"], input=path.read_text(),
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert piped.returncode == 2 and error_lines(piped.stderr) == [
        "zoo: error: - is not a regular file (the standard input, a pipe or a device), which zoo predict does not read (it "
        "could wait on it for ever); save the rows to a file (... > rows.csv) and pass that"
    ], piped.stderr[-2000:]
    missing = run_zoo("predict", str(run_dir), str(tmp_path / "gone.csv"))
    assert missing.returncode == 2 and error_lines(missing.stderr) == [f"zoo: error: {tmp_path / 'gone.csv'}: no such file"]


def test_a_run_named_wrongly_is_answered_with_what_to_pass(default_run, tmp_path):
    """What a new user types where a run's directory goes: a setting first, one of the run's
    files, a folder that is not there, the run itself to ``zoo train``. Each had been "is not
    a run directory (it has no config.yaml)", or for ``zoo compare RUN/model.keras`` "does
    not exist", for ``zoo explain`` a complaint about an --output not given."""
    run = default_run[0]
    (tmp_path / "notes.txt").write_text("x")
    for args, line in (
        (["evaluate", "model=cnn_classifier"], "model=cnn_classifier is a setting, not a run directory: pass the run's directory first, then the settings"),
        (["evaluate", f"{run}/model.keras"], f"{run}/model.keras is part of the run in {run}; pass the run's directory, {run}"),
        (["compare", f"{run}/model.keras"], f"{run}/model.keras is part of the run in {run}; pass the run's directory, {run}"),
        (["explain", f"{run}/model.keras", "x.png"], f"{run}/model.keras is part of the run in {run}; pass the run's directory, {run}"),
        (["export", f"{run}/plots"], f"{run}/plots is part of the run in {run}; pass the run's directory, {run}"),
        (["predict", "gone", "x.png"], "gone does not exist (moved or deleted?); pass a run directory that 'zoo train' printed"),
        (["compare", "gone"], "gone does not exist (moved or deleted?); pass run directories or a sweep directory"),
        (["compare", "notes.txt"], "notes.txt is a file, not a run directory; pass run directories or a sweep directory"),
        (["train", f"trainer.init_from={run}/model.keras"], f"trainer.init_from={run}/model.keras is part of the run in {run}; pass the run's directory, {run}"),
        (["train", str(run)], f"{run} is a run's directory, not a setting: to continue it, name it as hydra.run.dir={run} with the "
                              f"settings it was started with; to train on from its weights in a new run, trainer.init_from={run}"),
    ):  # fmt: skip
        result = run_zoo(*args, cwd=tmp_path)
        assert result.returncode == 2 and error_lines(result.stderr) == [f"zoo: error: {line}"], (args, result.stderr[-2000:])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_predict_refuses_bad_inputs_in_one_line(default_run, tmp_path):
    from PIL import Image

    run_dir, _ = default_run
    notes = tmp_path / "notes.png"
    notes.write_text("not an image")
    (tmp_path / "empty").mkdir()
    deep = tmp_path / "deep"  # past the recursion of Python 3.11's folder walk (os.makedirs recurses too)
    deep.mkdir()
    os.chdir(deep)
    try:
        for _ in range(1200):
            os.mkdir("a")
            os.chdir("a")
        Image.fromarray(np.full((8, 8), 200, np.uint8)).save("x.png")
    finally:
        os.chdir(tmp_path)
    try:
        for directory, inputs, problem in (
            (run_dir, [str(notes)], "is not an image Pillow can read"),
            (run_dir, [str(tmp_path / "missing.png")], "no such file or folder"),
            (run_dir, ["/dev/zero"], "/dev/zero is not a regular file (a pipe, a socket or a device)"),
            (run_dir, [str(tmp_path / "empty")], "holds no image files"),
            (tmp_path, [str(notes)], f"{tmp_path} is not a run directory"),
            (tmp_path / "nowhere", [str(notes)], f"{tmp_path / 'nowhere'} does not exist (moved or deleted?)"),
        ):
            result = run_zoo("predict", str(directory), *inputs)
            assert result.returncode == 2, result.stderr
            (line,) = error_lines(result.stderr)
            assert problem in line
            assert "Traceback" not in result.stderr
        # A folder tree deeper than Python 3.11's os.walk could recurse had been "an input is
        # nested too deeply to read": its image is found and predicted.
        result = run_zoo("predict", str(run_dir), str(deep))
        assert result.returncode == 0 and result.stdout.count("/a/x.png") == 1, result.stderr[-2000:]
    finally:
        remove_deep(deep)  # else pytest's clean-up of its old folders fails in every later session (Python 3.11)


def remove_deep(folder: Path) -> None:
    """Remove a folder nested past shutil.rmtree's recursion, bottom up."""
    path = str(folder)
    while os.path.isdir(os.path.join(path, "a")):
        path = os.path.join(path, "a")
    for entry in os.listdir(path):
        os.remove(os.path.join(path, entry))
    while path != str(folder.parent):
        os.rmdir(path)
        path = os.path.dirname(path)


@pytest.mark.slow
def test_vae_run_reconstructs_samples_and_generates_reproducibly(tmp_path):
    run_dir = train(tmp_path, "model=vae", "trainer.epochs=2")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"loss", "reconstruction_loss", "kl_loss", "mse", "mae", "reconstruction_error"} <= set(metrics)
    assert metrics["loss"] == pytest.approx(metrics["reconstruction_loss"] + metrics["kl_loss"], rel=1e-3)
    for picture in ("reconstructions", "samples", "training_curves"):
        assert (run_dir / "plots" / f"{picture}.png").read_bytes().startswith(b"\x89PNG")

    first = run_zoo("generate", str(run_dir), "n=5", "seed=3", "-o", str(tmp_path / "a.npy"))
    assert first.returncode == 0, first.stderr[-3000:]
    run_zoo("generate", str(run_dir), "n=5", "seed=3", "-o", str(tmp_path / "b.npy"))
    samples = np.load(tmp_path / "a.npy")
    assert samples.shape == (5, 8, 8, 1) and samples.min() >= 0 and samples.max() <= 1
    np.testing.assert_array_equal(samples, np.load(tmp_path / "b.npy"))

    grid = run_zoo("generate", str(run_dir))
    assert grid.returncode == 0 and (run_dir / "generated" / "samples_seed0.png").is_file()
    unknown = run_zoo("generate", str(run_dir), "temperature=2")
    assert unknown.returncode == 2 and "key one of: seed, n" in error_lines(unknown.stderr)[0]
    for option, problem in (("n=0", "n=0 must be from 1 to 10000"), ("n=-3", "n=-3 must be from 1"),
                            ("n=100000000", "n=100000000 must be from 1 to 10000"), ("seed=-1", "seed=-1 must be from 0")):  # fmt: skip
        refused = run_zoo("generate", str(run_dir), option)
        assert refused.returncode == 2 and len(error_lines(refused.stderr)) == 1 and problem in refused.stderr, option
    texts = run_zoo("generate", str(run_dir), "-o", str(tmp_path / "samples.txt"))  # a PNG under that name, once
    assert texts.returncode == 2 and "write images to a .png (a grid) or a .npy" in error_lines(texts.stderr)[0]
    assert not (tmp_path / "samples.txt").exists()
    assert_exports_serve_the_model(run_dir, tmp_path, tflite=True)


def assert_exports_serve_the_model(run_dir: Path, tmp_path: Path, tflite: bool = False) -> None:
    """A SavedModel of any run serves what its model computes (a VAE, rebuilt by its
    factory and never called, could not be exported), a GAN's its generator's (noise in,
    images out: it had served the discriminator's real-or-fake score); TFLite converts it
    (as ``tflite`` says it must: a VAE's decoder and a GAN's generator had needed TensorFlow's
    Conv2D kernel), or says in one line which ops its runtime lacks and what to export instead."""
    import tensorflow as tf

    from zoo.hookspecs import GENERATION, SEQUENCE
    from zoo.run import finished_run_plan, load_trained_model

    exported = run_zoo("export", str(run_dir), "--format", "saved_model", "--output", str(tmp_path / "served"))
    assert exported.returncode == 0, exported.stderr[-2000:]
    plan, model = load_trained_model(run_dir, finished_run_plan(run_dir))
    rng = np.random.default_rng(0)
    shape = (4, *plan.spec.input_shape)
    x = rng.integers(0, plan.spec.num_classes, shape).astype("int32") if plan.spec.task == SEQUENCE else rng.random(shape, "float32")
    if plan.model.item.objective == GENERATION:
        assert f"it serves the generator: {model.latent_dim} standard normal numbers in, an image out" in exported.stdout
        x, model = rng.standard_normal((4, model.latent_dim)).astype("float32"), model.generator
    loaded = tf.saved_model.load(str(tmp_path / "served"))  # held: its variables go with it
    served = loaded.serve(tf.constant(x))
    np.testing.assert_allclose(np.asarray(served), np.asarray(model(x, training=False)), rtol=1e-4, atol=1e-5)
    lite = run_zoo("export", str(run_dir), "--format", "tflite", "--output", str(tmp_path / "model.tflite"))
    assert lite.returncode == 0 or not tflite, lite.stderr[-2000:]
    if lite.returncode != 0:
        assert lite.returncode == 2 and len(error_lines(lite.stderr)) == 1, lite.stderr[-2000:]
        assert "needs TensorFlow ops that TFLite's own runtime lacks" in lite.stderr and "--format saved_model" in lite.stderr
        assert not (tmp_path / "model.tflite").exists()


@pytest.mark.slow
def test_gan_run_trains_both_networks_and_only_generates(tmp_path):
    run_dir = tmp_path / "run"
    result = run_zoo("train", "model=gan", "trainer.epochs=2", "trainer.progress=off", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    # TensorFlow's C++ lines as it builds the step ("E0000 ... remapper failed") go to train.log.
    assert not re.search(r"^[IWE]\d{4} ", result.stderr, re.MULTILINE), result.stderr[-2000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics) == {"d_loss", "g_loss"} and all(np.isfinite(list(metrics.values())))
    with (run_dir / "history.csv").open() as f:
        assert {"d_loss", "g_loss", "val_d_loss", "val_g_loss"} <= set(next(csv.DictReader(f)))
    assert (run_dir / "plots" / "samples.png").is_file()
    assert not (run_dir / "plots" / "roc_curve.png").exists()
    refused = run_zoo("predict", str(run_dir), str(run_dir / "plots" / "samples.png"))
    assert refused.returncode == 2 and "use: zoo generate" in error_lines(refused.stderr)[0]
    assert_exports_serve_the_model(run_dir, tmp_path, tflite=True)


@pytest.mark.slow
def test_text_run_reports_perplexity_and_samples_text_from_a_prompt(tmp_path):
    overrides = [f"dataset.{k}={v}" for k, v in tiny_overrides("text").items()]
    run_dir = train(tmp_path, "+experiment=docstrings_gru", "trainer.epochs=2", "model.units=32", *overrides)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics) == {"loss", "perplexity"}
    # Perplexity is exp of the mean cross-entropy, which is the loss.
    assert metrics["perplexity"] == pytest.approx(np.exp(metrics["loss"]), rel=1e-4)
    spec = json.loads((run_dir / "spec.json").read_text())
    assert metrics["perplexity"] < len(spec["class_names"]), "no better than guessing uniformly"
    assert (run_dir / "samples.txt").read_text().strip()

    result = run_zoo("generate", str(run_dir), "n=2", "length=50", "prompt=def ", "temperature=0.5")
    assert result.returncode == 0, result.stderr[-3000:]
    texts = result.stdout.rstrip("\n").split("\n\n" + "-" * 72 + "\n\n")
    assert len(texts) == 2 and all(text.startswith("def ") and len(text) == 54 for text in texts)
    again = run_zoo("generate", str(run_dir), "n=2", "length=50", "prompt=def ", "temperature=0.5")
    assert again.stdout == result.stdout, "the same seed gives the same text"
    greedy = run_zoo("generate", str(run_dir), "n=2", "length=30", "temperature=0", "seed=7")
    assert greedy.returncode == 0, greedy.stderr[-3000:]
    first, second = greedy.stdout.rstrip("\n").split("\n\n" + "-" * 72 + "\n\n")
    assert first == second and len(first) == 30, "temperature 0: always the likeliest character, whatever the seed"
    for tiny in ("1e-30", "5e-324"):  # written as Hydra reads numbers; the smallest once made NaN probabilities
        near_zero = run_zoo("generate", str(run_dir), "n=2", "length=30", f"temperature={tiny}", "seed=7")
        assert near_zero.returncode == 0 and near_zero.stdout == greedy.stdout, near_zero.stderr[-2000:]
    for option, problem in (("temperature=-1", "temperature=-1 must be a number from 0"), ("temperature=.nan", "must be a finite number"),
                            ("length=100000000", "length=100000000 must be from 1 to 100000"),
                            ("prompt=" + "a" * 100_001, "the prompt has 100,001 characters; give at most 100,000")):  # fmt: skip
        bad = run_zoo("generate", str(run_dir), option)
        assert bad.returncode == 2 and problem in error_lines(bad.stderr)[0], option
    # Escape sequences in the text (learnt from a corpus; here in the prompt, which is echoed):
    # shown on a terminal, not obeyed; a pipe gets them as they are.
    prompt = "\x1b]0;title\x07\x1b[2J"
    piped = run_zoo("generate", str(run_dir), "n=1", "length=5", f"prompt={prompt}")
    assert piped.returncode == 0 and piped.stdout.startswith(prompt), piped.stderr[-2000:]
    assert terminal_output("generate", str(run_dir), "n=1", "length=5", f"prompt={prompt}").startswith("\\x1b]0;title\\x07\\x1b[2J")
    classifier = run_zoo("predict", str(run_dir), "x.txt")
    assert classifier.returncode == 2 and "use: zoo generate" in error_lines(classifier.stderr)[0]
    picture = run_zoo("generate", str(run_dir), "-o", str(tmp_path / "texts.png"))  # texts in a .png, once
    assert picture.returncode == 2 and "write texts to a .txt file, not texts.png" in error_lines(picture.stderr)[0]
    assert_exports_serve_the_model(run_dir, tmp_path)


def terminal_output(*args: str) -> str:
    """What ``zoo ARGS`` prints to a terminal (a pseudo-terminal as its standard output)."""
    import pty
    import subprocess
    import sys

    leader, follower = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "zoo", *args], stdout=follower, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal's other end closed: the process exited
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert process.wait(timeout=300) == 0
    return b"".join(chunks).decode().replace("\r\n", "\n")


@pytest.mark.slow
def test_image_folder_run_counts_the_files_it_skips(tmp_path):
    """The example folder holds 24 good images and, per class, a broken JPEG and a text
    file: all four are skipped, listed in data.json and warned about, none silently."""
    overrides = [f"dataset.{k}={v}".replace(" ", "") for k, v in tiny_overrides("image_folder").items()]
    run_dir = train(tmp_path, "model=cnn_classifier", "dataset=image_folder", "trainer.epochs=1", *overrides)
    report = json.loads((run_dir / "data.json").read_text())
    assert sum(report["images"].values()) == 24
    assert len(report["skipped"]) == 4
    assert sum("broken.jpg" in line for line in report["skipped"]) == 2
    log = (run_dir / "train.log").read_text()
    assert log.count("skipped ") == 4

    # The run keeps what it needs: with its training folder moved away, predict still works.
    folder = Path(tiny_overrides("image_folder")["path"])
    moved = tmp_path / "moved"
    shutil.copytree(folder, moved)
    shutil.rmtree(folder)
    try:
        result = run_zoo("predict", str(run_dir), str(moved / "cat"), "--csv")
    finally:
        shutil.copytree(moved, folder)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == 12 and {row["predicted"] for row in rows} <= {"cat", "not_cat"}
    # The folder's broken JPEG is skipped with a one-line warning, not a failure.
    (warning,) = [line for line in result.stderr.splitlines() if line.startswith("zoo: warning:")]
    assert "skipped" in warning and "broken.jpg" in warning

    # Evaluated on another folder: its classes must be the model's (x, y were scored as cat,
    # not_cat quietly), its images the size it takes.
    renamed = tmp_path / "renamed"
    shutil.copytree(folder, renamed)
    (renamed / "cat").rename(renamed / "x")
    (renamed / "not_cat").rename(renamed / "y")
    other = run_zoo("evaluate", str(run_dir), f"dataset.path={renamed}")
    assert other.returncode == 2 and error_lines(other.stderr) == [
        f"zoo: error: dataset.path={renamed} holds x, y, and the run's model learnt cat, not_cat: evaluate on data of those "
        "classes, in that order"
    ], other.stderr[-2000:]
    resized = run_zoo("evaluate", str(run_dir), "dataset.image_size=[12,12]")
    assert resized.returncode == 2 and "dataset.image_size=[12,12] gives inputs of shape (12, 12, 3), and the run's model takes" in resized.stderr


def test_a_model_file_carrying_code_runs_none_of_it(default_run, tmp_path):
    """A run directory whose model.keras was swapped for one with a Lambda layer (code that
    would write a sentinel file): the zoo reads only weights from it, so nothing runs, and
    the mismatch is reported in one line. Plain Keras refuses the file in safe mode too."""
    import keras

    sentinel = tmp_path / "sentinel"
    run_dir = tmp_path / "run"
    shutil.copytree(default_run[0], run_dir)
    target = str(sentinel)
    code = keras.layers.Lambda(lambda x: (open(target, "w").close(), x)[1])
    model = keras.Sequential([keras.Input((8, 8, 1)), code, keras.layers.Flatten(), keras.layers.Dense(10)])
    sentinel.unlink(missing_ok=True)  # building the model ran the lambda once, here
    (run_dir / "model.keras").unlink()
    model.save(run_dir / "model.keras")

    from PIL import Image

    Image.new("L", (8, 8)).save(tmp_path / "digit.png")
    for command in (["predict", str(run_dir), str(tmp_path / "digit.png")], ["evaluate", str(run_dir)], ["export", str(run_dir)]):
        result = run_zoo(*command, cwd=tmp_path)
        assert result.returncode != 0
        assert len(error_lines(result.stderr)) == 1 and "do not fit model 'cnn_classifier'" in result.stderr, result.stderr[-2000:]
        assert not sentinel.exists(), f"zoo {command[0]} ran code from the model file"
    model.save(tmp_path / "legacy.h5")
    for path in (run_dir / "model.keras", tmp_path / "legacy.h5"):
        with pytest.raises(ValueError, match="(?i)lambda|unsafe|safe_mode"):
            keras.saving.load_model(path)
    assert not sentinel.exists()


@pytest.mark.slow  # three evaluations
def test_a_model_file_whose_weights_point_to_other_files_is_refused_without_reading_them(default_run, tmp_path):
    """A crafted model.keras whose weights file holds an HDF5 external link, or a dataset
    stored in another file (a pipe here: reading it would wait for ever), or a virtual one:
    Keras refuses to follow them; the zoo says the file is not one it wrote."""
    import io
    import zipfile

    import h5py

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    original = zipfile.ZipFile(default_run[0] / "model.keras")
    source = h5py.File(io.BytesIO(original.read("model.weights.h5")), "r")
    datasets = []
    source.visititems(lambda name, item: datasets.append(name) if isinstance(item, h5py.Dataset) else None)
    for kind in ("link", "external", "virtual"):
        run_dir = tmp_path / kind
        shutil.copytree(default_run[0], run_dir, ignore=shutil.ignore_patterns("model.keras"))
        buffer = io.BytesIO()
        with h5py.File(buffer, "w") as crafted:
            source.visititems(lambda name, item: [crafted.attrs.update(source.attrs), crafted.require_group(name).attrs.update(item.attrs)]
                              if isinstance(item, h5py.Group) else None)  # fmt: skip
            first, *rest = datasets
            shape, dtype = source[first].shape, source[first].dtype
            if kind == "link":
                parent, _, leaf = first.rpartition("/")
                crafted.require_group(parent)[leaf] = h5py.ExternalLink(str(fifo), "/x")
            elif kind == "external":
                crafted.create_dataset(first, shape=shape, dtype=dtype, external=[(str(fifo), 0, h5py.h5f.UNLIMITED)])
            else:
                layout = h5py.VirtualLayout(shape=shape, dtype=dtype)
                layout[...] = h5py.VirtualSource(str(fifo), "x", shape=shape)
                crafted.create_virtual_dataset(first, layout)
            for name in rest:
                crafted.create_dataset(name, data=source[name][()])
        with zipfile.ZipFile(run_dir / "model.keras", "w") as archive:
            for name in original.namelist():
                archive.writestr(name, buffer.getvalue() if name == "model.weights.h5" else original.read(name))
        result = run_zoo("evaluate", str(run_dir), cwd=tmp_path, timeout=120)
        assert result.returncode == 2 and error_lines(result.stderr) == [
            f"zoo: error: {run_dir / 'model.keras'} is not a file the zoo wrote: its weights point to other files (an HDF5 "
            "external link, external or virtual dataset), which Keras refuses to follow; restore it from a backup, or "
            "train the run again in a new hydra.run.dir"
        ], result.stderr[-2000:]


def decompression_bomb(path: Path) -> None:
    """A PNG of a few bytes that declares 30,000 x 30,000 pixels."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(100))) + chunk(b"IEND", b""))


def test_pictures_are_read_for_a_model_as_the_image_folder_dataset_decoded_them_for_training(tmp_path):
    """zoo predict and explain read pictures with Pillow; the image folder dataset trained on
    TensorFlow's decoding. They must agree: a 16-bit PNG (a scanner's, a microscope's) was
    read clipped at 255, a white picture, while training had seen its high byte. A
    floating-point image has no known range: skipped in a folder, refused by name."""
    import tensorflow as tf
    from PIL import Image

    from zoo.errors import ZooError
    from zoo.inference import read_images

    rng = np.random.default_rng(0)
    pictures = {
        "gray16.png": tf.io.encode_png((rng.random((12, 10, 1)) * 65535).astype(np.uint16)),
        "rgb16.png": tf.io.encode_png((rng.random((12, 10, 3)) * 65535).astype(np.uint16)),
        "rgba.png": tf.io.encode_png((rng.random((12, 10, 4)) * 255).astype(np.uint8)),
        "gray.png": tf.io.encode_png((rng.random((12, 10, 1)) * 255).astype(np.uint8)),
    }
    for name, encoded in pictures.items():
        (tmp_path / name).write_bytes(encoded.numpy())
        for channels in (1, 3):
            trained_on = tf.io.decode_image(encoded, channels=channels, dtype=tf.uint8).numpy() / 255.0
            _, read = read_images([(tmp_path / name, True)], (12, 10, channels))
            np.testing.assert_allclose(read[0], trained_on, atol=1.01 / 255, err_msg=f"{name}, {channels} channel(s)")
    Image.fromarray(rng.random((12, 10)).astype(np.float32)).save(tmp_path / "float.tif")
    with pytest.warns(Warning, match="floating-point"):
        names, _ = read_images([(tmp_path / "float.tif", False), (tmp_path / "gray.png", False)], (12, 10, 1))
    assert names == [str(tmp_path / "gray.png")]
    with pytest.raises(ZooError, match="float.tif is not an image Pillow can read.*floating-point"):
        read_images([(tmp_path / "float.tif", True)], (12, 10, 1))


def test_a_folder_is_predicted_a_chunk_at_a_time_with_the_same_rows(default_run, tmp_path, monkeypatch):
    """A folder of 100,000 photos is read, prepared and predicted a few hundred at a time,
    not held in memory at once: chunks (one of them all unreadable) give the same rows."""
    from PIL import Image

    from zoo import inference

    folder = tmp_path / "pictures"
    folder.mkdir()
    for i in range(7):
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (8, 8), dtype=np.uint8)).save(folder / f"{i}.png")
    for name in ("7.png", "8.png"):
        (folder / name).write_bytes(b"not a picture")
    os.mkfifo(folder / "9.png")  # opened, it had waited for a writer for ever
    (folder / "10.png").symlink_to(tmp_path / "gone.png")
    with pytest.warns(Warning, match="skipped") as said:
        whole = list(inference.predict(default_run[0], [str(folder)])[1])
    assert {f"skipped {folder / '9.png'}: not a regular file (a pipe, a socket or a device)",
            f"skipped {folder / '10.png'}: a link to {tmp_path / 'gone.png'}, which does not exist"} <= {str(w.message) for w in said}  # fmt: skip
    monkeypatch.setattr(inference, "IMAGE_CHUNK", 2)
    with pytest.warns(Warning, match="skipped"):
        chunked = list(inference.predict(default_run[0], [str(folder)])[1])
    assert chunked == whole and len(whole) == 7


def test_a_decompression_bomb_is_skipped_in_a_folder_and_refused_by_name(default_run, tmp_path):
    from PIL import Image

    run_dir, _ = default_run
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.new("L", (8, 8), 255).save(folder / "good.png")
    decompression_bomb(folder / "bomb.png")
    result = run_zoo("predict", str(run_dir), str(folder), "--csv")
    assert result.returncode == 0, result.stderr[-2000:]
    assert [row["input"] for row in csv.DictReader(io.StringIO(result.stdout))] == [str(folder / "good.png")]
    assert "skipped" in result.stderr and "decompression bomb" in result.stderr
    named = run_zoo("predict", str(run_dir), str(folder / "bomb.png"))
    assert named.returncode == 2 and len(error_lines(named.stderr)) == 1 and "Traceback" not in named.stderr


def test_a_finished_run_is_evaluated_on_this_machines_devices_not_the_ones_it_trained_on(default_run, tmp_path):
    """`zoo evaluate` placed the model on the run's recorded device: a run trained on a GPU
    failed on a machine without one, and a multi-worker run waited (300 s) for its workers on
    the hosts its config names. It runs where it is; device=KIND chooses."""
    import shutil

    import yaml

    expected = json.loads((default_run[0] / "metrics.json").read_text())
    for device in ({"kind": "gpu", "index": 3}, {"kind": "multi_worker", "workers": ["127.0.0.1:1", "127.0.0.1:2"], "rank": 0}):
        run_dir = tmp_path / device["kind"]
        shutil.copytree(default_run[0], run_dir)
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
        (run_dir / "config.yaml").write_text(yaml.safe_dump({**config, "device": device}))
        result = run_zoo("evaluate", str(run_dir), "--json", timeout=120)
        assert result.returncode == 0 and json.loads(result.stdout) == expected, result.stderr[-2000:]
    mirrored = run_zoo("evaluate", str(run_dir), "device=cpu", "device.replicas=2", "--json", timeout=120)
    assert mirrored.returncode == 0 and json.loads(mirrored.stdout)["accuracy"] == pytest.approx(expected["accuracy"]), mirrored.stderr[-2000:]


@pytest.mark.slow  # the default suite stays near 15 minutes
def test_keras_settings_chosen_for_other_work_change_nothing_the_zoo_computes(default_run, tmp_path):
    """~/.keras/keras.json with channels_first failed every CNN ("output size would be zero or
    negative"); with floatx float16 training diverged. The zoo's models run as written,
    and the run's log says what was set aside."""
    home = tmp_path / "home"
    (home / ".keras").mkdir(parents=True)
    (home / ".keras" / "keras.json").write_text(json.dumps({"image_data_format": "channels_first", "floatx": "float16", "epsilon": 0.5}))
    run_dir = tmp_path / "run"
    trained = run_zoo("train", "model=cnn_classifier", "model.filters=4", "trainer.epochs=1", "loggers=none", f"hydra.run.dir={run_dir}",
                      cwd=tmp_path, env={"HOME": str(home)})  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-2000:]
    log = (run_dir / "train.log").read_text()
    for setting in ("image_data_format='channels_first'", "floatx='float16'", "epsilon=0.5"):
        assert f"keras.json's {setting} set aside" in log
    scored = run_zoo("evaluate", str(default_run[0]), "--json", env={"HOME": str(home)})
    assert scored.returncode == 0 and json.loads(scored.stdout) == json.loads((default_run[0] / "metrics.json").read_text())


@pytest.mark.parametrize(
    "settings, problem",
    [
        ({"floatx": "bfloat16"}, "sets floatx 'bfloat16', none of float16, float32, float64"),
        ({"epsilon": 1}, "sets epsilon 1, not a number with a decimal point"),
        ({"image_data_format": "NHWC"}, "sets image_data_format 'NHWC', none of channels_last, channels_first"),
        ([], "is not a JSON object of settings"),
        (None, "is a folder"),
        ("pipe", "is a pipe or a device (they would wait on it for ever)"),
    ],
)
def test_a_keras_json_tensorflow_stops_on_is_named(default_run, settings, problem, tmp_path):
    """TensorFlow's import (and Keras') stop on such a keras.json: "tensorflow failed:
    AssertionError: at backend.py:6244: assert _floatx in {'float16', 'float32', 'float64'}",
    the file unnamed; on a pipe they waited for ever."""
    home = tmp_path / "home"
    (home / ".keras").mkdir(parents=True)
    if settings is None:
        (home / ".keras" / "keras.json").mkdir()
    elif settings == "pipe":
        os.mkfifo(home / ".keras" / "keras.json")
    else:
        (home / ".keras" / "keras.json").write_text(json.dumps(settings))
    result = run_zoo("evaluate", str(default_run[0]), env={"HOME": str(home)}, timeout=120)
    assert result.returncode == 2 and error_lines(result.stderr) == [
        f"zoo: error: {home / '.keras' / 'keras.json'} {problem}: TensorFlow and Keras read it as they start; correct it or "
        "remove it (the zoo runs in float32, channels last, whatever it says), or set KERAS_HOME to another folder"
    ], result.stderr[-2000:]


@pytest.mark.parametrize("name, version, needs", [("keras", "2.15.0", "keras>=3.15"), ("tensorflow-cpu", "2.13.1", "tensorflow-cpu>=2.16")])
def test_a_library_older_than_the_zoo_needs_is_named_before_it_loads(default_run, tmp_path, name, version, needs):
    """An older Keras or TensorFlow ahead of the installed ones (on PYTHONPATH, by pip
    install --no-deps, from a system package): Keras 2.15 had failed every command on
    "keras failed: AttributeError: module 'tensorflow._api.v2.compat.v2.__internal__' has no
    attribute 'register_load_context_function'". The older distribution's record alone here."""
    old = tmp_path / "old"
    record = old / f"{name.replace('-', '_')}-{version}.dist-info"
    record.mkdir(parents=True)
    (record / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    result = run_zoo("evaluate", str(default_run[0]), env={"PYTHONPATH": str(old)}, timeout=120)
    assert result.returncode == 2 and error_lines(result.stderr) == [
        f"zoo: error: {name} {version} is installed (in {old}), and the zoo needs {needs}: pip install '{needs}', or take "
        "that folder off PYTHONPATH"
    ], result.stderr[-2000:]


def test_a_keras_backend_chosen_for_other_work_does_not_stop_the_zoo(default_run):
    """KERAS_BACKEND=jax exported for another project (or keras.json's choice) made every
    command fail on importing jax; the zoo's models are TensorFlow's, so its commands choose
    that backend. A program that imported Keras on another backend first is told why."""
    import subprocess
    import sys

    result = run_zoo("evaluate", str(default_run[0]), "--json", env={"KERAS_BACKEND": "jax"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout)["accuracy"] > 0.5
    # Keras imported on JAX before the zoo (jax is not installed here: a stand-in says so)
    script = (
        "import sys, types\nsys.modules['keras'] = types.SimpleNamespace(backend=types.SimpleNamespace(backend=lambda: 'jax'))\n"
        "from zoo.run import import_tensorflow\nimport_tensorflow()"
    )
    other = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert other.returncode == 1
    assert "zoo.errors.ZooError: Keras runs on jax here; the zoo needs its TensorFlow backend: set KERAS_BACKEND=tensorflow" in other.stderr


@pytest.mark.parametrize("backend", ["junk", "module://nowhere_backend"])
def test_a_matplotlib_backend_chosen_for_other_work_does_not_stop_the_zoo(default_run, backend, tmp_path):
    """MPLBACKEND left by a desktop session: one Matplotlib does not know had failed every run
    ("matplotlib failed: ValueError: Key backend: 'junk' is not a valid value for backend")
    and `zoo compare --plot`; the zoo's pictures are files, drawn by the file backend."""
    result = run_zoo("train", "trainer.epochs=1", "model.filters=4", f"hydra.run.dir={tmp_path / 'run'}", env={"MPLBACKEND": backend})
    assert result.returncode == 0 and (tmp_path / "run" / "plots" / "confusion_matrix.png").is_file(), result.stderr[-2000:]
    result = run_zoo("compare", str(default_run[0]), "--plot", str(tmp_path / "both.png"), env={"MPLBACKEND": backend})
    assert result.returncode == 0 and (tmp_path / "both.png").is_file(), result.stderr[-2000:]


def test_a_thread_count_tensorflow_aborts_on_is_one_line(default_run):
    """TF_NUM_INTRAOP_THREADS=-5 left from other work: TensorFlow aborted at its first op
    (status 134, "Check failed: num_threads >= 1" and a C++ stack)."""
    result = run_zoo("evaluate", str(default_run[0]), env={"TF_NUM_INTRAOP_THREADS": "-5"})
    assert result.returncode == 2 and result.stderr.strip() == (
        "zoo: error: TF_NUM_INTRAOP_THREADS=-5 in the environment is a negative thread count, which TensorFlow aborts on; "
        "unset it, or give 0 (TensorFlow's choice) or more"
    ), result.stderr[-2000:]


@pytest.mark.slow  # the default suite stays near 15 minutes
@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1])
def test_a_command_stopped_by_sigterm_or_sighup_takes_back_what_it_was_writing(default_run, tmp_path, number):
    """A scheduler's SIGTERM (or its notice, SIGUSR1) or a closed terminal's SIGHUP killed
    `zoo explain` with nothing said, half its pictures left in a folder it had made (and
    `zoo predict -o` its temporary file): it stops as on Ctrl-C, in one line, and the
    folder goes."""
    import time

    from PIL import Image

    folder, out = tmp_path / "digits", tmp_path / "why"
    folder.mkdir()
    for i in range(150):
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (8, 8), dtype=np.uint8)).save(folder / f"{i}.png")
    process = subprocess.Popen(
        [sys.executable, "-m", "zoo", "explain", str(default_run[0]), str(folder), "-o", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL),  # as from a terminal, even under a nohup'd suite
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while not (out.is_dir() and len(list(out.iterdir())) >= 3) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert process.poll() is None, "it finished before a signal could be sent"
    process.send_signal(number)
    stderr = process.communicate(timeout=120)[1]
    said = [line for line in stderr.splitlines() if line.startswith("zoo:")]
    assert process.returncode == 128 + number and said == [f"zoo: stopped by {signal.Signals(number).name}"], stderr[-2000:]
    assert "Traceback" not in stderr
    assert not out.exists()
