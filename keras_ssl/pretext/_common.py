"""What the pretext label makers share: stateless seeds and integer draws that XLA and plain
TensorFlow turn into the same numbers."""

from __future__ import annotations

import tensorflow as tf

from keras_ssl.errors import KerasSSLError
from keras_ssl.validate import is_int

# Only integer draws with an explicit algorithm: XLA and plain TensorFlow then give bitwise the same
# numbers for a seed (measured: float draws, and "auto_select", differ between the two), so a
# compiled train step and an eager check see the same puzzles and masks.
RNG = "philox"


def seed_tensor(seed) -> tf.Tensor:
    """A `[2]` int64 stateless seed from None, a Python int or a `[2]` integer tensor."""
    if seed is None:
        # A stateful draw, so that successive calls differ; XLA compiles it.
        return tf.cast(
            tf.random.uniform([2], minval=-(2**31), maxval=2**31 - 1, dtype=tf.int32), tf.int64
        )
    if is_int(seed):
        return tf.constant([int(seed), 0], dtype=tf.int64)
    seed = tf.convert_to_tensor(seed)
    if not (seed.dtype.is_integer and seed.shape.rank == 1 and seed.shape[0] == 2):
        raise KerasSSLError(
            f"seed must be None, a Python int or a stateless seed of shape [2] and integer dtype "
            f"(e.g. keras.random.SeedGenerator(1).next()), got shape {seed.shape} and dtype "
            f"{seed.dtype.name}."
        )
    return tf.cast(seed, tf.int64)


def split_seed(seed, num: int) -> list[tf.Tensor]:
    """`num` independent stateless seeds from one seed."""
    seeds = tf.random.split(seed_tensor(seed), num, alg=RNG)
    return [seeds[i] for i in range(num)]


def uniform_int(shape, seed, minval: int, maxval: int) -> tf.Tensor:
    """Stateless int32 draws in [minval, maxval), the same under XLA and without it."""
    return tf.random.stateless_uniform(
        shape, seed, minval=minval, maxval=maxval, dtype=tf.int32, alg=RNG
    )


def batch_size(images: tf.Tensor):
    """The static batch size when known, else the dynamic one."""
    n = images.shape[0]
    return n if n is not None else tf.shape(images)[0]
