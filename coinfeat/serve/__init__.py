"""``coinfeat serve``: a local web page (``web/index.html``) over a JSON API (:mod:`.app`)."""

from coinfeat.serve.app import Recogniser, create_app, serve

__all__ = ["Recogniser", "create_app", "serve"]
