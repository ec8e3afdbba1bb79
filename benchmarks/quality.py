"""Quality run: train each experiment preset with its full budget and check it against its bar.

    python benchmarks/quality.py                 # every preset with a bar, seeds 0-4
    python benchmarks/quality.py --seeds 0 1 --only digits_cnn
    python benchmarks/quality.py --override trainer.epochs=1   # a quick smoke run

Prints a Markdown table (paste it into the README's quality section) with the seed-0
value, the mean, the minimum over the seeds, and whether the mean meets the bar.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time

# metric -> minimum, per preset in conf/experiment/.
QUALITY_BARS: dict[str, dict[str, float]] = {
    "digits_cnn": {"accuracy": 0.985},
    "breast_cancer_mlp": {"accuracy": 0.95, "auc": 0.99},
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
        for metric, bar in QUALITY_BARS[preset].items():
            values = [r[metric] for r in results]
            mean = statistics.fmean(values)
            rows.append(
                (preset, metric, f">= {bar}", f"{values[0]:.4f}", f"{mean:.4f}", f"{min(values):.4f}",
                 "yes" if mean >= bar else "**no**", f"{seconds:.0f}")
            )  # fmt: skip

    seeds = ", ".join(map(str, args.seeds))
    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; seeds {seeds}")
    header = ("preset", "metric", "bar", f"seed {args.seeds[0]}", "mean", "min", "mean meets bar", "s/run")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
