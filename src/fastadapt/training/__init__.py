"""Meta-training: configs, the outer loop, checkpoints and resume, logging."""

from __future__ import annotations

from ._build import MODELS as MODELS
from ._build import Experiment as Experiment
from ._build import build_experiment as build_experiment
from ._build import build_model as build_model
from ._build import episode_samplers as episode_samplers
from ._checkpoint import CheckpointError as CheckpointError
from ._checkpoint import load_checkpoint as load_checkpoint
from ._checkpoint import save_checkpoint as save_checkpoint
from ._config import Config as Config
from ._config import ConfigError as ConfigError
from ._config import StreamConfig as StreamConfig
from ._config import config_from_dict as config_from_dict
from ._config import load_config as load_config
from ._config import save_config as save_config
from ._device import THREADS_ENV as THREADS_ENV
from ._device import apply_threads as apply_threads
from ._device import resolve_device as resolve_device
from ._distributed import DistributedError as DistributedError
from ._distributed import Group as Group
from ._distributed import join_process_group as join_process_group
from ._logging import RunLogger as RunLogger
from ._logging import read_metrics as read_metrics
from ._run import evaluate_run as evaluate_run
from ._run import load_run as load_run
from ._run import resolve_config as resolve_config
from ._run import shipped_configs as shipped_configs
from ._suites import GROUP as GROUP
from ._suites import Suite as Suite
from ._suites import SuiteParts as SuiteParts
from ._suites import TaskSuite as TaskSuite
from ._suites import load_errors as load_errors
from ._suites import register_suite as register_suite
from ._suites import suite_for as suite_for
from ._suites import suites as suites
from ._trainer import Trainer as Trainer
from ._trainer import TrainingError as TrainingError
from ._trainer import kept_checkpoints as kept_checkpoints
from ._trainer import resume_path as resume_path
