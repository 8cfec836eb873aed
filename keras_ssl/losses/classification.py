"""Pretext classification (RotNet's rotations, Jigsaw's permutations): cross entropy and accuracy
of predicting which transformation an example went through."""

from __future__ import annotations

import tensorflow as tf

from keras_ssl.losses._common import accuracy, as_labels


def pretext_classification(labels, logits, return_accuracy: bool = False):
    """Mean sparse cross entropy of `logits` `[N, K]` against integer `labels` `[N]`, in float32
    whatever the logits' dtype (float16 under mixed precision).

    Returns:
        The scalar float32 loss, or `(loss, accuracy)` when `return_accuracy`.

    >>> import numpy as np
    >>> loss, acc = pretext_classification([0, 1], np.array([[5.0, 0.0], [0.0, 5.0]]), True)
    >>> round(float(loss), 4), float(acc)
    (0.0067, 1.0)
    """
    logits = tf.cast(tf.convert_to_tensor(logits), tf.float32)
    labels = tf.cast(as_labels(labels, logits.shape[0]), tf.int32)
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
    if not return_accuracy:
        return loss
    return loss, accuracy(logits, labels)
