"""A classifier on a pretrained ``keras.applications`` backbone (seed 004's cats, done the
way practitioners do it): the backbone with its own input preprocessing, a new head sized
from the dataset, and fine-tuning in two phases (``cats_pretrained_head``, then
``cats_pretrained_finetune`` with ``trainer.init_from``)."""

from __future__ import annotations

import functools
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import zoo
from zoo.errors import one_line

# name: (keras.applications class, what its inputs must look like). "raw": the backbone
# rescales 0-255 pixels itself; "tf": scaled to [-1, 1]; "torch": [0, 1] normalised by
# ImageNet's mean and deviation; "caffe": BGR 0-255 minus ImageNet's mean (keras.applications'
# preprocess_input modes).
BACKBONES = {
    "mobilenet_v2": ("MobileNetV2", "tf"),
    "mobilenet_v3_small": ("MobileNetV3Small", "raw"),
    "mobilenet_v3_large": ("MobileNetV3Large", "raw"),
    "efficientnet_b0": ("EfficientNetB0", "raw"),
    "efficientnet_v2_b0": ("EfficientNetV2B0", "raw"),
    "efficientnet_v2_s": ("EfficientNetV2S", "raw"),
    "convnext_tiny": ("ConvNeXtTiny", "raw"),
    "resnet50": ("ResNet50", "caffe"),
    "resnet50_v2": ("ResNet50V2", "tf"),
    "densenet121": ("DenseNet121", "torch"),
    "inception_v3": ("InceptionV3", "tf"),
    "xception": ("Xception", "tf"),
    "vgg16": ("VGG16", "caffe"),
}
WEIGHTS = ("imagenet", "none")
MIN_SIZE = 32  # keras.applications refuses smaller inputs


@dataclass
class PretrainedClassifierConfig:
    backbone: str = field(
        default="mobilenet_v3_small", metadata={"help": "keras.applications backbone: " + ", ".join(BACKBONES) + "."}
    )
    weights: str = zoo.data_path(
        "imagenet (Keras' cache, downloaded once), none (random), or the path of a weights file.", default="imagenet", keywords=WEIGHTS
    )
    freeze_backbone: bool = field(default=True, metadata={"help": "Train the head only (phase 1 of fine-tuning)."})
    fine_tune_layers: int = field(
        default=0,
        metadata={"help": "With freeze_backbone: the backbone's last N weight layers train anyway (phase 2); "
                  "batch normalisation stays frozen."},
    )
    image_size: int = field(default=0, metadata={"help": "Resize inputs to this square size first (0: as they come)."})
    dropout: float = field(default=0.2, metadata={"help": "Dropout before the new head (0 disables)."})

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            import difflib

            close = difflib.get_close_matches(self.backbone, BACKBONES, n=1)
            hint = f"did you mean {close[0]!r}?" if close else "choose one of: " + ", ".join(BACKBONES)
            raise ValueError(f"backbone={self.backbone!r} is not supported; {hint}")
        if self.weights not in WEIGHTS and not Path(os.path.expanduser(self.weights)).is_file():
            raise ValueError(f"weights={self.weights!r} is neither imagenet, none, nor an existing weights file")
        if self.weights not in WEIGHTS and not os.access(os.path.expanduser(self.weights), os.R_OK):
            raise ValueError(f"weights={self.weights!r}: this user may not read that file (its permissions refuse it); ask its owner, or use a copy")
        if self.fine_tune_layers < 0:
            raise ValueError(f"fine_tune_layers cannot be negative, got {self.fine_tune_layers}")
        if self.image_size and self.image_size < MIN_SIZE:
            raise ValueError(f"image_size must be at least {MIN_SIZE} (or 0), got {self.image_size}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


def accepts(config: PretrainedClassifierConfig, spec: zoo.DataSpec):
    height, width, channels = spec.input_shape
    if channels not in (1, 3):
        return f"it takes RGB or grayscale images, not {channels} channels"
    if not config.image_size and min(height, width) < MIN_SIZE:
        return f"the backbones need images of at least {MIN_SIZE}x{MIN_SIZE}; set model.image_size={MIN_SIZE} or more"
    return None


@functools.cache
def preprocessing_layer():
    import keras

    @keras.saving.register_keras_serializable(package="zoo")
    class BackboneInput(keras.layers.Layer):
        """The zoo's [0, 1] images as a backbone expects them (``mode``: see BACKBONES)."""

        MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
        CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)

        def __init__(self, mode: str, **kwargs):
            super().__init__(**kwargs)
            self.mode = mode

        def call(self, images):
            from keras import ops

            if images.shape[-1] == 1:  # grayscale: the backbones learnt on three channels
                images = ops.concatenate([images] * 3, axis=-1)
            if self.mode == "raw":
                return images * 255.0
            if self.mode == "tf":
                return images * 2.0 - 1.0
            if self.mode == "torch":
                return (images - ops.array(self.MEAN)) / ops.array(self.STD)
            return ops.flip(images, axis=-1) * 255.0 - ops.array(self.CAFFE_MEAN_BGR)  # caffe

        def compute_output_shape(self, input_shape):
            return (*input_shape[:-1], 3)

        def get_config(self):
            return {**super().get_config(), "mode": self.mode}

    return BackboneInput


def load_backbone(config: PretrainedClassifierConfig, shape: tuple):
    """The backbone without its ImageNet head, its weights as ``config.weights`` says."""
    import keras

    from zoo.artifacts import download_problem, downloading, keras_folder

    class_name, _ = BACKBONES[config.backbone]
    constructor = getattr(keras.applications, class_name)
    weights = {"imagenet": "imagenet", "none": None}.get(config.weights, os.path.expanduser(config.weights))
    try:
        with warnings.catch_warnings(), downloading():
            # "Weights for input shape (224, 224) will be loaded": the convolutions fit any size.
            warnings.filterwarnings("ignore", message=".*input_shape. is undefined or non-square", category=UserWarning)
            return constructor(include_top=False, weights=weights, input_shape=shape, pooling=None)  # "raw" ones rescale by default
    except Exception as exc:  # Keras raises a bare Exception when the download fails
        problem = download_problem(exc) if weights == "imagenet" else None
        if problem is None:
            raise zoo.ZooError(
                f"model.backbone={config.backbone}: its weights could not be loaded from {config.weights} "
                f"({one_line(exc)[:200]}); give the file keras.applications.{class_name} writes"
            ) from None
        url = re.search(r"(https?://\S+?):? ", str(exc))  # a failure in mid-download names none
        cache = keras_folder() / "models"
        what = f"{url.group(1).rsplit('/', 1)[-1]} for {config.backbone}" if url else f"the ImageNet weights of {config.backbone}"
        raise zoo.ZooError(
            f"model.weights=imagenet: Keras could not download {what} ({problem}; no network, or a proxy in the way?); "
            f"put that file in {cache}/{f' (from {url.group(1)})' if url else ''}, or give model.weights=PATH, or model.weights=none"
        ) from None


def build_pretrained_classifier(config: PretrainedClassifierConfig, spec: zoo.DataSpec):
    import keras
    from keras import layers

    from zoo_plugins.classifiers import classification_head

    height, width, _ = spec.input_shape
    size = (config.image_size, config.image_size) if config.image_size else (height, width)
    inputs = keras.Input(shape=spec.input_shape, name="image")
    x = layers.Resizing(*size, name="resize")(inputs) if config.image_size else inputs
    x = preprocessing_layer()(BACKBONES[config.backbone][1], name="backbone_input")(x)
    backbone = load_backbone(config, (*size, 3))
    backbone.trainable = not config.freeze_backbone
    if config.freeze_backbone and config.fine_tune_layers:
        backbone.trainable = True
        weighted = [layer for layer in backbone.layers if layer.weights]
        for layer in weighted[: len(weighted) - config.fine_tune_layers]:
            layer.trainable = False
        for layer in weighted:
            if isinstance(layer, layers.BatchNormalization):
                layer.trainable = False
    # training=False: batch normalisation keeps ImageNet's statistics while fine-tuning
    # (Keras' transfer-learning guide), whatever is trainable.
    x = backbone(x, training=False)
    # Pooled out here, not inside the backbone: its output stays the last feature maps,
    # which Grad-CAM (zoo explain) weighs.
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    if config.dropout > 0:
        x = layers.Dropout(config.dropout, name="dropout")(x)
    outputs = classification_head(spec)(x)
    return keras.Model(inputs, outputs, name=f"pretrained_{config.backbone}")


@zoo.hookimpl
def register_models():
    return [
        zoo.ModelPlugin(
            name="pretrained_classifier",
            summary="A keras.applications backbone (ImageNet weights) with a new head: transfer learning, fine-tuning.",
            config=PretrainedClassifierConfig,
            factory=build_pretrained_classifier,
            input_rank=3,
            accepts=accepts,
            tiny={"weights": "none", "image_size": 32},
            without_starting_weights={"weights": "none"},  # a trained run is used without the download or file
        )
    ]
