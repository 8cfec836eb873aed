"""Per-row random corruption of feature vectors [N, F]: Gaussian noise and feature masking.

The views for contrastive learning on tabular or embedding data (as in SCARF / VIME): each row
gets its own noise and its own mask.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_ssl.errors import KerasSSLError
from keras_ssl.images import as_tensor as _as_tensor
from keras_ssl.images import dtype_name as _dtype_name
from keras_ssl.replicas import replica_rows


def validate_vectors(x) -> None:
    """Check, on the static shape and dtype, that `x` is a batch of feature vectors [N, F]."""
    shape = tf.TensorShape(x.shape)  # KerasTensor shapes are tuples
    if shape.rank == 1:
        raise KerasSSLError(
            f"got a single vector of shape {tuple(shape)}, but vector augmentation takes a batch "
            "[N, F]. Add a batch axis: features[None] or tf.expand_dims(features, 0)."
        )
    if shape.rank != 2:
        raise KerasSSLError(
            f"feature vectors must be [N, F], got shape {tuple(shape) if shape.rank else shape}. "
            "For images use the image layers (keras_ssl.augment.simclr, ...); otherwise flatten "
            "each example: tf.reshape(x, [tf.shape(x)[0], -1])."
        )
    dtype = tf.as_dtype(x.dtype)
    if not (dtype.is_floating or dtype.is_integer):
        raise KerasSSLError(
            f"feature vectors have dtype {_dtype_name(dtype)}, but vector augmentation takes "
            "numbers (float or int). Encode them as numbers first, e.g. one-hot for categories."
        )


def _per_example(features, draw):
    """`draw(shape)` for the batch; under tf.distribute, this replica's rows of the global one."""
    batch = features.shape[0] if features.shape[0] is not None else tf.shape(features)[0]
    width = features.shape[1] if features.shape[1] is not None else tf.shape(features)[1]
    return replica_rows(lambda n: draw([n, width]), batch)


class _VectorAugmentation(keras.layers.Layer):
    """Shared parts: float32 whatever the dtype policy, seed generator, input checks."""

    def __init__(self, seed: int | None = None, **kwargs):
        kwargs.setdefault("dtype", "float32")
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, features, training=True):
        features = _as_tensor(features)
        validate_vectors(features)
        features = tf.cast(features, tf.float32)
        if not training:
            return features
        return self.corrupt(features)

    def corrupt(self, features: tf.Tensor) -> tf.Tensor:
        raise NotImplementedError

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def compute_output_spec(self, features, training=None):
        validate_vectors(features)
        return keras.KerasTensor(tuple(features.shape), dtype="float32")

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}


@keras.saving.register_keras_serializable(package="keras_ssl")
class FeatureNoise(_VectorAugmentation):
    """Add Gaussian noise N(0, stddev^2) to every feature, drawn independently per element.

    Args:
        stddev: standard deviation of the noise, in the units of the (ideally standardized)
            features.
        seed: integer seed.

    Example:
    >>> import numpy as np
    >>> FeatureNoise(0.1, seed=1)(np.zeros((4, 8), "float32")).shape
    TensorShape([4, 8])
    """

    def __init__(self, stddev: float = 0.1, seed: int | None = None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        if not float(stddev) >= 0.0:
            raise KerasSSLError(f"FeatureNoise stddev must be >= 0, got {stddev!r}.")
        self.stddev = float(stddev)

    def corrupt(self, features):
        if self.stddev == 0.0:
            return features
        noise = _per_example(
            features,
            lambda shape: keras.random.normal(shape, stddev=self.stddev, dtype="float32",
                                              seed=self.seed_generator),
        )
        return features + noise

    def get_config(self):
        return {**super().get_config(), "stddev": self.stddev}


@keras.saving.register_keras_serializable(package="keras_ssl")
class FeatureMask(_VectorAugmentation):
    """Set each feature to 0 with probability `rate`, a new mask per row.

    Unlike `Dropout`, the kept features are not rescaled: this makes a corrupted view of the
    input, not a regularizer of activations.

    Args:
        rate: probability that a feature is masked.
        seed: integer seed.

    Example:
    >>> import numpy as np
    >>> FeatureMask(rate=1.0)(np.ones((2, 3), "float32")).numpy()
    array([[0., 0., 0.],
           [0., 0., 0.]], dtype=float32)
    """

    def __init__(self, rate: float = 0.2, seed: int | None = None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        if not 0.0 <= float(rate) <= 1.0:
            raise KerasSSLError(
                f"FeatureMask rate must be a probability in [0, 1] (the share of features set "
                f"to 0), got {rate!r}."
            )
        self.rate = float(rate)

    def corrupt(self, features):
        if self.rate == 0.0:
            return features
        keep = _per_example(
            features,
            lambda shape: keras.random.uniform(shape, dtype="float32", seed=self.seed_generator),
        ) >= self.rate
        return tf.where(keep, features, tf.zeros_like(features))

    def get_config(self):
        return {**super().get_config(), "rate": self.rate}
