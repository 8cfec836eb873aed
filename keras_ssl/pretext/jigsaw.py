"""Jigsaw puzzles: tiles of every image shuffled by one of a set of far-apart permutations
(Noroozi and Favaro, ECCV 2016)."""

from __future__ import annotations

import functools
import math

import numpy as np
import tensorflow as tf

from keras_ssl.errors import KerasSSLError
from keras_ssl.images import check_image_dtype, check_static_images, grayscale, to_float_images
from keras_ssl.pretext._common import batch_size, split_seed, uniform_int
from keras_ssl.validate import is_int

# A jigsaw cell smaller than this leaves too few pixels for a tile plus a gap.
MIN_CELL_SIZE = 4
# Default tile side as a fraction of the cell side: 64 px tiles in 75 px cells in Noroozi & Favaro.
_TILE_FRACTION = 0.85
# Colour tricks against chromatic-aberration shortcuts (the network could otherwise locate a tile in
# the image from how the colour channels are misaligned by the lens): each colour channel of a tile
# is shifted by up to this many pixels on its own, and a tile turns grey with this probability.
_CHANNEL_SHIFT = 2
_GRAYSCALE_PROBABILITY = 0.3
# Added to a tile's variance before dividing: a flat tile (std far below one grey level, 1/255)
# stays near 0 instead of having its quantisation noise blown up to unit variance.
_NORMALIZE_EPSILON = (1.0 / 255.0) ** 2
# Above this many tiles, jigsaw_permutations picks from this many random permutations instead of
# all num_tiles! of them (10! rows would already take 36 MB and ten times as long).
_MAX_ENUMERATED_TILES = 9
_SAMPLED_CANDIDATES = math.factorial(9)

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
        if not is_int(value):
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
    images = check_static_images(images, "make_puzzle")
    check_image_dtype(images.dtype, "make_puzzle: images")
    height, width, channels = images.shape[1], images.shape[2], images.shape[3]
    if not is_int(grid) or grid < 2:
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
    if not is_int(tile_size) or not 1 <= tile_size <= cell:
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

    n = batch_size(images)
    label_seed, y_seed, x_seed, shift_seed, gray_seed = split_seed(seed, 5)
    labels = uniform_int([n], label_seed, 0, num_perms)
    source = tf.gather(perms, labels)  # [N, G]: the cell that position j shows
    slack_h, slack_w = cell_h - tile_size, cell_w - tile_size

    def offsets(s, slack):  # [N, G] offset of each tile inside its cell
        if jitter:
            return uniform_int([n, num_tiles], s, 0, slack + 1)
        return tf.fill([n, num_tiles], slack // 2)

    off_y, off_x = offsets(y_seed, slack_h), offsets(x_seed, slack_w)
    # Per channel offsets, [N, C, G]: the same for every channel unless colour jitter shifts them.
    off_y = tf.broadcast_to(off_y[:, None, :], [n, channels, num_tiles])
    off_x = tf.broadcast_to(off_x[:, None, :], [n, channels, num_tiles])
    use_color = color_jitter and channels > 1
    if use_color:
        shift = uniform_int(
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
    tiles = to_float_images(tiles)

    if use_color:
        if channels == 3:
            gray = grayscale(tiles)
        else:
            gray = tf.reduce_mean(tiles, axis=4, keepdims=True)
        to_gray = uniform_int([n, num_tiles], gray_seed, 0, 2**24) < int(
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
