"""Discovery at scale: `zoo list` with 0, 100 and 1,000 extra plugin distributions installed.

    python benchmarks/discovery.py                       # 0, 100, 1000; 5 rounds
    python benchmarks/discovery.py --counts 0 10 --rounds 1

Each extra distribution is generated as an installed one (a `.dist-info` folder with
METADATA and a `zoo.plugins` entry point, beside its module) in a site folder put on
PYTHONPATH; each registers one model, with a config, as a third-party plugin would. The
sizes run interleaved, round by round. Goal (issue 6): `zoo list` takes at most 1 s with
1,000; the cost per distribution is the slope between the smallest and largest size.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import machine  # noqa: E402

GOAL_SECONDS = 1.0

MODULE = '''from dataclasses import dataclass

import zoo


@dataclass
class Config:
    units: int = 8


def build(config, spec):
    raise NotImplementedError


@zoo.hookimpl
def register_models():
    return [zoo.ModelPlugin("{name}", "A generated model for the discovery benchmark.", Config, build)]
'''


def make_site(root: Path, count: int) -> Path:
    """A site folder holding ``count`` installed plugin distributions."""
    site = root / f"site-{count}"
    site.mkdir()
    for i in range(count):
        package = f"zoo_bench_plugin_{i:04d}"
        (site / f"{package}.py").write_text(MODULE.format(name=f"bench_model_{i:04d}"))
        info = site / f"{package}-1.0.dist-info"
        info.mkdir()
        # Each states the zoo versions it supports, as a real plugin does (the zoo checks it).
        metadata = f"Metadata-Version: 2.1\nName: {package.replace('_', '-')}\nVersion: 1.0\nRequires-Dist: keras-zoo>=0.1\n"
        (info / "METADATA").write_text(metadata)
        (info / "entry_points.txt").write_text(f"[zoo.plugins]\n{package} = {package}\n")
    return site


def list_time(site: Path, expected: int) -> float:
    env = {**os.environ, "PYTHONPATH": str(site)}
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "zoo", "list", "model"], env=env, capture_output=True, text=True, check=True
    )
    elapsed = time.perf_counter() - started
    found = result.stdout.count("bench_model_")
    if found != expected:
        raise SystemExit(f"zoo list showed {found} generated models, expected {expected}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[0, 100, 1000])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="zoo-discovery-") as tmp:
        sites = {count: make_site(Path(tmp), count) for count in args.counts}
        for count, site in sites.items():  # once untimed: the first import compiles bytecode
            list_time(site, count)
        times: dict[int, list[float]] = {count: [] for count in args.counts}
        for _ in range(args.rounds):
            for count, site in sites.items():
                times[count].append(list_time(site, count))
    medians = {count: statistics.median(values) for count, values in times.items()}
    low, high = min(args.counts), max(args.counts)
    per_dist = (medians[high] - medians[low]) / (high - low) if high > low else 0.0
    print(
        f"`zoo list model`, median of {args.rounds} fresh processes; {machine()}\n"
    )
    print("| extra plugin distributions | median s | goal | met |")
    print("|---|---|---|---|")
    for count in args.counts:
        goal = f"<= {GOAL_SECONDS:g} s" if count >= 1000 else ""
        met = ("yes" if medians[count] <= GOAL_SECONDS else "no") if goal else ""
        print(f"| {count} | {medians[count]:.3f} | {goal} | {met} |")
    print(f"\ncost per distribution: {per_dist * 1000:.2f} ms (slope from {low} to {high})")


if __name__ == "__main__":
    main()
