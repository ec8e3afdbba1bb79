"""``python -m zoo``: the ``zoo`` command."""

import os
import sys

# `python -m` puts the working folder first on sys.path, where the `zoo` command puts its own
# folder: a numpy.py there ran in numpy's place in `python -m zoo train`, and a folder named
# hydra_plugins had all its modules imported by Hydra's plugin search. As under the `zoo`
# command, the working folder's files are the user's data, not code to import.
if not sys.flags.safe_path and sys.path and os.path.abspath(sys.path[0] or os.curdir) == os.getcwd():
    del sys.path[0]

from zoo.cli import main  # noqa: E402 (after the path is mended)

main()
