"""Meta-training: configs, the outer loop, checkpoints and resume, logging."""

from __future__ import annotations

from ._build import Experiment as Experiment
from ._build import build_experiment as build_experiment
from ._checkpoint import CheckpointError as CheckpointError
from ._checkpoint import load_checkpoint as load_checkpoint
from ._checkpoint import save_checkpoint as save_checkpoint
from ._config import Config as Config
from ._config import ConfigError as ConfigError
from ._config import RecsysConfig as RecsysConfig
from ._config import StreamConfig as StreamConfig
from ._config import config_from_dict as config_from_dict
from ._config import load_config as load_config
from ._config import save_config as save_config
from ._logging import RunLogger as RunLogger
from ._logging import read_metrics as read_metrics
from ._run import evaluate_run as evaluate_run
from ._run import load_run as load_run
from ._run import resolve_config as resolve_config
from ._run import shipped_configs as shipped_configs
from ._trainer import Trainer as Trainer
from ._trainer import TrainingError as TrainingError
