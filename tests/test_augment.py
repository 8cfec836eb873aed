"""Tests of keras_ssl.augment: per-image randomness, correctness of each op, XLA, serialization."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_ssl import augment
from keras_ssl.augment import (
    Augmenter,
    ColorJitter,
    FeatureMask,
    FeatureNoise,
    GaussianBlur,
    RandomFlip,
    RandomGrayscale,
    RandomResizedCrop,
    Resize,
    Solarize,
    to_float_images,
)
from keras_ssl.errors import KerasSSLError

SIZE = 32  # input side
OUT = 24  # output side of the crops and recipes

# Layers with a continuous random parameter: every image of a batch gets its own value.
CONTINUOUS = {
    "crop": lambda seed=None: RandomResizedCrop(OUT, OUT, seed=seed),
    "jitter": lambda seed=None: ColorJitter(p=1.0, seed=seed),
    # sigma >= 0.5: a sigma near 0.1 leaves the image unchanged to float precision.
    "blur": lambda seed=None: GaussianBlur(5, sigma=(0.5, 2.0), p=1.0, seed=seed),
}
# Layers that are either applied to an image or not.
ON_OFF = {
    "flip": lambda seed=None: RandomFlip(p=0.5, seed=seed),
    "grayscale": lambda seed=None: RandomGrayscale(p=0.5, seed=seed),
    "solarize": lambda seed=None: Solarize(p=0.5, seed=seed),
}
RECIPES = {
    # blur=True so that the blur is exercised on small test images too.
    "simclr": lambda seed=None: augment.simclr(OUT, blur=True, seed=seed),
    "moco_v2": lambda seed=None: augment.moco_v2((OUT, OUT), blur=True, seed=seed),
    "weak": lambda seed=None: augment.weak(OUT, seed=seed),
}
RANDOM_IMAGE_LAYERS = {**CONTINUOUS, **ON_OFF, **RECIPES}
ALL_IMAGE_LAYERS = {**RANDOM_IMAGE_LAYERS, "resize": lambda seed=None: Resize(OUT, OUT)}


def out_side(name):
    return OUT if name in ("crop", "resize", *RECIPES) else SIZE


def copies(image, n):
    return np.repeat(image[None], n, axis=0)


def distinct_count(outputs):
    flat = np.asarray(outputs).reshape(len(outputs), -1)
    return len(np.unique(np.round(flat, 5), axis=0))


# ----- to_float_images and input checks ---------------------------------------------------------
def test_to_float_images_scales_uint8_and_clips_floats():
    np.testing.assert_allclose(to_float_images(np.array([0, 51, 255], "uint8")), [0, 0.2, 1])
    out = to_float_images(np.array([-0.5, 0.25, 1.5], "float64"))
    assert out.dtype == tf.float32
    np.testing.assert_allclose(out, [0, 0.25, 1])
    with pytest.raises(KerasSSLError, match="uint8"):
        to_float_images(np.array([1, 2], "int32"))


@pytest.mark.parametrize("name", ["crop", "jitter", "flip", "resize", "simclr"])
@pytest.mark.parametrize(
    "images, message",
    [
        (np.zeros((SIZE, SIZE, 3), "uint8"), "batch axis"),
        (np.zeros((2, SIZE, SIZE, 4), "uint8"), "alpha"),
        (np.zeros((2, SIZE, SIZE, 2), "uint8"), "channels"),
        (np.zeros((2, SIZE, SIZE, 3), "int32"), "int32"),
        (np.full((2, SIZE, SIZE, 3), "x"), "string"),
    ],
)
def test_bad_images_raise_a_fixable_error(name, images, message):
    with pytest.raises(KerasSSLError, match=message):
        ALL_IMAGE_LAYERS[name]()(images)


def test_bad_symbolic_input_fails_when_the_model_is_built():
    with pytest.raises(KerasSSLError, match="channels"):
        augment.simclr(OUT)(keras.Input((SIZE, SIZE, 4), dtype="uint8"))
    out = augment.simclr(OUT)(keras.Input((SIZE, SIZE, 3), dtype="uint8"))
    assert tuple(out.shape) == (None, OUT, OUT, 3) and out.dtype == "float32"


def test_bad_vectors_and_settings_raise_a_fixable_error():
    with pytest.raises(KerasSSLError, match="batch axis"):
        FeatureNoise()(np.zeros(5, "float32"))
    with pytest.raises(KerasSSLError, match=r"\[N, F\]"):
        augment.vectors()(np.zeros((2, 3, 4), "float32"))
    with pytest.raises(KerasSSLError, match="odd"):
        GaussianBlur(4)
    with pytest.raises(KerasSSLError, match="probability"):
        RandomFlip(p=1.5)
    with pytest.raises(KerasSSLError, match="brightness"):
        ColorJitter(brightness=-0.1)
    with pytest.raises(KerasSSLError, match="hue"):
        ColorJitter(hue=0.7)
    with pytest.raises(KerasSSLError, match="image_size"):
        augment.simclr((32, 0))


# ----- the output contract ------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(ALL_IMAGE_LAYERS))
@pytest.mark.parametrize("channels", [1, 3])
def test_output_is_float32_in_unit_range_with_the_right_shape(name, channels, textured_images):
    images = textured_images(n=4, size=SIZE, channels=channels)
    for given in (images, images.astype("float32") / 255.0):
        layer = ALL_IMAGE_LAYERS[name](seed=0)
        for training in (True, False):
            out = layer(given, training=training)
            assert out.dtype == tf.float32
            side = out_side(name)
            assert tuple(out.shape) == (4, side, side, channels)
            assert float(tf.reduce_min(out)) >= 0.0 and float(tf.reduce_max(out)) <= 1.0
        assert tuple(layer.compute_output_shape((None, SIZE, SIZE, channels))) == (
            None, side, side, channels)


def test_layers_stay_float32_under_a_mixed_precision_policy(textured_images):
    images = textured_images(n=2, size=SIZE, channels=3)
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        aug = augment.simclr(OUT, blur=True, seed=0)
        for given in (images, tf.constant(images, tf.float16) / 255):
            out = aug(given, training=True)
            assert out.dtype == tf.float32
    finally:
        keras.mixed_precision.set_global_policy("float32")


# ----- per-image randomness -----------------------------------------------------------------
@pytest.mark.parametrize("name", sorted({**CONTINUOUS, **RECIPES}))
def test_copies_of_one_image_get_different_views(name, textured_images):
    image = textured_images(n=1, size=SIZE, channels=3)[0]
    out = ALL_IMAGE_LAYERS[name](seed=1)(copies(image, 8), training=True)
    assert distinct_count(out) == 8


@pytest.mark.parametrize("layer", [FeatureNoise(0.1, seed=1), FeatureMask(0.2, seed=1),
                                   augment.vectors(seed=1)])
def test_copies_of_one_vector_get_different_views(layer):
    out = layer(np.ones((8, 64), "float32"), training=True)
    assert out.dtype == tf.float32 and distinct_count(out) == 8
    np.testing.assert_array_equal(layer(np.ones((8, 64)), training=False), np.ones((8, 64)))


def test_vector_noise_and_mask_have_the_requested_size():
    noise = FeatureNoise(0.3, seed=2)(np.zeros((100, 100), "float32")).numpy()
    assert abs(noise.std() - 0.3) < 0.01 and abs(noise.mean()) < 0.01
    masked = FeatureMask(0.2, seed=2)(np.ones((100, 100), "float32")).numpy()
    assert abs((masked == 0).mean() - 0.2) < 0.02
    assert set(np.unique(masked)) == {0.0, 1.0}  # kept features are not rescaled


def _within_binomial(count, n, p):
    return abs(count - n * p) <= 4 * np.sqrt(n * p * (1 - p))


@pytest.mark.parametrize(
    "layer, expected_op",
    [
        (RandomFlip(p=0.5, seed=3), lambda x: x[:, :, ::-1, :]),
        (RandomGrayscale(p=0.2, seed=3),
         lambda x: np.repeat(x @ np.array([0.299, 0.587, 0.114])[:, None], 3, axis=-1)),
        (Solarize(threshold=0.5, p=0.2, seed=3), lambda x: np.where(x >= 0.5, 1 - x, x)),
        (ColorJitter(p=0.8, seed=3), None),
        (GaussianBlur(3, sigma=(1.0, 2.0), p=0.5, seed=3), None),
    ],
    ids=["flip", "grayscale", "solarize", "jitter", "blur"],
)
def test_on_off_layers_apply_to_the_requested_share_of_images(layer, expected_op,
                                                              textured_images):
    n = 400
    image = textured_images(n=1, size=8, channels=3)[0].astype("float32") / 255
    out = layer(copies(image, n), training=True).numpy()
    changed = np.abs(out - image).reshape(n, -1).max(axis=1) > 1e-6
    assert _within_binomial(changed.sum(), n, layer.p), changed.sum()
    # Images left alone are exactly the input; changed ones are the op's result.
    np.testing.assert_array_equal(out[~changed], copies(image, (~changed).sum()))
    if expected_op is not None:
        np.testing.assert_allclose(out[changed], expected_op(copies(image, changed.sum())),
                                   atol=1e-5)


# ----- seeds and training=False -------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(RANDOM_IMAGE_LAYERS))
def test_same_seed_same_views_other_seed_other_views(name, textured_images):
    images = textured_images(n=16, size=SIZE, channels=3)
    make = RANDOM_IMAGE_LAYERS[name]
    first = make(seed=7)(images, training=True)
    np.testing.assert_array_equal(first, make(seed=7)(images, training=True))
    assert not np.allclose(first, make(seed=8)(images, training=True))


@pytest.mark.parametrize("name", sorted(RANDOM_IMAGE_LAYERS))
def test_training_false_is_the_plain_resize(name, textured_images):
    images = textured_images(n=4, size=SIZE, channels=3)
    layer = RANDOM_IMAGE_LAYERS[name]()
    expected = to_float_images(images)
    if out_side(name) != SIZE:
        expected = tf.image.resize(expected, (OUT, OUT))
    for _ in range(2):
        np.testing.assert_allclose(layer(images, training=False), expected, atol=1e-5)


# ----- correctness of the ops ---------------------------------------------------------------
@pytest.mark.parametrize("size", [(32, 40), (8, 9), (17, 23), (5, 50)])
@pytest.mark.parametrize("antialias", [False, True])
def test_resize_matches_tf_image_resize(size, antialias):
    images = np.random.default_rng(0).random((2, 17, 23, 3)).astype("float32")
    expected = tf.image.resize(images, size, antialias=antialias)  # half-pixel centers
    np.testing.assert_allclose(Resize(*size, antialias=antialias)(images), expected, atol=1e-5)


def test_full_box_crop_returns_the_image(textured_images):
    images = textured_images(n=4, size=SIZE, channels=3)
    crop = RandomResizedCrop(SIZE, SIZE, scale=(1.0, 1.0), ratio=(1.0, 1.0), seed=0)
    np.testing.assert_allclose(crop(images, training=True), images / 255, atol=1e-5)


def test_crop_that_cannot_fit_falls_back_to_the_centered_box(textured_images):
    # An area of 100% at aspect 2 does not fit in a square: torchvision then takes the widest
    # box of aspect 2, centered; here rows 8-23 of a 32x32 image, at its own size.
    images = textured_images(n=2, size=SIZE, channels=1)
    crop = RandomResizedCrop(SIZE // 2, SIZE, scale=(1.0, 1.0), ratio=(2.0, 2.0), seed=0)
    np.testing.assert_allclose(crop(images), images[:, 8:24] / 255, atol=1e-5)


def test_crop_boxes_follow_the_scale_and_ratio_ranges():
    crop = RandomResizedCrop(8, 8, scale=(0.2, 0.6), ratio=(0.5, 2.0))
    draws = tf.random.stateless_uniform([1000, crop.draws_per_image], seed=[1, 2])
    top, left, height, width = (t.numpy() for t in crop.boxes(draws, 40, 60))
    area = height * width / (40 * 60)
    assert area.min() >= 0.2 - 1e-4 and area.max() <= 0.6 + 1e-4
    assert (width / height).min() >= 0.5 - 1e-4 and (width / height).max() <= 2.0 + 1e-4
    assert (top >= 0).all() and (top + height <= 40 + 1e-3).all()
    assert (left >= 0).all() and (left + width <= 60 + 1e-3).all()
    assert area.std() > 0.05 and top.std() > 1  # spread, not one box for all


def test_box_crop_at_its_own_size_is_the_exact_window(textured_images):
    from keras_ssl.augment.crop import resize_boxes

    images = to_float_images(textured_images(n=2, size=SIZE, channels=3))
    out = resize_boxes(images, tf.constant([4.0, 0.0]), tf.constant([8.0, 16.0]),
                       tf.constant([16.0, 16.0]), tf.constant([16.0, 16.0]), 16, 16)
    np.testing.assert_allclose(out[0], images[0, 4:20, 8:24], atol=1e-6)
    np.testing.assert_allclose(out[1], images[1, 0:16, 16:32], atol=1e-6)


def test_blur_matches_a_reflect_padded_gaussian_convolution(textured_images):
    images = textured_images(n=2, size=12, channels=3).astype("float32") / 255
    sigma, radius = 1.3, 2
    out = GaussianBlur(2 * radius + 1, sigma=sigma, p=1.0)(images).numpy()
    kernel = np.exp(-np.arange(-radius, radius + 1) ** 2 / (2 * sigma**2))
    kernel /= kernel.sum()
    padded = np.pad(images, [(0, 0), (radius, radius), (radius, radius), (0, 0)], "reflect")
    rows = sum(w * padded[:, k:k + 12] for k, w in enumerate(kernel))
    expected = sum(w * rows[:, :, k:k + 12] for k, w in enumerate(kernel))
    np.testing.assert_allclose(out, expected, atol=1e-5)
    # A kernel wider than the image still works (reflected several times), and keeps the mean.
    wide = GaussianBlur(31, sigma=5.0, p=1.0)(images).numpy()
    np.testing.assert_allclose(wide.mean(axis=(1, 2)), images.mean(axis=(1, 2)), atol=0.05)


def test_blur_leaves_out_only_the_taps_beyond_four_sigmas(textured_images):
    # SimCLR's 23 taps at 224 px: for sigma up to 2, taps past 8 pixels hold under 2e-5 of the
    # weight, so 17 are applied; the full kernel, in NumPy, differs by under 4e-5 per value.
    assert GaussianBlur(23, sigma=(0.1, 2.0)).taps == (17, 17)
    assert GaussianBlur(23, sigma=(0.1, 3.0)).taps == (23, 23)
    assert GaussianBlur((9, 31), sigma=(0.1, 2.0)).taps == (9, 17)
    # Outside XLA the images whose sigma is under 1 get 9 taps: within 4 of their sigmas too.
    images = textured_images(n=6, size=40, channels=3).astype("float32") / 255
    sigma = np.array([0.3, 0.7, 1.0, 1.2, 1.6, 2.0], "float32")
    out = GaussianBlur(23, sigma=(0.1, 2.0))._depthwise(
        tf.constant(images), tf.constant([True] * 5 + [False]), tf.constant(sigma)).numpy()
    radius = 11
    padded = np.pad(images, [(0, 0), (radius, radius), (radius, radius), (0, 0)], "reflect")
    for i in range(5):
        kernel = np.exp(-np.arange(-radius, radius + 1) ** 2 / (2 * sigma[i] ** 2))
        kernel /= kernel.sum()
        rows = sum(w * padded[i, k:k + 40] for k, w in enumerate(kernel))
        expected = sum(w * rows[:, k:k + 40] for k, w in enumerate(kernel))
        assert np.abs(out[i] - expected).max() < 4e-5, i
    np.testing.assert_array_equal(out[5], images[5])
    # A batch where no image drew the blur (1 in 16 for 4 images at p=0.5) passes unchanged.
    none = GaussianBlur(23, sigma=(0.1, 2.0))._depthwise(
        tf.constant(images), tf.zeros([6], tf.bool), tf.constant(sigma)).numpy()
    np.testing.assert_array_equal(none, images)


@pytest.mark.parametrize(
    "settings, expected",
    [
        ({"brightness": (1.5, 1.5)}, lambda x: np.clip(1.5 * x, 0, 1)),
        ({"contrast": (0.5, 0.5)},
         lambda x: np.clip(0.5 * x + 0.5 * (x @ [0.299, 0.587, 0.114]).mean(), 0, 1)),
        ({"saturation": (0.0, 0.0)},
         lambda x: np.repeat((x @ [0.299, 0.587, 0.114])[..., None], 3, -1)),
        ({"hue": (0.1, 0.1)}, lambda x: tf.image.adjust_hue(x, 0.1).numpy()),
        ({"hue": (-0.3, -0.3)}, lambda x: tf.image.adjust_hue(x, -0.3).numpy()),
    ],
    ids=["brightness", "contrast", "saturation", "hue", "hue_negative"],
)
def test_each_color_op_matches_its_definition(settings, expected, textured_images):
    image = textured_images(n=1, size=8, channels=3)[0].astype("float32") / 255
    jitter = ColorJitter(**{"brightness": 0, "contrast": 0, "saturation": 0, "hue": 0,
                            **settings}, p=1.0, seed=0)
    np.testing.assert_allclose(jitter(image[None])[0], expected(image), atol=1e-5)


def test_jitter_on_gray_images_changes_brightness_and_contrast_only(textured_images):
    images = copies(textured_images(n=1, size=8, channels=1)[0], 8)
    assert distinct_count(ColorJitter(0.4, 0.4, 0, 0, p=1.0, seed=0)(images)) == 8
    unchanged = ColorJitter(0, 0, 0.4, 0.4, p=1.0, seed=0)(images)
    np.testing.assert_allclose(unchanged, images / 255, atol=1e-6)


def test_grayscale_keeps_three_channels_and_passes_gray_images_through(textured_images):
    rgb = textured_images(n=2, size=8, channels=3)
    out = RandomGrayscale(p=1.0)(rgb).numpy()
    assert out.shape == rgb.shape
    np.testing.assert_allclose(out[..., 0], out[..., 2])
    gray = textured_images(n=2, size=8, channels=1)
    np.testing.assert_allclose(RandomGrayscale(p=1.0)(gray), gray / 255)


def test_recipes_use_the_published_settings():
    simclr = augment.simclr(32, strength=0.5)
    jitter = next(layer for layer in simclr.augmentations if isinstance(layer, ColorJitter))
    assert jitter.brightness == (0.6, 1.4) and jitter.hue == (-0.1, 0.1) and jitter.p == 0.8
    crop = simclr.augmentations[0]
    assert crop.scale == (0.08, 1.0)
    # The blur is on from 64 pixels, with a kernel of about 10% of the side, made odd.
    assert not any(isinstance(layer, GaussianBlur) for layer in simclr.augmentations)
    blur = augment.simclr(224).augmentations[-1]
    assert isinstance(blur, GaussianBlur) and blur.kernel_size == (23, 23) and blur.p == 0.5
    assert augment.moco_v2(64).augmentations[0].scale == (0.2, 1.0)
    # The colour strength follows the image size when not given: 0.5 (CIFAR-10) below 64 px.
    for size, brightness in [(28, (0.6, 1.4)), (63, (0.6, 1.4)), (64, (0.2, 1.8))]:
        layers = augment.simclr(size).augmentations
        jitter = next(layer for layer in layers if isinstance(layer, ColorJitter))
        assert jitter.brightness == pytest.approx(brightness), size
    assert augment.weak((28, 36)).compute_output_shape((None, 40, 40, 1)) == (None, 28, 36, 1)


# ----- XLA and graphs -----------------------------------------------------------------------
def test_every_layer_and_recipe_compiles_with_xla(textured_images):
    # One compiled function for everything, as XLA compiling is the slow part (seconds on CPU):
    # simclr with blur=True holds crop, flip, jitter, grayscale and blur (moco_v2 and weak hold
    # no other layer); the batch size is left unknown at trace time, as in a Keras train step.
    simclr, solarize, resize = RECIPES["simclr"](seed=0), Solarize(p=0.5, seed=0), Resize(OUT, OUT)
    vectors = augment.vectors(seed=0)

    @tf.function(jit_compile=True, input_signature=[
        tf.TensorSpec([None, SIZE, SIZE, 3], tf.uint8), tf.TensorSpec([None, 16], tf.float32)])
    def step(images, features):
        views = [simclr(images, training=True), solarize(images, training=True), resize(images)]
        return views, vectors(features, training=True)

    images = textured_images(n=8, size=SIZE, channels=3)
    (first, solarized, resized), first_vectors = step(images, tf.ones((8, 16)))
    assert tuple(first.shape) == (8, OUT, OUT, 3) and tuple(resized.shape) == (8, OUT, OUT, 3)
    assert tuple(solarized.shape) == (8, SIZE, SIZE, 3)
    assert all(float(tf.reduce_min(v)) >= 0 and float(tf.reduce_max(v)) <= 1
               for v in (first, solarized, resized))
    np.testing.assert_allclose(resized, tf.image.resize(images / 255, (OUT, OUT)), atol=1e-5)
    assert distinct_count(first) == 8 and distinct_count(first_vectors) == 8
    (second, _, _), second_vectors = step(images, tf.ones((8, 16)))
    assert not np.allclose(first, second) and not np.allclose(first_vectors, second_vectors)


# ----- serialization ------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(ALL_IMAGE_LAYERS))
def test_config_round_trip_rebuilds_the_same_layer(name, textured_images):
    images = textured_images(n=4, size=SIZE, channels=3)
    layer = ALL_IMAGE_LAYERS[name](seed=5)
    config = layer.get_config()
    copy = type(layer).from_config(config)
    assert copy.get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored) is type(layer) and restored.get_config() == config
    expected = layer(images, training=True)
    np.testing.assert_array_equal(copy(images, training=True), expected)
    np.testing.assert_array_equal(restored(images, training=True), expected)


def test_vector_recipe_round_trips():
    aug = augment.vectors(noise=0.3, mask_rate=0.1, seed=2)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(aug))
    assert isinstance(restored, Augmenter)
    assert [layer.get_config() for layer in restored.augmentations] == [
        layer.get_config() for layer in aug.augmentations]
    np.testing.assert_array_equal(restored(np.ones((4, 8))), aug(np.ones((4, 8))))


def test_a_model_holding_recipes_saves_and_loads(tmp_path, textured_images):
    # Two recipes in one functional model: their layer names must not collide.
    inputs = keras.Input((SIZE, SIZE, 3), dtype="uint8")
    views = [augment.simclr(OUT, seed=3)(inputs), augment.simclr(OUT, seed=4)(inputs)]
    model = keras.Model(inputs, views)
    path = tmp_path / "aug.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    images = textured_images(n=2, size=SIZE, channels=3)
    for got, expected in zip(loaded(images, training=False), model(images, training=False),
                             strict=True):
        np.testing.assert_allclose(got, expected)
    first, second = loaded(images, training=True)
    assert not np.allclose(first, second)
