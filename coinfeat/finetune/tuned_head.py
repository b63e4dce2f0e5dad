"""The tuned network's head: its trained output layer as an ordinary head (dense for the softmax
objective, centroid for the cosine one), with its memory of the classes and its unknown-coin rule."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from coinfeat import __version__
from coinfeat.core.extraction.backbones import BackboneSpec, fingerprint
from coinfeat.core.heads import ExtractorRecord, HeadMeta, head_types, load_head
from coinfeat.core.heads.unknown import UnknownRule
from coinfeat.core.provenance import crop_record
from coinfeat.core.store import Manifest, Store, open_store
from coinfeat.finetune.cache import ACTIVATIONS
from coinfeat.finetune.network import COSINE_SCALE
from coinfeat.finetune.training import cached_train_vectors


def save_head(
    model: Any, classes: np.ndarray, store: Store, tuned: BackboneSpec, record, history, folder: Path
) -> Path:
    """The trained output layer as an ordinary head whose extractor is the tuned backbone: the
    softmax layer as a dense head, the cosine objective's class vectors as a centroid head's
    prototypes (same probabilities: its temperature is the inverse of the training scale)."""
    if record.objective == "cosine":
        vectors = model.get_layer("coin_cosine").get_weights()[0].T
        head = head_types()["centroid"].from_prototypes(vectors, classes, temperature=1 / COSINE_SCALE)
    else:
        head = head_types()["dense"].from_keras(
            model.get_layer("coin_softmax"),
            classes,
            learning_rate=record.learning_rate,
            batch_size=record.batch_size,
        )
    head.fit_seconds_ = record.seconds.get("training")
    head.history_ = history
    manifest = Manifest(
        fingerprint=fingerprint(tuned, store.manifest.resize, store.manifest.crop),
        backbone=tuned.describe(),
        resize=store.manifest.resize,
        crop=store.manifest.crop,
        pretrained=tuned.pretrained,
    )
    head.meta = HeadMeta(
        features=ExtractorRecord.of_manifest(manifest, dataset=store.manifest.dataset.name),
        label_names=store.manifest.label_names,
        crops=crop_record(store),
        finetune={
            k: getattr(record, k)
            for k in ("summary", "cut", "views", "objective", "epochs_run", "best_epoch", "val")
        },
        training={"epochs_run": record.epochs_run, "best_epoch": record.best_epoch},
        val_accuracy=record.val["accuracy"],
        coinfeat_version=__version__,
        created=record.created,
    )
    return head.save(folder)


def follow_store(head_dir: Path, store_dir: Path) -> None:
    """Point the head at the extractor of the store it was embedded into (for an int8 base store,
    the tuned backbone is run in int8 there, calibrated on that store's train photos), and give it
    its memory of the classes from that store's train vectors."""
    head, store = load_head(head_dir), open_store(store_dir)
    head.meta.features = ExtractorRecord.of_manifest(
        store.manifest, store=str(store.path.resolve()), dataset=store.manifest.dataset.name
    )
    X_train, train = store.select("train")
    head.memorise(X_train, train["label"])
    head.save(head_dir)


def memorise_from_cache(keras, model: Any, store: Store, cut: str, head_dir: Path, batch_size: int) -> None:
    """Without a new store, the head remembers its classes from the tuned network's vectors of the
    cached train photos (so ``enrol`` and the similarity score work all the same)."""
    head = load_head(head_dir)
    head.memorise(*cached_train_vectors(keras, model, open_store(store.path / ACTIVATIONS / cut), batch_size))
    head.save(head_dir)


def set_unknown_rule(head_dir: Path, rule: UnknownRule) -> None:
    head = load_head(head_dir)
    head.meta.unknown = rule.to_dict()
    head.save(head_dir)
