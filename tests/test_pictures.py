"""The pictures a run draws, rendered at the presets' sizes: titles inside the figure, and
curves that can be told apart."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import run_zoo

from zoo.artifacts import roc_figure


def predictions(classes: int, separation: float, n: int = 360, seed: int = 0):
    """Class probabilities of a fairly good classifier (the digits CNN's AUCs are ~0.98-1)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    logits = rng.normal(size=(n, classes))
    logits[np.arange(n), y] += separation
    p = np.exp(logits)
    return y, p / p.sum(axis=1, keepdims=True)


def inside(fig, artist) -> bool:
    renderer = fig.canvas.get_renderer()
    box, frame = artist.get_window_extent(renderer), fig.bbox
    return box.x0 >= frame.x0 - 1 and box.x1 <= frame.x1 + 1 and box.y0 >= frame.y0 - 1 and box.y1 <= frame.y1 + 1


def test_a_ten_class_roc_shows_the_corner_magnified_and_the_averages():
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    y, p = predictions(10, 2.5)
    fig = roc_figure(y, p, [str(c) for c in range(10)], "cnn_classifier on digits, a long title for the test")
    FigureCanvasAgg(fig).draw()
    main, inset = fig.axes[0], fig.axes[0].child_axes[0]
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert [l.split(" ")[0] for l in labels] == [*map(str, range(10)), "micro-average", "macro-average", "chance"]
    # The inset spans where the curves crowd: a corner, not the whole square.
    assert inset.get_xlim()[1] <= 0.25 and inset.get_ylim()[0] > 0
    assert len(inset.get_lines()) == 12
    assert inside(fig, main.title) and inside(fig, fig.legends[0])
    renderer = fig.canvas.get_renderer()
    assert not main.title.get_window_extent(renderer).overlaps(fig.legends[0].get_window_extent(renderer))
    # The averages are what scikit-learn computes.
    from sklearn.metrics import roc_auc_score

    aucs = {l.split(" ")[0]: float(l.split("AUC ")[1].rstrip(")")) for l in labels if "AUC" in l}
    onehot = np.eye(10)[y]
    assert aucs["micro-average"] == pytest.approx(roc_auc_score(onehot, p, average="micro"), abs=1e-3)
    assert aucs["macro-average"] == pytest.approx(roc_auc_score(onehot, p, average="macro"), abs=2e-3)


def test_a_poor_classifiers_roc_has_no_inset_over_its_curves():
    """A poor model's curves run through the lower right, where the inset of the corner was
    drawn over them: none is drawn where a curve passes under it."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from zoo.artifacts import INSET_PLACE

    y, p = predictions(10, 0.6)
    fig = roc_figure(y, p, [str(c) for c in range(10)], "a poor classifier")
    FigureCanvasAgg(fig).draw()
    lines = [line for line in fig.axes[0].get_lines() if line.get_label() != "chance"]
    left, bottom, _, height = INSET_PLACE
    assert min(np.interp(left, *line.get_data()) for line in lines) < bottom + height  # a curve under the inset's place
    assert not fig.axes[0].child_axes


def test_a_binary_roc_is_one_curve_without_an_inset():
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    y, p = predictions(2, 2.0)
    fig = roc_figure(y, p[:, 1], ["benign", "malignant"], "mlp_classifier on breast_cancer")
    FigureCanvasAgg(fig).draw()
    assert not fig.axes[0].child_axes and inside(fig, fig.axes[0].title)
    assert [t.get_text().split(" ")[0] for t in fig.axes[0].get_legend().get_texts()] == ["malignant", "chance"]


def test_names_are_drawn_as_written_cut_to_fit_and_missing_characters_said_once(tmp_path, monkeypatch):
    """Class names are anyone's: a class folder "$\\undefined$" was read as TeX and failed the
    run at its very end, a 90-character one squeezed the ROC's axes to a sliver, and each
    character the font lacks (猫) warned once per glyph and picture."""
    import warnings

    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from zoo import artifacts
    from zoo.errors import InputWarning

    monkeypatch.setattr(artifacts, "fallback_fonts", lambda: ())  # as on a machine without a CJK font
    monkeypatch.setattr(artifacts, "MISSING_GLYPHS", set())
    names = ["$\\undefined$", "a" * 90, "猫", "$5 and $10"]
    y, p = predictions(4, 2.5)
    with pytest.warns(InputWarning, match=r"lack 1 character\(s\) of the names drawn \(猫\), drawn as boxes"):
        artifacts.plot_confusion_matrix(tmp_path / "confusion.png", y, p.argmax(axis=1), names, "run")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once a process
        artifacts.plot_roc_curves(tmp_path / "roc.png", y, p, names, "run")
    assert (tmp_path / "confusion.png").stat().st_size and (tmp_path / "roc.png").stat().st_size

    fig = roc_figure(y, p, names, "run")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 猫 again, drawn here
        FigureCanvasAgg(fig).draw()
    texts = fig.legends[0].get_texts()
    assert texts[0].get_text().startswith("$\\undefined$ (AUC") and not any(t.get_parse_math() for t in texts)
    assert texts[1].get_text().startswith("a" * (artifacts.LEGEND_CHARACTERS - 1) + "\u2026 (AUC")
    assert inside(fig, fig.legends[0]) and fig.axes[0].get_window_extent().width > 2.5 * fig.dpi


def test_two_hundred_classes_draw_a_readable_matrix_and_roc_of_bounded_size(tmp_path):
    """A bird-species folder of 200 classes: the confusion matrix was a 10,000-pixel square
    (a minute to draw, a PNG Pillow takes for a decompression bomb) and the ROC's legend of
    200 entries ran off its figure. The matrix keeps its size (the classes most confused, see
    below); the ROC names the five lowest classes, the rest drawn grey."""
    from PIL import Image

    from zoo import artifacts

    names = [f"species_{i:03d}" for i in range(200)]
    y, p = predictions(200, 2.5, n=2000)
    artifacts.plot_confusion_matrix(tmp_path / "confusion.png", y, p.argmax(axis=1), names, "cnn on birds")
    assert max(Image.open(tmp_path / "confusion.png").size) <= 100 * (artifacts.MATRIX_INCHES + 5)
    fig = roc_figure(y, p, names, "cnn on birds")
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig).draw()
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert len(labels) == artifacts.ROC_WORST_NAMED + 3 and labels[-3:][0].startswith("micro-average")
    assert fig.legends[0].get_title().get_text() == "the 5 lowest of 200 classes (grey)" and inside(fig, fig.legends[0])


def test_many_classes_show_the_most_confused_ones_with_every_error_counted():
    """2,000 classes: a cell was under a pixel, and a class's errors vanished as the picture
    was resampled. The 50 classes with the most errors are drawn, numbered, the others
    gathered in a last row and column, so each row still counts every example of its class."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from zoo import artifacts

    n = 2000
    names = [f"sku_{i:04d}" for i in range(n)]
    y_true = np.repeat(np.arange(n), 3)
    y_pred = y_true.copy()
    y_pred[y_true == 1234] = 567  # all three of 1234's taken for 567: 3 errors each
    y_pred[np.flatnonzero(y_true == 7)[:2]] = 1300  # 2 errors each
    for i in range(100, 160):  # 120 classes of one error each: 46 of them make up the 50
        y_pred[np.flatnonzero(y_true == i)[0]] = 1700 + i
    fig = artifacts.confusion_figure(y_true, y_pred, names, "mlp on products")
    FigureCanvasAgg(fig).draw()
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == sorted(["sku_0007", "sku_0567", "sku_1234", "sku_1300", *(f"sku_{i:04d}" for i in range(100, 146))]) + ["1,950 others"]
    assert "the 50 of 2,000 classes most often confused" in fig._suptitle.get_text()
    row = {name: i for i, name in enumerate(labels)}
    cells = {(labels[round(t.get_position()[1])], labels[round(t.get_position()[0])]): int(t.get_text()) for t in ax.texts}
    assert cells["sku_1234", "sku_0567"] == 3 and cells["sku_1234", "sku_1234"] == 0
    assert cells["sku_0007", "sku_1300"] == 2 and cells["sku_0007", "sku_0007"] == 1
    assert cells["sku_0100", "1,950 others"] == 1 and cells["sku_0100", "sku_0100"] == 2  # 1800 is not drawn: counted last
    assert all(sum(v for (true, _), v in cells.items() if true == name) == 3 for name in labels[:-1])
    assert ("1,950 others", "1,950 others") not in cells and len(row) == 51  # the examples among the others: blank


def test_a_comparison_of_a_long_search_stays_one_readable_page(default_run, tmp_path, monkeypatch):
    """A search of 200 trials drew 200 value labels a panel and a legend 50 inches tall:
    beyond 20 runs the points are plain, numbered on the axis, and the figure keeps its size."""
    import json
    import shutil

    import yaml
    from matplotlib import image

    from zoo.compare import COMPARE_NAMED_RUNS, find_runs, plot_comparison

    for i in range(COMPARE_NAMED_RUNS + 10):
        run = tmp_path / "sweep" / f"{i}_cnn_classifier"
        shutil.copytree(default_run[0], run, ignore=shutil.ignore_patterns("tensorboard", "checkpoints", "model.keras", "plots"))
        config = yaml.safe_load((run / "config.yaml").read_text())
        (run / "config.yaml").write_text(yaml.safe_dump({**config, "seed": i}))
        metrics = json.loads((run / "metrics.json").read_text())
        (run / "metrics.json").write_text(json.dumps({name: value * (1 - i / 100) for name, value in metrics.items()}))
    plot_comparison(tmp_path / "comparison.png", find_runs([tmp_path / "sweep"]))
    height, width, _ = image.imread(tmp_path / "comparison.png").shape
    assert height < 1100 and width <= 1350, (height, width)  # three rows of panels and a line under them
    # A value that overflowed (a text model's perplexity) is in the table; the picture had
    # failed on it ("Axis limits cannot be NaN or Inf").
    (tmp_path / "sweep" / "0_cnn_classifier" / "metrics.json").write_text('{"loss": Infinity, "accuracy": -Infinity}')
    plot_comparison(tmp_path / "infinite.png", find_runs([tmp_path / "sweep"])[:3])
    assert image.imread(tmp_path / "infinite.png").shape[0] > 300
    # Nor beyond float32 (in which runs compute): "arange: cannot compute length"; the table
    # shows such a value in four digits and an exponent, not 309 digits.
    huge = tmp_path / "sweep" / "1_cnn_classifier"
    (huge / "metrics.json").write_text('{"loss": 1e308, "accuracy": 1e308}')
    columns = (huge / "history.csv").read_text().splitlines()[0].split(",")
    (huge / "history.csv").write_text((huge / "history.csv").read_text() + ",".join("2" if c == "epoch" else "-1e308" for c in columns) + "\n")
    plot_comparison(tmp_path / "huge.png", find_runs([tmp_path / "sweep"])[:3])
    assert image.imread(tmp_path / "huge.png").shape[0] > 300
    shown = run_zoo("compare", str(tmp_path / "sweep" / "1_cnn_classifier"), str(tmp_path / "sweep" / "2_cnn_classifier"))
    assert shown.returncode == 0 and "1.0000e+308" in shown.stdout and "0" * 30 not in shown.stdout, shown.stderr[-2000:]
    # Runs of one epoch each: as faint lines, their validation loss had drawn nothing at all.
    for run in (tmp_path / "sweep").iterdir():
        (run / "history.csv").write_text("\n".join((run / "history.csv").read_text().splitlines()[:2]) + "\n")
    drawn = []
    monkeypatch.setattr("zoo.artifacts.save_figure", lambda figure, path: drawn.append(figure))
    plot_comparison(tmp_path / "one-epoch.png", find_runs([tmp_path / "sweep"]))
    curves = next(ax for ax in drawn[0].axes if ax.get_title() == "val_loss per epoch").get_lines()
    assert len(curves) == COMPARE_NAMED_RUNS + 10 and all(line.get_marker() == "o" for line in curves)


def test_thousands_of_generated_samples_draw_a_bounded_grid_of_the_first_few_hundred(tmp_path):
    """`zoo generate n=10000` drew an axes per sample: still drawing after ten minutes, for a
    picture of 9,000 pixels a side. The grid is one image; past SAMPLES_SHOWN it shows those
    first and says where all are (an .npy)."""
    from PIL import Image

    from zoo.artifacts import GRID_PIXELS, SAMPLES_SHOWN, plot_samples

    rng = np.random.default_rng(0)
    for count, side in ((64, 8), (10_000, 20)):
        images = rng.random((count, 8, 8, 1), dtype=np.float32)
        path = tmp_path / f"samples{count}.png"
        plot_samples(path, images, "vae on digits")
        width, height = Image.open(path).size
        assert max(width, height) <= GRID_PIXELS + 100  # the margins and title
        grid = np.asarray(Image.open(path).convert("L"))
        # the samples' rows: runs of image pixels separated by white gaps, one per row of samples
        rows = np.flatnonzero(np.diff((grid < 250).any(axis=1).astype(int)) == 1)
        assert len(rows) == side + 1, len(rows)  # and the title's line
        assert side == int(np.ceil(np.sqrt(min(count, SAMPLES_SHOWN))))


def test_a_comparisons_legend_tells_keys_ending_alike_apart_and_leaves_out_absent_ones():
    """Runs of two models on two datasets were labelled "name=cnn_classifier, filters=64, ...,
    name=digits, hidden_units=None": two `name`s, and the other model's options as None (in
    the table too, as a setting given null is)."""
    from pathlib import Path

    from zoo.compare import RunRecord, comparison_table, differing_keys, label

    runs = [
        RunRecord(Path("a"), {"model.name": "cnn_classifier", "model.filters": 64, "dataset.name": "digits", "seed": 0}, {"loss": 1.0}),
        RunRecord(Path("b"), {"model.name": "mlp_classifier", "model.units": [8], "dataset.name": "cancer", "seed": 0}, {"loss": 1.0}),
    ]
    keys = differing_keys(runs)
    assert [label(run, keys) for run in runs] == [
        "model.name=cnn_classifier, filters=64, dataset.name=digits",
        "model.name=mlp_classifier, dataset.name=cancer, units=[8]",
    ]
    header, rows = comparison_table(runs)
    assert [row[header.index("model.filters")] for row in rows] == ["64", ""]
    assert [row[header.index("model.units")] for row in rows] == ["", "[8]"]


def test_a_test_split_of_one_class_draws_a_roc_without_curves_rather_than_failing():
    """A test/ folder holding one class's images: no class has both positives and
    negatives, and drawing the inset failed the run at its end ("max() arg is an empty
    sequence")."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    y, p = predictions(3, 2.0, n=30)
    fig = roc_figure(np.zeros_like(y), p, ["a", "b", "c"], "a one-class test split")
    FigureCanvasAgg(fig).draw()
    assert not fig.axes[0].child_axes
    assert [line.get_label() for line in fig.axes[0].get_lines()] == ["chance"]


def test_training_curves_count_whole_epochs(tmp_path, monkeypatch):
    """A one-epoch run's axis had been ticked 0.96, 0.98, 1.00, 1.02, 1.04."""
    from zoo.artifacts import plot_training_curves

    drawn = []
    monkeypatch.setattr("zoo.artifacts.save_figure", lambda figure, path: drawn.append(figure))
    for epochs in (1, 2, 40):
        history = {"loss": list(np.linspace(1, 0.5, epochs)), "val_loss": list(np.linspace(1.1, 0.6, epochs))}
        plot_training_curves(tmp_path / "curves.png", history, "a run")
        ticks = [t for t in drawn[-1].axes[0].get_xticks() if 0.5 <= t <= epochs + 0.5]
        assert all(float(t).is_integer() for t in ticks) and 1 <= len(ticks) <= 12, (epochs, ticks)
