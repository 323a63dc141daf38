"""AsyncVAEClient against the live server: the sync client's answers, concurrently."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from client import AsyncVAEClient, VAEClient, VAEServeError


def test_the_async_client_answers_as_the_sync_one(live_url: str, digit_files: list[Path]) -> None:
    async def scenario() -> tuple:
        async with AsyncVAEClient(live_url) as vae:
            ready = await vae.ready()
            # Concurrent requests: the server may batch them together; each answer is still its own.
            encodings = await asyncio.gather(*(vae.encode(path) for path in digit_files))
            scores = await vae.score(digit_files, importance_samples=8, model="digits", version="2")
            grid = await vae.sample_grid(9, seed=4)
            samples = await vae.sample(2, seed=4)
            decoded = await vae.decode(samples.z)
            recon = await vae.reconstruct(digit_files[:2], format="array")
            models = await vae.models()
            detail = await vae.model("other")
            health = await vae.health()
            path = await vae.interpolate(digit_files[:2], steps=3)
            strip = await vae.interpolate_strip(digit_files[:2], steps=3)
            sweep = await vae.traverse(digit_files[0], steps=3)
            grid_sweep = await vae.traverse_grid(latent=sweep.base, steps=3)
            with pytest.raises(VAEServeError) as caught:
                await vae.encode(digit_files, model="nope")
            latent = (path, strip, sweep, grid_sweep)
            return (
                ready,
                encodings,
                scores,
                grid,
                samples,
                decoded,
                recon,
                models,
                detail,
                health,
                caught.value,
                latent,
            )

    ready, encodings, scores, grid, samples, decoded, recon, models, detail, health, error, latent = asyncio.run(
        scenario()
    )
    with VAEClient(live_url) as sync:
        assert ready == sync.ready() and models == sync.models() and health == sync.health()
        together = sync.encode(digit_files)
        np.testing.assert_array_equal(np.concatenate([e.mean for e in encodings]), together.mean)
        assert scores == sync.score(digit_files, importance_samples=8, model="digits", version="2")
        assert grid == sync.sample_grid(9, seed=4)
        assert decoded.pngs == samples.pngs
        assert recon == sync.reconstruct(digit_files[:2], format="array")
        path, strip, sweep, grid_sweep = latent
        assert path == sync.interpolate(digit_files[:2], steps=3)
        assert strip == sync.interpolate_strip(digit_files[:2], steps=3)
        assert sweep == sync.traverse(digit_files[0], steps=3)
        assert grid_sweep == sync.traverse_grid(digit_files[0], steps=3)
    assert detail.name == "other"
    assert (error.status, error.detail) == (404, "no model named 'nope'")
