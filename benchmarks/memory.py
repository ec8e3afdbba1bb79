"""Memory: training on an image folder several times larger than a memory cap.

    python benchmarks/memory.py                           # cap 1,792 MB, data 4x the cap (up to 35 minutes on 2 cores)
    python benchmarks/memory.py --cap-mb 1200 --factor 0.05 --epochs 2 --image-size 64

Writes a folder of JPEGs whose decoded size (images x height x width x 3 bytes) is at
least ``--factor`` times ``--cap-mb``, then runs `zoo train model=cnn_cat_classifier
dataset=image_folder` on it twice, as fresh processes: with the decoded images cached in a
file (`dataset.cache=<prefix>`, the setting for data larger than memory) and, as the
negative control, cached in memory (`dataset.cache=memory`). The benchmark samples each
process's resident set (RSS) ten times a second and stops a run that goes over the cap.
Epochs are told apart by the rows `history.csv` gains.

The model is the seed's network made narrow (filters 8-16-32-32, Dense 64, no
augmentation), so that a CPU gets through tens of thousands of images in minutes; the data
pipeline, which is what holds memory, is the one every run uses.

Goal (issue 6): with the file cache, peak RSS stays under the cap and does not grow from
epoch to epoch (growth here: the last epoch's peak over the second's, the first epoch
writes the cache).
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import QUIET_TF, machine, write_jpeg_splits, zoo_train_command  # noqa: E402

GROWTH_TOLERANCE_MB = 32  # allocator noise: a leak of one batch per epoch is more
NARROW_MODEL = ["model.filters=[8,16,32,32]", "model.dense_units=64", "model.augment=false"]


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children, in MB (Linux /proc)."""
    total = 0
    pids = [pid]
    while pids:
        current = pids.pop()
        try:
            with open(f"/proc/{current}/status") as status:
                total += next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
            with open(f"/proc/{current}/task/{current}/children") as children:
                pids += [int(child) for child in children.read().split()]
        except (FileNotFoundError, ProcessLookupError, StopIteration):
            continue
    return total / 1024


def train_watched(root: Path, run_dir: Path, cache: str, size: int, epochs: int, cap_mb: float, env: dict) -> dict:
    """Run `zoo train` on ``root``, sampling its RSS: per-epoch peaks, and whether it was
    stopped for going over ``cap_mb``."""
    command = zoo_train_command(root, size, epochs, run_dir, f"dataset.cache={cache}", *NARROW_MODEL)
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, **QUIET_TF, **env}
    )
    history = run_dir / "history.csv"
    peaks: list[float] = [0.0]
    over = False
    while process.poll() is None:
        rss = rss_mb(process.pid)
        done = max(0, len(history.read_text().splitlines()) - 1) if history.is_file() else 0
        while len(peaks) <= done:  # a new epoch began
            peaks.append(0.0)
        peaks[done] = max(peaks[done], rss)
        if rss > cap_mb:
            over = True
            process.kill()
            break
        time.sleep(0.1)
    _, stderr = process.communicate()
    if not over and process.returncode != 0:
        raise SystemExit(f"zoo train with dataset.cache={cache} failed:\n{stderr.decode()[-3000:]}")
    return {"peaks": [peak for peak in peaks if peak > 0][:epochs], "over": over}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cap-mb", type=float, default=1792)
    parser.add_argument("--factor", type=float, default=4.0, help="decoded data size over the cap")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument(
        "--malloc-arenas", type=int, help="MALLOC_ARENA_MAX for zoo (it sets 2 itself; glibc's default is 8 per core)"
    )
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    size = args.image_size
    image_mb = size * size * 3 / 2**20
    images = math.ceil(args.factor * args.cap_mb / image_mb)
    with tempfile.TemporaryDirectory(prefix="zoo-memory-") as tmp:
        root = write_jpeg_splits(Path(tmp) / "jpegs", images, 64, size, many=True)
        decoded_mb = (images + 128) * image_mb
        env = {"MALLOC_ARENA_MAX": str(args.malloc_arenas)} if args.malloc_arenas else {}
        runs = {
            "file (`dataset.cache=<prefix>`)": train_watched(
                root, Path(tmp) / "file-run", str(Path(tmp) / "cache"), size, args.epochs, args.cap_mb, env
            ),
            "memory (`dataset.cache=memory`), negative control": train_watched(
                root, Path(tmp) / "memory-run", "memory", size, args.epochs, args.cap_mb, env
            ),
        }
    print(
        f"Memory: {images + 128:,} JPEGs of {size}x{size}, {decoded_mb:,.0f} MB decoded "
        f"({decoded_mb / args.cap_mb:.1f}x the cap of {args.cap_mb:,.0f} MB), {args.epochs} epochs"
        f"{f', MALLOC_ARENA_MAX={args.malloc_arenas}' if args.malloc_arenas else ''}; {machine()}\n"
    )
    print("| cache | peak RSS per epoch, MB | under the cap | growth, last epoch over the second |")
    print("|---|---|---|---|")
    for name, run in runs.items():
        peaks = " / ".join(f"{peak:,.0f}" for peak in run["peaks"])
        if run["over"]:
            print(f"| {name} | {peaks} (stopped in epoch {len(run['peaks'])}) | no | - |")
            continue
        growth = run["peaks"][-1] - run["peaks"][1] if len(run["peaks"]) > 2 else 0.0
        flat = "yes" if growth <= GROWTH_TOLERANCE_MB else "no"
        print(f"| {name} | {peaks} | {'yes' if max(run['peaks']) <= args.cap_mb else 'no'} | {growth:+.0f} MB ({flat}) |")


if __name__ == "__main__":
    main()
