"""Classifiers from the seed documents."""

from __future__ import annotations

from dataclasses import dataclass, field

import zoo


def classification_head(spec: zoo.DataSpec):
    """The output layer for ``spec``: one sigmoid unit for two classes, else a softmax."""
    import keras

    if spec.binary:
        return keras.layers.Dense(1, activation="sigmoid", name="probability")
    return keras.layers.Dense(spec.num_classes, activation="softmax", name="probabilities")


def keras_activation(name: str, model: str):
    """The Keras activation ``model.activation`` names, or one line listing Keras' own (a
    name Keras does not know had failed as "keras failed: ValueError: Could not interpret
    activation function identifier"). Keras' names differ between its versions, so they are
    asked of the Keras installed, once it is loaded."""
    import inspect

    import keras

    def takes_one_input(function) -> bool:  # threshold, say, needs two more arguments than a layer gives
        required = [p for p in inspect.signature(function).parameters.values() if p.default is p.empty]
        return len(required) == 1

    try:
        return keras.activations.get(name)
    except ValueError:
        known = sorted(
            n for n in dir(keras.activations)
            if not n.startswith("_") and n not in ("get", "serialize", "deserialize") and takes_one_input(getattr(keras.activations, n))
        )  # fmt: skip
        raise zoo.ZooError(f"model.activation={name!r} is not a Keras activation; choose one of: {', '.join(known)} (model {model!r})") from None


@dataclass
class CNNClassifierConfig:
    # Seed 002 uses 32 filters, no padding and no dropout on 28x28 MNIST; on small images
    # (8x8 digits) 64 filters, "same" padding and dropout 0.3 measured clearly better.
    filters: int = field(default=64, metadata={"help": "Filters of the convolution layer."})
    kernel_size: int = field(default=3, metadata={"help": "Side of the square convolution kernel."})
    padding: str = field(default="same", metadata={"help": "Convolution padding: same (keep the size) or valid."})
    pool_size: int = field(default=2, metadata={"help": "Side of the max-pooling window."})
    dense_units: int = field(default=128, metadata={"help": "Units of the hidden dense layer."})
    dropout: float = field(default=0.3, metadata={"help": "Dropout rate before the output layer (0 disables)."})

    def __post_init__(self) -> None:
        if self.padding not in ("same", "valid"):
            raise ValueError(f"padding={self.padding!r} is not supported; choose same or valid")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        for key in ("filters", "kernel_size", "pool_size", "dense_units"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be at least 1, got {getattr(self, key)}")


def build_cnn_classifier(config: CNNClassifierConfig, spec: zoo.DataSpec):
    """Seed 002's digit CNN: Conv2D-MaxPool-Flatten-Dense-Dense, sized from the data."""
    import keras
    from keras import layers

    height, width, _ = spec.input_shape
    shrink = config.kernel_size - 1 if config.padding == "valid" else 0
    if min(height, width) - shrink < config.pool_size:
        raise zoo.ZooError(
            f"model.kernel_size={config.kernel_size} and model.pool_size={config.pool_size} do not fit "
            f"{height}x{width} inputs; use smaller values"
        )
    inputs = keras.Input(shape=spec.input_shape, name="image")
    x = layers.Conv2D(
        config.filters, config.kernel_size, padding=config.padding, activation="relu", name="conv"
    )(inputs)
    x = layers.MaxPooling2D(config.pool_size, name="pool")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(config.dense_units, activation="relu", name="hidden")(x)
    if config.dropout > 0:
        x = layers.Dropout(config.dropout, name="dropout")(x)
    outputs = classification_head(spec)(x)
    return keras.Model(inputs, outputs, name="cnn_classifier")


@dataclass
class MLPClassifierConfig:
    hidden_units: list[int] = field(
        default_factory=lambda: [128, 64], metadata={"help": "Units of each hidden dense layer, input to output."}
    )
    activation: str = field(default="relu", metadata={"help": "Activation of the hidden layers (a Keras name)."})
    dropout: float = field(default=0.0, metadata={"help": "Dropout rate after each hidden layer (0 disables)."})
    l1: float = field(default=0.0, metadata={"help": "L1 weight penalty of the hidden layers."})
    l2: float = field(default=0.0, metadata={"help": "L2 weight penalty of the hidden layers."})
    batch_norm: bool = field(default=False, metadata={"help": "Batch normalisation before each hidden activation."})

    def __post_init__(self) -> None:
        if not self.hidden_units or min(self.hidden_units) < 1:
            raise ValueError(f"hidden_units must be a non-empty list of positive sizes, got {self.hidden_units}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.l1 < 0 or self.l2 < 0:
            raise ValueError(f"l1 and l2 must not be negative, got {self.l1} and {self.l2}")


def build_mlp_classifier(config: MLPClassifierConfig, spec: zoo.DataSpec):
    """The dense networks of seeds 001, 002 and 004: Flatten, then Dense layers, then the head."""
    import keras
    from keras import layers

    regularizer = keras.regularizers.L1L2(l1=config.l1, l2=config.l2) if (config.l1 or config.l2) else None
    keras_activation(config.activation, "mlp_classifier")
    inputs = keras.Input(shape=spec.input_shape, name="features")
    x = layers.Flatten(name="flatten")(inputs) if len(spec.input_shape) > 1 else inputs
    for i, units in enumerate(config.hidden_units, start=1):
        if config.batch_norm:  # normalise pre-activations: the dense layer needs no bias then
            x = layers.Dense(units, use_bias=False, kernel_regularizer=regularizer, name=f"dense_{i}")(x)
            x = layers.BatchNormalization(name=f"batch_norm_{i}")(x)
            x = layers.Activation(config.activation, name=f"activation_{i}")(x)
        else:
            x = layers.Dense(units, activation=config.activation, kernel_regularizer=regularizer, name=f"dense_{i}")(x)
        if config.dropout > 0:
            x = layers.Dropout(config.dropout, name=f"dropout_{i}")(x)
    outputs = classification_head(spec)(x)
    return keras.Model(inputs, outputs, name="mlp_classifier")


@zoo.hookimpl
def register_models():
    return [
        zoo.ModelPlugin(
            name="cnn_classifier",
            summary="Small CNN image classifier (seed 002): Conv2D-MaxPool-Dense-softmax.",
            config=CNNClassifierConfig,
            factory=build_cnn_classifier,
            input_rank=3,
        ),
        zoo.ModelPlugin(
            name="mlp_classifier",
            summary="Dense classifier (seeds 001/002/004): hidden sizes, dropout, L1/L2, batch norm.",
            config=MLPClassifierConfig,
            factory=build_mlp_classifier,
        ),
    ]
