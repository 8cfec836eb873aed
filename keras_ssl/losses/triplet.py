"""The triplet loss with batch-hard, batch-all or semi-hard mining."""

from __future__ import annotations

import tensorflow as tf

from keras_ssl.losses._common import (
    LARGE_NUM,
    as_embeddings,
    as_labels,
    check_margin,
    check_mining,
    normalize,
)


def _pairwise_distances(e: tf.Tensor) -> tf.Tensor:
    """Euclidean distances [B, B], 0 on the diagonal, with finite gradients at distance 0."""
    squared_norms = tf.reduce_sum(tf.square(e), axis=1)
    d2 = squared_norms[:, None] + squared_norms[None, :] - 2.0 * tf.matmul(e, e, transpose_b=True)
    d2 = tf.maximum(d2, 0.0) * (1.0 - tf.eye(tf.shape(e)[0]))
    positive = d2 > 0.0
    # The double where keeps sqrt's infinite slope at 0 out of the gradient.
    return tf.where(positive, tf.sqrt(tf.where(positive, d2, tf.ones_like(d2))), tf.zeros_like(d2))


def triplet_loss(embeddings, labels, margin=0.2, mining: str = "batch_hard"):
    r"""Triplet loss with online mining, on L2-normalised embeddings and Euclidean distances.

    The embeddings are L2-normalised inside and d(a, b) = ||e_a - e_b||_2 (not squared, as in
    Hermans et al.; it lies in [0, 2], so margins are on that scale). For a triplet (anchor a,
    positive p with the label of a, p != a, negative n with another label):

        l(a, p, n) = max(d(a, p) - d(a, n) + margin, 0)

    `mining` picks the triplets:

    - "batch_hard" (Hermans, Beyer, Leibe, "In Defense of the Triplet Loss for Person
      Re-Identification", 2017): per anchor, its farthest positive and nearest negative;
      mean over anchors.
    - "batch_all" (Hermans et al.'s BA != 0): mean of l over all valid triplets whose loss is > 0.
    - "semi_hard" (Schroff, Kalenichenko, Philbin, "FaceNet", CVPR 2015; as
      `tfa.losses.TripletSemiHardLoss`): per positive pair (a, p), the nearest negative farther
      than p, min{d(a, n) : d(a, n) > d(a, p)} (it contributes only when within the margin); when
      every negative is closer than p, the farthest negative of a. Mean over positive pairs.

    Anchors without a positive or without a negative in the batch are ignored; with no valid
    triplet at all the loss is 0 (not NaN). `batch_all` and `semi_hard` build a [B, B, B] tensor.

    Args:
        embeddings: `[B, D]` embeddings.
        labels: `[B]` (or `[B, 1]`) integer class ids.
        margin: margin >= 0.
        mining: one of "batch_hard", "batch_all", "semi_hard".

    Returns:
        The scalar float32 loss.
    """
    check_margin(margin)
    check_mining(mining)
    embeddings = normalize(as_embeddings(embeddings, "embeddings"))
    labels = as_labels(labels, embeddings.shape[0])
    margin = tf.cast(margin, tf.float32)
    distances = _pairwise_distances(embeddings)
    batch_size = tf.shape(embeddings)[0]
    same = tf.equal(labels[:, None], labels[None, :])
    positive_mask = tf.logical_and(same, tf.logical_not(tf.eye(batch_size, dtype=tf.bool)))
    negative_mask = tf.logical_not(same)
    has_negative = tf.reduce_any(negative_mask, axis=1)
    big = tf.fill(tf.shape(distances), LARGE_NUM)
    zero = tf.constant(0.0)

    if mining == "batch_hard":
        hardest_positive = tf.reduce_max(tf.where(positive_mask, distances, 0.0), axis=1)
        hardest_negative = tf.reduce_min(tf.where(negative_mask, distances, big), axis=1)
        valid = tf.logical_and(tf.reduce_any(positive_mask, axis=1), has_negative)
        per_anchor = tf.maximum(hardest_positive - hardest_negative + margin, 0.0)
        return tf.math.divide_no_nan(
            tf.reduce_sum(tf.where(valid, per_anchor, zero)),
            tf.reduce_sum(tf.cast(valid, tf.float32)),
        )

    shape3 = tf.stack([batch_size, batch_size, batch_size])
    d_ap = tf.broadcast_to(distances[:, :, None], shape3)  # [a, p, n]
    d_an = tf.broadcast_to(distances[:, None, :], shape3)
    negative3 = tf.broadcast_to(negative_mask[:, None, :], shape3)

    if mining == "batch_all":
        valid = tf.logical_and(tf.broadcast_to(positive_mask[:, :, None], shape3), negative3)
        losses = tf.where(valid, tf.maximum(d_ap - d_an + margin, 0.0), zero)
        active = tf.reduce_sum(tf.cast(losses > 0.0, tf.float32))
        return tf.math.divide_no_nan(tf.reduce_sum(losses), active)

    # semi_hard
    outside = tf.logical_and(negative3, d_an > d_ap)
    nearest_outside = tf.reduce_min(tf.where(outside, d_an, tf.fill(shape3, LARGE_NUM)), axis=2)
    farthest_negative = tf.reduce_max(tf.where(negative_mask, distances, -big), axis=1)
    negative = tf.where(
        tf.reduce_any(outside, axis=2),
        nearest_outside,
        tf.broadcast_to(farthest_negative[:, None], tf.shape(distances)),
    )
    valid = tf.logical_and(positive_mask, has_negative[:, None])
    per_pair = tf.maximum(distances - negative + margin, 0.0)
    return tf.math.divide_no_nan(
        tf.reduce_sum(tf.where(valid, per_pair, zero)), tf.reduce_sum(tf.cast(valid, tf.float32))
    )
