"""Input pipeline: `image_folder` with the cat CNN's augmentation against seed 004's
`ImageDataGenerator.flow_from_directory`, on the same folder of 150x150 JPEGs, batch 32.

    python benchmarks/input_pipeline.py                      # 1,024 images, 3 rounds
    python benchmarks/input_pipeline.py --images 64 --epochs 2 --steps 3 --rounds 1

Both sides produce the same thing: shuffled batches of 32 augmented images in [0, 1] with
their labels, the seed's augmentations (rotation 40, shifts 0.2, shear 0.2, zoom 0.2,
horizontal flip, nearest fill). The seed's generator decodes, resizes and augments each
image in Python with PIL and SciPy, every epoch. The zoo's side is what a run does: the
`image_folder` dataset (decoded and resized by TensorFlow once, cached as uint8), shuffled,
batched and prefetched by `zoo.run.as_tf_dataset`, then the model's `RandomAffine` layer
(the five augmentations in one resampling), which a run applies inside the training step.

Reported per side, medians over rounds of fresh processes run interleaved: images per
second in the first epoch (the zoo decodes and caches) and in later epochs (steady state),
and the fraction of a training step of `cnn_cat_classifier` spent waiting for the next
batch. Goal (issue 6): later-epoch images per second at least 3x the seed's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import cat_spec, machine, run_child, seed_generator, write_jpeg_splits  # noqa: E402

GOAL = 3.0
SIZE, BATCH = 150, 32
SIDES = {"seed": "seed 004: `ImageDataGenerator.flow_from_directory`", "zoo": "zoo: `image_folder` + `RandomAffine`"}


def seed_batches(folder: Path, epoch: int):
    """One epoch of seed 004's training generator (its exact arguments)."""
    import tensorflow as tf

    flow = seed_generator(tf).flow_from_directory(
        str(folder), target_size=(SIZE, SIZE), batch_size=BATCH, class_mode="binary", seed=epoch
    )
    return (flow[i] for i in range(len(flow)))


def zoo_epochs(folder: Path):
    """``epoch(n, augment)``: the zoo's batches of epoch ``n``, as the training step
    receives them or as it augments them."""
    import tensorflow as tf

    import zoo
    from zoo.config import TrainerConfig
    from zoo.run import as_tf_dataset, epoch_seed, shuffle_buffer_size

    # folder is <root>/train, beside small validation/ and test/ folders: all of it trains.
    splits = zoo.create_dataset("image_folder", path=str(folder.parent), image_size=[SIZE, SIZE]).load(seed=0)
    layer = zoo.create_model("cnn_cat_classifier", cat_spec(SIZE)).get_layer("augment")
    augmented = tf.function(lambda images: layer(images, training=True))

    shuffle_buffer = shuffle_buffer_size(tf, splits.train, TrainerConfig())

    def epoch(n: int, augment: bool = True):
        for images, labels in as_tf_dataset(tf, splits.train, BATCH, shuffle_buffer=shuffle_buffer, seed=epoch_seed(0, n)):
            yield (augmented(images) if augment else images), labels

    return epoch


def images_per_second(batches) -> float:
    started, count = time.perf_counter(), 0
    for images, _ in batches:
        count += len(images)
    return count / (time.perf_counter() - started)


def waiting_fraction(next_batch, steps: int, augment: bool) -> float:
    """The share of a training step of `cnn_cat_classifier` (150x150, batch 32) spent
    waiting for ``next_batch()``; the first two steps (tracing) are not counted."""
    import tensorflow as tf

    import zoo

    model = zoo.create_model("cnn_cat_classifier", cat_spec(SIZE), augment=augment)
    model.compile(optimizer="adam", loss="binary_crossentropy")
    step = tf.function(model.train_step)
    waited = total = 0.0
    for i in range(steps + 2):
        started = time.perf_counter()
        images, labels = next_batch()
        while len(images) < BATCH:  # an epoch's last, partial batch would retrace the step
            images, labels = next_batch()
        got = time.perf_counter()
        float(step((tf.convert_to_tensor(images), tf.cast(labels, tf.float32)))["loss"])
        if i >= 2:
            waited += got - started
            total += time.perf_counter() - started
    return waited / total


def child(side: str, folder: Path, epochs: int, steps: int) -> dict:
    import itertools

    if side == "seed":
        rates = [images_per_second(seed_batches(folder, n)) for n in range(epochs)]
        more = itertools.chain.from_iterable(seed_batches(folder, n) for n in itertools.count(epochs))
    else:
        epoch = zoo_epochs(folder)
        rates = [images_per_second(epoch(n)) for n in range(epochs)]
        # In a run the model augments inside its step: the input waited for is the dataset's.
        more = itertools.chain.from_iterable(epoch(n, augment=False) for n in itertools.count(epochs))
    fraction = waiting_fraction(lambda: next(more), steps, augment=side == "zoo")
    return {"first": rates[0], "later": statistics.median(rates[1:]), "waiting": fraction}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1024, help="JPEGs in the folder")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per process (the first is reported apart)")
    parser.add_argument("--steps", type=int, default=10, help="training steps timed for the waiting fraction")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--folder", type=Path, help="use this folder of class folders instead of generated JPEGs")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.side, args.folder, args.epochs, args.steps)))
        return
    with tempfile.TemporaryDirectory(prefix="zoo-input-") as tmp:
        folder = args.folder or write_jpeg_splits(Path(tmp) / "jpegs", args.images, 4, SIZE) / "train"
        results: dict[str, list[dict]] = {side: [] for side in SIDES}
        for _ in range(args.rounds):
            for side in SIDES:
                options = ["--side", side, "--folder", str(folder), "--epochs", str(args.epochs), "--steps", str(args.steps)]
                results[side].append(run_child(__file__, *options))
    median = {side: {key: statistics.median(r[key] for r in runs) for key in runs[0]} for side, runs in results.items()}
    print(f"Input pipeline, {args.images} JPEGs of {SIZE}x{SIZE}, batch {BATCH}, medians of {args.rounds} rounds; {machine()}\n")
    print("| pipeline | first epoch, images/s | later epochs, images/s | step waiting for input |")
    print("|---|---|---|---|")
    for side, label in SIDES.items():
        m = median[side]
        print(f"| {label} | {m['first']:.0f} | {m['later']:.0f} | {m['waiting']:.1%} |")
    ratio = median["zoo"]["later"] / median["seed"]["later"]
    print(f"\nzoo over seed, later epochs: {ratio:.2f}x (goal >= {GOAL:g}x: {'met' if ratio >= GOAL else 'not met'})")


if __name__ == "__main__":
    main()
