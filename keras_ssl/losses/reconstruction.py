"""Masked modelling: reconstruction of masked pixels or features, and masked-token prediction."""

from __future__ import annotations

import tensorflow as tf

from keras_ssl.errors import KerasSSLError
from keras_ssl.losses._common import (
    check_same_shape,
    safe_mean,
)


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
    check_same_shape(target, prediction, "target and prediction")
    error = tf.square(prediction - target)
    if mask is None:
        return safe_mean(error)
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


def masked_token_loss(labels, logits, mask, return_accuracy: bool = False):
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
        The scalar float32 loss, or `(loss, accuracy)` when `return_accuracy`.
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
    if not return_accuracy:
        return loss
    return loss, tf.math.divide_no_nan(tf.reduce_sum(hits * mask), total)
