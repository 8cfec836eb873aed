"""ColorJitter's batched form equals applying each image's four ops one by one, in its own order.

The layer aligns every image's sequence on its hue shift (so the batch needs one HSV round trip,
not four) and works on channel planes; this checks it against a plain per-image reference on
drawn factors and orders, outside and inside XLA.
"""

import numpy as np
import pytest
import tensorflow as tf

from keras_ssl.augment import ColorJitter
from keras_ssl.augment.color import GRAY_WEIGHTS


def reference(image, factors, order, applied):
    """One image [H, W, C] in [0, 1] through its ops in `order` (torchvision's definitions)."""
    if not applied:
        return image
    brightness, contrast, saturation, hue = factors
    x = image
    for op in order:
        gray = x @ GRAY_WEIGHTS if x.shape[-1] == 3 else x[..., 0]
        if op == 0:
            x = brightness * x
        elif op == 1:
            x = contrast * x + (1 - contrast) * gray.mean()
        elif op == 2 and x.shape[-1] == 3:
            x = saturation * x + (1 - saturation) * gray[..., None]
        elif op == 3 and x.shape[-1] == 3:
            x = tf.image.adjust_hue(x, hue).numpy()
        x = np.clip(x, 0.0, 1.0)
    return x


@pytest.mark.parametrize("channels", [3, 1])
@pytest.mark.parametrize("jit", [False, True])
def test_batched_jitter_equals_per_image_ops_in_each_images_order(channels, jit):
    rng = np.random.default_rng(0)
    n = 24  # every one of the 24 orders of 4 ops is likely to show up a few times
    images = rng.uniform(0, 1, (n, 6, 5, channels)).astype("float32")
    draws = rng.uniform(0, 1, (n, 8)).astype("float32")
    apply = rng.uniform(0, 1, n) < 0.8
    layer = ColorJitter(0.8, 0.8, 0.8, 0.2, p=0.8, seed=0)
    transform = tf.function(layer.transform, jit_compile=jit)
    got = transform(tf.constant(images), tf.constant(apply), tf.constant(draws)).numpy()
    ranges = [layer.brightness, layer.contrast, layer.saturation, layer.hue]
    orders = np.argsort(draws[:, 4:], axis=1, kind="stable")
    assert len({tuple(o) for o in orders}) > 10  # many different orders, hue in every slot
    for i in range(n):
        factors = [lo + (hi - lo) * draws[i, k] for k, (lo, hi) in enumerate(ranges)]
        expected = reference(images[i], factors, orders[i], apply[i])
        np.testing.assert_allclose(got[i], expected, atol=2e-5, err_msg=f"image {i}")


def test_fixed_order_applies_brightness_contrast_saturation_hue():
    rng = np.random.default_rng(1)
    images = rng.uniform(0, 1, (4, 5, 5, 3)).astype("float32")
    draws = rng.uniform(0, 1, (4, 8)).astype("float32")
    layer = ColorJitter(0.5, 0.5, 0.5, 0.1, p=1.0, random_order=False)
    got = layer.transform(tf.constant(images), tf.ones([4], tf.bool), tf.constant(draws)).numpy()
    ranges = [layer.brightness, layer.contrast, layer.saturation, layer.hue]
    for i in range(4):
        factors = [lo + (hi - lo) * draws[i, k] for k, (lo, hi) in enumerate(ranges)]
        np.testing.assert_allclose(got[i], reference(images[i], factors, range(4), True),
                                   atol=2e-5)
