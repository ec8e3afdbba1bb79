"""Discovery at scale: `zoo list` with 0, 100 and 1,000 extra plugin distributions installed.

    python benchmarks/discovery.py                       # 0, 100, 1000; 5 rounds
    python benchmarks/discovery.py --counts 0 10 --rounds 1

Each extra distribution is generated as an installed one (a `.dist-info` folder with
METADATA and a `zoo.plugins` entry point, beside its module) in a site folder put on
PYTHONPATH; each registers one model, with a config, as a third-party plugin would. The
sizes run interleaved, round by round, each listed twice from a new cache folder: cold (the
first listing after the plugin set changed) and warm. Goal (issues 6 and 19): `zoo list`
takes at most 1 s with 1,000 (warm); the cost per distribution is the slope between the
smallest and largest size.
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


def list_time(site: Path, expected: int, cache: Path) -> float:
    """One fresh `zoo list model`; ``cache``: the discovery cache's folder (a missing one: cold)."""
    env = {**os.environ, "PYTHONPATH": str(site), "ZOO_CACHE_DIR": str(cache)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # installed packages have their bytecode
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
            list_time(site, count, Path(tmp) / "unused-cache")
        cold: dict[int, list[float]] = {count: [] for count in args.counts}
        warm: dict[int, list[float]] = {count: [] for count in args.counts}
        for number in range(args.rounds):
            for count, site in sites.items():
                cache = Path(tmp) / f"cache-{count}-{number}"  # new each round: the first listing is cold
                cold[count].append(list_time(site, count, cache))
                warm[count].append(list_time(site, count, cache))
    cold_median = {count: statistics.median(values) for count, values in cold.items()}
    warm_median = {count: statistics.median(values) for count, values in warm.items()}
    low, high = min(args.counts), max(args.counts)
    print(f"`zoo list model`, median of {args.rounds} fresh processes each; {machine()}")
    print("cold: the first listing after the plugin set changed (imports every plugin, writes the cache);")
    print("warm: every later one (the cache checked against what is installed, nothing imported)\n")
    print("| extra plugin distributions | cold s | warm s | goal (warm) | met |")
    print("|---|---|---|---|---|")
    for count in args.counts:
        goal = f"<= {GOAL_SECONDS:g} s" if count >= 1000 else ""
        met = ("yes" if warm_median[count] <= GOAL_SECONDS else "no") if goal else ""
        print(f"| {count} | {cold_median[count]:.3f} | {warm_median[count]:.3f} | {goal} | {met} |")
    if high > low:
        for label, medians in (("cold", cold_median), ("warm", warm_median)):
            per_dist = (medians[high] - medians[low]) / (high - low)
            print(f"\ncost per distribution, {label}: {per_dist * 1000:.2f} ms (slope from {low} to {high})", end="")
        print()


if __name__ == "__main__":
    main()
