"""Writing a run directory's files: atomically, so no reader sees half a file."""

from __future__ import annotations

import contextlib
import csv
import errno
import functools
import io
import json
import logging
import math
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from zoo.errors import InputWarning, ZooError, long_number, number_too_long, one_line
from zoo.tables import shorten

# What a finished run directory holds (metrics.json is written last: its presence means
# the run completed).
CONFIG = "config.yaml"
HISTORY = "history.csv"
MODEL = "model.keras"
METRICS = "metrics.json"
CURVES = "plots/training_curves.png"
ROC = "plots/roc_curve.png"
CONFUSION = "plots/confusion_matrix.png"
RECONSTRUCTIONS = "plots/reconstructions.png"
SAMPLES = "plots/samples.png"
TEXT_SAMPLES = "samples.txt"
SPEC = "spec.json"
DATA_REPORT = "data.json"
TENSORBOARD = "tensorboard"
ENVIRONMENT = "env.json"
TRAINING = "training.json"
CHECKPOINTS = "checkpoints"
LOCK = ".lock"


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


# What open() and mkdir() would give a new file and folder; mkstemp's temporary files and
# mkdtemp's folders are private (0600, 0700).
UMASK = _umask()
FILE_MODE = 0o666 & ~UMASK
FOLDER_MODE = 0o777 & ~UMASK


# Files the user named for a command's output that were not there when it began: each is
# placed only if still absent at that instant. Checked at the start alone, a file made in
# the seconds a model takes to load and export (by a second command given the same name,
# or by the user) had been written over, or, for an exported folder, deleted.
NEW_OUTPUTS: set[str] = set()


def output_checked(path: Path, free: bool) -> None:
    """``path`` was checked for a command's output: free (``write_atomic`` then writes it
    only if nothing is there yet), or a file the command may replace."""
    (NEW_OUTPUTS.add if free else NEW_OUTPUTS.discard)(os.path.abspath(path))


def made_meanwhile(path: Path) -> ZooError:
    return ZooError(f"{path} was made by another program while this command ran; it is kept as it is, and this output was not written: run the command again with another name")


def name_within(name: str, most: int) -> str:
    """``name`` cut to at most ``most`` bytes, as a file name: the names the zoo makes from
    one of the user's (a temporary file's, a picture's per input) must stay within the 255
    bytes a file name may have where the user's own is near them. A temporary file named
    `.NAME-x8i45ukj.csv` had failed `zoo predict -o` on "File name too long", the name given
    being fine."""
    while len(os.fsencode(name)) > most:
        name = name[:-1]
    return name


def temporary_prefix(name: str) -> str:
    """The prefix of a temporary file or folder beside one named ``name`` (mkstemp adds 8
    characters and the suffix)."""
    return f".{name_within(name, 120)}-"


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it into place."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, name = tempfile.mkstemp(dir=path.parent, prefix=temporary_prefix(path.stem), suffix=path.suffix)
        os.close(descriptor)
        tmp = Path(name)
        write(tmp)
        os.chmod(tmp, FILE_MODE)
        if os.path.abspath(path) in NEW_OUTPUTS:
            place_new(tmp, path)
            NEW_OUTPUTS.discard(os.path.abspath(path))  # written: the next command checks it anew
        else:
            os.replace(tmp, path)
    except OSError as exc:  # named by the file it was for, not the temporary one
        raise OSError(exc.errno, out_of_room(exc.strerror, path.parent), str(path)) from exc
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


# Failures of the storage under a run, and what the user does about each; every one leaves
# the run resumable from its last checkpoint. "free space" had been the advice for them all,
# a failing disk's I/O error and a limit on file sizes included.
REMOUNT = "mount the network or FUSE file system that holds it again"
STORAGE_FIXES = {
    errno.ENOSPC: "free space",
    errno.EDQUOT: "free space within your disk quota (quota -s shows it)",
    errno.EFBIG: "raise the limit on file sizes (ulimit -f; a FAT disk holds none over 4 GB)",
    errno.EROFS: "make the file system writable again (one remounted read-only after disk errors: dmesg says)",
    errno.EIO: "check the disk, which reported an I/O error (dmesg says which)",
    errno.ESTALE: REMOUNT,
    errno.ENOTCONN: REMOUNT,
}


WRITES_ONLY = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}  # the rest fail reads too


def storage_fix(number: int | None) -> str:
    """What to do about a write that failed with OS error ``number`` (one of STORAGE_FIXES)."""
    return STORAGE_FIXES.get(number, "free space")


def storage_failure(exc: OSError, where: str, folder: Path | str = ".") -> str:
    """``exc``, one of STORAGE_FIXES, on ``where`` (a file, or what it may have been, in
    ``folder`` where the error names no file)."""
    reason = out_of_room(exc.strerror, Path(exc.filename).parent if exc.filename else folder)
    return f"could not write {where} ({reason})" if exc.errno in WRITES_ONLY else f"{where}: {reason}"


def out_of_room(reason: str, where: Path | str) -> str:
    """``reason`` (a write's failure in the folder ``where``), with why where the file system
    has space left but no inode for another file (a container's tmpfs, a volume of many small
    images): "No space left on device" beside free gigabytes in ``df -h`` had sent users to
    free the space they had."""
    if reason != os.strerror(errno.ENOSPC):
        return reason
    folder = Path(where)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        stats = os.statvfs(folder)
    except OSError:
        return reason
    if stats.f_files == 0 or stats.f_favail > 0 or stats.f_bavail * stats.f_frsize < 2**20:
        return reason
    free = stats.f_bavail * stats.f_frsize / 2**20
    return f"{reason}: all {stats.f_files:,} inodes of its file system are in use, though {free:,.0f} MB are free (df -i); delete files there"


def place_new(tmp: Path, path: Path) -> None:
    """``tmp`` becomes ``path`` unless something is at ``path``: a hard link is made only
    where no name is, in one step (a rename would replace what is there)."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise made_meanwhile(path) from None
    except OSError as exc:  # a file system without hard links (some network and FAT ones)
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        if os.path.lexists(path):
            raise made_meanwhile(path) from None
        os.replace(tmp, path)


def unshare(paths) -> None:
    """Each of ``paths`` that is one of several hard links to a file (a run copied with
    ``cp -al``, a backup made with ``rsync --link-dest``) becomes a file of its own, the
    same bytes: Hydra rewrites its records and appends to the log in place, which would
    change the other copies too."""
    import shutil

    for path in paths:
        try:
            if path.is_symlink() or not path.is_file() or path.stat().st_nlink < 2:
                continue
            write_atomic(path, lambda tmp: shutil.copyfile(path, tmp))
        except OSError as exc:
            raise ZooError(f"{path} is shared with other hard links and cannot be copied apart ({exc.strerror}); copy the run with cp -a") from None


def refuse_links_and_pipes(run_dir: Path, key: str) -> None:
    """A run's folder holds no symbolic link below it: the zoo writes there (Hydra's records
    first, before any of the zoo's code runs), and a link in a run folder copied from
    elsewhere would lead those writes into any folder, over any file. Nor a pipe, a socket
    or a device: reading one in place of a checkpoint or a record would wait for ever. The
    run's folder itself may be a link: that is where the user put it."""
    for root, folders, files in walk(run_dir):  # links to folders are listed, not followed
        for name in (*folders, *files):
            path = Path(root, name)
            if path.is_symlink():
                raise ZooError(
                    f"{path} is a symbolic link (to {os.readlink(path)}); the zoo writes into a run's folder and "
                    f"follows no link out of it: replace the link by what it points to, or choose another {key}"
                )
            if not (path.is_file() or path.is_dir()):
                raise ZooError(
                    f"{path} is not a regular file (a pipe, a socket or a device), which the zoo never writes; "
                    f"remove it, or choose another {key}"
                )


# How the storage's failures read inside TensorFlow's messages, which carry no errno (a full
# disk under a cache file is a ResourceExhaustedError, as running out of memory is).
STORAGE_FAILURE_TEXTS = {os.strerror(number): number for number in sorted(STORAGE_FIXES) if number != errno.EROFS}
WRITE_FAILURES = {**STORAGE_FAILURE_TEXTS, "Read-only file system": errno.EROFS, "Permission denied": errno.EACCES}


def user_path(value: str, key: str) -> Path:
    """``value`` with a leading ``~`` or ``~user`` expanded, as typed for ``key``; a user this
    machine lacks is one line (pathlib's own expansion raised a bare RuntimeError)."""
    expanded = os.path.expanduser(value)
    if value.startswith("~") and expanded == value:
        user = value[1:].split("/", 1)[0]
        if not user:  # no HOME, and a user id the machine's user database does not know (a container's)
            raise ZooError(f"{key}={value}: ~ names no folder here (HOME is not set, and this user has no home); give the path in full")
        raise ZooError(f"{key}={value}: this machine has no user {user!r} whose home ~{user} names; give the path in full")
    return Path(expanded)


def deepest_existing(folder: Path, given: str, option: str) -> Path:
    """The deepest folder on the way to ``folder`` that exists (where it would be made). A
    link whose target is gone on the way is one line (``given``: how the user named it):
    making the folder failed on it as "File exists"."""
    existing = Path(os.path.abspath(folder))
    while not existing.exists() and existing != existing.parent:
        if existing.is_symlink():
            raise ZooError(
                f"{given}: {existing} is a link to {os.readlink(existing)}, which does not exist; make that folder, "
                f"or choose another {option}"
            )
        existing = existing.parent
    return existing


def check_output_folder(folder: Path, option: str) -> None:
    """Before the work that fills it: the folder an output goes into can be written (or made),
    else one line naming ``option`` (a run on a read-only disk, its default outputs inside)."""
    existing = deepest_existing(folder, f"{option} {folder}", option)
    if existing.is_dir() and os.access(existing, os.W_OK | os.X_OK):
        return
    problem = os.strerror(errno.ENOTDIR) if not existing.is_dir() else "Read-only file system" if _read_only(existing) else os.strerror(errno.EACCES)
    raise ZooError(f"cannot write in {existing} ({problem}); give {option} a folder you can write")


def sticky_and_not_ours(path: Path) -> bool:
    """Whether ``path`` lies in a sticky folder and neither it nor the folder is this user's
    (nor is this user root): the rename that replaces it would be refused."""
    import stat

    me = os.geteuid()
    folder = path.parent.stat()
    return bool(folder.st_mode & stat.S_ISVTX) and me not in (0, folder.st_uid, os.lstat(path).st_uid)


def _read_only(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def refuse_links_on_the_way(run_dir: Path, output: Path, key: str) -> None:
    """``output`` is written: if it lies in the run's folder (a default such as
    ``RUN_DIR/export/``), that folder must hold no link or pipe (:func:`refuse_links_and_pipes`)."""
    try:
        Path(os.path.abspath(output)).relative_to(os.path.abspath(run_dir))
    except ValueError:
        return  # a place of the user's choosing, outside the run
    refuse_links_and_pipes(run_dir, key)


@contextlib.contextmanager
def exclusive(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir`` for this process: a second process given the same directory (a
    resumed attempt started while the first still runs, two runs named in the same
    microsecond) fails in one line instead of writing over the first. The OS drops the
    lock when the process dies, however it dies."""
    import fcntl

    import stat

    run_dir.mkdir(parents=True, exist_ok=True)
    try:  # never blocking on a pipe put in its place, nor following a link
        descriptor = os.open(run_dir / LOCK, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NONBLOCK | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        raise ZooError(f"{run_dir / LOCK} cannot be opened ({exc.strerror}); remove it, or choose another hydra.run.dir") from None
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        os.close(descriptor)
        raise ZooError(f"{run_dir / LOCK} is not a regular file (a pipe or a device); remove it, or choose another hydra.run.dir")
    with os.fdopen(descriptor, "a") as handle:
        try:
            locked = lock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB, run_dir)
        except BlockingIOError:
            raise ZooError(in_use(run_dir)) from None
        HELD_HERE.add(os.path.abspath(run_dir))
        try:
            yield
        finally:
            HELD_HERE.discard(os.path.abspath(run_dir))
            if locked:
                fcntl.flock(handle, fcntl.LOCK_UN)


# The run folders this process holds (``exclusive``), by absolute path.
HELD_HERE: set[str] = set()


def held_elsewhere(run_dir: Path) -> bool:
    """Whether another process holds ``run_dir``: two commands given one new folder at the
    same moment both passed the check before Hydra, and the one refused had removed the
    folder the other trained in."""
    return os.path.abspath(run_dir) not in HELD_HERE and held_by_another(run_dir)


# What flock raises on a file system that cannot lock: Lustre mounted without `flock`
# (ENOSYS), NFS without its lock daemon (ENOLCK), some FUSE ones (EOPNOTSUPP).
LOCKS_UNSUPPORTED = {errno.ENOSYS, errno.ENOLCK, errno.EOPNOTSUPP}


def lock(target: Any, kind: int, where: Path) -> bool:
    """``fcntl.flock(target, kind)``; False where the file system under ``where`` cannot lock
    files, after one warning: every run there had failed on "[Errno 38] Function not
    implemented". Runs (or caches) shared at once there are then not kept apart.
    ``BlockingIOError`` (held by another, with LOCK_NB) goes up."""
    import fcntl

    try:
        fcntl.flock(target, kind)
        return True
    except OSError as exc:
        if exc.errno not in LOCKS_UNSUPPORTED:
            raise
        _say_no_locks(os.path.abspath(where), exc.strerror)
        return False


@functools.cache
def _say_no_locks(where: str, reason: str) -> None:
    logging.getLogger(__name__).warning("the file system of %s cannot lock files (%s): two commands using it at once are not kept apart", where, reason)


def in_use(run_dir: Path) -> str:
    return f"{run_dir} is in use by another zoo process; wait for it to end, or choose another hydra.run.dir"


def refuse_if_in_use(run_dir: Path) -> None:
    """The check ``exclusive`` makes, made before Hydra writes this command's records
    (``.hydra/``, ``train.log``) into the folder: a second command given a run's folder
    while that run trained had them written over the running run's, then was refused."""
    if held_by_another(run_dir):
        raise ZooError(in_use(run_dir))


def held_by_another(run_dir: Path) -> bool:
    """Whether another process holds ``run_dir`` (``exclusive``): a run training now."""
    import fcntl

    try:
        descriptor = os.open(run_dir / LOCK, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except OSError:
        return False  # none, or none to read: `exclusive` says what is wrong with it
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(descriptor)  # and with it the lock, if taken
    return False


def unfinished(run_dir: Path, missing: str) -> str:
    """Why a run's trained model cannot be read yet (``missing`` is the file it lacks), and
    what to do: wait for a run still training, or continue one that stopped."""
    if held_by_another(run_dir):
        return f"is still training (no {missing} yet); wait for it to end"
    return (
        f"did not finish (no {missing}); the zoo train command that started it continues it "
        f"(its overrides are in {Path(run_dir) / '.hydra' / 'overrides.yaml'})"
    )


def file_digest(path: Path) -> str:
    """The sha256 of a file's bytes."""
    import hashlib

    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def run_files(run_dir: Path) -> list[Path]:
    """A finished run's files worth keeping with a tracker: its records, model and plots."""
    names = (CONFIG, HISTORY, METRICS, MODEL, SPEC, ENVIRONMENT, TRAINING, DATA_REPORT, TEXT_SAMPLES)
    found = [run_dir / name for name in names if (run_dir / name).is_file()]
    return found + sorted((run_dir / "plots").glob("*.png"))


def write_text(path: Path, text: str) -> None:
    # surrogateescape: a file name that is not UTF-8 is written back as the bytes it was
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8", errors="surrogateescape"))


DAMAGED_FIX = "restore it from a backup, or train the run again in a new hydra.run.dir"


def cannot_read(path: Path, exc: OSError) -> ZooError:
    """One line for a file or folder that is there but could not be read. Refused by its
    permissions (another user's run or data on a shared machine), it is not damaged: it had
    been called so ("restore it from a backup", "re-download"), or taken for an empty folder."""
    fix = "; ask its owner to let you read it (chmod), or use a copy you can read" if refused(exc) else ""
    if exc.errno in STORAGE_FIXES:  # a failing disk, a network file system gone
        fix = f"; {storage_fix(exc.errno)}, then run the command again"
    return ZooError(f"{path} {why_unreadable(exc)}{fix}")


def refused(exc: OSError) -> bool:
    return exc.errno in (errno.EACCES, errno.EPERM)


def why_unreadable(exc: OSError) -> str:
    return f"cannot be read by {this_user()} (its permissions refuse it)" if refused(exc) else f"cannot be read ({exc.strerror})"


def this_user() -> str:
    """The user this process runs as, in words: ``user bob``, or ``user id 1001`` where the
    machine's user database has no name for it (a container's)."""
    import pwd

    try:
        return f"user {pwd.getpwuid(os.geteuid()).pw_name}"
    except KeyError:
        return f"user id {os.geteuid()}"


def home_folder() -> Path | None:
    """This user's home folder, or None where it cannot be known: no HOME and no entry in
    the machine's user database (a container run as an arbitrary user id), or a HOME that
    is not an absolute path. ``os.path.expanduser`` then leaves ``~`` as it is: Keras and the
    zoo's listing cache made a folder named ``~`` in the working folder (one ``rm -rf ~``
    away from the user's real home)."""
    expanded = os.path.expanduser("~")
    return Path(expanded) if os.path.isabs(expanded) else None


def user_folder(variable: str, under_home: str) -> Path | None:
    """A folder the XDG variable names (``XDG_CACHE_HOME``), else ``under_home`` in the
    home; None where neither is known. A relative value is ignored, as the XDG spec says."""
    given = os.environ.get(variable, "")
    if os.path.isabs(given):
        return Path(given)
    home = home_folder()
    return home / under_home if home else None


def keras_folder() -> Path:
    """Where Keras keeps its settings and downloads, by Keras' own rule: ``KERAS_HOME``, else
    ``~/.keras``, else ``/tmp/.keras`` where the home cannot be written."""
    if "KERAS_HOME" in os.environ:
        return Path(os.environ["KERAS_HOME"])
    home = home_folder()
    return (home if home and os.access(home, os.W_OK) else Path("/tmp")) / ".keras"


# How long a download may go without a byte before it is given up.
DOWNLOAD_SILENCE_S = 60.0


@contextlib.contextmanager
def downloading() -> Iterator[None]:
    """While Keras downloads (ImageNet weights, CIFAR-10), a connection that stays silent for
    DOWNLOAD_SILENCE_S fails: Keras reads with urllib and no timeout, and a server or proxy
    that took the connection and sent nothing (or stopped half-way) had kept the run waiting
    for ever, saying nothing. Sockets opened meanwhile without a timeout of their own get it."""
    import socket

    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_SILENCE_S)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def download_problem(exc: BaseException) -> str | None:
    """Why a download under :func:`downloading` failed, where it was the network: the
    silence, or the reason Keras gives (its "URL fetch failure" names the address); None
    for a failure of another kind (a damaged file already downloaded)."""
    text = one_line(exc)
    if isinstance(exc, TimeoutError) or text.endswith("timed out"):
        return f"nothing came for {DOWNLOAD_SILENCE_S:g} s"
    fetch = re.search(r"URL fetch failure on \S+: \S+ -- (.*)", text)
    return fetch.group(1) if fetch else None


def private_temp_folder(purpose: str) -> Path | None:
    """``zoo-PURPOSE-UID`` in the temporary folder, of mode 700, made if need be: where a
    library's folder in the home cannot be used. None where it cannot be made, or is not
    this user's alone (another user's, or a link): the caller goes without."""
    import stat

    private = Path(tempfile.gettempdir(), f"zoo-{purpose}-{os.geteuid()}")
    try:
        private.mkdir(mode=0o700)
    except FileExistsError:
        pass
    except OSError:
        return None
    found = os.lstat(private)
    if not stat.S_ISDIR(found.st_mode) or found.st_uid != os.geteuid() or found.st_mode & 0o077:
        return None
    return private


def walk(top: Path | str, onerror: Callable[[OSError], None] | None = None) -> Iterator[tuple[str, list[str], list[str]]]:
    """``os.walk(top, onerror=onerror)``, top-down (the caller may prune ``folders``), links
    to folders listed among the folders and not followed, without recursion: Python 3.11's
    os.walk recurses once per level, and a tree deeper than about 1,000 folders (in an image
    folder, a run from elsewhere) failed as "an input is nested too deeply"."""
    stack = [os.fspath(top)]
    while stack:
        root = stack.pop()
        try:
            with os.scandir(root) as listing:
                entries = list(listing)
        except OSError as exc:
            if onerror is not None:
                onerror(exc)
            continue
        folders, names = [], []
        for entry in entries:
            try:
                is_folder = entry.is_dir()
            except OSError:
                is_folder = False
            (folders if is_folder else names).append(entry.name)
        yield root, folders, names
        stack += [path for path in (os.path.join(root, name) for name in reversed(folders)) if not os.path.islink(path)]


def check_readable(path: Path) -> None:
    """Before the work that needs it: ``path`` (a regular file or a folder) can be read."""
    try:
        if Path(path).is_dir():
            with os.scandir(path):
                pass
        else:
            with open(path, "rb"):
                pass
    except OSError as exc:
        raise cannot_read(Path(path), exc) from None


# The most a run's YAML record may hold: the zoo's are a few kilobytes, and YAML's pure-Python
# reader takes about 6 s a megabyte of keys (an 800 MB config.yaml kept zoo evaluate busy
# for hours). JSON reads at hundreds of megabytes a second: bounded for memory only.
YAML_RECORD_BYTES = 2**20
JSON_RECORD_BYTES = 2**28


def read_run_text(path: Path, limit: int | None = None) -> str:
    """A run file's text. Something other than a file in its place is a one-line error:
    opening a named pipe would wait for a writer for ever, a device could be endless; so is
    a file past ``limit`` bytes."""
    path = Path(path)
    if path.is_dir():
        raise ZooError(f"{path} is a folder, not the file the zoo wrote; {DAMAGED_FIX}")
    if path.exists() and not path.is_file():
        raise ZooError(f"{path} is not a regular file (a pipe, socket or device), not the file the zoo wrote; {DAMAGED_FIX}")
    size = path.stat().st_size if limit is not None and path.is_file() else 0
    if limit is not None and size > limit:
        raise ZooError(f"{path} is damaged ({size / 2**20:,.0f} MB, far more than the zoo writes there: at most {limit / 2**20:,.0f} MB); {DAMAGED_FIX}")
    return path.read_text(encoding="utf-8")


# What a run writes besides the files above: its folders, and the records of its parts.
RUN_FOLDERS = ("plots", "checkpoints", TENSORBOARD, ".hydra", "folds", "snapshots")
RUN_FILES = (CONFIG, HISTORY, MODEL, METRICS, TEXT_SAMPLES, SPEC, DATA_REPORT, ENVIRONMENT, TRAINING, LOCK, "train.log", "mlflow.json")


def run_record_owner(path: Path) -> Path | None:
    """The run directory ``path`` is one of the records of (its model, metrics, plots,
    checkpoints...), or None: what ``--force`` must never replace. Also through a link on
    the way (``out/`` a link to a run's ``plots/``)."""
    for spelt in dict.fromkeys([Path(path).absolute(), Path(os.path.realpath(path))]):
        for depth, folder in enumerate(spelt.parents):
            inside = spelt.relative_to(folder).parts
            record = inside[0] in RUN_FOLDERS or (len(inside) == 1 and inside[0] in RUN_FILES)
            if record and (folder / CONFIG).is_file():
                return folder
            if depth >= 3:
                break
    return None


def not_a_run_directory(path: Path, wanted: str = "a run directory that 'zoo train' printed", settings: bool = True) -> str:
    """Why ``path``, given where a run's directory goes, is not one, in the words that lead to
    the fix (pass ``wanted``): a folder that is not there, a setting typed first (``zoo
    evaluate model=x``, for commands that take ``settings``), one of a run's files (``zoo
    compare runs/x/model.keras``), a folder of something else."""
    if not path.exists() and not path.is_symlink():
        if "=" in path.name and settings:
            return f"{path} is a setting, not a run directory: pass the run's directory first, then the settings"
        return f"{path} does not exist (moved or deleted?); pass {wanted}"
    if path.parent != path and (path.parent / CONFIG).is_file():
        return f"{path} is part of the run in {path.parent}; pass the run's directory, {path.parent}"
    if not path.is_dir():
        return f"{path} is a file, not a run directory; pass {wanted}"
    return f"{path} is not a run directory (it has no {CONFIG}); pass {wanted}"


def refuse_odd_file(path: Path) -> None:
    """A run file that is there but not a regular file (a folder, a pipe, a device, a
    dangling link) is named as such, not taken for a missing one ("did not finish")."""
    path = Path(path)
    if (path.exists() or path.is_symlink()) and not path.is_file():
        what = "a folder" if path.is_dir() else "not a regular file (a pipe, a socket, a device or a broken link)"
        raise ZooError(f"{path} is {what}, not the file the zoo wrote; {DAMAGED_FIX}")


@contextlib.contextmanager
def folder_locked(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (its own descriptor: no lock file is left) while
    processes started together create one SQLite store in it: each tool (Optuna, MLflow)
    creating the tables at once failed all but one on "already exists"."""
    import fcntl

    descriptor = os.open(folder, os.O_RDONLY)
    try:
        lock(descriptor, fcntl.LOCK_EX, folder)
        yield
    finally:
        os.close(descriptor)  # lets the lock go


def sqlite_tables(path: Path) -> set[str]:
    """The tables of a SQLite file, read-only (none: not a SQLite file, or unreadable). A
    tool that keeps its records in SQLite (Optuna, MLflow) would add its tables to any
    database of yours it is pointed at; callers compare these with the tool's own."""
    import sqlite3

    with path.open("rb") as handle:
        if handle.read(16) != b"SQLite format 3\x00":
            return set()
    # A writer killed mid-transaction (a run stopped while MLflow or Optuna wrote) leaves a hot
    # journal that a read-only connection may not roll back; reading the file as it is
    # ("immutable") still shows its tables, and the tool's own next connection rolls it back.
    for mode in ("mode=ro", "immutable=1"):
        try:
            with contextlib.closing(sqlite3.connect(f"{path.absolute().as_uri()}?{mode}", uri=True)) as database:
                return {row[0] for row in database.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        except sqlite3.Error:
            continue
    return set()


def sqlite_damage(path: Path) -> str | None:
    """Why a SQLite file is damaged (SQLite's own check of its pages), or None: whole, not
    SQLite at all, or not checkable read-only (a killed writer's journal, which the tool's
    own connection rolls back). Optuna and MLflow failed on a damaged one mid-way, in words
    that blamed the data ("invalid data in the commit, e.g. exceeding max length"), or took
    it for a database of the user's."""
    import sqlite3

    with path.open("rb") as handle:
        if handle.read(16) != b"SQLite format 3\x00":
            return None
    try:
        with contextlib.closing(sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)) as database:
            found = [row[0] for row in database.execute("PRAGMA quick_check").fetchmany(3)]
    except sqlite3.OperationalError as exc:
        return None if re.search(r"readonly|locked|busy", str(exc)) else str(exc)
    except sqlite3.DatabaseError as exc:  # "database disk image is malformed", "file is not a database"
        return str(exc)
    return None if found == ["ok"] else "; ".join(found)


def read_metrics(path: Path) -> dict[str, Any]:
    """A run's ``metrics.json``: metric names and numbers (a cross-validated run's also its
    folds', under ``folds``); anything else is a one-line error naming the file, as damaged."""
    found = read_json(path)
    folds = found.get("folds", {}) if isinstance(found, dict) else None
    if not (
        isinstance(found, dict)
        and found  # every finished run has its test loss at least
        and all(is_number(v) for k, v in found.items() if k != "folds")
        and isinstance(folds, dict)
        and all(isinstance(fold, dict) and all(is_number(v) for v in fold.values()) for fold in folds.values())
    ):
        raise ZooError(f"{path} is damaged (not a mapping of metric names to numbers); {DAMAGED_FIX}")
    return found


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def record_part(record: dict, key: str) -> dict:
    """A part of an optional record that should be a mapping (``env.json``'s ``plugins``):
    ``{}`` where it is something else, as a damaged record is left out."""
    part = record.get(key)
    return part if isinstance(part, dict) else {}


def read_record(path: Path) -> dict:
    """An optional run record (``training.json``, ``env.json``): ``{}`` where it is missing,
    damaged or not a regular file (a pipe would be waited on for ever)."""
    path = Path(path)
    try:
        if not path.is_file() or path.stat().st_size > JSON_RECORD_BYTES:
            return {}
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}
    return found if isinstance(found, dict) else {}


def read_json(path: Path) -> Any:
    """A run file written by ``write_json``; a damaged one is a one-line error naming it."""
    try:
        return json.loads(read_run_text(path, JSON_RECORD_BYTES))
    except RecursionError:
        raise ZooError(f"{path} is damaged (nested too deeply for the JSON the zoo wrote); {DAMAGED_FIX}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ZooError(f"{path} is damaged (not the JSON the zoo wrote: {one_line(exc)[:80]}); {DAMAGED_FIX}") from None
    except IsADirectoryError:
        raise ZooError(f"{path} is a folder, not the file the zoo wrote; {DAMAGED_FIX}") from None
    except OSError as exc:
        raise cannot_read(path, exc) from None


def load_yaml(text: str) -> Any:
    """YAML as ``yaml.safe_load`` reads it, without aliases: the zoo writes none, and ``*a``
    repeated at each of a few levels makes a small file billions of nodes for whatever
    walks the result (OmegaConf, a comparison). Also for values typed on the command line."""
    import yaml

    class NoAliasLoader(yaml.SafeLoader):
        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise yaml.composer.ComposerError(None, None, f"an alias (*{event.anchor}), which the zoo does not read", event.start_mark)
            return super().compose_node(parent, index)

    # YAML 1.1 reads 1e-5 and 1.0e5 (no dot, or an unsigned exponent) as strings; Hydra, OmegaConf's
    # dumps and every user read them as numbers.
    NoAliasLoader.add_implicit_resolver("tag:yaml.org,2002:float", EXPONENT_FLOAT, list("-+0123456789."))
    return yaml.load(text, Loader=NoAliasLoader)


EXPONENT_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*\.?[0-9_]*|\.[0-9_]+)[eE][-+]?[0-9]+$")


def command_line_value(argument: str, text: str) -> Any:
    """The value of a ``key=value`` argument read as YAML (``3`` a number, ``[a,b]`` a list);
    a mistake in it is one line naming the argument."""
    import yaml

    try:
        return load_yaml(text) if text else ""
    except (yaml.YAMLError, ValueError, RecursionError) as exc:  # ValueError: an int of over 4300 digits
        from zoo.tables import shorten

        problem = "nested too deeply" if isinstance(exc, RecursionError) else unread_number(exc, text) or one_line(exc)[:120]
        raise ZooError(f"{shorten(argument)}: not a value the zoo can read ({problem})") from None


def unread_number(exc: Exception, text: str) -> str | None:
    """What to say of ``exc`` when it is Python refusing a number of ``text`` for its length
    (a plain ValueError: YAML's errors and UnicodeDecodeError are of their own types)."""
    number = long_number(text) if type(exc) is ValueError else None
    return number_too_long(number[1]) if number else None


def read_yaml(path: Path) -> Any:
    """A run's ``config.yaml``; a damaged one is a one-line error naming it."""
    import yaml

    try:
        return load_yaml(read_run_text(path, YAML_RECORD_BYTES))
    except RecursionError:
        raise ZooError(f"{path} is damaged (nested too deeply for the YAML the zoo wrote); {DAMAGED_FIX}") from None
    except (yaml.YAMLError, ValueError) as exc:  # UnicodeDecodeError, or a number Python will not read for its length
        problem = "a number longer than Python reads" if type(exc) is ValueError else one_line(exc)[:100]
        raise ZooError(f"{path} is damaged (not the YAML the zoo wrote: {problem}); {DAMAGED_FIX}") from None
    except IsADirectoryError:
        raise ZooError(f"{path} is a folder, not the file the zoo wrote; {DAMAGED_FIX}") from None
    except OSError as exc:
        raise cannot_read(path, exc) from None


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


class HistoryFile:
    """``history.csv``, written whole after each epoch (under a temporary name, as every run
    file): one row per epoch, ``epoch`` then each logged value, training before validation.
    Rows are rendered once: rendering all of them at every epoch's end had made that end cost
    more the longer a run went (19 ms at epoch 3,000)."""

    def __init__(self, path: Path):
        self.path = path
        self.columns: list[str] = []
        self.lines: list[str] = []  # rendered rows, each ending in a line break

    def write(self, history: Mapping[str, Sequence[float]]) -> None:
        columns = sorted(k for k in history if not k.startswith("val_")) + sorted(k for k in history if k.startswith("val_"))
        epochs = len(next(iter(history.values()), []))
        if columns != self.columns or epochs < len(self.lines):  # a column a callback began to log: earlier rows gain it
            self.columns, self.lines = columns, []
        for epoch in range(len(self.lines), epochs):
            self.lines.append(_csv_line([epoch + 1, *(repr(float(history[c][epoch])) for c in columns)]))
        write_text(self.path, _csv_line(["epoch", *columns]) + "".join(self.lines))


def _csv_line(values: Sequence[Any]) -> str:
    line = io.StringIO()
    csv.writer(line).writerow(values)
    return line.getvalue()


# The years a ZIP archive's member may be dated in (its date fields count from 1980 in 7
# bits): checkpoints (.npz) and model files (.keras) are ZIP archives dated when written.
ZIP_YEARS = range(1980, 2108)


def refuse_a_clock_zip_cannot_record() -> None:
    """A machine whose clock is set outside :data:`ZIP_YEARS` (a board without a clock
    battery or network starts at 1970) failed every run at its first checkpoint on
    zipfile's "ZIP does not support timestamps before 1980", and ``zoo export --format
    keras`` at its end. One line before the work, naming the clock."""
    import time

    now = time.localtime(time.time())  # as zipfile dates its members
    if now.tm_year not in ZIP_YEARS:
        raise ZooError(
            f"this machine's clock says {time.strftime('%Y-%m-%d %H:%M', now)}, and checkpoints and model files (ZIP "
            f"archives) can only be dated {ZIP_YEARS[0]} to {ZIP_YEARS[-1]}; set the clock (timedatectl set-ntp true, "
            "or date -s), then run the same command"
        )


def refuse_a_matplotlibrc_that_waits() -> None:
    """Matplotlib reads one matplotlibrc as it is imported (Keras imports it): the working
    folder's first, then MATPLOTLIBRC's, then its configuration folder's. A pipe (or a
    device) of that name in a repository one trains in kept every command that loads
    TensorFlow or draws waiting for ever, saying nothing."""
    import stat

    config = os.environ.get("MPLCONFIGDIR") or (user_folder("XDG_CONFIG_HOME", ".config") or Path("/nonexistent")) / "matplotlib"
    given = os.environ.get("MATPLOTLIBRC")
    candidates = ["matplotlibrc", *([given, os.path.join(given, "matplotlibrc")] if given else []), os.path.join(config, "matplotlibrc")]
    for candidate in candidates:
        try:
            mode = os.stat(candidate).st_mode
        except OSError:
            continue
        if stat.S_ISDIR(mode):  # passed over, as Matplotlib does
            continue
        if not stat.S_ISREG(mode):
            raise ZooError(
                f"{Path(candidate).absolute()} is not a regular file (a pipe or a device), and Matplotlib reads it as it "
                f"starts, waiting on it for ever; rename it{', or run the zoo from another folder' if candidate == 'matplotlibrc' else ''}"
            )
        return


def drawn_as_written(draw: Callable) -> Callable:
    """Text in the zoo's pictures is anyone's (class folders, run folders, metric and study
    names): drawn as written, never read as Matplotlib's TeX (a class folder ``$\\alpha$``
    showed as a Greek letter, and ``$\\undefined$`` failed the run at its very end); in a
    font that has its characters where one is installed (猫 and 狗 are not in DejaVu Sans);
    and the characters no font has are said once, not in a warning per glyph and picture."""

    @functools.wraps(draw)
    def drawing(*args, **kwargs):
        if "matplotlib" not in sys.modules:
            refuse_a_matplotlibrc_that_waits()
        import matplotlib
        import warnings

        fonts_log = logging.getLogger("matplotlib.font_manager")  # "weight normal not found, using 500" per text
        level = fonts_log.level
        fonts_log.setLevel(logging.ERROR)
        try:
            with matplotlib.rc_context(), warnings.catch_warnings(record=True) as caught:
                # Matplotlib's own settings, whatever a matplotlibrc says (one in the working folder
                # is read first): the same pictures everywhere, no LaTeX run on the names drawn
                # (text.usetex), no module imported to hook the figures (figure.hooks).
                matplotlib.rcdefaults()
                matplotlib.rcParams.update({"text.parse_math": False, "font.family": [*matplotlib.rcParams["font.family"], *fallback_fonts()]})
                warnings.simplefilter("always")
                result = draw(*args, **kwargs)
        finally:
            fonts_log.setLevel(level)
        missing = set()
        for warning in caught:
            # "missing from font(s) DejaVu Sans." (Matplotlib 3.8 and later), "missing from current font." before
            glyph = re.match(r"Glyph (\d+) .*missing from (font|current font)", str(warning.message))
            if glyph:
                missing.add(chr(int(glyph.group(1))))
            else:
                warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
        if missing - MISSING_GLYPHS:
            MISSING_GLYPHS.update(missing)
            warnings.warn(
                f"the pictures' fonts lack {len(missing)} character(s) of the names drawn ({shorten(', '.join(sorted(missing)), 60)}), "
                "drawn as boxes; install a font that has them (fonts-noto-cjk for Chinese, Japanese and Korean) and remove "
                "Matplotlib's font cache (~/.cache/matplotlib) for it to be found",
                InputWarning,
                stacklevel=2,
            )
        return result

    return drawing


MISSING_GLYPHS: set = set()  # said once a process
# Fonts with the scripts DejaVu Sans lacks, tried after it for each character they have.
FALLBACK_FONTS = (
    "Noto Sans CJK SC", "Noto Sans CJK JP", "Noto Sans CJK KR", "Noto Sans CJK TC", "Source Han Sans SC",
    "WenQuanYi Zen Hei", "WenQuanYi Micro Hei", "Droid Sans Fallback", "Microsoft YaHei", "SimHei", "PingFang SC",
    "Hiragino Sans GB", "Arial Unicode MS",
)  # fmt: skip


@functools.cache
def fallback_fonts() -> tuple[str, ...]:
    """The fallback fonts Matplotlib knows here (naming one it does not know warns)."""
    from matplotlib import font_manager

    known = {font.name for font in font_manager.fontManager.ttflist}
    return tuple(name for name in FALLBACK_FONTS if name in known)


@drawn_as_written
def plot_training_curves(path: Path, history: Mapping[str, Sequence[float]], title: str) -> None:
    """Loss and each metric per epoch, training against validation, one panel each; the
    learning rate (``lr``) on a log scale."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no display needed
    from matplotlib.ticker import MaxNLocator

    names = [k for k in history if not k.startswith("val_")]
    names.sort(key=lambda n: (n != "loss", n == "lr", n))
    columns = min(3, len(names))
    rows = -(-len(names) // columns)
    width, height = 4.5 * columns, 3.4 * rows + 0.5
    fig = Figure(figsize=(width, height))
    # Fixed margins (in inches, so they hold at any grid size): a constrained layout costs
    # half a second a figure, a third of a short run's ending.
    fig.subplots_adjust(
        left=0.75 / width, right=1 - 0.2 / width, bottom=0.55 / height, top=1 - 0.75 / height,
        wspace=0.35, hspace=0.5,
    )  # fmt: skip
    fig.suptitle(title)
    for i, name in enumerate(names):
        ax = fig.add_subplot(rows, columns, i + 1)
        epochs = range(1, len(history[name]) + 1)
        marker = {"marker": "o", "markersize": 3} if len(history[name]) <= 60 else {}
        ax.plot(epochs, history[name], label="training" if name != "lr" else "learning rate", **marker)
        if f"val_{name}" in history:
            ax.plot(epochs, history[f"val_{name}"], label="validation", **marker)
        if name == "lr" and min(history[name]) > 0 and max(history[name]) > 10 * min(history[name]):
            ax.set_yscale("log")
        ax.set_title("learning rate" if name == "lr" else name)
        ax.set_xlabel("epoch")
        # Whole epochs: a short run's axis had been ticked 0.96, 0.98, 1.00, 1.02.
        if len(epochs) <= 12:
            ax.set_xticks(epochs)
            ax.set_xlim(0.5, len(epochs) + 0.5)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    save_figure(fig, path)


# What a picture the user names may be: Matplotlib writes each without a program of its own.
FIGURE_FORMATS = ("png", "svg", "pdf")


def save_figure(fig, path: Path) -> None:
    """A figure in the format its name says (PNG unless .svg or .pdf), written atomically."""
    suffix = path.suffix.lower().lstrip(".")
    write_atomic(path, lambda tmp: fig.savefig(tmp, format=suffix if suffix in FIGURE_FORMATS else "png", dpi=100))


def roc_curve(positive, score):
    """False and true positive rates at every distinct score threshold (scikit-learn's
    ``roc_curve`` without its intermediate-point dropping; importing it costs seconds)."""
    import numpy as np

    order = np.argsort(-np.asarray(score, dtype=np.float64), kind="mergesort")
    score, positive = np.asarray(score, dtype=np.float64)[order], np.asarray(positive, dtype=bool)[order]
    last = np.r_[np.flatnonzero(np.diff(score)), len(score) - 1]  # the last index of each distinct score
    true_positives = np.cumsum(positive)[last]
    false_positives = (last + 1) - true_positives
    tpr = np.r_[0.0, true_positives / max(1, positive.sum())]
    fpr = np.r_[0.0, false_positives / max(1, (~positive).sum())]
    return fpr, tpr


def area_under(fpr, tpr) -> float:
    """The area under a ROC curve, by trapezoids (``np.trapezoid`` is NumPy 2's, and the zoo
    takes NumPy 1.26: with it, every classifier's run had failed at its very end)."""
    import numpy as np

    fpr, tpr = np.asarray(fpr, dtype=np.float64), np.asarray(tpr, dtype=np.float64)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


# A class's name in a legend and under a tick: longer ones are cut (with an ellipsis), not
# left to push the plot off its figure.
LEGEND_CHARACTERS = 40
TICK_CHARACTERS = 22
# Beyond this many classes, their ROC curves are drawn grey, and only the lowest few named.
ROC_LEGEND_CLASSES = 20
ROC_WORST_NAMED = 5


@drawn_as_written
def plot_roc_curves(path: Path, y_true, y_prob, class_names: Sequence[str], title: str) -> None:
    save_figure(roc_figure(y_true, y_prob, class_names, title), path)


INSET_PLACE = (0.38, 0.08, 0.58, 0.5)  # left, bottom, width, height, as fractions of the axes


@drawn_as_written
def roc_figure(y_true, y_prob, class_names: Sequence[str], title: str):
    """ROC curve on the test split: one for a binary task; otherwise one per class
    (one-vs-rest) with their micro and macro averages, and an inset magnifying the top-left
    corner, where a good model's curves all lie (a poor model's pass where the inset would
    be drawn, and it is not: it would hide them)."""
    import numpy as np
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    y_true = np.asarray(y_true).reshape(-1)
    y_prob = np.asarray(y_prob)
    binary = y_prob.ndim == 1 or y_prob.shape[1] == 1
    if binary:
        curves = [(class_names[1] if len(class_names) > 1 else "positive", y_true == 1, y_prob.reshape(-1))]
    else:
        curves = [(class_names[c], y_true == c, y_prob[:, c]) for c in range(y_prob.shape[1])]
    drawn = []  # (label, fpr, tpr, style)
    colours = colormaps["tab10" if len(curves) <= 10 else "tab20"]
    for index, (label, positive, score) in enumerate(curves):
        if positive.all() or not positive.any():
            continue  # undefined without both positives and negatives
        fpr, tpr = roc_curve(positive, score)
        drawn.append((label, fpr, tpr, {"color": colours(index % colours.N), "linewidth": 1.2}))
    class_curves = len(drawn)
    if not binary and len(drawn) > 1:
        # Micro: every one-vs-rest decision pooled; macro: the classes' curves averaged on one grid.
        fpr, tpr = roc_curve(np.concatenate([p for _, p, _ in curves]), np.concatenate([s for _, _, s in curves]))
        grid = np.linspace(0, 1, 1001)
        mean_tpr = np.mean([np.interp(grid, f, t) for _, f, t, _ in drawn], axis=0)
        drawn += [("micro-average", fpr, tpr, {"color": "black", "linewidth": 2.2, "linestyle": ":"}),
                  ("macro-average", grid, mean_tpr, {"color": "black", "linewidth": 2.2, "linestyle": "--"})]  # fmt: skip
    legend_title = None
    if len(curves) > ROC_LEGEND_CLASSES:  # a legend of 200 classes ran off the figure: the worst few are named
        legend_title = f"the {ROC_WORST_NAMED} lowest of {len(curves)} classes (grey)"
        classes = drawn[:class_curves]
        aucs = [area_under(fpr, tpr) for _, fpr, tpr, _ in classes]
        worst = set(np.argsort(aucs, kind="stable")[:ROC_WORST_NAMED].tolist())
        drawn = [
            (label if i in worst else None, fpr, tpr, style if i in worst else {"color": "0.8", "linewidth": 0.6})
            for i, (label, fpr, tpr, style) in enumerate(classes)
        ] + drawn[class_curves:]
    fig = Figure(figsize=(6, 5.5) if binary else (8.4, 5.5), layout="constrained")
    ax = fig.add_subplot()
    for label, fpr, tpr, style in drawn:
        named = f"{shorten(label, LEGEND_CHARACTERS)} (AUC {area_under(fpr, tpr):.3f})" if label is not None else "_nolegend_"
        ax.plot(fpr, tpr, label=named, **style)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="chance")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false positive rate", ylabel="true positive rate")
    # Two lines over the axes: one would reach into the legend beside them (many classes).
    ax.set_title(f"ROC on the test split:\n{shorten(title, LEGEND_CHARACTERS)}")
    ax.grid(alpha=0.3)
    if binary:
        ax.legend(loc="lower right", fontsize="small")
    else:
        fig.legend(*ax.get_legend_handles_labels(), loc="outside right upper", fontsize="small", title=legend_title, title_fontsize="small")
    # The inset's place, in the axes' coordinates: clear only where every curve (each rises
    # monotonically) is above it from its left edge on.
    left, low, _, height = INSET_PLACE
    if not binary and drawn and all(np.interp(left, f, t) >= low + height + 0.02 for _, f, t, _ in drawn):
        # The corner magnified: up to the false positive rate where every class reaches 95%
        # of its positives (at most 0.25), from the lowest true positive rate seen there.
        reach = [f[np.argmax(t >= 0.95)] if (t >= 0.95).any() else 1.0 for _, f, t, _ in drawn]
        right = float(np.clip(max(reach) * 1.2, 0.02, 0.25))
        bottom = min(float(np.interp(0.0, f, t)) for _, f, t, _ in drawn)
        bottom = max(0.0, np.floor(min(bottom, 0.9) * 20) / 20)
        inset = ax.inset_axes(list(INSET_PLACE), xlim=(0, right), ylim=(bottom, 1.005))
        for _, fpr, tpr, style in drawn:
            inset.plot(fpr, tpr, **style)
        inset.grid(alpha=0.3)
        inset.tick_params(labelsize="x-small")
        ax.indicate_inset_zoom(inset, edgecolor="grey")
    return fig


# A confusion matrix of 200 classes at half an inch a class was a 10,000-pixel square that
# took a minute to draw: it stays within this many inches. Beyond this many classes a cell
# would be too small to number (under a pixel at 2,000 classes, where a class's errors
# vanished as the picture was resampled): the classes most often confused are drawn, the
# rest gathered in one row and column.
MATRIX_INCHES = 16.0
MATRIX_CLASSES = 50


@drawn_as_written
def plot_confusion_matrix(path: Path, y_true, y_pred, class_names: Sequence[str], title: str) -> None:
    save_figure(confusion_figure(y_true, y_pred, class_names, title), path)


def confusion_figure(y_true, y_pred, class_names: Sequence[str], title: str):
    """Counts of true against predicted class on the test split, each cell numbered: of
    every class up to ``MATRIX_CLASSES``, beyond of the ``MATRIX_CLASSES`` with the most
    errors (examples of theirs missed, and others taken for them), the other classes in a
    last row and column (the examples among them, right or wrong, left blank)."""
    import numpy as np
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    n = len(class_names)
    y_true, y_pred = (np.asarray(y).reshape(-1).astype(int) for y in (y_true, y_pred))
    matrix = np.bincount(y_true * n + y_pred, minlength=n * n)[: n * n].reshape(n, n)
    heading = "Confusion matrix on the test split"
    if n > MATRIX_CLASSES:
        errors = matrix.sum(axis=0) + matrix.sum(axis=1) - 2 * np.diag(matrix)
        shown = np.sort(np.argsort(-errors, kind="stable")[:MATRIX_CLASSES])
        place = np.full(n, MATRIX_CLASSES)  # each class's row and column: the last for the others
        place[shown] = np.arange(MATRIX_CLASSES)
        matrix = np.zeros((MATRIX_CLASSES + 1, MATRIX_CLASSES + 1), dtype=np.int64)
        np.add.at(matrix, (place[y_true], place[y_pred]), 1)
        matrix = np.ma.masked_array(matrix, mask=np.zeros_like(matrix, dtype=bool))
        matrix.mask[-1, -1] = True  # most of the examples: it would pale every other cell
        class_names = [class_names[i] for i in shown] + [f"{n - MATRIX_CLASSES:,} others"]
        heading += f", the {MATRIX_CLASSES} of {n:,} classes most often confused"
        n = MATRIX_CLASSES + 1
    class_names = [shorten(name, TICK_CHARACTERS) for name in class_names]  # the margin holds this many
    rotate = max(map(len, class_names)) > 3
    side = min(max(3.0, 0.5 * n + 1.5), MATRIX_INCHES)  # the matrix itself; a cell is 0.3 inches or more
    points = 10.0  # the tick labels'
    label_inches = min(2.0, 0.009 * points * max(map(len, class_names))) if rotate else 0.3  # tick labels below
    width, height = side + 2.4 + label_inches, side + 1.3 + label_inches
    fig = Figure(figsize=(width, height))
    # Fixed margins, in inches: room for the title, the labels and the colour bar.
    ax = fig.add_axes((
        (0.6 + label_inches) / width, (0.5 + label_inches) / height, side / width, side / height,
    ))  # fmt: skip
    image = ax.imshow(matrix, cmap="Blues")
    bar = fig.add_axes(((0.6 + label_inches + side + 0.25) / width, (0.5 + label_inches) / height, 0.2 / width, side / height))
    fig.colorbar(image, cax=bar, label="examples").ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts
    ax.set_xticks(range(n), class_names, rotation=45 if rotate else 0, ha="right" if rotate else "center", fontsize=points)
    ax.set_yticks(range(n), class_names, fontsize=points)
    ax.set(xlabel="predicted class", ylabel="true class")
    fig.suptitle(f"{heading}:\n{title}", y=1 - 0.15 / height, va="top")
    threshold = matrix.max() / 2 if matrix.size else 0
    for i in range(n):
        for j in range(n):
            if matrix[i, j] is not np.ma.masked:
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center",
                        color="white" if matrix[i, j] > threshold else "black", fontsize="small")  # fmt: skip
    return fig


@drawn_as_written
def plot_reconstructions(path: Path, originals, reconstructions, title: str, count: int = 10) -> None:
    """Test images (top row) above the model's reconstructions of them (bottom row)."""
    import numpy as np
    from matplotlib.figure import Figure

    count = min(count, len(originals))
    fig = Figure(figsize=(1.3 * count, 3.2), layout="constrained")
    fig.suptitle(f"Reconstructions of test images: {title}")
    for row, (images, label) in enumerate(((originals, "original"), (reconstructions, "reconstruction"))):
        for i in range(count):
            ax = fig.add_subplot(2, count, row * count + i + 1)
            image = np.clip(np.asarray(images[i]), 0, 1)
            ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_ylabel(label)
    save_figure(fig, path)


@drawn_as_written
def plot_samples(path: Path, images, title: str) -> None:
    """New images from a generative model, in a square grid drawn as one picture (an axes per
    sample took minutes for a few thousand); the first SAMPLES_SHOWN of them."""
    import numpy as np
    from matplotlib.figure import Figure

    images = np.clip(np.asarray(images, dtype=np.float32), 0, 1)
    shown = images[:SAMPLES_SHOWN]
    count, height, width, channels = shown.shape
    side = math.ceil(math.sqrt(count))
    rows, gap = math.ceil(count / side), max(1, height // 8)
    grid = np.ones((rows * (height + gap) - gap, side * (width + gap) - gap, channels), dtype=np.float32)
    for i, image in enumerate(shown):
        top, left = (i // side) * (height + gap), (i % side) * (width + gap)
        grid[top : top + height, left : left + width] = image
    # Each sample about TILE_PIXELS across while the grid stays within GRID_PIXELS; never below its own pixels.
    scale = max(1, min(TILE_PIXELS // max(height, width), GRID_PIXELS // max(grid.shape[:2])))
    inches = (grid.shape[1] * scale / 100, grid.shape[0] * scale / 100)  # saved at 100 dpi
    figure_size = (max(inches[0] + 0.4, 5.0), inches[1] + 0.8)
    fig = Figure(figsize=figure_size)
    said = f"{count} generated samples" if count == len(images) else f"the first {count} of {len(images)} samples (all: -o FILE.npy)"
    fig.suptitle(f"{said}: {title}", fontsize=10)
    left, bottom = (figure_size[0] - inches[0]) / 2 / figure_size[0], 0.2 / figure_size[1]
    ax = fig.add_axes((left, bottom, inches[0] / figure_size[0], inches[1] / figure_size[1]))
    ax.imshow(grid[..., 0] if channels == 1 else grid, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    save_figure(fig, path)


SAMPLES_SHOWN = 400  # a grid of more is too small to look at; an .npy output holds them all
TILE_PIXELS = 88  # a sample's side in the grid, where the grid has room
GRID_PIXELS = 2000  # the grid's longest side, at most (unless the samples' own pixels need more)


TEXT_SEPARATOR = "\n\n" + "-" * 72 + "\n\n"  # between generated texts, in files and on the terminal


def is_text(samples) -> bool:
    return isinstance(samples, (list, tuple)) and all(isinstance(sample, str) for sample in samples)


def write_samples(path: Path, samples, title: str) -> None:
    """Generated samples: texts one after another, or images as a PNG grid."""
    if is_text(samples):
        write_text(path, TEXT_SEPARATOR.join(samples) + "\n")
    else:
        plot_samples(path, samples, title)


@drawn_as_written
def plot_attribution_image(path: Path, image, heat, title: str) -> None:
    """An explained image: the input, the attribution heat map, and the map over the input."""
    import numpy as np
    from matplotlib.figure import Figure

    image = np.clip(np.asarray(image, dtype=np.float32), 0, 1)
    shown = image[..., 0] if image.shape[-1] == 1 else image
    heat = np.asarray(heat, dtype=np.float32)
    heat = heat / heat.max() if heat.max() > 0 else heat
    fig = Figure(figsize=(9.6, 3.9))
    fig.suptitle(title, fontsize=10)
    panels = (("input", None), ("attribution", "heat"), ("overlay", "overlay"))
    for i, (label, kind) in enumerate(panels):
        ax = fig.add_axes((0.02 + i * 0.33, 0.04, 0.29, 0.78))
        if kind is None:
            ax.imshow(shown, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        elif kind == "heat":
            ax.imshow(heat, cmap="inferno", vmin=0, vmax=1, interpolation="nearest")
        else:
            ax.imshow(shown, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.imshow(heat, cmap="inferno", vmin=0, vmax=1, alpha=0.55, interpolation="bilinear")
        ax.set_title(label, fontsize=9)
        ax.set_axis_off()
    save_figure(fig, path)


@drawn_as_written
def plot_attribution_bars(path: Path, names: Sequence[str], values, title: str, top: int = 10) -> None:
    """The ``top`` features by attribution size, largest on top: bars to the right push the
    explained class's probability up, to the left down."""
    import numpy as np
    from matplotlib.figure import Figure

    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(-np.abs(values), kind="stable")[:top][::-1]
    fig = Figure(figsize=(7.5, 0.32 * len(order) + 1.3))
    ax = fig.add_axes((0.36, 0.7 / (0.32 * len(order) + 1.3), 0.6, 1 - 1.1 / (0.32 * len(order) + 1.3)))
    ax.barh(range(len(order)), values[order], color=["#c0392b" if v > 0 else "#2e86c1" for v in values[order]])
    ax.set_yticks(range(len(order)), [names[i] for i in order], fontsize=8)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel("attribution (toward the class: right)", fontsize=8)
    fig.suptitle(title, fontsize=9)
    save_figure(fig, path)
