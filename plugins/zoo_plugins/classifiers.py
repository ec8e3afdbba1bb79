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


@dataclass
class CNNClassifierConfig:
    filters: int = field(default=32, metadata={"help": "Filters of the convolution layer."})
    kernel_size: int = field(default=3, metadata={"help": "Side of the square convolution kernel."})
    pool_size: int = field(default=2, metadata={"help": "Side of the max-pooling window."})
    dense_units: int = field(default=128, metadata={"help": "Units of the hidden dense layer."})
    dropout: float = field(default=0.0, metadata={"help": "Dropout rate before the output layer (0 disables)."})


def build_cnn_classifier(config: CNNClassifierConfig, spec: zoo.DataSpec):
    """Seed 002's digit CNN: Conv2D-MaxPool-Flatten-Dense-Dense, sized from the data."""
    import keras
    from keras import layers

    height, width, _ = spec.input_shape
    if min(height, width) < config.kernel_size + config.pool_size - 1:
        raise zoo.ZooError(
            f"model.kernel_size={config.kernel_size} and model.pool_size={config.pool_size} do not fit "
            f"{height}x{width} inputs; use smaller values"
        )
    inputs = keras.Input(shape=spec.input_shape, name="image")
    x = layers.Conv2D(config.filters, config.kernel_size, activation="relu", name="conv")(inputs)
    x = layers.MaxPooling2D(config.pool_size, name="pool")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(config.dense_units, activation="relu", name="hidden")(x)
    if config.dropout > 0:
        x = layers.Dropout(config.dropout, name="dropout")(x)
    outputs = classification_head(spec)(x)
    return keras.Model(inputs, outputs, name="cnn_classifier")


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
    ]
