"""What pruning saves: the same Optuna search over the digits CNN with and without a pruner.

    python benchmarks/search.py            # 12 trials of hparams_search=digits_cnn, twice (about 12 minutes here)
    python benchmarks/search.py --tiny     # 4 trials of 4 epochs: checks the script

Each search runs as a user runs it (`zoo train -m hparams_search=digits_cnn`, its TPE
sampler seeded), once with the preset's median pruner and once with `hydra/sweeper/pruner=none`, each in
a fresh study. It counts the epochs every trial trained (from its `training.json`), the
pruned trials, the wall time and the best validation accuracy found. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from common import QUIET_TF, machine


def search(folder: Path, pruner: str, trials: int, epochs: int) -> dict:
    sweep = folder / pruner
    args = [
        sys.executable, "-m", "zoo", "train", "-m", "hparams_search=digits_cnn", f"hydra.sweeper.n_trials={trials}",
        f"trainer.epochs={epochs}", f"hydra.sweeper.storage=sqlite:///{folder / pruner}.db", f"hydra.sweep.dir={sweep}",
        "trainer.progress=off", "loggers=none",
    ]  # fmt: skip
    if pruner == "none":
        args.append("hydra/sweeper/pruner=none")
    started = time.perf_counter()
    result = subprocess.run(args, capture_output=True, text=True, env={**os.environ, **QUIET_TF})
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"the search with pruner={pruner} failed:\n{result.stderr[-3000:]}")
    records = [json.loads(p.read_text()) for p in sorted(sweep.glob("*_cnn_classifier/training.json"))]
    best = yaml.safe_load((sweep / "best.yaml").read_text())
    return {
        "trials": len(records),
        "pruned": sum(bool(r.get("search_trial", {}).get("pruned_at")) for r in records),
        "epochs": sum(r["epochs_trained"] for r in records),
        "seconds": seconds,
        "best": best["value"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--tiny", action="store_true", help="4 trials of 4 epochs: checks the script")
    args = parser.parse_args()
    trials, epochs = (4, 4) if args.tiny else (args.trials, 20)
    with tempfile.TemporaryDirectory() as scratch:
        found = {pruner: search(Path(scratch), pruner, trials, epochs) for pruner in ("median", "none")}
    print(f"Machine: {machine()}; hparams_search=digits_cnn, {trials} trials of up to {epochs} epochs, TPE seed 0\n")
    print("| pruner | trials | pruned | epochs trained | of a full search | wall time | best val_accuracy |")
    print("|---|---|---|---|---|---|---|")
    for pruner, row in found.items():
        print(
            f"| {pruner} | {row['trials']} | {row['pruned']} | {row['epochs']} | {row['epochs'] / (trials * epochs):.2f} | "
            f"{row['seconds']:.0f} s | {row['best']:.4f} |"
        )


if __name__ == "__main__":
    main()
