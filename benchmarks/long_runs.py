"""Long runs: does an epoch's end cost the same at epoch 3,000 as at epoch 10?

    python benchmarks/long_runs.py                  # 3,000 epochs (about 3 min)
    python benchmarks/long_runs.py --epochs 500     # a quicker look

One `zoo train` of many short epochs (``mlp_classifier`` on ``breast_cancer``, the whole
training split in one batch: each epoch is one step, validation, the history, a checkpoint,
TensorBoard's values), with the zoo's defaults otherwise. Printed: the whole process's wall
time and the mean time from one epoch's log line to the next, over the first epochs and the
last. Every epoch does the same work, so the two should match: the zoo's records of the
run (history, checkpoint) had grown with it, and each epoch's end cost more than the last.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import QUIET_TF, machine  # noqa: E402

EPOCH_LINE = re.compile(r"^\[([\d-]+ [\d:,]+)\]\[zoo\.training\]\[INFO\] - epoch (\d+)/\d+: ", re.MULTILINE)
WINDOW = 100  # epochs averaged at each end


def epoch_times(log: str) -> dict[int, float]:
    """Epoch number to the time its line was logged, in seconds."""
    return {int(n): datetime.strptime(t, "%Y-%m-%d %H:%M:%S,%f").timestamp() for t, n in EPOCH_LINE.findall(log)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3000)
    args = parser.parse_args()
    if args.epochs < 4 * WINDOW:
        parser.error(f"--epochs must be at least {4 * WINDOW}")
    with tempfile.TemporaryDirectory(prefix="zoo-long-") as tmp:
        run_dir = Path(tmp) / "run"
        command = [
            sys.executable, "-m", "zoo", "train", "model=mlp_classifier", "dataset=breast_cancer", "trainer.batch_size=1024",
            f"trainer.epochs={args.epochs}", "trainer.progress=off", f"hydra.run.dir={run_dir}",
        ]  # fmt: skip
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, env={**os.environ, **QUIET_TF})
        wall = time.perf_counter() - started
        times = epoch_times((run_dir / "train.log").read_text(encoding="utf-8"))

    def mean_ms(first: int) -> float:  # from epoch first's line to epoch first+WINDOW's, per epoch
        return (times[first + WINDOW] - times[first]) / WINDOW * 1000

    early, late = mean_ms(10), mean_ms(args.epochs - WINDOW)
    print(f"`zoo train model=mlp_classifier dataset=breast_cancer trainer.batch_size=1024 trainer.epochs={args.epochs}` "
          f"(one step an epoch); {machine()}\n")  # fmt: skip
    print("| wall s | ms an epoch, epochs 10-110 | ms an epoch, last 100 | last over first |")
    print("|---|---|---|---|")
    print(f"| {wall:.1f} | {early:.1f} | {late:.1f} | {late / early:.2f} |")


if __name__ == "__main__":
    main()
