"""The fused views: one colour matrix per image, crop and flip as gathers, the recipes' fusion.

- `ColorJitter(fused=True)` equals a plain NumPy composition of each image's ops in its order
  (brightness, contrast, saturation as affine maps, hue as a rotation about the gray axis), and
  stays within a stated distance of the exact, per-op clipped jitter;
- `FusedAugmenter` (what the recipes return) gives the views `Augmenter` gives on the same layers
  and seeds, in a plain graph and under XLA;
- the three formulations of `GaussianBlur` agree; the views compile with XLA, stay in [0, 1] and
  differ per image; `benchmarks/gpu.sh --quick` runs on a CPU (slow: `pytest -m slow`).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from keras_ssl import augment
from keras_ssl.augment import (
    Augmenter,
    ColorJitter,
    GaussianBlur,
    RandomFlip,
    RandomGrayscale,
    RandomResizedCrop,
)
from keras_ssl.augment.recipes import FusedAugmenter

GRAY = np.array([0.299, 0.587, 0.114])


def rotation_rows(turns):
    """Rodrigues' rotation about (1, 1, 1) by `turns`, for pixel row vectors (x @ R^T)."""
    k = np.ones(3) / np.sqrt(3)
    cross = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    angle = 2 * np.pi * turns
    column = np.cos(angle) * np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * np.outer(k, k)
    return column.T


def fused_reference(image, factors, order, applied):
    """One image [H, W, C] through its ops composed into one map, clipped once at the end."""
    if not applied:
        return image
    channels = image.shape[-1]
    brightness, contrast, saturation, hue = factors
    weights = GRAY if channels == 3 else np.ones(1)
    means = image.reshape(-1, channels).mean(axis=0)
    matrix, offset = np.eye(channels), np.zeros(channels)
    for op in order:
        shift = 0.0
        if op == 0:
            step = brightness * np.eye(channels)
        elif op == 1:
            step = contrast * np.eye(channels)
            shift = (1 - contrast) * weights @ (means @ matrix + offset)
        elif op == 2 and channels == 3:
            step = saturation * np.eye(3) + (1 - saturation) * np.outer(GRAY, np.ones(3))
        elif op == 3 and channels == 3:
            step = rotation_rows(hue)
        else:
            step = np.eye(channels)
        matrix, offset = matrix @ step, offset @ step + shift
    return np.clip(image @ matrix + offset, 0.0, 1.0)


@pytest.mark.parametrize("channels", [3, 1])
@pytest.mark.parametrize("jit", [False, True])
def test_fused_jitter_equals_a_numpy_composition_of_each_images_ops(channels, jit):
    rng = np.random.default_rng(0)
    n = 24
    images = rng.uniform(0, 1, (n, 6, 5, channels)).astype("float32")
    draws = rng.uniform(0, 1, (n, 8)).astype("float32")
    apply = rng.uniform(0, 1, n) < 0.8
    layer = ColorJitter(0.8, 0.8, 0.8, 0.2, p=0.8, fused=True, seed=0)
    transform = tf.function(layer.transform, jit_compile=jit)
    got = transform(tf.constant(images), tf.constant(apply), tf.constant(draws)).numpy()
    ranges = [layer.brightness, layer.contrast, layer.saturation, layer.hue]
    orders = np.argsort(draws[:, 4:], axis=1, kind="stable")
    assert len({tuple(o) for o in orders}) > 10
    for i in range(n):
        factors = [lo + (hi - lo) * draws[i, k] for k, (lo, hi) in enumerate(ranges)]
        expected = fused_reference(images[i].astype("float64"), factors, orders[i], apply[i])
        np.testing.assert_allclose(got[i], expected, atol=2e-5, err_msg=f"image {i}")
    # Images left alone come out exactly as they went in.
    np.testing.assert_array_equal(got[~apply], images[~apply])


def test_hue_rotation_turns_the_colour_wheel_and_keeps_gray():
    pixels = np.array([[[[1.0, 0, 0], [0, 1.0, 0], [0.4, 0.4, 0.4]]]], "float32")
    third = ColorJitter(0, 0, 0, (1 / 3, 1 / 3), p=1.0, fused=True)(pixels).numpy()[0, 0]
    np.testing.assert_allclose(third, [[0, 1, 0], [0, 0, 1], [0.4, 0.4, 0.4]], atol=1e-6)


def test_fused_jitter_stays_close_to_the_exact_per_op_clipped_jitter():
    rng = np.random.default_rng(1)
    images = rng.uniform(0, 1, (64, 12, 12, 3)).astype("float32")
    # Where no op can leave [0, 1] (factors <= 1, no hue) the two are the same map.
    kwargs = {"brightness": (0.5, 1.0), "contrast": (0.2, 1.0), "saturation": (0.0, 1.0),
              "hue": 0.0, "p": 1.0}
    exact = ColorJitter(**kwargs, seed=3)(images).numpy()
    np.testing.assert_allclose(ColorJitter(**kwargs, fused=True, seed=3)(images), exact,
                               atol=1e-5)
    # Hue alone: rotation against the HSV shift (uniform random colours: the worst case;
    # measured 0.065 and 0.074 per value).
    for turns in (0.1, 0.2):
        rotated = ColorJitter(0, 0, 0, (turns, turns), p=1.0, fused=True)(images).numpy()
        difference = np.abs(rotated - tf.image.adjust_hue(images, turns).numpy()).mean()
        assert difference < {0.1: 0.075, 0.2: 0.085}[turns], (turns, difference)
    # The SimCLR jitter as a whole (ImageNet strength 1.0 and CIFAR-10's 0.5; measured 0.047
    # and 0.033, of which the clipping at the end only: 0.012 and 0.004).
    for strength, bound in ((1.0, 0.055), (0.5, 0.04)):
        s = strength
        settings = dict(brightness=0.8 * s, contrast=0.8 * s, saturation=0.8 * s, hue=0.2 * s,
                        p=1.0)
        exact = ColorJitter(**settings, seed=5)(images).numpy()
        fused = ColorJitter(**settings, fused=True, seed=5)(images).numpy()
        assert np.abs(fused - exact).mean() < bound, (strength, np.abs(fused - exact).mean())


def _layers(seed, antialias=False):
    return [RandomResizedCrop(10, 12, antialias=antialias, seed=seed),
            RandomFlip(p=0.5, seed=seed + 1), RandomFlip(p=0.5, seed=seed + 2),
            ColorJitter(0.8, 0.8, 0.8, 0.2, p=0.8, fused=True, seed=seed + 3),
            RandomGrayscale(p=0.5, seed=seed + 4), GaussianBlur(3, p=0.5, seed=seed + 5)]


@pytest.mark.parametrize("antialias", [False, True])
def test_fused_augmenter_gives_the_views_of_the_layers_one_by_one(antialias, textured_images):
    # In a plain graph, as a train step without XLA runs them (XLA draws other random numbers,
    # so the compiled views are checked by the test below).
    images = tf.constant(textured_images(n=16, size=20, channels=3))
    fused = FusedAugmenter(_layers(10, antialias), compile_views=False)
    plain = Augmenter(_layers(10, antialias))
    run = [tf.function(lambda x, a=a: a(x, training=True)) for a in (fused, plain)]
    for _ in range(2):  # the seed generators move on alike
        got, expected = (f(images).numpy() for f in run)
        np.testing.assert_allclose(got, expected, atol=2e-6)


def test_blur_formulations_agree(textured_images):
    images = tf.constant(textured_images(n=12, size=16, channels=3) / 255, tf.float32)
    layer = GaussianBlur(5, p=0.5, seed=0)
    apply = tf.constant(np.arange(12) % 3 != 0)
    sigma = tf.constant(np.linspace(0.1, 2.0, 12), tf.float32)
    matrices = layer._matrices(images, apply, sigma).numpy()
    depthwise = tf.function(layer._depthwise)(images, apply, sigma).numpy()
    shifted = tf.function(layer._shifted_sums, jit_compile=True)(images, apply, sigma).numpy()
    np.testing.assert_allclose(depthwise, matrices, atol=1e-6)
    np.testing.assert_allclose(shifted, matrices, atol=1e-6)
    np.testing.assert_array_equal(depthwise[~apply.numpy()], images.numpy()[~apply.numpy()])


def test_simclr_views_compile_and_differ_per_image(textured_images):
    image = textured_images(n=1, size=24, channels=3)[0]
    copies = tf.constant(np.repeat(image[None], 6, axis=0))
    aug = augment.simclr(20, blur=True, seed=0)  # crop, flip, jitter, grayscale and blur
    assert isinstance(aug, FusedAugmenter)
    # In a plain graph the views compile on their own: the test below.
    views = tf.function(lambda x: aug(x, training=True), jit_compile=True)(copies).numpy()
    assert views.dtype == np.float32 and views.shape == (6, 20, 20, 3)
    assert views.min() >= 0.0 and views.max() <= 1.0
    assert len(np.unique(np.round(views.reshape(6, -1), 5), axis=0)) == 6


def test_compiled_views_equal_the_eager_ones_with_a_wide_blur_left_outside(textured_images):
    # Eager calls run op by op; in a plain graph the views compile with XLA, except a blur wider
    # than 15 taps (here 17, for 160 px), which runs after them as a depthwise convolution.
    images = textured_images(n=4, size=170, channels=3)[:, :20]
    eager = augment.simclr((16, 160), blur=True, seed=3)(images, training=True).numpy()
    aug = augment.simclr((16, 160), blur=True, seed=3)
    # Three separately compiled runs: the crop with its flip, the colour, the blur outside XLA.
    assert aug.stages() == [(0, 2, True), (2, 4, True), (4, 5, False)]
    graph = tf.function(lambda x: aug(x, training=True))(tf.constant(images)).numpy()
    np.testing.assert_allclose(graph, eager, atol=5e-5)


@pytest.mark.slow  # about 1 minute on 2 CPU cores: three benchmarks in their --quick modes
def test_gpu_script_quick_mode_runs_on_a_cpu(tmp_path):
    repo = Path(__file__).resolve().parents[1]
    subprocess.run(["bash", str(repo / "benchmarks" / "gpu.sh"), "--quick", "--out", str(tmp_path)],
                   cwd=repo, check=True, timeout=900, env={**os.environ, "PYTHON": sys.executable})
    report = (tmp_path / "gpu.md").read_text()
    assert report.startswith("# keras_ssl on CPU (--quick") and "FAILED" not in report
    for name, key in (("augment", "rows"), ("train_step_float32", "methods"),
                      ("train_step_mixed_float16", "methods")):
        assert json.loads((tmp_path / f"{name}.json").read_text())[key], name
