"""Meta-optimisation of the learner: Bayesian hyperparameter search with Optuna over any config keys."""

from __future__ import annotations

from ._space import Dimension as Dimension
from ._space import apply as apply
from ._space import load_space as load_space
from ._study import PRUNERS as PRUNERS
from ._study import SAMPLERS as SAMPLERS
from ._study import TuneJob as TuneJob
from ._study import TuneResult as TuneResult
from ._study import recover_stale_trials as recover_stale_trials
from ._study import report as report
from ._study import run_worker as run_worker
from ._study import tune as tune
