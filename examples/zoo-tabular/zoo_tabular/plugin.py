"""What zoo-tabular registers with keras-zoo.

`zoo list` imports this module, so it stays light: NumPy, scikit-learn and Keras are
imported inside the factories. The Keras classes live in `zoo_tabular.layers`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import zoo

# --------------------------------------------------------------------------------------
# Dataset: scikit-learn's wine cultivars, shipped with scikit-learn (offline)
# --------------------------------------------------------------------------------------


@dataclass
class WineConfig:
    validation_fraction: float = field(default=0.15, metadata={"help": "Share of wines held out for validation."})
    test_fraction: float = field(default=0.2, metadata={"help": "Share of wines held out for the final test."})

    def __post_init__(self) -> None:
        if not (0 < self.validation_fraction < 1 and 0 < self.test_fraction < 1):
            raise ValueError("validation_fraction and test_fraction must be between 0 and 1")
        if self.validation_fraction + self.test_fraction >= 0.8:
            raise ValueError("validation_fraction + test_fraction must leave at least 20% for training")


FEATURES = 13
CULTIVARS = ("cultivar_0", "cultivar_1", "cultivar_2")


def describe_wine(config: WineConfig) -> zoo.DataSpec:
    return zoo.DataSpec(task=zoo.CLASSIFICATION, input_shape=(FEATURES,), num_classes=3, class_names=CULTIVARS)


def _split(config: WineConfig, seed: int):
    """Stratified train/validation/test arrays of the raw measurements, with each wine's row
    number in scikit-learn's table (its name under every seed)."""
    import numpy as np
    from sklearn.datasets import load_wine
    from sklearn.model_selection import train_test_split

    x, y = load_wine(return_X_y=True)
    rows = np.arange(len(y))
    rest, test = train_test_split(rows, test_size=config.test_fraction, stratify=y, random_state=seed)
    share = config.validation_fraction / (1 - config.test_fraction)
    train, validation = train_test_split(rest, test_size=share, stratify=y[rest], random_state=seed)
    return {name: (x[part], y[part].astype("int32"), part) for name, part in (("train", train), ("validation", validation), ("test", test))}


def _standardiser(x_train):
    # Statistics of the training split only: validation and test stay unseen.
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)
    return lambda x: ((x - mean) / std).astype("float32")


def load_wine(config: WineConfig, seed: int) -> zoo.Splits:
    splits = _split(config, seed)
    scale = _standardiser(splits["train"][0])
    return zoo.Splits(
        **{name: (scale(x), y) for name, (x, y, _) in splits.items()},
        report={name: len(y) for name, (_, y, _) in splits.items()},
        ids={name: rows.tolist() for name, (_, _, rows) in splits.items()},  # standardised values differ by seed; rows do not
    )


def prepare_wine(config: WineConfig, seed: int, x):
    """`zoo predict RUN_DIR wines.csv`: raw measurements, standardised as in training."""
    return _standardiser(_split(config, seed)["train"][0])(x)


# --------------------------------------------------------------------------------------
# Model: a residual MLP (custom Keras layer, registered under this package's name)
# --------------------------------------------------------------------------------------


@dataclass
class ResidualMLPConfig:
    width: int = field(default=64, metadata={"help": "Units of every residual block."})
    blocks: int = field(default=2, metadata={"help": "Residual blocks after the input projection."})
    dropout: float = field(default=0.1, metadata={"help": "Dropout inside each block (0 disables)."})

    def __post_init__(self) -> None:
        if self.width < 1 or self.blocks < 0:
            raise ValueError(f"width must be at least 1 and blocks at least 0, got {self.width} and {self.blocks}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


def build_residual_mlp(config: ResidualMLPConfig, spec: zoo.DataSpec):
    import keras

    from zoo_tabular.layers import ResidualDense

    inputs = keras.Input(spec.input_shape)
    x = keras.layers.Dense(config.width, name="projection")(keras.layers.Flatten()(inputs))
    for index in range(config.blocks):
        x = ResidualDense(config.width, dropout=config.dropout, name=f"block{index}")(x)
    x = keras.layers.LayerNormalization()(x)
    if spec.binary:
        outputs = keras.layers.Dense(1, activation="sigmoid")(x)
    else:
        outputs = keras.layers.Dense(spec.num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="residual_mlp")


# --------------------------------------------------------------------------------------
# Metric: balanced accuracy
# --------------------------------------------------------------------------------------


@dataclass
class BalancedAccuracyConfig:
    threshold: float = field(default=0.5, metadata={"help": "Binary data: probability from which class 1 is predicted."})


def build_balanced_accuracy(config: BalancedAccuracyConfig, spec: zoo.DataSpec):
    from zoo_tabular.layers import BalancedAccuracy

    return BalancedAccuracy(spec.num_classes, threshold=config.threshold, name="balanced_accuracy")


def balanced_accuracy_reference(y_true, y_pred, spec: zoo.DataSpec, config: BalancedAccuracyConfig) -> float:
    import numpy as np
    from sklearn.metrics import balanced_accuracy_score

    y_pred = np.asarray(y_pred)
    predicted = (y_pred.reshape(-1) >= config.threshold).astype(int) if spec.binary else y_pred.argmax(axis=-1)
    return float(balanced_accuracy_score(np.reshape(y_true, -1), predicted))


# --------------------------------------------------------------------------------------
# Hooks
# --------------------------------------------------------------------------------------


@zoo.hookimpl
def register_datasets():
    return [
        zoo.DatasetPlugin(
            name="wine",
            summary="scikit-learn's 178 wines, 13 measurements standardised with training statistics, 3 cultivars.",
            config=WineConfig,
            describe=describe_wine,
            factory=load_wine,
            prepare=prepare_wine,
        )
    ]


@zoo.hookimpl
def register_models():
    return [
        zoo.ModelPlugin(
            name="residual_mlp",
            summary="A dense network of pre-norm residual blocks, for tables of numbers.",
            config=ResidualMLPConfig,
            factory=build_residual_mlp,
            objective=zoo.CLASSIFICATION,
            input_rank=1,
        )
    ]


@zoo.hookimpl
def register_metrics():
    return [
        zoo.MetricPlugin(
            name="balanced_accuracy",
            summary="Mean of the per-class recalls: accuracy that a majority class cannot inflate.",
            config=BalancedAccuracyConfig,
            factory=build_balanced_accuracy,
            objectives=(zoo.CLASSIFICATION,),
            reference=balanced_accuracy_reference,
            greater_is_better=True,
        )
    ]


@zoo.hookimpl
def register_config_paths():
    return ["pkg://zoo_tabular.conf"]  # conf/experiment/*.yaml: zoo train +experiment=<name>
