"""``coinfeat fine-tune``: train the backbone's top blocks on cached activations, in minutes on a CPU.

The same idea as the feature store, a few blocks lower: the frozen lower part of the network (up
to ``cut``) runs ONCE over the train and val photos and ``views`` augmented views of each train
photo; its activations are cached (float16) as an ordinary store in the feature store's folder
(``activations/<cut>/``, written by :func:`coinfeat.core.pipeline.fill_store`, so it is incremental and
crash-safe like the features). Only the upper part (batch norms kept in inference mode) and a
softmax layer are trained, streaming batches from the memory-mapped cache.

The result is an ordinary backbone file (``backbone.keras``, 0..255 RGB -> pooled vector) and an
ordinary head (``head/``, the softmax layer on that vector): every other command uses them as it
uses any backbone and head. ``finetune.json`` beside the backbone records how it was made; stores
embedded with it say "fine-tuned ... on train (N photos)".
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from coinfeat import __version__
from coinfeat.core.augment import FINETUNE_VIEWS
from coinfeat.core.backbones import (
    FINETUNE_RECORD,
    BackboneSpec,
    assemble,
    base_network,
    fingerprint,
    image_input,
    preprocess,
    resolve_backbone,
)
from coinfeat.core.curves import plot_history
from coinfeat.core.embedder import Embedder
from coinfeat.core.engines import Network, open_engine
from coinfeat.core.errors import CoinfeatError
from coinfeat.core.extract import (
    ExtractConfig,
    default_store_dir,
    extract_features,
    make_writable_dir,
    with_views,
    write_errors_explained,
)
from coinfeat.core.heads import ExtractorRecord, HeadMeta, head_types
from coinfeat.core.images import DEFAULT_MAX_PIXELS
from coinfeat.core.pipeline import ImageReader, Runner, SequentialDistributor, WorkItem, fill_store
from coinfeat.core.progress import keras_verbosity
from coinfeat.core.provenance import crop_record
from coinfeat.core.quantize import calibration_loader
from coinfeat.core.runtime import default_threads, import_keras, log
from coinfeat.core.store import (
    AUGMENT_VERSION,
    ITEM_COLUMNS,
    OK,
    PARTS,
    Manifest,
    Store,
    atomic_write,
    manifest_counts,
    open_layout,
    open_store,
    read_manifest,
    store_lock,
)

DEFAULT_FINETUNED_DIR = Path("artifacts") / "finetuned"
ACTIVATIONS = "activations"
DEFAULT_CUTS = {
    "efficientnetb0": "block5c_add",
    "mobilenetv2": "block_12_add",
    "resnet50": "conv4_block6_out",
}
"""Where the trained part starts: about the last quarter of the compute (EfficientNetB0: block6a
to the top, at 7x7; measured on euro-coins with Lite0, BENCHMARKS.md). A ``.keras`` file with B0's
layer names (Lite0) is cut like B0."""
B0_CUT = DEFAULT_CUTS["efficientnetb0"]
VIEWS_VERSION = 1
"""Version of the fine-tuning views (coinfeat.core.augment.FINETUNE_VIEWS); part of the cache fingerprint."""
SEED = 0


@dataclass
class FinetuneConfig:
    """Every option of ``fine-tune``; the defaults are the CLI's."""

    cut: str | None = None
    views: int = 6
    epochs: int = 10
    learning_rate: float = 1e-4
    batch_size: int = 32
    patience: int = 3
    dropout: float = 0.2
    full: bool = False
    embed: bool = True
    embed_out: str | None = None
    engine: str = "auto"
    threads: int | None = None
    progress: bool = True

    def validate(self) -> None:
        for name in ("epochs", "batch_size", "patience"):
            if getattr(self, name) < 1:
                raise CoinfeatError(f"--{name.replace('_', '-')} must be at least 1")
        if self.views < 0:
            raise CoinfeatError("--views must be 0 or more")
        if not 0 < self.learning_rate < 1:
            raise CoinfeatError("--learning-rate must be between 0 and 1, e.g. 1e-4")


@dataclass
class FinetuneResult:
    """What a fine-tune produced, with the figures a person wants to see."""

    out: str
    backbone: str
    head_dir: str
    store: str | None
    cut: str | None
    """None for ``full``: the whole network was trained."""
    mode: str
    views: int
    epochs_run: int
    best_epoch: int
    val_loss: float
    val_accuracy: float
    val_balanced_accuracy: float
    train_photos: int
    val_photos: int
    cache_rows: int
    cache_reused: int
    pretrained: bool
    seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_finetune_dir(store: Store) -> Path:
    return DEFAULT_FINETUNED_DIR / store.manifest.dataset.name


def finetune(
    features: str | Path, out: str | Path | None = None, config: FinetuneConfig | None = None, **options: Any
) -> FinetuneResult:
    """Fine-tune the store's own backbone on its train split (val drives early stopping) and write
    ``backbone.keras``, ``finetune.json``, ``head/``, ``history.json``, ``curves.png`` into ``out``,
    then (unless ``embed`` is off) embed the dataset again with the tuned backbone."""
    cfg = config or FinetuneConfig(**options)
    cfg.validate()
    started = time.perf_counter()
    store = open_store(features)
    train, val = _photo_sets(store)
    notes = _leak_notes(store)
    spec = Embedder(ExtractorRecord.of_manifest(store.manifest)).spec
    out = Path(out) if out else default_finetune_dir(store)
    make_writable_dir(out)
    keras = import_keras()
    keras.utils.set_random_seed(SEED)
    base = base_network(spec)
    classes = np.unique(train["label"].to_numpy(dtype=str))
    seconds: dict[str, float] = {}
    cut, cache_rows, cache_reused = None, 0, 0
    if cfg.full:
        model = _classifier(keras, _full_network(keras, spec, base), len(classes), cfg.dropout)
        data = _photo_batches(store, spec, train, val, classes, cfg)
    else:
        cut = resolve_cut(spec, base, cfg.cut)
        lower, upper = split_network(keras, spec, base, cut)
        t0 = time.perf_counter()
        cache, filled = build_cache(store, spec, lower=lower, cut=cut, cfg=cfg)
        seconds["cache"] = round(time.perf_counter() - t0, 2)
        cache_rows, cache_reused = len(filled.final), len(filled.final) - filled.stats.embedded
        model = _classifier(keras, upper, len(classes), cfg.dropout)
        data = _cached_batches(cache, classes, cfg)
    t0 = time.perf_counter()
    history = _train(keras, model, *data, cfg)
    seconds["training"] = round(time.perf_counter() - t0, 2)
    seconds["per_epoch"] = round(seconds["training"] / max(1, len(history["loss"])), 2)
    val_metrics = _val_metrics(model, data[1], history)
    record = _record(store, spec, cut, cfg, train, val, history, val_metrics, seconds)
    atomic_write(out / FINETUNE_RECORD, json.dumps(record, indent=2))
    assemble(spec, base).save(out / "backbone.keras")
    tuned = resolve_backbone(str(out / "backbone.keras"), image_size=spec.image_size)
    save_history(history, out, record["summary"])
    head_dir = _save_head(model, classes, store, tuned, record, history, out / "head")
    new_store = None
    if cfg.embed:
        t0 = time.perf_counter()
        new_store = _embed_dataset(store, tuned, out, cfg)
        seconds["embed"] = round(time.perf_counter() - t0, 2)
        notes += _split_notes(store, new_store)
        _follow_store(head_dir, new_store)
    seconds["total"] = round(time.perf_counter() - started, 2)
    record["seconds"] = seconds
    atomic_write(out / FINETUNE_RECORD, json.dumps(record, indent=2))
    return FinetuneResult(
        out=str(out),
        backbone=str(out / "backbone.keras"),
        head_dir=str(head_dir),
        store=str(new_store) if new_store else None,
        cut=cut,
        mode="full" if cfg.full else "cached",
        views=0 if cfg.full else cfg.views,
        epochs_run=len(history["loss"]),
        best_epoch=record["best_epoch"],
        val_loss=val_metrics["loss"],
        val_accuracy=val_metrics["accuracy"],
        val_balanced_accuracy=val_metrics["balanced_accuracy"],
        train_photos=len(train),
        val_photos=len(val),
        cache_rows=cache_rows,
        cache_reused=cache_reused,
        pretrained=spec.pretrained,
        seconds=seconds,
        notes=notes,
    )


# --------------------------------------------------------------------------- checks


def _photo_sets(store: Store) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The usable train and val photos; fine-tuning needs both and at least two classes."""
    train = store.items.iloc[store.rows("train")]
    val = store.items.iloc[store.rows("val")]
    if train["label"].nunique() < 2:
        raise CoinfeatError(
            f"store {store.path} has {train['label'].nunique()} class(es) in train; "
            "fine-tuning needs at least 2"
        )
    if len(val) == 0:
        raise CoinfeatError(
            f"store {store.path} has no val photos to stop training on; re-extract with a val share "
            "(--split 70/15/15, or a val/ folder)"
        )
    return train, val


def _leak_notes(store: Store) -> list[str]:
    """A warning when test photos have identical copies (sha256) among the photos trained on."""
    items = store.items[store.items["status"].eq(OK) & store.items["view"].eq(0)]
    seen = set(items.loc[items["split"].isin(["train", "val"]), "sha256"])
    twins = int(items.loc[items["split"].eq("test"), "sha256"].isin(seen).sum())
    if not twins:
        return []
    message = (
        f"leakage: {twins} test photo(s) have an identical copy in train/val; test accuracy of the "
        "fine-tuned network will be inflated"
    )
    log.warning(message)
    return [message]


def resolve_cut(spec: BackboneSpec, base: Any, cut: str | None) -> str:
    """The layer where the trained part starts: ``cut``, or the backbone's documented default."""
    names = [layer.name for layer in base.layers]
    if cut is None:
        cut = DEFAULT_CUTS.get(spec.name) or (B0_CUT if B0_CUT in names else None)
        if cut is None:
            raise CoinfeatError(
                f"no default cut for {spec.name}; pass --cut LAYER, e.g. one of: {_candidates(base)}"
            )
    if cut not in names:
        raise CoinfeatError(f"{spec.name} has no layer {cut!r}; block outputs to cut at: {_candidates(base)}")
    return cut


def _candidates(base: Any) -> str:
    adds = [layer.name for layer in base.layers if type(layer).__name__ == "Add"]
    return ", ".join(adds[-8:]) or ", ".join(layer.name for layer in base.layers[-8:])


def split_network(keras, spec: BackboneSpec, base: Any, cut: str):
    """(lower, upper): ``lower`` maps 0..255 images to the cut's activations (frozen); ``upper``
    maps those activations to the backbone's output, trainable except its batch norms, which
    stay in inference mode (small batches would re-estimate their statistics badly). Both share
    their layers with ``base``, so training ``upper`` tunes ``base``."""
    tensor = base.get_layer(cut).output
    if tensor is base.output:
        raise CoinfeatError(f"cutting {spec.name} at {cut!r} leaves nothing to train; cut lower")
    try:
        upper = keras.Model(tensor, base.output, name="upper")
    except ValueError:
        raise CoinfeatError(
            f"cannot cut {spec.name} at {cut!r}: another connection bypasses it (inside a residual "
            f"block); cut at a block output, e.g. {_candidates(base)}"
        ) from None
    lower_part = keras.Model(base.input, tensor, name="lower")
    lower_part.trainable = False
    for layer in upper.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    if not upper.trainable_weights:
        raise CoinfeatError(f"cutting {spec.name} at {cut!r} leaves nothing to train; cut lower")
    images = image_input(spec)
    return keras.Model(images, lower_part(preprocess(spec, images)), name="lower_0_255"), upper


# --------------------------------------------------------------------------- the activation cache


def activation_fingerprint(base_fingerprint: str, cut: str) -> str:
    text = json.dumps({"base": base_fingerprint, "cut": cut, "views": VIEWS_VERSION, "dtype": "float16"})
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class HalfPrecision:
    """A mapper that stores an engine's activations as float16 (half the disk, same training)."""

    def __init__(self, engine: Any) -> None:
        self.engine, self.name = engine, engine.name

    def embed(self, images: np.ndarray) -> np.ndarray:
        return self.engine.embed(images).astype(np.float16)


def cache_items(store: Store, views: int) -> pd.DataFrame:
    """Every usable train and val photo, plus ``views`` augmented views of each train photo."""
    items = store.items
    photos = items[items["status"].eq(OK) & items["view"].eq(0) & items["split"].isin(["train", "val"])]
    return with_views(photos[ITEM_COLUMNS].reset_index(drop=True), views)


def build_cache(store: Store, spec: BackboneSpec, *, lower: Any, cut: str, cfg: FinetuneConfig):
    """Fill ``<store>/activations/<cut>/`` with the lower part's output for :func:`cache_items`
    (computing only rows not cached yet) and return it opened, with what the run did."""
    folder = store.path / ACTIVATIONS / cut
    make_writable_dir(folder)
    fp = activation_fingerprint(store.fingerprint, cut)
    items = cache_items(store, max(cfg.views, _cached_views(folder, fp)))  # fewer views drop nothing
    row_shape = tuple(int(n) for n in lower.output.shape[1:])
    _check_space(folder, len(items) * int(np.prod(row_shape)) * 2)
    threads = cfg.threads or default_threads()
    resize, size, batch = store.manifest.resize, spec.image_size, cfg.batch_size
    int8 = store.manifest.int8  # an int8 store runs its lower part in int8 too
    network = Network(
        f"{spec.name} up to {cut}",
        hashlib.sha256(f"{spec.model_id}:{cut}".encode()).hexdigest()[:16],
        size,
        lambda: lower,
        spec.precision,
        calibration_loader(int8["root"], int8, size, resize) if int8 else None,
    )

    def manifest_for(final: pd.DataFrame, engine: str | None, previous: Manifest | None) -> Manifest:
        return Manifest(
            fingerprint=fp,
            pretrained=spec.pretrained,
            backbone=spec.describe(),
            resize=resize,
            engine=engine or (previous.engine if previous else None),
            dataset=store.manifest.dataset,
            augment={
                "views_per_train_photo": int(final["view"].max()) if len(final) else 0,
                "policy": asdict(FINETUNE_VIEWS),
                "version": AUGMENT_VERSION,
                "views_version": VIEWS_VERSION,
            },
            counts=manifest_counts(final),
            extra={"kind": "activations", "base_fingerprint": store.fingerprint, "cut": cut},
        )

    with store_lock(folder), write_errors_explained(folder):
        stale = _stale(folder, fp)
        if stale:
            log.warning("discarding the activation cache in %s: %s", folder, stale)
        layout = open_layout(folder, fp, description=f"{spec.label}, cut {cut}", force=bool(stale))
        runner = Runner(
            make_reader=lambda mine: ImageReader(
                mine, batch, threads, size, resize, DEFAULT_MAX_PIXELS, augmenter=FINETUNE_VIEWS
            ),
            open_mapper=lambda probe: HalfPrecision(open_engine(network, cfg.engine, threads, probe)),
            make_writer=lambda index: layout.writer(fp, index),
            progress=cfg.progress,
            desc="caching activations",
        )
        root = Path(store.manifest.dataset.root)
        filled = fill_store(
            layout,
            items,
            fingerprint=fp,
            root=root,
            runner=runner,
            distributor=SequentialDistributor(),
            manifest_for=manifest_for,
        )
    return open_store(folder), filled


def _cached_views(folder: Path, fp: str) -> int:
    manifest = read_manifest(folder)
    if not manifest or manifest.fingerprint != fp:
        return 0
    return int(manifest.augment.get("views_per_train_photo", 0))


def _stale(folder: Path, fp: str) -> str | None:
    """Why a cache left in ``folder`` cannot be reused (the store was rebuilt with another
    extractor, or the views changed version), or None. It is rebuilt, never mixed."""
    manifest = read_manifest(folder)
    theirs = manifest.fingerprint if manifest else None
    foreign = [p for p in (folder / PARTS).glob("*.parquet") if not p.name.startswith(f"{fp}-")]
    if theirs not in (None, fp) or foreign:
        return f"it was made by another extractor or views version ({theirs or 'an unfinished run'})"
    return None


def _check_space(folder: Path, needed: int) -> None:
    """Refuse before starting when the disk cannot hold the cache (parts, then the committed copy)."""
    free = shutil.disk_usage(folder).free
    if free < 2 * needed:
        raise CoinfeatError(
            f"the activation cache needs about {2 * needed / 1e9:.1f} GB free in {folder} while it is "
            f"built ({needed / 1e9:.1f} GB once committed), but only {free / 1e9:.1f} GB is free: free "
            "space, or use fewer --views or a higher --cut"
        )


# --------------------------------------------------------------------------- training data


def _balanced_weights(codes: np.ndarray, n_classes: int) -> np.ndarray:
    counts = np.bincount(codes, minlength=n_classes).astype(np.float64)
    per_class = len(codes) / (n_classes * np.maximum(counts, 1))
    return per_class[codes].astype(np.float32)


def _batches_class(keras):
    class Batches(keras.utils.PyDataset):
        """Batches read on demand (memory-mapped cache rows, or photos decoded per batch), so
        memory does not grow with the number of photos; train batches are reshuffled per epoch."""

        def __init__(self, read, n: int, codes, weights, batch_size: int, shuffle: bool) -> None:
            super().__init__()
            self.read, self.n, self.codes, self.weights = read, n, codes, weights
            self.batch_size, self.shuffle = batch_size, shuffle
            self.epoch = 0
            self.rng = np.random.default_rng(SEED)
            self.order = self.rng.permutation(n) if shuffle else np.arange(n)

        def __len__(self) -> int:
            return -(-self.n // self.batch_size)

        def __getitem__(self, index: int):
            picked = np.sort(self.order[index * self.batch_size : (index + 1) * self.batch_size])
            x = self.read(picked, self.epoch)
            if self.weights is None:
                return x, self.codes[picked]
            return x, self.codes[picked], self.weights[picked]

        def on_epoch_end(self) -> None:
            self.epoch += 1
            if self.shuffle:
                self.order = self.rng.permutation(self.n)

    return Batches


def _cached_batches(cache: Store, classes: np.ndarray, cfg: FinetuneConfig):
    """(train, val) batches of cached activations: train photos and their views, val photos."""
    keras = import_keras()
    Batches = _batches_class(keras)
    out = []
    for split, views in (("train", True), ("val", False)):
        rows = cache.rows(split, include_views=views)
        rows = rows[cache.items["view"].to_numpy()[rows] <= cfg.views]
        codes = np.searchsorted(classes, cache.items["label"].to_numpy(dtype=str)[rows])
        known = np.isin(cache.items["label"].to_numpy(dtype=str)[rows], classes)
        rows, codes = rows[known], codes[known]
        weights = _balanced_weights(codes, len(classes)) if split == "train" else None
        array = cache.embeddings

        def read(picked, epoch, rows=rows, array=array):
            return np.asarray(array[rows[picked]], dtype=np.float32)

        out.append(Batches(read, len(rows), codes, weights, cfg.batch_size, shuffle=split == "train"))
    return out[0], out[1]


def _photo_batches(store: Store, spec: BackboneSpec, train, val, classes, cfg: FinetuneConfig):
    """(train, val) batches of decoded photos for ``--full``: train photos get a fresh seeded
    augmentation every epoch, like a classic fine-tune."""
    keras = import_keras()
    Batches = _batches_class(keras)
    root = Path(store.manifest.dataset.root)
    reader = ImageReader([], 1, 1, spec.image_size, store.manifest.resize, augmenter=FINETUNE_VIEWS)
    threads = cfg.threads or default_threads()
    out = []
    for items, augmented in ((train, True), (val, False)):
        paths = [root / p for p in items["path"]]
        shas = items["sha256"].tolist()
        codes = np.searchsorted(classes, items["label"].to_numpy(dtype=str))

        def read(picked, epoch, paths=paths, shas=shas, augmented=augmented):
            from concurrent.futures import ThreadPoolExecutor

            work = [
                WorkItem(f"{shas[i]}#full{epoch}" if augmented else shas[i], paths[i], int(augmented))
                for i in picked
            ]
            with ThreadPoolExecutor(threads) as pool:
                return np.stack(list(pool.map(reader.load, work))).astype(np.float32)

        weights = _balanced_weights(codes, len(classes)) if augmented else None
        out.append(Batches(read, len(items), codes, weights, cfg.batch_size, shuffle=augmented))
    return out[0], out[1]


# --------------------------------------------------------------------------- the model and training


def _full_network(keras, spec: BackboneSpec, base: Any):
    """The whole backbone trainable (``--full``), batch norms in inference mode, 0..255 images in."""
    base.trainable = True
    for layer in base.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    images = image_input(spec)
    return keras.Model(images, base(preprocess(spec, images)), name="full")


def _classifier(keras, body: Any, n_classes: int, dropout: float):
    """``body`` -> global average pooling -> dropout -> softmax: what is trained."""
    inputs = keras.Input(body.input.shape[1:])
    x = body(inputs)
    if len(x.shape) == 4:
        x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    outputs = keras.layers.Dense(n_classes, activation="softmax", name="coin_softmax")(x)
    return keras.Model(inputs, outputs, name="finetune")


def _train(keras, model: Any, train: Any, val: Any, cfg: FinetuneConfig) -> dict[str, list[float]]:
    """Adam with balanced class weights; early stopping on val loss restores the best epoch."""
    model.compile(
        optimizer=keras.optimizers.Adam(cfg.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=cfg.patience, restore_best_weights=True)
    fitted = model.fit(
        train, validation_data=val, epochs=cfg.epochs, callbacks=[stop], verbose=keras_verbosity(cfg.progress)
    )
    return {k: [float(v) for v in values] for k, values in fitted.history.items()}


def _val_metrics(model: Any, val: Any, history: dict[str, list[float]]) -> dict[str, float]:
    from sklearn.metrics import balanced_accuracy_score

    best = int(np.argmin(history["val_loss"]))
    predicted = np.argmax(model.predict(val, verbose=0), axis=1)
    truth = np.concatenate([val[i][1] for i in range(len(val))])
    return {
        "loss": round(history["val_loss"][best], 4),
        "accuracy": round(float(np.mean(predicted == truth)), 4),
        "balanced_accuracy": round(float(balanced_accuracy_score(truth, predicted)), 4),
    }


# --------------------------------------------------------------------------- outputs


def _photo_set(items: pd.DataFrame) -> dict[str, Any]:
    digest = hashlib.sha256("\n".join(sorted(items["sha256"].astype(str))).encode()).hexdigest()
    return {"photos": len(items), "sha256_of_sorted_sha256": digest}


def _record(store, spec, cut, cfg, train, val, history, val_metrics, seconds) -> dict[str, Any]:
    """``finetune.json``: enough to know what the tuned backbone is and to reproduce it."""
    best = int(np.argmin(history["val_loss"])) + 1
    mode = "end to end" if cfg.full else f"above {cut}"
    trained = "" if spec.pretrained else " from NOT PRETRAINED weights"
    return {
        "summary": f"fine-tuned{trained} {mode} on train ({len(train)} photos)",
        "pretrained": spec.pretrained,
        "base": {"fingerprint": store.fingerprint, "backbone": spec.describe(), "store": str(store.path)},
        "cut": None if cfg.full else cut,
        "mode": "full" if cfg.full else "cached",
        "views": 0 if cfg.full else cfg.views,
        "augmentation": asdict(FINETUNE_VIEWS),
        "epochs_run": len(history["loss"]),
        "best_epoch": best,
        "learning_rate": cfg.learning_rate,
        "batch_size": cfg.batch_size,
        "patience": cfg.patience,
        "dropout": cfg.dropout,
        "seed": SEED,
        "val": val_metrics,
        "photos": {"train": _photo_set(train), "val": _photo_set(val), "test": "never used"},
        "seconds": seconds,
        "coinfeat_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def save_history(history: dict[str, list[float]], out: Path, title: str = "") -> Path:
    """``history.json`` and ``curves.png``: loss and accuracy per epoch, train and val."""
    atomic_write(out / "history.json", json.dumps(history, indent=2))
    return plot_history(history, out / "curves.png", title)


def _save_head(
    model: Any, classes: np.ndarray, store: Store, tuned: BackboneSpec, record, history, folder: Path
) -> Path:
    """The trained softmax layer as an ordinary dense head whose extractor is the tuned backbone."""
    dense = model.get_layer("coin_softmax")
    head = head_types()["dense"].from_keras(
        dense, classes, learning_rate=record["learning_rate"], batch_size=record["batch_size"]
    )
    head.fit_seconds_ = record["seconds"].get("training")
    head.history_ = history
    manifest = Manifest(
        fingerprint=fingerprint(tuned, store.manifest.resize),
        backbone=tuned.describe(),
        resize=store.manifest.resize,
        pretrained=tuned.pretrained,
    )
    head.meta = HeadMeta(
        features=ExtractorRecord.of_manifest(manifest, dataset=store.manifest.dataset.name),
        label_names=store.manifest.label_names,
        crops=crop_record(store),
        finetune={k: record[k] for k in ("summary", "cut", "views", "epochs_run", "best_epoch", "val")},
        training={"epochs_run": record["epochs_run"], "best_epoch": record["best_epoch"]},
        val_accuracy=record["val"]["accuracy"],
        coinfeat_version=__version__,
        created=record["created"],
    )
    return head.save(folder)


def _follow_store(head_dir: Path, store_dir: Path) -> None:
    """Point the head at the extractor of the store it was embedded into (for an int8 base store,
    the tuned backbone is run in int8 there, calibrated on that store's train photos)."""
    from coinfeat.core.heads import load_head

    head, store = load_head(head_dir), open_store(store_dir)
    head.meta.features = ExtractorRecord.of_manifest(
        store.manifest, store=str(store.path.resolve()), dataset=store.manifest.dataset.name
    )
    head.save(head_dir)


def _embed_dataset(store: Store, tuned: BackboneSpec, out: Path, cfg: FinetuneConfig) -> Path:
    """A new store of the same dataset, same splits, embedded with the tuned backbone."""
    dataset = store.manifest.dataset
    names = out / "label_names.json"
    atomic_write(names, json.dumps(dataset.label_names))
    split = store.manifest.split
    config = ExtractConfig(
        backbone=str(out / "backbone.keras"),
        image_size=tuned.image_size,
        resize=store.manifest.resize,
        engine=cfg.engine,
        threads=cfg.threads,
        group_regex=store.manifest.group_regex,
        label_names=str(names) if dataset.label_names else None,
        split=tuple(split.get("fractions", (0.7, 0.15, 0.15))),
        seed=split.get("seed", 0),
        progress=cfg.progress,
        precision=store.manifest.precision,
    )
    target = Path(cfg.embed_out) if cfg.embed_out else default_store_dir(f"{dataset.name}-finetuned")
    summary = extract_features(dataset.source or dataset.root, target, config)
    return Path(summary.store)


def _split_notes(base: Store, new_store: Path) -> list[str]:
    """Fine-tuning is honest only if the new store keeps the base store's splits."""
    old = base.items.loc[base.items["view"].eq(0)].set_index("path")["split"]
    new = open_store(new_store).items.loc[lambda t: t["view"].eq(0)].set_index("path")["split"]
    both = old.index.intersection(new.index)
    moved = int((old[both] != new[both]).sum())
    if not moved:
        return []
    message = (
        f"{moved} photo(s) are in another split in {new_store} than in {base.path}: "
        "its test figures are not honest"
    )
    log.warning(message)
    return [message]
