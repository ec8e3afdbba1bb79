"""The autoencoders of seed 000: dense (section 4.2) and convolutional (section 5.2).

Both reconstruct their inputs through a small latent code, ending in a sigmoid, so they
learn from datasets whose values lie in [0, 1] (the convolutional one from images only);
labels are not used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import zoo


def needs_unit_range(config, spec: zoo.DataSpec) -> Optional[str]:
    """A sigmoid decoder reproduces values in [0, 1] only."""
    low, high = spec.value_range or (None, None)
    if low is None or low < 0.0 or high > 1.0:
        return (
            f"its sigmoid output reproduces values in [0, 1], but the dataset's values are "
            f"{'unbounded' if low is None else f'in [{low}, {high}]'}; use an image dataset scaled to [0, 1]"
        )
    return None


@dataclass
class AutoencoderConfig:
    latent_dim: int = field(default=32, metadata={"help": "Size of the code between encoder and decoder."})
    hidden_units: list[int] = field(
        default_factory=lambda: [256], metadata={"help": "Encoder hidden layers, mirrored by the decoder."}
    )
    activation: str = field(default="sigmoid", metadata={"help": "Hidden and code activation (the seed uses sigmoid)."})

    def __post_init__(self) -> None:
        if self.latent_dim < 1 or any(units < 1 for units in self.hidden_units):
            raise ValueError(f"latent_dim and hidden_units must be positive, got {self.latent_dim}, {self.hidden_units}")


def build_autoencoder(config: AutoencoderConfig, spec: zoo.DataSpec):
    """Seed 000 section 4.2: z = s(W1 x + b1), x' = sigmoid(W2 z + b2), with optional
    hidden layers on both sides."""
    import math

    import keras
    from keras import layers

    from zoo_plugins.classifiers import keras_activation

    keras_activation(config.activation, "autoencoder")

    inputs = keras.Input(shape=spec.input_shape, name="input")
    x = layers.Flatten(name="flatten")(inputs) if len(spec.input_shape) > 1 else inputs
    for i, units in enumerate(config.hidden_units, start=1):
        x = layers.Dense(units, activation=config.activation, name=f"encoder_{i}")(x)
    x = layers.Dense(config.latent_dim, activation=config.activation, name="code")(x)
    for i, units in enumerate(reversed(config.hidden_units), start=1):
        x = layers.Dense(units, activation=config.activation, name=f"decoder_{i}")(x)
    x = layers.Dense(math.prod(spec.input_shape), activation="sigmoid", name="reconstruction")(x)
    outputs = layers.Reshape(spec.input_shape, name="output")(x)
    return keras.Model(inputs, outputs, name="autoencoder")


@dataclass
class ConvAutoencoderConfig:
    filters: int = field(default=32, metadata={"help": "Filters of each convolution (the seed uses 32)."})
    latent_dim: int = field(default=16, metadata={"help": "Size of the dense code (the seed uses 16)."})

    def __post_init__(self) -> None:
        if self.filters < 1 or self.latent_dim < 1:
            raise ValueError(f"filters and latent_dim must be positive, got {self.filters}, {self.latent_dim}")


def build_conv_autoencoder(config: ConvAutoencoderConfig, spec: zoo.DataSpec):
    """Seed 000 section 5.2, with its shapes made to fit any input size.

    The seed pools 28x28 twice to 7x7 but decodes from an 8x8 grid with one stride-2
    transposed convolution, which gives 16x16: not its input. Here the decoder starts from
    the encoder's own pooled grid and undoes each pooling with a stride-2 transposed
    convolution, then crops the padding that "same" pooling added to odd sizes.
    """
    import math

    import keras
    from keras import layers

    height, width, channels = spec.input_shape
    inputs = keras.Input(shape=spec.input_shape, name="image")
    x = layers.Conv2D(config.filters, 3, activation="relu", padding="same", name="encoder_conv_1")(inputs)
    x = layers.MaxPooling2D(2, padding="same", name="encoder_pool_1")(x)
    x = layers.Conv2D(config.filters, 3, activation="relu", padding="same", name="encoder_conv_2")(x)
    x = layers.MaxPooling2D(2, padding="same", name="encoder_pool_2")(x)
    grid = (math.ceil(math.ceil(height / 2) / 2), math.ceil(math.ceil(width / 2) / 2))
    x = layers.Flatten(name="flatten")(x)
    code = layers.Dense(config.latent_dim, activation="relu", name="code")(x)
    x = layers.Dense(grid[0] * grid[1] * config.filters, activation="relu", name="decoder_dense")(code)
    x = layers.Reshape((*grid, config.filters), name="decoder_grid")(x)
    x = layers.Conv2DTranspose(config.filters, 3, strides=2, activation="relu", padding="same", name="decoder_up_1")(x)
    x = layers.Conv2DTranspose(config.filters, 3, strides=2, activation="relu", padding="same", name="decoder_up_2")(x)
    x = layers.Conv2D(channels, 3, activation="sigmoid", padding="same", name="reconstruction")(x)
    extra_h, extra_w = grid[0] * 4 - height, grid[1] * 4 - width
    if extra_h or extra_w:
        x = layers.Cropping2D(((0, extra_h), (0, extra_w)), name="crop")(x)
    return keras.Model(inputs, x, name="conv_autoencoder")


@zoo.hookimpl
def register_models():
    return [
        zoo.ModelPlugin(
            name="autoencoder",
            summary="Dense autoencoder (seed 000, 4.2): sigmoid encoder and decoder, configurable code size.",
            config=AutoencoderConfig,
            factory=build_autoencoder,
            objective=zoo.RECONSTRUCTION,
            accepts=needs_unit_range,
        ),
        zoo.ModelPlugin(
            name="conv_autoencoder",
            summary="Convolutional autoencoder (seed 000, 5.2), shapes fixed for any image size.",
            config=ConvAutoencoderConfig,
            factory=build_conv_autoencoder,
            objective=zoo.RECONSTRUCTION,
            input_rank=3,
            accepts=needs_unit_range,
        ),
    ]
