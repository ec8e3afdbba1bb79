"""Pruning and distillation (zoo.compression): the formulas on fixed tensors, the masks'
arithmetic, and runs from the command line whose models outlive their teacher."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from conftest import error_lines, run_zoo


def softened(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    if probabilities.shape[-1] == 1:
        probabilities = np.concatenate([1 - probabilities, probabilities], axis=-1)
    logits = np.log(probabilities) / temperature
    exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize("classes", [1, 3])
@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_distillation_loss_is_t_squared_kl_of_the_softened_outputs(classes, temperature):
    import keras

    from zoo.compression import distillation_loss

    rng = np.random.default_rng(0)
    if classes == 1:
        teacher, student = rng.uniform(0.05, 0.95, (5, 1)), rng.uniform(0.05, 0.95, (5, 1))
    else:
        teacher, student = rng.dirichlet(np.ones(classes), 5), rng.dirichlet(np.ones(classes), 5)
    p, q = softened(teacher, temperature), softened(student, temperature)
    expected = temperature**2 * np.mean(np.sum(p * np.log(p / q), axis=-1))
    got = float(keras.ops.convert_to_numpy(distillation_loss(teacher.astype("float32"), student.astype("float32"), temperature)))
    assert got == pytest.approx(expected, rel=1e-4)
    assert float(distillation_loss(teacher.astype("float32"), teacher.astype("float32"), temperature)) == pytest.approx(0, abs=1e-6)


def test_a_distilled_model_trains_on_the_weighted_sum_and_evaluates_on_its_own_loss():
    import keras

    from zoo.compression import distill, distillation_loss

    keras.utils.set_random_seed(0)
    student = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    teacher = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    student.compile(loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(1).normal(size=(6, 4)).astype("float32")
    y = np.array([0, 1, 2, 0, 1, 2])
    y_pred = student(x)
    task = float(student.compute_loss(x, y, y_pred, training=True))
    distill(student, teacher, alpha=0.3, temperature=2.0)
    soft = float(distillation_loss(teacher(x), y_pred, 2.0))
    assert float(student.compute_loss(x, y, y_pred, training=True)) == pytest.approx(0.3 * task + 0.7 * soft, rel=1e-5)
    assert float(student.compute_loss(x, y, y_pred, training=False)) == pytest.approx(task, rel=1e-6)
    teacher_before = [w.copy() for w in teacher.get_weights()]
    student.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")  # compile keeps the instance's loss
    distill(student, teacher, alpha=0.3, temperature=2.0)
    student.fit(x, y, epochs=2, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(teacher_before, teacher.get_weights())), "the teacher never trains"


@pytest.mark.parametrize("scope", ["layer", "global"])
@pytest.mark.parametrize("sparsity", [0.0, 0.33, 0.8])
def test_masks_zero_exactly_the_requested_share_of_the_smallest_weights(scope, sparsity):
    from zoo.compression import magnitude_masks

    rng = np.random.default_rng(0)
    kernels = [rng.normal(size=(3, 3, 1, 7)), rng.normal(size=(50, 9)) * 0.1, np.zeros((4, 2))]
    masks = magnitude_masks(kernels, sparsity, scope)
    total = sum(k.size for k in kernels)
    assert sum(int((~m).sum()) for m in masks) == (
        round(sparsity * total) if scope == "global" else sum(round(sparsity * k.size) for k in kernels)
    )
    for kernel, mask in zip(kernels, masks):
        assert mask.shape == kernel.shape
        if mask.all() or not mask.any():
            continue
        assert np.abs(kernel[~mask]).max() <= np.abs(kernel[mask]).min()  # the smallest go
    if scope == "global" and 0 < sparsity:  # the small second kernel loses more than the first
        assert (~masks[1]).mean() > (~masks[0]).mean()
    # Pruned weights are zero, so a later, higher sparsity keeps them pruned.
    pruned = [np.where(m, k, 0) for k, m in zip(kernels, masks)]
    later = magnitude_masks(pruned, min(0.9, sparsity + 0.1), scope)
    assert all(not (~m1 & m2).any() for m1, m2 in zip(masks, later))


def test_the_polynomial_schedule_starts_late_rises_fast_and_ends_on_the_target():
    from zoo.compression import polynomial_sparsity

    values = [polynomial_sparsity(0.8, step, 10, 110) for step in range(0, 130)]
    assert values[:10] == [0.0] * 10
    assert values[110] == values[129] == pytest.approx(0.8)
    assert all(a <= b for a, b in zip(values, values[1:]))
    assert values[35] > 0.8 * 0.5  # a quarter of the way: more than half pruned (cubic)


def test_pruned_weights_stay_zero_between_mask_updates():
    import keras

    from zoo.compression import Pruning
    from zoo.config import PruningConfig

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")
    x = np.random.default_rng(0).normal(size=(64, 6)).astype("float32")
    y = np.random.default_rng(1).normal(size=(64, 2)).astype("float32")
    seen = []

    class Probe(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append([float(np.mean(k.numpy() == 0)) for k in (self.model.layers[0].kernel, self.model.layers[1].kernel)])

    # 8 steps per epoch; pruned to 50% by step 8, then 4 epochs of Adam at a high rate.
    pruning = Pruning(PruningConfig(sparsity=0.5, begin_step=0, end_step=8, frequency=2), steps_per_epoch=8, epochs=5)
    model.fit(x, y, batch_size=8, epochs=5, verbose=0, callbacks=[pruning, Probe()])
    assert all(share == [0.5, 0.5] for share in seen), seen
    assert pruning.outcome()["zero_kernel_weights"] == 0.5


def kernels_of(model_file):
    import keras

    model = keras.saving.load_model(model_file)
    return {v.path: v.numpy() for v in model.weights if v.path.endswith("kernel")}


TEACHER = ["model=cnn_classifier", "model.filters=8", "dataset=digits", "trainer.epochs=2", "trainer.progress=off"]
STUDENT = ["model=mlp_classifier", "model.hidden_units=[16]", "dataset=digits", "trainer.epochs=2", "trainer.progress=off"]


@pytest.mark.slow
def test_a_pruned_student_of_a_teacher_outlives_it(tmp_path):
    teacher, student = tmp_path / "teacher", tmp_path / "student"
    assert run_zoo("train", *TEACHER, f"hydra.run.dir={teacher}", cwd=tmp_path).returncode == 0
    result = run_zoo(
        "train", *STUDENT, "trainer.distillation.teacher=teacher", "trainer.pruning.sparsity=0.75",
        "trainer.pruning.frequency=10", f"hydra.run.dir={student}", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]

    training = json.loads((student / "training.json").read_text())
    assert training["distillation"]["teacher"] == str(teacher)  # absolute: the run may be used from elsewhere
    assert len(training["distillation"]["weights_sha256"]) == 64
    kernels = kernels_of(student / "model.keras")
    assert set(kernels) == {"dense_1/kernel", "probabilities/kernel"}, "the saved model is the student alone"
    for path, kernel in kernels.items():  # exactly the share asked for, in each kernel
        assert int((kernel == 0).sum()) == round(0.75 * kernel.size), path
        assert training["pruning"]["kernels"][path] == pytest.approx(0.75, abs=1 / kernel.size)

    shutil.rmtree(teacher)
    for command in (["evaluate", str(student)], ["export", str(student), "--format", "tflite"]):
        done = run_zoo(*command, cwd=tmp_path)
        assert done.returncode == 0, (command, done.stderr[-2000:])
    report = json.loads((student / "export" / "report.json").read_text())["model.tflite"]
    assert report["zero_kernel_weights"] == pytest.approx(0.75, abs=0.01)
    assert report["gzip_bytes"] < 0.5 * report["bytes"]  # the zeros compress
    assert report["agreement"] >= 0.98


def recorded_config_text(*overrides: str) -> str:
    """A run's config.yaml as `zoo train` records it."""
    import yaml

    from zoo.config import compose, plan_run
    from zoo.run import recorded_config

    cfg = compose(["dataset=digits", *overrides])
    return yaml.safe_dump(recorded_config(cfg, plan_run(cfg)))


@pytest.mark.parametrize(
    "overrides,problem",
    [
        (["trainer.distillation.teacher=nowhere"], "trainer.distillation.teacher=/"),
        (["trainer.distillation.teacher=half"], "that run did not finish"),
        (["trainer.distillation.teacher=piped"], "its spec.json is not a file (a folder, a pipe or a device)"),
        (["dataset=breast_cancer", "trainer.distillation.teacher=done"], "learnt other data"),
        (["model=conv_autoencoder", "trainer.distillation.teacher=done"], "applies to classifiers"),
        (["trainer.distillation.teacher=vae"], "is not a classifier run (model 'vae' learns reconstruction)"),  # failed inside TensorFlow
        (["trainer.pruning.sparsity=1.0"], "pruning.sparsity must be in [0, 1)"),
        (["trainer.pruning.begin_step=50", "trainer.pruning.end_step=10"], "must come after pruning.begin_step"),
        (["trainer.pruning.scope=globl"], "did you mean 'global'"),
    ],
)
def test_compression_mistakes_are_one_line_before_any_work(tmp_path, overrides, problem):
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.yaml").write_text("seed: 0\n")
    done = tmp_path / "done"
    done.mkdir()
    for name, text in (("config.yaml", recorded_config_text("model=mlp_classifier")), ("metrics.json", "{}"), ("model.keras", "")):
        (done / name).write_text(text)
    digits = {"task": "classification", "input_shape": [8, 8, 1], "num_classes": 10, "class_names": [str(i) for i in range(10)],
              "value_range": [0.0, 1.0], "feature_names": []}  # fmt: skip
    (done / "spec.json").write_text(json.dumps(digits))
    shutil.copytree(done, tmp_path / "vae")  # the same data, learnt by a model whose outputs are images
    (tmp_path / "vae" / "config.yaml").write_text(recorded_config_text("model=vae", "metrics=[]"))
    shutil.copytree(done, tmp_path / "piped")
    (tmp_path / "piped" / "spec.json").unlink()
    os.mkfifo(tmp_path / "piped" / "spec.json")  # read, it would wait for ever
    result = run_zoo("train", "model=mlp_classifier", "dataset=digits", *overrides, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    (line,) = error_lines(result.stderr)
    assert problem in line
    assert not (tmp_path / "run").exists()
