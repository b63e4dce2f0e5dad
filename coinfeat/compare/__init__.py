"""``coinfeat compare``: heads fitted and scored alike (:mod:`.evaluate`), and the report (:mod:`.report`)."""

from coinfeat.compare.evaluate import (
    DEFAULT_HEADS,
    CompareConfig,
    Comparison,
    HeadResult,
    compare_heads,
    default_report_dir,
)
from coinfeat.compare.report import write_report

__all__ = [
    "DEFAULT_HEADS",
    "CompareConfig",
    "Comparison",
    "HeadResult",
    "compare_heads",
    "default_report_dir",
    "write_report",
]
