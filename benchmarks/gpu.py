"""GPU: `cnn_cat_classifier` in float32 against mixed precision, and end to end against
seed 004's pipeline, on one GPU, with the GPU's utilisation.

    python benchmarks/gpu.py                        # 2,048 JPEGs, 4 epochs
    python benchmarks/gpu.py --images 64 --epochs 2 --steps 2 --cpu   # the script itself, on a CPU

Skips (exit 0, saying so) where TensorFlow sees no GPU. Three measurements, each in a
fresh process, while `nvidia-smi` samples utilisation five times a second:

- the training step alone (150x150, batch 32, in-device data) in `float32` and in
  `mixed_float16`: images per second;
- `zoo train model=cnn_cat_classifier dataset=image_folder device=gpu` on a folder of
  150x150 JPEGs against seed 004's script on the same folder (`ImageDataGenerator` with
  its augmentations, `model.fit`): training images per second in epochs 2 and later.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import (  # noqa: E402
    QUIET_TF, cat_spec, epoch_timer, machine, run_child, seed_generator, train_log_report, write_jpeg_splits,
    zoo_train_command,
)  # fmt: skip

SIZE, BATCH = 150, 32


def gpu_names() -> list[str]:
    script = "import json, tensorflow as tf; print(json.dumps([d.name for d in tf.config.list_physical_devices('GPU')]))"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env={**os.environ, **QUIET_TF})
    return json.loads(result.stdout.strip().splitlines()[-1]) if result.returncode == 0 else []


class Utilisation:
    """Mean GPU utilisation (%) from `nvidia-smi` while the ``with`` block runs."""

    def __enter__(self):
        self.samples: list[float] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        while not self.stop.wait(0.2) and shutil.which("nvidia-smi"):
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "--id=0"],
                capture_output=True, text=True,
            )  # fmt: skip
            if out.returncode == 0 and out.stdout.strip():
                self.samples.append(float(out.stdout.strip().splitlines()[0]))

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()

    @property
    def mean(self) -> str:
        return f"{statistics.mean(self.samples):.0f}%" if self.samples else "n/a"


def step_speed(precision: str, steps: int) -> dict:
    """Images per second of the training step alone, data already on the GPU."""
    import keras
    import tensorflow as tf

    import zoo

    keras.mixed_precision.set_global_policy(precision)
    model = zoo.create_model("cnn_cat_classifier", cat_spec(SIZE))
    model.compile(optimizer="adam", loss="binary_crossentropy")
    step = tf.function(model.train_step)
    batch = (tf.random.uniform((BATCH, SIZE, SIZE, 3)), tf.cast(tf.random.uniform((BATCH,), 0, 2, tf.int32), tf.float32))
    for _ in range(3):
        float(step(batch)["loss"])
    started = time.perf_counter()
    for _ in range(steps):
        outputs = step(batch)
    float(outputs["loss"])  # waits for the queued steps
    return {"images_per_second": steps * BATCH / (time.perf_counter() - started)}


def seed_script(folder: Path, epochs: int) -> dict:
    """Seed 004's training script on ``folder`` (its generator and `fit`), timed per epoch."""
    import keras
    import tensorflow as tf

    import zoo

    flow = seed_generator(tf).flow_from_directory(
        str(folder), target_size=(SIZE, SIZE), batch_size=BATCH, class_mode="binary"
    )
    model = zoo.create_model("cnn_cat_classifier", cat_spec(SIZE), augment=False)  # the generator augments
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    timer = epoch_timer(keras)
    model.fit(flow, epochs=epochs, callbacks=[timer], verbose=0)
    return {"epoch_seconds": timer.seconds}


def zoo_run(root: Path, epochs: int, run_dir: Path, device: str) -> dict:
    command = zoo_train_command(root, SIZE, epochs, run_dir, f"device={device}", f"trainer.batch_size={BATCH}")
    subprocess.run(command, check=True, capture_output=True, env={**os.environ, **QUIET_TF})
    return train_log_report((run_dir / "train.log").read_text())


def later_epochs_speed(report: dict, images: int) -> float:
    seconds = report["epoch_seconds"][1:] or report["epoch_seconds"]
    return images / statistics.median(seconds)


def main() -> None:
    global SIZE  # --size sets it for this process; the children get the same --size
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=100, help="steps timed per precision")
    parser.add_argument("--cpu", action="store_true", help="without a GPU, run on the CPU (to check the script)")
    parser.add_argument("--size", type=int, default=SIZE, help="image side (smaller to check the script on a CPU)")
    parser.add_argument("--child", choices=["float32", "mixed_float16", "seed"], help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    SIZE = args.size
    if args.child == "seed":
        print(json.dumps(seed_script(args.folder, args.epochs)))
        return
    if args.child:
        print(json.dumps(step_speed(args.child, args.steps)))
        return
    gpus = gpu_names()
    if not gpus and not args.cpu:
        print(f"GPU benchmark skipped: TensorFlow sees no GPU on this machine ({machine()}).")
        return
    rows = []
    for precision in ("float32", "mixed_float16"):
        with Utilisation() as use:
            speed = run_child(__file__, precision, "--steps", str(args.steps), "--size", str(SIZE))["images_per_second"]
        rows.append((f"training step, `{precision}`", speed, use.mean))
    with tempfile.TemporaryDirectory(prefix="zoo-gpu-") as tmp:
        root = write_jpeg_splits(Path(tmp) / "jpegs", args.images, max(4, args.images // 10), SIZE)
        with Utilisation() as use:
            report = run_child(__file__, "seed", "--folder", str(root / "train"), "--epochs", str(args.epochs), "--size", str(SIZE))
        rows.append(("seed 004 end to end (`ImageDataGenerator`, `fit`)", later_epochs_speed(report, args.images), use.mean))
        with Utilisation() as use:
            report = zoo_run(root, args.epochs, Path(tmp) / "run", "gpu" if gpus else "cpu")
        rows.append(("`zoo train` end to end (`image_folder`, `RandomAffine`)", later_epochs_speed(report, args.images), use.mean))
    print(f"GPU: cnn_cat_classifier, {SIZE}x{SIZE}, batch {BATCH}; {', '.join(gpus) or 'no GPU (--cpu)'}; {machine()}\n")
    print("| measurement | images/s | GPU utilisation |")
    print("|---|---|---|")
    for name, speed, use in rows:
        print(f"| {name} | {speed:.0f} | {use} |")
    print(f"\nmixed_float16 over float32: {rows[1][1] / rows[0][1]:.2f}x; zoo over seed end to end: {rows[3][1] / rows[2][1]:.2f}x")


if __name__ == "__main__":
    main()
