"""Self-supervised losses: plain functions of tensors, computed in float32, cross-replica aware.

Every function casts its inputs to float32 and returns a scalar float32 loss (some also return an
accuracy). They only use ops with static shapes, so they compile under XLA (`jit_compile=True`).

Contrastive losses whose negatives come from the batch (`nt_xent`, `supcon`) gather the other
replicas' embeddings when they run inside a `tf.distribute` replica context with more than one
replica, so every anchor sees the negatives of the *global* batch, as in google-research/simclr
(`tf2/objective.py`). The gather is differentiable: its gradient sums the contributions of every
replica's loss. The loss returned on each replica is the mean over its *local* anchors, so, with
equal per-replica batches, the mean of the replicas' losses equals the loss of one device on the
global batch, and the gradients summed across replicas of `loss / num_replicas` (what
`SelfSupervisedModel.train_step` applies) equal that device's gradients.

| function | paper | returns |
| --- | --- | --- |
| `nt_xent(z1, z2, temperature)` | SimCLR, Chen et al. 2020 | loss [, accuracy] |
| `info_nce(query, key, queue, temperature)` | MoCo, He et al. 2020 | loss [, accuracy] |
| `supcon(z1, z2, labels, temperature)` | SupCon, Khosla et al. 2020 | loss |
| `triplet_loss(embeddings, labels, margin, mining)` | Hermans et al. 2017; FaceNet, Schroff et al. 2015 | loss |
| `masked_reconstruction(target, prediction, mask)` | MAE, He et al. 2022 | loss |
| `masked_token_loss(labels, logits, mask)` | BERT, Devlin et al. 2019 | (loss, accuracy) |

>>> import numpy as np
>>> from keras_ssl import losses
>>> z1 = np.random.default_rng(0).normal(size=(8, 16)).astype("float32")
>>> z2 = z1 + 0.1 * np.random.default_rng(1).normal(size=(8, 16)).astype("float32")
>>> loss, accuracy = losses.nt_xent(z1, z2, temperature=0.5, return_accuracy=True)
>>> float(accuracy)
1.0
"""

from __future__ import annotations

import math

import tensorflow as tf

from keras_ssl.errors import KerasSSLError

__all__ = [
    "TRIPLET_MINING",
    "check_margin",
    "check_mining",
    "check_temperature",
    "info_nce",
    "masked_reconstruction",
    "masked_token_loss",
    "nt_xent",
    "supcon",
    "triplet_loss",
]

TRIPLET_MINING = ("batch_hard", "batch_all", "semi_hard")

# Subtracted from the logit of an anchor with itself: exp() of it is exactly 0 in float32, so it
# takes no probability mass and gets no gradient (google-research/simclr does the same).
_LARGE_NUM = 1e9


# ----- hyper-parameter checks ---------------------------------------------------------------------
def _static_number(value, name: str, hint: str):
    """`value` as a Python float; None for a symbolic tensor (unknown until the graph runs)."""
    if value is None or isinstance(value, (bool, str, bytes)):
        raise KerasSSLError(f"{name} must be a number, got {value!r}. {hint}")
    try:
        return float(value)
    except (TypeError, ValueError):
        if tf.is_tensor(value) or isinstance(value, tf.Variable) or hasattr(value, "dtype"):
            return None
        raise KerasSSLError(
            f"{name} must be a number, got {value!r} ({type(value).__name__}). {hint}"
        ) from None


def check_temperature(temperature, name: str = "temperature") -> None:
    """Raise `KerasSSLError` unless `temperature` is a finite number > 0.

    Symbolic tensors (a learned temperature inside a traced graph) cannot be checked and pass.
    """
    hint = (
        f"Use e.g. {name}=0.5 for SimCLR on small batches, 0.1-0.2 for MoCo, SupCon or large "
        "batches."
    )
    value = _static_number(temperature, name, hint)
    if value is not None and not (math.isfinite(value) and value > 0):
        raise KerasSSLError(
            f"{name} must be a finite number > 0 (it divides the similarities), got "
            f"{temperature!r}. {hint}"
        )


def check_margin(margin) -> None:
    """Raise `KerasSSLError` unless `margin` is a finite number >= 0."""
    hint = (
        "The triplet loss works on L2-normalised embeddings (distances in [0, 2]): use e.g. "
        "margin=0.2."
    )
    value = _static_number(margin, "margin", hint)
    if value is not None and not (math.isfinite(value) and value >= 0):
        raise KerasSSLError(f"margin must be a finite number >= 0, got {margin!r}. {hint}")


def check_mining(mining) -> None:
    """Raise `KerasSSLError` unless `mining` is one of `TRIPLET_MINING`."""
    if mining not in TRIPLET_MINING:
        raise KerasSSLError(
            f"Unknown triplet mining {mining!r}. Use one of {', '.join(TRIPLET_MINING)} "
            "(batch_hard is the usual choice)."
        )


# ----- shared helpers -----------------------------------------------------------------------------
def _as_embeddings(z, name: str) -> tf.Tensor:
    z = tf.cast(tf.convert_to_tensor(z), tf.float32)
    if z.shape.rank != 2:
        raise KerasSSLError(
            f"{name} must be a [batch, dim] matrix of embeddings, got shape {z.shape}. "
            "Flatten or pool the features first."
        )
    return z


def _normalize(z: tf.Tensor) -> tf.Tensor:
    return tf.math.l2_normalize(z, axis=-1, epsilon=1e-12)


def _check_same_shape(a: tf.Tensor, b: tf.Tensor, names: str) -> None:
    if not a.shape.is_compatible_with(b.shape):
        raise KerasSSLError(
            f"{names} must have the same shape, got {a.shape} and {b.shape}. Pass the two views "
            "(or target and prediction) of the same batch."
        )


def _as_labels(labels, batch_size, name: str = "labels") -> tf.Tensor:
    labels = tf.convert_to_tensor(labels)
    if labels.shape.rank == 2 and labels.shape[-1] == 1:
        labels = labels[:, 0]
    if labels.shape.rank != 1:
        raise KerasSSLError(
            f"{name} must be a vector of integer class ids [batch] (or [batch, 1]), got shape "
            f"{labels.shape}. For one-hot labels pass tf.argmax(labels, axis=-1)."
        )
    if batch_size is not None and labels.shape[0] is not None and labels.shape[0] != batch_size:
        raise KerasSSLError(
            f"{name} has {labels.shape[0]} entries but the embeddings have {batch_size} rows: "
            "pass one label per example."
        )
    return labels


def _cross_replica_context():
    """The replica context when running on one of several replicas in sync, else None."""
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync <= 1:
        return None
    return ctx


def _gather(ctx, tensors):
    """All-gather `tensors` along axis 0 across replicas (differentiably).

    Returns the gathered tensors and the row offset of this replica's rows in them. The offset is
    computed from the gathered batch sizes, so uneven per-replica batches (the last batch of a
    distributed dataset) are handled.
    """
    if ctx is None:
        return list(tensors), tf.constant(0, tf.int32)
    gathered = ctx.all_gather(list(tensors), axis=0)
    sizes = ctx.all_gather(tf.shape(tensors[0], out_type=tf.int32)[:1], axis=0)
    replica_id = tf.cast(ctx.replica_id_in_sync_group, tf.int32)
    before = tf.range(tf.shape(sizes)[0]) < replica_id
    offset = tf.reduce_sum(tf.where(before, sizes, tf.zeros_like(sizes)))
    return list(gathered), offset


def _gather_labels(ctx, labels):
    if ctx is None:
        return labels
    return ctx.all_gather(tf.stop_gradient(labels), axis=0)


def _safe_mean(values: tf.Tensor) -> tf.Tensor:
    """Mean that is 0, not NaN, over an empty tensor."""
    return tf.math.divide_no_nan(tf.reduce_sum(values), tf.cast(tf.size(values), tf.float32))


def _accuracy(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    hits = tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32), tf.cast(labels, tf.int32))
    return _safe_mean(tf.cast(hits, tf.float32))


# ----- contrastive losses -------------------------------------------------------------------------
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
    z1, z2 = _as_embeddings(z1, "z1"), _as_embeddings(z2, "z2")
    _check_same_shape(z1, z2, "z1 and z2")
    z1, z2 = _normalize(z1), _normalize(z2)
    temperature = tf.cast(temperature, tf.float32)

    ctx = _cross_replica_context()
    (z1_all, z2_all), offset = _gather(ctx, [z1, z2])
    local_size, global_size = tf.shape(z1)[0], tf.shape(z1_all)[0]
    positive = offset + tf.range(local_size)  # index of each local row in the gathered rows
    self_mask = tf.one_hot(positive, global_size) * _LARGE_NUM

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
    loss = _safe_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
    if return_accuracy:
        return loss, _accuracy(logits, labels)
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
    query, key = _as_embeddings(query, "query"), _as_embeddings(key, "key")
    queue = _as_embeddings(queue, "queue")
    _check_same_shape(query, key, "query and key")
    if not query.shape[-1:].is_compatible_with(queue.shape[-1:]):
        raise KerasSSLError(
            f"queue rows must have the projection size of the queries ({query.shape[-1]}), got "
            f"queue shape {queue.shape}. Build the queue as [queue_size, projection_dim]."
        )
    temperature = tf.cast(temperature, tf.float32)
    query = _normalize(query)
    key = tf.stop_gradient(_normalize(key))
    queue = tf.stop_gradient(_normalize(queue))
    positive = tf.reduce_sum(query * key, axis=-1, keepdims=True)
    negatives = tf.matmul(query, queue, transpose_b=True)
    logits = tf.concat([positive, negatives], axis=1) / temperature
    labels = tf.zeros(tf.shape(query)[:1], tf.int32)
    loss = _safe_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
    if return_accuracy:
        return loss, _accuracy(logits, labels)
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
    views = [_as_embeddings(z1, "z1")]
    if z2 is not None:
        views.append(_as_embeddings(z2, "z2"))
        _check_same_shape(views[0], views[1], "z1 and z2")
    views = [_normalize(v) for v in views]
    labels = _as_labels(labels, views[0].shape[0])
    temperature = tf.cast(temperature, tf.float32)

    ctx = _cross_replica_context()
    gathered, offset = _gather(ctx, views)
    labels_all = _gather_labels(ctx, labels)
    local_size, global_size = tf.shape(views[0])[0], tf.shape(gathered[0])[0]
    num_views = len(views)

    anchors = tf.concat(views, axis=0)  # [V n, D]
    contrast = tf.concat(gathered, axis=0)  # [V N, D]
    # Where each local anchor sits among the gathered rows (view v's rows start at v * N).
    position = tf.concat(
        [v * global_size + offset + tf.range(local_size) for v in range(num_views)], axis=0
    )
    self_mask = tf.one_hot(position, num_views * global_size)
    logits = tf.matmul(anchors, contrast, transpose_b=True) / temperature - self_mask * _LARGE_NUM
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


# ----- metric learning ----------------------------------------------------------------------------
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
    embeddings = _normalize(_as_embeddings(embeddings, "embeddings"))
    labels = _as_labels(labels, embeddings.shape[0])
    margin = tf.cast(margin, tf.float32)
    distances = _pairwise_distances(embeddings)
    batch_size = tf.shape(embeddings)[0]
    same = tf.equal(labels[:, None], labels[None, :])
    positive_mask = tf.logical_and(same, tf.logical_not(tf.eye(batch_size, dtype=tf.bool)))
    negative_mask = tf.logical_not(same)
    has_negative = tf.reduce_any(negative_mask, axis=1)
    big = tf.fill(tf.shape(distances), _LARGE_NUM)
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
    nearest_outside = tf.reduce_min(tf.where(outside, d_an, tf.fill(shape3, _LARGE_NUM)), axis=2)
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


# ----- masked modelling ---------------------------------------------------------------------------
def masked_reconstruction(target, prediction, mask=None):
    r"""Mean squared reconstruction error, over the masked elements only when a mask is given.

    As in MAE (He, Chen, Xie, Li, Dollar, Girshick, "Masked Autoencoders Are Scalable Vision
    Learners", CVPR 2022), which scores only the masked patches:

        L = sum(m * (prediction - target)^2) / sum(m)     (m broadcast to the target's shape)

    and, without a mask, the plain mean of (prediction - target)^2. Unmasked elements get exactly
    zero gradient; an all-zero mask gives a loss of 0 (not NaN). Fractional mask values act as
    weights. Gradients flow into both arguments: stop them on the target yourself when it comes
    from a network (a momentum teacher, say).

    Args:
        target: the clean inputs, any shape.
        prediction: the reconstruction, same shape as `target`.
        mask: `None`, or 1 where masked / 0 where visible, of the target's shape or with size-1
            axes that broadcast to it (e.g. `[N, H, W, 1]` for images `[N, H, W, C]`).

    Returns:
        The scalar float32 loss.
    """
    target = tf.cast(tf.convert_to_tensor(target), tf.float32)
    prediction = tf.cast(tf.convert_to_tensor(prediction), tf.float32)
    _check_same_shape(target, prediction, "target and prediction")
    error = tf.square(prediction - target)
    if mask is None:
        return _safe_mean(error)
    mask = tf.cast(tf.convert_to_tensor(mask), tf.float32)
    broadcastable = True
    if mask.shape.rank is not None and error.shape.rank is not None:
        broadcastable = mask.shape.rank == error.shape.rank and all(
            m is None or e is None or m in (1, e)
            for m, e in zip(mask.shape, error.shape, strict=True)
        )
    if not broadcastable:
        raise KerasSSLError(
            f"mask must have the target's shape {error.shape} or size-1 axes that broadcast to it "
            f"(e.g. [..., 1]), got {mask.shape}. Add a trailing axis with mask[..., None]."
        )
    mask = tf.broadcast_to(mask, tf.shape(error))
    return tf.math.divide_no_nan(tf.reduce_sum(error * mask), tf.reduce_sum(mask))


def masked_token_loss(labels, logits, mask):
    r"""Sparse categorical cross entropy and accuracy over the masked tokens of a masked LM.

    As BERT's masked-language-model objective (Devlin, Chang, Lee, Toutanova, NAACL 2019), with m
    the mask (1 = a masked token whose id must be predicted):

        loss = sum(m * CE(labels, softmax(logits))) / sum(m)
        accuracy = sum(m * [argmax(logits) == labels]) / sum(m)

    Both are 0 (not NaN) when nothing is masked. Labels at unmasked positions are ignored, so they
    may hold any filler (e.g. -100 or padding ids).

    Args:
        labels: `[N, L]` integer token ids (any leading shape).
        logits: `[N, L, V]` unnormalised scores over the vocabulary.
        mask: `[N, L]`, 1 where the token was masked.

    Returns:
        `(loss, accuracy)`, scalar float32 tensors.
    """
    labels = tf.convert_to_tensor(labels)
    logits = tf.cast(tf.convert_to_tensor(logits), tf.float32)
    mask = tf.cast(tf.convert_to_tensor(mask), tf.float32)
    if logits.shape.rank is not None and not labels.shape.is_compatible_with(logits.shape[:-1]):
        raise KerasSSLError(
            f"labels {labels.shape} must have the shape of logits {logits.shape} without its last "
            "(vocabulary) axis: pass integer token ids, not one-hot vectors."
        )
    if not mask.shape.is_compatible_with(labels.shape):
        raise KerasSSLError(
            f"mask {mask.shape} must have the shape of labels {labels.shape} (1 = masked token)."
        )
    labels = tf.where(mask > 0, tf.cast(labels, tf.int32), tf.zeros_like(labels, tf.int32))
    cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
    hits = tf.cast(tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32), labels), tf.float32)
    total = tf.reduce_sum(mask)
    loss = tf.math.divide_no_nan(tf.reduce_sum(cross_entropy * mask), total)
    accuracy = tf.math.divide_no_nan(tf.reduce_sum(hits * mask), total)
    return loss, accuracy
