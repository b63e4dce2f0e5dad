"""coinfeat: recognise coins from photos.

A frozen backbone embeds every photo once into a store (:func:`extract_features`); cheap heads
are trained on the cached vectors (:func:`fit_head`), used (:func:`predict_images`), compared
(:func:`compare_heads` + :func:`write_report`), the collection is searched (:func:`find_similar`),
the backbone's top blocks are fine-tuned (:func:`fine_tune`), a head becomes one model file
(:func:`export_head`) and the coins and money of a whole photo are counted (:func:`count_coins`).
Every entry point is imported on first use, so ``import coinfeat.core.store`` loads no image or
network code.
"""

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

from coinfeat.core.errors import CoinfeatError

_LAZY = {
    "extract_features": "coinfeat.core.extraction.extract",
    "ExtractConfig": "coinfeat.core.extraction.extract",
    "ExtractSummary": "coinfeat.core.extraction.extract",
    "open_store": "coinfeat.core.store",
    "Store": "coinfeat.core.store",
    "fit_head": "coinfeat.fit",
    "predict_images": "coinfeat.predict",
    "compare_heads": "coinfeat.compare",
    "CompareConfig": "coinfeat.compare",
    "write_report": "coinfeat.compare.report",
    "find_similar": "coinfeat.similar",
    "find_duplicates": "coinfeat.similar",
    "calibrate_unknown": "coinfeat.similar",
    "fine_tune": "coinfeat.finetune:finetune",  # not "finetune": that name is the submodule's
    "FinetuneConfig": "coinfeat.finetune",
    "export_head": "coinfeat.export",
    "count_coins": "coinfeat.counting.count",
    "make_head": "coinfeat.core.heads",
    "load_head": "coinfeat.core.heads",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, _, attribute = _LAZY[name].partition(":")
        return getattr(import_module(module), attribute or name)
    raise AttributeError(f"module 'coinfeat' has no attribute {name!r}")


__all__ = [
    "CoinfeatError",
    "CompareConfig",
    "ExtractConfig",
    "ExtractSummary",
    "FinetuneConfig",
    "Store",
    "__version__",
    "calibrate_unknown",
    "compare_heads",
    "count_coins",
    "export_head",
    "extract_features",
    "find_duplicates",
    "find_similar",
    "fine_tune",
    "fit_head",
    "load_head",
    "make_head",
    "open_store",
    "predict_images",
    "write_report",
]
