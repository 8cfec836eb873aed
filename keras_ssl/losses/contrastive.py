"""Contrastive losses: SimCLR's NT-Xent, MoCo's InfoNCE with a queue, supervised contrastive."""

from __future__ import annotations

import tensorflow as tf

from keras_ssl.errors import KerasSSLError
from keras_ssl.losses._common import (
    LARGE_NUM,
    accuracy,
    as_embeddings,
    as_labels,
    check_same_shape,
    check_temperature,
    cross_replica_context,
    gather,
    gather_labels,
    normalize,
    safe_mean,
)


def nt_xent(z1, z2, temperature=0.5, return_accuracy: bool = False):
    r"""NT-Xent, the normalized temperature-scaled cross entropy of SimCLR.

    Chen, Kornblith, Norouzi, Hinton, "A Simple Framework for Contrastive Learning of Visual
    Representations", ICML 2020, eq. (1). With the 2N rows of `[z1; z2]` L2-normalised and
    s_ij = z_i . z_j their cosine similarities, the anchor i with positive j (its other view) has

        l(i, j) = -log( exp(s_ij / t) / sum_{k != i} exp(s_ik / t) )

    (1 positive and 2N - 2 negatives in the denominator), and the loss is the mean of l over the
    2N anchors. Under `tf.distribute` with several replicas the other replicas' embeddings are
    gathered (`ReplicaContext.all_gather`, differentiable), so each anchor has
    2 * global_batch - 2 negatives; the value returned is the mean over this replica's anchors.

    Args:
        z1, z2: `[N, D]` projections of the two views; row i of each comes from the same example.
        temperature: t > 0.
        return_accuracy: also return the fraction of anchors whose most similar other sample
            is their positive.

    Returns:
        The scalar float32 loss, or `(loss, accuracy)` when `return_accuracy`.
    """
    check_temperature(temperature)
    z1, z2 = as_embeddings(z1, "z1"), as_embeddings(z2, "z2")
    check_same_shape(z1, z2, "z1 and z2")
    z1, z2 = normalize(z1), normalize(z2)
    temperature = tf.cast(temperature, tf.float32)

    ctx = cross_replica_context()
    (z1_all, z2_all), offset = gather(ctx, [z1, z2])
    local_size, global_size = tf.shape(z1)[0], tf.shape(z1_all)[0]
    positive = offset + tf.range(local_size)  # index of each local row in the gathered rows
    self_mask = tf.one_hot(positive, global_size) * LARGE_NUM

    logits_aa = tf.matmul(z1, z1_all, transpose_b=True) / temperature - self_mask
    logits_bb = tf.matmul(z2, z2_all, transpose_b=True) / temperature - self_mask
    logits_ab = tf.matmul(z1, z2_all, transpose_b=True) / temperature
    logits_ba = tf.matmul(z2, z1_all, transpose_b=True) / temperature
    # Columns: [other view (positive among them) | same view (self masked)].
    logits = tf.concat(
        [tf.concat([logits_ab, logits_aa], axis=1), tf.concat([logits_ba, logits_bb], axis=1)],
        axis=0,
    )
    labels = tf.concat([positive, positive], axis=0)
    loss = safe_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
    if return_accuracy:
        return loss, accuracy(logits, labels)
    return loss


def info_nce(query, key, queue, temperature=0.2, return_accuracy: bool = False):
    r"""InfoNCE with a queue of negatives, as in MoCo.

    He, Fan, Wu, Xie, Girshick, "Momentum Contrast for Unsupervised Visual Representation
    Learning", CVPR 2020, eq. (1) (van den Oord et al. 2018's InfoNCE). With q, k and the K queue
    rows L2-normalised:

        L = -1/N sum_n log( exp(q_n . k_n / t) / (exp(q_n . k_n / t) + sum_j exp(q_n . queue_j / t)) )

    i.e. cross entropy over logits `[N, 1 + K]` whose column 0 is the positive. `key` and `queue`
    get `stop_gradient` (they come from the momentum encoder). The queue is the method's state:
    gathering keys across replicas before enqueueing them is the method's job; this loss is the mean
    over the local queries.

    Args:
        query: `[N, D]` query projections (online encoder).
        key: `[N, D]` positive keys (momentum encoder), row n matching query row n.
        queue: `[K, D]` negative keys.
        temperature: t > 0 (0.07 in MoCo v1, 0.2 in MoCo v2).
        return_accuracy: also return the fraction of queries whose largest logit is the positive.

    Returns:
        The scalar float32 loss, or `(loss, accuracy)` when `return_accuracy`.
    """
    check_temperature(temperature)
    query, key = as_embeddings(query, "query"), as_embeddings(key, "key")
    queue = as_embeddings(queue, "queue")
    check_same_shape(query, key, "query and key")
    if not query.shape[-1:].is_compatible_with(queue.shape[-1:]):
        raise KerasSSLError(
            f"queue rows must have the projection size of the queries ({query.shape[-1]}), got "
            f"queue shape {queue.shape}. Build the queue as [queue_size, projection_dim]."
        )
    temperature = tf.cast(temperature, tf.float32)
    query = normalize(query)
    key = tf.stop_gradient(normalize(key))
    queue = tf.stop_gradient(normalize(queue))
    positive = tf.reduce_sum(query * key, axis=-1, keepdims=True)
    negatives = tf.matmul(query, queue, transpose_b=True)
    logits = tf.concat([positive, negatives], axis=1) / temperature
    labels = tf.zeros(tf.shape(query)[:1], tf.int32)
    loss = safe_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
    if return_accuracy:
        return loss, accuracy(logits, labels)
    return loss


def supcon(z1, z2, labels, temperature=0.1):
    r"""Supervised contrastive loss L^sup_out of Khosla et al.

    Khosla, Teterwak, Wang, Sarna, Tian, Isola, Maschinot, Liu, Krishnan, "Supervised Contrastive
    Learning", NeurIPS 2020, eq. (2). Over the 2N L2-normalised rows of `[z1; z2]` with
    A(i) = all rows but i and P(i) = rows of A(i) with the label of i:

        L = mean over anchors i with |P(i)| > 0 of
            -1/|P(i)| sum_{p in P(i)} log( exp(z_i . z_p / t) / sum_{a in A(i)} exp(z_i . z_a / t) )

    Anchors with no positive are left out of the mean (0 when none is left). With two views every
    anchor has its other view as positive; with all-distinct labels that is its only positive and
    the loss equals `nt_xent` at the same temperature. This is the paper's formula, without the
    `temperature / base_temperature` factor of the authors' code. Under `tf.distribute` the
    embeddings and labels of the other replicas are gathered as in `nt_xent`; the value returned is
    the mean over this replica's anchors.

    Args:
        z1, z2: `[N, D]` projections of two views (`z2=None`: a single view, N anchors).
        labels: `[N]` (or `[N, 1]`) integer class ids.
        temperature: t > 0 (0.1 in the paper).

    Returns:
        The scalar float32 loss.
    """
    check_temperature(temperature)
    views = [as_embeddings(z1, "z1")]
    if z2 is not None:
        views.append(as_embeddings(z2, "z2"))
        check_same_shape(views[0], views[1], "z1 and z2")
    views = [normalize(v) for v in views]
    labels = as_labels(labels, views[0].shape[0])
    temperature = tf.cast(temperature, tf.float32)

    ctx = cross_replica_context()
    gathered, offset = gather(ctx, views)
    labels_all = gather_labels(ctx, labels)
    local_size, global_size = tf.shape(views[0])[0], tf.shape(gathered[0])[0]
    num_views = len(views)

    anchors = tf.concat(views, axis=0)  # [V n, D]
    contrast = tf.concat(gathered, axis=0)  # [V N, D]
    # Where each local anchor sits among the gathered rows (view v's rows start at v * N).
    position = tf.concat(
        [v * global_size + offset + tf.range(local_size) for v in range(num_views)], axis=0
    )
    self_mask = tf.one_hot(position, num_views * global_size)
    logits = tf.matmul(anchors, contrast, transpose_b=True) / temperature - self_mask * LARGE_NUM
    log_prob = logits - tf.reduce_logsumexp(logits, axis=1, keepdims=True)

    anchor_labels = tf.tile(labels, [num_views])
    contrast_labels = tf.tile(labels_all, [num_views])
    same = tf.cast(tf.equal(anchor_labels[:, None], contrast_labels[None, :]), tf.float32)
    positives = same * (1.0 - self_mask)
    num_positives = tf.reduce_sum(positives, axis=1)
    mean_log_prob = tf.math.divide_no_nan(
        tf.reduce_sum(positives * log_prob, axis=1), num_positives
    )
    valid = tf.cast(num_positives > 0, tf.float32)
    return -tf.math.divide_no_nan(tf.reduce_sum(valid * mean_log_prob), tf.reduce_sum(valid))


def nearest_neighbour(z, support):
    """For each row of `z`, the row of `support` with the largest cosine similarity (no gradient).

    Args:
        z: `[N, D]` embeddings.
        support: `[K, D]` support set (NNCLR's queue), its rows L2-normalised or not.

    Returns:
        `[N, D]` L2-normalised rows of `support`.
    """
    z, support = as_embeddings(z, "z"), as_embeddings(support, "support")
    if not z.shape[-1:].is_compatible_with(support.shape[-1:]):
        raise KerasSSLError(
            f"support rows must have the size of the embeddings ({z.shape[-1]}), got support "
            f"shape {support.shape}."
        )
    support = tf.stop_gradient(normalize(support))
    index = tf.argmax(tf.matmul(normalize(z), support, transpose_b=True), axis=-1,
                      output_type=tf.int32)
    return tf.gather(support, index)


def nnclr(neighbours, predictions, temperature=0.1, return_accuracy: bool = False):
    r"""NNCLR's loss for one direction (Dwibedi et al., "With a Little Help from My Friends",
    ICCV 2021, eq. 3 and Algorithm 1).

    With NN(z_i) the nearest neighbour of view 1's projection in the support set and p_k the
    predictions of view 2 (both L2-normalised):

        L = -1/N sum_i log( exp(NN(z_i) . p_i / t) / sum_k exp(NN(z_i) . p_k / t) )

    Only the predictions get gradients (the neighbours come from the support set). Under
    `tf.distribute` the other replicas' predictions are gathered, so k runs over the global batch;
    the value returned is the mean over this replica's anchors. NNCLR averages this over both
    directions: `(nnclr(nn1, p2) + nnclr(nn2, p1)) / 2`.

    Args:
        neighbours: `[N, D]` nearest neighbours of one view's projections.
        predictions: `[N, D]` predictor outputs of the other view.
        temperature: t > 0 (0.1 in the paper).
        return_accuracy: also return the fraction of anchors whose largest logit is the positive.

    Returns:
        The scalar float32 loss, or `(loss, accuracy)` when `return_accuracy`.
    """
    check_temperature(temperature)
    neighbours = tf.stop_gradient(normalize(as_embeddings(neighbours, "neighbours")))
    predictions = normalize(as_embeddings(predictions, "predictions"))
    check_same_shape(neighbours, predictions, "neighbours and predictions")
    (predictions_all,), offset = gather(cross_replica_context(), [predictions])
    logits = tf.matmul(neighbours, predictions_all, transpose_b=True) / tf.cast(temperature,
                                                                                 tf.float32)
    labels = offset + tf.range(tf.shape(neighbours)[0])
    loss = safe_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
    if return_accuracy:
        return loss, accuracy(logits, labels)
    return loss
