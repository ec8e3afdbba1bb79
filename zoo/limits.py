"""What this process may start and use beside memory: threads (a control group's
``pids.max``, ``ulimit -u``, the machine's ``pid_max``) and address space (``ulimit -v``),
against what TensorFlow starts. Past them TensorFlow aborts the whole process (a C++ check
failing on pthread_create, exit 134) or hangs, so they are checked before it starts; and
the control groups this process is in, which the memory check reads too (zoo.config)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from zoo.errors import ZooError
from zoo.tables import shorten


def schedulable_cpus() -> int:
    """The CPUs this process may run on (its affinity: ``taskset``, a batch job's), as
    TensorFlow counts them for its thread pools."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


# TensorFlow's own settings of its two op pools' sizes (unset or 0: one thread per CPU).
POOL_SETTINGS = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")


def threads_tensorflow_starts(cpus: int) -> int:
    """About how many threads a process running TensorFlow on ``cpus`` CPUs has at its peak:
    12, 4 for each CPU (tf.data's and oneDNN's pools), and its two op pools (a thread per
    CPU each, or as many as POOL_SETTINGS say), as measured on x86_64 with TensorFlow 2.21 for
    the default job on 1 and 2 CPUs (the fewest a cap let it run with: 18 and 24)."""
    return 12 + 4 * cpus + sum(pool_setting(name) or cpus for name in POOL_SETTINGS)


def pool_setting(name: str) -> int:
    value = os.environ.get(name, "").strip()
    if not (value.isascii() and value.isdigit()):
        return 0  # TensorFlow's reading: junk is its default
    return int(value) if len(value) < 19 else 10**18  # past what Python reads at once, and what any machine starts


def refuse_what_tensorflow_cannot_start() -> None:
    """TensorFlow aborts the whole process (a C++ check failing on pthread_create, 60 lines
    of stack, exit 134) when it cannot start a thread it wants: under a cap on tasks (a
    container's or a job's ``pids.max``, ``ulimit -u``, the machine's ``pid_max``) or on
    address space (``ulimit -v``) too small for the threads' stacks; asked for 100,000 by
    TF_NUM_INTEROP_THREADS it hung. One line before it starts, where the room is smaller
    than what it starts here."""
    import resource

    shortfall = thread_shortfall()
    if shortfall:
        raise ZooError(shortfall)
    needed = threads_tensorflow_starts(schedulable_cpus())
    address_space = resource.getrlimit(resource.RLIMIT_AS)[0]
    if address_space == resource.RLIM_INFINITY:
        return
    stack = resource.getrlimit(resource.RLIMIT_STACK)[0]
    stack = 8 * 2**20 if stack == resource.RLIM_INFINITY else stack
    if address_space < TENSORFLOW_ADDRESS_SPACE + needed * stack:
        raise ZooError(
            f"this process may use {address_space / 2**20:,.0f} MB of address space (ulimit -v), and TensorFlow needs at "
            f"least {(TENSORFLOW_ADDRESS_SPACE + needed * stack) / 2**20:,.0f} MB here (its libraries, and a stack of "
            f"{stack / 2**20:,.0f} MB for each of its threads); raise it"
            + fewer_cpus(lambda n: TENSORFLOW_ADDRESS_SPACE + threads_tensorflow_starts(n) * stack <= address_space)
        )


def thread_shortfall(processes: int = 1) -> str:
    """Why ``processes`` processes of TensorFlow (a parallel sweep's jobs) cannot all start
    their threads here, or "": the least room of the caps on threads against what each starts."""
    cpus = schedulable_cpus()
    needed = threads_tensorflow_starts(cpus)
    set_pools = [name for name in POOL_SETTINGS if pool_setting(name)]
    how = f"12, 4 for each CPU it may use, and its op pools: {', '.join(f'{n}={shorten(os.environ[n].strip(), 12)}' for n in set_pools) or 'one per CPU'}"
    running = len(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") and processes == 1 else 0  # in the room already
    rooms = task_rooms(needed * processes)
    if not rooms or min(rooms)[0] + running >= needed * processes:
        return ""
    room, cap = min(rooms)
    if processes > 1:
        fitting = (room + running) // needed
        return (
            f"{processes} jobs at once would start about {needed * processes:,} threads, {needed:,} each ({how}), and this "
            f"process may start {max(room, 0):,} more ({cap}); " + (f"run at most {fitting} at once, or raise the limit" if fitting else "raise the limit")
        )
    return (
        f"this process may start {max(room, 0):,} more threads ({cap}), and TensorFlow starts about {needed:,} here ({how}); "
        + (f"unset or lower {' and '.join(set_pools)}" if set_pools else "raise the limit")
        + fewer_cpus(lambda n: threads_tensorflow_starts(n) <= room + running)
    )


def task_rooms(needed: int) -> list[tuple[int, str]]:
    """How many more threads each cap on them lets this process start, with the cap in words:
    its control groups', ``ulimit -u`` (read where ``needed`` comes near it), the machine's."""
    return [room for room in (cgroup_task_room(), user_task_room(needed), machine_task_room()) if room is not None]


def thread_failure_line() -> str:
    """A thread that Python could not start (tf.data's, the zoo's: "can't start new thread"),
    with the caps on threads and address space that may have stopped it."""
    needed = threads_tensorflow_starts(schedulable_cpus())
    caps = [cap for _, cap in filter(None, (cgroup_task_room(), user_task_room(needed)))] + [address_space_limit()]
    return f"could not start a thread ({'; '.join(filter(None, caps)) or 'the machine is at its limit of threads'}): raise the limit"


def fewer_cpus(fits) -> str:
    """Advice to run on as many CPUs as ``fits`` (a CPU count -> bool) allows, or "" where
    even one does not fit, or the run has no more already."""
    fitting = max((n for n in range(1, schedulable_cpus()) if fits(n)), default=0)
    return f", or give the run {fitting} CPU{'s' if fitting > 1 else ''} (taskset -c 0{f'-{fitting - 1}' if fitting > 1 else ''} zoo ...)" if fitting else ""


def machine_task_room() -> Optional[tuple[int, str]]:
    """How many more threads the machine may run (``kernel.pid_max`` and ``threads-max``,
    less the threads running now, which /proc/loadavg counts), or None where unknown."""
    try:
        limit = min(int(Path(f"/proc/sys/kernel/{name}").read_text()) for name in ("pid_max", "threads-max"))
        running = int(Path("/proc/loadavg").read_text().split()[3].split("/")[1])
    except (OSError, ValueError, IndexError):
        return None
    return limit - running, f"the machine's kernel.pid_max or threads-max, {limit:,}, with {running:,} running"


# Address space TensorFlow 2.21 takes on x86_64 beside its threads' stacks (its libraries,
# 0.9 GB, Python's and the zoo's, its heap): a floor, from the default job, among the
# smallest, on 2 CPUs: it ran under a limit of 1.67 GB and aborted under 1.62 (threads: 24).
# Larger jobs need more (the cat CNN 2.3 GB) and may still abort under a limit in between.
TENSORFLOW_ADDRESS_SPACE = 1485 * 2**20


def user_task_room(needed: int) -> Optional[tuple[int, str]]:
    """How many more processes and threads ``ulimit -u`` lets this user start (it counts all
    of theirs on the machine; root is not held to it), where it is low enough to matter."""
    import resource

    limit = resource.getrlimit(resource.RLIMIT_NPROC)[0]
    if limit == resource.RLIM_INFINITY or limit > 64 * needed or outer_uid() == 0:
        return None  # a usual default is tens of thousands: not worth reading every process's status
    uid, running = str(os.getuid()), 0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
        except OSError:  # ended meanwhile
            continue
        if fields.get("Uid", "").split()[:1] == [uid]:
            running += int(fields.get("Threads", "1").strip() or 1)
    return limit - running, f"ulimit -u {limit}, {running} running as this user"


def outer_uid() -> int:
    """This process's real user outside its user namespace (``unshare --user``, a rootless
    container): root's processes are not held to ``ulimit -u`` under any name."""
    uid = os.getuid()
    try:
        for line in Path("/proc/self/uid_map").read_text().splitlines():
            inside, outside, count = (int(n) for n in line.split())
            if inside <= uid < inside + count:
                return outside + uid - inside
    except (OSError, ValueError):
        pass
    return uid


def address_space_limit() -> str:
    """The process's address-space limit (``ulimit -v``, a batch system's vmem limit) in
    words, or "" where there is none: TensorFlow reserves far more address space than it uses."""
    try:
        import resource

        limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    except (ImportError, OSError, ValueError):
        return ""
    if limit == resource.RLIM_INFINITY:
        return ""
    from zoo.config import human_bytes  # zoo.config imports this module

    return f"this process may use at most {human_bytes(limit)} of address space (ulimit -v)"


def cgroup_task_room(root: Path = Path("/")) -> Optional[tuple[int, str]]:
    """How many more processes and threads this process's control groups let start (the
    least over its group and those above, ``pids.max`` less ``pids.current``: a container's
    ``--pids-limit``, a Kubernetes pod's, a systemd unit's ``TasksMax``), with the group
    that sets it; None where none does."""
    rooms = []
    for folder, _ in cgroup_folders("pids", root):
        limit, current = read_cgroup_file(folder / "pids.max"), read_cgroup_file(folder / "pids.current")
        if limit.isdigit() and current.isdigit():
            rooms.append((int(limit) - int(current), f"pids.max {limit} in /{folder.relative_to(root)}"))
    return min(rooms) if rooms else None


def cgroup_folders(controller: str, root: Path = Path("/")) -> list[tuple[Path, bool]]:
    """This process's control-group folders of ``controller`` and every one above them, each
    with whether it is cgroup v1's. Where a container shows the host's path of its group, its
    own group is the top of the mount, which is listed too."""
    try:
        lines = (root / "proc/self/cgroup").read_text().splitlines()
    except OSError:
        return []
    folders = []
    for line in lines:
        _, controllers, path = line.split(":", 2) if line.count(":") >= 2 else ("", "?", "")
        if controllers == "":
            top, v1 = root / "sys/fs/cgroup", False
        elif controller in controllers.split(","):
            top, v1 = root / "sys/fs/cgroup" / controller, True
        else:
            continue
        group = top.joinpath(*[part for part in path.split("/") if part not in ("", ".", "..")])
        folders += [(folder, v1) for folder in [group, *group.parents[: len(group.parts) - len(top.parts)]]]
    return folders


def read_cgroup_file(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""
