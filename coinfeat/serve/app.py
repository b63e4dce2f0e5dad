"""``coinfeat serve``: a local web page and JSON API to identify a coin from a photo.

The page (``coinfeat/serve/web/index.html``) uses only the API:

* ``GET /api/health``: status, head, collection size, whether the features are pretrained
* ``POST /api/predict`` (multipart field ``image``): top-k coins, most similar photos, unknown flag,
  and the photo as the model saw it (padded/cropped, as a PNG data URL)
* ``GET /api/similar?path=...&k=8``: neighbours of a photo of the collection
* ``GET /api/collection?limit=24``: some photos of the collection to pick from
* ``GET /api/photo?path=...``: a collection photo (only paths the store holds)
* ``POST /api/count`` (multipart field ``image``): every coin of a whole photo of a pile, the total
  per currency and the annotated photo (a PNG data URL), as ``coinfeat count --json``

Uploads over the size limit get 413, anything that is not a decodable image 415; the server
keeps serving. Recognition runs in a worker thread, so a health check never waits behind it.
"""

from __future__ import annotations

import threading
import time
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, File, HTTPException, Query, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse
from PIL import Image

from coinfeat.core.answer_sets import DEFAULT_CONFIDENCE, AnswerSets
from coinfeat.core.errors import CoinfeatError, DecodeError
from coinfeat.core.extraction.embedder import DEFAULT_TTA, Embedder
from coinfeat.core.heads import load_head
from coinfeat.core.heads.builtin import resolve_head
from coinfeat.core.heads.unknown import unknown_scores
from coinfeat.core.images.decode import data_url
from coinfeat.core.images.model_input import load_image
from coinfeat.core.metrics import label_parts, part_answers, set_answer
from coinfeat.core.provenance import check_compatible
from coinfeat.core.store import open_store
from coinfeat.counting.count import CoinCounter
from coinfeat.similar import Collection, calibrated_threshold, is_unknown

DEFAULT_MAX_UPLOAD_MB = 20.0
"""Large enough for a 12 Mpx phone photo of a pile (1.5 to 4 MB as JPEG, more as PNG)."""
WEB_PICTURE = 1200


class Recogniser:
    """Everything a request needs, loaded once: the head and its extractor, and, when a store is
    given, the collection whose most similar photos are shown beside each answer."""

    def __init__(
        self,
        features: str | Path | None = None,
        head_dir: str | Path | None = None,
        top_k: int = 5,
        k: int = 8,
        tta: str = DEFAULT_TTA,
        threshold: float | None = None,
    ) -> None:
        self.head_dir = resolve_head(head_dir)
        self.head = load_head(self.head_dir)
        self.store = open_store(features) if features is not None else None
        if self.store is not None:
            check_compatible(self.head, self.store)
        self.embedder = Embedder(self.head.meta.extractor(self.head_dir))
        self.answer_sets = AnswerSets.load(self.head_dir)
        self.collection = Collection(self.store, "train") if self.store is not None else None
        self.threshold = (
            threshold if threshold is not None or self.store is None else calibrated_threshold(self.store)
        )
        self.rule = self.head.meta.unknown_rule()
        self.top_k, self.k, self.tta = top_k, k, tta
        self.names = {**(self.store.manifest.label_names if self.store else {}), **self.head.meta.label_names}
        self.parts = label_parts(self.head.classes_, self.names, None)
        self.pretrained = bool(self.head.meta.features and self.head.meta.features.pretrained)
        size = self.embedder.spec.image_size
        self.embedder.embed_images(np.zeros((1, size, size, 3), np.float32))  # load the engine now
        self._engine_lock = threading.Lock()  # requests run in worker threads; an interpreter is not shared
        self._counter: CoinCounter | None = None

    def count(self, data: bytes) -> dict[str, Any]:
        """Count the coins of an uploaded photo of a pile, with the same head and engine."""
        if self._counter is None:
            self._counter = CoinCounter(self.head_dir, tta=self.tta, embedder=self.embedder)
        with self._engine_lock:
            result = self._counter.count(data, name="upload", draw=True)
        if result.error:
            raise DecodeError(result.error)
        picture = result.picture
        picture.thumbnail((WEB_PICTURE, WEB_PICTURE))
        return {
            **result.to_dict(),
            "annotated": data_url(picture),
            "timing_ms": {"total": result.seconds * 1000},
        }

    def recognise(self, data: bytes) -> dict[str, Any]:
        """Decode, embed, classify and look up neighbours for one uploaded photo."""
        started = time.perf_counter()
        spec = self.embedder.spec
        square = load_image(data, spec.image_size, self.embedder.resize, crop=self.embedder.crop)
        decoded = time.perf_counter()
        with self._engine_lock:
            vector = self.embedder.embed_images(square[None], self.tta)
        embedded = time.perf_counter()
        proba = self.head.predict_proba(vector)[0]
        order = np.argsort(-proba)[: self.top_k]
        answer = self.neighbours(vector) if self.collection is not None else self._unknown(vector, proba)
        done = time.perf_counter()
        return {
            "predictions": [
                {
                    "label": str(self.head.classes_[i]),
                    "name": self._name(self.head.classes_[i]),
                    "probability": round(float(proba[i]), 4),
                }
                for i in order
            ],
            "parts": part_answers(proba, self.parts),
            "answer_set": self._answer_set(proba),
            **answer,
            "model_input": data_url(Image.fromarray(square.astype(np.uint8))),
            "pretrained": self.pretrained,
            "timing_ms": {
                "decode": _ms(started, decoded),
                "embed": _ms(decoded, embedded),
                "head_and_neighbours": _ms(embedded, done),
                "total": _ms(started, done),
            },
        }

    def _answer_set(self, proba: np.ndarray) -> dict[str, Any] | None:
        """The conformal answer set at 90% (:mod:`coinfeat.core.answer_sets`), names included."""
        if self.answer_sets is None:
            return None
        labels = self.answer_sets.sets(proba[None], DEFAULT_CONFIDENCE)[0]
        return {
            "confidence": DEFAULT_CONFIDENCE,
            "labels": labels,
            "names": [self._name(x) for x in labels],
            "answer": set_answer(labels, self.names, self.parts, self.head.classes_),
        }

    def _unknown(self, vector: np.ndarray, proba: np.ndarray) -> dict[str, Any]:
        """Without a collection: the head's own unknown-coin rule (calibrated on its val photos)."""
        if self.rule is None:
            return {"neighbours": [], "unknown": False, "threshold": None}
        score = unknown_scores(self.head, vector, self.rule.score, proba[None])
        return {
            "neighbours": [],
            "unknown": bool(self.rule.is_unknown(score)[0]),
            "threshold": self.rule.threshold(),
        }

    def neighbours(
        self, vector: np.ndarray, exclude: set[int] | frozenset[int] = frozenset(), k: int | None = None
    ) -> dict[str, Any]:
        found = self.collection.nearest(vector, k or self.k, exclude)
        items = self.collection.items
        return {
            "neighbours": [
                {
                    "label": str(items["label"].iloc[i]),
                    "name": self._name(items["label"].iloc[i]),
                    "similarity": round(s, 4),
                    "path": str(items["path"].iloc[i]),
                }
                for s, i in found
            ],
            "unknown": is_unknown(found, self.threshold),
            "threshold": self.threshold,
        }

    def similar_to_stored(self, path: str, k: int | None = None) -> dict[str, Any]:
        """Neighbours of a collection photo, leaving out the photo and every identical copy of it
        (as ``similar --exclude-self`` does)."""
        row = self.collection.row_of(path) if self.collection is not None else None
        if row is None:
            raise KeyError(path)
        return self.neighbours(self.collection.vectors([row]), self.collection.same_photo(row), k)

    def photo_path(self, path: str) -> Path:
        """A collection photo on disk; only paths the store holds are served."""
        if self.collection is None or self.collection.row_of(path) is None:
            raise KeyError(path)
        return self.collection.root / path

    def _name(self, label: str) -> str:
        return self.names.get(str(label), str(label))


def create_app(recogniser: Recogniser, max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB):
    """The FastAPI application around a loaded :class:`Recogniser`."""
    app = FastAPI(title="coinfeat", description="Identify a coin from a photo.")
    limit = int(max_upload_mb * 1024 * 1024)
    page = (resources.files("coinfeat.serve") / "web" / "index.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page

    @app.get("/api/health")
    def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "head": recogniser.head.name,
            "head_dir": str(recogniser.head_dir),
            "classes": len(recogniser.head.classes_),
            "collection": len(recogniser.collection.items) if recogniser.collection is not None else 0,
            "pretrained": recogniser.pretrained,
            "fingerprint": recogniser.head.meta.extractor(recogniser.head_dir).fingerprint,
            "max_upload_mb": max_upload_mb,
        }

    async def answer(image: UploadFile, work) -> dict[str, Any]:
        """Read an upload within the size limit and run ``work`` on it in a worker thread."""
        data = await image.read(limit + 1)
        if len(data) > limit:
            raise HTTPException(413, f"the photo is larger than {max_upload_mb:g} MB")
        try:
            return await run_in_threadpool(work, data)
        except DecodeError as exc:
            raise HTTPException(415, f"not a usable image: {exc}") from None

    @app.post("/api/predict")
    async def predict(image: UploadFile = File(...)) -> dict[str, Any]:  # noqa: B008
        return await answer(image, recogniser.recognise)

    @app.post("/api/count")
    async def count(image: UploadFile = File(...)) -> dict[str, Any]:  # noqa: B008
        return await answer(image, recogniser.count)

    @app.get("/api/similar")
    def similar(path: str = Query(...), k: int = Query(8, ge=1, le=100)) -> dict[str, Any]:
        try:
            return recogniser.similar_to_stored(path, k)
        except KeyError:
            raise HTTPException(404, f"no photo {path!r} in the collection") from None

    @app.get("/api/collection")
    def collection(limit: int = Query(24, ge=1, le=500)) -> dict[str, Any]:
        if recogniser.collection is None:
            return {"photos": []}
        items = recogniser.collection.items
        picked = items.groupby("label").head(max(1, limit // max(1, items["label"].nunique()))).head(limit)
        return {"photos": [{"path": p, "label": str(lbl)} for p, lbl in zip(picked["path"], picked["label"])]}

    @app.get("/api/photo")
    def photo(path: str = Query(...)) -> FileResponse:
        try:
            return FileResponse(recogniser.photo_path(path))
        except KeyError:
            raise HTTPException(404, f"no photo {path!r} in the collection") from None

    return app


def serve(
    features: str | Path | None = None,
    head_dir: str | Path | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
) -> None:
    """Load everything, then serve until interrupted: ``head_dir`` (a folder or a built-in model's
    name; None: the built-in euro model) and, with ``features``, its store's photos to show."""
    import uvicorn

    if port < 1 or port > 65535:
        raise CoinfeatError(f"--port {port} is not a valid port")
    app = create_app(Recogniser(features, head_dir), max_upload_mb)
    uvicorn.run(app, host=host, port=port, log_level="warning")


def _ms(start: float, end: float) -> float:
    return round((end - start) * 1000, 2)
