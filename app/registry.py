"""The models a service holds: every bundle of a repository, loaded and warmed up once.

Start-up fails, naming the file, if any bundle is broken: a server that answers with a
model it could not verify is worse than one that does not start.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from app.settings import Settings
from model.bundle import Manifest, list_repository, load_bundle
from model.errors import BundleError
from model.runtime import RuntimeOptions, VAERuntime

log = logging.getLogger(__name__)


class ModelNotFoundError(LookupError):
    def __init__(self, name: str, version: str | None) -> None:
        super().__init__(f"no model named {name!r}" + (f" with version {version!r}" if version else ""))
        self.name = name
        self.version = version


@dataclass(frozen=True)
class LoadedModel:
    runtime: VAERuntime

    @property
    def manifest(self) -> Manifest:
        return self.runtime.manifest

    @property
    def key(self) -> str:
        return f"{self.manifest.name}:{self.manifest.version}"


class ModelRegistry:
    """name -> version -> LoadedModel, plus which model answers requests that name none."""

    def __init__(self, models: list[LoadedModel], default: str | None) -> None:
        if not models:
            raise BundleError("model repository", "holds no bundles")
        self._models: dict[str, dict[str, LoadedModel]] = {}
        for m in models:
            self._models.setdefault(m.manifest.name, {})[m.manifest.version] = m
        name, _, version = (default or min(self._models)).partition(":")
        self.default = self.get(name, version or None)

    @classmethod
    def load(cls, settings: Settings) -> ModelRegistry:
        """Load and verify every bundle in the repository; raise BundleError on the first bad one."""
        options = RuntimeOptions(
            intra_op_threads=settings.ort_intra_op_threads,
            inter_op_threads=settings.ort_inter_op_threads,
            graph_optimization=settings.ort_graph_optimization,
            providers=tuple(settings.ort_providers),
        )
        root = settings.model_repository
        found = list_repository(root)
        if (root / "manifest.json").exists():  # a single bundle given as the repository
            found = {("", ""): root}
        models = []
        for path in found.values():
            runtime = VAERuntime(load_bundle(path), options)
            models.append(LoadedModel(runtime))
            log.info("loaded %s:%s from %s", runtime.manifest.name, runtime.manifest.version, path)
        if not models:
            raise BundleError(str(root), "holds no bundles (<name>/<version>/manifest.json)")
        try:
            return cls(models, settings.default_model)
        except ModelNotFoundError as exc:
            raise BundleError(str(root), f"default model: {exc}") from None

    def get(self, name: str | None = None, version: str | None = None) -> LoadedModel:
        """The named model (its highest version unless one is given), or the default."""
        if name is None:
            if version is not None:
                raise ModelNotFoundError(self.default.manifest.name, version)
            return self.default
        versions = self._models.get(name)
        if not versions:
            raise ModelNotFoundError(name, version)
        if version is None:
            return versions[max(versions, key=int)]
        if version not in versions:
            raise ModelNotFoundError(name, version)
        return versions[version]

    def all(self) -> list[LoadedModel]:
        return [
            m for name in sorted(self._models) for _, m in sorted(self._models[name].items(), key=lambda kv: int(kv[0]))
        ]

    def warm_up(self) -> None:
        """Run every graph once, so the first request does not pay for lazy initialisation."""
        for m in self.all():
            spec = m.manifest.input
            images = np.zeros((1, spec.channels, spec.height, spec.width), np.float32)
            m.runtime.score(images, importance_samples=2, seed=0)
