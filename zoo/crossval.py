"""k-fold cross-validation (``cv.folds=K``): one run that trains K times.

The training data (the dataset's train and validation splits together) is cut into K
disjoint folds, stratified by class for classifiers, shuffled with the run's seed. Fold k's
run (``RUN_DIR/folds/k``, its config ``cv.fold=k``) is an ordinary run: it trains on the
other folds, validates and is scored on fold k, checkpoints and resumes as any run does.
The parent run trains the folds one after the other, skipping those already finished, and
writes each fold's metrics and every metric's mean and standard deviation over the folds to
its ``metrics.json``. The test split is not used.
"""

from __future__ import annotations

import logging
import statistics
from pathlib import Path
from typing import Any, Optional, Sequence

from zoo import artifacts
from zoo.errors import ZooError

log = logging.getLogger(__name__)

FOLDS = "folds"  # the folder of the folds' runs, and the key of their metrics in metrics.json
ASSIGNMENT = "folds.json"


def refuse_parent(run_dir: Path, used_as: str) -> None:
    """A cross-validated run has a model per fold and none of its own: say which to name."""
    record = Path(run_dir) / ASSIGNMENT
    if record.is_file() and not (Path(run_dir) / artifacts.MODEL).is_file():
        raise ZooError(
            f"{used_as}{run_dir} is a cross-validation run, with one model per fold and none of its own; "
            f"name a fold's run: {Path(run_dir) / FOLDS}/1 (to {Path(run_dir) / FOLDS}/K)"
        )


def pooled(splits, dataset: str):
    """The train and validation splits as one pair of arrays."""
    import numpy as np

    parts = [split for split in (splits.train, splits.validation) if split is not None]
    if not all(isinstance(split, (tuple, list)) and len(split) == 2 for split in parts):
        raise ZooError(
            f"cv.folds needs a dataset whose splits are arrays, and dataset {dataset!r} streams its examples; "
            "hold out a validation split instead (cv.folds=0)"
        )
    return tuple(np.concatenate([np.asarray(split[i]) for split in parts]) for i in (0, 1))


def fold_indices(labels, folds: int, seed: int, stratified: bool) -> list[Any]:
    """The held-out indices of each fold: disjoint, together every index once."""
    import numpy as np
    from sklearn.model_selection import KFold, StratifiedKFold

    count = len(labels)
    if count < folds:
        raise ZooError(f"cv.folds={folds} needs at least {folds} training examples; the dataset has {count}")
    if stratified:
        classes = (labels if labels.ndim == 1 else labels.argmax(axis=-1)).astype(int).ravel()
        present = np.bincount(classes)
        smallest = int(present[present > 0].min())
        if smallest >= folds:
            splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
            return [held for _, held in splitter.split(np.zeros(count), classes)]
        log.warning("a class has only %d examples, fewer than cv.folds=%d: folds are not stratified", smallest, folds)
    splitter = KFold(n_splits=folds, shuffle=True, random_state=seed)
    return [held for _, held in splitter.split(np.zeros(count))]


def fold_splits(splits, plan):
    """Fold ``plan.cv.fold``'s data: trained on the other folds, validated and scored on it."""
    import numpy as np

    from zoo.hookspecs import CLASSIFICATION, Splits

    x, y = pooled(splits, plan.dataset.name)
    stratified = plan.model.item.objective == CLASSIFICATION
    held = fold_indices(y, plan.cv.folds, plan.seed, stratified)[plan.cv.fold - 1]
    kept = np.setdiff1d(np.arange(len(y)), held)
    report = {**dict(splits.report), "fold": plan.cv.fold, "folds": plan.cv.folds, "train_examples": int(len(kept)),
              "held_out_examples": int(len(held))}  # fmt: skip
    return Splits(train=(x[kept], y[kept]), validation=(x[held], y[held]), test=(x[held], y[held]), report=report)


def cross_validate(cfg, plan, run_dir: Path, train_fold, reporter=None) -> dict[str, Any]:
    """Train every fold (``train_fold(cfg, fold_dir)``) and return the parent's metrics:
    the mean of every metric over the folds, ``<metric>_std`` and the folds' own."""
    from omegaconf import OmegaConf, open_dict

    from zoo.config import literal

    folds = plan.cv.folds
    scores: list[dict[str, float]] = []
    for fold in range(1, folds + 1):
        fold_cfg = OmegaConf.create(literal(OmegaConf.to_container(cfg, resolve=True)))
        with open_dict(fold_cfg):
            fold_cfg.cv.fold = fold
        print(f"cross-validation: fold {fold} of {folds} ({run_dir / FOLDS / str(fold)})", flush=True)
        metrics = train_fold(fold_cfg, run_dir / FOLDS / str(fold))
        if not metrics:
            return {}  # a worker other than the chief
        scores.append(metrics)
        if reporter is not None and reporter.report_fold(fold, [run_dir / FOLDS / str(k) for k in range(1, fold + 1)], scores):
            break  # the search's pruner stopped this trial
    return summarise(scores)


def summarise(scores: Sequence[dict[str, float]]) -> dict[str, Any]:
    """Each metric's mean and population standard deviation over the folds (as NumPy's and
    scikit-learn's cross-validation report them), then the folds' own metrics."""
    summary: dict[str, Any] = {}
    for name in scores[0]:
        values = [fold[name] for fold in scores if isinstance(fold.get(name), (int, float))]
        if len(values) == len(scores):
            summary[name] = statistics.fmean(values)
            summary[f"{name}_std"] = statistics.pstdev(values)
    summary[FOLDS] = {str(i): dict(fold) for i, fold in enumerate(scores, start=1)}
    return summary


def numeric(metrics: dict[str, Any]) -> dict[str, float]:
    """The metrics that are numbers (a cross-validated run's also holds its folds')."""
    from zoo.artifacts import is_number

    return {k: v for k, v in metrics.items() if is_number(v)}


def write_assignment(run_dir: Path, splits, plan) -> Optional[dict]:
    """``folds.json``: how many examples each fold holds out, and which (indices into the
    train split followed by the validation split)."""
    from zoo.hookspecs import CLASSIFICATION

    _, y = pooled(splits, plan.dataset.name)
    held = fold_indices(y, plan.cv.folds, plan.seed, plan.model.item.objective == CLASSIFICATION)
    record = {"folds": plan.cv.folds, "examples": int(len(y)), "seed": plan.seed,
              "held_out": [sorted(int(i) for i in fold) for fold in held]}  # fmt: skip
    artifacts.write_json(run_dir / ASSIGNMENT, record)
    return record
