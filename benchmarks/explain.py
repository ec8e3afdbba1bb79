"""Do the explanations point at the cat? `zoo explain`'s checks on a trained run.

    python benchmarks/explain.py                 # the cats_cnn preset, seed 0 (about 5 minutes here)
    python benchmarks/explain.py --tiny          # 2 epochs on small images: checks the script
    python benchmarks/explain.py --pictures docs # also draw the README's two pictures there
    python benchmarks/explain.py --run RUN --only gradcam --layer conv_3   # Grad-CAM on another layer

On `synthetic_cats`, which knows where it drew each head (`zoo_plugins.cats.head_masks`),
it measures for the test cats the model classifies correctly how much of each method's
heat map lies on the drawn head and ears (the mask's own share of the image is what a
method pointing anywhere would get), the integrated-gradients completeness error, and the
sanity check of Adebayo et al. (2018): the Spearman rank correlation between the
attributions of the trained model and of the same architecture with fresh random weights,
explaining the same class (a method that explains the model, not the image, gives a low
one); for the signed attributions and for the heat maps as drawn (absolute values, which
for gradient-times-input methods follow the image). Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

METHODS = ("gradcam", "integrated_gradients", "saliency", "occlusion")
BAR = 0.6  # Grad-CAM's mean share on the head


def spearman(a, b) -> float:
    import numpy as np

    ranks = [np.argsort(np.argsort(v.ravel(), kind="stable"), kind="stable").astype(float) for v in (a, b)]
    if ranks[0].std() == 0 or ranks[1].std() == 0:
        return 0.0
    return float(np.corrcoef(*ranks)[0, 1])


def gradcam_ceiling(run_dir: Path, masks, layer=None) -> tuple[int, float]:
    """The share the best possible Grad-CAM map gets at the model's last-convolution
    resolution: the mask itself, pooled to that grid and resized back bilinearly. A bar
    above it cannot be met by Grad-CAM on this model, however well it explains."""
    import numpy as np
    import tensorflow as tf

    from zoo.explain import last_convolution, output_in_graph
    from zoo.run import load_trained_model

    _, model = load_trained_model(run_dir)
    side = int(output_in_graph(last_convolution(model, layer)).shape[1])
    grid = tf.image.resize(masks.astype("float32")[..., None], (side, side), method="area")
    best = tf.image.resize(grid, masks.shape[1:3], method="bilinear").numpy()[..., 0]
    return side, float(np.mean([b[m].sum() / b.sum() for b, m in zip(best, masks)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tiny", action="store_true", help="2 epochs on 300 small images: checks the script")
    parser.add_argument("--pictures", type=Path, help="draw an explained cat and an explained breast-cancer row here")
    parser.add_argument("--run", type=Path, help="a finished cats_cnn run to use instead of training one")
    parser.add_argument("--layer", help="Grad-CAM's layer (default: the last convolution)")
    parser.add_argument("--only", nargs="+", choices=METHODS, default=METHODS, help="measure these methods only")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    import numpy as np
    from common import machine

    from zoo.config import compose
    from zoo.explain import explain, write_explanations
    from zoo.run import finished_run_plan, train
    from zoo_plugins.cats import head_masks

    tiny = ["trainer.epochs=2", "dataset.num_images=300", "dataset.image_size=48"] if args.tiny else []
    scratch = tempfile.TemporaryDirectory()
    run_dir = args.run or Path(scratch.name) / "cats"
    if args.run is None:
        train(compose(["+experiment=cats_cnn", f"seed={args.seed}", "trainer.progress=off", *tiny]), run_dir)
    plan = finished_run_plan(run_dir)
    splits = plan.dataset.item.factory(plan.dataset_config, plan.seed)
    masks, labels = head_masks(plan.dataset_config, plan.seed).test
    x = splits.test[0]
    cats = np.flatnonzero(labels == 1)
    found = explain(run_dir, x[cats], method="gradcam")
    correct = cats[found.predicted == 1]
    if len(correct) == 0 and args.tiny:  # an untrained model: the figures mean nothing anyway
        correct = cats
    if len(correct) == 0:
        raise SystemExit("the model classifies no test cat correctly: nothing to measure")
    chance = float(np.mean([masks[i].mean() for i in correct]))

    import keras

    rows, sanity = [], []
    keras.utils.set_random_seed(12345)
    random_model = plan.model.item.factory(plan.model_config, plan.spec)  # the same network, fresh weights
    errors = None
    for method in args.only:
        explained = explain(run_dir, x[correct], method=method, layer=args.layer if method == "gradcam" else None)
        shares = [float(h[m].sum() / h.sum()) if h.sum() > 0 else 0.0 for h, m in zip(explained.heat, masks[correct])]
        rows.append((method, f"{statistics.fmean(shares):.3f}", f"{min(shares):.3f}", f"{chance:.3f}"))
        if method == "integrated_gradients":
            errors = explained.completeness_error
        randomised = explain(
            run_dir, x[correct], method=method, target=explained.target, model=random_model, layer=args.layer if method == "gradcam" else None
        )
        signed = statistics.fmean(spearman(a.sum(-1), b.sum(-1)) for a, b in zip(explained.attributions, randomised.attributions))
        absolute = statistics.fmean(spearman(a, b) for a, b in zip(explained.heat, randomised.heat))
        sanity.append((method, f"{signed:.3f}", f"{absolute:.3f}"))

    print(f"Machine: {machine()}; cats_cnn seed {args.seed}{' (--tiny)' if args.tiny else ''}; "
          f"{len(correct)} of {len(cats)} test cats classified correctly")  # fmt: skip
    print("\nShare of each heat map on the drawn head and ears (correctly classified test cats)")
    print("| method | mean share | worst | the head's share of the image |\n|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    if "gradcam" in args.only:
        gradcam = float(rows[list(args.only).index("gradcam")][1])
        print(f"bar: Grad-CAM's mean share >= {BAR}: {'yes' if gradcam >= BAR else 'no'}")
        side, ceiling = gradcam_ceiling(run_dir, masks[correct], args.layer)
        print(f"a perfect map at Grad-CAM's {side}x{side} resolution (the head mask averaged over each cell, "
              f"upsampled as Grad-CAM's map is) would score {ceiling:.3f}")  # fmt: skip
    if errors is not None:
        print(f"\nIntegrated gradients (128 steps): completeness error mean {np.mean(errors):.4%}, worst {np.max(errors):.4%}")
    print("\nSanity check: rank correlation, trained against random weights, same class (below 0.5 is the bar)")
    print("| method | mean Spearman rho, signed attributions | of the heat maps (as drawn) |\n|---|---|---|")
    for row in sanity:
        print("| " + " | ".join(row) + " |")

    if args.pictures:
        args.pictures.mkdir(parents=True, exist_ok=True)
        best = correct[int(np.argmax([masks[i].mean() for i in correct]))]
        picture = explain(run_dir, x[best : best + 1], method="occlusion")  # the best localised here
        picture.names = ["explained_cat"]
        written = write_explanations(picture, args.pictures)
        cancer_dir = Path(scratch.name) / "breast_cancer"
        train(compose(["+experiment=breast_cancer_mlp", f"seed={args.seed}", "trainer.progress=off", *tiny[:1]]), cancer_dir)
        cancer_plan = finished_run_plan(cancer_dir)
        cancer_test = cancer_plan.dataset.item.factory(cancer_plan.dataset_config, cancer_plan.seed).test
        malignant = int(np.flatnonzero(cancer_test[1] == 1)[0])
        row = explain(cancer_dir, cancer_test[0][malignant : malignant + 1], method="integrated_gradients")
        row.names = ["explained_breast_cancer"]
        written += write_explanations(row, args.pictures)
        for path in written:  # the pictures stay; their one-row CSVs are not wanted here
            if path.suffix == ".csv":
                path.unlink()
        print("\n" + "\n".join(str(path) for path in written if path.suffix == ".png"))


if __name__ == "__main__":
    main()
