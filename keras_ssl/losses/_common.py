"""What every loss shares: hyper-parameter checks, input conversion, cross-replica gathers."""

from __future__ import annotations

import math

import tensorflow as tf

from keras_ssl.errors import KerasSSLError

TRIPLET_MINING = ("batch_hard", "batch_all", "semi_hard")

# Subtracted from the logit of an anchor with itself: exp() of it is exactly 0 in float32, so it
# takes no probability mass and gets no gradient (google-research/simclr does the same).
LARGE_NUM = 1e9


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
def as_embeddings(z, name: str) -> tf.Tensor:
    z = tf.cast(tf.convert_to_tensor(z), tf.float32)
    if z.shape.rank != 2:
        raise KerasSSLError(
            f"{name} must be a [batch, dim] matrix of embeddings, got shape {z.shape}. "
            "Flatten or pool the features first."
        )
    return z


def normalize(z: tf.Tensor) -> tf.Tensor:
    return tf.math.l2_normalize(z, axis=-1, epsilon=1e-12)


def check_same_shape(a: tf.Tensor, b: tf.Tensor, names: str) -> None:
    if not a.shape.is_compatible_with(b.shape):
        raise KerasSSLError(
            f"{names} must have the same shape, got {a.shape} and {b.shape}. Pass the two views "
            "(or target and prediction) of the same batch."
        )


def as_labels(labels, batch_size, name: str = "labels") -> tf.Tensor:
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


def cross_replica_context():
    """The replica context when running on one of several replicas in sync, else None."""
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync <= 1:
        return None
    return ctx


def gather(ctx, tensors):
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


def gather_labels(ctx, labels):
    if ctx is None:
        return labels
    return ctx.all_gather(tf.stop_gradient(labels), axis=0)


def safe_mean(values: tf.Tensor) -> tf.Tensor:
    """Mean that is 0, not NaN, over an empty tensor."""
    return tf.math.divide_no_nan(tf.reduce_sum(values), tf.cast(tf.size(values), tf.float32))


def accuracy(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    hits = tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32), tf.cast(labels, tf.int32))
    return safe_mean(tf.cast(hits, tf.float32))
