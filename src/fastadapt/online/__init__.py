"""Learning after deployment: online meta-learning on a stream of tasks (each scored, then learned from), and
continual per-user adaptation (a user's adapted state follows their examples as they arrive)."""

from __future__ import annotations

from ._continual import ContinualReport as ContinualReport
from ._continual import ContinualUser as ContinualUser
from ._continual import continual_users as continual_users
from ._continual import prequential as prequential
from ._learner import OnlineMetaLearner as OnlineMetaLearner
from ._learner import OnlineSettings as OnlineSettings
from ._learner import ReplayBuffer as ReplayBuffer
from ._learner import StreamResult as StreamResult
from ._learner import from_scratch as from_scratch
from ._learner import run_stream as run_stream
from ._learner import tasks_gradient as tasks_gradient
from ._run import plot_stream as plot_stream
from ._run import stream_run as stream_run
from ._run import stream_tasks as stream_tasks
from ._streams import FreshEpisodes as FreshEpisodes
from ._streams import sampled_tasks as sampled_tasks
from ._streams import users_in_time_order as users_in_time_order
