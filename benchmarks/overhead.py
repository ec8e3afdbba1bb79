"""Framework overhead: `zoo train` against the same jobs written by hand in plain Keras.

    python benchmarks/overhead.py                       # both jobs, 5 rounds (about 12 min)
    python benchmarks/overhead.py --jobs default --rounds 5
    python benchmarks/overhead.py --jobs cat_cnn --images 96 --epochs 2 --rounds 1

Two jobs, each side a fresh process, the sides interleaved round by round; reported are
medians of whole-process wall time (interpreter start and exit included) and of the
steady-state training speed (epochs after the first, training only).

- ``default``: the job users run first, ``zoo train trainer.epochs=40 trainer.batch_size=64``
  (``cnn_classifier`` on ``digits``, with the zoo's defaults: five metrics, checkpoints,
  TensorBoard logs, plots, history, the saved model). Against two hand-written scripts on
  the same network (built by the plugin), the same split, Adam 1e-3, batch 64, 40 epochs,
  ``fit`` with validation, ``evaluate`` on the test split, ``model.save``: one with
  accuracy only, one with the same five metrics from Keras' own classes (Precision,
  Recall, macro F1Score, multi-label AUC on one-hot labels). Goals (issue 15): at most
  1.05x the five-metric script, at most 1.15x the accuracy-only one.
- ``cat_cnn``: ``cnn_cat_classifier`` on a folder of 150x150 JPEGs given as train/,
  validation/ and test/, resized to 64x64, batch 32, accuracy only; the hand-written side
  uses ``image_dataset_from_directory``, rescale, cache, shuffle, batch, prefetch, ``fit``,
  ``evaluate``, ``save``. Goals (issue 6): training examples per second, zoo over plain,
  at least 0.98; wall time at most 1.05x.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import (  # noqa: E402
    QUIET_TF, cat_spec, epoch_timer, machine, run_child, train_log_report, write_jpeg_splits, zoo_train_command,
)  # fmt: skip

SPEED_GOAL, WALL_GOAL = 0.98, 1.05  # cat_cnn, issue 6
FIVE_GOAL, ACCURACY_GOAL = 1.05, 1.15  # default job, issue 15
SOURCE_SIZE, SIZE, BATCH, SEED = 150, 64, 32, 0
DEFAULT_EPOCHS, DEFAULT_BATCH = 40, 64


def plain_default(metrics: str, out: Path, epochs: int) -> dict:
    """The default job as hand-written Keras, with ``metrics`` "accuracy" or "five"."""
    import keras
    import numpy as np

    import zoo
    from zoo_plugins.datasets import DigitsConfig, describe_digits, load_digits

    keras.utils.set_random_seed(SEED)
    config = DigitsConfig()
    splits = load_digits(config, SEED)
    (x_train, y_train), validation, (x_test, y_test) = splits.train, splits.validation, splits.test
    model = zoo.create_model("cnn_classifier", describe_digits(config))
    if metrics == "five":
        one_hot = np.eye(10, dtype="float32")
        y_train, validation, y_test = one_hot[y_train], (validation[0], one_hot[validation[1]]), one_hot[y_test]
        chosen = [
            "accuracy", keras.metrics.Precision(), keras.metrics.Recall(), keras.metrics.F1Score(average="macro"),
            keras.metrics.AUC(multi_label=True, num_labels=10),
        ]  # fmt: skip
        loss = "categorical_crossentropy"
    else:
        chosen, loss = ["accuracy"], "sparse_categorical_crossentropy"
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss, metrics=chosen)
    model.fit(x_train, y_train, batch_size=DEFAULT_BATCH, epochs=epochs, validation_data=validation, verbose=0)
    model.evaluate(x_test, y_test, verbose=0)
    model.save(out / "model.keras")
    return {}


def plain_cat_cnn(root: Path, epochs: int, out: Path) -> dict:
    """The cat job as hand-written Keras; returns per-epoch training seconds and its choices."""
    import keras
    import tensorflow as tf

    import zoo

    keras.utils.set_random_seed(SEED)

    def split(name: str, shuffle: bool):
        data = keras.utils.image_dataset_from_directory(
            root / name, label_mode="int", image_size=(SIZE, SIZE), batch_size=None, shuffle=False
        )
        data = data.map(lambda x, y: (x / 255.0, y), num_parallel_calls=tf.data.AUTOTUNE).cache()
        data = data.shuffle(10000, seed=SEED) if shuffle else data
        return data.batch(BATCH).prefetch(tf.data.AUTOTUNE)

    train, validation, test = split("train", True), split("validation", False), split("test", False)
    model = zoo.create_model("cnn_cat_classifier", cat_spec(SIZE))
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy", metrics=["accuracy"])

    timer = epoch_timer(keras)
    model.fit(train, epochs=epochs, validation_data=validation, callbacks=[timer], verbose=0)
    model.evaluate(test, verbose=0)
    model.save(out / "model.keras")
    return {"epoch_seconds": timer.seconds, "jit_compile": bool(model.jit_compile), "steps_per_execution": model.steps_per_execution}


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env={**os.environ, **QUIET_TF})
    return time.perf_counter() - started


def interleaved(sides: dict, rounds: int, tmp: Path) -> dict[str, list]:
    """Each side once per round, in turn: ``side(out) -> (wall, report)``."""
    results: dict[str, list] = {side: [] for side in sides}
    for round_ in range(rounds):
        for side, run in sides.items():
            out = tmp / f"{side.replace(' ', '_').replace(',', '')}-{round_}"
            out.mkdir()
            results[side].append(run(out))
    return results


def default_job(args, tmp: Path) -> None:
    epochs = args.epochs or DEFAULT_EPOCHS
    zoo_command = [sys.executable, "-m", "zoo", "train", f"trainer.epochs={epochs}", f"trainer.batch_size={DEFAULT_BATCH}"]
    sides = {
        "plain Keras, accuracy": lambda out: timed([sys.executable, __file__, "--child", "default-accuracy", "--epochs", str(epochs), "--out", str(out)]),
        "plain Keras, five metrics": lambda out: timed([sys.executable, __file__, "--child", "default-five", "--epochs", str(epochs), "--out", str(out)]),
        "zoo train": lambda out: timed([*zoo_command, f"hydra.run.dir={out / 'run'}"]),
    }  # fmt: skip
    walls = {side: statistics.median(values) for side, values in interleaved(sides, args.rounds, tmp).items()}
    print(
        f"Default job: `zoo train trainer.epochs={epochs} trainer.batch_size={DEFAULT_BATCH}` (cnn_classifier on digits) "
        f"against hand-written Keras, whole-process wall time, medians of {args.rounds} interleaved rounds; {machine()}\n"
    )
    print("| side | wall s | zoo over this side | goal | met |")
    print("|---|---|---|---|---|")
    goals = {"plain Keras, accuracy": ACCURACY_GOAL, "plain Keras, five metrics": FIVE_GOAL}
    for side, wall in walls.items():
        if side in goals:
            ratio = walls["zoo train"] / wall
            print(f"| {side} | {wall:.2f} | {ratio:.3f} | <= {goals[side]} | {'yes' if ratio <= goals[side] else 'no'} |")
        else:
            print(f"| {side} | {wall:.2f} | | | |")
    print()


def cat_cnn_job(args, tmp: Path) -> None:
    epochs = args.epochs or 12
    root = tmp / "jpegs"
    write_jpeg_splits(root, args.images, max(4, args.images // 5), SOURCE_SIZE)

    def zoo_side(out: Path) -> tuple[float, dict]:
        command = zoo_train_command(root, SIZE, epochs, out / "run", f"trainer.batch_size={BATCH}", f"seed={SEED}")
        return timed(command), train_log_report((out / "run" / "train.log").read_text())

    def plain_side(out: Path) -> tuple[float, dict]:
        started = time.perf_counter()
        report = run_child(__file__, "cat_cnn", "--root", str(root), "--epochs", str(epochs), "--out", str(out))
        return time.perf_counter() - started, report

    sides = {"plain Keras": plain_side, "zoo train": zoo_side}
    results = interleaved(sides, args.rounds, tmp)
    wall = {side: statistics.median(w for w, _ in runs) for side, runs in results.items()}
    speed = {
        side: statistics.median(args.images / statistics.median(r["epoch_seconds"][1:] or r["epoch_seconds"]) for _, r in runs)
        for side, runs in results.items()
    }
    choices = {side: {(r["jit_compile"], r["steps_per_execution"]) for _, r in runs} for side, runs in results.items()}
    print(
        f"Cat CNN job: cnn_cat_classifier, {args.images} JPEGs resized to {SIZE}x{SIZE}, batch {BATCH}, "
        f"{epochs} epochs, medians of {args.rounds} rounds; {machine()}\n"
    )
    print("| side | wall s | training examples/s (epochs 2+) | jit_compile, steps_per_execution |")
    print("|---|---|---|---|")
    for side in sides:
        shown = "; ".join(f"{jit}, {spe}" for jit, spe in sorted(choices[side]))
        print(f"| {side} | {wall[side]:.1f} | {speed[side]:.1f} | {shown} |")
    speed_ratio = speed["zoo train"] / speed["plain Keras"]
    wall_ratio = wall["zoo train"] / wall["plain Keras"]
    same = choices["zoo train"] == choices["plain Keras"]
    print(f"\nexamples/s, zoo over plain: {speed_ratio:.3f} (goal >= {SPEED_GOAL}: {'met' if speed_ratio >= SPEED_GOAL else 'not met'})")
    print(f"wall time, zoo over plain: {wall_ratio:.3f} (goal <= {WALL_GOAL}: {'met' if wall_ratio <= WALL_GOAL else 'not met'})")
    print(f"same jit_compile and steps_per_execution: {'yes' if same else 'no'}\n")


JOBS = {"default": default_job, "cat_cnn": cat_cnn_job}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", default="default,cat_cnn", help="comma-separated: default, cat_cnn")
    parser.add_argument("--images", type=int, default=1024, help="cat_cnn: training JPEGs")
    parser.add_argument("--epochs", type=int, default=0, help="epochs (default: 40 for default, 12 for cat_cnn)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "cat_cnn":
        print(json.dumps(plain_cat_cnn(args.root, args.epochs, args.out)))
        return
    if args.child:
        print(json.dumps(plain_default(args.child.removeprefix("default-"), args.out, args.epochs)))
        return
    jobs = args.jobs.split(",")
    unknown = [job for job in jobs if job not in JOBS]
    if unknown:
        parser.error(f"unknown job {unknown[0]!r}; choose from {', '.join(JOBS)}")
    with tempfile.TemporaryDirectory(prefix="zoo-overhead-") as tmp:
        for job in jobs:
            (Path(tmp) / job).mkdir()
            JOBS[job](args, Path(tmp) / job)


if __name__ == "__main__":
    main()
