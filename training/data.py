"""Training data: the seeded split, and the torch datasets and loaders that stream it.

`split` assigns rows to test / calibration / validation / train from one seeded
permutation, recorded in the manifest so anyone can recompute it. `TrainingImages` reads
rows from their source (training/sources.py) in DataLoader workers and gives each row its
reparameterisation noise and augmentation from a generator seeded by (seed, stream,
epoch, row), and a `DistributedSampler` shuffles each epoch from (seed, epoch): what a row
contributes to an epoch depends neither on the number of processes, nor on DataLoader
workers, nor on where a run was resumed.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator

import numpy as np
import torch
from numpy.typing import NDArray
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from model.bundle import InputSpec, Manifest, SplitSpec
from training.augment import augment
from training.config import Augmentation, DataConfig, RunConfig
from training.formats import open_source
from training.sources import ArraySource, DataError, ImageSource, ImageSplit, decoded_chunks, select_labels

SPLITS = ("test", "calibration", "validation", "train")
SPLIT_ALGORITHM = (
    "perm = numpy.random.default_rng(seed).permutation(rows); rows of the label-filtered "
    "dataset go, in permutation order, first to test, then calibration, validation, train "
    "(counts in split.counts)"
)
TRAIN_STREAM, VALIDATION_STREAM = 0, 1  # noise streams: the same row gets other noise in validation


def load_source(config: DataConfig) -> ImageSource:
    """`config.source` opened, in its input spec, with the label filter applied."""
    return select_labels(open_source(config), config.labels)


def input_spec(config: DataConfig) -> InputSpec:
    """The model's input spec, as the manifest records it, from a resolved config."""
    if config.channels is None or config.height is None or config.width is None:
        raise DataError("data.channels, data.height and data.width must be resolved first")
    return InputSpec(channels=config.channels, height=config.height, width=config.width,
                     colour_mode="L" if config.channels == 1 else "RGB", resize=config.resize, fit=config.fit,
                     background=spec_background(config.background))  # fmt: skip


def spec_background(level: int | None) -> tuple[float, ...]:
    """The manifest's background (values in [0, 1]) for the config's grey level 0-255; None is black."""
    return (0.0,) if level is None else (level / 255.0,)


def split(rows: int, config: DataConfig) -> tuple[dict[str, NDArray[np.int64]], SplitSpec]:
    """Seeded split of `rows` rows into test, calibration, validation and train row indices."""
    fractions = {
        "test": config.test_fraction,
        "calibration": config.calibration_fraction,
        "validation": config.validation_fraction,
    }
    counts = {name: round(rows * f) for name, f in fractions.items()}
    counts["train"] = rows - sum(counts.values())
    for name, count in counts.items():
        if count < 1 and (name == "train" or fractions.get(name, 0) > 0):
            raise DataError(f"dataset of {rows} images is too small: the {name} split would be empty")
    perm = np.random.default_rng(config.split_seed).permutation(rows).astype(np.int64)
    indices, start = {}, 0
    for name in SPLITS:
        indices[name] = perm[start : start + counts[name]]
        start += counts[name]
    spec = SplitSpec(
        algorithm=SPLIT_ALGORITHM,
        seed=config.split_seed,
        counts=counts,
        indices_sha256={k: hashlib.sha256(v.tobytes()).hexdigest() for k, v in indices.items()},
    )
    return indices, spec


def bundle_splits(manifest: Manifest) -> dict[str, ImageSplit]:
    """A bundle's own test / calibration / validation / train rows, rebuilt from its
    manifest (training config, dataset fingerprint, split recipe) and checked against it."""
    if manifest.training is None or manifest.dataset is None:
        raise DataError(f"bundle {manifest.name}:{manifest.version} does not record its training data")
    config = RunConfig.from_stored(manifest.training.config).data
    source = load_source(config)
    kind = manifest.dataset.fingerprint
    found = source.fingerprint() if kind == source.fingerprint_kind else _sha256(c for _, c in decoded_chunks(source))
    if found != manifest.dataset.sha256:
        raise DataError(
            f"dataset {config.source} is not the one bundle {manifest.name} was trained on (sha256 differs)"
        )
    indices, spec = split(len(source), config)
    if spec.indices_sha256 != manifest.dataset.split.indices_sha256:
        raise DataError(f"the split of {config.source} does not match the one in the manifest of {manifest.name}")
    return {name: ImageSplit(source, rows) for name, rows in indices.items()}


def bundle_arrays(manifest: Manifest) -> dict[str, NDArray[np.float32]]:
    """`bundle_splits` read whole into memory, (N, C, H, W) each: for datasets that fit (evaluation, benches, tests)."""
    return {name: split.array() for name, split in bundle_splits(manifest).items()}


def _sha256(chunks: Iterator[bytes]) -> str:
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()


class TrainingImages(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """One split's images, each with its noise eps ~ N(0, I) (D,) and augmentation.

    Indexed by (index, epoch): both come from the sampler, in the main process, so the
    workers need no state.
    """

    def __init__(self, split: ImageSplit, latent_dim: int, seed: int, stream: int,
                 steps: list[Augmentation] | None = None) -> None:  # fmt: skip
        self.split = split
        self.latent_dim = latent_dim
        self.seed = seed
        self.stream = stream
        self.steps = steps or []

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        index, epoch = key
        row = int(self.split.rows[index])
        rng = np.random.default_rng([self.seed, self.stream, epoch, row])
        eps = rng.standard_normal(self.latent_dim, dtype=np.float32)  # (D,)
        image = self.split.source.read([row])[0]  # (C, H, W)
        if self.steps:
            image = augment(image, self.steps, rng)
        return torch.from_numpy(image), torch.from_numpy(eps)


class EpochShuffle(Sampler[tuple[int, int]]):
    """This process's share of the epoch's seeded shuffle, as (index, epoch) keys.

    A `DistributedSampler` over `n` rows: process r of W takes rows r, r + W, ... of the
    permutation seeded by seed + epoch, so the k-th batches of all processes together are
    the k-th batch of one process with W times the batch size.
    """

    def __init__(self, n: int, seed: int, rank: int, world_size: int) -> None:
        rows: Dataset[int] = range(n)  # type: ignore[assignment]  # a sized sequence is all the sampler needs
        self.sampler: DistributedSampler[int] = DistributedSampler(
            rows, num_replicas=world_size, rank=rank, shuffle=True, seed=seed
        )
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return ((index, self.epoch) for index in self.sampler)


class Shard(Sampler[tuple[int, int]]):
    """Rows rank, rank + W, ... in order, with a fixed epoch key: evaluation, no repeats."""

    def __init__(self, n: int, rank: int, world_size: int, epoch: int = 0) -> None:
        self.indices = range(rank, n, world_size)
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return ((index, self.epoch) for index in self.indices)


def loader(dataset: TrainingImages, sampler: Sampler[tuple[int, int]], batch_size: int, workers: int,
           pin_memory: bool = False) -> DataLoader[tuple[torch.Tensor, torch.Tensor]]:  # fmt: skip
    """A DataLoader of (images (B, C, H, W), eps (B, D)) batches in the sampler's order."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        persistent_workers=workers > 0,  # keys carry the epoch, so workers can live across epochs
        pin_memory=pin_memory,
    )


def default_workers(source: ImageSource, config: DataConfig, local_processes: int) -> int:
    """`data.workers`, or: none for arrays (a row is a copy, in memory or memory-mapped),
    else for decoding files the cores left per process (1 to 4)."""
    if config.workers is not None:
        return config.workers
    if isinstance(source, ArraySource):
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(4, cores // local_processes - 1))
