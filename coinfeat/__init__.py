"""coinfeat: recognise coins from photos.

A frozen backbone embeds every photo once into a store (:func:`extract_features`); cheap
heads are then trained and compared on the cached vectors.
"""

__version__ = "0.1.0"

from coinfeat.errors import CoinfeatError
from coinfeat.extract import ExtractConfig, ExtractSummary, extract_features
from coinfeat.store import Store, open_store

__all__ = [
    "CoinfeatError",
    "ExtractConfig",
    "ExtractSummary",
    "Store",
    "__version__",
    "extract_features",
    "open_store",
]
