"""What a run records about itself beside its config: ``env.json``, what it ran with."""

from __future__ import annotations

from typing import Any, Optional


def environment(placement) -> dict[str, Any]:
    """What the run ran on: versions of Python and the libraries, the plugin distributions
    it loaded, the device, and the git commit of the working directory (if any)."""
    import importlib.metadata as metadata
    import platform
    import subprocess

    from zoo import __version__
    from zoo.registry import get_registry

    def version(name: str) -> Optional[str]:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    libraries = {name: version(name) for name in ("tensorflow", "tensorflow-cpu", "keras", "numpy", "hydra-core")}

    def git(*args: str, check: bool = True) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, timeout=5, check=check, stdin=subprocess.DEVNULL).stdout

    try:
        commit = git("rev-parse", "HEAD").strip()
        # The working directory's repository may be anyone's (a downloaded project): its config can
        # name programs that `git status` runs (an fsmonitor, a filter's clean command, a hook when it
        # rewrites the index). Status is asked with those switched off, and without submodules.
        filters = git("config", "--get-regexp", r"^filter\..*\.(clean|process)$", check=False).splitlines()
        drivers = sorted({line.split(" ", 1)[0].rsplit(".", 1)[0] for line in filters if line.strip()})
        neutral = ["-c", "core.fsmonitor=false", *(arg for driver in drivers for end in ("clean", "process") for arg in ("-c", f"{driver}.{end}="))]
        dirty = bool(git(*neutral, "--no-optional-locks", "status", "--porcelain", "--ignore-submodules=all").strip())
    except (OSError, subprocess.SubprocessError):
        commit, dirty = None, None
    plugins = sorted(
        {(s.distribution, s.version) for s in get_registry().sources if s.error is None},
    )
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "zoo": __version__,
        "libraries": {name: v for name, v in libraries.items() if v},
        "plugins": {name: v for name, v in plugins},
        "device": placement.description,
        "replicas": placement.strategy.num_replicas_in_sync,
        "git": {"commit": commit, "dirty": dirty} if commit else None,
    }
