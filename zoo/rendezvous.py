"""Meeting the other workers of a multi-worker run before TensorFlow does.

TensorFlow's ``MultiWorkerMirroredStrategy`` waits for the whole cluster inside one C++ call
that holds the interpreter: a worker whose peers never start waits for ever, says nothing,
and neither Ctrl-C nor SIGTERM reaches Python (TensorFlow installs its own SIGTERM handler
there). So each worker first meets every other one here, in Python, on the port TensorFlow
will use next: it listens on its own port and connects to each peer's. A worker goes on once
it has reached every peer and heard from every peer; it keeps listening until then, so a
peer that is late still finds it. What is missing is known by rank, the wait is bounded by
``device.timeout``, and a signal stops it.

The exchange is a greeting each way (``keras-zoo rendezvous <rank>``, then the worker's
settings as a line of JSON) and the caller's ``ok``: a peer's port held by something other
than a zoo worker is not mistaken for the peer, and the two sides count each other only once
both know the greeting went through. Workers started with other settings (another batch
size, seed, number of epochs, version of TensorFlow) do not train together: TensorFlow would
fail several minutes in, blaming a peer that "stopped answering", or train each worker on a
different split. Both sides compare the settings and refuse, naming the keys that differ.

The ports take connections from anyone who can reach them (TensorFlow's servers that take
them over next run whatever graph they are sent: the cluster's network must be private).
Here a stranger, a port scanner or a health check may connect: each exchange has
``HANDSHAKE_S`` in all, however slowly the other side sends, each is answered in a thread of
its own, and only the cluster's names are counted, so none of them can hold a worker past
``device.timeout``, deafen its listener, or stop the run by claiming a name not in it.
"""

from __future__ import annotations

import errno
import json
import logging
import signal
import socket
import threading
import time
from contextlib import contextmanager
from typing import Iterator, Mapping, Optional

from zoo.errors import Interrupted, ZooError

log = logging.getLogger(__name__)

GREETING = b"keras-zoo rendezvous "
ANNOUNCE_EVERY_S = 30.0  # how often the terminal hears that the wait goes on
SETTINGS_BYTES = 1_000_000  # a run's settings are a few kB: a longer line is not a zoo worker's
HANDSHAKE_S = 5.0  # one whole exchange, not one read: a byte every few seconds had kept it open for ever
MAX_ANSWERING = 32  # connections answered at once; more are closed (a flood, not a cluster)
# Why a peer was not met, said while waiting and at the end (a port refusing says nothing: not started yet).
NO_ANSWER = "no answer (a firewall dropping connections, a machine down, or a process stopped)"
NOT_A_ZOO_WORKER = "something other than a zoo worker answers there"


def meet(cluster: dict[str, str], me: str, timeout: float, settings: Optional[Mapping[str, str]] = None) -> None:
    """Return once every task of ``cluster`` (its name, e.g. ``worker 1``, to its
    ``host:port``) has met this one, ``me``, with the same ``settings`` (key to value, as
    text); raise :class:`ZooError` naming a peer with other settings and the keys that
    differ, or the missing peers after ``timeout`` seconds; :class:`Interrupted` on SIGINT
    or SIGTERM."""
    peers = {name: address for name, address in cluster.items() if name != me}
    if not peers:
        return
    mine = dict(settings or {})
    reached: set[str] = set()  # peers this worker connected to
    problems: dict[str, Optional[str]] = {}  # why the last try to reach each peer failed, other than its port refusing
    started = time.monotonic()
    announced = started - ANNOUNCE_EVERY_S + 2.0  # first word after 2 s: a quick meeting says nothing
    with _Listener(cluster[me], me, set(peers), mine) as listener, _signals_noted() as caught:
        while len(reached) < len(peers) or len(listener.heard) < len(peers):
            disagreeing = dict(listener.disagreeing)  # a copy: the listener's thread adds to it
            if disagreeing:
                peer = min(disagreeing)
                raise ZooError(_disagreement(peer, peers.get(peer, "?"), disagreeing[peer], mine))
            met = reached & listener.heard
            missing = _named(peers, met, problems)
            if caught:
                name = signal.Signals(caught[0]).name
                raise Interrupted(f"stopped by {name} while waiting for {missing}", caught[0])
            waited = time.monotonic() - started
            if waited > timeout:
                unreachable = any(problems.get(peer) for peer in set(peers) - met)
                raise ZooError(
                    f"gave up after device.timeout={timeout:g} s waiting for {missing}: "
                    + ("check the host names and ports in device.workers, and that this machine reaches them; or " if unreachable else "")
                    + "start them (the same command on each machine, with its own rank), or raise device.timeout"
                )
            if time.monotonic() - announced >= ANNOUNCE_EVERY_S:
                print(f"waiting for {missing} to start ({waited:.0f} s of device.timeout={timeout:g} s)", flush=True)
                announced = time.monotonic()
            for peer in sorted(set(peers) - reached):
                theirs, problems[peer] = _greet(peers[peer], me, peer, mine)
                if theirs is not None and theirs != mine:
                    raise ZooError(_disagreement(peer, peers[peer], theirs, mine))
                if theirs is not None:
                    reached.add(peer)
            time.sleep(0.2)
    log.info("met workers %s in %.1f s", sorted(peers), time.monotonic() - started)


def reach(address: str, timeout: float, what: str, fix: str) -> None:
    """Return once something accepts connections at ``address`` (``host:port``), where
    TensorFlow would wait in silence for ever for a server that is not there; raise
    :class:`ZooError` after ``timeout`` seconds, :class:`Interrupted` on SIGINT or SIGTERM."""
    host, port = address.rsplit(":", 1)
    started = time.monotonic()
    announced = started - ANNOUNCE_EVERY_S + 2.0
    with _signals_noted() as caught:
        while True:
            try:
                socket.create_connection((host, int(port)), timeout=1.0).close()
                return
            except OSError as exc:  # refused, unreachable, unknown host: not up (yet)
                problem = exc.strerror or str(exc)
            if caught:
                raise Interrupted(f"stopped by {signal.Signals(caught[0]).name} while waiting for {what} at {address}", caught[0])
            waited = time.monotonic() - started
            if waited > timeout:
                raise ZooError(f"gave up after device.timeout={timeout:g} s waiting for {what} at {address} ({problem}); {fix}")
            if time.monotonic() - announced >= ANNOUNCE_EVERY_S:
                print(f"waiting for {what} at {address} ({problem}; {waited:.0f} s of device.timeout={timeout:g} s)", flush=True)
                announced = time.monotonic()
            time.sleep(0.5)


def _named(peers: dict[str, str], met: set[str], problems: Optional[dict] = None) -> str:
    problems = problems or {}
    return ", ".join(f"{name} ({peers[name]}{f': {problems[name]}' if problems.get(name) else ''})" for name in sorted(set(peers) - met))


def _disagreement(peer: str, address: str, theirs: dict, mine: dict) -> str:
    from zoo.tables import shorten, visible_text

    keys = sorted(key for key in set(theirs) | set(mine) if theirs.get(key) != mine.get(key))
    shown = "; ".join(
        f"{visible_text(key)} is {shorten(visible_text(theirs.get(key, 'unset')), 40)} there, {shorten(mine.get(key, 'unset'), 40)} here"
        for key in keys[:3]
    )  # fmt: skip
    more = f" and {len(keys) - 3} more" if len(keys) > 3 else ""
    fix = (
        "install the same versions on every machine"
        if any(key.startswith("version of ") for key in keys)
        else "start every worker with the same command but its device.rank"
    )
    return f"{peer} ({address}) was started with other settings ({shown}{more}); {fix}"


def _greet(address: str, me: str, peer: str, settings: dict) -> tuple[Optional[dict], Optional[str]]:
    """Connect to ``peer``'s listener and exchange greetings and settings: the peer's
    settings, or None when it is not there (yet) with why, unless its port refused (a
    machine up, the worker not started): a host name no resolver knows, a network this
    machine does not reach had been waited out as workers not started, and so advised."""
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=1.0) as connection, _bounded(connection), connection.makefile("rb") as lines:
            connection.settimeout(HANDSHAKE_S)
            connection.sendall(GREETING + me.encode() + b"\n" + _encoded(settings))
            greeting = _read_line(lines)
            if greeting != GREETING + peer.encode():  # something else holds the peer's port, or holds it silent
                return None, NOT_A_ZOO_WORKER if greeting else NO_ANSWER
            theirs = _decoded(_read_line(lines, SETTINGS_BYTES))
            if theirs is None:
                return None, NOT_A_ZOO_WORKER
            connection.sendall(b"ok\n")  # the peer counts this worker only now: both know, or neither
            return theirs, None
    except ConnectionRefusedError:  # the machine is there; the worker is not started yet
        return None, None
    except socket.gaierror as exc:
        return None, f"no such host name here ({exc.strerror})"
    except OSError as exc:  # unreachable, or no answer within a second
        return None, NO_ANSWER if isinstance(exc, TimeoutError) else exc.strerror or str(exc)


def _encoded(settings: dict) -> bytes:
    return json.dumps(settings, sort_keys=True).encode() + b"\n"


def _decoded(line: bytes) -> Optional[dict]:
    """A peer's settings line: a JSON object of text values, else None (not a zoo worker)."""
    try:
        settings = json.loads(line)
    except ValueError:
        return None
    if not isinstance(settings, dict) or not all(isinstance(v, str) for v in settings.values()):
        return None
    return settings


@contextmanager
def _bounded(connection: socket.socket) -> Iterator[None]:
    """Shut ``connection`` down after ``HANDSHAKE_S`` whatever it is waiting for: a blocked
    read then ends as if the other side had closed."""

    def shut() -> None:
        try:
            connection.shutdown(socket.SHUT_RDWR)
        except OSError:  # closed already
            pass

    timer = threading.Timer(HANDSHAKE_S, shut)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def why_not_listening(exc: OSError, port: int) -> str:
    """What a bind's failure means for a worker's port, and the fix. A port below the
    machine's first unprivileged one (1024 unless ``ip_unprivileged_port_start`` says
    otherwise) is refused to users other than root with "Permission denied": it had been
    reported as held by another process."""
    if exc.errno == errno.EACCES:
        try:
            with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as setting:
                first = int(setting.read())
        except (OSError, ValueError):
            first = 1024
        return f"ports below {first} are the administrator's (root's); give this worker a port from {first} up in device.workers"
    if exc.errno == errno.EADDRINUSE:
        return "another process holds it; stop that process or give this worker a free port"
    return "give this worker another port in device.workers"


class _Listener(threading.Thread):
    """Greets back, on this worker's port, each of ``peers`` that connects; ``heard`` holds
    their names."""

    def __init__(self, address: str, me: str, peers: set[str], settings: dict):
        super().__init__(daemon=True, name="zoo-rendezvous")
        self.me = me
        self.peers = peers
        self.settings = settings
        self.heard: set[str] = set()
        self.disagreeing: dict[str, dict] = {}  # peers that came with other settings: theirs
        self.stopping = threading.Event()
        self.answered: set[socket.socket] = set()  # connections being answered now, MAX_ANSWERING at most
        self.answered_lock = threading.Lock()
        port = int(address.rsplit(":", 1)[1])
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.socket.bind(("", port))  # all interfaces, as TensorFlow's server binds it next
        except OSError as exc:
            self.socket.close()
            raise ZooError(f"{me} cannot listen on port {port} ({exc.strerror}): {why_not_listening(exc, port)}") from None
        self.socket.listen(16)
        self.socket.settimeout(0.2)

    def __enter__(self) -> "_Listener":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        self.join()
        self.socket.close()  # before TensorFlow binds the port
        # A peer that met everyone first has gone on to TensorFlow, whose connections this
        # port may have taken since. Answered by a thread, one would stay open unanswered once
        # TensorFlow holds the interpreter here (the thread never runs again), and both
        # TensorFlows waited for ever (seen with TensorFlow 2.16 under load). Shut, TensorFlow
        # connects again, to its own server.
        with self.answered_lock:
            for connection in self.answered:
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:  # closed already
                    pass

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                connection, _ = self.socket.accept()
            except (socket.timeout, OSError):
                continue
            with self.answered_lock:
                if len(self.answered) >= MAX_ANSWERING:
                    connection.close()
                    continue
                self.answered.add(connection)
            threading.Thread(target=self._answer, args=(connection,), daemon=True, name="zoo-rendezvous-answer").start()

    def _answer(self, connection: socket.socket) -> None:
        try:
            with connection, _bounded(connection), connection.makefile("rb") as lines:
                connection.settimeout(HANDSHAKE_S)
                line = _read_line(lines)
                peer = line[len(GREETING) :].decode(errors="replace")
                if not line.startswith(GREETING) or peer not in self.peers:
                    return
                theirs = _decoded(_read_line(lines, SETTINGS_BYTES))
                if theirs is None:
                    return
                connection.sendall(GREETING + self.me.encode() + b"\n" + _encoded(self.settings))
                if _read_line(lines) != b"ok":
                    return
                if theirs != self.settings:
                    self.disagreeing[peer] = theirs
                else:
                    self.heard.add(peer)
        except OSError:
            pass
        finally:
            with self.answered_lock:
                self.answered.discard(connection)


def _read_line(lines, limit: int = 200) -> bytes:
    """One line of a connection's ``makefile("rb")``, at most ``limit`` bytes."""
    return lines.readline(limit).strip()


@contextmanager
def _signals_noted() -> Iterator[list[int]]:
    """SIGINT and SIGTERM noted in the returned list while waiting (the main thread only)."""
    caught: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield caught
        return
    previous = {n: signal.signal(n, lambda number, frame: caught.append(number)) for n in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield caught
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
