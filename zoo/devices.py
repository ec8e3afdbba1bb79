"""Placing a run on the ``device`` config's hardware, through ``tf.distribute``.

One device runs under TensorFlow's default strategy with only that device visible: Keras
then takes its plain, fast path (wrapping a single CPU in ``OneDeviceStrategy`` measured
twice as slow on a small model). Several GPUs, or a CPU split into logical devices, get a
``MirroredStrategy``; a TPU a ``TPUStrategy``; several machines a
``MultiWorkerMirroredStrategy`` with the cluster from TensorFlow's own resolvers.

Everything here must run before TensorFlow has initialised its devices: visibility and
logical devices can be set only once per process.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from zoo.config import DeviceConfig
from zoo.errors import ZooError, one_line

GPU_LOCK_DIR = Path(tempfile.gettempdir()) / "zoo-gpu-locks"


@dataclass
class Placement:
    """Where a run trains: its strategy, in words, and this process's role."""

    strategy: Any
    description: str
    chief: bool = True  # the process that writes the run directory
    multi_worker: bool = False
    task: str = ""  # in a multi-worker cluster: this process's task, e.g. "worker-1"
    cluster: dict = field(default_factory=dict)  # in a multi-worker cluster: "worker 1" -> its host:port


def place(device: DeviceConfig, worker_settings: Optional[dict[str, str]] = None) -> Placement:
    """The placement for ``device``. Call it before TensorFlow has run anything.
    ``worker_settings``: what the workers of a multi-worker cluster must agree on."""
    import tensorflow as tf

    kind = device.kind
    if kind == "tpu":
        return _tpu(tf, device)
    if kind == "multi_worker":
        return _multi_worker(tf, device, worker_settings)
    gpus = tf.config.list_physical_devices("GPU")
    if kind == "auto":
        kind = "multi_gpu" if len(gpus) > 1 else "gpu" if gpus else "cpu"
    if kind == "cpu":
        if gpus:
            _show_only(tf, [])
        if device.replicas == 1:
            return Placement(tf.distribute.get_strategy(), "cpu")
        cpu = tf.config.list_physical_devices("CPU")[0]
        if len(tf.config.get_logical_device_configuration(cpu) or [None]) != device.replicas:
            try:
                tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * device.replicas)
            except RuntimeError:
                raise _too_late("the CPU's logical devices") from None
        names = [d.name for d in tf.config.list_logical_devices("CPU")]
        return Placement(tf.distribute.MirroredStrategy(names), f"cpu x{device.replicas} (mirrored)")
    if not gpus:
        raise ZooError(
            f"device={kind} but TensorFlow sees no GPU (is the GPU build installed: pip install "
            f"'keras-zoo[gpu]'?); use device=cpu or device=auto"
        )
    if kind == "gpu":
        index = claim_free_gpu(len(gpus)) if device.index is None else device.index
        if not 0 <= index < len(gpus):
            raise ZooError(f"device.index={index} but only GPUs 0..{len(gpus) - 1} are visible")
        _show_only(tf, [gpus[index]])
        return Placement(tf.distribute.get_strategy(), f"gpu:{index}")
    indices = list(range(len(gpus))) if device.gpus is None else list(device.gpus)
    bad = [i for i in indices if not 0 <= i < len(gpus)]
    if bad or not indices:
        raise ZooError(f"device.gpus={indices} but the visible GPUs are 0..{len(gpus) - 1}")
    _show_only(tf, [gpus[i] for i in indices])
    strategy = tf.distribute.MirroredStrategy(devices=[f"/gpu:{i}" for i in range(len(indices))])
    return Placement(strategy, f"multi_gpu:{','.join(map(str, indices))}")


_held_gpu_lock: Optional[tuple[int, int]] = None  # (descriptor, GPU index): open for the life of the process


def claim_free_gpu(count: int, lock_dir: Path = GPU_LOCK_DIR) -> int:
    """The first of ``count`` GPUs that no other zoo process on this machine holds, held
    (by an OS file lock, released when the process ends) until this process exits.

    This is what gives each job of a local parallel sweep (joblib) its own GPU, also when
    the launcher reuses a worker process for several jobs: a process keeps its GPU. With
    every GPU taken, the jobs share GPU 0.

    The folder is shared by every user of the machine, as its GPUs are: it is made writable
    by all (sticky, as /tmp is), the locks are taken on files opened for reading (another
    user's are readable), and a link or a pipe put in a lock file's place is not followed
    or waited on: that GPU counts as taken.
    """
    import fcntl
    import stat

    global _held_gpu_lock
    if _held_gpu_lock is not None:
        return _held_gpu_lock[1]
    if not lock_dir.is_dir():
        try:
            lock_dir.mkdir(parents=True)
            os.chmod(lock_dir, 0o1777)  # mkdir's mode is cut by the umask
        except OSError:  # made by another process in the meantime; or not to be made: said below
            pass
    opened = False
    for index in range(count):
        try:
            descriptor = os.open(lock_dir / f"gpu-{index}.lock", os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
        except OSError:  # a link in its place, or another user's file we may not read
            continue
        opened = True
        try:
            if not stat.S_ISREG(os.fstat(descriptor).st_mode):
                raise OSError("not a lock file")
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(descriptor)
            continue
        _held_gpu_lock = (descriptor, index)
        return index
    from zoo.artifacts import private_temp_folder

    private = private_temp_folder("gpu-locks") if not opened else None
    if private is not None and private != lock_dir:
        # Another user made the shared folder without letting others write in it (or a file
        # stands there): every job had quietly shared GPU 0. This user's jobs still share out
        # the GPUs among themselves.
        logging.getLogger(__name__).warning("no GPU lock can be made in %s (%s): this user's jobs share out the GPUs through %s, "
                    "not with other users' jobs", lock_dir, "not a folder" if not lock_dir.is_dir() else "another user's folder", private)  # fmt: skip
        return claim_free_gpu(count, private)
    return 0


def _tpu(tf, device: DeviceConfig) -> Placement:
    address = re.fullmatch(r"grpc://([^/]+:\d+)/?", device.address)
    if address:  # TensorFlow waits for ever for an address where nothing answers
        from zoo.rendezvous import reach

        reach(address.group(1), device.timeout, "the TPU", "check device.address (grpc://host:8470 of a TPU that is up), or raise device.timeout")
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=device.address or None)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, OSError, tf.errors.OpError) as exc:  # OSError: a TPU name the Cloud API does not know
        where = f"at {device.address!r}" if device.address else "on this machine (a TPU VM)"
        raise ZooError(
            f"device=tpu found no TPU {where} ({one_line(exc)[:160]}); "
            f"set device.address=<TPU name or grpc://host:8470>, or use device=auto"
        ) from None
    strategy = tf.distribute.TPUStrategy(resolver)
    return Placement(strategy, f"tpu x{strategy.num_replicas_in_sync}")


def _multi_worker(tf, device: DeviceConfig, settings: Optional[dict[str, str]]) -> Placement:
    from zoo import rendezvous

    resolver, source = cluster_resolver(tf, device)
    spec = resolver.cluster_spec().as_dict()  # first: SLURM's resolver sets the task only here
    task_type, task_id = resolver.task_type, resolver.task_id
    cluster = check_cluster(spec, task_type, task_id, source)
    workers = spec.get("worker", [])
    # TensorFlow's own wait for the cluster cannot be bounded or interrupted: meet first.
    # Also where workers started with other settings are told so, before TensorFlow fails on it.
    rendezvous.meet(cluster, f"{task_type} {task_id}", device.timeout, {**(settings or {}), "cluster": repr(cluster)})
    try:
        strategy = tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
    except tf.errors.OpError as exc:  # e.g. the port taken in the instant between the meeting and here
        raise ZooError(f"TensorFlow could not join the cluster: {one_line(exc)[:200]}") from None
    chief = task_type == "chief" or (task_type == "worker" and task_id == 0 and "chief" not in resolver.cluster_spec().jobs)
    return Placement(
        strategy,
        f"multi_worker {task_type}:{task_id} of {len(workers)} (cluster from {source})",
        chief=chief,
        multi_worker=True,
        task=f"{task_type}-{task_id}",
        cluster=cluster,
    )


def check_cluster(spec: Any, task_type: Any, task_id: Any, source: str) -> dict[str, str]:
    """Every task of a multi-worker cluster by name (``worker 1``) and ``host:port``, after
    checking the shape TensorFlow's resolvers accept without it (a wrong one hangs or fails
    deep inside TensorFlow)."""
    example = '{"cluster": {"worker": ["host1:port", "host2:port"]}, "task": {"type": "worker", "index": 0}}'
    problem = None
    if not isinstance(spec, dict) or not spec:
        problem = "it is not JSON with a cluster, task.type and task.index"
    elif set(spec) - {"chief", "worker"}:
        problem = f"it has {sorted(set(spec) - {'chief', 'worker'})} jobs; a multi-worker run has only chief and worker"
    elif any(not isinstance(tasks, (list, tuple)) for tasks in spec.values()):
        problem = "each job must be a list of host:port"
    elif any(not isinstance(a, str) or not re.fullmatch(r"[^:\s]+:\d{1,5}", a) for t in spec.values() for a in t):
        problem = "each task must be a host:port string"
    elif len(spec.get("chief", [])) > 1:
        problem = "a cluster has at most one chief"
    elif task_type not in spec:
        problem = f"this task's type {task_type!r} is not a job of the cluster ({', '.join(spec)})"
    elif not isinstance(task_id, int) or not 0 <= task_id < len(spec[task_type]):
        problem = f"this task's index {task_id!r} is outside {task_type} 0..{len(spec[task_type]) - 1}"
    if problem:
        fix = f"it must look like {example}" if source == "TF_CONFIG" else "check it"
        raise ZooError(f"the cluster from {source} is not valid: {problem}; {fix}")
    return {f"{job} {i}": address for job in ("chief", "worker") for i, address in enumerate(spec.get(job, []))}


def cluster_resolver(tf, device: DeviceConfig) -> tuple[Any, str]:
    """TensorFlow's cluster resolver for ``device=multi_worker`` and where the cluster came
    from: ``device.workers``, ``TF_CONFIG``, or the SLURM job step."""
    resolvers = tf.distribute.cluster_resolver
    if device.workers:
        spec = tf.train.ClusterSpec({"worker": list(device.workers)})
        return resolvers.SimpleClusterResolver(spec, task_type="worker", task_id=device.rank, rpc_layer="grpc"), "device.workers"
    if os.environ.get("TF_CONFIG"):
        try:
            config = json.loads(os.environ["TF_CONFIG"])
            cluster, task_type, task_id = config["cluster"], config["task"]["type"], config["task"]["index"]
        except (ValueError, KeyError, TypeError, RecursionError):
            cluster = task_type = task_id = None  # refused below, with an example
        check_cluster(cluster, task_type, task_id, "TF_CONFIG")
        return resolvers.TFConfigClusterResolver(), "TF_CONFIG"
    if "SLURM_PROCID" in os.environ and ("SLURM_STEP_NUM_TASKS" in os.environ or "SLURM_NTASKS" in os.environ):
        gpus = _gpus_per_slurm_node()
        # TensorFlow's resolver pairs each task with GPUs of its node; on CPU nodes it would
        # pair, and so list, no task. Nominal GPUs, never made visible, let it list them all.
        share = {"gpus_per_node": gpus} if gpus else {"gpus_per_node": 1024, "gpus_per_task": 1, "auto_set_gpu": False}
        try:
            resolver = resolvers.SlurmClusterResolver(port_base=device.port, **share)
        except RuntimeError as exc:
            raise ZooError(f"cannot read the SLURM job step ({exc}); start one task per worker with srun") from None
        return resolver, "SLURM"
    raise ZooError(
        "device=multi_worker needs to know the cluster: set device.workers=[host1:port,host2:port] and "
        "device.rank=N on each worker, or a TF_CONFIG environment variable, or start the workers with srun"
    )


def _gpus_per_slurm_node() -> int:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip()])
    import shutil
    import subprocess

    if shutil.which("nvidia-smi") is None:
        return 0
    listed = subprocess.run(["nvidia-smi", "--list-gpus"], capture_output=True, text=True, check=False).stdout
    return len([line for line in listed.splitlines() if line.startswith("GPU ")])


def _show_only(tf, gpus: list) -> None:
    if tf.config.get_visible_devices("GPU") == gpus:
        return  # already so (a second run in the same process, e.g. a sequential sweep)
    try:
        tf.config.set_visible_devices(gpus, "GPU")
    except RuntimeError:  # TensorFlow already initialised its devices in this process
        raise _too_late("the GPUs TensorFlow may use") from None


def _too_late(what: str) -> ZooError:
    return ZooError(
        f"{what} can no longer be changed in this process: TensorFlow has started. Choose the device "
        f"before anything runs (a sequential sweep keeps the first job's device; or set CUDA_VISIBLE_DEVICES)"
    )
