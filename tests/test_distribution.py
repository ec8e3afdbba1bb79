"""Distribution on a CPU-only machine: mirrored replicas on logical CPUs, workers trained in
lockstep on 127.0.0.1, mixed precision, and the device configs' errors."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import socket
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import zoo
from zoo.config import make_config

from conftest import entries, error_lines, model_overrides, run_zoo, tiny_dataset, tiny_overrides

CNN = ["model=cnn_classifier", "dataset=digits", "trainer.epochs=2", "model.filters=8"]


def run_files(run_dir: Path) -> set[str]:
    """A run's files, by name: TensorBoard event files and checkpoints reduced to their
    folder (their names carry host, process and time, or the step); Hydra's own files left
    out."""
    names = set()
    for path in run_dir.rglob("*"):
        relative = path.relative_to(run_dir)
        if path.is_file() and relative.parts[0] != ".hydra" and path.name != "train.log":
            if "tfevents" in path.name or path.name.startswith("step-"):
                relative = relative.parent / "<numbered>"
            names.add(str(relative))
    return names


def history_columns(run_dir: Path) -> list[str]:
    with (run_dir / "history.csv").open(newline="") as handle:
        return next(csv.reader(handle))


def assert_same_run_shape(default_run, run_dir: Path) -> None:
    """Same files, same metric names, same history columns as the default run (the same
    model and dataset on one device): only the numbers may differ."""
    reference = default_run[0]
    # Checkpoints aside: a finished multi-worker chief keeps its last one (keep_checkpoints=auto).
    kept = lambda files: {f for f in files if not f.startswith("checkpoints/")}  # noqa: E731
    assert kept(run_files(run_dir)) == kept(run_files(reference))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics) == set(json.loads((reference / "metrics.json").read_text()))
    assert all(np.isfinite(v) for v in metrics.values()), metrics
    assert history_columns(run_dir) == history_columns(reference)


def assert_only_checkpoints(run_dir: Path, task: str) -> None:
    files = run_files(run_dir)
    assert files == {f"checkpoints/{task}/<numbered>"}, files


def free_ports(count: int, consecutive: bool = False) -> list[int]:
    """Ports free on 127.0.0.1 right now (``consecutive``: ``count`` in a row)."""
    for _ in range(50):
        sockets = []
        try:
            first = socket.socket()
            first.bind(("127.0.0.1", 0))
            sockets.append(first)
            ports = [first.getsockname()[1]]
            for offset in range(1, count):
                extra = socket.socket()
                extra.bind(("127.0.0.1", ports[0] + offset if consecutive else 0))
                sockets.append(extra)
                ports.append(extra.getsockname()[1])
            return ports
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError("no free ports on 127.0.0.1")


def run_workers(commands: list[list[str]], envs: list[dict], cwd: Path, timeout: int = 400) -> list[tuple[int, str, str]]:
    """Start every worker as its own `zoo train` process and wait for all of them."""
    base = {**os.environ, "PYTHONWARNINGS": "ignore::DeprecationWarning"}
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "zoo", "train", *command],
            cwd=cwd,
            env={**base, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        for command, env in zip(commands, envs)
    ]
    results = []
    try:
        for process in processes:
            out, err = process.communicate(timeout=timeout)
            results.append((process.returncode, out, err))
    finally:
        for process in processes:
            process.kill()
    return results


def final_digest(run_dir: Path) -> str:
    found = re.findall(r"final weights sha256 ([0-9a-f]{64})", (run_dir / "train.log").read_text())
    assert found, f"no final weights digest in {run_dir / 'train.log'}"
    return found[-1]


@pytest.mark.slow
def test_two_replicas_on_a_split_cpu_train_like_one_device_in_mixed_bfloat16(default_run, tmp_path):
    run_dir = tmp_path / "run"
    result = run_zoo(
        "train", *CNN, "device=cpu", "device.replicas=2", "trainer.steps_per_execution=3",
        "trainer.precision=mixed_bfloat16", "trainer.jit_compile=true", f"hydra.run.dir={run_dir}", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "device cpu x2 (mirrored), 2 replica(s)" in (run_dir / "train.log").read_text()
    assert "jit_compile is not applied: the training loop runs 2 replicas" in result.stdout + result.stderr
    assert_same_run_shape(default_run, run_dir)
    assert json.loads((run_dir / "metrics.json").read_text())["accuracy"] > 0.5
    with zipfile.ZipFile(run_dir / "model.keras") as archive:
        assert "mixed_bfloat16" in archive.read("config.json").decode()


@pytest.mark.slow  # keeps the default suite within its time
def test_an_xla_compiled_run_trains_with_every_default_metric(default_run, tmp_path):
    run_dir = tmp_path / "run"
    result = run_zoo("train", *CNN, "device=cpu", "trainer.jit_compile=true", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_same_run_shape(default_run, run_dir)


@pytest.mark.slow
def test_two_workers_on_loopback_train_a_classifier_in_lockstep(default_run, tmp_path):
    ports = free_ports(2)
    workers = f"device.workers=[127.0.0.1:{ports[0]},127.0.0.1:{ports[1]}]"
    run_dirs = [tmp_path / "chief", tmp_path / "worker1"]
    commands = [
        [*CNN, "device=multi_worker", workers, f"device.rank={rank}", "trainer.steps_per_execution=2",
         f"hydra.run.dir={run_dirs[rank]}"]
        for rank in (0, 1)
    ]  # fmt: skip
    results = run_workers(commands, [{}, {}], tmp_path)
    for code, out, err in results:
        assert code == 0, err[-3000:]
    assert final_digest(run_dirs[0]) == final_digest(run_dirs[1])
    assert "2 replica(s)" in (run_dirs[0] / "train.log").read_text()
    # Only the chief writes the run; its run has what a single-device run has. The other
    # worker keeps only its own checkpoints (workers need not share storage).
    assert_same_run_shape(default_run, run_dirs[0])
    assert_only_checkpoints(run_dirs[1], "worker-1")
    assert "the chief (worker 0) writes the run directory" in results[1][1]
    # Each step takes one global batch (trainer.batch_size, 32), split over the two workers.
    examples = len(zoo.create_dataset("digits").load(0).train[0])
    for run_dir in run_dirs:
        assert f"{examples // 32} steps per epoch, each global batch split over 2 replica(s)" in (run_dir / "train.log").read_text()
    assert json.loads((run_dirs[0] / "metrics.json").read_text())["accuracy"] > 0.5


@pytest.mark.slow  # keeps the default suite within its time
def test_two_workers_started_as_a_slurm_job_step_train_a_gan_in_lockstep(tmp_path):
    """The cluster read from the environment `srun` gives each task, by TensorFlow's
    SlurmClusterResolver: two tasks on one node take ports `device.port` and the next."""
    port = free_ports(2, consecutive=True)[0]
    run_dirs = [tmp_path / "task0", tmp_path / "task1"]
    commands = [
        ["model=gan", "dataset=digits", "trainer.epochs=1", "device=multi_worker", f"device.port={port}",
         f"hydra.run.dir={run_dirs[rank]}"]
        for rank in (0, 1)
    ]  # fmt: skip
    slurm = {
        "SLURM_JOB_ID": "4242", "SLURM_STEP_NUM_TASKS": "2", "SLURM_NTASKS": "2",
        "SLURM_STEP_NODELIST": "127.0.0.1", "SLURM_STEP_TASKS_PER_NODE": "2", "CUDA_VISIBLE_DEVICES": "",
    }  # fmt: skip
    results = run_workers(commands, [{**slurm, "SLURM_PROCID": str(rank)} for rank in (0, 1)], tmp_path)
    for code, out, err in results:
        assert code == 0, err[-3000:]
    assert "(cluster from SLURM)" in (run_dirs[0] / "train.log").read_text()
    assert final_digest(run_dirs[0]) == final_digest(run_dirs[1])
    assert (run_dirs[0] / "plots" / "samples.png").is_file()
    assert history_columns(run_dirs[0]) == ["epoch", "d_loss", "g_loss", "lr", "val_d_loss", "val_g_loss"]
    assert_only_checkpoints(run_dirs[1], "worker-1")


def test_cluster_comes_from_tf_config_and_a_missing_cluster_is_explained(monkeypatch):
    import tensorflow as tf

    from zoo.config import DeviceConfig
    from zoo.devices import cluster_resolver
    from zoo.errors import ZooError

    device = DeviceConfig(kind="multi_worker")
    monkeypatch.delenv("SLURM_PROCID", raising=False)
    config = {"cluster": {"worker": ["127.0.0.1:5000", "127.0.0.1:5001"]}, "task": {"type": "worker", "index": 1}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(config))
    resolver, source = cluster_resolver(tf, device)
    assert source == "TF_CONFIG"
    assert resolver.cluster_spec().as_dict() == config["cluster"]
    assert (resolver.task_type, resolver.task_id) == ("worker", 1)

    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ZooError, match="the cluster from TF_CONFIG is not valid: it is not JSON"):
        cluster_resolver(tf, device)
    monkeypatch.delenv("TF_CONFIG")
    with pytest.raises(ZooError, match=r"device.workers=\[host1:port,host2:port\] and device.rank=N"):
        cluster_resolver(tf, device)


@pytest.mark.parametrize(
    "cluster,task,problem",
    [
        ({"worker": "127.0.0.1:5000"}, ("worker", 0), "each job must be a list of host:port"),
        ({"worker": [5000]}, ("worker", 0), "each task must be a host:port string"),
        ({"ps": ["127.0.0.1:5000"], "worker": ["127.0.0.1:5001"]}, ("worker", 0), "['ps'] jobs"),
        ({"chief": ["a:1", "b:2"], "worker": ["c:3"]}, ("worker", 0), "at most one chief"),
        ({"worker": ["a:1", "b:2"]}, ("chief", 0), "task's type 'chief' is not a job"),
        ({"worker": ["a:1", "b:2"]}, ("worker", 2), "index 2 is outside worker 0..1"),
        ({"worker": ["a:1", "b:2"]}, ("worker", "1"), "index '1' is outside"),
        ([], ("worker", 0), "not JSON with a cluster"),
    ],
)
def test_a_tf_config_of_the_wrong_shape_is_refused_in_one_line(cluster, task, problem):
    """Shapes that TensorFlow's resolver takes and then hangs on or fails deep inside."""
    from zoo.devices import check_cluster
    from zoo.errors import ZooError

    with pytest.raises(ZooError, match=re.escape(problem)) as raised:
        check_cluster(cluster, *task, "TF_CONFIG")
    assert "\n" not in str(raised.value) and '"task": {"type": "worker", "index": 0}' in str(raised.value)


def test_a_tf_config_of_the_wrong_shape_fails_zoo_train_in_one_line(tmp_path):
    tf_config = {"cluster": {"worker": ["127.0.0.1:5000"]}, "task": {"type": "worker", "index": 3}}
    result = run_zoo("train", "device=multi_worker", cwd=tmp_path, env={"TF_CONFIG": json.dumps(tf_config)})
    assert result.returncode == 2
    assert error_lines(result.stderr) == [
        "zoo: error: the cluster from TF_CONFIG is not valid: this task's index 3 is outside worker 0..0; it must look "
        'like {"cluster": {"worker": ["host1:port", "host2:port"]}, "task": {"type": "worker", "index": 0}}'
    ], result.stderr[-2000:]
    assert not (tmp_path / "runs").exists()
    nested = run_zoo("train", "device=multi_worker", cwd=tmp_path, env={"TF_CONFIG": "[" * 100_000})  # past json's recursion
    assert nested.returncode == 2 and "Traceback" not in nested.stderr, nested.stderr[-2000:]
    assert "TF_CONFIG is not valid: it is not JSON with a cluster" in error_lines(nested.stderr)[0]
    assert not (tmp_path / "runs").exists()


def test_workers_started_at_different_times_meet_before_tensorflow_does():
    import threading
    import time

    from zoo import rendezvous

    cluster = {f"worker {i}": f"127.0.0.1:{port}" for i, port in enumerate(free_ports(3))}
    met, errors = {}, []

    def worker(name: str, delay: float) -> None:
        time.sleep(delay)
        try:
            rendezvous.meet(cluster, name, timeout=30)
            met[name] = time.monotonic()
        except Exception as exc:  # reported by the assertion below
            errors.append(exc)

    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(name, 1.5 * i)) for i, name in enumerate(cluster)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors and set(met) == set(cluster)
    # Nobody goes on before the last one has started; everyone soon after.
    assert all(3.0 <= t - started < 10 for t in met.values()), {n: t - started for n, t in met.items()}
    # The ports are free again for TensorFlow's servers.
    for address in cluster.values():
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(("", int(address.rsplit(":", 1)[1])))


def test_a_connection_the_meeting_took_from_tensorflow_is_shut_when_the_worker_goes_on():
    """A peer that met everyone first goes on to TensorFlow, whose first connection can reach
    this worker's meeting port before it closes. Left to a thread that never runs again once
    TensorFlow holds the interpreter, it stayed open unanswered: both workers' TensorFlows
    waited for ever (TensorFlow 2.16, two workers started together on a busy machine). It is
    shut as the meeting ends, so TensorFlow connects again, to its own server."""
    import time

    from zoo import rendezvous

    port = free_ports(1)[0]
    listener = rendezvous._Listener(f"127.0.0.1:{port}", "worker 0", {"worker 1"}, {})
    with socket.create_connection(("127.0.0.1", port)) as tensorflows:  # a peer TensorFlow's connection, saying nothing yet
        with listener:
            time.sleep(1.0)  # the listener takes it (it looks every 0.2 s) and starts answering
        tensorflows.settimeout(rendezvous.HANDSHAKE_S / 2)  # before the exchange's own bound
        assert tensorflows.recv(1) == b""


def test_workers_started_with_other_settings_are_refused_by_both_naming_what_differs():
    import threading

    from zoo import rendezvous
    from zoo.errors import ZooError

    def meet_all(settings: dict[str, dict]) -> dict[str, Exception]:
        cluster = {name: f"127.0.0.1:{port}" for name, port in zip(settings, free_ports(len(settings)))}
        errors: dict[str, Exception] = {}

        def worker(name: str) -> None:
            try:
                rendezvous.meet(cluster, name, timeout=20, settings=settings[name])
            except Exception as exc:  # reported by the assertions below
                errors[name] = exc

        threads = [threading.Thread(target=worker, args=(name,)) for name in settings]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(40)
        return errors

    same = {"trainer.batch_size": "32", "seed": "0", "version of tensorflow": "2.21.0"}
    assert meet_all({"worker 0": same, "worker 1": dict(same), "worker 2": dict(same)}) == {}
    # TensorFlow would fail minutes in (a collective of another size, a peer that "stopped
    # answering"), or train each worker on its own split: both sides refuse at once.
    errors = meet_all({"worker 0": same, "worker 1": {**same, "trainer.batch_size": "64"}})
    assert set(errors) == {"worker 0", "worker 1"} and all(isinstance(e, ZooError) for e in errors.values()), errors
    assert re.fullmatch(
        r"worker 1 \(127\.0\.0\.1:\d+\) was started with other settings \(trainer\.batch_size is 64 there, 32 here\); "
        r"start every worker with the same command but its device\.rank",
        str(errors["worker 0"]),
    ), errors
    assert "trainer.batch_size is 32 there, 64 here" in str(errors["worker 1"])
    # A key only one side has, and other versions: the fix is then to install the same ones.
    errors = meet_all({"worker 0": same, "worker 1": {**same, "version of tensorflow": "2.20.0", "extra": "1"}})
    assert "extra is unset there, 1 here" in str(errors["worker 1"]) and "version of tensorflow is 2.20.0 there, 2.21.0 here" in str(
        errors["worker 0"]
    )
    assert all(str(e).endswith("install the same versions on every machine") for e in errors.values()), errors


def test_a_worker_given_a_port_only_root_may_open_says_so():
    """A port below 1024 is refused to users other than root with "Permission denied": the
    line had said another process held it (root is bound too in a user namespace)."""
    script = "from zoo import rendezvous\nrendezvous.meet({'worker 0': '127.0.0.1:80', 'worker 1': '127.0.0.1:81'}, 'worker 0', timeout=1)"
    prefix = ["unshare", "--user"] if os.geteuid() == 0 else []
    result = subprocess.run([*prefix, sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    if "cannot listen" not in result.stderr:
        pytest.skip(f"port 80 may be opened here ({os.getuid()=}, net.ipv4.ip_unprivileged_port_start)")
    assert result.stderr.strip().splitlines()[-1] == (
        "zoo.errors.ZooError: worker 0 cannot listen on port 80 (Permission denied): ports below 1024 are the "
        "administrator's (root's); give this worker a port from 1024 up in device.workers"
    )


def test_a_worker_whose_port_is_taken_or_held_by_a_stranger_says_so_in_time():
    from zoo import rendezvous
    from zoo.errors import ZooError

    ports = free_ports(2)
    cluster = {"worker 0": f"127.0.0.1:{ports[0]}", "worker 1": f"127.0.0.1:{ports[1]}"}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", ports[0]))
        taken.listen()
        with pytest.raises(ZooError, match=f"worker 0 cannot listen on port {ports[0]} .*another process holds it"):
            rendezvous.meet(cluster, "worker 0", timeout=5)
    # A stranger answering on a peer's port is not the peer: it is still missing at the end, and said to be there.
    with socket.socket() as stranger:
        stranger.bind(("127.0.0.1", ports[1]))
        stranger.listen()
        with pytest.raises(ZooError, match=re.escape(f"gave up after device.timeout=2 s waiting for worker 1 (127.0.0.1:{ports[1]}: no answer")):
            rendezvous.meet(cluster, "worker 0", timeout=2)


@pytest.mark.parametrize(
    "peer, problem",
    [  # each had been "waiting for worker 1 ...: start them", the fix for a worker not started
        ("nosuchhost.invalid", "no such host name here"),  # a misspelt name (RFC 6761: .invalid resolves nowhere)
        ("stranger", "something other than a zoo worker answers there"),  # another service on the port given
    ],
)
def test_a_peer_this_worker_cannot_reach_is_named_with_why(peer, problem, capsys):
    import threading

    from zoo import rendezvous
    from zoo.errors import ZooError

    ports = free_ports(2)
    with socket.socket() as stranger:
        stranger.bind(("127.0.0.1", ports[1]))
        stranger.listen()

        def answer() -> None:
            with contextlib.suppress(OSError):
                while True:
                    connection, _ = stranger.accept()
                    connection.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")
                    connection.close()

        threading.Thread(target=answer, daemon=True).start()
        address = f"{peer}:{ports[1]}" if peer != "stranger" else f"127.0.0.1:{ports[1]}"
        cluster = {"worker 0": f"127.0.0.1:{ports[0]}", "worker 1": address}
        with pytest.raises(ZooError) as info:
            rendezvous.meet(cluster, "worker 0", timeout=3)
    assert f"waiting for worker 1 ({address}: {problem}" in str(info.value)
    assert "check the host names and ports in device.workers, and that this machine reaches them" in str(info.value)
    assert f"waiting for worker 1 ({address}: {problem}" in capsys.readouterr().out  # said while it waits too


def test_strangers_on_the_ports_neither_hold_a_worker_nor_stop_the_run():
    """A port scanner, a health check or anyone on the network may connect. One sending a
    byte every 3 s had held a worker's greeting past device.timeout and its signals (302 s
    for a 5 s timeout), and three such connections to a worker's listener kept its peer from
    being heard at all; a stranger greeting under a name not in the cluster stopped the run
    with "other settings"."""
    import threading
    import time

    from zoo import rendezvous
    from zoo.errors import ZooError

    def trickle(connection: socket.socket) -> None:
        try:
            for _ in range(40):
                connection.sendall(b"k")
                time.sleep(3)
        except OSError:  # the worker hung up: what it should do
            pass

    ports = free_ports(2)
    cluster = {"worker 0": f"127.0.0.1:{ports[0]}", "worker 1": f"127.0.0.1:{ports[1]}"}
    with socket.socket() as stranger:  # answers on worker 1's port, slowly
        stranger.bind(("127.0.0.1", ports[1]))
        stranger.listen()

        def answer_slowly() -> None:
            while True:
                try:
                    connection, _ = stranger.accept()
                except OSError:
                    return
                threading.Thread(target=trickle, args=(connection,), daemon=True).start()

        threading.Thread(target=answer_slowly, daemon=True).start()
        started = time.monotonic()
        with pytest.raises(ZooError, match=re.escape("gave up after device.timeout=2 s waiting for worker 1")):
            rendezvous.meet(cluster, "worker 0", timeout=2)
        assert time.monotonic() - started < 2 + rendezvous.HANDSHAKE_S + 3

    ports = free_ports(2)
    cluster = {"worker 0": f"127.0.0.1:{ports[0]}", "worker 1": f"127.0.0.1:{ports[1]}"}
    met, errors = {}, []

    def worker(name: str, delay: float) -> None:
        time.sleep(delay)
        try:
            rendezvous.meet(cluster, name, timeout=30, settings={"seed": "0"})
            met[name] = time.monotonic()
        except Exception as exc:  # reported by the assertion below
            errors.append(exc)

    def strangers() -> None:
        time.sleep(0.5)  # worker 0 listens; worker 1 is not started yet
        for _ in range(3):
            threading.Thread(target=trickle, args=(socket.create_connection(("127.0.0.1", ports[0])),), daemon=True).start()
        with socket.create_connection(("127.0.0.1", ports[0])) as impostor:
            impostor.sendall(rendezvous.GREETING + b"worker 7\n" + b'{"seed": "1"}\n' + b"ok\n")
            impostor.recv(1000)

    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=("worker 0", 0.0)), threading.Thread(target=worker, args=("worker 1", 2.0))]
    threads.append(threading.Thread(target=strangers, daemon=True))
    for thread in threads:
        thread.start()
    for thread in threads[:2]:
        thread.join(60)
    assert not errors and set(met) == set(cluster), errors
    assert all(t - started < 8 for t in met.values()), {n: t - started for n, t in met.items()}


@pytest.mark.slow
def test_a_worker_alone_says_what_it_waits_for_gives_up_in_time_and_stops_on_a_signal(tmp_path):
    import signal
    import time

    ports = free_ports(3)
    workers = f"device.workers=[127.0.0.1:{ports[0]},127.0.0.1:{ports[1]},127.0.0.1:{ports[2]}]"
    result = run_zoo("train", "device=multi_worker", workers, "device.rank=1", "device.timeout=4", cwd=tmp_path, timeout=120)
    assert result.returncode == 2
    assert f"waiting for worker 0 (127.0.0.1:{ports[0]}), worker 2 (127.0.0.1:{ports[2]}) to start" in result.stdout
    assert error_lines(result.stderr) == [
        f"zoo: error: gave up after device.timeout=4 s waiting for worker 0 (127.0.0.1:{ports[0]}), worker 2 "
        f"(127.0.0.1:{ports[2]}): start them (the same command on each machine, with its own rank), or raise device.timeout"
    ], result.stderr[-2000:]
    assert not (tmp_path / "runs").exists()  # nothing was written: no folder left

    process = subprocess.Popen(
        [sys.executable, "-m", "zoo", "train", "device=multi_worker", workers, "device.rank=0"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        for line in process.stdout:  # TensorFlow's own wait ignored both signals
            if line.startswith("waiting for worker 1"):
                break
        process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        err = process.communicate(timeout=30)[1]
        assert time.monotonic() - started < 5
    finally:
        process.kill()
    assert process.returncode == 128 + signal.SIGTERM
    assert error_lines(err)[0].startswith("zoo: error: stopped by SIGTERM while waiting for worker 1"), err[-2000:]
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow  # two TensorFlow processes
def test_zoo_train_workers_with_other_settings_stop_before_training_naming_the_setting(tmp_path):
    ports = free_ports(2)
    workers = f"device.workers=[127.0.0.1:{ports[0]},127.0.0.1:{ports[1]}]"
    # Rank, timeout and loggers are each worker's own; the batch size is not.
    own = [["trainer.batch_size=32", "device.timeout=60"], ["trainer.batch_size=64", "device.timeout=50", "loggers=none"]]
    commands = [[*CNN, "device=multi_worker", workers, f"device.rank={rank}", *own[rank]] for rank in (0, 1)]
    results = run_workers(commands, [{}, {}], tmp_path, timeout=120)
    for rank, (code, out, err) in enumerate(results):
        other = 1 - rank
        assert code == 2 and error_lines(err) == [
            f"zoo: error: worker {other} (127.0.0.1:{ports[other]}) was started with other settings (trainer.batch_size "
            f"is {own[other][0][-2:]} there, {own[rank][0][-2:]} here); start every worker with the same command but its device.rank"
        ], err[-2000:]
    assert not (tmp_path / "runs").exists()  # nothing trained, nothing left


@pytest.mark.slow  # two TensorFlow processes
def test_zoo_train_workers_that_loaded_other_data_stop_before_training_naming_what_differs(tmp_path):
    # Each worker's dataset.path is its own; the files there are not: one worker's copy of
    # the corpus is cut short (TensorFlow failed on a collective of another type with it).
    corpus = "".join(f"line {i} of a corpus that both workers should hold alike\n" for i in range(300))
    (tmp_path / "whole.txt").write_text(corpus)
    (tmp_path / "cut.txt").write_text(corpus[: len(corpus) * 2 // 3])
    ports = free_ports(2)
    workers = f"device.workers=[127.0.0.1:{ports[0]},127.0.0.1:{ports[1]}]"
    text = ["model=gru_text_generator", "dataset=text", "model.units=8", "model.embedding_dim=4", "trainer.epochs=1"]
    paths = ["dataset.path=whole.txt", "dataset.path=cut.txt"]
    commands = [[*text, "device=multi_worker", workers, f"device.rank={rank}", paths[rank]] for rank in (0, 1)]
    results = run_workers(commands, [{}, {}], tmp_path, timeout=120)
    for rank, (code, out, err) in enumerate(results):
        lines = error_lines(err)
        assert code == 2 and len(lines) == 1, err[-2000:]
        assert re.fullmatch(
            rf"zoo: error: worker {1 - rank} loaded other data than worker {rank} \(training examples: \d+ there, \d+ here; "
            r"training batches per epoch: \d+ there, \d+ here; other training examples' content\); each worker reads the "
            r"dataset from its own dataset.path, which may name another place on each machine but must hold the same files",
            lines[0],
        ), lines[0]
    assert not (tmp_path / "runs").exists()  # nothing trained, nothing left


LOADS_ITS_OWN_WEIGHTS = """
import os
from dataclasses import dataclass

import zoo


@dataclass
class Options:
    pass


def build(config, spec):
    import keras
    import numpy as np

    inputs = keras.Input(spec.input_shape)
    outputs = keras.layers.Dense(spec.num_classes, activation="softmax")(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, outputs)
    # As a plugin loading weights from a file on each machine does: after the variables exist.
    model.set_weights([np.full(w.shape, float(os.environ["START_VALUE"]), w.dtype) for w in model.get_weights()])
    return model


@zoo.hookimpl
def register_models():
    return [zoo.ModelPlugin("own_start", "Starts from weights of its own.", Options, build)]
"""


@pytest.mark.slow  # a plugin installed, two TensorFlow processes
def test_zoo_train_workers_whose_models_start_from_other_weights_stop_before_training(tmp_path):
    """A model warm-started on each machine from what is there (trainer.init_from naming a
    run that differs between machines, a plugin loading its weights): each worker trained
    a model of its own, the chief's saved as the run's, all quietly."""
    from conftest import install, make_distribution

    site = tmp_path / "site"
    install(make_distribution(tmp_path, "zoo-own-start", LOADS_ITS_OWN_WEIGHTS), site)
    ports = free_ports(2)
    workers = f"device.workers=[127.0.0.1:{ports[0]},127.0.0.1:{ports[1]}]"
    commands = [["model=own_start", "trainer.epochs=1", "device=multi_worker", workers, f"device.rank={rank}"] for rank in (0, 1)]
    results = run_workers(commands, [{"PYTHONPATH": str(site), "START_VALUE": value} for value in ("0.01", "0.02")], tmp_path, timeout=120)
    for rank, (code, out, err) in enumerate(results):
        assert code == 2 and error_lines(err) == [
            f"zoo: error: worker {1 - rank} built another model than worker {rank} (other initial weights); every worker "
            "must start from the same weights: trainer.init_from and a distillation teacher must name the same run on "
            "every machine, and each machine have the same plugins' versions"
        ], err[-2000:]
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow  # two workers training
def test_a_worker_killed_mid_training_ends_its_peer_in_one_line_that_says_how_to_continue(tmp_path):
    ports = free_ports(2)
    workers = f"device.workers=[127.0.0.1:{ports[0]},127.0.0.1:{ports[1]}]"
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "zoo", "train", *CNN, "trainer.epochs=40", "device=multi_worker", workers,
             f"device.rank={rank}", f"hydra.run.dir={tmp_path / str(rank)}"],
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        for rank in (0, 1)
    ]
    try:
        for line in processes[0].stdout:
            if line.startswith("epoch 2/"):
                break
        processes[1].kill()
        err = processes[0].communicate(timeout=120)[1]
    finally:
        for process in processes:
            process.kill()
    assert processes[0].returncode == 2
    lines = error_lines(err)
    assert len(lines) == 1 and lines[0].startswith("zoo: error: worker 1 stopped answering during training"), err[-3000:]
    assert "its checkpoint at the end of epoch" in lines[0] and "start every worker again with the same command" in lines[0]
    assert "Traceback" not in err and "eagerly has significant overhead" not in err


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["device=multi_worker", "device.workers=[127.0.0.1:1,127.0.0.1:2]"], "device.rank=0..1"),
        (["device=multi_worker", "device.workers=[nohost]", "device.rank=0"], "list of host:port"),
        (["device=cpu", "device.replicas=0"], "replicas must be from 1 to 64"),
        (["trainer.precision=float16"], "trainer.precision='float16' is not supported"),
        (["trainer.jit_compile=maybe"], "jit_compile='maybe' is not supported"),
        (["-m", "model.filters=4,8", "--cfg", "job"], "--cfg shows one run's config; ask without -m"),
        (["hydra.mode=2", "--cfg", "job"], "--cfg shows one run's config; ask without -m"),  # a sweep however spelt
    ],
)
def test_bad_device_and_trainer_settings_fail_in_one_line(overrides, message, tmp_path):
    result = run_zoo("train", *overrides, cwd=tmp_path)
    assert result.returncode != 0
    assert len(error_lines(result.stderr)) == 1 and message in result.stderr, result.stderr[-2000:]
    assert not (tmp_path / "runs").exists()


def test_tpu_without_a_tpu_fails_in_one_line(tmp_path):
    result = run_zoo("train", "device=tpu", "trainer.epochs=1", cwd=tmp_path, timeout=120)
    assert result.returncode != 0
    assert len(error_lines(result.stderr)) == 1 and "device=tpu found no TPU" in result.stderr, result.stderr[-2000:]
    # An address where nothing answers: TensorFlow waited in silence for ever (killed at 200 s).
    (port,) = free_ports(1)
    address = f"grpc://127.0.0.1:{port}"
    result = run_zoo("train", "device=tpu", f"device.address={address}", "device.timeout=2", "trainer.epochs=1", cwd=tmp_path, timeout=120)
    assert result.returncode == 2 and error_lines(result.stderr) == [
        f"zoo: error: gave up after device.timeout=2 s waiting for the TPU at 127.0.0.1:{port} (Connection refused); "
        "check device.address (grpc://host:8470 of a TPU that is up), or raise device.timeout"
    ], result.stderr[-2000:]


def test_gpu_slots_go_to_one_process_each(tmp_path):
    """Each process of a parallel sweep claims a GPU no other holds, and keeps it."""
    script = (
        "import sys, time; from pathlib import Path; from zoo.devices import claim_free_gpu; "
        "d = Path(sys.argv[1]); print(claim_free_gpu(3, d), claim_free_gpu(3, d), flush=True); time.sleep(3)"
    )
    processes = [
        subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    claims = [process.communicate(timeout=60)[0].split() for process in processes]
    assert all(first == again for first, again in claims)  # a process keeps its GPU
    assert sorted(int(first) for first, _ in claims) == [0, 1, 2]
    # The folder, shared with the machine's other users, is made writable by all (sticky as
    # /tmp); a link or a pipe put in a lock file's place is neither followed nor waited on.
    shared = tmp_path / "made" / "locks"
    script = script.replace("claim_free_gpu(3, d), claim_free_gpu(3, d)", "claim_free_gpu(3, d)").replace("time.sleep(3)", "")
    first = subprocess.run([sys.executable, "-c", script, str(shared)], capture_output=True, text=True, timeout=60)
    assert first.stdout.split() == ["0"] and oct(shared.stat().st_mode & 0o7777) == oct(0o1777), first.stderr[-2000:]
    mine = tmp_path / "mine.txt"
    mine.write_text("mine")
    (shared / "gpu-0.lock").unlink()
    (shared / "gpu-0.lock").symlink_to(mine)
    os.mkfifo(shared / "gpu-1.lock")
    claimed = subprocess.run([sys.executable, "-c", script, str(shared)], capture_output=True, text=True, timeout=60)
    assert claimed.stdout.split() == ["2"] and mine.read_text() == "mine", claimed.stderr[-2000:]
    # No lock can be made where the folder should be (a file there; another user's folder
    # closed to others): every job had quietly shared GPU 0. This user's jobs share them out.
    blocked = tmp_path / "blocked"
    blocked.write_text("not a folder")
    script = script.rstrip("; ") + "; time.sleep(3)"  # both at once
    processes = [subprocess.Popen([sys.executable, "-c", script, str(blocked)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env={**os.environ, "TMPDIR": str(tmp_path)}) for _ in range(2)]  # fmt: skip
    outputs = [process.communicate(timeout=60) for process in processes]
    assert sorted(out.split()[0] for out, _ in outputs) == ["0", "1"], outputs
    assert all(f"no GPU lock can be made in {blocked} (not a folder): this user's jobs share out the GPUs through "
               f"{tmp_path / f'zoo-gpu-locks-{os.geteuid()}'}" in err for _, err in outputs), outputs  # fmt: skip


def first_dataset_for(model) -> str:
    for dataset in entries("dataset"):
        spec = tiny_dataset(dataset.name).spec
        rank = model.item.input_rank
        if spec.task in model.item.tasks and (rank is None or rank == len(spec.input_shape)):
            if not (model.item.accepts and model.item.accepts(make_config(model, model.item.tiny), spec)):
                return dataset.name
    raise AssertionError(f"no dataset fits {model.name}")


@pytest.fixture
def bfloat16_policy():
    import keras

    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    yield
    keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("model", entries("model"), ids=lambda e: e.name)
def test_every_model_trains_a_step_in_mixed_bfloat16_on_the_cpu(model, bfloat16_policy):
    from zoo.config import compose, plan_run
    from zoo.run import as_tf_dataset, compile_model

    import keras
    import tensorflow as tf

    dataset_name = first_dataset_for(model)
    overrides = [f"dataset.{k}={v}" for k, v in tiny_overrides(dataset_name).items()] + model_overrides(model.name)
    plan = plan_run(compose([f"model={model.name}", f"dataset={dataset_name}", "trainer.precision=mixed_bfloat16", *overrides]))
    dataset = tiny_dataset(dataset_name)
    splits = dataset.load(0)
    batch = next(iter(as_tf_dataset(tf, splits.train, 16, reconstruct=model.item.objective == zoo.RECONSTRUCTION)))
    keras.utils.set_random_seed(0)
    net = compile_model(keras, plan, plan.model.item.factory(plan.model_config, plan.spec), training=True)
    assert net.dtype_policy.name == "mixed_bfloat16"
    assert any(w.dtype == "float32" for w in net.trainable_weights)  # variables stay float32
    logs = net.train_on_batch(*batch, return_dict=True)
    assert logs and all(np.isfinite(float(v)) for v in logs.values()), logs


@pytest.mark.parametrize("model", entries("model"), ids=lambda e: e.name)
def test_every_model_trains_under_a_mirrored_strategy(model):
    """The training loop under a one-device MirroredStrategy (replicas on logical devices
    need a fresh process: the tests above start those)."""
    import keras
    import tensorflow as tf

    from zoo.config import compose, plan_run
    from zoo.training import fit
    from zoo.run import as_tf_dataset, compile_model

    dataset_name = first_dataset_for(model)
    overrides = [f"dataset.{k}={v}" for k, v in tiny_overrides(dataset_name).items()] + model_overrides(model.name)
    plan = plan_run(compose([f"model={model.name}", f"dataset={dataset_name}", *overrides]))
    splits = tiny_dataset(dataset_name).load(0)
    reconstruct = model.item.objective == zoo.RECONSTRUCTION
    train_data = as_tf_dataset(tf, splits.train, 8, reconstruct=reconstruct, drop_remainder=True).take(5)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    keras.utils.set_random_seed(0)
    with strategy.scope():
        net = compile_model(keras, plan, plan.model.item.factory(plan.model_config, plan.spec), training=True)
    before = [w.copy() for w in net.get_weights()]
    history = fit(tf, net, strategy, lambda epoch: train_data, epochs=2, steps_per_execution=2).history
    assert history and all(len(values) == 2 and np.all(np.isfinite(values)) for values in history.values()), history
    assert any(not np.array_equal(a, b) for a, b in zip(before, net.get_weights()))


def test_a_checkpoint_of_other_steps_per_epoch_is_refused_naming_the_device(tmp_path):
    """A run stopped on one replica and continued on two takes whole batches only (the
    epoch's last, partial one dropped): its checkpoint's steps no longer fit. The refusal
    had blamed only the data or the batch size."""
    import keras
    import tensorflow as tf

    from zoo.checkpoints import Checkpoints
    from zoo.training import fit

    x, y = np.random.default_rng(0).random((30, 4), "float32"), np.zeros(30, "int32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    data = tf.data.Dataset.from_tensor_slices((x, y))
    strategy = tf.distribute.get_strategy()
    fit(tf, model, strategy, lambda epoch: data.batch(8), 1, checkpoints=Checkpoints(tmp_path))  # 4 steps, the last of 6
    with pytest.raises(zoo.ZooError) as info:
        fit(tf, model, strategy, lambda epoch: data.batch(8, drop_remainder=True), 2, checkpoints=Checkpoints(tmp_path))
    assert "was taken at 4 steps per epoch, this run has 3 (the data, trainer.batch_size, or the device changed" in str(info.value)
    assert str(info.value).endswith("continue it on the device it began on, or start a new run (another hydra.run.dir)")



@dataclass
class CorpusConfig:
    corpus: str = zoo.data_path("A text file.", default="???")


def test_workers_may_keep_any_declared_data_path_where_their_machine_has_it(tmp_path):
    """Each machine of a multi-worker run keeps the data where it has it: allowed for
    `dataset.path` only, so a plugin's `dataset.corpus` at /mnt/a on one worker and /data/a
    on another was refused as settings that differ. Any zoo.data_path field may differ."""
    from types import SimpleNamespace

    from zoo.config import compose, plan_run
    from zoo.registry import register_plugin, reset_registry
    from zoo.run import recorded_config, worker_settings

    class Corpus:
        @zoo.hookimpl
        def register_datasets(self):
            spec = zoo.DataSpec(task=zoo.CLASSIFICATION, input_shape=(3,), num_classes=2, class_names=("a", "b"))
            return [zoo.DatasetPlugin("corpus_rows", "Rows of a file.", CorpusConfig, lambda config: spec, lambda config, seed: None)]

    versions = SimpleNamespace(__version__="0")
    reset_registry()
    try:
        register_plugin(Corpus(), "corpus")
        settings = []
        for place in ("mnt", "data"):
            cfg = compose(["model=mlp_classifier", "dataset=corpus_rows", f"dataset.corpus={tmp_path / place / 'a.txt'}", "seed=3"])
            plan = plan_run(cfg)
            settings.append(worker_settings(versions, versions, plan, recorded_config(cfg, plan)))
    finally:
        reset_registry()
    assert settings[0] == settings[1] and settings[0]["seed"] == "3"
    reset_registry()
    try:  # a URL is no file name: taken as given, wherever the run starts
        register_plugin(Corpus(), "corpus")
        cfg = compose(["model=mlp_classifier", "dataset=corpus_rows", "dataset.corpus=gs://bucket/a.txt"])
        assert recorded_config(cfg, plan_run(cfg))["dataset"]["corpus"] == "gs://bucket/a.txt"
    finally:
        reset_registry()
