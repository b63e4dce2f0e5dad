"""``coinfeat fine-tune``: train the backbone's top blocks on cached activations, in minutes on a CPU.

The same idea as the feature store, a few blocks lower: the frozen lower part of the network (up
to ``cut``) runs ONCE over the train and val photos and ``views`` augmented views of each train
photo; its activations are cached (float16) as an ordinary store in the feature store's folder
(``activations/<cut>/``, written by :func:`coinfeat.core.extraction.pipeline.fill_store`, so it is
incremental and crash-safe like the features). Only the upper part (batch norms kept in inference mode) and a
softmax layer are trained, streaming batches from the memory-mapped cache.

The result is an ordinary backbone file (``backbone.keras``, 0..255 RGB -> pooled vector) and an
ordinary head (``head/``, the softmax layer on that vector): every other command uses them as it
uses any backbone and head. ``finetune.json`` beside the backbone records how it was made; stores
embedded with it say "fine-tuned ... on train (N photos)".
"""

from coinfeat.core.finetune_record import FinetuneRecord
from coinfeat.finetune.cache import ACTIVATIONS
from coinfeat.finetune.network import DEFAULT_CUTS
from coinfeat.finetune.records import FinetuneConfig, FinetuneResult
from coinfeat.finetune.run import finetune

__all__ = ["ACTIVATIONS", "DEFAULT_CUTS", "FinetuneConfig", "FinetuneRecord", "FinetuneResult", "finetune"]
