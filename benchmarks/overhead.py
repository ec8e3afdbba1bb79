"""Framework overhead: `zoo train` against the same job written by hand in plain Keras.

    python benchmarks/overhead.py                   # 1,024 JPEGs, 12 epochs (about a minute a side), 3 rounds
    python benchmarks/overhead.py --images 96 --epochs 2 --rounds 1

The job: `cnn_cat_classifier` (built by its plugin on both sides, so the network is the
same) on a folder of 150x150 JPEGs given as train/, validation/ and test/, resized to
64x64, batch 32, Adam 1e-3, binary cross-entropy, accuracy, seed 0; train with
validation each epoch, evaluate on test, save the model. The hand-written side is what a
careful Keras user writes: `image_dataset_from_directory`, rescale, cache, shuffle,
batch, prefetch, `model.fit`, `model.evaluate`, `model.save`. The zoo side is the console
command, which also checks every image, writes checkpoints, TensorBoard logs, plots and
the run's records.

Both run as fresh processes, interleaved round by round. Reported: whole-process wall
time, and steady-state training examples per second (the median over epochs after the
first, training time only: validation excluded), with each side's `jit_compile` and
`steps_per_execution` as it reports them. Goals (issue 6): examples per second, zoo over
plain, at least 0.98; wall time at most 5% more.
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

SPEED_GOAL, WALL_GOAL = 0.98, 1.05
SOURCE_SIZE, SIZE, BATCH, SEED = 150, 64, 32, 0


def plain_keras(root: Path, epochs: int, out: Path) -> dict:
    """The job as hand-written Keras; returns per-epoch training seconds and its choices."""
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


def zoo_train(root: Path, epochs: int, run_dir: Path) -> tuple[float, dict]:
    """`zoo train` on the same job: its wall time, and what its train.log reports."""
    command = zoo_train_command(root, SIZE, epochs, run_dir, f"trainer.batch_size={BATCH}", f"seed={SEED}")
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env={**os.environ, **QUIET_TF})
    wall = time.perf_counter() - started
    return wall, train_log_report((run_dir / "train.log").read_text())


def plain_run(root: Path, epochs: int, out: Path) -> tuple[float, dict]:
    started = time.perf_counter()
    report = run_child(__file__, "--root", str(root), "--epochs", str(epochs), "--out", str(out))
    return time.perf_counter() - started, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1024, help="training JPEGs")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(plain_keras(args.root, args.epochs, args.out)))
        return
    sides = {"plain Keras": plain_run, "zoo train": zoo_train}
    walls: dict[str, list[float]] = {side: [] for side in sides}
    speeds: dict[str, list[float]] = {side: [] for side in sides}
    choices: dict[str, set] = {side: set() for side in sides}
    with tempfile.TemporaryDirectory(prefix="zoo-overhead-") as tmp:
        root = Path(tmp) / "jpegs"
        write_jpeg_splits(root, args.images, max(4, args.images // 5), SOURCE_SIZE)
        examples = args.images
        for round_ in range(args.rounds):
            for side, run in sides.items():
                out = Path(tmp) / f"{side.replace(' ', '_')}-{round_}"
                out.mkdir()
                wall, report = run(root, args.epochs, out)
                walls[side].append(wall)
                later = report["epoch_seconds"][1:] or report["epoch_seconds"]
                speeds[side].append(examples / statistics.median(later))
                choices[side].add((report["jit_compile"], report["steps_per_execution"]))
    wall = {side: statistics.median(values) for side, values in walls.items()}
    speed = {side: statistics.median(values) for side, values in speeds.items()}
    print(
        f"Framework overhead: cnn_cat_classifier, {args.images} JPEGs resized to {SIZE}x{SIZE}, batch {BATCH}, "
        f"{args.epochs} epochs, medians of {args.rounds} rounds; {machine()}\n"
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
    print(f"same jit_compile and steps_per_execution: {'yes' if same else 'no'}")


if __name__ == "__main__":
    main()
