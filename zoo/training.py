"""The training loop of every run, on one device or many, resumable at any step.

Keras' ``fit`` falls short in three places: it cannot continue an interrupted epoch at the
step where it stopped (``BackupAndRestore`` replays the epoch's first batches, see
``../shared/FACTS.md``), it fails under ``MultiWorkerMirroredStrategy``
(keras-team/keras#20585), and under ``MirroredStrategy`` with several steps per execution
(keras-team/keras#19246). This loop does what ``fit`` does, with TensorFlow's own
machinery, the same way everywhere:

- each epoch's batches come in an order fixed by the run's seed and the epoch's number, so
  a resumed epoch skips exactly the batches its checkpoint had trained on;
- each replica runs the model's own ``train_step`` on its slice of a global batch
  (``strategy.run``; VAE and GAN train unchanged), several steps per call into TensorFlow
  when asked, and the logged values are averaged across replicas (``strategy.reduce``);
- a checkpoint (``zoo.checkpoints``) is saved every ``checkpoint_every`` steps, every
  ``checkpoint_seconds`` and at the end of every epoch, after the callbacks have seen the
  step's loss (a diverged step is never saved).

Callbacks are Keras callbacks and get what ``fit`` gives them: train/epoch/batch begin and
end, with Keras' progress bar when ``verbose`` asks for it.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import sys
import threading
import time
from typing import Any, Callable, Optional

from zoo.checkpoints import KEEP, Checkpoints, Position, array_list, decode_state, restore, training_state
from zoo.errors import NOTICE_SIGNALS, Interrupted, ZooError
from zoo.hookspecs import INFINITE_CARDINALITY
from zoo.tables import shorten

log = logging.getLogger(__name__)


def fit(
    tf,
    model,
    strategy,
    epoch_batches: Callable[[int], Any],
    epochs: int,
    steps_per_execution: int = 1,
    validate: Optional[Callable[[], dict[str, float]]] = None,
    callbacks: Any = None,
    checkpoints: Optional[Checkpoints] = None,
    checkpoint_every: int = 0,
    checkpoint_seconds: float = 0.0,
    resume: bool = True,
    record: Optional[Callable[[Position], None]] = None,
) -> Position:
    """Train ``model`` (built and compiled in ``strategy``'s scope) for ``epochs`` on
    ``epoch_batches(epoch)``, the batches of each epoch in that epoch's order (whole global
    batches when there are several replicas: a partial one could leave a replica an empty
    slice, whose mean loss is NaN).

    With ``checkpoints`` and ``resume``, training continues from the newest checkpoint found
    there. Every worker of a multi-worker run calls this with the same arguments (and its
    own ``checkpoints``); only the chief passes ``validate`` and ``record``, which gets the
    position (and so the history) after each epoch and on resuming. Callbacks may add values
    to an epoch's logs (the history keeps them) and end training with
    ``model.stop_training``; those with ``get_state``/``set_state`` are checkpointed.
    Returns the final position, whose ``history`` has per epoch the training logs, the
    validation logs (``val_`` prefixed) and what callbacks added.
    """
    replicas = strategy.num_replicas_in_sync
    steps = count_steps(epoch_batches(0))
    log.info("%d steps per epoch, each global batch split over %d replica(s)", steps, replicas)
    multi_worker = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
    found = None
    if checkpoints is not None and resume and multi_worker:
        step = common_checkpoint(tf, strategy, checkpoints.steps()[:KEEP])
        found = checkpoints.load(step) if step is not None else None
    elif checkpoints is not None and resume:
        found = checkpoints.latest()
    position = found[1] if found else Position(steps_per_epoch=steps)
    if found and position.steps_per_epoch != steps:
        # Several replicas take whole batches only: the epoch's last, partial one is dropped.
        raise ZooError(
            f"checkpoint {found[0]} was taken at {position.steps_per_epoch} steps per epoch, this run has {steps} "
            f"(the data, trainer.batch_size, or the device changed: on {replicas} replica{'s' if replicas > 1 else ''} an "
            f"epoch's last partial batch is {'dropped' if replicas > 1 else 'kept'}); continue it on the device it began on, "
            "or start a new run (another hydra.run.dir)"
        )
    if found and position.epoch > epochs:
        raise ZooError(
            f"checkpoint {found[0]} has {position.epoch} epochs trained, more than trainer.epochs={epochs}; "
            f"continue with trainer.epochs={position.epoch} or more"
        )
    if multi_worker and checkpoint_seconds:
        # Workers' clocks would pick different steps; they must checkpoint the same ones.
        log.info("checkpoints by time are off with several workers: every %d steps and at epoch ends", checkpoint_every)
        checkpoint_seconds = 0.0
    stateful = stateful_callbacks(callbacks)

    variables: Optional[list] = None
    if found:
        # The variables exist once a step has run (the first creates the optimizer's and
        # the metrics'): a throw-away step, then the checkpoint overwrites all it changed.
        with native_log_lines_logged("TensorFlow, a first step"):
            strategy.run(model.train_step, args=(next(iter(_distribute(tf, strategy, epoch_batches(0)))),))
        variables = training_state(model)
        restore(variables, found[2], found[0])
        log.info("resumed from %s: %d of %d steps done", found[0].name, position.optimizer_steps, epochs * steps)
        if record is not None:  # the chief tells the terminal: a resumed run must not look like a new one
            print(f"continuing from {position} (checkpoint {found[0].name})", flush=True)
            record(position)  # drops the rows of epochs the checkpoint had not reached

    run_steps = _step_function(tf, model, strategy, steps_per_execution)
    log.info("jit_compile=%s, steps_per_execution=%d", bool(model.jit_compile), steps_per_execution)
    model.stop_training = False
    if callbacks is not None:
        callbacks.set_params({**(callbacks.params or {}), "steps": steps})  # for the progress bar
        callbacks.on_train_begin()
    if found:
        restore_callback_states(stateful, found[2], position)
    callback_states(stateful)  # a state no checkpoint can hold fails now, not at the first checkpoint
    logs: dict[str, float] = {}
    last_save = time.monotonic()
    # Ctrl-C and a scheduler's SIGTERM stop at the next step, after a checkpoint of it.
    signals = SignalCatcher() if checkpoints is not None and not multi_worker else None
    try:
        for epoch in range(position.epoch, epochs):
            if signals is not None and signals.caught:  # stopped at an epoch's end, saved as every one is
                checkpoints.wait()
                raise signals.interrupted(position)
            if model.stop_training:  # a callback ended training (on resuming: had ended it)
                break
            if callbacks is not None:
                callbacks.on_epoch_begin(epoch)
            done = position.step if epoch == position.epoch else 0
            started, skipped = time.perf_counter(), done
            if done == 0:  # an epoch resumed in its middle keeps the metric totals restored
                model.reset_metrics()
            iterator = iter(_distribute(tf, strategy, epoch_batches(epoch).skip(done)))
            count = 0  # steps run since the logs were last looked at
            if variables is None:
                # Eagerly: the first step creates the optimizer's and the metrics' variables,
                # which inside a tf.function TensorFlow creates under a conditional that a
                # MirroredStrategy's replicas cannot run.
                with native_log_lines_logged("TensorFlow, the first step"):
                    outputs = strategy.run(model.train_step, args=(next(iterator),))
                variables = training_state(model)
                done = count = 1
            while True:
                if count:
                    logs = reduce_logs(tf, strategy, outputs)
                    if callbacks is not None:
                        callbacks.on_train_batch_end(done - 1, logs)  # the divergence guard raises here
                    due = (checkpoint_every and _crossed(done, count, checkpoint_every)) or (
                        checkpoint_seconds and time.monotonic() - last_save >= checkpoint_seconds
                    )
                    if checkpoints is not None and due and done < steps:  # an epoch's end saves below
                        checkpoints.save(variables, Position(epoch, done, steps, position.history), callback_states(stateful))
                        last_save = time.monotonic()
                    if signals is not None and signals.caught and done < steps:
                        here = Position(epoch, done, steps, position.history)
                        if not due:
                            checkpoints.save(variables, here, callback_states(stateful))
                        checkpoints.wait()
                        raise signals.interrupted(here)
                if done == steps:
                    break
                count = min(steps_per_execution, steps - done)
                if callbacks is not None:
                    callbacks.on_train_batch_begin(done)
                # The epoch's last call returns every logged value; the others only the losses,
                # so that no metric's result is computed on steps whose values nobody reads.
                outputs = run_steps(iterator, count, done + count == steps)
                done += count
            trained = time.perf_counter() - started
            if validate is not None:
                logs.update({f"val_{name}": value for name, value in validate().items()})
            # Steady-state speed for users and benchmarks; the first epoch also traces the step.
            log.info(
                "epoch %d/%d: %d steps trained in %.3f s, validated in %.3f s",
                epoch + 1, epochs, steps - skipped, trained, time.perf_counter() - started - trained,
            )  # fmt: skip
            if checkpoints is not None:  # before anything of the epoch's end is written
                checkpoints.check_run_dir()
            for callback in callbacks.callbacks if callbacks is not None else ():
                # One by one with this dict (CallbackList would pass a copy): what a callback
                # adds (the learning rate) goes into the history.
                before = dict(logs)
                callback.on_epoch_end(epoch, logs)
                check_added_logs(callback, before, logs)
            position = Position(epoch + 1, 0, steps, extended_history(position.history, logs))
            if record is not None:
                record(position)
            if checkpoints is not None:
                # Metric totals start afresh each epoch: an epoch's end need not keep them.
                checkpoints.save(variables, position, callback_states(stateful), metrics=False)
                last_save = time.monotonic()
        if signals is not None and signals.caught and position.epoch < epochs:
            checkpoints.wait()
            raise signals.interrupted(position)
    finally:
        if signals is not None:
            signals.release()
    if checkpoints is not None:
        checkpoints.wait()
    if callbacks is not None:
        callbacks.on_train_end(logs)
    log.info("final weights sha256 %s", weights_digest(model))
    return position


def ours_to_handle(handler) -> bool:
    """Whether a notice signal with this handler is the zoo's to stop on: none was set (the
    default ends the process), or the zoo's command set it."""
    import signal

    return handler is signal.SIG_DFL or getattr(handler, "zoo_stops", False)


class SignalCatcher:
    """While training, SIGINT (Ctrl-C), SIGTERM (a scheduler's preemption notice), SIGHUP
    (the terminal hung up: an ssh connection lost) and a batch system's notice signals
    (NOTICE_SIGNALS) are noted instead of ending the process: the loop saves a checkpoint at
    the step it is at and stops with :class:`~zoo.errors.Interrupted`. A second signal ends
    it at once. A SIGHUP ignored when the zoo started (``nohup``) stays ignored, as does a
    notice signal that someone else handles. The terminal's streams report a reader that
    left (``zoo train | head``) through :func:`terminal_lost`, noted as SIGPIPE."""

    SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP", *NOTICE_SIGNALS)
    REASONS = {
        "SIGHUP": "SIGHUP (the terminal hung up)",
        "SIGPIPE": "SIGPIPE (the standard output's reader left)",
        "SIGUSR1": "SIGUSR1 (a batch system's notice, most likely: the job's time is nearly up)",
        "SIGUSR2": "SIGUSR2 (a batch system's notice, most likely: the job's time is nearly up)",
        "SIGXCPU": "SIGXCPU (the limit on CPU time was reached: ulimit -t, or the batch system's)",
    }
    active: Optional["SignalCatcher"] = None  # the catcher of the training under way
    lost: Optional[int] = None  # the terminal went before training started

    def __init__(self):
        import signal
        import threading

        self.caught: Optional[int] = None
        self.previous: dict = {}
        if threading.current_thread() is not threading.main_thread():
            return  # Python delivers signals to the main thread only
        for name in self.SIGNALS:
            number = getattr(signal, name)
            if name == "SIGHUP" and signal.getsignal(number) is signal.SIG_IGN:
                continue
            if name in NOTICE_SIGNALS and not ours_to_handle(signal.getsignal(number)):
                continue
            self.previous[number] = signal.signal(number, self._note)
        SignalCatcher.active = self
        if SignalCatcher.lost is not None:
            self._note(SignalCatcher.lost, None)

    def _note(self, number, frame) -> None:
        if self.caught is not None:  # asked twice: stop now, as without the catcher
            self.release()
            raise KeyboardInterrupt
        self.caught = number
        log.warning("%s: saving a checkpoint at the current step, then stopping", self._reason(number))

    @classmethod
    def _reason(cls, number: int) -> str:
        import signal

        name = signal.Signals(number).name
        return cls.REASONS.get(name, name)

    def interrupted(self, position: Position) -> Interrupted:
        return Interrupted(f"stopped by {self._reason(self.caught)} at {position}, saved in a checkpoint", self.caught)

    def release(self) -> None:
        import signal

        for number, handler in self.previous.items():
            signal.signal(number, handler)
        self.previous = {}
        SignalCatcher.active = None


def terminal_lost(number: int) -> None:
    """Nobody reads the terminal's output any more (a closed pipe, a hung-up terminal): the
    training under way, or about to start, stops at its next step as on that signal."""
    catcher = SignalCatcher.active
    if catcher is None:
        SignalCatcher.lost = number
    elif catcher.caught is None:
        catcher._note(number, None)


def stateful_callbacks(callbacks) -> dict[str, Any]:
    """The callbacks whose state is checkpointed, by a key fixed by their order and class."""
    found = {}
    for index, callback in enumerate(getattr(callbacks, "callbacks", None) or []):
        if callable(getattr(callback, "get_state", None)) and callable(getattr(callback, "set_state", None)):
            found[f"{index}:{type(callback).__name__}"] = callback
    return found


def callback_name(callback) -> str:
    """A callback as its plugin is known (``callbacks=[name]``), else by its class."""
    name = getattr(callback, "zoo_plugin_name", None)
    return f"callback {name!r}" if name else f"callback {type(callback).__name__}"


# What a history holds beside the logs: a callback logging under it would make a second column.
HISTORY_COLUMNS = ("epoch",)


def check_added_logs(callback, before: dict, logs: dict) -> None:
    """What a callback did to an epoch's logs: it may add values, each a number (a scalar
    tensor or array too; made a float here), under a new name; the values already there
    (the training and validation values, earlier callbacks' additions) are not its to
    change or remove. Anything else would fail the run after the epoch, writing the
    history or in a tracker, in the zoo's name, or quietly replace what the zoo measured."""
    import numpy as np

    def problem() -> Optional[str]:
        for name, value in before.items():
            if name not in logs:
                return f"removed {name!r} from the epoch's logs"
            if logs[name] is not value:
                return f"replaced {name!r} in the epoch's logs"
        for name in logs.keys() - before.keys():
            value = logs[name]
            if not isinstance(name, str) or name in HISTORY_COLUMNS:
                return f"logged a value under {name!r}, which the history cannot hold as a column of its own"
            if isinstance(value, (str, bytes)) or np.ndim(value) != 0:  # float("1.5") would take a string
                return f"logged {name!r} = {shorten_value(value)}, not a number"
            try:
                logs[name] = float(value)
            except (TypeError, ValueError):
                return f"logged {name!r} = {shorten_value(value)}, not a number"
        return None

    found = problem()
    if found:
        raise ZooError(
            f"{callback_name(callback)} {found}; a callback may add numbers to an epoch's logs under new names "
            "(they go into history.csv), not change the values there"
        )


def shorten_value(value) -> str:
    """A value in an error line: its repr, cut short, and its type."""
    return f"{shorten(' '.join(repr(value).split()), 60)} ({type(value).__name__})"


def extended_history(history: dict, logs: dict) -> dict:
    """``history`` with an epoch's ``logs`` as its next row; a value that a callback logs in
    some epochs only is NaN in the others, so every column keeps one value per epoch."""
    rows = len(next(iter(history.values()), []))
    names = [*history, *(name for name in logs if name not in history)]
    return {name: [*history.get(name, [float("nan")] * rows), logs.get(name, float("nan"))] for name in names}


def callback_states(stateful: dict[str, Any]) -> dict[str, dict]:
    """Each stateful callback's ``get_state()``, checked to be what a checkpoint holds: a
    dict of JSON values (NumPy scalars become numbers) or lists of NumPy arrays."""
    import json

    import numpy as np

    def plain(value):
        if isinstance(value, np.generic) or (isinstance(value, np.ndarray) and value.ndim == 0):
            return value.item()
        raise TypeError(type(value).__name__)

    states = {}
    for key, callback in stateful.items():
        state = callback.get_state()
        if not isinstance(state, dict) or not all(isinstance(name, str) for name in state):
            raise ZooError(
                f"{callback_name(callback)}: get_state() returned {shorten_value(state)}, not a dict of names to values"
            )
        kept = {}
        for name, value in state.items():
            if array_list(value):
                kept[name] = list(value)
                continue
            try:
                kept[name] = json.loads(json.dumps(value, default=plain))
            except (TypeError, ValueError):  # ValueError: a list that holds itself
                raise ZooError(
                    f"{callback_name(callback)}: get_state() gave {name!r} = {shorten_value(value)}, which a checkpoint "
                    "cannot hold; give JSON values (numbers, strings, lists, dicts) or lists of NumPy arrays"
                ) from None
        states[key] = kept
    return states


def restore_callback_states(stateful: dict[str, Any], arrays: dict, position: Position) -> None:
    saved = position.callbacks
    missing = sorted(set(stateful) - set(saved))
    if missing:
        raise ZooError(
            f"the checkpoint holds no state for callback {missing[0]!r}: were callbacks added since the run started? "
            "Continue it with the callbacks it had, or start a new run (another hydra.run.dir)"
        )
    for key, callback in stateful.items():
        callback.set_state(decode_state(key, saved[key], arrays))


def _crossed(done: int, count: int, every: int) -> bool:
    """Whether the last ``count`` steps, ending at ``done``, passed a multiple of ``every``."""
    return done // every > (done - count) // every


def _step_function(tf, model, strategy, steps_per_execution: int):
    step = model.train_step
    if model.jit_compile and strategy.num_replicas_in_sync == 1:
        step = tf.function(step, jit_compile=True, reduce_retracing=True)
    elif model.jit_compile:
        # XLA cannot compile a step whose update reaches variables on other devices (nor
        # Keras' evaluation step, which validation runs).
        log.warning("jit_compile is not applied: the training loop runs %d replicas", strategy.num_replicas_in_sync)
        model.jit_compile = False

    def run_steps(iterator, count: int, every_value: bool):
        outputs = None
        for _ in range(count):  # unrolled: count is steps_per_execution or a remainder
            outputs = strategy.run(step, args=(next(iterator),))
        # TensorFlow prunes what the function does not return: without every_value, the
        # metrics' result() (AUC's over 16,384 bins) is not computed, only their totals.
        return outputs if every_value else losses_only(outputs)

    # A graph per distinct count: steps_per_execution, the epoch's remainder, a resumed start's.
    return quiet_while_built(tf.function(run_steps, autograph=False, reduce_retracing=True), "the training step")


def losses_only(outputs: dict) -> dict:
    """The logged losses of a step (what the divergence guard and a progress bar read)."""
    return {name: value for name, value in outputs.items() if name.endswith("loss")} or outputs


def evaluate(tf, model, batches) -> dict[str, float]:
    """What ``model.evaluate(batches, return_dict=True)`` returns, without its per-step
    result computations and callbacks: the model's own ``test_step`` over every batch in
    one TensorFlow function, every value read once at the end."""
    step = getattr(model, "_zoo_evaluation_step", None)
    if step is None:

        def run(iterator, every_value: bool):
            outputs = model.test_step(next(iterator))
            return outputs if every_value else losses_only(outputs)

        step = tf.function(run, autograph=False, reduce_retracing=True)
        step = model._zoo_evaluation_step = quiet_while_built(step, "the evaluation step")
    model.reset_metrics()
    count = count_steps(batches)
    iterator = iter(batches)
    outputs = None
    for done in range(1, count + 1):
        outputs = step(iterator, done == count)
    return logged_numbers(outputs)


# absl's prefix, as TensorFlow's C++ code logs: severity, date, time, thread, file:line.
NATIVE_LOG_LINE = re.compile(rb"[IWE]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [^\s\]]+:\d+\] ")


def quiet_while_built(function, what: str):
    """``function`` (a ``tf.function`` taking an iterator, then plain Python values) whose
    first call with each set of values, where TensorFlow builds and optimises its graph,
    sends TensorFlow's C++ log lines to the log (:func:`native_log_lines_logged`)."""
    built: set = set()

    def call(iterator, *values):
        if values in built:
            return function(iterator, *values)
        built.add(values)
        with native_log_lines_logged(f"TensorFlow, building {what}"):
            return function(iterator, *values)

    return call


@contextlib.contextmanager
def native_log_lines_logged(source: str):
    """TensorFlow's C++ log lines written meanwhile go to the log instead of the terminal;
    everything else written to the process's stderr (Python's warnings, other threads'
    lines, a fatal error's) passes through. Graph building had put alarming lines on the
    terminal of healthy runs: every VAE and GAN training showed "E0000 ... remapper failed:
    INVALID_ARGUMENT: Mutation::Apply error: fanout ... LeakyReluGrad exist for missing node"
    (grappler declining to fuse a convolution with its LeakyReLU; the graph runs unfused, as
    intended), and mixed_float16 on most CPUs oneDNN's "supports DT_HALF only on platforms
    with AVX-512"."""
    try:
        sys.stderr.flush()
        terminal = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no stderr at all (2>&-): nothing reaches a terminal
        yield
        return
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def relay() -> None:
        pending = b""
        try:
            while chunk := os.read(read_end, 65536):
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    forward(line + b"\n")
            if pending:
                forward(pending)
        finally:
            os.close(read_end)
            os.close(terminal)

    def forward(line: bytes) -> None:
        if NATIVE_LOG_LINE.match(line):
            log.info("%s said: %s", source, line.decode("utf-8", "replace").rstrip())
            return
        with contextlib.suppress(OSError):  # the terminal gone: as if written to it
            os.write(terminal, line)

    relaying = threading.Thread(target=relay, name="zoo-native-log", daemon=True)
    relaying.start()
    try:
        yield
    finally:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            sys.stderr.flush()
        os.dup2(terminal, 2)  # the pipe's last writer closed: the relay reads its end and stops
        relaying.join(timeout=5)  # a process started meanwhile may hold the pipe open; it relays on


def logged_numbers(outputs) -> dict[str, float]:
    """The values a step returned (its losses, each metric's ``result()``) as numbers; one
    that is not a single number is one line naming it: a plugin metric whose result() gave
    a vector or text had failed the run on "tensorflow failed: TypeError: only
    0-dimensional arrays can be converted to Python scalars"."""
    import numpy as np

    logs = {}
    for name, value in outputs.items():
        array = np.asarray(value)
        if array.ndim != 0 or array.dtype.kind in "OSU":  # bfloat16's kind is V: a number all the same
            raise ZooError(
                f"the value logged as {name!r} (a metric's result(), or what a model's own step returns) is "
                f"{f'of shape {array.shape}' if array.ndim else 'text'}, not one number; it must be a scalar (zoo check tests a metric's)"
            )
        logs[name] = float(array)
    return logs


def _distribute(tf, strategy, batches):
    options = tf.data.Options()
    # Each worker keeps its share of every global batch (all shuffle alike: same seed).
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return strategy.experimental_distribute_dataset(batches.with_options(options))


def count_steps(batches) -> int:
    steps = int(batches.cardinality())
    if steps == INFINITE_CARDINALITY:  # check_splits refuses a split that repeats; a pipeline may still
        raise ZooError("the data's batches never end (a tf.data pipeline with .repeat()); the zoo goes over the data once an epoch")
    if steps < 0:  # unknown (a filtered pipeline): count once, identically on every worker
        steps = count_unknown(batches)
    if steps == 0:
        raise ZooError("the training split is smaller than one global batch; lower trainer.batch_size")
    return steps


def count_unknown(batches, chunk: int = 4096) -> int:
    """The batches of a pipeline of unknown length, counted a chunk at a time: between two
    chunks Python runs, so Ctrl-C or a scheduler's SIGTERM stops the count (TensorFlow's own
    ``reduce`` had run to the end in C, and a pipeline that never ended ignored every signal)."""
    steps, started, said = 0, time.monotonic(), False
    for counted in batches.map(lambda *_: 0).batch(chunk).as_numpy_iterator():
        steps += len(counted)
        if not said and time.monotonic() - started > 30:
            said = True
            log.info("counting the batches of a dataset of unknown length: %d so far (a pipeline that repeats never ends; Ctrl-C stops)", steps)
    return steps


def reduce_logs(tf, strategy, outputs) -> dict[str, float]:
    return logged_numbers({name: strategy.reduce(tf.distribute.ReduceOp.MEAN, value, axis=None) for name, value in outputs.items()})


def common_checkpoint(tf, strategy, steps: list[int]) -> Optional[int]:
    """The newest checkpoint step every worker has (``steps``: this worker's newest, newest
    first), or None when none has any. Workers save at the same steps, but a kill can stop
    one after a save that another had not reached: they differ by at most one save, and
    each keeps two."""
    mine = tf.constant([[*steps, *[-1] * (KEEP - len(steps))]], tf.int64)
    everyone = strategy.gather(strategy.run(lambda: mine), axis=0).numpy()
    if (everyone < 0).all():
        return None
    common = set.intersection(*({int(s) for s in row if s >= 0} for row in everyone))
    if not common:
        raise ZooError(
            f"the workers hold checkpoints of different steps ({', '.join(str(max(row)) for row in everyone)}): "
            "one lost its checkpoints (are the run directories where they were?); start a new run (another hydra.run.dir)"
        )
    return max(common)


def weights_digest(model) -> str:
    """A digest of every weight (trainable or not), equal on workers that agree bit for bit."""
    digest = hashlib.sha256()
    for weights in model.get_weights():
        digest.update(weights.tobytes())
    return digest.hexdigest()
