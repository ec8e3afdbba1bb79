"""Training replicas in lockstep where Keras' ``fit`` cannot: under
``MultiWorkerMirroredStrategy`` (keras-team/keras#20585: Keras 3.15 reduces per-replica
scalars along an axis they lack), and under ``MirroredStrategy`` with several steps per
execution (keras-team/keras#19246). This loop does what ``fit`` does there,
with TensorFlow's own machinery: the training split sharded by data across workers (every
worker shuffles with the run's seed, then keeps its share of each global batch), each
replica running the model's own ``train_step`` on its slice of the batch
(``strategy.run``), gradients summed across replicas by the optimizer, and the epoch's
metrics averaged across replicas (``strategy.reduce``). Models with their own step (VAE,
GAN) train here unchanged.

Validation runs on the chief alone, on a single-device twin of the model that holds the
same weights: the validation split is not split unevenly across workers, and its numbers
are exactly those a single-device run computes for those weights.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any, Callable, Optional

from zoo.errors import ZooError

log = logging.getLogger(__name__)


def fit_in_lockstep(
    tf,
    model,
    strategy,
    train_data,
    epochs: int,
    steps_per_execution: int = 1,
    validate: Optional[Callable[[], dict[str, float]]] = None,
    callbacks: Any = None,
    report: Optional[Callable[[int, dict[str, float]], None]] = None,
) -> dict[str, list[float]]:
    """Train ``model`` (built and compiled in ``strategy``'s scope) for ``epochs`` on
    ``train_data``, batched in whole global batches (a final partial batch could leave a
    replica an empty slice, whose mean loss is NaN).

    Every worker calls this with the same arguments, but only the chief passes ``validate``
    and ``report``; ``callbacks`` get the epoch's logs on every worker that passes them.
    Returns the history: per epoch, the training logs and the validation logs (``val_``
    prefixed).
    """
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    train_data = train_data.with_options(options)
    distributed = strategy.experimental_distribute_dataset(train_data)
    steps = int(train_data.cardinality())
    if steps < 0:  # unknown (a filtered pipeline): count once, identically on every worker
        steps = int(train_data.reduce(0, lambda count, *_: count + 1))
    if steps == 0:
        raise ZooError("the training split is smaller than one global batch; lower trainer.batch_size")

    log.info("%d steps per epoch, each global batch split over %d replicas", steps, strategy.num_replicas_in_sync)
    step = model.train_step
    if model.jit_compile and strategy.num_replicas_in_sync == 1:
        step = tf.function(step, jit_compile=True, reduce_retracing=True)
    elif model.jit_compile:
        # XLA cannot compile a step whose update reaches variables on other devices.
        log.warning("jit_compile is not applied: the lockstep loop runs %d replicas", strategy.num_replicas_in_sync)

    def run_steps(iterator, count: int):
        outputs = None
        for _ in range(count):  # unrolled: count is steps_per_execution or the remainder
            outputs = strategy.run(step, args=(next(iterator),))
        return outputs

    run_steps = tf.function(run_steps, autograph=False)  # one graph per distinct count (two at most)
    history: dict[str, list[float]] = {}
    if callbacks is not None:
        callbacks.on_train_begin()
    for epoch in range(epochs):
        if callbacks is not None:
            callbacks.on_epoch_begin(epoch)
        model.reset_metrics()
        iterator = iter(distributed)
        first = 0
        if epoch == 0:
            # Eagerly: the first step creates the optimizer's and the metrics' variables,
            # which inside a tf.function TensorFlow creates under a conditional that a
            # MirroredStrategy's replicas cannot run.
            outputs = strategy.run(model.train_step, args=(next(iterator),))
            first = 1
        for start in range(first, steps, steps_per_execution):
            outputs = run_steps(iterator, min(steps_per_execution, steps - start))
        logs = {
            name: float(strategy.reduce(tf.distribute.ReduceOp.MEAN, value, axis=None))
            for name, value in outputs.items()
        }
        if validate is not None:
            logs.update({f"val_{name}": value for name, value in validate().items()})
        for name, value in logs.items():
            history.setdefault(name, []).append(value)
        if callbacks is not None:
            callbacks.on_epoch_end(epoch, logs)
        if report is not None:
            report(epoch, logs)
    if callbacks is not None:
        callbacks.on_train_end(logs)
    log.info("final weights sha256 %s", weights_digest(model))
    return history


def weights_digest(model) -> str:
    """A digest of every weight (trainable or not), equal on workers that agree bit for bit."""
    digest = hashlib.sha256()
    for weights in model.get_weights():
        digest.update(weights.tobytes())
    return digest.hexdigest()
