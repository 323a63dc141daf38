"""VAERuntime on a real exported bundle: shapes, determinism, and parity with torch maths."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from model.bundle import Bundle, load_bundle, write_bundle
from model.errors import BundleError, InputError, NonFiniteOutputError
from model.preprocess import png_bits
from model.runtime import (
    MAX_ABS_LATENT,
    SAMPLE_CHUNK,
    RuntimeOptions,
    VAERuntime,
    batched_scores,
    check_finite,
    join_parts,
    noise,
    sample_chunks,
    sample_posterior,
)
from model.scores import SCORE_NAMES, diag_normal_log_prob, iwae_log_likelihood, standard_normal_log_prob
from training.config import RunConfig
from training.nets import VAE
from training.objective import kl_to_standard_normal, log_likelihood


@pytest.fixture(scope="module")
def runtime(bundle: Bundle) -> VAERuntime:
    return VAERuntime(bundle, RuntimeOptions(intra_op_threads=1))


@pytest.fixture(scope="module")
def torch_model(trained: tuple[Bundle, Path]) -> VAE:
    """The torch model the bundle was exported from, rebuilt from its checkpoint."""
    saved = torch.load(trained[1] / "checkpoint.pt", weights_only=False)
    config = RunConfig.from_dict(saved["config"])
    model = VAE(config.model, config.data)
    model.load_state_dict(saved["state"].best_weights)
    return model.eval()


def test_shapes_and_dynamic_batch(runtime: VAERuntime, digit_images: np.ndarray) -> None:
    for n in (1, 3, 64):
        mean, log_var = runtime.encode(digit_images[:n])
        assert mean.shape == log_var.shape == (n, 4)
    images = runtime.decode(np.zeros((5, 4), np.float32))
    assert images.shape == (5, 1, 28, 28) and images.min() >= 0.0 and images.max() <= 1.0


def test_scores_match_torch_on_the_same_noise(runtime: VAERuntime, torch_model: VAE, digit_images: np.ndarray) -> None:
    k, seed = 32, 5
    x = digit_images[:8]
    got = runtime.score(x, importance_samples=k, seed=seed)
    eps = torch.from_numpy(noise(seed, (k, 4))).double()
    with torch.no_grad():
        mean, log_var = (t.double() for t in torch_model.encoder(torch.from_numpy(x)))
        std = torch.exp(0.5 * log_var)
        z = mean[:, None] + std[:, None] * eps[None]  # (N, K, D)
        params = torch_model.decoder(z.reshape(-1, 4).float()).double()
        xk = torch.from_numpy(x).double().repeat_interleave(k, dim=0)
        log_px = log_likelihood(torch_model, xk, params).reshape(8, k)
        prior = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
        posterior = torch.distributions.Normal(mean[:, None], std[:, None]).log_prob(z).sum(-1)
        iwae = torch.logsumexp(log_px + prior - posterior, dim=1) - math.log(k)
        kl = kl_to_standard_normal(mean, log_var)
    np.testing.assert_allclose(got["kl"], kl.numpy(), rtol=1e-5)
    np.testing.assert_allclose(got["reconstruction"], -log_px.mean(1).numpy(), rtol=1e-4)
    np.testing.assert_allclose(got["neg_elbo"], got["reconstruction"] + got["kl"], rtol=1e-12)
    np.testing.assert_allclose(got["iwae_nll"], -iwae.numpy(), rtol=1e-4)
    np.testing.assert_allclose(got["bits_per_dim"], got["iwae_nll"] / (784 * math.log(2)), rtol=1e-12)


def test_scores_are_deterministic_and_independent_of_the_batch(runtime: VAERuntime, digit_images: np.ndarray) -> None:
    all_at_once = runtime.score(digit_images, importance_samples=16, seed=3)
    again = batched_scores(runtime, digit_images, importance_samples=16, seed=3, batch=7)
    alone = runtime.score(digit_images[10:11], importance_samples=16, seed=3)
    for name in SCORE_NAMES:
        np.testing.assert_allclose(again[name], all_at_once[name], rtol=1e-6)
        np.testing.assert_allclose(alone[name], all_at_once[name][10:11], rtol=1e-6)
    other_seed = runtime.score(digit_images, importance_samples=16, seed=4)
    assert not np.allclose(other_seed["iwae_nll"], all_at_once["iwae_nll"])


def test_more_importance_samples_tighten_the_bound(runtime: VAERuntime, digit_images: np.ndarray) -> None:
    nll = [runtime.score(digit_images, importance_samples=k, seed=0)["iwae_nll"].mean() for k in (1, 16, 256)]
    assert nll[0] > nll[1] > nll[2]  # IWAE bounds are monotone in K in expectation (Burda et al.)


def test_sampling_is_seeded(runtime: VAERuntime) -> None:
    z1, images1 = runtime.sample(6, seed=9)
    _, images2 = runtime.sample(6, seed=9)
    np.testing.assert_array_equal(images1, images2)
    np.testing.assert_array_equal(z1, noise(9, (6, 4)))
    z_cold, _ = runtime.sample(6, seed=9, temperature=0.5)
    np.testing.assert_allclose(z_cold, 0.5 * z1)


def test_posterior_sample_and_reconstruct(runtime: VAERuntime, digit_images: np.ndarray) -> None:
    mean, log_var = runtime.encode(digit_images[:4])
    z = sample_posterior(mean, log_var, seed=1)
    np.testing.assert_allclose(z, mean + np.exp(0.5 * log_var) * noise(1, (4, 4)), rtol=1e-6)
    np.testing.assert_allclose(runtime.reconstruct(digit_images[:4]), runtime.decode(mean), rtol=1e-6)


@pytest.mark.parametrize(
    ("z", "message"),
    [
        (np.zeros((2, 5)), r"latents must have shape \[N, 4\], got \[2, 5\]"),
        (np.zeros(4), r"latents must have shape \[N, 4\], got \[4\]"),
        (np.array([[0.0, np.inf, 0.0, 0.0]]), "latents hold NaN or infinite values"),
    ],
)
def test_bad_latents(runtime: VAERuntime, z: np.ndarray, message: str) -> None:
    with pytest.raises(InputError, match=message):
        runtime.decode(z)


def test_graphs_that_break_the_manifest_contract_are_refused(bundle: Bundle, tmp_path: Path) -> None:
    files = {name: (bundle.path / name).read_bytes() for name in bundle.manifest.files}
    files["encoder.onnx"], files["decoder.onnx"] = files["decoder.onnx"], files["encoder.onnx"]
    swapped = write_bundle(tmp_path / "swapped", bundle.manifest, files)
    with pytest.raises(BundleError, match=r"encoder.onnx: graph has inputs \['z'\]"):
        VAERuntime(load_bundle(swapped.path))
    wider = bundle.manifest.model_copy(update={"latent_dim": 5})
    shutil.rmtree(swapped.path)
    files["encoder.onnx"], files["decoder.onnx"] = files["decoder.onnx"], files["encoder.onnx"]
    write_bundle(tmp_path / "wider", wider, files)
    with pytest.raises(BundleError, match=r"decoder.onnx: graph input shape \[4\] does not match the manifest's \[5\]"):
        VAERuntime(load_bundle(tmp_path / "wider"))


def test_complexity_and_png_bits(runtime: VAERuntime, digit_images: np.ndarray) -> None:
    images = np.concatenate([np.zeros((1, 1, 28, 28), np.float32), digit_images[:4]])
    scores = runtime.score(images, importance_samples=8, seed=0)
    np.testing.assert_array_equal(scores["png_bits"], png_bits(images))
    assert (scores["png_bits"][0] < scores["png_bits"][1:]).all()  # a blank image is simpler than any digit
    np.testing.assert_allclose(scores["complexity"], scores["iwae_nll"] / math.log(2) - scores["png_bits"], rtol=1e-12)


def test_pixel_nll_is_the_posterior_mean_reconstructions_and_finds_a_corrupted_patch(
    runtime: VAERuntime, digit_images: np.ndarray
) -> None:
    clean = digit_images[:4]
    scores = runtime.score(clean, importance_samples=4, seed=0)
    assert scores.pixel_nll.shape == clean.shape and scores.pixel_nll.dtype == np.float32
    mean, _ = runtime.encode(clean)
    expected = -runtime.log_likelihood(clean, runtime.decode_params(mean))
    np.testing.assert_allclose(scores.pixel_nll.sum(axis=(1, 2, 3)), expected, rtol=1e-5)
    corrupted = clean.copy()
    corrupted[:, :, 2:8, 2:8] = 1.0  # a white square in the blank top-left corner
    heat = runtime.score(corrupted, importance_samples=4, seed=0).pixel_nll[:, 0]  # (N, H, W)
    inside = np.zeros((28, 28), bool)
    inside[2:8, 2:8] = True
    assert (heat[:, inside].mean(axis=1) > 3 * heat[:, ~inside].mean(axis=1)).all()  # a 2-epoch model: ~5x


def test_scores_are_the_same_whatever_the_pieces(runtime: VAERuntime, digit_images: np.ndarray) -> None:
    images = digit_images[:5]
    k = 2 * SAMPLE_CHUNK + 7  # three pieces, the last one short
    assert sample_chunks(k) == [(0, 64), (64, 128), (128, 135)]
    np.testing.assert_array_equal(noise(3, (k, 4))[64:128], noise(3, (128, 4))[64:])  # every draw's prefix
    whole = runtime.score(images, k, seed=3)
    # As the service computes it: each piece on its own, on any split of the images.
    parts = [
        {name: np.concatenate([runtime.score_part(rows, 3, a, b)[name], runtime.score_part(more, 3, a, b)[name]])
         for name in runtime.score_part(images[:1], 3, a, b)}
        for a, b in sample_chunks(k)
        for rows, more in [(images[:2], images[2:])]
    ]  # fmt: skip
    pieced = join_parts(runtime.manifest, parts, k)
    for name in SCORE_NAMES:
        np.testing.assert_array_equal(pieced[name], whole[name], err_msg=name)
    np.testing.assert_array_equal(pieced.pixel_nll, whole.pixel_nll)
    # One piece (K <= 64) is exactly the single-pass IWAE bound of model/scores.py.
    mean, log_var = runtime.encode(images)
    eps = noise(3, (8, 4))
    z = mean[:, None] + np.exp(0.5 * log_var)[:, None] * eps[None]
    log_px = np.stack([runtime.log_likelihood(images, runtime.decode_params(z[:, j])) for j in range(8)], axis=1)
    log_w = log_px + standard_normal_log_prob(z) - diag_normal_log_prob(eps[None], log_var[:, None])
    np.testing.assert_allclose(runtime.score(images, 8, seed=3)["iwae_nll"], -iwae_log_likelihood(log_w), rtol=1e-12)


def test_latents_beyond_the_range_and_non_finite_outputs_are_refused(runtime: VAERuntime) -> None:
    z = np.zeros((2, 4))
    z[1, 2] = MAX_ABS_LATENT
    assert np.isfinite(runtime.decode(z)).all()  # the boundary itself decodes
    z[1, 2] = np.nextafter(MAX_ABS_LATENT, np.inf)
    with pytest.raises(
        InputError, match=r"latent values must lie in \[-100, 100\] .* latent 1 holds 100 at dimension 2"
    ):
        runtime.decode(z)
    with pytest.raises(NonFiniteOutputError, match="the model's image is not finite"):
        check_finite({"image": np.array([0.5, np.nan], np.float32)})


def test_the_new_scores_against_independent_computations(runtime: VAERuntime, digit_images: np.ndarray) -> None:
    """Each score of the posterior-mean reconstruction and of the latent code, recomputed with
    torch, scikit-image, scipy and scikit-learn from the graphs' own outputs."""
    from scipy.spatial.distance import mahalanobis
    from skimage.metrics import structural_similarity

    x = digit_images[:6]
    got = runtime.score(x, importance_samples=4, seed=0)
    mean, _ = runtime.encode(x)
    logits = torch.from_numpy(runtime.decode_params(mean)).double()
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.from_numpy(x).double(), reduction="none")
    np.testing.assert_allclose(got["posterior_mean_nll"], bce.flatten(1).sum(1).numpy(), rtol=1e-6)
    np.testing.assert_allclose(got.pixel_nll, bce.float().numpy(), rtol=1e-5, atol=1e-6)  # the heatmap
    cb = torch.distributions.ContinuousBernoulli(logits=logits)
    k = torch.from_numpy(np.round(x * 255).astype(np.float64))
    low, high = ((k - 0.5) / 255).clamp(0, 1), ((k + 0.5) / 255).clamp(0, 1)
    discretised = -torch.log(cb.cdf(high) - cb.cdf(low)).flatten(1).sum(1)
    np.testing.assert_allclose(got["discretised_nll"], discretised.numpy(), rtol=1e-6)
    recon = got.reconstructions.astype(np.float64)
    ssim = [structural_similarity(a[0], b[0], data_range=1.0) for a, b in zip(x.astype(np.float64), recon, strict=True)]
    np.testing.assert_allclose(got["dssim"], (1 - np.asarray(ssim)) / 2, rtol=1e-6)
    latents = runtime.manifest.latents
    precision = np.linalg.inv(np.asarray(latents.covariance) + 0.01 * np.eye(len(latents.mean)))  # the ridge
    expected = [mahalanobis(m, latents.mean, precision) ** 2 for m in mean.astype(np.float64)]
    np.testing.assert_allclose(got["mahalanobis"], expected, rtol=1e-5)


def test_scores_that_need_what_a_bundle_lacks_are_nan(bundle: Bundle, tmp_path: Path, digit_images: np.ndarray) -> None:
    files = {name: (bundle.path / name).read_bytes() for name in ("encoder.onnx", "decoder.onnx")}
    for update, nan in (({"calibration": None}, ("fisher", "tippett")),
                        ({"latents": None}, ("mahalanobis", "latent_nll", "fisher", "tippett"))):  # fmt: skip
        manifest = bundle.manifest.model_copy(update={"golden": None, **update})
        scores = VAERuntime(write_bundle(tmp_path / str(len(nan)), manifest, files)).score(digit_images[:2], 2, 0)
        for name in SCORE_NAMES:
            assert np.isnan(scores[name]).all() == (name in nan), name
