"""Cold-start recommendation in the protocol of MeLU (Lee et al., KDD 2019, arXiv:1908.00413): MovieLens
100K / 1M loaders, a synthetic generator writing the same files, the user-task states (train, warm,
user_cold, item_cold, user_item_cold), and the model-facing half (tasks, baselines, evaluation,
recommendations). Per-user metrics are in :mod:`fastadapt.evaluation`."""

from __future__ import annotations

from ._coldstart import ML1M_YEAR_THRESHOLD as ML1M_YEAR_THRESHOLD
from ._coldstart import REPORTED as REPORTED
from ._coldstart import STATES as STATES
from ._coldstart import ColdStartSplit as ColdStartSplit
from ._coldstart import UserTask as UserTask
from ._coldstart import cold_start_split as cold_start_split
from ._coldstart import new_item_year_threshold as new_item_year_threshold
from ._evaluate import CURVE_CAPS as CURVE_CAPS
from ._evaluate import evaluate_recommenders as evaluate_recommenders
from ._evaluate import support_curves as support_curves
from ._metamf import MetaMF as MetaMF
from ._metamf import build_metamf as build_metamf
from ._metamf import item_features as item_features
from ._methods import Adapted as Adapted
from ._methods import Biases as Biases
from ._methods import Factors as Factors
from ._methods import MatrixFactorisation as MatrixFactorisation
from ._methods import Popularity as Popularity
from ._methods import Recommender as Recommender
from ._methods import alternating_least_squares as alternating_least_squares
from ._methods import fine_tuned as fine_tuned
from ._methods import no_adaptation as no_adaptation
from ._methods import pretrain as pretrain
from ._methods import rating_range as rating_range
from ._movielens import AGE_GROUPS as AGE_GROUPS
from ._movielens import ML1M_GENRES as ML1M_GENRES
from ._movielens import ML100K_GENRES as ML100K_GENRES
from ._movielens import ML100K_OCCUPATIONS as ML100K_OCCUPATIONS
from ._movielens import MovieLens as MovieLens
from ._movielens import load_movielens as load_movielens
from ._recommend import OnlineUser as OnlineUser
from ._recommend import Recommendation as Recommendation
from ._recommend import read_ratings as read_ratings
from ._recommend import recommend as recommend
from ._recommend import user_categories as user_categories
from ._report import GRIDS as GRIDS
from ._report import RecsysReport as RecsysReport
from ._report import evaluate_recommender_run as evaluate_recommender_run
from ._report import plot_support_curves as plot_support_curves
from ._report import validation_mae as validation_mae
from ._setup import RecsysConfig as RecsysConfig
from ._setup import RecsysData as RecsysData
from ._setup import load_recsys_data as load_recsys_data
from ._statistics import PUBLISHED_ML100K as PUBLISHED_ML100K
from ._statistics import STATISTICS as STATISTICS
from ._statistics import describe_statistics as describe_statistics
from ._statistics import gini as gini
from ._statistics import movielens_statistics as movielens_statistics
from ._synthetic import write_synthetic_movielens as write_synthetic_movielens
from ._tasks import ITEM_ID_COLUMN as ITEM_ID_COLUMN
from ._tasks import UserTasks as UserTasks
from ._tasks import feature_layout as feature_layout
from ._tasks import features_for as features_for
from ._tasks import pair_features as pair_features
from ._tasks import user_task as user_task
