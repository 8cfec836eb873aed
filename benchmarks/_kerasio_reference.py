"""keras-io's SimCLR example (semisupervised_simclr.py), re-created as the reference keras_ssl is
measured against: its encoder (4 x Conv2D(128, 3, strides=2) + Dense), projection head, augmenter
(flip, `RandomTranslation` + `RandomZoom` for the random crop, a random colour matrix) and the
contrastive half of its `ContrastiveModel` (temperature 0.1, Adam, batch 525).

`train_step.py --suite references` times its steps; `quality.py --reference kerasio` trains it for
the same minutes as keras_ssl's methods and scores it the same way.
"""

from __future__ import annotations

import math

from _torch_reference import KERAS_IO_WIDTH

import keras  # isort: skip
import tensorflow as tf  # isort: skip

import keras_ssl  # noqa: E402

KERAS_IO_BATCH_SIZE = 525  # the example's batch
KERAS_IO_PARAMETERS = 462_848  # the example's encoder at 32 x 32 x 3
KERAS_IO_MIN_SIZE = 31  # four unpadded 3x3 stride-2 convolutions leave 1 x 1 at 31 px


def kerasio_encoder(input_shape, width=KERAS_IO_WIDTH):
    """keras-io semisupervised_simclr.py's encoder: 4 x Conv2D(width, 3, strides=2) + Dense."""
    layers = keras.layers
    return keras.Sequential(
        [keras.Input(input_shape)]
        + [layers.Conv2D(width, 3, strides=2, activation="relu") for _ in range(4)]
        + [layers.Flatten(), layers.Dense(width, activation="relu")],
        name="kerasio_encoder",
    )


def kerasio_head(width=KERAS_IO_WIDTH):
    layers = keras.layers
    return keras.Sequential([keras.Input((width,)), layers.Dense(width, activation="relu"),
                             layers.Dense(width)], name="projection_head")


class RandomColorAffine(keras.layers.Layer):
    """keras-io's colour jitter: a random per-image 3x3 colour matrix around brightness."""

    def __init__(self, brightness=0.0, jitter=0.0, **kwargs):
        super().__init__(**kwargs)
        self.brightness, self.jitter = brightness, jitter

    def call(self, images, training=True):
        if not training:
            return images
        n = tf.shape(images)[0]
        scale = 1 + tf.random.uniform((n, 1, 1, 1), -self.brightness, self.brightness)
        matrices = tf.random.uniform((n, 1, 3, 3), -self.jitter, self.jitter)
        transform = tf.eye(3, batch_shape=[n, 1]) * scale + matrices
        return tf.clip_by_value(tf.matmul(images, transform), 0, 1)


def kerasio_augmenter(min_area=0.25, brightness=0.6, jitter=0.2):
    zoom = 1.0 - math.sqrt(min_area)
    layers = keras.layers
    return keras.Sequential([
        layers.Rescaling(1 / 255), layers.RandomFlip("horizontal"),
        layers.RandomTranslation(zoom / 2, zoom / 2),
        layers.RandomZoom((-zoom, 0.0), (-zoom, 0.0)), RandomColorAffine(brightness, jitter),
    ])


def kerasio_simclr(input_shape, seed=0):
    """keras_ssl's SimCLR on keras-io's encoder and projection head, at the example's temperature.

    SimCLR makes its head with `heads.projection_head` in its constructor; a head swapped in
    afterwards would leave the unused one's weights among the model's (and Keras warning that
    they get no gradients), so the builder is swapped while the model is made.
    """
    builder = keras_ssl.heads.projection_head
    keras_ssl.heads.projection_head = lambda *args, **kwargs: kerasio_head()
    try:
        return keras_ssl.SimCLR(kerasio_encoder(input_shape), temperature=0.1, seed=seed)
    finally:
        keras_ssl.heads.projection_head = builder


class KerasIOSimCLR(keras.Model):
    """The contrastive half of keras-io's ContrastiveModel (its linear probe left out)."""

    def __init__(self, input_shape, temperature=0.1):
        super().__init__()
        self.temperature = temperature
        self.augmenter = kerasio_augmenter()
        self.encoder = kerasio_encoder(input_shape)
        self.projection_head = kerasio_head()
        self.loss_tracker = keras.metrics.Mean(name="c_loss")

    @property
    def metrics(self):
        return [self.loss_tracker]

    def contrastive_loss(self, p1, p2):
        p1, p2 = tf.math.l2_normalize(p1, axis=1), tf.math.l2_normalize(p2, axis=1)
        similarities = tf.matmul(p1, p2, transpose_b=True) / self.temperature
        labels = tf.range(tf.shape(p1)[0])
        loss_12 = keras.losses.sparse_categorical_crossentropy(labels, similarities,
                                                               from_logits=True)
        loss_21 = keras.losses.sparse_categorical_crossentropy(
            labels, tf.transpose(similarities), from_logits=True)
        return (loss_12 + loss_21) / 2

    def train_step(self, data):
        images, _, _ = keras.utils.unpack_x_y_sample_weight(data)  # a batch, or (x, y, w)
        a1 = self.augmenter(images, training=True)
        a2 = self.augmenter(images, training=True)
        with tf.GradientTape() as tape:
            z1 = self.projection_head(self.encoder(a1, training=True), training=True)
            z2 = self.projection_head(self.encoder(a2, training=True), training=True)
            loss = self.contrastive_loss(z1, z2)
        variables = self.encoder.trainable_weights + self.projection_head.trainable_weights
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        self.loss_tracker.update_state(loss)
        return {"c_loss": self.loss_tracker.result()}
