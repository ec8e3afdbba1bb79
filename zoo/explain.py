"""Why did the model say that: attributions of a finished classifier run's predictions.

``explain(run_dir, inputs, method=...)`` gives, for each input, how much each input value
(pixel, feature) drove the model's output for one class (the predicted one unless
``target`` names another): its probability, or for saliency and Grad-CAM its score before
the sigmoid or softmax, which does not saturate:

- ``saliency``: the gradient's magnitude (Simonyan et al. 2014);
- ``integrated_gradients``: the gradient averaged along the straight path from a baseline
  to the input, times their difference (Sundararajan et al. 2017); the attributions sum to
  f(input) - f(baseline), which is checked and reported;
- ``gradcam``: the last convolution's feature maps weighted by their mean gradient, kept
  where positive and scaled up to the input (Selvaraju et al. 2017); convolutional models;
- ``occlusion``: how much the probability drops when a patch (a feature) is replaced by
  the baseline (Zeiler and Fergus 2014); any model;
- ``lime`` and ``shap``: through those packages (``keras-zoo[explain]``), model-agnostic.

``zoo explain`` draws a picture per image input (the input, the heat map, their overlay)
or a bar chart of the top features per tabular row, and writes the attributions as CSV.
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from zoo import artifacts
from zoo.errors import ZooError
from zoo.hookspecs import CLASSIFICATION
from zoo.inference import FLOAT32_MAX

log = logging.getLogger(__name__)

METHODS = ("integrated_gradients", "saliency", "gradcam", "occlusion", "lime", "shap")
# Each option and the methods it steers: given to another, it would be passed over unsaid.
OPTION_METHODS = {
    "steps": ("integrated_gradients",),
    "baseline": ("integrated_gradients", "occlusion", "lime", "shap"),
    "layer": ("gradcam",),
    "window": ("occlusion",),
}
EXTRA = {"lime": "lime", "shap": "shap"}  # method: the module it needs (keras-zoo[explain])
FOLDER = "explanations"  # in the run directory: the zoo's own, replaced on each explain
MAX_STEPS = 4096  # integrated gradients' points on the path: beyond, no attribution changes visibly
# Pictures are drawn for this many inputs, the first; every input's attributions go in the
# CSV. A CSV of 2,000 rows had drawn 2,000 bar charts (over five minutes; 300,000 rows: hours).
MAX_PICTURES = 100


@dataclass
class Explanation:
    """Attributions of one method for a batch of inputs.

    ``attributions`` has the inputs' shape; ``heat`` is one non-negative map per input
    (images: height x width, summed over channels; rows: per feature), what pictures show.
    """

    method: str
    names: list[str]
    inputs: Any
    attributions: Any
    heat: Any
    target: Any  # the class explained, per input
    probability: Any  # the model's probability of that class, per input
    predicted: Any  # the predicted class, per input
    class_names: list[str]  # the run's classes (indices as names where it has none)
    feature_names: list[str]  # rows: the dataset's feature names, where it has them
    completeness_error: Optional[Any] = None  # integrated gradients: |sum - (f(x) - f(baseline))| / |f(x) - f(baseline)|


def check_request(plan, method: str, target: Any) -> Optional[int]:
    """Everything about a request that can be known without TensorFlow: a classifier run,
    a known method that can apply to it, a class that exists. Returns the class index."""
    if method not in METHODS:
        import difflib

        close = difflib.get_close_matches(method, METHODS, n=1)
        raise ZooError(f"unknown method {method!r}; {f'did you mean {close[0]!r}?' if close else 'choose one of: ' + ', '.join(METHODS)}")
    if plan.model.item.objective != CLASSIFICATION:
        raise ZooError(
            f"zoo explain explains classifiers; model {plan.model.name!r} learns {plan.model.item.objective}"
        )
    if method == "gradcam" and len(plan.spec.input_shape) != 3:
        raise ZooError(
            f"gradcam needs a convolutional model of images; this run's inputs have shape {tuple(plan.spec.input_shape)}; "
            "use --method integrated_gradients or occlusion"
        )
    if method in EXTRA:
        import importlib.util

        if importlib.util.find_spec(EXTRA[method]) is None:
            raise ZooError(f"--method {method} needs the {EXTRA[method]} package: pip install 'keras-zoo[explain]'")
    if target is None:
        return None
    names = list(plan.spec.class_names) or [str(i) for i in range(plan.spec.num_classes)]
    if str(target) in names:
        return names.index(str(target))
    try:
        index = int(target)
    except (TypeError, ValueError):
        raise ZooError(f"--target {target!r} is not a class of this run; its classes: {', '.join(names)}") from None
    if not 0 <= index < len(names):
        raise ZooError(f"--target {index} is out of range: this run has {len(names)} classes (0-{len(names) - 1}: {', '.join(names)})")
    return index


def explain(
    run_dir: Path,
    inputs: Union[Sequence[str], Any],
    method: str = "integrated_gradients",
    target: Any = None,
    steps: int = 128,
    baseline: float = 0.0,
    layer: Optional[str] = None,
    window: int = 0,
    model=None,
) -> Explanation:
    """Attributions of the finished run's model for ``inputs`` (files and folders as
    ``zoo predict`` reads them, or an array of prepared examples).

    Args:
        target: the class to explain (index or name), or one per input; the predicted one
            when ``None``.
        steps: integrated gradients: points on the path (trapezoidal rule).
        baseline: the value of the reference input (integrated gradients, occlusion): 0 is
            black for images and the training mean for standardised features.
        layer: gradcam: the convolution's layer name (the last 4-D output when ``None``).
        window: occlusion: the patch side in pixels (an eighth of the image when 0).
        model: a model to explain in place of the run's (the randomisation check uses it).
    """
    import numpy as np

    from zoo.inference import read_inputs
    from zoo.run import finished_run_plan, import_tensorflow, load_trained_model

    run_dir = Path(run_dir)
    plan = finished_run_plan(run_dir)
    per_input = None
    if isinstance(target, (list, tuple)) or hasattr(target, "shape"):  # a class per input (API)
        per_input = np.asarray([check_request(plan, method, t) for t in target], dtype=np.int64)
        target = None
    class_index = check_request(plan, method, target)
    if not 2 <= steps <= MAX_STEPS:  # 10^8 points computed for hours
        raise ZooError(f"--steps must be from 2 to {MAX_STEPS:,}, got {steps}")
    if window < 0:
        raise ZooError(f"--window must be a patch side of at least 1 pixel (or 0: an eighth of the image), got {window}")
    if not abs(baseline) <= FLOAT32_MAX:  # NaN, Inf, or overflowing the model's float32 (attributions of NaN)
        raise ZooError(f"--baseline {baseline} must be a finite float32 number (0: black; the mean of standardised features)")
    if isinstance(inputs, (list, tuple)) and all(isinstance(item, (str, Path)) for item in inputs):
        names, x = read_inputs(plan, [str(item) for item in inputs])
    else:
        x = np.asarray(inputs, dtype=np.float32)
        if x.shape[1:] != tuple(plan.spec.input_shape):
            raise ZooError(f"inputs of shape {x.shape[1:]} do not fit the run's {tuple(plan.spec.input_shape)}")
        names = [f"input {i}" for i in range(len(x))]
    tf = import_tensorflow()
    if model is None:
        _, model = load_trained_model(run_dir, plan)
    probabilities = class_probabilities(tf, model, x)
    predicted = probabilities.argmax(axis=1)
    targets = predicted if class_index is None else np.full(len(x), class_index)
    if per_input is not None:
        if len(per_input) != len(x):
            raise ZooError(f"{len(per_input)} targets for {len(x)} inputs")
        targets = per_input
    completeness = None
    if method == "saliency":
        with scores_before_activation(model) as logits:
            attributions = np.abs(gradients(tf, model, x, targets, logits))
    elif method == "integrated_gradients":
        attributions, completeness = integrated_gradients(tf, model, x, targets, steps, baseline)
    elif method == "gradcam":
        with scores_before_activation(model) as logits:
            attributions = grad_cam(tf, model, x, targets, layer, logits)
    elif method == "occlusion":
        attributions = occlusion(tf, model, x, targets, baseline, window)
    else:
        attributions = explain_with_package(method, tf, model, x, targets, baseline)
    heat = heat_maps(attributions, method, images=len(plan.spec.input_shape) == 3)
    classes = list(plan.spec.class_names) or [str(i) for i in range(plan.spec.num_classes)]
    features = list(plan.spec.feature_names) or [f"feature_{i}" for i in range(x.shape[-1])]
    return Explanation(
        method=method, names=names, inputs=x, attributions=attributions, heat=heat, target=targets,
        probability=probabilities[np.arange(len(x)), targets], predicted=predicted, class_names=classes,
        feature_names=features, completeness_error=completeness,
    )  # fmt: skip


# --------------------------------------------------------------------------------------
# The methods (TensorFlow, batched)
# --------------------------------------------------------------------------------------

BATCH = 64


def class_probabilities(tf, model, x):
    """Each class's probability (a sigmoid head read as two classes), float32 NumPy."""
    import numpy as np

    out = np.concatenate([np.asarray(model(x[i : i + BATCH], training=False), "float32") for i in range(0, len(x), BATCH)])
    return np.concatenate([1.0 - out, out], axis=1) if out.shape[1] == 1 else out


def class_score(tf, output, targets, logits: bool = False):
    """The probability of ``targets`` (a tensor of class indices) in a model's output, or
    with ``logits`` its score before the sigmoid or softmax (a sigmoid's logit z is the
    score of class 1, -z that of class 0)."""
    output = tf.cast(output, tf.float32)
    if output.shape[-1] == 1:
        p = output[:, 0]
        return tf.where(tf.equal(targets, 1), p, -p if logits else 1.0 - p)
    return tf.gather(output, targets, axis=1, batch_dims=1)


@contextmanager
def scores_before_activation(model):
    """While inside, the model's output layer skips its sigmoid or softmax; yields whether
    it did. Saliency and Grad-CAM differentiate the class score before the activation, as
    their authors do: a confident sigmoid rounds to 1.0 in float32, and the gradient of the
    probability is then exactly zero, an empty map. (A model whose output layer is not
    found, a subclassed one, keeps its probabilities.)"""
    import keras

    layer = model.layers[-1] if getattr(model, "layers", None) else None
    activation = getattr(layer, "activation", None)
    if activation not in (keras.activations.sigmoid, keras.activations.softmax):
        yield False
        return
    layer.activation = keras.activations.linear
    try:
        yield True
    finally:
        layer.activation = activation


def gradients(tf, model, x, targets, logits: bool = False):
    import numpy as np

    found = []
    for i in range(0, len(x), BATCH):
        batch = tf.convert_to_tensor(x[i : i + BATCH])
        with tf.GradientTape() as tape:
            tape.watch(batch)
            score = class_score(tf, model(batch, training=False), tf.constant(targets[i : i + BATCH]), logits)
        found.append(np.asarray(tape.gradient(score, batch)))
    return np.concatenate(found)


def integrated_gradients(tf, model, x, targets, steps: int, baseline: float):
    """Attributions and, per input, the relative completeness error."""
    import numpy as np

    alphas = np.linspace(0.0, 1.0, steps + 1, dtype=np.float32)
    weights = np.full(steps + 1, 1.0 / steps, dtype=np.float32)
    weights[[0, -1]] /= 2  # the trapezoidal rule
    attributions, errors = [], []
    for example, target in zip(x, targets):
        reference = np.full_like(example, baseline)
        summed = np.zeros_like(example)
        for start in range(0, steps + 1, BATCH):  # the path a batch at a time: any --steps fits in memory
            chunk = alphas[start : start + BATCH].reshape(-1, *[1] * example.ndim)
            grads = gradients(tf, model, reference + chunk * (example - reference), np.full(len(chunk), target))
            summed += np.tensordot(weights[start : start + BATCH], grads, axes=1)
        attribution = (example - reference) * summed
        ends = class_probabilities(tf, model, np.stack([reference, example]))[:, target]
        change = float(ends[1] - ends[0])
        errors.append(abs(float(attribution.sum()) - change) / max(abs(change), 1e-6))
        attributions.append(attribution)
    return np.stack(attributions), np.asarray(errors)


def last_convolution(model, name: Optional[str]):
    """The layer whose 4-D output Grad-CAM weighs: ``name``, or the last one in the graph."""
    import keras

    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    if name is not None:
        matched = [layer for layer in layers if layer.name == name]
        if not matched:
            raise ZooError(f"--layer {name!r} is not a layer of the model; its layers: {', '.join(l.name for l in layers)}")
        if len(output_in_graph(matched[0]).shape or ()) != 4:
            spatial = ", ".join(layer.name for layer in layers if len(output_in_graph(layer).shape or ()) == 4) or "none"
            raise ZooError(f"--layer {name!r} has no spatial feature maps for gradcam; the layers that do: {spatial}")
        return matched[0]
    spatial = [layer for layer in layers if len(output_in_graph(layer).shape or ()) == 4]
    if not spatial:
        raise ZooError(
            f"gradcam needs a layer with spatial feature maps and model {model.name!r} has none; "
            "use --method integrated_gradients or occlusion"
        )
    # Pooling or dropout after the last convolution only coarsens its maps (a 2x2 pool turns
    # 4x4 into 2x2), so Grad-CAM weighs the convolution's own maps, as Selvaraju et al. do;
    # a nested backbone counts as one layer (its output is its last features).
    coarsening = (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D, keras.layers.Dropout, keras.layers.SpatialDropout2D)
    while len(spatial) > 1 and isinstance(spatial[-1], coarsening):
        spatial.pop()
    return spatial[-1]


def output_in_graph(layer):
    """The layer's output where the model calls it. For a nested model (a pretrained
    backbone) ``layer.output`` is its own graph's; the call in the outer graph is its last
    node (Keras 3 keeps no public accessor for it)."""
    nodes = getattr(layer, "_inbound_nodes", None)
    return nodes[-1].output_tensors[0] if nodes else layer.output


def grad_cam(tf, model, x, targets, layer_name: Optional[str], logits: bool = False):
    import keras
    import numpy as np

    layer = last_convolution(model, layer_name)
    # model.input, not .inputs: a one-input model called with a tensor, as Keras expects.
    twin = keras.Model(model.input if len(model.inputs) == 1 else model.inputs, [output_in_graph(layer), model.output])
    maps = []
    for i in range(0, len(x), BATCH):
        batch = tf.convert_to_tensor(x[i : i + BATCH])
        with tf.GradientTape() as tape:
            features, output = twin(batch, training=False)
            score = class_score(tf, output, tf.constant(targets[i : i + BATCH]), logits)
        grads = tape.gradient(score, features)
        weights = tf.reduce_mean(tf.cast(grads, tf.float32), axis=(1, 2), keepdims=True)
        cam = tf.nn.relu(tf.reduce_sum(weights * tf.cast(features, tf.float32), axis=-1, keepdims=True))
        cam = tf.image.resize(cam, x.shape[1:3], method="bilinear")
        maps.append(np.asarray(cam))
    cams = np.concatenate(maps)
    return np.broadcast_to(cams / x.shape[-1], x.shape).copy()  # the channels share each pixel's value


def occlusion(tf, model, x, targets, baseline: float, window: int):
    import numpy as np

    attributions = np.zeros_like(x)
    for n, (example, target) in enumerate(zip(x, targets)):
        before = class_probabilities(tf, model, example[None])[0, target]
        if example.ndim == 1:  # features one at a time
            occluded = np.repeat(example[None], len(example), axis=0)
            occluded[np.arange(len(example)), np.arange(len(example))] = baseline
            attributions[n] = before - class_probabilities(tf, model, occluded)[:, target]
            continue
        height, width = example.shape[:2]
        side = window or max(1, round(min(height, width) / 8))
        stride = max(1, side // 2)
        corners = [(r, c) for r in range(0, max(1, height - side + stride), stride) for c in range(0, max(1, width - side + stride), stride)]
        total, count = np.zeros((height, width)), np.zeros((height, width))
        for start in range(0, len(corners), BATCH):
            chunk = corners[start : start + BATCH]
            occluded = np.repeat(example[None], len(chunk), axis=0)
            for k, (r, c) in enumerate(chunk):
                occluded[k, r : r + side, c : c + side] = baseline
            drops = before - class_probabilities(tf, model, occluded)[:, target]
            for (r, c), drop in zip(chunk, drops):
                total[r : r + side, c : c + side] += drop
                count[r : r + side, c : c + side] += 1
        per_pixel = total / np.maximum(count, 1)
        attributions[n] = per_pixel[..., None] / example.shape[-1]
    return attributions


def explain_with_package(method: str, tf, model, x, targets, baseline: float):
    """LIME's and SHAP's model-agnostic explainers, on the model's class probabilities."""
    import numpy as np

    def predict(batch):
        return class_probabilities(tf, model, np.asarray(batch, dtype=np.float32))

    attributions = np.zeros_like(x)
    if method == "shap":
        import shap

        background = np.full((1, *x.shape[1:]), baseline, dtype=np.float32)
        if x.ndim == 2:
            explainer = shap.KernelExplainer(predict, background)
            for n, (example, target) in enumerate(zip(x, targets)):
                values = explainer.shap_values(example[None], nsamples=2 * x.shape[1] + 2048, silent=True)
                values = np.asarray(values)
                attributions[n] = values[0, :, target] if values.ndim == 3 else values[target][0]
            return attributions
        # Hidden regions take the baseline value (blurring would need OpenCV).
        masker = shap.maskers.Image(np.full(x.shape[1:], baseline, dtype=np.float32), x.shape[1:])
        explainer = shap.Explainer(predict, masker)
        for n, (example, target) in enumerate(zip(x, targets)):
            values = explainer(example[None], max_evals=500, batch_size=BATCH, silent=True).values
            attributions[n] = np.asarray(values)[0, ..., target]
        return attributions
    import lime.lime_image
    import lime.lime_tabular

    if x.ndim == 2:
        explainer = lime.lime_tabular.LimeTabularExplainer(
            np.full((2, x.shape[1]), baseline) + np.array([[-1.0], [1.0]]), discretize_continuous=False, random_state=0
        )
        for n, (example, target) in enumerate(zip(x, targets)):
            found = explainer.explain_instance(example, predict, labels=(target,), num_features=x.shape[1], num_samples=2000)
            for feature, weight in found.as_map()[target]:
                attributions[n, feature] = weight
        return attributions
    explainer = lime.lime_image.LimeImageExplainer(random_state=0)
    for n, (example, target) in enumerate(zip(x, targets)):
        rgb = example if example.shape[-1] == 3 else np.repeat(example, 3, axis=-1)
        gray = example.shape[-1] == 1

        def predict_image(batch, gray=gray):
            batch = np.asarray(batch, dtype=np.float32)
            return predict(batch[..., :1] if gray else batch)

        with without_progress_bars(lime.lime_image):
            found = explainer.explain_instance(
                rgb.astype(np.float64), predict_image, labels=(target,), hide_color=baseline, num_samples=500, batch_size=BATCH
            )
        weights = dict(found.local_exp[target])
        per_pixel = np.vectorize(lambda segment: weights.get(segment, 0.0))(found.segments)
        attributions[n] = per_pixel[..., None] / example.shape[-1]
    return attributions


@contextmanager
def without_progress_bars(module):
    """LIME draws a tqdm progress bar per image on stderr (with no option to stop it, and
    whether or not stderr is a terminal): 300 inputs left 300 bars among the command's lines."""
    from unittest import mock

    if not hasattr(module, "tqdm"):
        yield
        return
    with mock.patch.object(module, "tqdm", lambda rows, *args, **kwargs: rows):
        yield


def heat_maps(attributions, method: str, images: bool):
    """One non-negative map per input: evidence for the class. Gradients count by size
    (their sign says which way, not whether it matters); the other methods by their
    positive part (gradcam is non-negative already; occlusion, LIME and SHAP may say a
    region speaks against the class)."""
    import numpy as np

    summed = attributions.sum(axis=-1) if images else attributions
    if images and method == "saliency":
        summed = np.abs(attributions).max(axis=-1)
    return np.abs(summed) if method in ("saliency", "integrated_gradients") else np.maximum(summed, 0.0)


# --------------------------------------------------------------------------------------
# Pictures and tables
# --------------------------------------------------------------------------------------


def planned_files(explanation: Explanation, folder: Path) -> list[Path]:
    """The pictures (one per input, in order, up to ``MAX_PICTURES``) and the CSV that
    ``write_explanations`` writes."""
    paths, seen = [], set()
    for n, name in enumerate(explanation.names[:MAX_PICTURES]):
        source, _, row = name.rpartition(":") if name.rpartition(":")[2].isdigit() else (name, "", "")
        stem = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in Path(source).stem) or f"input{n}"
        stem = artifacts.name_within(stem, 150)  # the picture's name (and its temporary one) within 255 bytes
        stem += f"_row{row}" if row else ""
        while stem in seen:  # two inputs of the same name in different folders
            stem += f"_{n}"
        seen.add(stem)
        paths.append(folder / f"{stem}.{explanation.method}.png")
    return [*paths, folder / f"attributions.{explanation.method}.csv"]


def claim_planned_files(explanation: Explanation, folder: Path) -> None:
    """In a folder of the user's, the files ``write_explanations`` will write are new ones:
    refused if there already, and not written over if made while it draws."""
    planned = planned_files(explanation, folder)
    taken = [path for path in planned if os.path.lexists(path)]  # a link to nowhere too
    if taken:
        raise ZooError(f"{taken[0]} exists and was not written by this command; choose another --output")
    for path in planned:
        artifacts.output_checked(path, free=True)


def write_explanations(explanation: Explanation, folder: Path, top: int = 10) -> list[Path]:
    """A PNG per input (image inputs) or a bar chart per row (features), of the first
    ``MAX_PICTURES``, and ``attributions.<method>.csv`` of all; returns the files written."""
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    classes, features = explanation.class_names, explanation.feature_names
    *pictures, csv_path = planned_files(explanation, folder)
    written = []
    try:
        for n, path in enumerate(pictures):
            title = (
                f"{classes[explanation.predicted[n]]} predicted; explaining {classes[explanation.target[n]]} "
                f"(p = {explanation.probability[n]:.3f}) by {explanation.method}"
            )
            if explanation.inputs.ndim == 4:
                artifacts.plot_attribution_image(path, explanation.inputs[n], explanation.heat[n], title)
            else:
                artifacts.plot_attribution_bars(path, features, explanation.attributions[n], title, top=top)
            written.append(path)
        write_attributions_csv(explanation, csv_path)
    except BaseException:  # a full disk part way: no half set of pictures left behind
        for path in written:
            path.unlink(missing_ok=True)
        raise
    written.append(csv_path)
    if explanation.completeness_error is not None:
        log.info("integrated gradients: completeness error per input %s", np.round(explanation.completeness_error, 4).tolist())
    return written


def write_attributions_csv(explanation: Explanation, csv_path: Path) -> None:
    classes, features = explanation.class_names, explanation.feature_names
    flat = explanation.attributions.reshape(len(explanation.names), -1)
    header = features if explanation.inputs.ndim == 2 else [f"v{i}" for i in range(flat.shape[1])]
    rows = [
        [name, classes[t], f"{p:.6f}", *(f"{v:.6g}" for v in values)]
        for name, t, p, values in zip(explanation.names, explanation.target, explanation.probability, flat)
    ]
    from zoo.tables import csv_text

    artifacts.write_text(csv_path, csv_text(["input", "class", "probability", *header], rows))
