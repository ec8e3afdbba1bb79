"""Smaller and better models: pruning, distillation and quantisation, measured over seeds.

    python benchmarks/compression.py                     # seeds 0-4, every part
    python benchmarks/compression.py --parts pruning --seeds 0 1
    python benchmarks/compression.py --tiny              # one epoch each: checks the script
    python benchmarks/compression.py --parts distillation --variants   # other students too

Per seed it trains the digits_cnn preset (the reference and the teacher), its pruned twin
(digits_cnn_pruned), and the digits_mlp_student preset with and without that teacher, then
exports TFLite files. Prints Markdown tables (the README's Quality section has them):

- pruning: test accuracy of each, its loss in points, and the gzipped .tflite sizes (bars:
  at most 1 point lost, at most 0.35x the size);
- distillation: the student's test accuracy with and without the teacher, the gain per
  seed, and whether the mean gain exceeds the seeds' spread (the gains' standard deviation);
- quantisation: size and agreement with the Keras model on the test split of the
  reference's float, dynamic, float16 and int8 TFLite exports (bar: agreement >= 0.98).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
from pathlib import Path

PARTS = ("pruning", "distillation", "quantization")
# Students tried beside the preset (--variants): overrides of digits_mlp_student.
STUDENT_VARIANTS = {
    "preset (32 units, alpha 0.1, T 4)": [],
    "16 units": ["model.hidden_units=[16]"],
    "8 units": ["model.hidden_units=[8]"],
    "alpha 0.5, T 2": ["trainer.distillation.alpha=0.5", "trainer.distillation.temperature=2"],
    "T 8": ["trainer.distillation.temperature=8"],
    "80 epochs": ["trainer.epochs=80"],
    "batch 128": ["trainer.batch_size=128"],
}


def table(header: tuple, rows: list[tuple]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows])


def spread(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--tiny", action="store_true", help="one epoch per run: checks the script, not the figures")
    parser.add_argument("--variants", action="store_true", help="distillation: every student in STUDENT_VARIANTS")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from common import machine

    from zoo.config import compose
    from zoo.export import export, read_report
    from zoo.run import train

    quick = ["trainer.epochs=1", "trainer.pruning.begin_step=0", "trainer.pruning.end_step=20", "trainer.pruning.frequency=5"]

    def run(preset: str, seed: int, run_dir: Path, *overrides: str) -> dict:
        chosen = [f"+experiment={preset}", f"seed={seed}", "trainer.progress=off", *overrides]
        if args.tiny:
            chosen += [o for o in quick if preset == "digits_cnn_pruned" or "pruning" not in o]
        return train(compose(chosen), run_dir)

    def tflite(run_dir: Path, quantize=None) -> dict:
        return read_report(run_dir, export(run_dir, "tflite", quantize=quantize, force=True))

    results: dict[str, list] = {part: [] for part in PARTS}
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as scratch:
            root = Path(scratch)
            reference = run("digits_cnn", seed, root / "reference")
            if "pruning" in args.parts:
                pruned = run("digits_cnn_pruned", seed, root / "pruned")
                results["pruning"].append(
                    (reference["accuracy"], pruned["accuracy"], tflite(root / "reference"), tflite(root / "pruned"))
                )
            if "distillation" in args.parts:
                found = {}
                for label, extra in list(STUDENT_VARIANTS.items())[: None if args.variants else 1]:
                    alone = run("digits_mlp_student", seed, root / "alone", "trainer.distillation.teacher=null", *extra)
                    taught = run("digits_mlp_student", seed, root / "taught", f"trainer.distillation.teacher={root / 'reference'}", *extra)
                    found[label] = (alone["accuracy"], taught["accuracy"])
                    for folder in ("alone", "taught"):
                        shutil.rmtree(root / folder)
                results["distillation"].append(found)
            if "quantization" in args.parts:
                results["quantization"].append({q: tflite(root / "reference", q) for q in (None, "dynamic", "float16", "int8")})

    print(f"Machine: {machine()}; seeds {', '.join(map(str, args.seeds))}{' (--tiny)' if args.tiny else ''}")
    if results["pruning"]:
        rows = results["pruning"]
        dense, sparse = [r[0] for r in rows], [r[1] for r in rows]
        lost = [100 * (d - s) for d, s in zip(dense, sparse)]
        ratio = [r[3]["gzip_bytes"] / r[2]["gzip_bytes"] for r in rows]
        print("\nPruning: digits_cnn against digits_cnn_pruned (80% zero kernel weights), test split")
        print(table(
            ("seed", "accuracy dense", "accuracy pruned", "points lost", "gzipped .tflite dense", "pruned", "ratio"),
            [(s, f"{d:.4f}", f"{p:.4f}", f"{l:+.2f}", r[2]["gzip_bytes"], r[3]["gzip_bytes"], f"{q:.3f}")
             for s, d, p, l, r, q in zip(args.seeds, dense, sparse, lost, rows, ratio)]
            + [("mean", f"{statistics.fmean(dense):.4f}", f"{statistics.fmean(sparse):.4f}",
                f"{statistics.fmean(lost):+.2f}", "", "", f"{statistics.fmean(ratio):.3f}")],
        ))  # fmt: skip
        print(f"bars: points lost <= 1: {'yes' if statistics.fmean(lost) <= 1 else 'no'}; "
              f"ratio <= 0.35: {'yes' if statistics.fmean(ratio) <= 0.35 else 'no'}")  # fmt: skip
    if results["distillation"]:
        preset = next(iter(STUDENT_VARIANTS))
        rows = [found[preset] for found in results["distillation"]]
        gains = [100 * (t - a) for a, t in rows]
        print("\nDistillation: digits_mlp_student alone and taught by that seed's digits_cnn run, test accuracy")
        print(table(
            ("seed", "alone", "with teacher", "gain (points)"),
            [(s, f"{a:.4f}", f"{t:.4f}", f"{g:+.2f}") for s, (a, t), g in zip(args.seeds, rows, gains)]
            + [("mean", f"{statistics.fmean(a for a, _ in rows):.4f}", f"{statistics.fmean(t for _, t in rows):.4f}",
                f"{statistics.fmean(gains):+.2f}")],
        ))  # fmt: skip
        print(f"mean gain {statistics.fmean(gains):+.2f} points, spread (std of the gains) {spread(gains):.2f}: "
              f"{'gains' if statistics.fmean(gains) > spread(gains) else 'no clear gain'}")  # fmt: skip
        if args.variants:
            print("\nEvery student tried, mean test accuracy over the seeds")
            lines = []
            for label in STUDENT_VARIANTS:
                pairs = [found[label] for found in results["distillation"]]
                gains = [100 * (t - a) for a, t in pairs]
                lines.append((label, f"{statistics.fmean(a for a, _ in pairs):.4f}", f"{statistics.fmean(t for _, t in pairs):.4f}",
                              f"{statistics.fmean(gains):+.2f}", f"{spread(gains):.2f}"))  # fmt: skip
            print(table(("student", "alone", "with teacher", "gain (points)", "spread"), lines))
    if results["quantization"]:
        rows = results["quantization"]
        print("\nQuantisation: digits_cnn exported to TFLite, agreement with the Keras model on the test split")
        lines = []
        for q in (None, "dynamic", "float16", "int8"):
            agreement = [r[q]["agreement"] for r in rows]
            size = statistics.fmean(r[q]["bytes"] for r in rows)
            lines.append((q or "none (float32)", f"{size:,.0f}", f"{size / statistics.fmean(r[None]['bytes'] for r in rows):.3f}",
                          f"{statistics.fmean(agreement):.4f}", f"{min(agreement):.4f}"))  # fmt: skip
        print(table(("--quantize", "bytes", "x float32", "agreement (mean)", "worst seed"), lines))


if __name__ == "__main__":
    main()
