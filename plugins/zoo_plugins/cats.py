"""Seed 004's cat classifier and an offline dataset of drawn cat faces for it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import zoo

# --------------------------------------------------------------------------------------
# synthetic_cats: procedurally drawn cat faces against other drawn shapes
# --------------------------------------------------------------------------------------


@dataclass
class SyntheticCatsConfig:
    image_size: int = field(default=150, metadata={"help": "Side of the square RGB images (seed 004 uses 150)."})
    num_images: int = field(default=2000, metadata={"help": "Images in all splits together, half of them cats."})
    validation_fraction: float = field(default=0.15, metadata={"help": "Share of images held out for validation."})
    test_fraction: float = field(default=0.15, metadata={"help": "Share of images held out for the final test."})
    grayscale: bool = field(default=False, metadata={"help": "One luminance channel instead of RGB (seed 004's MLP)."})

    def __post_init__(self) -> None:
        from zoo.config import human_bytes, physical_memory
        from zoo_plugins.datasets import check_fractions

        check_fractions(self.validation_fraction, self.test_fraction)
        if self.image_size < 16:
            raise ValueError(f"image_size must be at least 16, got {self.image_size}")
        if self.num_images < 20:
            raise ValueError(f"num_images must be at least 20, got {self.num_images}")
        # All images are drawn into memory (uint8), then scaled (float32): 5 bytes a value.
        needed = self.num_images * self.image_size**2 * (1 if self.grayscale else 3) * 5
        memory = physical_memory()
        if memory and needed > memory / 2:
            raise ValueError(
                f"num_images={self.num_images} of image_size={self.image_size} take {human_bytes(needed)} in memory, more "
                f"than half of the {human_bytes(memory)} of memory this process may use; make them smaller"
            )


def describe_synthetic_cats(config: SyntheticCatsConfig) -> zoo.DataSpec:
    size = config.image_size
    return zoo.DataSpec(
        task=zoo.CLASSIFICATION,
        input_shape=(size, size, 1 if config.grayscale else 3),
        num_classes=2,
        class_names=("not_cat", "cat"),
        value_range=(0.0, 1.0),
    )


def load_synthetic_cats(config: SyntheticCatsConfig, seed: int) -> zoo.Splits:
    import numpy as np

    from zoo_plugins.datasets import stratified_splits

    labels, images, _ = draw_dataset(config, seed)
    x = images.astype(np.float32) / 255.0
    if config.grayscale:  # ITU-R BT.601 luma, as PIL's convert("L") weighs the channels
        x = (x @ np.array([0.299, 0.587, 0.114], dtype=np.float32))[..., np.newaxis]
    return stratified_splits(x, labels.astype(np.int32), config.validation_fraction, config.test_fraction, seed)


def head_masks(config: SyntheticCatsConfig, seed: int) -> zoo.Splits:
    """Where each image's cat is: per split, ``(masks, labels)`` in the order of
    ``load_synthetic_cats``' splits, a mask True on the drawn head and ears (all False for
    images without a cat). What ``zoo explain``'s check measures attributions against."""
    from zoo_plugins.datasets import stratified_splits

    labels, _, masks = draw_dataset(config, seed, masks=True)
    return stratified_splits(masks, labels.astype("int32"), config.validation_fraction, config.test_fraction, seed)


def draw_dataset(config: SyntheticCatsConfig, seed: int, masks: bool = False):
    """Labels, images (uint8) and, if asked, head masks of the whole dataset."""
    import numpy as np

    rng = np.random.default_rng(seed)
    labels = np.arange(config.num_images) % 2  # 1 = cat, alternating: exactly half
    rng.shuffle(labels)
    scenes = [draw_scene(rng, config.image_size, bool(label), with_mask=True) for label in labels]
    images = np.stack([image for image, _ in scenes])
    return labels, images, np.stack([mask for _, mask in scenes]) if masks else None


def _colour(rng, low: int = 0, high: int = 256) -> tuple[int, int, int]:
    return tuple(int(c) for c in rng.integers(low, high, size=3))


def draw_scene(rng, size: int, cat: bool, with_mask: bool = False):
    """One RGB image (uint8): a cat face, or shapes that are not one, on a random background;
    ``with_mask``: ``(image, mask)``, the mask True where the cat's head and ears are.

    Negatives include ear-less faces (a head with eyes, nose and whiskers) and loose
    triangles, so that no single part gives the answer away: a cat is a head with two ears
    on top.
    """
    import numpy as np
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (size, size), _colour(rng))
    draw = ImageDraw.Draw(image)
    mask = Image.new("L", (size, size), 0)
    for _ in range(int(rng.integers(0, 4))):  # background clutter
        _draw_shape(draw, rng, size, scale=0.15)
    if cat:
        _draw_face(draw, rng, size, ears=True, mask=ImageDraw.Draw(mask))
    else:
        kind = rng.integers(0, 3)
        if kind == 0:
            _draw_face(draw, rng, size, ears=False)
        else:
            for _ in range(int(rng.integers(1, 4))):
                _draw_shape(draw, rng, size, scale=0.35)
    if with_mask:
        return np.asarray(image, dtype=np.uint8), np.asarray(mask) > 0
    return np.asarray(image, dtype=np.uint8)


def _draw_face(draw, rng, size: int, ears: bool, mask=None) -> None:
    r = size * rng.uniform(0.16, 0.3)  # head radius
    cx, cy = rng.uniform(r + 2, size - r - 2), rng.uniform(r * 1.6, size - r - 2)
    fur = _colour(rng)
    if ears:
        for side in (-1, 1):
            base_x = cx + side * r * rng.uniform(0.35, 0.6)
            tip = (base_x + side * r * rng.uniform(0.0, 0.35), cy - r * rng.uniform(1.4, 1.8))
            ear = [(base_x - r * 0.38, cy - r * 0.6), (base_x + r * 0.38, cy - r * 0.6), tip]
            draw.polygon(ear, fill=fur)
            if mask is not None:
                mask.polygon(ear, fill=255)
    head = [cx - r, cy - r * rng.uniform(0.85, 1.0), cx + r, cy + r * rng.uniform(0.85, 1.0)]
    draw.ellipse(head, fill=fur)
    if mask is not None:
        mask.ellipse(head, fill=255)
    eye = _colour(rng, 0, 120)
    for side in (-1, 1):
        ex, ey, er = cx + side * r * 0.4, cy - r * 0.15, r * rng.uniform(0.1, 0.18)
        draw.ellipse([ex - er, ey - er, ex + er, ey + er], fill=eye)
    nose = (cx, cy + r * 0.2)
    draw.polygon([(nose[0] - r * 0.1, nose[1]), (nose[0] + r * 0.1, nose[1]), (nose[0], nose[1] + r * 0.12)], fill=eye)
    for side in (-1, 1):
        for dy in (-0.08, 0.05, 0.18):
            start = (cx + side * r * 0.15, cy + r * (0.28 + dy / 2))
            draw.line([start, (cx + side * r * 1.05, cy + r * (0.2 + dy))], fill=eye, width=max(1, size // 100))


def _draw_shape(draw, rng, size: int, scale: float) -> None:
    r = size * scale * rng.uniform(0.4, 1.0)
    cx, cy = rng.uniform(0, size), rng.uniform(0, size)
    colour = _colour(rng)
    kind = rng.integers(0, 4)
    if kind == 0:
        draw.ellipse([cx - r, cy - r * rng.uniform(0.5, 1.0), cx + r, cy + r], fill=colour)
    elif kind == 1:
        draw.rectangle([cx - r, cy - r * rng.uniform(0.4, 1.0), cx + r, cy + r], fill=colour)
    elif kind == 2:
        draw.polygon([(cx - r, cy + r), (cx + r, cy + r), (cx + rng.uniform(-r, r), cy - r)], fill=colour)
    else:
        import numpy as np

        points = int(rng.integers(5, 8))
        angles = np.linspace(0, 2 * np.pi, 2 * points, endpoint=False)
        radii = np.where(np.arange(2 * points) % 2 == 0, r, r * 0.45)
        draw.polygon([(cx + q * np.cos(a), cy + q * np.sin(a)) for q, a in zip(radii, angles)], fill=colour)

# --------------------------------------------------------------------------------------
# cnn_cat_classifier: seed 004's network with its augmentations
# --------------------------------------------------------------------------------------


@dataclass
class CNNCatClassifierConfig:
    filters: list[int] = field(
        default_factory=lambda: [32, 64, 128, 128], metadata={"help": "Filters of each conv block (each then max-pooled)."}
    )
    dense_units: int = field(default=512, metadata={"help": "Units of the hidden dense layer."})
    head: str = field(
        default="flatten",
        metadata={"help": "flatten (seed 004) or average: global average pooling of the last feature maps "
                  "(fewer weights; Grad-CAM's weighting is exact for it)."},
    )
    dropout: float = field(default=0.0, metadata={"help": "Dropout before the dense layers (seed 004 uses none)."})
    augment: bool = field(default=True, metadata={"help": "Seed 004's random augmentations, active in training only."})
    rotation: float = field(default=40.0, metadata={"help": "Augmentation: largest rotation, in degrees."})
    shift: float = field(default=0.2, metadata={"help": "Augmentation: largest shift, as a fraction of width/height."})
    shear: float = field(
        default=0.2,
        metadata={"help": "Augmentation: largest shear factor (as Keras RandomShear; ImageDataGenerator read 0.2 as degrees)."},
    )
    zoom: float = field(default=0.2, metadata={"help": "Augmentation: largest zoom in or out, as a fraction."})
    flip: bool = field(default=True, metadata={"help": "Augmentation: random horizontal flips."})

    def __post_init__(self) -> None:
        if not self.filters or min(self.filters) < 1:
            raise ValueError(f"filters must be a non-empty list of positive sizes, got {self.filters}")
        if self.dense_units < 1:
            raise ValueError(f"dense_units must be at least 1, got {self.dense_units}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.head not in ("flatten", "average"):
            raise ValueError(f"head={self.head!r} is not supported; choose flatten or average")


def smallest_side(blocks: int) -> int:
    """The smallest image side that survives ``blocks`` of (3x3 valid convolution, 2x2 pooling)."""
    side = 1
    for _ in range(blocks):
        side = side * 2 + 2
    return side


def cat_classifier_accepts(config: CNNCatClassifierConfig, spec: zoo.DataSpec) -> Optional[str]:
    needed = smallest_side(len(config.filters))
    if min(spec.input_shape[:2]) < needed:
        return f"its {len(config.filters)} conv blocks need images of at least {needed}x{needed}, got {spec.input_shape[:2]}"
    return None


def build_cnn_cat_classifier(config: CNNCatClassifierConfig, spec: zoo.DataSpec):
    """Seed 004: four Conv-MaxPool blocks (32-64-128-128), Dense(512), sigmoid output."""
    import keras
    from keras import layers

    from zoo_plugins.classifiers import classification_head

    inputs = keras.Input(shape=spec.input_shape, name="image")
    x = inputs
    if config.augment:  # active only when training=True
        from zoo_plugins.augmentation import RandomAffine

        x = RandomAffine(config.rotation, config.shift, config.shear, config.zoom, config.flip, name="augment")(x)
    for i, filters in enumerate(config.filters, start=1):
        x = layers.Conv2D(filters, 3, activation="relu", name=f"conv_{i}")(x)
        x = layers.MaxPooling2D(2, name=f"pool_{i}")(x)
    x = layers.Flatten(name="flatten")(x) if config.head == "flatten" else layers.GlobalAveragePooling2D(name="average")(x)
    if config.dropout > 0:
        x = layers.Dropout(config.dropout, name="dropout")(x)
    x = layers.Dense(config.dense_units, activation="relu", name="hidden")(x)
    return keras.Model(inputs, classification_head(spec)(x), name="cnn_cat_classifier")


@zoo.hookimpl
def register_datasets():
    return [
        zoo.DatasetPlugin(
            name="synthetic_cats",
            summary="Drawn cat faces against other drawn shapes, RGB, binary (offline, made from the seed).",
            config=SyntheticCatsConfig,
            describe=describe_synthetic_cats,
            factory=load_synthetic_cats,
            tiny={"image_size": 48, "num_images": 40},
        ),
    ]


@zoo.hookimpl
def register_models():
    return [
        zoo.ModelPlugin(
            name="cnn_cat_classifier",
            summary="Seed 004's cat CNN: four conv blocks, Dense(512), sigmoid, augmentations in training.",
            config=CNNCatClassifierConfig,
            factory=build_cnn_cat_classifier,
            input_rank=3,
            accepts=cat_classifier_accepts,
        ),
    ]
