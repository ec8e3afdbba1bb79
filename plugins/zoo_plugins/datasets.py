"""In-memory datasets shipped with scikit-learn, usable offline."""

from __future__ import annotations

from dataclasses import dataclass, field

import zoo


@dataclass
class DigitsConfig:
    validation_fraction: float = field(default=0.1, metadata={"help": "Share of examples held out for validation."})
    test_fraction: float = field(default=0.2, metadata={"help": "Share of examples held out for the final test."})

    def __post_init__(self) -> None:
        check_fractions(self.validation_fraction, self.test_fraction)


def describe_digits(config: DigitsConfig) -> zoo.DataSpec:
    return zoo.DataSpec(
        task=zoo.CLASSIFICATION,
        input_shape=(8, 8, 1),
        num_classes=10,
        class_names=tuple(str(d) for d in range(10)),
        value_range=(0.0, 1.0),
    )


def load_digits(config: DigitsConfig, seed: int) -> zoo.Splits:
    import numpy as np
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    # Pixel intensities are 0..16; scale to [0, 1] and add the channel axis.
    x = (digits.images / 16.0).astype(np.float32)[..., np.newaxis]
    y = digits.target.astype(np.int32)
    return stratified_splits(x, y, config.validation_fraction, config.test_fraction, seed, ids=range(len(y)))


def prepare_digits(config: DigitsConfig, seed: int, images):
    """Photos and drawings of digits are mostly dark ink on light paper; the dataset's
    digits are light ink (high values) on a dark background: invert light-background images."""
    import numpy as np

    images = np.asarray(images, dtype=np.float32)
    border = np.concatenate([images[:, 0], images[:, -1], images[:, :, 0], images[:, :, -1]], axis=1)
    light = border.reshape(len(images), -1).mean(axis=1) > 0.5
    images[light] = 1.0 - images[light]
    return images


@dataclass
class BreastCancerConfig:
    validation_fraction: float = field(default=0.15, metadata={"help": "Share of examples held out for validation."})
    test_fraction: float = field(default=0.2, metadata={"help": "Share of examples held out for the final test."})
    standardize: bool = field(
        default=True, metadata={"help": "Scale each feature to zero mean and unit variance (training-split statistics)."}
    )

    def __post_init__(self) -> None:
        check_fractions(self.validation_fraction, self.test_fraction)


# scikit-learn's feature names in its column order, written out so describe imports nothing.
_MEASURES = ("radius", "texture", "perimeter", "area", "smoothness", "compactness", "concavity", "concave points",
             "symmetry", "fractal dimension")  # fmt: skip
BREAST_CANCER_FEATURES = (
    *(f"mean {m}" for m in _MEASURES), *(f"{m} error" for m in _MEASURES), *(f"worst {m}" for m in _MEASURES)
)


def describe_breast_cancer(config: BreastCancerConfig) -> zoo.DataSpec:
    # Label 1 is the condition to detect, so precision and recall are about malignancy.
    return zoo.DataSpec(
        task=zoo.CLASSIFICATION, input_shape=(30,), num_classes=2, class_names=("benign", "malignant"),
        feature_names=BREAST_CANCER_FEATURES,
    )  # fmt: skip


def load_breast_cancer(config: BreastCancerConfig, seed: int) -> zoo.Splits:
    import numpy as np
    from sklearn.datasets import load_breast_cancer as sklearn_breast_cancer

    data = sklearn_breast_cancer()
    x = data.data.astype(np.float32)
    y = (data.target == 0).astype(np.int32)  # scikit-learn codes malignant as 0
    splits = stratified_splits(x, y, config.validation_fraction, config.test_fraction, seed, ids=range(len(y)))
    if config.standardize:
        # Statistics of the training split only: nothing of validation or test leaks in.
        mean = splits.train[0].mean(axis=0)
        std = splits.train[0].std(axis=0) + 1e-7
        splits = zoo.Splits(*(((x - mean) / std, y) for x, y in (splits.train, splits.validation, splits.test)), ids=splits.ids)
    return splits


def prepare_breast_cancer(config: BreastCancerConfig, seed: int, rows):
    """Raw feature rows (as in scikit-learn's table), standardised as the training split was."""
    if not config.standardize:
        return rows
    train_x = load_breast_cancer(BreastCancerConfig(config.validation_fraction, config.test_fraction, False), seed).train[0]
    return (rows - train_x.mean(axis=0)) / (train_x.std(axis=0) + 1e-7)


def check_fractions(validation_fraction: float, test_fraction: float) -> None:
    for name, value in (("validation_fraction", validation_fraction), ("test_fraction", test_fraction)):
        if not 0.0 < value < 1.0:
            raise ValueError(f"{name} must be between 0 and 1, got {value}")
    if validation_fraction + test_fraction >= 1.0:
        raise ValueError(
            f"validation_fraction + test_fraction must be below 1, got "
            f"{validation_fraction} + {test_fraction}"
        )


def stratified_splits(x, y, validation_fraction: float, test_fraction: float, seed: int, ids=None) -> zoo.Splits:
    """Split arrays into train/validation/test, stratified by label, reproducibly from
    ``seed``; ``ids`` (the examples' names in a fixed source) are split alongside."""
    import math

    import numpy as np
    from sklearn.model_selection import train_test_split

    # scikit-learn's sizes, checked first: its refusal named neither key nor fix ("sklearn failed:
    # The test_size = 1 should be greater or equal to the number of classes = 10").
    examples, classes = len(y), len(np.unique(y))
    test = math.ceil(test_fraction * examples)
    validation = math.ceil(validation_fraction / (1.0 - test_fraction) * (examples - test))
    for split, count, key in (("test", test, "test_fraction"), ("validation", validation, "validation_fraction"),
                              ("training", examples - test - validation, None)):  # fmt: skip
        if count < classes:
            fix = (
                f"raise dataset.{key} to {math.ceil(1000 * classes / examples) / 1000} or more" if key
                else "lower dataset.validation_fraction or dataset.test_fraction"
            )
            raise zoo.ZooError(
                f"the {split} split would hold {count} of the {examples} examples, fewer than their {classes} classes "
                f"(each split holds every class); {fix}"
            )
    rows = np.arange(examples)  # split once, as positions: the arrays and the ids follow them
    rest, test_rows = train_test_split(rows, test_size=test_fraction, stratify=y, random_state=seed)
    train_rows, validation_rows = train_test_split(
        rest, test_size=validation_fraction / (1.0 - test_fraction), stratify=y[rest], random_state=seed
    )
    parts = {"train": train_rows, "validation": validation_rows, "test": test_rows}
    return zoo.Splits(
        **{split: (x[part], y[part]) for split, part in parts.items()},
        ids={split: [ids[i] for i in part] for split, part in parts.items()} if ids is not None else {},
    )


@zoo.hookimpl
def register_datasets():
    return [
        zoo.DatasetPlugin(
            name="digits",
            summary="scikit-learn's 1,797 8x8 handwritten digits, 10 classes (offline).",
            config=DigitsConfig,
            describe=describe_digits,
            factory=load_digits,
            prepare=prepare_digits,
        ),
        zoo.DatasetPlugin(
            name="breast_cancer",
            summary="scikit-learn's 569 breast tumours, 30 features, binary: malignant (1) or benign (offline).",
            config=BreastCancerConfig,
            describe=describe_breast_cancer,
            factory=load_breast_cancer,
            prepare=prepare_breast_cancer,
        ),
    ]
