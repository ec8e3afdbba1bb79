"""Random geometric augmentation in one resampling (imports Keras: load lazily).

Seed 004 augments with ``ImageDataGenerator``: a random rotation, shift, shear, zoom and
horizontal flip, composed into one affine transform per image and applied with SciPy,
image by image, in Python. Keras' layers for the same (``RandomRotation``,
``RandomTranslation``, ``RandomShear``, ``RandomZoom``, ``RandomFlip``) resample the whole
image once each: five interpolations (blurring it five times) and about four times the
work of one. ``RandomAffine`` composes the five into one matrix per image, as the seed
did, and resamples a batch in one call to ``keras.ops.image.affine_transform``.

Registered with Keras under the package ``zoo``: ``keras.saving.load_model`` reads a model
holding it once this module is imported.
"""

from __future__ import annotations

import math

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="zoo")
class RandomAffine(keras.layers.Layer):
    """A random affine transform of each image, in training only (identity otherwise).

    ``rotation``: largest angle in degrees; ``shift``: largest translation as a fraction of
    width and height; ``shear``: largest shear factor (as Keras' ``RandomShear``); ``zoom``:
    largest scaling in or out, as a fraction; ``flip``: mirror half of the images
    left-right. Pixels from outside the image repeat the nearest edge (the seed's
    ``fill_mode='nearest'``). Channels-last float images of any size.
    """

    def __init__(self, rotation=0.0, shift=0.0, shear=0.0, zoom=0.0, flip=False, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rotation, self.shift, self.shear, self.zoom, self.flip = rotation, shift, shear, zoom, flip
        self.seed = seed
        # Its state is one of the model's variables: checkpoints save it, so a resumed
        # run draws the augmentations an uninterrupted one would.
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=False):
        if not training:
            return images
        return ops.image.affine_transform(images, self.transforms(ops.shape(images)), fill_mode="nearest")

    def transforms(self, shape):
        """One row per image: the map from an output pixel to the input point it samples,
        ``[a0, a1, a2, b0, b1, b2, 0, 0]`` (``x_in = a0 x + a1 y + a2``, likewise ``y_in``)."""
        batch, height, width = shape[0], ops.cast(shape[1], "float32"), ops.cast(shape[2], "float32")

        def uniform(bound):
            return keras.random.uniform((batch,), -bound, bound, seed=self.seed_generator)

        angle = uniform(self.rotation * math.pi / 180.0)
        shear_x, shear_y = uniform(self.shear), uniform(self.shear)
        zoom_x, zoom_y = 1.0 + uniform(self.zoom), 1.0 + uniform(self.zoom)
        mirror = ops.where(uniform(1.0) < 0.0, -1.0, 1.0) if self.flip else ops.ones((batch,))
        # (rotation) @ (shear) @ (zoom) @ (mirror), about the image's centre.
        cos, sin = ops.cos(angle), ops.sin(angle)
        a0 = (cos + -sin * shear_y) * zoom_x * mirror
        a1 = (cos * shear_x - sin) * zoom_y
        b0 = (sin + cos * shear_y) * zoom_x * mirror
        b1 = (sin * shear_x + cos) * zoom_y
        centre_x, centre_y = (width - 1.0) / 2.0, (height - 1.0) / 2.0
        a2 = centre_x - a0 * centre_x - a1 * centre_y + uniform(self.shift) * width
        b2 = centre_y - b0 * centre_x - b1 * centre_y + uniform(self.shift) * height
        zeros = ops.zeros((batch,))
        return ops.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "rotation": self.rotation, "shift": self.shift, "shear": self.shear,
            "zoom": self.zoom, "flip": self.flip, "seed": self.seed,
        }  # fmt: skip
