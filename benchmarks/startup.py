"""Start-up: the commands that list, describe and validate, against `import tensorflow`.

    python benchmarks/startup.py              # 7 rounds
    python benchmarks/startup.py --rounds 2   # a quick look

Every command runs as a fresh process, the two sides interleaved round by round, so that
disk caches and machine load fall on both alike. Goal (issue 6): each zoo command takes at
most 5% of the wall time of `python -c "import tensorflow"`. Prints a Markdown table of
medians and ratios, with the machine it ran on.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import machine  # noqa: E402

GOAL = 0.05
REFERENCE = ("import tensorflow", [sys.executable, "-c", "import tensorflow"])
COMMANDS = [
    ("zoo --help", [sys.executable, "-m", "zoo", "--help"]),
    ("zoo list", [sys.executable, "-m", "zoo", "list"]),
    # Describing without the parameter and FLOP counts, which build the model (TensorFlow).
    ("zoo info cnn_cat_classifier --no-cost", [sys.executable, "-m", "zoo", "info", "cnn_cat_classifier", "--no-cost"]),
]


def wall_time(command: list[str], env: dict) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    times: dict[str, list[float]] = {name: [] for name, _ in [REFERENCE, *COMMANDS]}
    for _ in range(args.rounds):
        for name, command in [REFERENCE, *COMMANDS]:
            times[name].append(wall_time(command, env))
    reference = statistics.median(times[REFERENCE[0]])
    print(f"Start-up, median of {args.rounds} fresh processes; {machine()}\n")
    print("| command | median s | share of `import tensorflow` | goal | met |")
    print("|---|---|---|---|---|")
    print(f"| `{REFERENCE[0]}` | {reference:.3f} | 100% | | |")
    for name, _ in COMMANDS:
        median = statistics.median(times[name])
        share = median / reference
        print(f"| `{name}` | {median:.3f} | {share:.1%} | <= {GOAL:.0%} | {'yes' if share <= GOAL else 'no'} |")


if __name__ == "__main__":
    main()
