"""Choosing the ``tf.distribute`` strategy for the ``device`` config.

One device runs under TensorFlow's default strategy with only that device visible: Keras
then takes its plain, fast path (wrapping a single CPU in ``OneDeviceStrategy`` measured
twice as slow on a small model). Several GPUs get a ``MirroredStrategy``.
"""

from __future__ import annotations

from typing import Any

from zoo.config import DeviceConfig
from zoo.errors import ZooError


def select_strategy(device: DeviceConfig) -> tuple[Any, str]:
    """The strategy for ``device`` and a short description of it (for logs and summaries).

    Call it before TensorFlow has run anything: device visibility can only be set then.
    """
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    kind = device.kind
    if kind == "auto":
        kind = "multi_gpu" if len(gpus) > 1 else "gpu" if gpus else "cpu"
    if kind == "cpu":
        if gpus:
            _show_only(tf, [])
        return tf.distribute.get_strategy(), "cpu"
    if not gpus:
        raise ZooError(
            f"device={kind} but TensorFlow sees no GPU (is the GPU build installed: pip install "
            f"'keras-zoo[gpu]'?); use device=cpu or device=auto"
        )
    if kind == "gpu":
        if not 0 <= device.index < len(gpus):
            raise ZooError(f"device.index={device.index} but only GPUs 0..{len(gpus) - 1} are visible")
        _show_only(tf, [gpus[device.index]])
        return tf.distribute.get_strategy(), f"gpu:{device.index}"
    indices = list(range(len(gpus))) if device.gpus is None else list(device.gpus)
    bad = [i for i in indices if not 0 <= i < len(gpus)]
    if bad or not indices:
        raise ZooError(f"device.gpus={indices} but the visible GPUs are 0..{len(gpus) - 1}")
    strategy = tf.distribute.MirroredStrategy(devices=[f"/gpu:{i}" for i in indices])
    return strategy, f"multi_gpu:{','.join(map(str, indices))}"


def _show_only(tf, gpus: list) -> None:
    try:
        tf.config.set_visible_devices(gpus, "GPU")
    except RuntimeError:  # TensorFlow already initialised its devices in this process
        raise ZooError(
            "the GPUs TensorFlow may use can no longer be changed in this process; choose the "
            "device before TensorFlow runs anything (or set CUDA_VISIBLE_DEVICES)"
        ) from None
