"""Anomaly-detection benchmark of the shipped model: the OOD family's selection and report
halves, localisation of synthetic defects, and one-vs-rest on the built-in digits.

    python -m bench.anomaly select        # selection half only: choose the default score and hyper-parameters
    python -m bench.anomaly report        # the report half with the shipped bundle
    python -m bench.anomaly localise      # localisation of synthetic defects with the shipped bundle
    python -m bench.anomaly localise --bundle fundus-vae   # the same for the colour fundus patches
    python -m bench.anomaly one-vs-rest   # train a one-class model per digit and evaluate it (--classes 0 1 7)

The protocol (docs/anomaly.md): `select` looks only at the selection half of
training/ood_family.py and writes bench/results/anomaly-selection.{md,json}: every single
score and every Fisher or Tippett combination of two to four calibrated scores, with the
latent Gaussian mixture at several sizes, ranked by their smallest AUROC over the selection
sets (ties, within 0.002, by the mean); the winner goes into model/scores.py and the shipped
bundle is re-calibrated with it (`python -m training.calibrate`). Only then does `report`
look at the report half, with the bundle as shipped; it writes anomaly-family.{md,json}
(every calibrated score on both halves: the selection half's numbers are `select`'s, whose
latent mixture and combination are fitted exactly as the shipped bundle's). `localise`
writes anomaly-localisation.{md,json,png}: 50 test digits per defect kind and seed; with
`--bundle fundus-vae`, anomaly-fundus-localisation.{md,json,png} (and docs/img/fundus-localisation.png):
50 held-out fundus patches per colour defect (scratch, spot, stain) and seed, with the image
AUROC of every calibrated score.

Normal images: the bundle's test split (500; never its calibration split). Each OOD set:
N_PER_SET images drawn with seeds 0, 1 and 2, the seed also drawing the scores' noise;
AUROC is averaged over the seeds per set. Every score with K=64, as the service computes it;
one process per seed. Time on 2 CPU cores shared with other work (load average 10 to 14):
`select` 38 minutes (24 of them scoring, in one process before the pool was added),
`report` 10 minutes, `localise` 9 minutes.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image
from scipy.stats import rankdata

from model.bundle import Calibration, Combination, load_bundle
from model.decision import decide
from model.latents import posterior
from model.localise import anomaly_masks, heatmap_png, overlay, pixel_maps
from model.preprocess import encode_png
from model.runtime import RuntimeOptions, ScoreBatch, VAERuntime, batched_scores, combined_scores
from model.scores import CALIBRATED_SCORES, COMBINED_SCORES, mixture_nll
from training.calibrate import fit_latent_mixture
from training.data import bundle_arrays
from training.defects import COLOUR_DEFECTS, DEFECTS, KINDS, add_defects
from training.evaluate import EVALUATED_SCORES
from training.evaluate import main as evaluate
from training.localisation import aupro, pixel_auroc
from training.ood_family import half, make_set

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SHIPPED = ROOT / "model" / "zoo" / "mnist-vae" / "1"
FUNDUS = ROOT / "model" / "zoo" / "fundus-vae" / "1"
SEEDS = (0, 1, 2)
N_PER_SET = 100
K = 64
MIXTURE_SIZES = (5, 10, 20, 40)  # latent_nll's hyper-parameter, chosen on the selection half
POOL = tuple(name for name in CALIBRATED_SCORES if name not in COMBINED_SCORES)  # what a combination may pool
TIE = 0.002  # smallest AUROCs this close count as equal; the mean decides
ONE_CLASS = [  # ~500 images per class: 250 train, 50 validation, 100 calibration, 100 test
    "--data", "mnist", "--epochs", "60", "--latent-dim", "8",
    "--set", "model.channels=[16, 32]", "--set", "model.hidden=[128]",
    "--set", "train.batch_size=32", "--set", 'train.lr_schedule="cosine"', "--set", 'train.augment=[{kind="shift"}]',
    "--set", "train.threads=2",
    "--set", "data.test_fraction=0.2", "--set", "data.calibration_fraction=0.2",
    "--set", "data.validation_fraction=0.1",
    "--set", "calibration.test_importance_samples=256",
]  # fmt: skip
F64 = NDArray[np.float64]


def _auroc(normal: F64, anomalous: F64) -> float:
    """AUROC with anomalies positive: the Mann-Whitney U statistic over average ranks (ties count
    one half), what sklearn's roc_auc_score gives, at a fraction of its cost."""
    ranks = rankdata(np.concatenate([normal, anomalous]))
    n, m = len(normal), len(anomalous)
    return float((ranks[n:].sum() - m * (m + 1) / 2) / (n * m))


# -- scoring the family ------------------------------------------------------------------------


def _score_seed(seed: int, sets: list[str], n: int) -> tuple[dict[str, Any], dict[str, dict[str, Any]], dict[str, Any]]:
    """One seed's work, in its own process: the normal set's and every set's score arrays, and the sets' images."""
    runtime = VAERuntime(load_bundle(SHIPPED), RuntimeOptions(intra_op_threads=1, inter_op_threads=1))
    test = bundle_arrays(runtime.manifest)["test"]
    started = time.perf_counter()
    normal = batched_scores(runtime, test, K, seed).arrays()
    images = {name: make_set(name, runtime.manifest, test, n, seed) for name in sets}
    anomalous = {name: batched_scores(runtime, images[name], K, seed).arrays() for name in sets}
    print(f"seed {seed}: {len(sets)} sets scored in {time.perf_counter() - started:.0f} s", flush=True)
    return normal, anomalous, images


class Scored:
    """Scores of the normal set and of some sets of the family, per seed; one process per seed."""

    def __init__(self, runtime: VAERuntime, sets: list[str], seeds: tuple[int, ...], n: int) -> None:
        self.test = bundle_arrays(runtime.manifest)["test"]
        self.sets = sets
        self.normal: dict[int, ScoreBatch] = {}
        self.anomalous: dict[tuple[int, str], ScoreBatch] = {}
        self.images: dict[tuple[int, str], NDArray[np.float32]] = {}
        with ProcessPoolExecutor(len(seeds)) as pool:
            done = pool.map(_score_seed, seeds, [sets] * len(seeds), [n] * len(seeds))
            for seed, (normal, anomalous, images) in zip(seeds, done, strict=True):
                self.normal[seed] = ScoreBatch.from_arrays(normal, K)
                for name in sets:
                    self.anomalous[seed, name] = ScoreBatch.from_arrays(anomalous[name], K)
                    self.images[seed, name] = images[name]
        self.seeds = seeds

    def only(self, sets: list[str]) -> Scored:
        """The same scores, for some of the sets."""
        other = object.__new__(Scored)
        other.__dict__ |= self.__dict__ | {"sets": sets}
        return other

    def table(self, values: Callable[[ScoreBatch], F64]) -> dict[str, float]:
        """AUROC per set, averaged over seeds, of a score given as values(batch) -> (N,)."""
        return {
            name: float(np.mean([_auroc(values(self.normal[s]), values(self.anomalous[s, name])) for s in self.seeds]))
            for name in self.sets
        }


def _summary(per_set: dict[str, float]) -> tuple[float, float]:
    values = list(per_set.values())
    return min(values), float(np.mean(values))


# -- select: the selection half only ---------------------------------------------------------------


def select(seeds: tuple[int, ...], n: int) -> dict[str, Any]:
    """Rank every score and combination on the selection half; write and return the ranking."""
    runtime = VAERuntime(load_bundle(SHIPPED))
    splits = bundle_arrays(runtime.manifest)
    scored = Scored(runtime, [s.name for s in half("selection")], seeds, n)
    reference = batched_scores(runtime, splits["validation"], K, 0)  # the combination's reference split
    train_means, _ = posterior(runtime, splits["train"])

    def means(images: NDArray[np.float32]) -> F64:
        return posterior(runtime, images)[0]

    # latent_nll for each mixture size, keyed by the batch it belongs to
    batches = {id(b): b for b in [reference, *scored.normal.values(), *scored.anomalous.values()]}
    inputs = {id(reference): splits["validation"]}
    inputs |= {id(b): scored.test for b in scored.normal.values()}
    inputs |= {id(scored.anomalous[key]): scored.images[key] for key in scored.anomalous}
    latent = {bid: means(inputs[bid]) for bid in batches}
    latent_nll: dict[int, dict[int, F64]] = {}
    for size in MIXTURE_SIZES:
        mix = fit_latent_mixture(train_means, size, seed=0)
        nll = {bid: mixture_nll(z, mix.weights, mix.means, mix.precisions_cholesky) for bid, z in latent.items()}
        latent_nll[size] = nll

    def values_of(name: str, size: int) -> Callable[[ScoreBatch], F64]:
        return lambda b: latent_nll[size][id(b)] if name == "latent_nll" else b[name]

    rows: list[dict[str, Any]] = []
    for size in MIXTURE_SIZES:
        for name in POOL:
            if name != "latent_nll" and size != MIXTURE_SIZES[0]:
                continue
            per_set = scored.table(values_of(name, size))
            rows.append({"score": name, "mixture": size if name == "latent_nll" else None, "per_set": per_set})
        for r in (2, 3, 4):
            for combo in itertools.combinations(POOL, r):
                if "latent_nll" not in combo and size != MIXTURE_SIZES[0]:
                    continue
                ref = {c: np.sort(values_of(c, size)(reference)) for c in combo}
                combination = Combination(scores=list(combo), split="validation", split_size=len(reference),
                                          reference={c: v.tolist() for c, v in ref.items()})  # fmt: skip
                for method in COMBINED_SCORES:

                    def pooled(b: ScoreBatch, c: Combination = combination, m: str = method, k: int = size) -> F64:
                        return combined_scores(c, {name: values_of(name, k)(b) for name in c.scores})[m]

                    rows.append({"score": method, "combine": list(combo),
                                 "mixture": size if "latent_nll" in combo else None,
                                 "per_set": scored.table(pooled)})  # fmt: skip
    for row in rows:
        row["min"], row["mean"] = _summary(row["per_set"])
    best_min = max(row["min"] for row in rows)

    def rank(row: dict[str, Any]) -> tuple[int, float]:  # contenders (within TIE of the best min) by their mean
        return (0, -row["mean"]) if row["min"] >= best_min - TIE else (1, -row["min"])

    rows.sort(key=rank)
    result = {"seeds": list(seeds), "images_per_set": n, "importance_samples": K, "sets": scored.sets,
              "chosen": rows[0], "ranking": rows}  # fmt: skip
    (RESULTS / "anomaly-selection.json").write_text(json.dumps(result, indent=1) + "\n")
    (RESULTS / "anomaly-selection.md").write_text(_selection_md(result))
    print(_selection_md(result))
    return result


def _label(row: dict[str, Any]) -> str:
    text = row["score"] + (f"({', '.join(row['combine'])})" if "combine" in row else "")
    return text + (f", mixture {row['mixture']}" if row.get("mixture") else "")


def _selection_md(result: dict[str, Any]) -> str:
    sets = result["sets"]
    singles = [r for r in result["ranking"] if "combine" not in r]
    lines = [
        f"Selection half only. AUROC per set, mean over seeds {', '.join(map(str, result['seeds']))}; "
        f"{result['images_per_set']} images per set, normal = the test split (500); K={result['importance_samples']}. "
        f"Ranked by the smallest AUROC over the sets (within {TIE}: by the mean).\n",
        f"**Chosen: {_label(result['chosen'])}**\n",
        "| rank | score | min | mean | " + " | ".join(sets) + " |",
        "|---" * (len(sets) + 4) + "|",
    ]
    for i, row in enumerate(result["ranking"][:15]):
        cells = " | ".join(f"{row['per_set'][s]:.3f}" for s in sets)
        lines.append(f"| {i + 1} | {_label(row)} | {row['min']:.3f} | {row['mean']:.3f} | {cells} |")
    lines += ["", "Every single score (latent_nll at each mixture size):", "",
              "| score | min | mean | " + " | ".join(sets) + " |", "|---" * (len(sets) + 3) + "|"]  # fmt: skip
    for row in sorted(singles, key=lambda r: -r["min"]):
        cells = " | ".join(f"{row['per_set'][s]:.3f}" for s in sets)
        lines.append(f"| {_label(row)} | {row['min']:.3f} | {row['mean']:.3f} | {cells} |")
    return "\n".join(lines) + "\n"


# -- report: both halves with the shipped calibration --------------------------------------------


def _selection_half(cal: Calibration, mixture: int) -> dict[str, Any]:
    """Every calibrated score's AUROC per selection set (mean over seeds), from `select`'s
    results: the same scores the shipped bundle computes, whose mixture and combination
    `select` fitted the same way, so the selection half is not scored twice."""
    ranking = json.loads((RESULTS / "anomaly-selection.json").read_text())
    assert cal.combination is not None
    auroc: dict[str, dict[str, list[float]]] = {}
    for row in ranking["ranking"]:
        name, combine = row["score"], row.get("combine")
        chosen = combine == cal.combination.scores if name in COMBINED_SCORES else combine is None
        if chosen and row.get("mixture") in (None, mixture):
            auroc[name] = {s: [v] for s, v in row["per_set"].items()}
    return {"sets": ranking["sets"], "auroc": auroc}


def report(seeds: tuple[int, ...], n: int) -> None:
    """The report half, scored with the shipped bundle; the selection half from `select`'s results."""
    runtime = VAERuntime(load_bundle(SHIPPED))
    cal, latents = runtime.manifest.calibration, runtime.manifest.latents
    assert cal is not None and latents is not None and latents.mixture is not None
    scores = list(CALIBRATED_SCORES)
    result: dict[str, Any] = {"seeds": list(seeds), "images_per_set": n, "importance_samples": K,
                              "default": cal.score, "halves": {}}  # fmt: skip
    result["halves"]["selection"] = _selection_half(cal, len(latents.mixture.weights))
    scored = Scored(runtime, [s.name for s in half("report")], seeds, n)
    result["halves"]["report"] = {
        "sets": scored.sets,
        "auroc": {name: {s: [_auroc(scored.normal[seed][name], scored.anomalous[seed, s][name]) for seed in seeds]
                         for s in scored.sets} for name in scores},
    }  # fmt: skip
    (RESULTS / "anomaly-family.json").write_text(json.dumps(result, indent=1) + "\n")
    (RESULTS / "anomaly-family.md").write_text(_family_md(result, scores))
    print(_family_md(result, scores))


def _family_md(result: dict[str, Any], scores: list[str]) -> str:
    default = result["default"]
    lines = [f"AUROC of the shipped model (default score `{default}`), normal = its test split (500); "
             f"{result['images_per_set']} images per OOD set; mean over seeds {', '.join(map(str, result['seeds']))} "
             f"(the lowest seed in brackets where it is below 0.95); K={result['importance_samples']}.\n"]  # fmt: skip
    summary = ["| score | selection min | selection mean | report min | report mean | report sets >= 0.95 | "
               "report sets below mse |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    stats: dict[str, dict[str, Any]] = {name: {} for name in scores}
    for which, data in result["halves"].items():
        sets = data["sets"]
        seeds = next(iter(data["auroc"][scores[0]].values()))
        lines += [f"### {which} half", "", "| set | " + " | ".join(scores) + " |", "|---" * (len(scores) + 1) + "|"]
        mean = {name: {s: float(np.mean(data["auroc"][name][s])) for s in sets} for name in scores}
        for s in sets:
            cells = []
            for name in scores:
                low = min(data["auroc"][name][s])
                cells.append(f"{mean[name][s]:.3f}" + (f" ({low:.3f})" if low < 0.95 and len(seeds) > 1 else ""))
            lines.append(f"| {s} | " + " | ".join(cells) + " |")
        lines.append("| **min** | " + " | ".join(f"{min(mean[n].values()):.3f}" for n in scores) + " |")
        lines.append("| **mean** | " + " | ".join(f"{np.mean(list(mean[n].values())):.3f}" for n in scores) + " |")
        lines.append("")
        for name in scores:
            stats[name][which] = (min(mean[name].values()), float(np.mean(list(mean[name].values()))))
            if which == "report":
                stats[name]["at_least"] = sum(v >= 0.95 for v in mean[name].values())
                stats[name]["below_mse"] = [s for s in sets if mean[name][s] < mean["mse"][s]]
                stats[name]["sets"] = len(sets)
    for name in scores:
        st = stats[name]
        below = ", ".join(st["below_mse"]) or "none"
        summary.append(f"| {'**' + name + '**' if name == default else name} | {st['selection'][0]:.3f} | "
                       f"{st['selection'][1]:.3f} | {st['report'][0]:.3f} | {st['report'][1]:.3f} | "
                       f"{st['at_least']} of {st['sets']} | {below} |")  # fmt: skip
    return lines[0] + "\n" + "\n".join(summary) + "\n\n" + "\n".join(lines[1:])


# -- localisation -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LocalisationTask:
    """What `localise` measures on one bundle: which defects, how many per seed, where it writes."""

    bundle: Path
    defects: tuple[str, ...]
    images_per_defect: int
    results: str  # bench/results/<results>.{md,json,png}
    picture: Path | None  # a copy of the picture for the docs
    what: str  # the images, in words
    scale: int  # the picture's upscaling


LOCALISE = {
    "mnist-vae": LocalisationTask(SHIPPED, DEFECTS, 50, "anomaly-localisation", None, "test digits", 3),
    "fundus-vae": LocalisationTask(FUNDUS, COLOUR_DEFECTS, 50, "anomaly-fundus-localisation",
                                   ROOT / "docs" / "img" / "fundus-localisation.png", "held-out fundus patches", 2),
}  # fmt: skip


def localisation(task: LocalisationTask, seeds: tuple[int, ...]) -> None:
    """Pixel AUROC, AUPRO and the masks at the calibrated thresholds, for each kind of defect;
    image AUROC of every calibrated score."""
    runtime = VAERuntime(load_bundle(task.bundle))
    cal = runtime.manifest.calibration
    assert cal is not None and cal.pixel_threshold is not None
    threshold, n = cal.pixel_threshold, task.images_per_defect
    test = bundle_arrays(runtime.manifest)["test"]
    normal = runtime.score(test, K, 0)
    normal_maps = pixel_maps(normal.pixel_nll)
    normal_verdicts = decide(cal, normal.scores).is_anomaly
    assert normal_verdicts is not None
    rows, pictures, by_score = [], [], {}
    for kind in task.defects:
        per_seed, score_aurocs = [], []
        for seed in seeds:
            rng = np.random.default_rng([seed, KINDS.index(kind)])
            clean = test[rng.choice(len(test), size=n, replace=False)]
            images, truth = add_defects(clean, kind, rng)
            scored = runtime.score(images, K, seed)
            maps = pixel_maps(scored.pixel_nll)
            squared = ((images - scored.reconstructions) ** 2).sum(axis=1)
            verdicts = decide(cal, scored.scores).is_anomaly
            assert verdicts is not None
            masks = anomaly_masks(maps, threshold, verdicts)
            all_maps = np.concatenate([maps, normal_maps])
            all_truth = np.concatenate([truth, np.zeros_like(normal_maps, bool)])
            sq_all = np.concatenate([squared, ((test - normal.reconstructions) ** 2).sum(axis=1)])
            hit = masks & truth
            per_seed.append({
                "pixel_auroc": pixel_auroc(all_maps, all_truth), "aupro": aupro(all_maps, all_truth),
                "pixel_auroc_squared_error": pixel_auroc(sq_all, all_truth),
                "aupro_squared_error": aupro(sq_all, all_truth),
                "image_auroc": _auroc(decide(cal, normal.scores).values, decide(cal, scored.scores).values),
                "flagged": float(verdicts.mean()),
                "mask_precision": float(hit.sum() / max(masks.sum(), 1)), "mask_recall": float(hit.sum() / truth.sum()),
                "mask_iou": float(np.mean([(m & t).sum() / (m | t).sum() for m, t in zip(masks, truth, strict=True)])),
            })  # fmt: skip
            score_aurocs.append({name: _auroc(normal[name], scored[name]) for name in cal.scores})
            if seed == seeds[0]:
                for i in range(2):
                    pictures.append((images[i], truth[i], maps[i], masks[i]))
        rows.append({"defect": kind, **{key: float(np.mean([p[key] for p in per_seed])) for key in per_seed[0]}})
        by_score[kind] = {name: float(np.mean([a[name] for a in score_aurocs])) for name in cal.scores}
    normal_masks = anomaly_masks(normal_maps, threshold, normal_verdicts)
    quiet = {"normal_images": len(test), "flagged": float(normal_verdicts.mean()),
             "with_mask_pixels": float(normal_masks.any(axis=(1, 2)).mean()),
             "over_pixel_threshold_anywhere": float((normal_maps > threshold).any(axis=(1, 2)).mean())}  # fmt: skip
    result = {"bundle": runtime.manifest.name, "seeds": list(seeds), "images_per_defect": n,
              "pixel_threshold": threshold, "defects": rows, "normal": quiet,
              "image_auroc_by_score": by_score}  # fmt: skip
    (RESULTS / f"{task.results}.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [
        f"{runtime.manifest.name}, pixel map -log p(x_i | z = posterior mean); pixel threshold {threshold:.4g} nats "
        f"(calibration split, FPR {cal.false_positive_rate}); {n} {task.what} per defect and seed, seeds "
        f"{', '.join(map(str, seeds))}, plus the {len(test)} {task.what} as normal images. Masks: pixels over the "
        f"pixel threshold in images the default score `{cal.score}` flags.\n",
        "| defect | image AUROC | pixel AUROC | AUPRO (FPR 0.3) | pixel AUROC, squared error | AUPRO, squared error "
        "| flagged | mask precision | mask recall | mask IoU |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['defect']} | {r['image_auroc']:.3f} | {r['pixel_auroc']:.3f} | {r['aupro']:.3f} | "
                     f"{r['pixel_auroc_squared_error']:.3f} | {r['aupro_squared_error']:.3f} | {r['flagged']:.2f} | "
                     f"{r['mask_precision']:.2f} | {r['mask_recall']:.2f} | {r['mask_iou']:.2f} |")  # fmt: skip
    over = quiet["over_pixel_threshold_anywhere"]
    lines.append(f"\nNormal {task.what}: {quiet['flagged']:.1%} flagged, {quiet['with_mask_pixels']:.1%} with any "
                 f"mask pixel, {over:.1%} with any pixel over the pixel threshold.")  # fmt: skip
    if task.picture is not None:  # image AUROC of every calibrated score (the digits' are in anomaly-family.md)
        lines += ["", "| image AUROC | " + " | ".join(task.defects) + " |", "|---|" + "---|" * len(task.defects)]
        lines += [f"| {'**' + name + '**' if name == cal.score else name} | "
                  + " | ".join(f"{by_score[kind][name]:.3f}" for kind in task.defects) + " |"
                  for name in cal.scores]  # fmt: skip
    (RESULTS / f"{task.results}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    _localisation_png(pictures, threshold, RESULTS / f"{task.results}.png", task.scale)
    if task.picture is not None:
        task.picture.write_bytes((RESULTS / f"{task.results}.png").read_bytes())


def _localisation_png(pictures: list[tuple[Any, Any, Any, Any]], threshold: float, path: Path, scale: int) -> None:
    """Rows: input | ground truth | heatmap (0 to twice the pixel threshold) | overlay | mask."""

    def rgb(png: bytes) -> NDArray[np.uint8]:
        with Image.open(io.BytesIO(png)) as image:
            return np.asarray(image.convert("RGB"))

    def grey(mask: NDArray[np.bool_]) -> NDArray[np.uint8]:
        return np.repeat((mask * 255).astype(np.uint8)[..., None], 3, axis=-1)

    gap = np.full((pictures[0][0].shape[-2], 2, 3), 128, np.uint8)
    rows = []
    for image, truth, pixel_map, mask in pictures:
        tiles = [rgb(encode_png(image)), grey(truth), rgb(heatmap_png(pixel_map, threshold)),
                 overlay(image, pixel_map, threshold), grey(mask)]  # fmt: skip
        rows.append(np.concatenate([t for tile in tiles for t in (tile, gap)][:-1], axis=1))
    pairs = [np.concatenate(rows[i : i + 2], axis=1) for i in range(0, len(rows), 2)]
    grid = Image.fromarray(np.concatenate(pairs, axis=0))
    grid.resize((grid.width * scale, grid.height * scale), Image.Resampling.NEAREST).save(path)


# -- one-vs-rest -------------------------------------------------------------------------------------


def one_vs_rest(digit: int, work: Path) -> list[dict[str, object]]:
    out = work / f"digit-{digit}" / "1"
    cmd = [sys.executable, "-m", "training", "--out", str(out), "--run-dir", str(work / "runs" / str(digit)),
           "--labels", str(digit), "--name", f"digit-{digit}", "--force", "-q", *ONE_CLASS]  # fmt: skip
    print("$", " ".join(cmd), flush=True)
    started = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT)
    print(f"trained digit {digit} in {time.perf_counter() - started:.0f} s", flush=True)
    report_dir = RESULTS / "anomaly-one-vs-rest" / f"digit-{digit}"
    if evaluate([str(out), "--anomaly", "builtin:other-digits", "--out", str(report_dir), "-q"]) != 0:
        raise SystemExit(f"evaluation of digit {digit} failed")
    rows: list[dict[str, object]] = json.loads((report_dir / "evaluation.json").read_text())["results"]
    return [{"digit": digit, **r} for r in rows]


def one_vs_rest_md(rows: list[dict[str, object]], scores: list[str]) -> str:
    """AUROC per normal digit (rows) and score (columns), and the mean."""
    lines = ["| normal digit | " + " | ".join(scores) + " |", "|---" * (len(scores) + 1) + "|"]
    digits = sorted({int(r["digit"]) for r in rows})  # type: ignore[call-overload]
    auroc = {(r["digit"], r["score"]): float(r["auroc"]) for r in rows}  # type: ignore[arg-type]
    for d in digits:
        lines.append(f"| {d} | " + " | ".join(f"{auroc[d, s]:.3f}" for s in scores) + " |")
    means = [sum(auroc[d, s] for d in digits) / len(digits) for s in scores]
    lines.append("| mean | " + " | ".join(f"{m:.3f}" for m in means) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("part", choices=["select", "report", "localise", "one-vs-rest"])
    p.add_argument("--classes", type=int, nargs="+", default=list(range(10)), help="normal digits for one-vs-rest")
    p.add_argument("--work", type=Path, help="where the one-class bundles are trained (default: a temp dir)")
    p.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS), help="seeds of the OOD sets")
    p.add_argument("--images", type=int, default=N_PER_SET, help="images per OOD set")
    p.add_argument("--bundle", choices=sorted(LOCALISE), default="mnist-vae", help="which shipped bundle to localise")
    args = p.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    seeds = tuple(args.seeds)
    if args.part == "select":
        select(seeds, args.images)
    elif args.part == "report":
        report(seeds, args.images)
    elif args.part == "localise":
        localisation(LOCALISE[args.bundle], seeds)
    else:
        work = args.work or Path(tempfile.mkdtemp(prefix="vaeserve-anomaly-"))
        rows: list[dict[str, object]] = []
        scores = [s for s in EVALUATED_SCORES if s != "png_bits"]
        for digit in args.classes:  # the tables grow digit by digit
            rows += one_vs_rest(digit, work)
            (RESULTS / "anomaly-one-vs-rest.json").write_text(json.dumps(rows, indent=2) + "\n")
            table = one_vs_rest_md(rows, scores)
            (RESULTS / "anomaly-one-vs-rest.md").write_text(
                f"AUROC, one-vs-rest: normal = the digit's test split, anomalies = 500 other digits; K={K}, seed 0."
                "\n\n" + table
            )
        print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
