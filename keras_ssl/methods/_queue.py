"""What MoCo and NNCLR share: a FIFO queue of L2-normalised rows kept in model variables.

The queue `[size, dim]` starts as random unit rows (MoCo's initial negatives); each training step
writes the batch's rows, gathered across replicas, over the oldest ones in one scatter inside the
compiled step, wrapping around. Every replica therefore holds the same queue, equal to that of one
device on the global batch. Queue and pointer are non-trainable variables, so checkpoints carry
them.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_ssl.errors import KerasSSLError

__all__ = ["RandomUnitRows", "SupportQueueMixin"]


@keras.saving.register_keras_serializable(package="keras_ssl")
class RandomUnitRows(keras.initializers.Initializer):
    """Gaussian rows scaled to unit L2 norm: a queue's initial content, as in MoCo."""

    def __init__(self, seed=None):
        self.seed = seed

    def __call__(self, shape, dtype=None):
        rows = keras.random.normal(shape, dtype=dtype or "float32", seed=self.seed)
        return rows / keras.ops.norm(rows, axis=-1, keepdims=True)

    def get_config(self):
        return {"seed": self.seed}


class SupportQueueMixin:
    """Mixin for a `SelfSupervisedModel` with a queue: call `add_queue` in `__init__`."""

    def add_queue(self, size: int, dim: int, seed=None) -> None:
        self.queue_size = size
        self.queue = self.add_weight(shape=(size, dim), initializer=RandomUnitRows(seed),
                                     trainable=False, name="queue")
        self.queue_pointer = self.add_weight(shape=(), dtype="int32", initializer="zeros",
                                             trainable=False, name="queue_pointer")

    def _enqueue(self, rows):
        """Write the (globally gathered) rows over the oldest queue rows, wrapping around."""
        context = tf.distribute.get_replica_context()
        if context is not None and context.num_replicas_in_sync > 1:
            rows = context.all_gather(rows, axis=0)
        rows = tf.cast(rows, self.queue.dtype)
        pointer = tf.convert_to_tensor(self.queue_pointer)
        count = tf.shape(rows)[0]
        index = (pointer + tf.range(count)) % self.queue_size
        self.queue.assign(
            tf.tensor_scatter_nd_update(tf.convert_to_tensor(self.queue), index[:, None], rows))
        self.queue_pointer.assign((pointer + count) % self.queue_size)

    def check_queue_holds_the_batch(self, inputs) -> None:
        """Refuse a global batch larger than the queue: each step enqueues all of it."""
        local = inputs.shape[0]
        if local is None:
            return
        context = tf.distribute.get_replica_context()
        replicas = context.num_replicas_in_sync if context is not None else 1
        if local * replicas > self.queue_size:
            raise KerasSSLError(
                f"{type(self).__name__}'s queue_size ({self.queue_size}) is smaller than the "
                f"global batch ({local * replicas} = {local} x {replicas} replica(s)): each step "
                "enqueues the whole batch. Raise queue_size (e.g. 16x the batch) or lower the "
                "batch size."
            )
