"""`zoo explain`: each method against what it promises (completeness, the occlusion
difference, SHAP's efficiency, the gradient), the sanity check against random weights, the
pictures and CSV, and one-line refusals before TensorFlow."""

from __future__ import annotations

import csv

import numpy as np
import pytest

import zoo

from conftest import error_lines, run_zoo


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A small digits CNN and a breast-cancer MLP, trained as users train them."""
    root = tmp_path_factory.mktemp("explain")
    trained = {}
    for name, args in {
        "digits": ["model=cnn_classifier", "model.filters=8", "dataset=digits", "trainer.epochs=8"],
        "cancer": ["model=mlp_classifier", "dataset=breast_cancer", "trainer.epochs=10"],
    }.items():
        result = run_zoo("train", *args, "trainer.progress=off", "loggers=none", f"hydra.run.dir={root / name}", cwd=root)
        assert result.returncode == 0, result.stderr[-3000:]
        trained[name] = root / name
    return trained


def test_integrated_gradients_are_complete(runs):
    import keras

    from zoo.explain import explain

    x = zoo.create_dataset("digits").load(0).test[0][:6]
    found = explain(runs["digits"], x, method="integrated_gradients")
    model = keras.saving.load_model(runs["digits"] / "model.keras")
    p_input = model.predict(x, verbose=0)[np.arange(6), found.target]
    p_baseline = model.predict(np.zeros_like(x), verbose=0)[0, found.target]
    sums = found.attributions.reshape(6, -1).sum(axis=1)
    np.testing.assert_allclose(sums, p_input - p_baseline, rtol=0.01, atol=1e-4)  # within 1%: the bar
    assert (found.completeness_error < 0.01).all()
    np.testing.assert_allclose(found.probability, p_input, rtol=1e-5)


def test_saliency_is_the_gradients_size_and_occlusion_the_probability_drop(runs):
    import keras

    from zoo.explain import explain

    x = zoo.create_dataset("breast_cancer").load(0).test[0][:3]
    model = keras.saving.load_model(runs["cancer"] / "model.keras")
    p = lambda batch: model.predict(batch, verbose=0)[:, 0]  # noqa: E731  p(malignant)
    occluded = explain(runs["cancer"], x, method="occlusion", target="malignant")
    for n in range(3):
        changed = np.repeat(x[n : n + 1], 30, axis=0)
        changed[np.arange(30), np.arange(30)] = 0.0
        np.testing.assert_allclose(occluded.attributions[n], p(x[n : n + 1]) - p(changed), atol=1e-5)
    # Saliency is the gradient of the score before the sigmoid: the output layer's logit,
    # computed here from the hidden layer's output and the output layer's weights.
    hidden = keras.Model(model.input, model.layers[-2].output)
    kernel, bias = model.layers[-1].get_weights()
    logit = lambda batch: (hidden.predict(batch, verbose=0).astype("float64") @ kernel + bias)[:, 0]  # noqa: E731
    salient = explain(runs["cancer"], x, method="saliency", target=1)
    step = 1e-2  # central differences on the three largest
    for n in range(3):
        for i in np.argsort(-salient.attributions[n])[:3]:
            up, down = x[n : n + 1].copy(), x[n : n + 1].copy()
            up[0, i] += step
            down[0, i] -= step
            numeric = abs(float(logit(up)[0] - logit(down)[0]) / (2 * step))
            assert salient.attributions[n, i] == pytest.approx(numeric, rel=0.05, abs=1e-4)


def spearman(a, b) -> float:
    ranks = [np.argsort(np.argsort(v.ravel(), kind="stable")) for v in (a, b)]
    return float(np.corrcoef(*ranks)[0, 1])


@pytest.mark.parametrize("method", ["saliency", "gradcam", "integrated_gradients", "occlusion"])
def test_explanations_depend_on_the_trained_weights(runs, method):
    """Adebayo et al. (2018): the same architecture with random weights, asked about the
    same class, must be explained differently (signed attributions, summed over channels)."""
    import keras

    from zoo.explain import explain
    from zoo.run import finished_run_plan

    x = zoo.create_dataset("digits").load(0).test[0][:12]
    trained = explain(runs["digits"], x, method=method)
    plan = finished_run_plan(runs["digits"])
    keras.utils.set_random_seed(99)
    untrained = plan.model.item.factory(plan.model_config, plan.spec)
    random = explain(runs["digits"], x, method=method, target=trained.target, model=untrained)
    rho = np.mean([spearman(a.sum(-1), b.sum(-1)) for a, b in zip(trained.attributions, random.attributions)])
    assert rho < 0.5, rho


@pytest.mark.parametrize("method", ["saliency", "gradcam"])
def test_gradient_maps_of_a_confident_model_are_not_empty(runs, method):
    """A confident model's probability rounds to 1.0 in float32 and its gradient to zero.
    Saliency and Grad-CAM differentiate the class score before the softmax, as their authors
    do: an output layer 100 times sharper gives the same map 100 times larger, not nothing."""
    from zoo.explain import explain
    from zoo.run import finished_run_plan, load_trained_model

    x = zoo.create_dataset("digits").load(0).test[0][:6]
    plan = finished_run_plan(runs["digits"])
    _, trained = load_trained_model(runs["digits"], plan)
    sharper = plan.model.item.factory(plan.model_config, plan.spec)
    weights = trained.get_weights()
    sharper.set_weights(weights[:-2] + [w * 100 for w in weights[-2:]])  # the output layer's kernel and bias
    ordinary = explain(runs["digits"], x, method=method)
    sharp = explain(runs["digits"], x, method=method, target=ordinary.target, model=sharper)
    assert (sharp.probability == 1.0).all()  # saturated: the probability's gradient is zero
    scale = np.abs(ordinary.attributions).max()
    np.testing.assert_allclose(sharp.attributions, 100 * ordinary.attributions, rtol=1e-3, atol=1e-3 * scale)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["lime", "shap"])
def test_lime_and_shap_explain_images_and_rows(runs, method, tmp_path, capsys):
    from zoo.explain import explain

    row = zoo.create_dataset("breast_cancer").load(0).test[0][:1]
    found = explain(runs["cancer"], row, method=method, target="malignant")
    assert found.attributions.shape == (1, 30) and np.abs(found.attributions).sum() > 0
    if method == "shap":  # efficiency: the values add up to f(x) - f(background)
        from zoo.explain import class_probabilities
        from zoo.run import load_trained_model

        import tensorflow as tf

        _, model = load_trained_model(runs["cancer"])
        ends = class_probabilities(tf, model, np.concatenate([np.zeros_like(row), row]))[:, 1]
        assert found.attributions.sum() == pytest.approx(ends[1] - ends[0], abs=1e-3)
    image = zoo.create_dataset("digits").load(0).test[0][:1]
    capsys.readouterr()
    pictured = explain(runs["digits"], image, method=method)
    assert pictured.heat.shape == (1, 8, 8) and pictured.heat.max() > 0
    assert "it/s" not in capsys.readouterr().err, "LIME's progress bar, one per image"


def test_zoo_explain_draws_a_picture_per_input_and_writes_the_csv(runs, tmp_path):
    from PIL import Image

    images = zoo.create_dataset("digits").load(0).test[0][:2]
    for i, image in enumerate(images):
        Image.fromarray((image[..., 0] * 255).astype("uint8")).save(tmp_path / f"digit{i}.png")
    result = run_zoo("explain", str(runs["digits"]), str(tmp_path / "digit0.png"), str(tmp_path / "digit1.png"),
                     "--method", "gradcam", "-o", str(tmp_path / "out"))  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    pictures = sorted((tmp_path / "out").glob("*.png"))
    assert [p.name for p in pictures] == ["digit0.gradcam.png", "digit1.gradcam.png"]
    assert all(Image.open(p).size == (960, 390) for p in pictures)
    with open(tmp_path / "out" / "attributions.gradcam.csv", newline="") as file:
        rows = list(csv.reader(file))
    assert rows[0][:3] == ["input", "class", "probability"] and len(rows) == 3 and len(rows[1]) == 3 + 64
    # A user's folder: nothing in it is written over.
    again = run_zoo("explain", str(runs["digits"]), str(tmp_path / "digit0.png"), "--method", "gradcam", "-o", str(tmp_path / "out"))
    assert again.returncode == 2 and "exists and was not written by this command" in error_lines(again.stderr)[0]
    # A link to nowhere is the user's too: it had been replaced by the pictures' CSV.
    (tmp_path / "linked").mkdir()
    (tmp_path / "linked" / "attributions.gradcam.csv").symlink_to(tmp_path / "gone.csv")
    (tmp_path / "nowhere").symlink_to(tmp_path / "gone")  # the folder itself: "nowhere: File exists"
    for folder, problem in (("linked", "exists and was not written by this command"), ("nowhere", "is a link to")):
        refused = run_zoo("explain", str(runs["digits"]), str(tmp_path / "digit0.png"), "--method", "gradcam", "-o", str(tmp_path / folder))
        assert refused.returncode == 2 and problem in error_lines(refused.stderr)[0], refused.stderr
    assert (tmp_path / "linked" / "attributions.gradcam.csv").is_symlink() and sorted(p.name for p in (tmp_path / "linked").iterdir()) == ["attributions.gradcam.csv"]

    rows_csv = tmp_path / "rows.csv"
    rows_csv.write_text("\n".join(",".join(str(v) for v in row) for row in np.random.default_rng(0).normal(10, 3, (2, 30))))
    tabular = run_zoo("explain", str(runs["cancer"]), str(rows_csv))
    assert tabular.returncode == 0, tabular.stderr[-3000:]
    assert "within" in tabular.stdout  # the completeness line
    assert sorted(p.name for p in (runs["cancer"] / "explanations").iterdir()) == [
        "attributions.integrated_gradients.csv", "rows_row1.integrated_gradients.png", "rows_row2.integrated_gradients.png"
    ]  # fmt: skip


def test_names_near_the_longest_a_file_may_have_are_written(runs, tmp_path):
    """An input named with 250 bytes gave a picture `NAME.gradcam.png` past 255, and an output
    of 254 bytes a temporary file `.NAME-x8i45ukj.csv` past them: each command failed at its
    end on "File name too long", the names given being fine."""
    from PIL import Image

    image = zoo.create_dataset("digits").load(0).test[0][0]
    source = tmp_path / ("d" * 250 + ".png")
    Image.fromarray((image[..., 0] * 255).astype("uint8")).save(source)
    explained = run_zoo("explain", str(runs["digits"]), str(source), "--method", "gradcam", "-o", str(tmp_path / "out"))
    assert explained.returncode == 0, explained.stderr[-2000:]
    assert [len(p.name.encode()) <= 255 for p in (tmp_path / "out").iterdir()] == [True, True]
    output = tmp_path / ("p" * 250 + ".csv")
    predicted = run_zoo("predict", str(runs["digits"]), str(source), "-o", str(output))
    assert predicted.returncode == 0 and output.read_text().startswith("input,predicted"), predicted.stderr[-2000:]


@pytest.mark.parametrize(
    "args,problem",
    [
        (["digits", "x.png", "--method", "gradcm"], "did you mean 'gradcam'?"),
        (["cancer", "rows.csv", "--method", "gradcam"], "gradcam needs a convolutional model of images"),
        (["digits", "x.png", "--target", "10"], "--target 10 is out of range: this run has 10 classes"),
        (["cancer", "rows.csv", "--target", "tumour"], "is not a class of this run; its classes: benign, malignant"),
        (["nowhere", "x.png"], "nowhere does not exist (moved or deleted?); pass a run directory"),
        (["digits", "x.png", "--baseline", "nan"], "--baseline nan must be a finite float32 number"),  # NaN attributions, exit 0
        (["digits", "x.png", "--baseline", "1e308"], "--baseline 1e+308 must be a finite float32 number"),  # overflowed: NaN too
        (["digits", "x.png", "--steps", "100000000"], "--steps must be from 2 to 4,096, got 100000000"),  # computed for hours
        (["digits", "x.png", "--method", "occlusion", "--window", "-3"], "--window must be a patch side of at least 1 pixel"),  # exit 0
        (["digits", "x.png", "--method", "gradcam", "--layer", "hidden"], "--layer 'hidden' has no spatial feature maps for gradcam"),
        # An option of another method had been passed over unsaid, exit 0.
        (["digits", "x.png", "--method", "lime", "--steps", "3"], "--steps applies to --method integrated_gradients only, not lime"),
        (["digits", "x.png", "--layer", "conv"], "--layer applies to --method gradcam only, not integrated_gradients"),
        (["cancer", "rows.csv", "--method", "shap", "--window", "3"], "--window applies to --method occlusion only, not shap"),
        (["digits", "x.png", "--method", "saliency", "--baseline", "0.5"], "--baseline applies to --method integrated_gradients, occlusion, lime, shap only"),
    ],
)
def test_explain_mistakes_are_one_line(runs, tmp_path, args, problem):
    from PIL import Image

    Image.new("L", (8, 8)).save(tmp_path / "x.png")  # a digit, for the mistakes found once the inputs are read
    run = str(runs.get(args[0], tmp_path / args[0]))
    result = run_zoo("explain", run, *args[1:], cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    (line,) = error_lines(result.stderr)
    assert problem in line


def test_gradcam_weighs_the_last_convolution_not_the_pooling_after_it():
    import keras

    from zoo.explain import last_convolution

    inputs = keras.Input((16, 16, 1))
    x = keras.layers.Conv2D(2, 3, name="conv_1")(inputs)
    x = keras.layers.MaxPooling2D(2, name="pool_1")(x)
    x = keras.layers.Conv2D(2, 3, name="conv_2")(x)
    x = keras.layers.Dropout(0.1, name="dropout")(keras.layers.MaxPooling2D(2, name="pool_2")(x))
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(x)))
    assert last_convolution(model, None).name == "conv_2"  # 5x5 maps, not pool_2's 2x2
    assert last_convolution(model, "pool_1").name == "pool_1"  # --layer names any layer


def two_images_explained():
    """An explanation of two 8x8 images, as zoo explain makes one, without a model."""
    from zoo.explain import Explanation

    rng = np.random.default_rng(0)
    return Explanation(
        method="saliency", names=["a.png", "b.png"], inputs=rng.random((2, 8, 8, 1)), attributions=rng.random((2, 8, 8, 1)),
        heat=rng.random((2, 8, 8)), target=np.array([0, 1]), probability=np.array([0.6, 0.7]), predicted=np.array([0, 1]),
        class_names=["zero", "one"], feature_names=[],
    )  # fmt: skip


def test_a_disk_that_fills_part_way_leaves_no_half_set_of_pictures(tmp_path, monkeypatch):
    """The pictures are written one by one, then the CSV: a full disk at the CSV had left the
    pictures without it (and, in a new --output, a folder the command made)."""
    import errno

    from zoo import artifacts
    from zoo.explain import write_explanations

    explanation = two_images_explained()

    def full(path, text):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(artifacts, "write_text", full)
    folder = tmp_path / "out"
    folder.mkdir()
    with pytest.raises(OSError):
        write_explanations(explanation, folder)
    assert list(folder.iterdir()) == []
    monkeypatch.undo()
    assert [p.name for p in write_explanations(explanation, folder)] == ["a.saliency.png", "b.saliency.png", "attributions.saliency.csv"]


def test_a_file_made_in_the_folder_while_pictures_are_drawn_is_kept(tmp_path, monkeypatch):
    """`zoo explain -o FOLDER` checks its files are new before drawing, and again as each is
    placed: a file made meanwhile (a second command given the folder) had been written over."""
    from zoo import artifacts
    from zoo.explain import claim_planned_files, write_explanations

    explanation = two_images_explained()
    folder = tmp_path / "out"
    folder.mkdir()
    claim_planned_files(explanation, folder)
    draw = artifacts.plot_attribution_image

    def draw_while_another_writes(path, *args):
        (folder / "b.saliency.png").write_text("another's")
        draw(path, *args)

    monkeypatch.setattr(artifacts, "plot_attribution_image", draw_while_another_writes)
    with pytest.raises(zoo.ZooError, match="b.saliency.png was made by another program"):
        write_explanations(explanation, folder)
    assert [p.name for p in folder.iterdir()] == ["b.saliency.png"] and (folder / "b.saliency.png").read_text() == "another's"
    with pytest.raises(zoo.ZooError, match="b.saliency.png exists and was not written by this command"):
        claim_planned_files(explanation, folder)


def test_many_inputs_get_pictures_for_the_first_and_attributions_for_all(tmp_path, monkeypatch):
    """A CSV of 2,000 rows drew 2,000 bar charts, over five minutes: pictures are drawn for
    the first MAX_PICTURES inputs, and the CSV holds every input's attributions."""
    import csv

    from zoo import explain
    from zoo.explain import Explanation, write_explanations

    monkeypatch.setattr(explain, "MAX_PICTURES", 3)
    n, rng = 7, np.random.default_rng(0)
    explanation = Explanation(
        method="saliency", names=[f"rows.csv:{i}" for i in range(2, n + 2)], inputs=rng.random((n, 4)),
        attributions=rng.random((n, 4)), heat=None, target=np.zeros(n, int), probability=rng.random(n),
        predicted=np.zeros(n, int), class_names=["no", "yes"], feature_names=["a", "b", "c", "d"],
    )  # fmt: skip
    written = write_explanations(explanation, tmp_path)
    assert [p.name for p in written] == ["rows_row2.saliency.png", "rows_row3.saliency.png", "rows_row4.saliency.png", "attributions.saliency.csv"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in written)
    with open(written[-1], newline="") as file:
        assert [row["input"] for row in csv.DictReader(file)] == explanation.names
