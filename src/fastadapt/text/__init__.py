"""Few-shot text classification on a frozen pretrained sentence encoder (or hashed n-grams from scratch):
datasets, the embedding cache, the two protocols, meta-learned heads, baselines and ensembles.

Importing this package does not import sentence-transformers (the ``[text]`` extra); a
:class:`SentenceEncoder` imports it when it first encodes.
"""

from __future__ import annotations

from ._allintents import BASELINES as BASELINES
from ._allintents import SELECTABLE as SELECTABLE
from ._allintents import all_intents as all_intents
from ._datasets import TextDataset as TextDataset
from ._datasets import clinc150_from_files as clinc150_from_files
from ._datasets import load_clinc150 as load_clinc150
from ._datasets import load_dnnc_folder as load_dnnc_folder
from ._datasets import load_text_csv as load_text_csv
from ._encoders import DEFAULT_ENCODER as DEFAULT_ENCODER
from ._encoders import HASHED as HASHED
from ._encoders import EmbeddingCache as EmbeddingCache
from ._encoders import HashedNgrams as HashedNgrams
from ._encoders import SentenceEncoder as SentenceEncoder
from ._encoders import TextEncoder as TextEncoder
from ._encoders import build_encoder as build_encoder
from ._encoders import encode_texts as encode_texts
from ._episodic import EPISODE_BASELINES as EPISODE_BASELINES
from ._episodic import episode_methods as episode_methods
from ._episodic import head_method as head_method
from ._fewshot import META_HEADS as META_HEADS
from ._fewshot import FittedHead as FittedHead
from ._fewshot import HeadConfig as HeadConfig
from ._fewshot import adaptation_variants as adaptation_variants
from ._fewshot import average_probabilities as average_probabilities
from ._fewshot import fit_logistic as fit_logistic
from ._fewshot import hashed_mlp as hashed_mlp
from ._fewshot import logistic_head as logistic_head
from ._fewshot import meta_train_head as meta_train_head
from ._fewshot import nearest_mean as nearest_mean
from ._fewshot import uniform_soup as uniform_soup
from ._oos import choose_threshold as choose_threshold
from ._oos import out_of_scope_report as out_of_scope_report
from ._predictor import Predictor as Predictor
from ._protocols import episodic_pool as episodic_pool
from ._protocols import heldout_classes as heldout_classes
from ._protocols import kshot_indices as kshot_indices
from ._selection import DEFAULT_GRIDS as DEFAULT_GRIDS
from ._selection import Selection as Selection
from ._selection import kshot_folds as kshot_folds
from ._selection import one_se_choice as one_se_choice
from ._selection import select_head as select_head
