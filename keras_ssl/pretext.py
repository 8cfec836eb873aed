"""In-graph label makers for pretext tasks: rotations, jigsaw puzzles and patch masks.

Every function here is plain TensorFlow that works on a whole batch at once: per-image random
choices are drawn as `[N, ...]` tensors with one stateless op, never with a Python loop,
`tf.map_fn` or `vectorized_map`. All of it compiles with `tf.function(jit_compile=True)` on CPU
(static H, W, C; the batch size may be dynamic), so it can live inside a method's `train_step`.

Randomness is stateless: pass `seed` as a `[2]` integer tensor (e.g. the output of
`keras.random.SeedGenerator(...).next()`, which a Keras model draws anew every step) or a Python
int; the same seed gives the same output. `seed=None` draws a fresh seed from TensorFlow's global
generator on every call (not reproducible).

- `rotate(images, k)`, `four_rotations(images)`: RotNet (Gidaris et al., 2018).
- `jigsaw_permutations(num_tiles, count, seed)`, `make_puzzle(images, grid, ...)`: jigsaw puzzles
  (Noroozi & Favaro, 2016).
- `random_patch_mask(images_or_shape, patch_size, mask_ratio, seed)`: MAE-style patch masks
  (He et al., 2022).
- `mask_tokens(token_ids, mask_rate, mask_token_id=, vocab_size=, ...)`: BERT's masked tokens
  (Devlin et al., 2019).
"""

from __future__ import annotations

import functools
import math
import numbers

import numpy as np
import tensorflow as tf

from keras_ssl.errors import KerasSSLError

__all__ = [
    "MIN_CELL_SIZE",
    "four_rotations",
    "jigsaw_permutations",
    "make_puzzle",
    "mask_tokens",
    "random_patch_mask",
    "rotate",
]

# A jigsaw cell smaller than this leaves too few pixels for a tile plus a gap.
MIN_CELL_SIZE = 4
# Default tile side as a fraction of the cell side: 64 px tiles in 75 px cells in Noroozi & Favaro.
_TILE_FRACTION = 0.85
# Colour tricks against chromatic-aberration shortcuts (the network could otherwise locate a tile in
# the image from how the colour channels are misaligned by the lens): each colour channel of a tile
# is shifted by up to this many pixels on its own, and a tile turns grey with this probability.
_CHANNEL_SHIFT = 2
_GRAYSCALE_PROBABILITY = 0.3
_LUMA = (0.2989, 0.587, 0.114)  # the weights of tf.image.rgb_to_grayscale
# Added to a tile's variance before dividing: a flat tile (std far below one grey level, 1/255)
# stays near 0 instead of having its quantisation noise blown up to unit variance.
_NORMALIZE_EPSILON = (1.0 / 255.0) ** 2
# Only integer draws with an explicit algorithm: XLA and plain TensorFlow then give bitwise the same
# numbers for a seed (measured: float draws, and "auto_select", differ between the two), so a
# compiled train step and an eager check see the same puzzles and masks.
_RNG = "philox"
# Above this many tiles, jigsaw_permutations picks from this many random permutations instead of
# all num_tiles! of them (10! rows would already take 36 MB and ten times as long).
_MAX_ENUMERATED_TILES = 9
_SAMPLED_CANDIDATES = math.factorial(9)


# ----- helpers --------------------------------------------------------------------------------
def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _seed_tensor(seed) -> tf.Tensor:
    """A `[2]` int64 stateless seed from None, a Python int or a `[2]` integer tensor."""
    if seed is None:
        # A stateful draw, so that successive calls differ; XLA compiles it.
        return tf.cast(
            tf.random.uniform([2], minval=-(2**31), maxval=2**31 - 1, dtype=tf.int32), tf.int64
        )
    if _is_int(seed):
        return tf.constant([int(seed), 0], dtype=tf.int64)
    seed = tf.convert_to_tensor(seed)
    if not (seed.dtype.is_integer and seed.shape.rank == 1 and seed.shape[0] == 2):
        raise KerasSSLError(
            f"seed must be None, a Python int or a stateless seed of shape [2] and integer dtype "
            f"(e.g. keras.random.SeedGenerator(1).next()), got shape {seed.shape} and dtype "
            f"{seed.dtype.name}."
        )
    return tf.cast(seed, tf.int64)


def _split_seed(seed, num: int) -> list[tf.Tensor]:
    """`num` independent stateless seeds from one seed."""
    seeds = tf.random.split(_seed_tensor(seed), num, alg=_RNG)
    return [seeds[i] for i in range(num)]


def _uniform_int(shape, seed, minval: int, maxval: int) -> tf.Tensor:
    """Stateless int32 draws in [minval, maxval), the same under XLA and without it."""
    return tf.random.stateless_uniform(
        shape, seed, minval=minval, maxval=maxval, dtype=tf.int32, alg=_RNG
    )


def _check_images(images, where: str) -> tf.Tensor:
    images = tf.convert_to_tensor(images)
    if images.shape.rank != 4 or None in images.shape[1:]:
        raise KerasSSLError(
            f"{where} takes a batch of images of shape [N, H, W, C] with static H, W and C, got "
            f"shape {images.shape}. Add a batch axis to a single image (images[None]) and give the "
            f"model a fixed image size."
        )
    return images


def _check_image_dtype(dtype: tf.DType, where: str) -> None:
    if dtype == tf.uint8 or dtype.is_floating:
        return
    raise KerasSSLError(
        f"{where} takes uint8 images (0-255) or floating-point images in [0, 1], got dtype "
        f"{dtype.name}. Cast them, e.g. tf.cast(images, tf.uint8) for 0-255 integers or "
        f"tf.cast(images, tf.float32) / 255."
    )


def _to_float_images(images: tf.Tensor) -> tf.Tensor:
    # The keras_ssl convention (augment.to_float_images): uint8 / 255, floats clipped to [0, 1].
    # Kept here so that pretext depends on TensorFlow only.
    if images.dtype == tf.uint8:
        return tf.cast(images, tf.float32) / 255.0
    return tf.clip_by_value(tf.cast(images, tf.float32), 0.0, 1.0)


def _batch_size(images: tf.Tensor):
    """The static batch size when known, else the dynamic one."""
    n = images.shape[0]
    return n if n is not None else tf.shape(images)[0]


# ----- rotations ------------------------------------------------------------------------------
def _rot90(images: tf.Tensor, k: int) -> tf.Tensor:
    """`np.rot90(images, k, axes=(1, 2))`: k quarter turns counter-clockwise, exact."""
    k %= 4
    if k == 0:
        return images
    if k == 1:  # flip left-right, then swap rows and columns
        return tf.transpose(tf.reverse(images, axis=[2]), [0, 2, 1, 3])
    if k == 2:
        return tf.reverse(images, axis=[1, 2])
    return tf.reverse(tf.transpose(images, [0, 2, 1, 3]), axis=[2])  # k == 3


def rotate(images, k) -> tf.Tensor:
    """Rotate images counter-clockwise by `k` quarter turns, exactly (same as `np.rot90`).

    Args:
        images: `[N, H, W, C]` images of any dtype; the output has the same dtype and the pixel
            values are moved, never resampled, so it is bitwise equal to
            `np.rot90(images, k, axes=(1, 2))`.
        k: the number of 90 degree counter-clockwise turns, taken modulo 4 (negative turns go
            clockwise). A Python int applies to every image (odd `k` on `H != W` images gives
            `[N, W, H, C]`, like `np.rot90`); a scalar or `[N]` integer tensor gives one turn per
            image and needs square images, since images with different turns share one output.

    Returns:
        The rotated images.

    Example:
    >>> import numpy as np
    >>> x = np.arange(2 * 3 * 3).reshape(2, 3, 3, 1)
    >>> y = rotate(x, tf.constant([1, 3]))
    >>> bool(np.array_equal(y[0], np.rot90(x[0])) and np.array_equal(y[1], np.rot90(x[1], 3)))
    True
    """
    images = _check_images(images, "rotate")
    if _is_int(k):
        return _rot90(images, int(k))
    k = tf.convert_to_tensor(k)
    height, width = images.shape[1], images.shape[2]
    if not k.dtype.is_integer or k.shape.rank not in (0, 1):
        raise KerasSSLError(
            f"rotate takes k as a Python int, a scalar integer tensor or an [N] integer tensor "
            f"(one number of quarter turns per image), got dtype {k.dtype.name} and shape "
            f"{k.shape}."
        )
    n = images.shape[0]
    if k.shape.rank == 1 and n is not None and k.shape[0] is not None and k.shape[0] != n:
        raise KerasSSLError(
            f"rotate got {k.shape[0]} rotations for {n} images; give one k per image "
            f"(shape [{n}]) or a single k for all of them."
        )
    if height != width:
        raise KerasSSLError(
            f"rotate with a tensor k needs square images, because a quarter turn of a "
            f"{height}x{width} image is {width}x{height} and all images must share one shape. "
            f"Crop or resize the images to a square, or pass k as a Python int."
        )
    # Compute all four turns with transposes and reverses, then pick one per image with
    # `tf.where`: exact for every dtype (a one-hot product would round and does not run on uint8).
    k = tf.math.floormod(tf.cast(k, tf.int32), 4)
    k = tf.broadcast_to(k, [_batch_size(images)])[:, None, None, None]
    out = _rot90(images, 0)
    for turns in (1, 2, 3):
        out = tf.where(k == turns, _rot90(images, turns), out)
    return out


def four_rotations(images) -> tuple[tf.Tensor, tf.Tensor]:
    """All four rotations of every image, with their labels, as RotNet trains on every step.

    Args:
        images: `[N, H, W, C]` square images of any dtype (kept: convert them yourself).

    Returns:
        `(rotated, labels)`: `rotated` is `[4N, H, W, C]`, ordered by rotation first: rows
        `r * N + i` hold image `i` turned `r` quarter turns counter-clockwise (`rotate(images, r)`),
        and `labels` is the `[4N]` int32 vector of those `r` in 0..3.

    Example:
    >>> x = tf.zeros([8, 32, 32, 3], tf.uint8)
    >>> rotated, labels = four_rotations(x)
    >>> rotated.shape, labels.numpy()[[0, 8, 16, 24]].tolist()
    (TensorShape([32, 32, 32, 3]), [0, 1, 2, 3])
    """
    images = _check_images(images, "four_rotations")
    height, width = images.shape[1], images.shape[2]
    if height != width:
        raise KerasSSLError(
            f"four_rotations needs square images (a quarter turn of a {height}x{width} image is "
            f"{width}x{height}, and all rotations go into one batch). Crop or resize the images to "
            f"a square first."
        )
    rotated = tf.concat([_rot90(images, r) for r in range(4)], axis=0)
    n = _batch_size(images)
    labels = tf.reshape(tf.broadcast_to(tf.range(4, dtype=tf.int32)[:, None], [4, n]), [-1])
    return rotated, labels


# ----- jigsaw ---------------------------------------------------------------------------------
def _all_permutations(n: int) -> np.ndarray:
    """All n! permutations of range(n) as int8 rows, built by inserting n-1, n-2, ... vectorized."""
    perms = np.zeros((1, 1), dtype=np.int8)
    for m in range(1, n):
        # Insert the new value m at every position of every permutation of range(m).
        perms = np.concatenate([np.insert(perms, pos, m, axis=1) for pos in range(m + 1)])
    return perms


def _candidate_permutations(n: int, rng: np.random.Generator) -> np.ndarray:
    if n <= _MAX_ENUMERATED_TILES:
        perms = _all_permutations(n)
        # Shuffling the candidates once makes the first pick, and every tie of the greedy argmax
        # below (which takes the first maximum), random but fixed by the seed.
        return perms[rng.permutation(len(perms))]
    perms = np.argsort(rng.random((_SAMPLED_CANDIDATES, n)), axis=1).astype(np.int8)
    _, first = np.unique(perms, axis=0, return_index=True)
    return perms[np.sort(first)]  # drop the (improbable) repeats, keep the random order


@functools.lru_cache(maxsize=32)
def _greedy_permutations(num_tiles: int, count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    candidates = _candidate_permutations(num_tiles, rng)
    # min_distance[c] = Hamming distance from candidate c to the nearest chosen permutation, updated
    # after each pick with the distances to the new one: memory stays one byte per candidate.
    # Positions are stored as contiguous columns and compared one at a time into preallocated
    # buffers: 20x faster than `(candidates != new).sum(axis=1)` on the [9!, 9] array.
    columns = np.ascontiguousarray(candidates.T)
    min_distance = np.full(len(candidates), num_tiles + 1, dtype=np.int8)
    distance = np.empty(len(candidates), dtype=np.int8)
    differs = np.empty(len(candidates), dtype=bool)
    chosen = [0]
    for _ in range(count - 1):
        new = columns[:, chosen[-1]]
        distance.fill(0)
        for position in range(num_tiles):
            np.not_equal(columns[position], new[position], out=differs)
            distance += differs
        np.minimum(min_distance, distance, out=min_distance)
        # Chosen rows are at distance 0 from themselves, so they are never picked again.
        chosen.append(int(np.argmax(min_distance)))
    result = candidates[chosen].astype(np.int32)
    result.flags.writeable = False  # the cached copy; callers get their own
    return result


def jigsaw_permutations(num_tiles: int = 9, count: int = 100, seed: int = 0) -> np.ndarray:
    """A set of tile permutations far apart in Hamming distance (Noroozi & Favaro, 2016).

    Greedy, as in the paper: start from a random permutation, then add, again and again, the
    permutation whose minimum Hamming distance to those already chosen is largest. Ties go to a
    random one, fixed by `seed`. For up to 9 tiles every permutation is a candidate (9! = 362,880;
    100 permutations take about 0.05 s, and their minimum pairwise distance is 6 of 9); above 9
    tiles the candidates are 362,880 random permutations. Results are cached, so calling it again at model
    build time is free.

    Args:
        num_tiles: the number of tiles of a puzzle (`grid * grid`), at least 2.
        count: how many permutations (the number of classes of the jigsaw task), 1 to
            `num_tiles!` (at most 362,880 above 9 tiles).
        seed: a Python int; the same seed gives the same set.

    Returns:
        A new `[count, num_tiles]` int32 array; each row is a permutation of `range(num_tiles)`.

    Example:
    >>> perms = jigsaw_permutations(9, 100)
    >>> perms.shape, sorted(perms[0].tolist()) == list(range(9))
    ((100, 9), True)
    """
    for name, value in (("num_tiles", num_tiles), ("count", count), ("seed", seed)):
        if not _is_int(value):
            raise KerasSSLError(f"jigsaw_permutations: {name} must be an int, got {value!r}.")
    num_tiles, count, seed = int(num_tiles), int(count), int(seed)
    if num_tiles < 2:
        raise KerasSSLError(
            f"jigsaw_permutations needs num_tiles >= 2 (a puzzle of one tile has nothing to "
            f"solve), got {num_tiles}. Use grid >= 2, i.e. num_tiles = grid * grid >= 4."
        )
    if num_tiles > 100:  # distances are counted in int8
        raise KerasSSLError(
            f"jigsaw_permutations supports up to 100 tiles (a 10x10 grid), got "
            f"num_tiles={num_tiles}. Use a smaller grid."
        )
    maximum = (
        math.factorial(num_tiles) if num_tiles <= _MAX_ENUMERATED_TILES else _SAMPLED_CANDIDATES
    )
    if count < 1 or count > maximum:
        raise KerasSSLError(
            f"jigsaw_permutations: count must be between 1 and {maximum} for {num_tiles} tiles "
            f"(there are only {num_tiles}! = {math.factorial(num_tiles)} permutations"
            + ("" if num_tiles <= _MAX_ENUMERATED_TILES else f", of which {maximum} are tried")
            + f"), got count={count}. Ask for fewer permutations or use more tiles."
        )
    return _greedy_permutations(num_tiles, count, seed).copy()


def _check_permutations(permutations, num_tiles: int, grid: int) -> np.ndarray:
    if isinstance(permutations, (tf.Tensor, tf.Variable)):
        # The permutation set is a build-time constant (its size is the number of classes).
        value = tf.get_static_value(permutations)
        if value is None:
            raise KerasSSLError(
                "make_puzzle needs permutations as a constant (a NumPy array from "
                "jigsaw_permutations), not a tensor computed in the graph."
            )
        permutations = value
    perms = np.asarray(permutations)
    valid = (
        perms.ndim == 2
        and perms.shape[0] >= 1
        and perms.shape[1] == num_tiles
        and np.issubdtype(perms.dtype, np.integer)
        and np.array_equal(
            np.sort(perms, axis=1), np.broadcast_to(np.arange(num_tiles), perms.shape)
        )
    )
    if valid and len(np.unique(perms, axis=0)) != len(perms):
        raise KerasSSLError(
            f"make_puzzle: the {len(perms)} permutations must be distinct (a repeated row makes two "
            f"labels mean the same puzzle). Make them with jigsaw_permutations(num_tiles="
            f"{num_tiles}, count=...)."
        )
    if not valid:
        raise KerasSSLError(
            f"make_puzzle needs permutations as a [P, grid*grid] = [P, {num_tiles}] integer array "
            f"whose rows are permutations of 0..{num_tiles - 1}, got shape {perms.shape}"
            f"{'' if perms.ndim != 2 or perms.shape[1:] != (num_tiles,) else ' with invalid rows'}. "
            f"Make one with jigsaw_permutations(num_tiles={grid * grid}, count=100)."
        )
    return perms.astype(np.int32)


def make_puzzle(
    images,
    grid: int = 3,
    permutations=None,
    tile_size: int | None = None,
    seed=None,
    jitter: bool = True,
    color_jitter: bool = True,
    normalize: bool = True,
    per_channel: bool = True,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Cut images into shuffled jigsaw tiles with the permutation index as label.

    Each image is split into `grid x grid` cells of `H // grid` by `W // grid` pixels (the last
    `H % grid` rows and `W % grid` columns are dropped). From every cell a `tile_size` square tile
    is cut at a random offset inside the cell (`jitter=True`; centred otherwise): the gap between
    tiles keeps the network from matching edges instead of learning content. Then each image gets
    its own random permutation index `labels[i]`, and

        tiles[i, j] = the tile cut from cell permutations[labels[i], j] of image i,

    with cells numbered row-major (cell `c` is at row `c // grid`, column `c % grid`). So
    `tiles[i, np.argsort(permutations[labels[i]])]` puts the tiles back in reading order.

    Args:
        images: `[N, H, W, C]` uint8 images (0-255) or float images in [0, 1].
        grid: tiles per side (>= 2); each cell must be at least `MIN_CELL_SIZE` (4) pixels.
        permutations: `[P, grid * grid]` int array of permutations, the label classes. `None`:
            `jigsaw_permutations(grid * grid, count=min(100, (grid * grid)!))`.
        tile_size: tile side in pixels, at most the cell side. `None`: `round(0.85 * cell)`.
        seed: `None`, a Python int or a `[2]` integer stateless seed.
        jitter: crop each tile at a random offset inside its cell (else at the cell centre).
        color_jitter: against chromatic-aberration shortcuts, shift each colour channel of a tile
            by its own random offset of up to 2 pixels (kept inside the cell) and turn a tile grey
            with probability 0.3 (luma copied to every channel). Does nothing to 1-channel images.
        normalize: give each tile zero mean and unit standard deviation (the network then cannot
            match tiles by their brightness or contrast). `False`: values stay in [0, 1].
        per_channel: with `normalize`, normalise each channel of a tile on its own (this also
            removes a tile's colour cast) rather than the tile as a whole.

    Returns:
        `(tiles, labels)`: `[N, grid * grid, tile_size, tile_size, C]` float32 tiles and the `[N]`
        int32 permutation indices in `0..P-1`.

    Example:
    >>> x = tf.random.uniform([4, 64, 64, 3], maxval=256, dtype=tf.int32)
    >>> tiles, labels = make_puzzle(tf.cast(x, tf.uint8), grid=3, seed=1)
    >>> tiles.shape, labels.shape
    (TensorShape([4, 9, 18, 18, 3]), TensorShape([4]))
    """
    images = _check_images(images, "make_puzzle")
    _check_image_dtype(images.dtype, "make_puzzle")
    height, width, channels = images.shape[1], images.shape[2], images.shape[3]
    if not _is_int(grid) or grid < 2:
        raise KerasSSLError(f"make_puzzle needs an int grid >= 2 (tiles per side), got {grid!r}.")
    cell_h, cell_w = height // grid, width // grid
    if min(cell_h, cell_w) < MIN_CELL_SIZE:
        min_size = grid * MIN_CELL_SIZE
        largest_grid = min(height, width) // MIN_CELL_SIZE
        fix = (
            f"or use grid={largest_grid} or smaller"
            if largest_grid >= 2
            else f"(no grid fits: images need at least {2 * MIN_CELL_SIZE} pixels a side)"
        )
        raise KerasSSLError(
            f"Images of {height}x{width} are too small for a {grid}x{grid} jigsaw grid: each cell "
            f"would be {cell_h}x{cell_w} pixels, and make_puzzle needs at least {MIN_CELL_SIZE} "
            f"pixels per cell side, i.e. images of at least {min_size}x{min_size}. Resize the "
            f"images (e.g. keras.layers.Resizing({min_size}, {min_size})) {fix}."
        )
    cell = min(cell_h, cell_w)
    if tile_size is None:
        tile_size = int(round(_TILE_FRACTION * cell))
    if not _is_int(tile_size) or not 1 <= tile_size <= cell:
        raise KerasSSLError(
            f"make_puzzle: tile_size must be an int from 1 to the cell size {cell} "
            f"({height}x{width} images on a {grid}x{grid} grid give {cell_h}x{cell_w} cells), got "
            f"{tile_size!r}. Leave it None for {int(round(_TILE_FRACTION * cell))} (0.85 of a cell)."
        )
    tile_size = int(tile_size)
    num_tiles = grid * grid
    if permutations is None:
        permutations = jigsaw_permutations(num_tiles, min(100, math.factorial(num_tiles)))
    perms = tf.constant(_check_permutations(permutations, num_tiles, grid))
    num_perms = int(perms.shape[0])

    n = _batch_size(images)
    label_seed, y_seed, x_seed, shift_seed, gray_seed = _split_seed(seed, 5)
    labels = _uniform_int([n], label_seed, 0, num_perms)
    source = tf.gather(perms, labels)  # [N, G]: the cell that position j shows
    slack_h, slack_w = cell_h - tile_size, cell_w - tile_size

    def offsets(s, slack):  # [N, G] offset of each tile inside its cell
        if jitter:
            return _uniform_int([n, num_tiles], s, 0, slack + 1)
        return tf.fill([n, num_tiles], slack // 2)

    off_y, off_x = offsets(y_seed, slack_h), offsets(x_seed, slack_w)
    # Per channel offsets, [N, C, G]: the same for every channel unless colour jitter shifts them.
    off_y = tf.broadcast_to(off_y[:, None, :], [n, channels, num_tiles])
    off_x = tf.broadcast_to(off_x[:, None, :], [n, channels, num_tiles])
    use_color = color_jitter and channels > 1
    if use_color:
        shift = _uniform_int(
            [2, n, channels, num_tiles], shift_seed, -_CHANNEL_SHIFT, _CHANNEL_SHIFT + 1
        )
        # Clipped so that every channel still comes from inside its own cell.
        off_y = tf.clip_by_value(off_y + shift[0], 0, slack_h)
        off_x = tf.clip_by_value(off_x + shift[1], 0, slack_w)

    # Pixel indices of every tile: rows [N, C, G, t] and columns [N, C, G, t].
    steps = tf.range(tile_size, dtype=tf.int32)
    rows = ((source // grid) * cell_h)[:, None, :] + off_y
    cols = ((source % grid) * cell_w)[:, None, :] + off_x
    rows = rows[..., None] + steps
    cols = cols[..., None] + steps
    # Two batched gathers (XLA-friendly, exact, and in the input dtype so uint8 moves 4x fewer
    # bytes): rows first, then each tile row's columns. Channels go in front so that each channel
    # can use its own offsets.
    by_channel = tf.transpose(images, [0, 3, 1, 2])  # [N, C, H, W]
    picked_rows = tf.gather(
        by_channel, tf.reshape(rows, [n, channels, num_tiles * tile_size]), axis=2, batch_dims=2
    )  # [N, C, G*t, W]
    picked_rows = tf.reshape(picked_rows, [n, channels, num_tiles, tile_size, width])
    tiles = tf.gather(picked_rows, cols, axis=4, batch_dims=3)  # [N, C, G, t, t]
    tiles = tf.transpose(tiles, [0, 2, 3, 4, 1])  # [N, G, t, t, C]
    tiles = _to_float_images(tiles)

    if use_color:
        if channels == 3:
            gray = tf.tensordot(tiles, tf.constant(_LUMA, tf.float32), axes=[[4], [0]])[..., None]
        else:
            gray = tf.reduce_mean(tiles, axis=4, keepdims=True)
        to_gray = _uniform_int([n, num_tiles], gray_seed, 0, 2**24) < int(
            _GRAYSCALE_PROBABILITY * 2**24
        )
        tiles = tf.where(
            to_gray[:, :, None, None, None], tf.broadcast_to(gray, tf.shape(tiles)), tiles
        )
    if normalize:
        axes = [2, 3] if per_channel else [2, 3, 4]
        mean, variance = tf.nn.moments(tiles, axes=axes, keepdims=True)
        tiles = (tiles - mean) * tf.math.rsqrt(variance + _NORMALIZE_EPSILON)
    return tiles, labels


# ----- patch masks ----------------------------------------------------------------------------
def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def random_patch_mask(images_or_shape, patch_size, mask_ratio: float, seed=None) -> tf.Tensor:
    """A random mask of square patches per image, the same number of patches in every image.

    As in MAE: each image gets uniform noise per patch, and the `round(mask_ratio * num_patches)`
    patches with the largest noise (`tf.math.top_k`, so exactly that many even with equal noise
    values) are masked. Different images get different patches.

    Args:
        images_or_shape: `[N, H, W, C]` images (only the shape is used; the batch size may be
            dynamic) or a shape tuple `(N, H, W)` / `(N, H, W, C)`.
        patch_size: patch side in pixels (an int), or a `(height, width)` pair; it must divide
            the image height and width.
        mask_ratio: fraction of patches to mask, in (0, 1); rounded to the nearest whole number
            of patches (halves up), which must be at least 1 and less than all of them.
        seed: `None`, a Python int or a `[2]` integer stateless seed.

    Returns:
        A `[N, H, W, 1]` float32 mask, 1.0 where masked and 0.0 where visible.

    Example:
    >>> mask = random_patch_mask((2, 32, 32), patch_size=8, mask_ratio=0.75, seed=0)
    >>> mask.shape, tf.reduce_mean(mask, axis=[1, 2, 3]).numpy().tolist()
    (TensorShape([2, 32, 32, 1]), [0.75, 0.75])
    """
    if isinstance(images_or_shape, (tuple, list, tf.TensorShape)):
        shape = tuple(images_or_shape)
        if len(shape) not in (3, 4) or not all(_is_int(d) and d >= 1 for d in shape):
            raise KerasSSLError(
                f"random_patch_mask takes images or a shape (N, H, W) or (N, H, W, C) of positive "
                f"ints, got {images_or_shape!r}."
            )
        n, height, width = shape[0], shape[1], shape[2]
    else:
        images = _check_images(images_or_shape, "random_patch_mask")
        n, height, width = _batch_size(images), images.shape[1], images.shape[2]
    if _is_int(patch_size):
        patch_h = patch_w = int(patch_size)
    elif (
        isinstance(patch_size, (tuple, list))
        and len(patch_size) == 2
        and all(_is_int(p) for p in patch_size)
    ):
        patch_h, patch_w = (int(p) for p in patch_size)
    else:
        raise KerasSSLError(
            f"random_patch_mask: patch_size must be an int or a (height, width) pair of ints, got "
            f"{patch_size!r}."
        )
    if patch_h < 1 or patch_w < 1 or height % patch_h or width % patch_w:
        if height == width:
            works = f"patch sizes that divide {height}: {_divisors(height)}"
        else:
            common = sorted(set(_divisors(height)) & set(_divisors(width)))
            works = (
                f"square patch sizes that divide both: {common}; or a (height, width) pair with a "
                f"height in {_divisors(height)} and a width in {_divisors(width)}"
            )
        raise KerasSSLError(
            f"random_patch_mask: patch_size {patch_size!r} does not tile {height}x{width} images "
            f"(it must divide the height and the width). Use one of the {works}."
        )
    if not isinstance(mask_ratio, numbers.Real) or not 0.0 < float(mask_ratio) < 1.0:
        raise KerasSSLError(
            f"random_patch_mask: mask_ratio must be a number strictly between 0 and 1 (the "
            f"fraction of patches masked), got {mask_ratio!r}. MAE uses 0.75."
        )
    grid_h, grid_w = height // patch_h, width // patch_w
    num_patches = grid_h * grid_w
    num_masked = int(math.floor(float(mask_ratio) * num_patches + 0.5))
    if not 1 <= num_masked < num_patches:
        raise KerasSSLError(
            f"random_patch_mask: mask_ratio={mask_ratio} of {num_patches} patches "
            f"({grid_h}x{grid_w} patches of {patch_h}x{patch_w}) rounds to {num_masked} masked "
            f"patches; it must mask at least 1 and leave at least 1 visible. Use a ratio between "
            f"{0.5 / num_patches:.3g} and {1 - 0.5 / num_patches:.3g}, or smaller patches."
        )

    noise = _uniform_int([n, num_patches], _seed_tensor(seed), 0, 2**31 - 1)
    # top_k indices are distinct, so the one-hot rows sum to a 0/1 vector with exactly
    # num_masked ones, whatever ties the noise has (a threshold on the values would not).
    masked = tf.math.top_k(noise, k=num_masked).indices
    patch_mask = tf.reduce_sum(tf.one_hot(masked, num_patches, dtype=tf.float32), axis=1)
    # Blow each patch up to patch_h x patch_w pixels by broadcasting (no gather, static shapes).
    patch_mask = tf.reshape(patch_mask, [n, grid_h, 1, grid_w, 1])
    pixels = tf.broadcast_to(patch_mask, [n, grid_h, patch_h, grid_w, patch_w])
    return tf.reshape(pixels, [n, height, width, 1])


# ----- masked tokens --------------------------------------------------------------------------
def mask_tokens(
    token_ids,
    mask_rate: float = 0.15,
    *,
    mask_token_id: int,
    vocab_size: int,
    first_token_id: int = 1,
    seed=None,
) -> tuple[tf.Tensor, tf.Tensor]:
    """BERT's masked-language-model corruption of a batch of token sequences, per sequence.

    Tokens with ids below `first_token_id` are special (padding 0, OOV, the mask token, ...): they
    are never chosen and never drawn as replacements. In each sequence with n ordinary tokens,
    `floor(mask_rate * n + u)` of them (u uniform in [0, 1): the expected count is exactly
    `mask_rate * n`, and it is never off by a whole token) are chosen uniformly at random. Of the
    chosen tokens, 80% become `mask_token_id`, 10% a random ordinary token and 10% stay as they
    are (Devlin et al., 2019); the loss is computed at all of them.

    Args:
        token_ids: `[N, L]` integer token ids, 0 = padding.
        mask_rate: the fraction of ordinary tokens chosen per sequence, in (0, 1); BERT uses 0.15.
        mask_token_id: the id that replaces most chosen tokens (`[MASK]`).
        vocab_size: the number of ids; random replacements are drawn from
            `[first_token_id, vocab_size)`.
        first_token_id: the smallest ordinary (maskable) id, at least 1.
        seed: `None`, a Python int or a `[2]` integer stateless seed.

    Returns:
        `(corrupted_ids, mask)`: the ids to feed the encoder (dtype of `token_ids`), and a
        `[N, L]` float32 mask, 1.0 at the chosen positions (the prediction targets).

    Example:
    >>> ids = tf.constant([[5, 6, 7, 8, 9, 10, 11, 12, 0, 0]])
    >>> corrupted, mask = mask_tokens(ids, 0.5, mask_token_id=2, vocab_size=20, first_token_id=3,
    ...                               seed=0)
    >>> int(tf.reduce_sum(mask)), float(tf.reduce_sum(mask[:, 8:]))
    (4, 0.0)
    """
    token_ids = tf.convert_to_tensor(token_ids)
    if token_ids.shape.rank != 2 or not token_ids.dtype.is_integer:
        raise KerasSSLError(
            f"mask_tokens takes a batch of token ids [N, L] of an integer dtype, got shape "
            f"{token_ids.shape} and dtype {token_ids.dtype.name}. Turn text into ids first (e.g. "
            f"keras_ssl.text.load(...).x_train)."
        )
    if not isinstance(mask_rate, numbers.Real) or not 0.0 < float(mask_rate) < 1.0:
        raise KerasSSLError(
            f"mask_tokens: mask_rate must be a number strictly between 0 and 1 (the fraction of "
            f"tokens to predict), got {mask_rate!r}. BERT uses 0.15."
        )
    for name, value in (
        ("mask_token_id", mask_token_id),
        ("vocab_size", vocab_size),
        ("first_token_id", first_token_id),
    ):
        if not _is_int(value):
            raise KerasSSLError(f"mask_tokens: {name} must be an int, got {value!r}.")
    if not 1 <= first_token_id < vocab_size:
        raise KerasSSLError(
            f"mask_tokens: first_token_id={first_token_id} must be at least 1 (0 is padding) and "
            f"below vocab_size={vocab_size}, so that some ordinary tokens exist."
        )
    if not 0 <= mask_token_id < vocab_size:
        raise KerasSSLError(
            f"mask_tokens: mask_token_id={mask_token_id} is outside the vocabulary [0, {vocab_size})."
        )

    shape = tf.shape(token_ids)
    count_seed, order_seed, action_seed, token_seed = _split_seed(seed, 4)
    eligible = token_ids >= first_token_id
    num_eligible = tf.reduce_sum(tf.cast(eligible, tf.float32), axis=1)
    # Stochastic rounding: exact in expectation for every sequence length (BERT rounds to the
    # nearest count and masks at least one token, which over-masks short sequences).
    fraction = tf.cast(_uniform_int(shape[:1], count_seed, 0, 2**24), tf.float32) / 2.0**24
    num_chosen = tf.floor(float(mask_rate) * num_eligible + fraction)
    # Rank the positions by random keys, special tokens last, and choose the first num_chosen:
    # ranks from a double argsort are a permutation, so ties in the keys cannot change the count.
    keys = tf.where(eligible, _uniform_int(shape, order_seed, 0, 2**30), -1)
    ranks = tf.argsort(tf.argsort(keys, axis=1, direction="DESCENDING"), axis=1)
    chosen = tf.logical_and(eligible, tf.cast(ranks, tf.float32) < num_chosen[:, None])
    action = _uniform_int(shape, action_seed, 0, 10)  # 0-7: [MASK], 8: random token, 9: keep
    random_ids = tf.cast(_uniform_int(shape, token_seed, first_token_id, vocab_size), token_ids.dtype)
    replaced = tf.where(
        action < 8,
        tf.cast(tf.fill(shape, mask_token_id), token_ids.dtype),
        tf.where(action < 9, random_ids, token_ids),
    )
    corrupted = tf.where(chosen, replaced, token_ids)
    return corrupted, tf.cast(chosen, tf.float32)
