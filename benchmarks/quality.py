"""Quality run: train each experiment preset with its full budget and check it against its bar.

    python benchmarks/quality.py                 # every preset with a bar, seeds 0-4
    python benchmarks/quality.py --seeds 0 1 --only digits_cnn
    python benchmarks/quality.py --override trainer.epochs=1   # a quick smoke run

Prints a Markdown table (paste it into the README's quality section) with the seed-0
value, the mean, the worst seed, and whether the mean meets the bar.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from dataclasses import dataclass
from typing import Callable, Union


def fifth_of_pixel_mean_mse(dataset: str, seeds: list[int]) -> float:
    """A fifth of the test MSE of predicting every pixel's training-split mean."""
    import numpy as np

    import zoo

    errors = []
    for seed in seeds:
        splits = zoo.create_dataset(dataset).load(seed)
        errors.append(float(np.mean((splits.test[0] - splits.train[0].mean(axis=0)) ** 2)))
    return statistics.fmean(errors) / 5


@dataclass
class Bar:
    metric: str
    at_least: bool  # True: the mean must reach the bar; False: stay at or under it
    value: Union[float, Callable[[list[int]], float]]
    about: str = ""

    def resolve(self, seeds: list[int]) -> float:
        return self.value(seeds) if callable(self.value) else self.value


# The bars of issue 3, per preset in conf/experiment/.
QUALITY_BARS: dict[str, list[Bar]] = {
    "digits_cnn": [Bar("accuracy", True, 0.985)],
    "breast_cancer_mlp": [Bar("accuracy", True, 0.95), Bar("auc", True, 0.99)],
    "digits_autoencoder": [
        Bar("mse", False, lambda seeds: fifth_of_pixel_mean_mse("digits", seeds), "1/5 of pixel-mean MSE")
    ],
    "digits_conv_autoencoder": [
        Bar("mse", False, lambda seeds: fifth_of_pixel_mean_mse("digits", seeds), "1/5 of pixel-mean MSE")
    ],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--only", nargs="+", choices=sorted(QUALITY_BARS), help="presets to run")
    parser.add_argument("--override", nargs="*", default=[], help="extra Hydra overrides for every run")
    args = parser.parse_args()

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from zoo.config import compose
    from zoo.run import train

    rows = []
    for preset in args.only or sorted(QUALITY_BARS):
        results, started = [], time.perf_counter()
        for seed in args.seeds:
            cfg = compose([f"+experiment={preset}", f"seed={seed}", "trainer.progress=off", *args.override])
            with tempfile.TemporaryDirectory() as run_dir:
                results.append(train(cfg, run_dir))
        seconds = (time.perf_counter() - started) / len(args.seeds)
        for bar in QUALITY_BARS[preset]:
            values = [r[bar.metric] for r in results]
            mean, target = statistics.fmean(values), bar.resolve(args.seeds)
            worst = min(values) if bar.at_least else max(values)
            met = mean >= target if bar.at_least else mean <= target
            bar_text = f"{'>=' if bar.at_least else '<='} {target:.4g}" + (f" ({bar.about})" if bar.about else "")
            rows.append(
                (preset, bar.metric, bar_text, f"{values[0]:.4f}", f"{mean:.4f}", f"{worst:.4f}",
                 "yes" if met else "**no**", f"{seconds:.0f}")
            )  # fmt: skip

    seeds = ", ".join(map(str, args.seeds))
    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; seeds {seeds}")
    header = ("preset", "metric", "bar", f"seed {args.seeds[0]}", "mean", "worst", "mean meets bar", "s/run")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
