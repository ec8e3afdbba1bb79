"""The zoo's Optuna sweeper, a Hydra ``Sweeper`` plugin (Hydra finds it in the
``hydra_plugins`` namespace package): ``zoo train -m hparams_search=NAME``.

It asks an Optuna (>= 4) study for trials, launches them as jobs through the configured
launcher, and tells the study their objective. Each trial's job reports the objective
after every epoch to the study's storage and stops when the pruner says so
(``zoo.sweeps.TrialReport``), which works in any process on any machine that reaches the
storage. ``n_trials`` counts the whole study, so running the same command again after a
kill runs only the trials still missing, and on a finished study prints its best trial.

Samplers and pruners are chosen by name from fixed tables: nothing in the config imports
anything. The module imports neither Optuna nor TensorFlow until a sweep starts.
"""

from __future__ import annotations

from typing import Any, Optional

from hydra.plugins.sweeper import Sweeper


class ZooOptunaSweeper(Sweeper):
    def __init__(self, **settings: Any) -> None:
        self.settings = settings
        self.config = None
        self.launcher = None

    def setup(self, *, hydra_context, task_function, config) -> None:
        from hydra.core.plugins import Plugins

        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function
        )

    def sweep(self, arguments: list[str]) -> Optional[Any]:
        from zoo.cli import fail, traceback_requested
        from zoo.errors import ZooError
        from zoo.search import run_study

        try:
            return run_study(self.config, self.settings, arguments, self.launcher)
        except ZooError as exc:  # one line, as everywhere in the zoo (Hydra would print a traceback)
            if traceback_requested():
                raise
            fail(str(exc))
