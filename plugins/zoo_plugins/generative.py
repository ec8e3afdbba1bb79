"""Generative models seed 000 names beside its autoencoders: a VAE and a DCGAN-style GAN.

Both learn from images with values in [0, 1] (labels unused) and can draw new images
(``zoo generate RUN_DIR n=64``). The Keras classes live in ``generative_models`` and are
imported only by the factories.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import zoo
from zoo_plugins.autoencoders import needs_unit_range


@dataclass
class VAEConfig:
    latent_dim: int = field(default=16, metadata={"help": "Size of the latent code z."})
    filters: int = field(default=32, metadata={"help": "Filters of the first convolution (doubled in the second)."})
    hidden_units: int = field(default=128, metadata={"help": "Dense units between the convolutions and the code."})
    beta: float = field(default=1.0, metadata={"help": "Weight of the KL term (1 is the plain VAE; below 1 sharper, less regular)."})
    reconstruction_loss: str = field(
        default="binary_crossentropy",
        metadata={"help": "Per-pixel reconstruction term, summed per image: binary_crossentropy or mse."},
    )

    def __post_init__(self) -> None:
        if min(self.latent_dim, self.filters, self.hidden_units) < 1:
            raise ValueError("latent_dim, filters and hidden_units must be positive")
        if self.beta < 0:
            raise ValueError(f"beta must not be negative, got {self.beta}")
        if self.reconstruction_loss not in ("binary_crossentropy", "mse"):
            raise ValueError(f"reconstruction_loss={self.reconstruction_loss!r}; choose binary_crossentropy or mse")


def build_vae(config: VAEConfig, spec: zoo.DataSpec):
    from zoo_plugins.generative_models import VariationalAutoencoder

    return VariationalAutoencoder(
        image_shape=spec.input_shape,
        latent_dim=config.latent_dim,
        filters=config.filters,
        hidden_units=config.hidden_units,
        beta=config.beta,
        reconstruction_loss=config.reconstruction_loss,
        name="vae",
    )


@dataclass
class GANConfig:
    latent_dim: int = field(default=64, metadata={"help": "Size of the generator's noise vector."})
    filters: int = field(default=64, metadata={"help": "Base filters of generator and discriminator convolutions."})
    label_smoothing: float = field(default=0.1, metadata={"help": "One-sided: real images are labelled 1 - this."})
    generator_learning_rate: Optional[float] = field(
        default=None, metadata={"help": "Generator's learning rate (null: trainer.learning_rate, as the discriminator)."}
    )
    adam_beta_1: Optional[float] = field(
        default=0.5, metadata={"help": "beta_1 of Adam-like optimizers for both networks (DCGAN's 0.5; null: the optimizer's)."}
    )

    def __post_init__(self) -> None:
        if min(self.latent_dim, self.filters) < 1:
            raise ValueError("latent_dim and filters must be positive")
        if not 0.0 <= self.label_smoothing < 0.5:
            raise ValueError(f"label_smoothing must be in [0, 0.5), got {self.label_smoothing}")
        if self.adam_beta_1 is not None and not 0.0 <= self.adam_beta_1 < 1.0:  # the decay of a moving average
            raise ValueError(f"adam_beta_1 must be in [0, 1) (or null), got {self.adam_beta_1}")
        if self.generator_learning_rate is not None and not 0.0 < self.generator_learning_rate < float("inf"):
            raise ValueError(f"generator_learning_rate must be a positive number (or null), got {self.generator_learning_rate}")


def build_gan(config: GANConfig, spec: zoo.DataSpec):
    from zoo_plugins.generative_models import GenerativeAdversarialNetwork

    return GenerativeAdversarialNetwork(
        image_shape=spec.input_shape,
        latent_dim=config.latent_dim,
        filters=config.filters,
        label_smoothing=config.label_smoothing,
        generator_learning_rate=config.generator_learning_rate,
        adam_beta_1=config.adam_beta_1,
        name="gan",
    )


def sample_images(model, config, spec: zoo.DataSpec, seed: int, n: int = 64):
    """``n`` new images from the model's prior, reproducible from ``seed``."""
    import keras
    import numpy as np

    return np.asarray(model.sample(n, seed=keras.random.SeedGenerator(seed)), dtype="float32")


@zoo.hookimpl
def register_models():
    return [
        zoo.ModelPlugin(
            name="vae",
            summary="Convolutional variational autoencoder: reparameterised code, reconstruction + KL loss, samples images.",
            config=VAEConfig,
            factory=build_vae,
            objective=zoo.RECONSTRUCTION,
            input_rank=3,
            accepts=needs_unit_range,
            generate=sample_images,
        ),
        zoo.ModelPlugin(
            name="gan",
            summary="DCGAN-style generator and discriminator, two optimizers, samples images.",
            config=GANConfig,
            factory=build_gan,
            objective=zoo.GENERATION,
            input_rank=3,
            accepts=needs_unit_range,
            generate=sample_images,
        ),
    ]
