"""``coinfeat similar``: the most similar coins in a collection, duplicates, and unknown coins.

A :class:`Collection` is a store's usable vectors in a :class:`~coinfeat.core.index.VectorIndex` (the
same FAISS code as the k-NN head). Queries are stored photos (their own vector) or new photos
(embedded with the store's own extractor). When even the best neighbour is less similar than a
threshold, the answer is "no similar coin in the collection"; the threshold is calibrated on the
val split for a target false-match rate by leaving each class out in turn (its photos then play
unknown coins).
"""

from coinfeat.similar.duplicates import find_duplicates, write_duplicates
from coinfeat.similar.search import (
    Collection,
    Neighbour,
    SimilarConfig,
    SimilarResult,
    find_similar,
    is_unknown,
    neighbour_parts,
)
from coinfeat.similar.sheets import contact_sheet, duplicates_sheet, similar_sheet
from coinfeat.similar.unknown import CALIBRATION_FILE, calibrate_unknown, calibrated_threshold

__all__ = [
    "CALIBRATION_FILE",
    "Collection",
    "Neighbour",
    "SimilarConfig",
    "SimilarResult",
    "calibrate_unknown",
    "calibrated_threshold",
    "contact_sheet",
    "duplicates_sheet",
    "find_duplicates",
    "find_similar",
    "is_unknown",
    "neighbour_parts",
    "similar_sheet",
    "write_duplicates",
]
