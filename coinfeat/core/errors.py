"""Exceptions that carry a message meant for the user.

The CLI prints a :class:`CoinfeatError` as one line on stderr and exits non-zero;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class CoinfeatError(Exception):
    """A problem the user can fix: bad path, bad option, incompatible store."""


class DecodeError(CoinfeatError):
    """An image that cannot be used; the extractor records it as skipped with this reason."""


class FingerprintMismatch(CoinfeatError):
    """Vectors made by one extractor must never be mixed with another's."""


class StoreBusy(CoinfeatError):
    """Another process is writing the same store."""


class WeightsUnavailable(CoinfeatError):
    """Pretrained weights could not be downloaded (offline machine)."""
