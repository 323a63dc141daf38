"""The bundle's human-readable files: sample grid, reconstructions, loss curve, model card.

Images are drawn through model/'s runtime on the exported graphs, so they show what the
service will serve, not what torch computed.
"""

from __future__ import annotations

import io
import math
from datetime import datetime

import numpy as np
from numpy.typing import NDArray

from model.bundle import Calibration, DatasetInfo, SplitMetrics, TrainingInfo
from model.preprocess import encode_png, make_grid
from model.runtime import VAERuntime
from training.config import RunConfig

SAMPLE_SEED = 0


def samples_png(runtime: VAERuntime, n: int = 64) -> bytes:
    """A grid of n images decoded from prior draws (seed 0)."""
    _, images = runtime.sample(n, seed=SAMPLE_SEED)
    return encode_png(make_grid(images, columns=8))


def reconstructions_png(runtime: VAERuntime, images: NDArray[np.float32], columns: int = 8, rows: int = 4) -> bytes:
    """Rows of inputs, each above the row of their reconstructions."""
    inputs = images[: columns * rows]
    recon = runtime.reconstruct(inputs)
    paired = []
    for r in range(0, len(inputs), columns):
        paired += [inputs[r : r + columns], recon[r : r + columns]]
    return encode_png(make_grid(np.concatenate(paired), columns=columns))


def loss_curve_png(history: list[dict[str, float]]) -> bytes:
    """Training loss and validation negative ELBO per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ax.plot(epochs, [h["train_loss"] for h in history], label="train loss (reconstruction + beta KL)")
    ax.plot(epochs, [h["val_neg_elbo"] for h in history], label="validation negative ELBO")
    ax.set_xlabel("epoch")
    ax.set_ylabel("nats per image")
    values = [h["val_neg_elbo"] for h in history] + [h["train_loss"] for h in history]
    low = min(values)
    ax.set_ylim(low - 5, min(max(values), low + 4 * (np.median(values) - low) + 10))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def model_card(
    *,
    config: RunConfig,
    version: str,
    created: datetime,
    training: TrainingInfo,
    dataset: DatasetInfo,
    metrics: list[SplitMetrics],
    calibration: Calibration,
    command: str,
    note: str = "",
) -> str:
    """MODEL_CARD.md: what the model is, what it was trained on, how good it is."""
    m, t, d = config.model, config.train, config.data
    augment = ", ".join(_augmentation(a.model_dump()) for a in t.augment) or "none"
    processes = f" in {training.world_size} processes" if training.world_size > 1 else ""
    arch = (
        f"convolutional, channels {m.channels}, fully connected {m.hidden}"
        if m.arch == "conv"
        else f"MLP, hidden {m.hidden}"
    )
    metric_rows = "\n".join(
        f"| {s.split} | {s.images} | {s.neg_elbo:.2f} | {s.reconstruction:.2f} | {s.kl:.2f} | "
        f"{s.iwae_nll:.2f} (K={s.importance_samples}) | {s.bits_per_dim:.4f} |"
        for s in metrics
    )
    counts = ", ".join(f"{k} {v}" for k, v in dataset.split.counts.items())
    return f"""# {config.name} v{version}

A variational autoencoder served by vaeserve. Created {created.isoformat(timespec="seconds")}.

## Model
- Architecture: {arch}; latent dimension {m.latent_dim}; {training.parameters:,} trainable parameters.
- Likelihood p(x|z): {m.likelihood}; prior p(z) = N(0, I).
- Input: {d.channels} x {d.height} x {d.width} ({"greyscale" if d.channels == 1 else "RGB"}), values in [0, 1];
  other sizes are resized ({d.resize}, {d.fit.replace("_", " ")}).

## Data
- Source: `{dataset.source}`, {dataset.rows} images{f", labels {dataset.labels}" if dataset.labels else ""}.
- Split (seed {dataset.split.seed}): {counts}. {dataset.split.algorithm}.

## Training
- {training.epochs_run} epochs run, best validation epoch {training.best_epoch}, {training.wall_seconds:.0f} s
  on {training.device}{processes} ({t.precision}).
- AdamW lr {t.lr}, weight decay {t.weight_decay}, batch {t.batch_size}, beta {t.beta},
  KL warm-up {t.warmup_epochs} epochs, early stopping patience {t.early_stopping_patience}, seed {t.seed}.
- Augmentation: {augment}.
- Reproduce (from the repository root): `{command}`

## Metrics (nats per image; lower is better)
| split | images | neg. ELBO | reconstruction | KL | IWAE NLL | bits/dim |
|---|---|---|---|---|---|---|
{metric_rows}

{calibration_section(calibration)}
## Limits
- Trained on {dataset.rows} images; inputs unlike them get high scores by design, but likelihoods
  of very simple inputs can be misleadingly high (Nalisnick et al. 2019).
- Bernoulli "likelihoods" of grey pixels are a convention, not a density of the data.
{note}"""


def calibration_section(calibration: Calibration, note: str = "") -> str:
    """The model card's "## Anomaly calibration" section, ending with a newline."""
    warning = small_split_warning(calibration)
    return f"""## Anomaly calibration
- Score `{calibration.score}` on {calibration.split_size} held-out normal images
  (K={calibration.importance_samples}, seed {calibration.seed}).
- Threshold {calibration.threshold:.6g} at a false-positive rate of {calibration.false_positive_rate:.2%}.
- Calibration scores kept for: {", ".join(f"`{name}`" for name in calibration.scores)}.
- p-value = (1 + #calibration scores >= s) / (n + 1).
{f"- **Warning**: {warning}{chr(10)}" if warning else ""}{note}"""


def small_split_warning(calibration: Calibration) -> str | None:
    """The warning for a calibration split too small for its false-positive rate, or None.

    With n calibration scores no p-value is below 1/(n+1): a threshold at a lower rate is
    the largest calibration score, whose false-positive rate is 1/(n+1) (conformal)."""
    n, rate = calibration.split_size, calibration.false_positive_rate
    smallest = 1.0 / (n + 1)
    if rate >= smallest:
        return None
    needed = math.ceil(1.0 / rate - 1.0)
    return (
        f"{n} calibration images are too few for a false-positive rate of {rate:g}: the smallest p-value is "
        f"1/(n+1) = {smallest:.3g}, so the threshold (the largest calibration score) has a false-positive rate "
        f"of about {smallest:.3g}; calibrate on at least {needed} images for {rate:g}"
    )


def _augmentation(step: dict[str, object]) -> str:
    kind = step.pop("kind")
    return f"{kind} ({', '.join(f'{k} {v}' for k, v in step.items())})"
