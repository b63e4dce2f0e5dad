"""``coinfeat count``: every coin of a whole photo found (:mod:`coinfeat.core.images.detect`), identified,
sized (:mod:`.sizes`) and its money totalled (:mod:`.money`); :mod:`.count` runs it."""
