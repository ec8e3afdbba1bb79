"""What the benchmarks share: the machine line, child processes that report JSON, folders
of JPEGs to read, seed 004's generator and the `zoo train` command they time."""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

QUIET_TF = {"TF_CPP_MIN_LOG_LEVEL": "2"}


def machine() -> str:
    """The machine a table was measured on, for the line above it."""
    import importlib.metadata as metadata

    versions = []
    for name in ("tensorflow", "tensorflow-cpu", "keras"):
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pass
    return ", ".join(
        [f"{platform.machine()}", f"{os.cpu_count()} cores", f"Python {platform.python_version()}", *versions]
    )


def run_child(script: str, *args: str, env: dict | None = None) -> dict:
    """Run ``script --child ...`` in a fresh process and return the JSON it prints last."""
    result = subprocess.run(
        [sys.executable, script, "--child", *args],
        capture_output=True, text=True, env={**os.environ, **QUIET_TF, **(env or {})},
    )  # fmt: skip
    if result.returncode != 0:
        raise SystemExit(f"{Path(script).name} {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def write_jpegs(root: Path, count: int, size: int, seed: int = 0, start: int = 0) -> Path:
    """``count`` photo-like JPEGs (drawn cats and other shapes with sensor-like noise, so that
    they compress as photos do, not as flat drawings) of ``size`` x ``size``, numbered from
    ``start``, half in ``root/cat`` and half in ``root/not_cat``. Returns ``root``."""
    import numpy as np
    from PIL import Image

    from zoo_plugins.cats import draw_scene

    rng = np.random.default_rng(seed)
    for name in ("not_cat", "cat"):
        (root / name).mkdir(parents=True, exist_ok=True)
    for i in range(start, start + count):
        cat = i % 2 == 1
        image = draw_scene(rng, size, cat).astype(np.int16) + rng.normal(0, 12, (size, size, 3))
        path = root / ("cat" if cat else "not_cat") / f"{i:07d}.jpg"
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(path, quality=90)
    return root


def write_jpeg_splits(root: Path, train: int, held_out: int, size: int, many: bool = False) -> Path:
    """``root/train`` with ``train`` JPEGs, ``root/validation`` and ``root/test`` with
    ``held_out`` each (given splits: all of train/ trains); ``many`` writes on every core."""
    if many:
        write_many_jpegs(root / "train", train, size)
    else:
        write_jpegs(root / "train", train, size)
    for seed, split in enumerate(("validation", "test"), start=1):
        write_jpegs(root / split, held_out, size, seed=seed)
    return root


def write_many_jpegs(root: Path, count: int, size: int, chunk: int = 2000) -> Path:
    """``write_jpegs`` on every core, in chunks (each seeded by its number)."""
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor() as pool:
        jobs = [
            pool.submit(write_jpegs, root, min(chunk, count - start), size, seed=start, start=start)
            for start in range(0, count, chunk)
        ]
        for job in jobs:
            job.result()
    return root


def train_log_report(text: str) -> dict:
    """What a run's ``train.log`` says of its speed: per-epoch training seconds, and its
    ``jit_compile`` and ``steps_per_execution`` choices."""
    choices = re.search(r"jit_compile=(\w+), steps_per_execution=(\d+)", text)
    return {
        "epoch_seconds": [float(s) for s in re.findall(r"epoch \d+/\d+: \d+ steps trained in ([\d.]+) s", text)],
        "jit_compile": choices.group(1) == "True",
        "steps_per_execution": int(choices.group(2)),
    }


def epoch_timer(keras):
    """A Keras callback timing each epoch from its start to its last training step's end
    (validation excluded); the times are in its ``seconds``."""

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.last = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(self.last - self.started)

    return EpochTimer()


def cat_spec(size: int):
    """What `image_folder` yields for a folder of cats and not-cats at ``size`` x ``size``."""
    import zoo

    return zoo.DataSpec(task=zoo.CLASSIFICATION, input_shape=(size, size, 3), num_classes=2, value_range=(0.0, 1.0))


def seed_generator(tf):
    """Seed 004's training generator: its exact augmentation arguments."""
    return tf.keras.preprocessing.image.ImageDataGenerator(
        rescale=1.0 / 255, rotation_range=40, width_shift_range=0.2, height_shift_range=0.2,
        shear_range=0.2, zoom_range=0.2, horizontal_flip=True, fill_mode="nearest",
    )  # fmt: skip


def zoo_train_command(root: Path, size: int, epochs: int, run_dir: Path, *overrides: str) -> list[str]:
    """`zoo train` of `cnn_cat_classifier` on the image folder ``root``, quiet, into ``run_dir``."""
    return [
        sys.executable, "-m", "zoo", "train", "model=cnn_cat_classifier", "dataset=image_folder",
        f"dataset.path={root}", f"dataset.image_size=[{size},{size}]", "metrics=[accuracy]",
        f"trainer.epochs={epochs}", "trainer.progress=off", f"hydra.run.dir={run_dir}", *overrides,
    ]  # fmt: skip
