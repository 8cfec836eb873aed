"""Tests of keras_ssl.pretext: rotations, jigsaw permutations and puzzles, patch masks."""

import itertools
import math
import time

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from keras_ssl import pretext
from keras_ssl.errors import KerasSSLError


def _random_images(n=8, h=32, w=32, c=3, seed=0, dtype=np.uint8):
    images = np.random.default_rng(seed).integers(0, 256, (n, h, w, c), dtype=np.uint8)
    return images if dtype == np.uint8 else images.astype(np.float32) / 255.0


def _coordinate_images(n, h, w):
    """uint8 images whose channel 0 is the row, channel 1 the column, channel 2 zero."""
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    image = np.stack([rows, cols, np.zeros_like(rows)], axis=-1).astype(np.uint8)
    return np.repeat(image[None], n, axis=0)


def _min_hamming(perms):
    distance = (perms[:, None, :] != perms[None, :, :]).sum(-1)
    np.fill_diagonal(distance, perms.shape[1] + 1)
    return int(distance.min())


# ----- rotations ------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [-1, 0, 1, 2, 3, 4, 7])
def test_rotate_python_k_matches_np_rot90_even_on_non_square_images(k):
    images = _random_images(3, 5, 7, 3)
    rotated = pretext.rotate(images, k).numpy()
    expected = np.rot90(images, k, axes=(1, 2))
    assert rotated.dtype == np.uint8
    assert rotated.shape == expected.shape
    np.testing.assert_array_equal(rotated, expected)


def test_rotate_per_image_k_is_exact_and_rotating_back_restores_the_input():
    images = _random_images(12, 9, 9, 3, dtype=np.float32)
    k = np.array([0, 1, 2, 3, -1, -2, 5, 6, 7, 4, 1, 3], dtype=np.int32)
    rotated = pretext.rotate(images, tf.constant(k)).numpy()
    for i in range(len(images)):
        np.testing.assert_array_equal(rotated[i], np.rot90(images[i], k[i]))
    restored = pretext.rotate(rotated, tf.constant(-k)).numpy()
    np.testing.assert_array_equal(restored, images)  # bitwise: no resampling anywhere


def test_rotate_scalar_tensor_k_turns_every_image():
    images = _random_images(4, 6, 6, 1)
    rotated = pretext.rotate(images, tf.constant(3, tf.int64)).numpy()
    np.testing.assert_array_equal(rotated, np.rot90(images, 3, axes=(1, 2)))


@settings(max_examples=20, deadline=None)
@given(
    size=st.integers(1, 6),
    channels=st.sampled_from([1, 3]),
    ks=st.lists(st.integers(-8, 8), min_size=1, max_size=5),
)
def test_rotate_round_trip_property(size, channels, ks):
    images = _random_images(len(ks), size, size, channels, seed=size)
    k = tf.constant(ks, tf.int32)
    rotated = pretext.rotate(images, k)
    np.testing.assert_array_equal(pretext.rotate(rotated, -k).numpy(), images)
    for i, turns in enumerate(ks):
        np.testing.assert_array_equal(rotated[i].numpy(), np.rot90(images[i], turns))


def test_rotate_rejects_bad_k_and_non_square_images_with_tensor_k():
    with pytest.raises(KerasSSLError, match="square"):
        pretext.rotate(_random_images(2, 4, 6), tf.constant([1, 2]))
    with pytest.raises(KerasSSLError, match="one k per image"):
        pretext.rotate(_random_images(2, 4, 4), tf.constant([1, 2, 3]))
    with pytest.raises(KerasSSLError, match="integer"):
        pretext.rotate(_random_images(2, 4, 4), tf.constant([1.0, 2.0]))
    with pytest.raises(KerasSSLError, match=r"\[N, H, W, C\]"):
        pretext.rotate(np.zeros((4, 4, 3), np.uint8), 1)


def test_four_rotations_orders_by_rotation_and_labels_match_content():
    images = _random_images(5, 8, 8, 3)
    rotated, labels = pretext.four_rotations(images)
    assert rotated.shape == (20, 8, 8, 3) and rotated.dtype == tf.uint8
    assert labels.dtype == tf.int32
    np.testing.assert_array_equal(labels.numpy(), np.repeat(np.arange(4), 5))
    for row, label in enumerate(labels.numpy()):
        np.testing.assert_array_equal(rotated[row].numpy(), np.rot90(images[row % 5], label))
    with pytest.raises(KerasSSLError, match="square"):
        pretext.four_rotations(_random_images(2, 8, 10))


# ----- jigsaw permutations --------------------------------------------------------------------
def test_jigsaw_permutations_are_distinct_valid_and_deterministic():
    perms = pretext.jigsaw_permutations(9, 100, seed=0)
    assert perms.shape == (100, 9) and perms.dtype == np.int32
    np.testing.assert_array_equal(np.sort(perms, axis=1), np.tile(np.arange(9), (100, 1)))
    assert len(np.unique(perms, axis=0)) == 100
    np.testing.assert_array_equal(perms, pretext.jigsaw_permutations(9, 100, seed=0))
    assert not np.array_equal(perms, pretext.jigsaw_permutations(9, 100, seed=1))
    # Callers get their own copy: changing it does not change the cached set.
    perms[0] = 0
    assert sorted(pretext.jigsaw_permutations(9, 100, seed=0)[0]) == list(range(9))


def test_jigsaw_permutations_greedy_set_is_far_apart_and_fast():
    start = time.perf_counter()
    perms = pretext.jigsaw_permutations(9, 100, seed=12345)  # a seed no other test caches
    elapsed = time.perf_counter() - start
    assert elapsed < 3.0, f"100 permutations of 9 tiles took {elapsed:.2f} s"
    # Measured: the greedy maximal-Hamming set of 100 has a minimum distance of 6 of 9 (for seeds
    # 0, 1, 2, 12345), while 100 random permutations get 2 or 3.
    greedy = _min_hamming(perms)
    assert greedy >= 6
    rng = np.random.default_rng(0)
    all_perms = np.array(list(itertools.permutations(range(9))))
    for _ in range(5):
        random_set = all_perms[rng.choice(len(all_perms), 100, replace=False)]
        assert greedy > _min_hamming(random_set)


def test_jigsaw_permutations_small_cases():
    # 4 mutually maximally distant permutations of 4 exist (the rows of a Latin square).
    assert _min_hamming(pretext.jigsaw_permutations(4, 4, seed=3)) == 4
    every = pretext.jigsaw_permutations(4, math.factorial(4))
    assert len(np.unique(every, axis=0)) == 24
    assert pretext.jigsaw_permutations(2, 2).tolist() in ([[0, 1], [1, 0]], [[1, 0], [0, 1]])
    # Above 9 tiles the candidates are sampled; the set is still valid and well spread.
    sixteen = pretext.jigsaw_permutations(16, 10, seed=0)
    np.testing.assert_array_equal(np.sort(sixteen, axis=1), np.tile(np.arange(16), (10, 1)))
    assert _min_hamming(sixteen) >= 14


def test_jigsaw_permutations_errors_say_the_limits():
    with pytest.raises(KerasSSLError, match="between 1 and 24"):
        pretext.jigsaw_permutations(4, 25)
    with pytest.raises(KerasSSLError, match="between 1 and 362880"):
        pretext.jigsaw_permutations(9, 0)
    with pytest.raises(KerasSSLError, match="num_tiles >= 2"):
        pretext.jigsaw_permutations(1, 1)
    with pytest.raises(KerasSSLError, match="must be an int"):
        pretext.jigsaw_permutations(9, 10.0)


# ----- jigsaw puzzles -------------------------------------------------------------------------
def test_puzzle_without_randomness_reassembles_to_the_source_regions():
    # 50 x 41 is not divisible by 3: cells are 16 x 13 and the remainder is dropped.
    images = _random_images(6, 50, 41, 3, seed=1)
    perms = pretext.jigsaw_permutations(9, 30)
    tiles, labels = pretext.make_puzzle(
        images, 3, perms, seed=7, jitter=False, color_jitter=False, normalize=False
    )
    tile = round(0.85 * 13)
    assert tiles.shape == (6, 9, tile, tile, 3) and tiles.dtype == tf.float32
    assert labels.dtype == tf.int32 and labels.shape == (6,)
    tiles, labels = tiles.numpy(), labels.numpy()
    assert np.all((labels >= 0) & (labels < 30))
    off_y, off_x = (16 - tile) // 2, (13 - tile) // 2  # centred without jitter
    for i in range(6):
        in_reading_order = tiles[i, np.argsort(perms[labels[i]])]
        for cell in range(9):
            r, c = divmod(cell, 3)
            y, x = r * 16 + off_y, c * 13 + off_x
            source = images[i, y : y + tile, x : x + tile]
            np.testing.assert_array_equal(np.round(in_reading_order[cell] * 255), source)
            np.testing.assert_allclose(in_reading_order[cell], source / 255.0, atol=1e-7)


def test_puzzle_jitter_keeps_tiles_inside_their_cells_with_random_offsets():
    n, grid, cell = 16, 3, 16
    images = _coordinate_images(n, 48, 48)  # 8 copies of one image, twice
    perms = pretext.jigsaw_permutations(9, 100)
    tiles, labels = pretext.make_puzzle(
        images, grid, perms, tile_size=13, seed=3, color_jitter=False, normalize=False
    )
    tiles = np.round(tiles.numpy() * 255).astype(int)
    rows, cols = tiles[..., 0], tiles[..., 1]  # [N, 9, t, t]
    steps = np.arange(13)
    # Every tile is a contiguous 13 x 13 crop ...
    assert np.all(rows == rows[:, :, :1, :1] + steps[:, None])
    assert np.all(cols == cols[:, :, :1, :1] + steps[None, :])
    # ... from cell perms[label, j], at an offset inside that cell.
    source = perms[labels.numpy()]  # [N, 9]
    off_y = rows[:, :, 0, 0] - (source // grid) * cell
    off_x = cols[:, :, 0, 0] - (source % grid) * cell
    assert off_y.min() >= 0 and off_y.max() <= cell - 13
    assert off_x.min() >= 0 and off_x.max() <= cell - 13
    # Offsets are drawn per image and per tile: every possible offset shows up.
    assert set(off_y.ravel()) == set(range(cell - 13 + 1)) == set(off_x.ravel())
    assert len({tuple(o) for o in off_y}) == n
    assert len(set(labels.numpy())) > 1


def test_puzzle_gives_each_copy_of_an_image_its_own_puzzle():
    images = np.repeat(_random_images(1, 40, 40, 3), 8, axis=0)
    tiles, labels = pretext.make_puzzle(images, seed=11)
    flat = tiles.numpy().reshape(8, -1)
    assert len(np.unique(flat, axis=0)) == 8
    assert len(set(labels.numpy())) > 1


def test_puzzle_color_jitter_turns_some_tiles_grey():
    red = np.zeros((64, 36, 36, 3), np.float32)
    red[..., 0] = 1.0
    tiles, _ = pretext.make_puzzle(red, seed=5, normalize=False)
    tiles = tiles.numpy().reshape(-1, tiles.shape[2] * tiles.shape[3], 3)
    grey = np.all(np.isclose(tiles, 0.299), axis=(1, 2))
    kept = np.all(tiles == [1.0, 0.0, 0.0], axis=(1, 2))
    assert np.all(grey | kept)
    assert 0.2 < grey.mean() < 0.4  # probability 0.3 per tile, over 576 tiles


def test_puzzle_color_jitter_shifts_channels_within_the_source_cell():
    n, h, w, cell, t = 16, 48, 48, 16, 12
    index = np.arange(h * w, dtype=np.float32).reshape(h, w) / (h * w)  # exact in float32
    images = np.repeat(np.repeat(index[None, :, :, None], 3, axis=3), n, axis=0)
    perms = pretext.jigsaw_permutations(9, 100)
    tiles, labels = pretext.make_puzzle(
        images, 3, perms, tile_size=t, seed=2, jitter=False, normalize=False
    )
    tiles = tiles.numpy()
    # Grey tiles have equal channels; tiles whose channels differ kept their colour and had
    # their channels cut at different offsets.
    shifted = ~np.all(tiles == tiles[..., :1], axis=(2, 3, 4))
    assert shifted.mean() > 0.3
    pixel = np.round(tiles * (h * w)).astype(int)
    rows, cols = pixel // w, pixel % w
    source = perms[labels.numpy()]
    top = (source // 3) * cell
    left = (source % 3) * cell
    for i, j in zip(*np.nonzero(shifted), strict=True):
        for c in range(3):
            r0, c0 = rows[i, j, 0, 0, c], cols[i, j, 0, 0, c]
            assert np.all(rows[i, j, :, :, c] == r0 + np.arange(t)[:, None])
            assert np.all(cols[i, j, :, :, c] == c0 + np.arange(t)[None, :])
            assert top[i, j] <= r0 <= top[i, j] + cell - t
            assert left[i, j] <= c0 <= left[i, j] + cell - t
        # Without jitter the tile is centred; each channel moves at most 2 pixels from there.
        assert np.abs(rows[i, j, 0, 0] - (top[i, j] + 2)).max() <= 2
        assert np.abs(cols[i, j, 0, 0] - (left[i, j] + 2)).max() <= 2


@pytest.mark.parametrize("per_channel", [True, False])
def test_puzzle_normalize_gives_zero_mean_unit_std_tiles(per_channel):
    images = _random_images(4, 36, 36, 3)
    tiles, _ = pretext.make_puzzle(images, seed=1, per_channel=per_channel)
    axes = (2, 3) if per_channel else (2, 3, 4)
    tiles = tiles.numpy()
    np.testing.assert_allclose(tiles.mean(axis=axes), 0.0, atol=1e-4)
    np.testing.assert_allclose(tiles.std(axis=axes), 1.0, atol=1e-2)


def test_puzzle_same_seed_same_output_and_keras_seeds_work():
    images = _random_images(4, 30, 30, 3)
    first = pretext.make_puzzle(images, seed=42)
    again = pretext.make_puzzle(images, seed=42)
    other = pretext.make_puzzle(images, seed=43)
    np.testing.assert_array_equal(first[0].numpy(), again[0].numpy())
    np.testing.assert_array_equal(first[1].numpy(), again[1].numpy())
    assert not np.array_equal(first[0].numpy(), other[0].numpy())
    generator = keras.random.SeedGenerator(1)
    a = pretext.make_puzzle(images, seed=generator.next())[0].numpy()
    b = pretext.make_puzzle(images, seed=generator.next())[0].numpy()
    assert not np.array_equal(a, b)
    # seed=None draws a new seed every call.
    assert not np.array_equal(
        pretext.make_puzzle(images)[0].numpy(), pretext.make_puzzle(images)[0].numpy()
    )


def test_puzzle_errors_name_the_problem_and_the_fix():
    with pytest.raises(KerasSSLError, match=r"10x10.*3x3.*12x12.*grid=2"):
        pretext.make_puzzle(np.zeros((2, 10, 10, 3), np.uint8), grid=3)
    with pytest.raises(KerasSSLError, match="no grid fits"):
        pretext.make_puzzle(np.zeros((2, 7, 7, 3), np.uint8), grid=2)
    with pytest.raises(KerasSSLError, match="tile_size"):
        pretext.make_puzzle(np.zeros((2, 30, 30, 3), np.uint8), grid=3, tile_size=11)
    with pytest.raises(KerasSSLError, match=r"\[P, 9\]"):
        pretext.make_puzzle(np.zeros((2, 30, 30, 3), np.uint8), 3, np.zeros((5, 4), np.int32))
    with pytest.raises(KerasSSLError, match="invalid rows"):
        pretext.make_puzzle(np.zeros((2, 30, 30, 3), np.uint8), 2, np.zeros((5, 4), np.int32))
    with pytest.raises(KerasSSLError, match="distinct"):
        pretext.make_puzzle(np.zeros((2, 30, 30, 3), np.uint8), 2, [[0, 1, 2, 3]] * 2)
    with pytest.raises(KerasSSLError, match="uint8"):
        pretext.make_puzzle(np.zeros((2, 30, 30, 3), np.int32))
    with pytest.raises(KerasSSLError, match="grid >= 2"):
        pretext.make_puzzle(np.zeros((2, 30, 30, 3), np.uint8), grid=1)
    with pytest.raises(KerasSSLError, match="seed"):
        pretext.make_puzzle(np.zeros((2, 30, 30, 3), np.uint8), seed=tf.constant([1, 2, 3]))


# ----- patch masks ----------------------------------------------------------------------------
def test_patch_mask_masks_exactly_the_ratio_in_every_image_with_different_patches():
    images = tf.zeros([16, 32, 32, 3], tf.uint8)
    mask = pretext.random_patch_mask(images, 4, 0.75, seed=0)
    assert mask.shape == (16, 32, 32, 1) and mask.dtype == tf.float32
    patches = mask.numpy().reshape(16, 8, 4, 8, 4)
    assert set(np.unique(patches)) == {0.0, 1.0}
    # Whole patches: every 4 x 4 patch is all masked or all visible.
    np.testing.assert_array_equal(patches.min(axis=(2, 4)), patches.max(axis=(2, 4)))
    per_image = patches[:, :, 0, :, 0].reshape(16, 64)
    np.testing.assert_array_equal(per_image.sum(axis=1), 48)
    assert len(np.unique(per_image, axis=0)) == 16


def test_patch_mask_from_a_shape_with_rectangular_patches_rounds_half_up():
    mask = pretext.random_patch_mask((4, 24, 32), (4, 8), 0.3, seed=1).numpy()
    assert mask.shape == (4, 24, 32, 1)
    # 6 x 4 = 24 patches, 0.3 * 24 = 7.2 -> 7 patches of 32 pixels.
    np.testing.assert_array_equal(mask.sum(axis=(1, 2, 3)), 7 * 32)
    half = pretext.random_patch_mask((3, 8, 8, 1), 2, 0.5625, seed=1).numpy()  # 16 * 0.5625 = 9
    np.testing.assert_array_equal(half.sum(axis=(1, 2, 3)), 9 * 4)
    up = pretext.random_patch_mask((3, 4, 8), (2, 2), 0.5625, seed=1).numpy()  # 8 * 0.5625 = 4.5
    np.testing.assert_array_equal(up.sum(axis=(1, 2, 3)), 5 * 4)


def test_patch_mask_same_seed_same_mask():
    a = pretext.random_patch_mask((8, 16, 16), 4, 0.5, seed=tf.constant([3, 4])).numpy()
    b = pretext.random_patch_mask((8, 16, 16), 4, 0.5, seed=tf.constant([3, 4])).numpy()
    c = pretext.random_patch_mask((8, 16, 16), 4, 0.5, seed=tf.constant([3, 5])).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_patch_mask_errors_say_which_sizes_and_ratios_work():
    with pytest.raises(KerasSSLError, match=r"\[1, 2, 4, 8, 16, 32\]"):
        pretext.random_patch_mask((2, 32, 32), 5, 0.5)
    with pytest.raises(KerasSSLError, match=r"both: \[1, 2, 4\]"):
        pretext.random_patch_mask((2, 12, 16), 3, 0.5)
    for ratio in (0.0, 1.0, 1.5, -0.1):
        with pytest.raises(KerasSSLError, match="strictly between 0 and 1"):
            pretext.random_patch_mask((2, 32, 32), 8, ratio)
    with pytest.raises(KerasSSLError, match="at least 1"):
        pretext.random_patch_mask((2, 32, 32), 8, 0.01)
    with pytest.raises(KerasSSLError, match="patch_size"):
        pretext.random_patch_mask((2, 32, 32), 0, 0.5)
    with pytest.raises(KerasSSLError, match="shape"):
        pretext.random_patch_mask((2, 32), 4, 0.5)


# ----- compiled use ---------------------------------------------------------------------------
def test_everything_compiles_with_xla_and_matches_eager():
    images = tf.constant(_random_images(6, 36, 36, 3))
    k = tf.constant([0, 1, 2, 3, -1, 5])

    def step(x, seed):
        tiles, labels = pretext.make_puzzle(x, seed=seed)
        mask = pretext.random_patch_mask(x, 6, 0.75, seed=seed)
        rotated, rotation_labels = pretext.four_rotations(x)
        return tiles, labels, mask, rotated, rotation_labels, pretext.rotate(x, k)

    seed = keras.random.SeedGenerator(7).next()
    eager = step(images, seed)
    compiled = tf.function(step, jit_compile=True)(images, seed)
    # Integer draws with the Philox algorithm: the same labels and masks with or without XLA.
    for a, b in zip(eager[1:], compiled[1:], strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_allclose(eager[0].numpy(), compiled[0].numpy(), atol=1e-4)


def test_dynamic_batch_size_in_a_graph():
    spec = tf.TensorSpec([None, 24, 24, 3], tf.uint8)

    @tf.function(input_signature=[spec])
    def step(x):
        tiles, labels = pretext.make_puzzle(x, grid=2, seed=1)
        mask = pretext.random_patch_mask(x, 4, 0.5, seed=1)
        rotated, _ = pretext.four_rotations(x)
        per_image = pretext.rotate(x, tf.range(tf.shape(x)[0]))
        return tiles, labels, mask, rotated, per_image

    tiles, labels, mask, rotated, per_image = step(tf.constant(_random_images(5, 24, 24, 3)))
    assert tiles.shape == (5, 4, 10, 10, 3) and labels.shape == (5,)
    assert mask.shape == (5, 24, 24, 1) and rotated.shape == (20, 24, 24, 3)
    assert per_image.shape == (5, 24, 24, 3)
