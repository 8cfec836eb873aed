"""SimCLR (Chen et al. 2020): two random views per image, agree after a projection head."""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_ssl import augment, heads, losses
from keras_ssl.methods.base import TWO_VIEWS_ON_FEW_SERIES, SelfSupervisedModel
from keras_ssl.methods.registry import register_method


@register_method("simclr")
@keras.saving.register_keras_serializable(package="keras_ssl")
class SimCLR(SelfSupervisedModel):
    """SimCLR: NT-Xent between the projections of two augmented views of each image.

    Every image in a batch of N gets two views from `augmenter`; each of the 2N projections has its
    other view as positive and the 2N - 2 other projections as negatives (gathered across replicas
    under `tf.distribute`, so negatives grow with the global batch).

    Args:
        encoder: image, series or vector encoder to pretrain.
        augmenter: view maker; default `augment.simclr(image_size)` (`augment.series()` for series,
            `augment.vectors()` for feature vectors).
        projection_dim: output size of the MLP projection head.
        temperature: NT-Xent temperature. 0.1 (the paper's ImageNet value) gave the best kNN
            accuracy in short CPU runs on CIFAR-10, ahead of 0.2 and the paper's CIFAR-10 0.5
            (docs/results.md, "How the defaults were chosen").

    Example:
    >>> import keras, numpy as np, keras_ssl
    >>> model = keras_ssl.SimCLR(keras_ssl.encoders.ConvNet((32, 32, 1), width=8))
    >>> model.compile(optimizer="adam")
    >>> images = np.random.randint(0, 256, (16, 32, 32, 1), dtype="uint8")
    >>> history = model.fit(images, batch_size=8, epochs=1, verbose=0)
    >>> sorted(history.history)
    ['contrastive_accuracy', 'loss']
    """

    input_kinds = ("images", "vectors", "series")
    few_series, few_series_evidence, few_series_advice = TWO_VIEWS_ON_FEW_SERIES
    short_run_steps = 150
    short_run_evidence = ("in a 1-minute Fashion-MNIST run (93 steps) its encoder gained 0.9 "
                          "points of kNN over the random-init one (3.8 at 269 steps)")
    short_run_alternative = "autoencoder"
    colour_short_run = (0, "")  # CIFAR-10, 1 minute: +6.3 points of kNN in 68 steps
    min_batch_size = 2

    def __init__(self, encoder, augmenter=None, *, projection_dim=128, temperature=0.1,
                 seed=None, **kwargs):
        super().__init__(encoder, augmenter, seed=seed, **kwargs)
        losses.check_temperature(temperature)
        if self.augmenter is None:
            self.augmenter = self.default_views(augment.simclr, seed)
        self.projection_dim = projection_dim
        self.temperature = temperature
        self.projector = heads.projection_head(self.feature_dim, projection_dim)
        self.accuracy_tracker = keras.metrics.Mean(name="contrastive_accuracy")

    def method_metrics(self):
        return [self.accuracy_tracker]

    def project_views(self, inputs, training):
        """Projections `(z1, z2)` of two random views of every input."""
        # Views are random in evaluation too: the validation loss measures the same task.
        views = tf.concat(
            [self.augmenter(inputs, training=True), self.augmenter(inputs, training=True)], axis=0
        )
        # One pass over both views: batch-norm statistics cover the 2N inputs, as in the paper.
        projections = self.projector(self.encoder(views, training=training), training=training)
        return tf.split(projections, 2, axis=0)

    def contrast(self, z1, z2, labels):
        """NT-Xent: each view's positive is the other view of its input."""
        loss, accuracy = losses.nt_xent(z1, z2, self.temperature, return_accuracy=True)
        self.accuracy_tracker.update_state(accuracy)
        return loss

    def compute_ssl_loss(self, inputs, labels, training):
        z1, z2 = self.project_views(inputs, training)
        return self.contrast(z1, z2, labels)

    def get_config(self):
        return {
            **super().get_config(),
            "projection_dim": self.projection_dim,
            "temperature": self.temperature,
        }
