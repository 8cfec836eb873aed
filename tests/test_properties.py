"""Property-based tests: augmentation, pretext inverses and the serving signature on drawn inputs.

hypothesis draws shapes, dtypes, contents and seeds; each property must hold for all of them:

- every augmentation layer and recipe turns any in-range batch (uint8 0-255, or float16 / float32 /
  float64 in [0, 1], 1 or 3 channels, any size from 8 px) into finite float32 values in [0, 1] of
  the expected shape; vector augmentations keep finite vectors finite and their shape;
- pretext functions invert: each of the four rotations turned back is the input, and a puzzle's
  tiles put back in reading order are the image's cells;
- an exported encoder's `serving_default` gives finite float32 embeddings of a fixed width for any
  batch size and any uint8 content (exported once per module, called with drawn batches).
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from keras_ssl import augment, encoders, export, pretext

SETTINGS = settings(max_examples=25, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])

LAYERS = {
    "crop": lambda h, w, seed: augment.RandomResizedCrop(12, 10, seed=seed),
    "crop-antialias": lambda h, w, seed: augment.RandomResizedCrop(9, 9, antialias=True, seed=seed),
    "color": lambda h, w, seed: augment.ColorJitter(0.8, 0.8, 0.8, 0.5, p=1.0, seed=seed),
    "grayscale": lambda h, w, seed: augment.RandomGrayscale(p=0.5, seed=seed),
    "blur": lambda h, w, seed: augment.GaussianBlur(5, p=1.0, seed=seed),
    "solarize": lambda h, w, seed: augment.Solarize(p=0.5, seed=seed),
    "flip": lambda h, w, seed: augment.RandomFlip(seed=seed),
    "simclr": lambda h, w, seed: augment.simclr((h, w), seed=seed),
    "moco_v2": lambda h, w, seed: augment.moco_v2((h, w), seed=seed),
    "weak": lambda h, w, seed: augment.weak((h, w), seed=seed),
}


@st.composite
def image_batches(draw, min_side=8, max_side=24):
    n = draw(st.integers(1, 4))
    height, width = draw(st.integers(min_side, max_side)), draw(st.integers(min_side, max_side))
    channels = draw(st.sampled_from([1, 3]))
    dtype = draw(st.sampled_from(["uint8", "float16", "float32", "float64"]))
    shape = (n, height, width, channels)
    if dtype == "uint8":
        return draw(hnp.arrays(np.uint8, shape, elements=st.integers(0, 255)))
    values = draw(hnp.arrays(np.float64, shape, elements=st.floats(0.0, 1.0)))
    return values.astype(dtype)


def _expected_shape(name, images):
    n, h, w, c = images.shape
    if name == "crop":
        return (n, 12, 10, c)
    if name == "crop-antialias":
        return (n, 9, 9, c)
    return (n, h, w, c)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_augmentation_gives_finite_unit_range_float32_of_the_right_shape(name):
    @SETTINGS
    @given(images=image_batches(), seed=st.integers(0, 2**16), training=st.booleans())
    def check(images, seed, training):
        layer = LAYERS[name](images.shape[1], images.shape[2], seed)
        out = layer(images, training=training)
        assert out.dtype == tf.float32
        assert tuple(out.shape) == _expected_shape(name, images)
        values = out.numpy()
        assert np.isfinite(values).all()
        assert values.min() >= 0.0 and values.max() <= 1.0

    check()


@SETTINGS
@given(
    vectors=hnp.arrays(np.float32, st.tuples(st.integers(1, 6), st.integers(1, 12)),
                       elements=st.floats(-1e3, 1e3, width=32)),
    seed=st.integers(0, 2**16),
)
def test_vector_augmentation_keeps_finite_vectors_finite(vectors, seed):
    for layer in (augment.FeatureNoise(0.5, seed=seed), augment.FeatureMask(0.5, seed=seed),
                  augment.vectors(seed=seed)):
        out = layer(vectors, training=True).numpy()
        assert out.shape == vectors.shape and np.isfinite(out).all()


# ----- pretext inverses -------------------------------------------------------------------------
@SETTINGS
@given(images=hnp.arrays(np.uint8, st.tuples(st.integers(1, 3), st.just(7), st.just(7),
                                             st.sampled_from([1, 3]))))
def test_each_of_the_four_rotations_turns_back_into_the_input(images):
    rotated, labels = pretext.four_rotations(images)
    n = len(images)
    for r in range(4):
        block = rotated[r * n:(r + 1) * n]
        assert set(labels[r * n:(r + 1) * n].numpy().tolist()) == {r}
        np.testing.assert_array_equal(pretext.rotate(block, -r).numpy(), images)


@SETTINGS
@given(
    grid=st.integers(2, 3),
    cell=st.integers(4, 9),
    extra=st.integers(0, 5),  # pixels beyond grid * cell: wider cells, a dropped rest
    channels=st.sampled_from([1, 3]),
    seed=st.integers(0, 2**16),
    data=st.data(),
)
def test_puzzle_tiles_put_back_in_reading_order_are_the_cells(grid, cell, extra, channels, seed,
                                                              data):
    side = grid * cell + extra
    images = data.draw(hnp.arrays(np.uint8, (2, side, side, channels)))
    permutations = pretext.jigsaw_permutations(grid * grid, min(6, 2 if grid == 2 else 6), seed=1)
    tiles, labels = pretext.make_puzzle(images, grid, permutations, tile_size=cell, seed=seed,
                                        jitter=False, color_jitter=False, normalize=False)
    tiles, labels = tiles.numpy(), labels.numpy()
    # Cells are side // grid pixels (the remainder dropped); without jitter a tile is centred.
    size = side // grid
    offset = (size - cell) // 2
    for i in range(len(images)):
        in_order = tiles[i, np.argsort(permutations[labels[i]])]
        for c in range(grid * grid):
            r, col = divmod(c, grid)
            top, left = r * size + offset, col * size + offset
            source = images[i, top:top + cell, left:left + cell]
            np.testing.assert_array_equal(np.round(in_order[c] * 255).astype(np.uint8), source)


# ----- the serving signature --------------------------------------------------------------------
@pytest.fixture(scope="module")
def signatures(tmp_path_factory):
    keras.utils.set_random_seed(0)
    base = tmp_path_factory.mktemp("serving")
    image_encoder = encoders.ConvNet((16, 16, 3), width=4)
    images = export.export_encoder(image_encoder, base / "images")
    vectors = export.export_encoder(encoders.MLP(5, hidden=(8,), output_dim=6), base / "vectors")
    load = lambda path: tf.saved_model.load(str(path)).signatures["serving_default"]  # noqa: E731
    width = image_encoder.output_shape[-1]
    signature = load(images)
    assert signature.structured_outputs["embeddings"].shape.as_list() == [None, width]
    return signature, load(vectors), width


@SETTINGS
@given(batch=st.integers(1, 9).flatmap(
    lambda n: hnp.arrays(np.uint8, (n, 16, 16, 3), elements=st.integers(0, 255))))
@example(batch=np.zeros((1, 16, 16, 3), np.uint8))
@example(batch=np.full((7, 16, 16, 3), 255, np.uint8))
def test_serving_signature_gives_finite_fixed_width_embeddings(signatures, batch):
    embeddings = signatures[0](images=tf.constant(batch))["embeddings"]
    assert embeddings.dtype == tf.float32
    assert tuple(embeddings.shape) == (len(batch), signatures[2])
    assert np.isfinite(embeddings.numpy()).all()


@SETTINGS
@given(batch=st.integers(1, 9).flatmap(
    lambda n: hnp.arrays(np.float32, (n, 5), elements=st.floats(-1e4, 1e4, width=32))))
def test_serving_signature_for_vectors(signatures, batch):
    embeddings = signatures[1](features=tf.constant(batch))["embeddings"]
    assert tuple(embeddings.shape) == (len(batch), 6) and np.isfinite(embeddings.numpy()).all()


@pytest.mark.parametrize("size", [(9, 9), (12, 10), (7, 13)])
def test_white_images_stay_at_most_one_after_every_resampling(size):
    # Interpolation weights sum to 1 only up to rounding: white must not come out above 1.0.
    white = np.full((16, 23, 17, 3), 255, np.uint8)
    for antialias in (False, True):
        crop = augment.RandomResizedCrop(*size, antialias=antialias, seed=3)
        out = crop(white, training=True).numpy()
        assert out.max() <= 1.0 and out.min() >= 0.0
