"""TS2Vec's hierarchical contrastive loss on the per-step features of two overlapping views.

Yue et al., "TS2Vec: Towards Universal Representation of Time Series", AAAI 2022, section 3.2.
Two views of a series share a span of time stamps; their per-step features `z1`, `z2` `[N, T, D]`
(step t of both: the same time stamp of series i) are contrasted two ways at every scale:

- instance-wise: at each step, a series' feature in one view against the same step of every other
  series of the batch, in both views (2N - 2 negatives);
- temporal: within a series, a step's feature in one view against every other step of both views
  (2T - 2 negatives).

Then both views are max-pooled by 2 along the steps and contrasted again, until one step is left
(there, instance-wise only); the loss is the mean over the scales. Similarities are plain dot
products, as in the paper (no normalisation, no temperature).

Fixed shapes for XLA: TS2Vec slices the shared span out of each view, and its length changes from
batch to batch. Here the span is the first `valid_steps` steps of `z1` and `z2` (one count for the
batch, or one per series: series of different lengths share spans of different lengths); later
steps are left out of every term, at every scale, as anchors and as negatives.
"""

from __future__ import annotations

import tensorflow as tf

from keras_ssl.errors import KerasSSLError
from keras_ssl.losses._common import LARGE_NUM, check_same_shape, cross_replica_context, gather

__all__ = ["hierarchical_contrastive", "instance_contrastive", "temporal_contrastive"]


def _as_steps(z, name):
    z = tf.cast(tf.convert_to_tensor(z), tf.float32)
    if z.shape.rank != 3 or z.shape[1] is None:
        raise KerasSSLError(
            f"{name} must hold per-step features [batch, steps, dim] with a known number of "
            f"steps, got shape {z.shape}. Pass the encoder's features before pooling."
        )
    return z


def _cross_entropy(logits, positive, weight, rows):
    """Mean of -log softmax(logits)[positive] over the entries of weight 1 (weights are 0 or 1).

    Over the global batch: under `tf.distribute` a replica of `rows` series divides by its share
    of the rows times the replicas' total weight, so the replicas' losses, each scaled by its share
    of the rows (as Keras scales them), sum to the one-device loss on the global batch, also when
    the replicas hold different numbers of valid steps.
    """
    loss = tf.nn.sparse_softmax_cross_entropy_with_logits(positive, logits)
    total = tf.reduce_sum(weight)
    ctx = cross_replica_context()
    if ctx is not None:
        rows = tf.cast(rows, tf.float32)
        total, all_rows = ctx.all_reduce(tf.distribute.ReduceOp.SUM, [total, rows])
        total *= rows / all_rows
    return tf.math.divide_no_nan(tf.reduce_sum(loss * weight), total)


def instance_contrastive(z1, z2, valid):
    """Instance-wise term: at each step, row i of `z1` against row i of `z2`, the other rows of
    both views (of every replica, gathered) as negatives; `valid` (float `[N, T]`, 1 on the
    shared steps of each series) leaves the other steps out as anchors and as negatives."""
    ctx = cross_replica_context()
    (z1_all, z2_all), offset = gather(ctx, [z1, z2])
    valid_all = valid if ctx is None else ctx.all_gather(valid, axis=0)
    local, total = tf.shape(z1)[0], tf.shape(z1_all)[0]
    # [T, rows, D]: one contrast per step.
    anchors = tf.transpose(tf.concat([z1, z2], axis=0), [1, 0, 2])
    others = tf.transpose(tf.concat([z1_all, z2_all], axis=0), [1, 0, 2])
    logits = tf.matmul(anchors, others, transpose_b=True)  # [T, 2 local, 2 total]
    rows = offset + tf.range(local)
    own = tf.concat([rows, total + rows], axis=0)          # each anchor's own column
    positive = tf.concat([total + rows, rows], axis=0)     # the same series in the other view
    shown = tf.transpose(tf.concat([valid_all, valid_all], axis=0))  # [T, 2 total]
    excluded = tf.one_hot(own, 2 * total)[None] + (1.0 - shown)[:, None, :]
    logits -= LARGE_NUM * tf.minimum(excluded, 1.0)
    positive = tf.broadcast_to(positive[None], tf.shape(logits)[:2])
    weight = tf.transpose(tf.concat([valid, valid], axis=0))  # [T, 2 local]
    return _cross_entropy(logits, positive, weight, local)


def temporal_contrastive(z1, z2, valid):
    """Temporal term: within each series, step t of one view against step t of the other, the
    other shared steps of both views as negatives; `valid` is float `[N, T]` (a series with one
    shared step has no negatives and is left out)."""
    steps = z1.shape[1]
    z = tf.concat([z1, z2], axis=1)                       # [N, 2T, D]
    logits = tf.matmul(z, z, transpose_b=True)            # [N, 2T, 2T]
    valid2 = tf.concat([valid, valid], axis=1)            # [N, 2T]
    excluded = tf.eye(2 * steps)[None] + (1.0 - valid2)[:, None, :]
    logits -= LARGE_NUM * tf.minimum(excluded, 1.0)
    t = tf.range(steps)
    positive = tf.concat([steps + t, t], axis=0)
    positive = tf.broadcast_to(positive[None], tf.shape(logits)[:2])
    several = tf.cast(tf.reduce_sum(valid, axis=1, keepdims=True) > 1, tf.float32)
    return _cross_entropy(logits, positive, valid2 * several, tf.shape(z1)[0])


def _max_pool_pairs(z):
    """Max over pairs of steps (an odd last step is dropped, as torch's max_pool1d does)."""
    half = z.shape[1] // 2
    z = z[:, : 2 * half]
    return tf.reduce_max(tf.reshape(z, [-1, half, 2, z.shape[2]]), axis=2)


def hierarchical_contrastive(z1, z2, valid_steps=None, alpha: float = 0.5):
    """TS2Vec's loss: `alpha` * instance-wise + (1 - alpha) * temporal contrast at every scale.

    Args:
        z1, z2: `[N, T, D]` per-step features of the two views over their shared steps.
        valid_steps: how many leading steps are shared: a scalar for the batch or int `[N]`, one
            per series (tensors allowed; default T).
        alpha: weight of the instance-wise term, in [0, 1].

    Returns:
        The scalar float32 loss (the mean over the scales that hold at least one valid step).

    >>> import numpy as np
    >>> z = np.random.default_rng(0).normal(size=(4, 8, 16)).astype("float32")
    >>> near = float(hierarchical_contrastive(z, z + 0.01))
    >>> far = float(hierarchical_contrastive(z, np.random.default_rng(1).normal(size=z.shape)))
    >>> near < far
    True
    """
    if not 0.0 <= float(alpha) <= 1.0:
        raise KerasSSLError(f"alpha must lie in [0, 1] (the instance-wise weight), got {alpha!r}.")
    z1, z2 = _as_steps(z1, "z1"), _as_steps(z2, "z2")
    check_same_shape(z1, z2, "z1 and z2")
    steps = z1.shape[1]
    valid_steps = tf.cast(steps if valid_steps is None else valid_steps, tf.int32)
    if valid_steps.shape.rank not in (0, 1):
        raise KerasSSLError(
            f"valid_steps must be a count for the batch or one per series [N], got shape "
            f"{valid_steps.shape}."
        )
    valid_steps = tf.broadcast_to(valid_steps, tf.shape(z1)[:1])
    ctx = cross_replica_context()
    total, scales = tf.constant(0.0), tf.constant(0.0)
    while True:
        valid = tf.cast(tf.range(z1.shape[1])[None] < valid_steps[:, None], tf.float32)
        term = alpha * instance_contrastive(z1, z2, valid) if alpha else 0.0
        if alpha < 1 and z1.shape[1] > 1:
            term += (1 - alpha) * temporal_contrastive(z1, z2, valid)
        # A scale counts where some series (on any replica) has a valid step.
        present = tf.reduce_sum(valid)
        if ctx is not None:
            present = ctx.all_reduce(tf.distribute.ReduceOp.SUM, present)
        present = tf.cast(present > 0, tf.float32)
        total += present * term
        scales += present
        if z1.shape[1] == 1:
            break
        z1, z2, valid_steps = _max_pool_pairs(z1), _max_pool_pairs(z2), valid_steps // 2
    return tf.math.divide_no_nan(total, scales)
