"""The bundle's human-readable files: sample grid, reconstructions, loss curve, model card.

Images are drawn through model/'s runtime on the exported graphs, so they show what the
service will serve, not what torch computed.
"""

from __future__ import annotations

import io
import math
import re
from datetime import datetime

import numpy as np
from numpy.typing import NDArray

from model.bundle import Calibration, DatasetInfo, GoldenInfo, Quantization, SplitMetrics, TrainingInfo
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
    golden: GoldenInfo | None,
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

{metrics_section(metrics)}
{calibration_section(calibration, golden)}
## Limits
- Trained on {dataset.rows} images; inputs unlike them get high scores by design, but likelihoods
  of very simple inputs can be misleadingly high (Nalisnick et al. 2019).
- Bernoulli "likelihoods" of grey pixels are a convention, not a density of the data.
{note}"""


def calibration_section(calibration: Calibration, golden: GoldenInfo | None = None, note: str = "") -> str:
    """The model card's "## Anomaly calibration" section, ending with a newline."""
    warning = small_split_warning(calibration)
    lines = [
        f"- Score `{calibration.score}` on {calibration.split_size} held-out normal images "
        f"(K={calibration.importance_samples}, seed {calibration.seed}).",
        f"- Threshold {calibration.threshold:.6g} at a false-positive rate of {calibration.false_positive_rate:.2%}.",
        f"- Calibration scores kept for: {', '.join(f'`{name}`' for name in calibration.scores)}.",
        "- p-value = (1 + #calibration scores >= s) / (n + 1).",
    ]
    if calibration.combination is not None:
        c = calibration.combination
        lines.append(f"- `fisher` and `tippett` pool the p-values of {', '.join(f'`{n}`' for n in c.scores)} "
                     f"against the {c.split} split ({c.split_size} images).")  # fmt: skip
    if calibration.pixel_threshold is not None:
        lines.append(f"- Heatmap pixel threshold {calibration.pixel_threshold:.4g} nats per pixel.")
    if golden is not None:
        how = "torch and the ONNX graphs, which agree" if golden.computed_by == "torch+onnx" else "the ONNX graphs"
        lines.append(f"- Golden set: {golden.images} images in `{golden.file}`, from {how}; checked at every load.")
    if warning:
        lines.append(f"- **Warning**: {warning}")
    return "## Anomaly calibration\n" + "\n".join(lines) + "\n" + note


def metrics_section(metrics: list[SplitMetrics]) -> str:
    """The model card's "## Metrics" section, ending with a newline."""
    rows = "".join(
        f"| {s.split} | {s.images} | {s.neg_elbo:.2f} | {s.reconstruction:.2f} | {s.kl:.2f} | "
        f"{s.iwae_nll:.2f} (K={s.importance_samples}) | {s.bits_per_dim:.4f} |\n"
        for s in metrics
    )
    return f"""## Metrics (nats per image; lower is better)
| split | images | neg. ELBO | reconstruction | KL | IWAE NLL | bits/dim |
|---|---|---|---|---|---|---|
{rows}"""


def quantization_section(q: Quantization, note: str = "") -> str:
    """The model card's "## Quantisation" section: what was quantised and the quality it kept."""
    rows = "".join(
        f"| {c.metric} | {c.parent:.4f} | {c.quantized:.4f} | {c.change:+.4f} | {c.tolerance:g} |\n" for c in q.quality
    )
    graphs = " and ".join(f"`{g}.onnx`" for g in q.graphs)
    weights = "per channel" if q.per_channel else "per tensor"
    after_table = "\n" + note if note else ""  # a list right after a table needs a blank line
    return f"""## Quantisation
- An int8 variant of `{q.parent.name}:{q.parent.version}`: {graphs} quantised by {q.method}
  (ONNX Runtime {q.onnxruntime}; activations {q.activation_type}, weights {q.weight_type} {weights}),
  calibrated on the parent's {q.calibration_images} calibration images; other graphs are the parent's.
- Thresholds, calibration scores and the metrics above come from these graphs.
- Quality gate (every metric within its tolerance of the float parent):

| metric | float parent | int8 | change | tolerance |
|---|---|---|---|---|
{rows}{after_table}"""


def replace_section(card: str, section: str) -> str:
    """Put `section` ("## Heading\n...") in place of the card's section of that heading, or append it."""
    heading = section.split("\n", 1)[0]
    pattern = re.escape(heading.split("(")[0].rstrip()) + r"[^\n]*\n.*?(?=\n## |\Z)"
    card, found = re.subn(pattern, lambda _: section.rstrip("\n") + "\n", card, count=1, flags=re.DOTALL)
    return card if found else card.rstrip("\n") + "\n\n" + section


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
