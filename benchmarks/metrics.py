"""What the classification metrics cost a training step, by number of classes.

    python benchmarks/metrics.py                      # 2, 10, 200, 2,000 and 5,000 classes
    python benchmarks/metrics.py --classes 10 1000    # others

A training step updates every metric's totals. Keras' step also asks each metric for its
result; the zoo's loop does not return those values before an epoch's end, so TensorFlow
drops their arithmetic, but not their reads of the totals (a read copies a variable that
was updated in place). This times what a step pays, update plus unused result, one batch
of 32 in a TensorFlow function on one device, for the zoo's metrics (exact counts, ROC AUC
from score histograms) and Keras' own (F1Score, AUC with 200 thresholds per class), and
prints the memory each keeps. Prints a Markdown table with the machine it ran on.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import machine  # noqa: E402

BATCH = 32


def per_step(metric, labels, scores, rounds: int = 5, steps: int = 20) -> float:
    """Median milliseconds of a step's share, over ``rounds`` of ``steps``."""
    import tensorflow as tf

    def step(labels, scores):
        metric.update_state(labels, scores)
        metric.result()  # as Keras' train_step computes it; its value is not returned
        return tf.constant(0.0)

    step = tf.function(step, autograph=False)
    labels, scores = tf.constant(labels), tf.constant(scores)  # arguments: nothing folded at tracing
    step(labels, scores)  # traces, and creates nothing more: the variables exist
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(steps):
            step(labels, scores)
        times.append((time.perf_counter() - started) / steps * 1000)
    return statistics.median(times)


def state_bytes(metric) -> int:
    import numpy as np

    return sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in metric.variables)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classes", type=int, nargs="+", default=[2, 10, 200, 2000, 5000])
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np

    import zoo

    print(f"Machine: {machine()}; batch {BATCH}, update_state and an unused result, median ms per step\n")
    print("| classes | metric | ms per step | state |")
    print("|---:|---|---:|---:|")
    for classes in args.classes:
        rng = np.random.default_rng(0)
        labels = rng.integers(0, classes, BATCH).astype("int32")
        scores = rng.random((BATCH, classes)).astype("float32")
        scores /= scores.sum(axis=1, keepdims=True)
        if classes == 2:
            scores = scores[:, 1]
        spec = zoo.DataSpec(zoo.CLASSIFICATION, (4,), num_classes=classes)
        # Keras' metrics take one-hot labels and a column per class, for two classes too.
        one_hot = np.eye(classes, dtype="float32")[labels]
        columns = scores if classes > 2 else np.stack([1 - scores, scores], axis=1)
        sides = [(f"zoo {name}", zoo.create_metric(name, spec), labels, scores) for name in ("f1", "auc")]
        sides += [
            ("Keras F1Score(average='macro')", keras.metrics.F1Score(average="macro"), one_hot, columns),
            ("Keras AUC(multi_label=True)", keras.metrics.AUC(multi_label=True, num_labels=classes), one_hot, columns),
        ]
        for name, metric, y, p in sides:
            ms = per_step(metric, y, p)
            print(f"| {classes:,} | {name} | {ms:.2f} | {state_bytes(metric) / 2**20:,.1f} MB |", flush=True)


if __name__ == "__main__":
    main()
