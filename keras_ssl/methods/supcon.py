"""Supervised contrastive learning (Khosla et al. 2020): same-class examples are positives."""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_ssl import augment, heads, losses
from keras_ssl.methods.base import SelfSupervisedModel
from keras_ssl.methods.registry import register_method


@register_method("supcon")
@keras.saving.register_keras_serializable(package="keras_ssl")
class SupCon(SelfSupervisedModel):
    """SupCon: the L_out loss of Khosla et al. over two views of each labelled example.

    Every example gets two random views; each of the 2N projections has as positives the other
    projections of its class (its own other view included) and as negatives the rest
    (`losses.supcon`; gathered across replicas under `tf.distribute`). It needs labels: fitting
    on inputs alone fails before the first step with a `KerasSSLError`.

    Args:
        encoder: image (or vector) encoder to pretrain.
        augmenter: view maker; default `augment.simclr(image_size)` (or `augment.vectors()`).
        temperature: SupCon temperature (0.1 in the paper).
        projection_dim: output size of the MLP projection head.
        seed: seed for the views.

    Example:
    >>> import numpy as np, keras_ssl
    >>> model = keras_ssl.SupCon(keras_ssl.encoders.ConvNet((32, 32, 1), width=8))
    >>> model.compile(optimizer="adam")
    >>> images = np.random.randint(0, 256, (16, 32, 32, 1), dtype="uint8")
    >>> labels = np.arange(16) % 4
    >>> history = model.fit(images, labels, batch_size=8, epochs=1, verbose=0)
    >>> sorted(history.history)
    ['loss']
    """

    input_kinds = ("images", "vectors")
    needs_labels = True
    min_batch_size = 2

    def __init__(self, encoder, augmenter=None, temperature=0.1, projection_dim=128, seed=None,
                 **kwargs):
        super().__init__(encoder, augmenter, seed=seed, **kwargs)
        losses.check_temperature(temperature)
        if self.augmenter is None:
            self.augmenter = (
                augment.simclr(self.image_size, seed=seed)
                if self.input_kind == "images"
                else augment.vectors(seed=seed)
            )
        self.temperature = temperature
        self.projection_dim = projection_dim
        self.projector = heads.projection_head(self.feature_dim, projection_dim)

    def compute_ssl_loss(self, inputs, labels, training):
        # Views are random in evaluation too: the validation loss measures the same task.
        views = tf.concat(
            [self.augmenter(inputs, training=True), self.augmenter(inputs, training=True)], axis=0
        )
        # One pass over both views: batch-norm statistics cover the 2N inputs.
        projections = self.projector(self.encoder(views, training=training), training=training)
        z1, z2 = tf.split(projections, 2, axis=0)
        return losses.supcon(z1, z2, labels, self.temperature)

    def get_config(self):
        return {
            **super().get_config(),
            "temperature": self.temperature,
            "projection_dim": self.projection_dim,
        }
