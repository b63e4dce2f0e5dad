"""The fine-tune objective weighed: softmax against cosine with a margin (metric learning), on
enrolment of coin types the network never saw and on top-1, side by side in one run.

Per draw (seed), two euro classes are held out with `compare --enrol`'s draw. The network is
fine-tuned (default settings, `--max-minutes 15`) on a copy of the euro-coins folders WITHOUT those
two classes, once per objective; all 2,830 photos are then embedded with each tuned backbone (same
splits as the frozen store). On each store (frozen, tuned softmax, tuned cosine) every head is
fitted on the six known classes and the two new ones are enrolled from 5 train photos each
(`compare --enrol 2 --shots 5`); the tuned network's own head (dense for softmax, centroid of the
learned class vectors for cosine) is enrolled the same way. Reported: top-1 on the known classes'
test photos before enrolment, and on the new and the old classes' test photos after it.

    python scripts/bench_objectives.py [--seeds 0 1] [--work DIR] [--write BENCHMARKS.md]

Each finished stage is kept in WORK/results.json; a rerun continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from bench_protocols import DATA, LITE0, store_at
from benchlib import write_section

REPO = Path(__file__).resolve().parents[1]
GROUPS = r"^(.*)_[^_]+$"
HEADS = ["logreg", "dense", "knn", "centroid"]
OBJECTIVES = ["softmax", "cosine"]
K, SHOTS = 2, 5


def known_folders(work: Path, held_out: list[str]) -> Path:
    """The euro-coins folders without the held-out classes (links, no copies)."""
    root = work / f"known-{'-'.join(held_out)}"
    for split in ("train", "test"):
        for folder in sorted((DATA / split).iterdir()):
            link = root / split / folder.name
            if folder.name not in held_out and not link.exists():
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(folder.resolve(), target_is_directory=True)
    return root


def tuned_store(work: Path, known_store: Path, objective: str, seed: int) -> tuple[Path, Path]:
    """(store of all photos embedded with the tuned backbone, the tuned network's own head)."""
    from coinfeat import extract_features
    from coinfeat.finetune import FinetuneConfig, finetune

    out, store = work / f"tuned-{seed}-{objective}", work / f"store-{seed}-{objective}"
    if not (store / "manifest.json").exists():  # a rerun after a later stage failed
        config = FinetuneConfig(objective=objective, seed=seed, embed=False, progress=False)
        finetune(known_store, out, config)
    extract_features(DATA, store, backbone=str(out / "backbone.keras"), group_regex=GROUPS, progress=False)
    return store, out / "head"


def own_head(store_dir: Path, head_dir: Path, seed: int) -> dict:
    """The tuned network's own head (trained on the known classes only), enrolled with the draw."""
    from coinfeat import open_store
    from coinfeat.compare.enrolment import enrolment_draw
    from coinfeat.core.heads import load_head

    store = open_store(store_dir)
    X_train, train = store.select("train")
    X_test, test = store.select("test")
    truth = test["label"].to_numpy()
    new, picked = enrolment_draw(train["label"].to_numpy(), truth, k=K, shots=SHOTS, seed=seed)
    is_new = np.isin(truth, new)
    head = load_head(head_dir)
    known = ~np.isin(train["label"].to_numpy(), new)
    head.memorise(X_train[known], train["label"].to_numpy()[known])  # as fine-tune's own embedding does
    before = head.predict(X_test[~is_new])
    head.enrol(X_train[picked], train["label"].to_numpy()[picked])
    after = head.predict(X_test)
    return {
        "new_top1": float(np.mean(after[is_new] == truth[is_new])),
        "old_top1": float(np.mean(after[~is_new] == truth[~is_new])),
        "old_top1_before": float(np.mean(before == truth[~is_new])),
    }


def enrolled(store_dir: Path, seed: int) -> tuple[list[str], dict]:
    from coinfeat import open_store
    from coinfeat.compare.enrolment import enrolment

    found = enrolment(open_store(store_dir), HEADS, k=K, shots=SHOTS, seed=seed)
    return found["new_classes"], found["heads"]


def measure(work: Path, seeds: list[int]) -> dict:
    from coinfeat import extract_features
    from coinfeat.compare.enrolment import enrolment_draw

    work.mkdir(parents=True, exist_ok=True)
    saved = work / "results.json"
    results = json.loads(saved.read_text()) if saved.exists() else {}
    frozen = store_at(REPO / "artifacts" / "features" / "euro-coins-lite0")
    for seed in seeds:
        draw = results.setdefault(str(seed), {})
        tested = frozen.select("test")[1]["label"]
        held_out, _ = enrolment_draw(
            frozen.select("train")[1]["label"].to_numpy(), tested.to_numpy(), k=K, shots=SHOTS, seed=seed
        )
        draw["held_out"] = held_out
        tested = tested.isin(held_out)
        draw["new_test"], draw["old_test"] = int(tested.sum()), int((~tested).sum())
        if "frozen" not in draw:
            draw["frozen"] = {"heads": enrolled(frozen.path, seed)[1]}
        known = work / f"known-store-{seed}"
        if not (known / "manifest.json").exists():
            extract_features(known_folders(work, held_out), known, backbone=str(LITE0), group_regex=GROUPS)
        for objective in OBJECTIVES:
            if objective in draw:
                continue
            store, head_dir = tuned_store(work, known, objective, seed)
            new, heads = enrolled(store, seed)
            assert new == held_out, (new, held_out)
            finetuned = json.loads((head_dir.parent / "finetune.json").read_text())
            seconds = finetuned["seconds"]["total"]
            draw[objective] = {
                "heads": heads,
                "own": own_head(store, head_dir, seed),
                "finetune_seconds": round(seconds, 1),
                "epochs_run": finetuned["epochs_run"],
                "val": finetuned["val"],
            }
            saved.write_text(json.dumps(results, indent=2))
        saved.write_text(json.dumps(results, indent=2))
    return {s: results[str(s)] for s in seeds}


def section(results: dict) -> str:
    seeds, draws = list(results), list(results.values())
    lines = [
        "<!-- bench_objectives:start -->",
        "## Fine-tune objective: softmax or cosine with a margin (`scripts/bench_objectives.py`)",
        "",
        f"Euro coins, pretrained Lite0, default crop; per draw (seeds {', '.join(map(str, seeds))}) two "
        "classes held out of the fine-tune itself (it trains on a copy of the folders without them, "
        "default settings), then enrolled from 5 train photos each into heads fitted on the six "
        "known classes of each store. Top-1 on the photo-disjoint test folder: known classes before "
        "enrolment (old before), new and old classes after it, and all test photos after it. "
        "Mean over the draws (min-max). "
        "`own head`: the tuned network's trained output (dense softmax layer; for cosine, a centroid "
        "head of the learned class vectors).",
        "",
        "| backbone | head | old before | new after | old after | all after |",
        "|---|---|---|---|---|---|",
    ]
    for backbone in ["frozen", *OBJECTIVES]:
        names = ["own", *HEADS] if backbone != "frozen" else HEADS
        for head in names:
            rows = [d[backbone]["own"] if head == "own" else d[backbone]["heads"][head] for d in draws]
            cells = [_spread([r[k] for r in rows]) for k in ("old_top1_before", "new_top1", "old_top1")]
            cells.append(_spread([_all_after(r, d) for r, d in zip(rows, draws)]))
            lines.append(f"| {backbone} | {'own head' if head == 'own' else head} | {' | '.join(cells)} |")
    lines += ["", "| objective | fine-tune s | epochs | val loss | val top-1 |", "|---|---|---|---|---|"]
    for objective in OBJECTIVES:
        rows = [d[objective] for d in results.values()]
        lines.append(
            f"| {objective} | {np.mean([r['finetune_seconds'] for r in rows]):.0f} | "
            f"{'/'.join(str(r['epochs_run']) for r in rows)} | "
            f"{'/'.join(format(r['val']['loss'], '.3f') for r in rows)} | "
            f"{_spread([r['val']['accuracy'] for r in rows])} |"
        )
    held = "; ".join(f"seed {s}: {', '.join(d['held_out'])}" for s, d in results.items())
    lines += [
        "",
        f"Held out: {held}. Val losses differ in kind (the cosine one includes its margin).",
        "<!-- bench_objectives:end -->",
    ]
    return "\n".join(lines)


def _all_after(figures: dict, draw: dict) -> float:
    """Top-1 over every test photo after enrolment (the new and the old classes' photos)."""
    right = figures["new_top1"] * draw["new_test"] + figures["old_top1"] * draw["old_test"]
    return right / (draw["new_test"] + draw["old_test"])


def _spread(values: list[float]) -> str:
    return f"{np.mean(values):.3f} ({min(values):.2f}-{max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--work", type=Path, default=REPO / "artifacts" / "bench-objectives")
    parser.add_argument("--write", type=Path, help="update this BENCHMARKS.md")
    args = parser.parse_args()
    text = section(measure(args.work, args.seeds))
    print(text)
    if args.write:
        write_section(args.write, text, "bench_objectives")


if __name__ == "__main__":
    main()
