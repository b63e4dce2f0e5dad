"""coinfeat: recognise coins from photos.

A frozen backbone embeds every photo once into a store (:func:`extract_features`); cheap heads
are trained on the cached vectors (:func:`fit_head`), used (:func:`predict_images`), compared
(:func:`compare_heads` + :func:`write_report`), the collection is searched (:func:`find_similar`),
the backbone's top blocks are fine-tuned (:func:`fine_tune`), a head becomes one model file
(:func:`export_head`) and the coins and money of a whole photo are counted (:func:`count_coins`).
Every entry point is imported on first use, so ``import coinfeat.store`` loads no image or
network code.
"""

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

from coinfeat.errors import CoinfeatError

_LAZY = {
    "extract_features": "coinfeat.extract",
    "ExtractConfig": "coinfeat.extract",
    "ExtractSummary": "coinfeat.extract",
    "open_store": "coinfeat.store",
    "Store": "coinfeat.store",
    "fit_head": "coinfeat.training",
    "predict_images": "coinfeat.predict",
    "compare_heads": "coinfeat.compare",
    "CompareConfig": "coinfeat.compare",
    "write_report": "coinfeat.reports",
    "find_similar": "coinfeat.similar",
    "find_duplicates": "coinfeat.similar",
    "calibrate_unknown": "coinfeat.similar",
    "fine_tune": "coinfeat.finetune:finetune",  # not "finetune": that name is the submodule's
    "FinetuneConfig": "coinfeat.finetune",
    "export_head": "coinfeat.export",
    "count_coins": "coinfeat.count",
    "make_head": "coinfeat.heads",
    "load_head": "coinfeat.heads",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, _, attribute = _LAZY[name].partition(":")
        return getattr(import_module(module), attribute or name)
    raise AttributeError(f"module 'coinfeat' has no attribute {name!r}")


__all__ = ["CoinfeatError", "__version__", *_LAZY]
