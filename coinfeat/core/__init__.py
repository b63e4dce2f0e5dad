"""The core: everything a command stands on, and nothing that knows a command.

Photos (``images``, ``detect``, ``augment``), networks (``backbones``, ``engines``, ``embedder``,
``quantize``), the cached-vector store and the pipeline that fills it (``store``, ``pipeline``,
``distributed``), datasets and splits (``datasets``, ``splits``, ``leakage``), heads (``heads``),
their provenance (``provenance``), metrics, the vector index and plots (``metrics``, ``index``,
``curves``). Applications (``coinfeat.extract``, ``coinfeat.fit``, ...) import from here; nothing
here imports an application (``lint-imports`` checks it).
"""
