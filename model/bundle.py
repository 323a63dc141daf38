"""The model bundle: its manifest schema, atomic writing, and verified reading.

A bundle is a directory (docs/training.md, "The bundle"):

    manifest.json  encoder.onnx  decoder.onnx  MODEL_CARD.md  samples.png  reconstructions.png ...

`manifest.json` describes everything the service needs (input spec, latent size,
likelihood, calibration) and the sha256 of every other file, checked at load: a bundle
whose files do not match its manifest is refused. A model repository is a directory of
bundles, `<root>/<name>/<version>/`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from model.errors import BundleError

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
ENCODER = "encoder.onnx"
DECODER = "decoder.onnx"


class _Schema(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputSpec(_Schema):
    """What the encoder takes: images are converted to this by model/preprocess.py."""

    channels: Literal[1, 3]
    height: int = Field(gt=0)
    width: int = Field(gt=0)
    colour_mode: Literal["L", "RGB"]
    value_range: tuple[float, float] = (0.0, 1.0)
    resize: Literal["error", "bilinear", "nearest"] = "bilinear"
    fit: Literal["stretch", "center_crop"] = "stretch"  # another aspect ratio: stretched, or its centre cropped
    # What transparent pixels show: images with alpha (or a transparent palette entry or
    # colour key) are composited over it before conversion. One grey value for every
    # channel, or one per channel, in value_range; black for models trained on light
    # strokes on black, like the shipped MNIST model.
    background: tuple[float, ...] = (0.0,)

    @model_validator(mode="after")
    def _mode_matches_channels(self) -> InputSpec:
        if (self.colour_mode == "L") != (self.channels == 1):
            raise ValueError(f"colour_mode {self.colour_mode} does not match {self.channels} channels")
        low, high = self.value_range
        if len(self.background) not in (1, self.channels) or not all(low <= v <= high for v in self.background):
            raise ValueError(
                f"background {list(self.background)} must be one value, or one per channel ({self.channels}), "
                f"each in the value range [{low}, {high}]"
            )
        return self

    @property
    def dims(self) -> int:
        return self.channels * self.height * self.width


class LikelihoodSpec(_Schema):
    """p(x|z): Bernoulli per pixel from `logits`, or Gaussian from `mean` and a log std."""

    kind: Literal["bernoulli", "gaussian"]
    log_scale: list[float] | None = None  # Gaussian only: log std per channel

    @property
    def decoder_output(self) -> str:
        return "logits" if self.kind == "bernoulli" else "mean"


class FileEntry(_Schema):
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bytes: int = Field(ge=0)


class SplitSpec(_Schema):
    """How rows of the dataset were assigned to splits, enough to recompute them."""

    algorithm: str
    seed: int
    counts: dict[str, int]
    indices_sha256: dict[str, str]  # sha256 of each split's int64 row indices, in order


class DatasetInfo(_Schema):
    source: str
    rows: int  # after the label filter
    labels: list[int | str] | None  # label values, or class names for folders and lists
    sha256: str  # identifies the rows the split was drawn from, as `fingerprint` says
    # "array": sha256 of the rows as one float32 [N, C, H, W] array; "files": sha256 of the
    # lines "<sha256 of the file>  <relative path>\n" in row order (docs/training.md)
    fingerprint: Literal["array", "files"] = "array"
    split: SplitSpec


class TrainingInfo(_Schema):
    config: dict[str, Any]
    seed: int
    epochs_run: int
    best_epoch: int
    parameters: int
    wall_seconds: float
    library_versions: dict[str, str]
    device: str = "cpu"  # where it trained, e.g. "cuda:0 (NVIDIA H100 80GB HBM3)"
    world_size: int = 1  # training processes (torchrun), each with its share of every batch


class SplitMetrics(_Schema):
    """Mean scores over one split, in nats per image unless named otherwise."""

    split: str
    images: int
    neg_elbo: float
    reconstruction: float  # -E_q[log p(x|z)]
    kl: float
    iwae_nll: float
    importance_samples: int
    bits_per_dim: float  # of iwae_nll


class Combination(_Schema):
    """How the combined scores (`fisher`, `tippett`) pool other scores' conformal p-values.

    Each component's p-value is taken against `reference`, the sorted scores of another
    held-out split than the calibration split: the combined score is then a fixed function
    of the image, and its own calibration scores give exactly valid p-values and thresholds
    however dependent its components are (docs/anomaly.md, "Combining scores").
    """

    scores: list[str]  # the components, calibrated scores that are not combined themselves
    split: str  # where `reference` comes from ("validation")
    split_size: int
    reference: dict[str, list[float]]  # sorted ascending, per component


class Calibration(_Schema):
    """Scores of held-out normal images, for thresholds and p-values."""

    score: str  # the score the default decision uses
    split_size: int
    false_positive_rate: float
    threshold: float
    importance_samples: int
    seed: int
    scores: dict[str, list[float]]  # sorted ascending, per score name
    combination: Combination | None = None
    # The heatmap's threshold, nats per pixel: the conformal (1 - false_positive_rate) point
    # (model/decision.threshold_at_fpr), over the calibration images, of each image's largest
    # -log p(x_i | z = posterior mean) summed over channels (model/localise.py). At most that
    # rate of normal images show a pixel above it.
    pixel_threshold: float | None = None
    # 1 / (split_size + 1): the smallest p-value, so the lowest false-positive rate a
    # threshold can be set at; above false_positive_rate, the split was too small for it.
    smallest_p_value: float | None = None


class LatentMixture(_Schema):
    """A Gaussian mixture with full covariances fitted to the training split's posterior means
    (scikit-learn's GaussianMixture, at training or re-calibration): the density of the
    aggregate posterior that the `latent_nll` score uses."""

    weights: list[float]  # (M,)
    means: list[list[float]]  # (M, D)
    precisions_cholesky: list[list[list[float]]]  # (M, D, D): L with L L^T = the inverse covariance
    reg_covar: float  # added to each covariance's diagonal when fitting
    seed: int


class LatentStatistics(_Schema):
    """Posterior means E_q[z|x] of the training split, summarised at training time.

    What the service compares new inputs with: a reference sample for two-sample drift
    tests, moments for latent density scores, and each dimension's activity, the variance
    of its posterior mean over the data (Burda et al. 2016, §5.2: a dimension is active
    when it is above 0.01) with its mean KL to the prior.
    """

    split: str  # which split they were computed on ("train")
    images: int
    seed: int  # of the draw of the reference sample
    mean: list[float]  # (D,) mean of the posterior means
    variance: list[float]  # (D,) variance of the posterior means: the dimension's activity
    kl: list[float]  # (D,) mean KL(q(z_d|x) || N(0, 1)) per dimension, nats
    covariance: list[list[float]]  # (D, D) of the posterior means
    reference: list[list[float]]  # (M, D) posterior means of M images drawn with `seed`
    mixture: LatentMixture | None = None


class GoldenInfo(_Schema):
    """The bundle's golden set (model/golden.py): inputs with the outputs they must give."""

    file: str  # in `files`, so its checksum is verified like the graphs'
    images: int
    computed_by: Literal["torch+onnx", "onnx"]  # "onnx": written without the torch model (re-calibration)
    torch_onnx_max_abs_diff: dict[str, float] | None = None  # latents and scores, when torch was there


class ParentRef(_Schema):
    """The float bundle a quantised bundle was made from."""

    name: str
    version: str
    sha256: dict[str, str]  # of its graphs, per file name


class QualityCheck(_Schema):
    """One metric of a quantised bundle against its float parent, as the quality gate saw it."""

    metric: str  # e.g. "test neg_elbo" (nats) or "AUROC noise mse"
    parent: float
    quantized: float
    tolerance: float  # the largest |quantized - parent| the gate allowed

    @property
    def change(self) -> float:
        return self.quantized - self.parent

    @property
    def passed(self) -> bool:
        return abs(self.change) <= self.tolerance


class Quantization(_Schema):
    """How a quantised bundle was made from its float parent, and the quality it kept."""

    method: str  # e.g. "onnxruntime static QDQ int8"
    parent: ParentRef
    graphs: list[Literal["encoder", "decoder"]]  # the graphs quantised; the others are the parent's
    per_channel: bool
    activation_type: Literal["uint8", "int8"]
    weight_type: Literal["int8"]
    calibration_images: int  # of the parent's calibration split
    onnxruntime: str  # the version that quantised
    quality: list[QualityCheck]


class Manifest(_Schema):
    format_version: Literal[1] = 1
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    version: str = Field(pattern=r"^[0-9]+$")
    created: datetime
    description: str = ""
    input: InputSpec
    latent_dim: int = Field(gt=0)
    likelihood: LikelihoodSpec
    onnx_opset: int
    files: dict[str, FileEntry] = {}
    training: TrainingInfo | None = None
    dataset: DatasetInfo | None = None
    metrics: list[SplitMetrics] = []
    calibration: Calibration | None = None
    latents: LatentStatistics | None = None
    quantization: Quantization | None = None  # set when this bundle is an int8 variant of another
    golden: GoldenInfo | None = None


@dataclass(frozen=True)
class Bundle:
    """A verified bundle on disk."""

    path: Path
    manifest: Manifest

    @property
    def encoder_path(self) -> Path:
        return self.path / ENCODER

    @property
    def decoder_path(self) -> Path:
        return self.path / DECODER


def sha256_file(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def load_bundle(path: Path | str) -> Bundle:
    """Read and verify a bundle: manifest schema, required files, every checksum."""
    path = Path(path)
    manifest_path = path / MANIFEST
    try:
        raw = json.loads(manifest_path.read_text())
    except FileNotFoundError:
        raise BundleError(str(manifest_path), "missing manifest") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(str(manifest_path), f"not valid JSON ({exc})") from None
    try:
        manifest = Manifest.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise BundleError(str(manifest_path), f"invalid manifest at {where}: {first['msg']}") from None
    for required in (ENCODER, DECODER):
        if required not in manifest.files:
            raise BundleError(str(manifest_path), f"manifest lists no {required}")
    for name, entry in manifest.files.items():
        file_path = path / name
        if not file_path.is_file():
            raise BundleError(str(file_path), "missing file listed in the manifest")
        if sha256_file(file_path) != entry.sha256:
            raise BundleError(str(file_path), "sha256 does not match the manifest")
    return Bundle(path=path, manifest=manifest)


def write_bundle(out_dir: Path | str, manifest: Manifest, files: dict[str, bytes], *, force: bool = False) -> Bundle:
    """Write a bundle atomically: into a temporary sibling directory, then one rename.

    `files` maps file names to contents; their checksums are added to the manifest.
    An existing non-empty `out_dir` is replaced only with `force`.
    """
    out_dir = Path(out_dir)
    check_output_dir(out_dir, force=force)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        entries = {}
        for name, data in files.items():
            _write_synced(tmp / name, data)
            entries[name] = FileEntry(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
        manifest = manifest.model_copy(update={"files": entries})
        Manifest.model_validate(manifest.model_dump())  # the bundle we write must load
        _write_synced(tmp / MANIFEST, manifest.model_dump_json(indent=2).encode() + b"\n")
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("wrote bundle %s", out_dir)
    return Bundle(path=out_dir, manifest=manifest)


def check_output_dir(out_dir: Path, *, force: bool) -> None:
    """Refuse an output directory that holds something, unless forced, or cannot be written."""
    if out_dir.exists() and not out_dir.is_dir():
        raise BundleError(str(out_dir), "exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not force:
        what = "already holds a bundle" if (out_dir / MANIFEST).exists() else "is not empty"
        raise BundleError(str(out_dir), f"{what}; pass --force to replace it")
    # Probe by writing where the bundle's folders will be made (the nearest existing one),
    # creating nothing: permission bits say nothing about read-only mounts or root.
    existing = out_dir.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        if not existing.is_dir():
            raise NotADirectoryError(20, "Not a directory")
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise BundleError(str(out_dir), f"cannot write there ({exc.strerror})") from None


def _write_synced(path: Path, data: bytes) -> None:
    with path.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _replace_dir(new: Path, target: Path) -> None:
    """Move `new` to `target`; an old `target` is moved aside first, then deleted."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.rename(target, old)
    try:
        os.rename(new, target)
    except BaseException:
        if old is not None:
            os.rename(old, target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def list_repository(root: Path | str) -> dict[tuple[str, str], Path]:
    """Find bundles in a model repository `<root>/<name>/<version>/manifest.json`.

    Only numeric version directories count, so temporary and run directories are ignored.
    """
    root = Path(root)
    found: dict[tuple[str, str], Path] = {}
    for manifest_path in sorted(root.glob(f"*/*/{MANIFEST}")):
        version_dir = manifest_path.parent
        if version_dir.name.isdigit() and not version_dir.parent.name.startswith("."):
            found[(version_dir.parent.name, version_dir.name)] = version_dir
    return found
