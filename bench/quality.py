"""Quality benchmark: the default model against the pytorch/examples VAE, same data and split.

    python bench/quality.py                                   # trains both, prints the table
    python bench/quality.py --default-out model/zoo/mnist-vae/1   # also (re)writes the shipped model

The baseline is pytorch/examples `vae/main.py`: MLP 784-400-20 with ReLU, Bernoulli
decoder, Adam lr 1e-3, batch 128, the final weights after 30, 100 and 300 epochs (we
report each and the best). Both models are trained by `python -m training` on the same
seeded split of the built-in digits and scored by model/'s runtime on the same test
split: negative ELBO and IWAE NLL with K=1000, nats per image. Results go to
bench/results/quality.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from model.bundle import Manifest, load_bundle

ROOT = Path(__file__).resolve().parent.parent
BASELINE_EPOCHS = (30, 100, 300)
BASELINE = [
    "--arch", "mlp", "--latent-dim", "20",
    "--set", "model.hidden=[400]", "--set", 'model.activation="relu"',
    "--set", "train.lr=0.001", "--set", "train.batch_size=128", "--set", 'train.keep="last"',
    "--set", "train.early_stopping_patience=0", "--set", "train.warmup_epochs=0", "--set", "train.threads=1",
]  # fmt: skip
DEFAULT_CONFIG = Path("training/configs/mnist.toml")  # relative to ROOT, where the runs start
RESULTS = ROOT / "bench" / "results"


def train(out: Path, run_dir: Path, args: list[str], card_note: Path | None = None) -> tuple[Manifest, float]:
    cmd = [sys.executable, "-m", "training", "--out", str(out), "--run-dir", str(run_dir), "--force", "-q", *args]
    if card_note is not None:
        cmd += ["--card-note", str(card_note)]
    print("$", " ".join(cmd), flush=True)
    started = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT)
    return load_bundle(out).manifest, time.perf_counter() - started


def row(label: str, manifest: Manifest, seconds: float) -> dict[str, object]:
    test = next(s for s in manifest.metrics if s.split == "test")
    assert manifest.training is not None
    return {
        "model": label,
        "epochs": manifest.training.epochs_run,
        "parameters": manifest.training.parameters,
        "test_neg_elbo": round(test.neg_elbo, 2),
        "test_iwae_nll": round(test.iwae_nll, 2),
        "importance_samples": test.importance_samples,
        "bits_per_dim": round(test.bits_per_dim, 4),
        "train_seconds": round(seconds, 1),
    }


def table(rows: list[dict[str, object]]) -> str:
    lines = [
        "| model | epochs | parameters | test neg. ELBO | test IWAE NLL (K=1000) | bits/dim | train s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['epochs']} | {r['parameters']:,} | {r['test_neg_elbo']} | "
            f"{r['test_iwae_nll']} | {r['bits_per_dim']} | {r['train_seconds']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--default-out", type=Path, help="write the default model here (e.g. model/zoo/mnist-vae/1)")
    p.add_argument("--work", type=Path, help="where the bundles are trained (default: a temp dir)")
    args = p.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="vaeserve-quality-"))
    rows = []
    for epochs in BASELINE_EPOCHS:
        manifest, seconds = train(
            work / "baseline" / str(epochs), work / "runs" / f"baseline-{epochs}",
            ["--name", "pytorch-examples-vae", "--epochs", str(epochs), *BASELINE],
        )  # fmt: skip
        rows.append(row(f"pytorch/examples VAE ({epochs} epochs)", manifest, seconds))
    best = min(rows, key=lambda r: float(r["test_iwae_nll"]))  # type: ignore[arg-type]
    note = work / "baseline-note.md"
    note.write_text(
        "\n## Against the pytorch/examples VAE (same data, same split)\n"
        f"The MLP 784-400-20 baseline, best of {'/'.join(map(str, BASELINE_EPOCHS))} epochs "
        f"({best['epochs']}), scores {best['test_neg_elbo']} nats negative ELBO and "
        f"{best['test_iwae_nll']} nats IWAE NLL (K=1000) on this test split. "
        "Reproduce with `python bench/quality.py`.\n"
    )
    default_out = args.default_out or work / "default" / "1"
    manifest, seconds = train(default_out, work / "runs" / "default", ["--config", str(DEFAULT_CONFIG)], card_note=note)
    rows.append(row(f"vaeserve default ({manifest.name})", manifest, seconds))
    RESULTS.mkdir(parents=True, exist_ok=True)
    text = table(rows)
    (RESULTS / "quality.md").write_text(text + "\n")
    (RESULTS / "quality.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(text)
    default = rows[-1]
    diff_elbo = float(default["test_neg_elbo"]) - float(best["test_neg_elbo"])  # type: ignore[arg-type]
    diff_iwae = float(default["test_iwae_nll"]) - float(best["test_iwae_nll"])  # type: ignore[arg-type]
    print(f"default minus best baseline: neg ELBO {diff_elbo:+.2f} nats, IWAE NLL {diff_iwae:+.2f} nats")
    return 0


if __name__ == "__main__":
    sys.exit(main())
