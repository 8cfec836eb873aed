"""Random numbers under `tf.distribute`: different on every replica, the same as on one device.

Under `MirroredStrategy` every replica runs the same step with the same seed state, so a layer that
draws `[local_batch, k]` numbers from its `keras.random.SeedGenerator` gives replica 1's images
exactly the crops, flips and colours of replica 0's (measured: two replicas' views of the same
images came out bit-identical). Two remedies, for two kinds of draws:

- `replica_rows(draw, batch)`: per-example parameters. Every replica draws the rows of the whole
  global batch (`batch * replicas` rows, a few numbers each: negligible) and keeps its own slice,
  rows `[replica_id * batch, (replica_id + 1) * batch)`. Replica r's examples are rows of the
  global batch in that order (how `tf.distribute` splits a batch), so each example gets the
  parameters it would get on one device: a distributed step augments exactly like one device on
  the global batch.
- `ReplicaSeedGenerator`: a `SeedGenerator` whose `next()` folds the replica id into the seed, for
  draws that cannot be sliced (pretext puzzles, masks, key shuffles): distinct per replica,
  unchanged on one device. Its `next_shared()` gives every replica the same seed.

Outside a replica context, or with one replica, both return what the plain draw returns, so a
single-device run (and its checkpoints) is unchanged.

>>> import keras, tensorflow as tf
>>> rows = replica_rows(lambda n: keras.random.uniform([n, 2], seed=1), 4)
>>> tuple(rows.shape)
(4, 2)
"""

from __future__ import annotations

import keras
import tensorflow as tf

__all__ = ["ReplicaSeedGenerator", "num_replicas", "replica_id", "replica_rows"]

# Added to the first seed word per replica: any odd constant far from small seeds will do.
_REPLICA_SEED_STRIDE = 1_000_003


def num_replicas() -> int:
    """Replicas in sync in the current replica context (1 without a strategy or across replicas)."""
    context = tf.distribute.get_replica_context()
    return 1 if context is None else int(context.num_replicas_in_sync)


def replica_id():
    """This replica's index in its sync group, as an int32 tensor (0 on one device)."""
    context = tf.distribute.get_replica_context()
    if context is None:
        return tf.constant(0, tf.int32)
    return tf.cast(context.replica_id_in_sync_group, tf.int32)


def replica_rows(draw, batch):
    """This replica's rows of `draw(global_batch)`: per-example random numbers for a local batch.

    Args:
        draw: a function of a row count `n` returning a tensor `[n, ...]` of random numbers.
        batch: the local batch size (a Python int where static; a scalar tensor otherwise).

    Returns:
        `draw(batch)` on one device; under a strategy with R replicas, rows
        `[id * batch, (id + 1) * batch)` of `draw(batch * R)`. With a global batch that the
        replicas share evenly (as `drop_remainder=True` batches of a multiple of R do) this is
        exactly the slice a single device would give this replica's examples.
    """
    replicas = num_replicas()
    if replicas == 1:
        return draw(batch)
    rows = draw(batch * replicas)
    start = replica_id() * tf.cast(batch, tf.int32)
    begin = tf.concat([[start], tf.zeros([rows.shape.rank - 1], tf.int32)], axis=0)
    size = tf.concat([[tf.cast(batch, tf.int32)], -tf.ones([rows.shape.rank - 1], tf.int32)],
                     axis=0)
    local = tf.slice(rows, begin, size)
    if isinstance(batch, int):
        local = tf.ensure_shape(local, [batch, *rows.shape[1:]])
    return local


class ReplicaSeedGenerator(keras.random.SeedGenerator):
    """A `keras.random.SeedGenerator` whose seeds differ between `tf.distribute` replicas.

    On one device (or outside a replica context) it is a plain `SeedGenerator`: same seeds, same
    state, same checkpoints. Under a strategy, `next()` adds `replica_id * 1_000_003` to the first
    word of the seed it returns (the state itself advances as usual), so each replica draws its own
    numbers.

    Example:
    >>> generator = ReplicaSeedGenerator(7)
    >>> keras.ops.convert_to_numpy(generator.next()).tolist()
    [7, 0]
    """

    def next_shared(self, ordered=True):
        """The next seed without the replica offset: the same on every replica, for draws the
        replicas must agree on (a batch-wide crop length) or slice with `replica_rows`."""
        return super().next(ordered=ordered)

    def next(self, ordered=True):
        seed = super().next(ordered=ordered)
        if num_replicas() == 1:
            return seed
        offset = tf.cast(replica_id(), seed.dtype) * _REPLICA_SEED_STRIDE
        return seed + tf.stack([offset, tf.zeros_like(offset)])
