"""NNCLR (Dwibedi et al., ICCV 2021): the nearest neighbour from a support queue as the positive.

Differences from the reference (the paper's Algorithm 1; lightly's NNCLR): the projector has 2
layers, not 3, and is 512 wide with a 128-d output; the default queue holds 4096 projections (the
paper's 98,304 would take too long to fill in a short CPU run), starting from random unit vectors
as MoCo's does.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_ssl import augment, heads, losses
from keras_ssl.methods._queue import SupportQueueMixin
from keras_ssl.methods.base import TWO_VIEWS_ON_FEW_SERIES, SelfSupervisedModel
from keras_ssl.methods.byol import two_views
from keras_ssl.methods.registry import register_method
from keras_ssl.validate import check_int


@register_method("nnclr")
@keras.saving.register_keras_serializable(package="keras_ssl")
class NNCLR(SupportQueueMixin, SelfSupervisedModel):
    """NNCLR: contrast each view's neighbour in a support set with the other view's prediction.

    Both views go through the encoder, a projector (z) and a predictor (p). The nearest neighbour
    NN(z1) of view 1's projection in the support queue (cosine similarity) is the anchor; its
    positive is view 2's prediction p2 and the other predictions of the (global) batch are the
    negatives (`losses.nnclr`); symmetrised over the two views. After the loss, view 1's
    L2-normalised projections overwrite the oldest queue rows (gathered across replicas, as
    MoCo's keys). The queue and its pointer are non-trainable variables: checkpoints carry them.

    Args:
        encoder: image, series or vector encoder to pretrain.
        augmenter: view maker; default `augment.simclr(image_size)` (`augment.series()` for series,
            `augment.vectors()` for feature vectors).
        projection_dim: output size of the projector, predictor and queue rows (256 in the paper).
        hidden_dim: hidden size of the projector and predictor (2048 / 4096 in the paper).
        temperature: 0.1 as in the paper.
        queue_size: support set size; at least the global batch.
        seed: seed for the views and the initial queue.
    """

    input_kinds = ("images", "vectors", "series")
    few_series, few_series_evidence, few_series_advice = TWO_VIEWS_ON_FEW_SERIES
    min_batch_size = 2
    short_run_steps = 500
    short_run_evidence = ("in 1- and 3-minute runs on the digits (72 and 192 steps) its encoder "
                          "ended below the random-init one, and 0.2 points above it in 296 steps "
                          "on Fashion-MNIST")
    colour_short_run = (150, "in a 1-minute CIFAR-10 run (66 steps) its encoder ended 1.0 point "
                             "of kNN below the random-init one; 172 steps gained 5.2")

    def __init__(self, encoder, augmenter=None, *, projection_dim=128, hidden_dim=512,
                 temperature=0.1, queue_size=4096, seed=None, **kwargs):
        super().__init__(encoder, augmenter, seed=seed, **kwargs)
        losses.check_temperature(temperature)
        self.projection_dim = check_int(projection_dim, "projection_dim", least=1)
        self.hidden_dim = check_int(hidden_dim, "hidden_dim", least=1)
        self.temperature = temperature
        if self.augmenter is None:
            self.augmenter = self.default_views(augment.simclr, seed)
        self.projector = heads.projection_head(self.feature_dim, projection_dim, hidden_dim)
        self.predictor = heads.projection_head(projection_dim, projection_dim, hidden_dim,
                                               name="prediction_head")
        self.add_queue(check_int(queue_size, "queue_size", least=1), projection_dim, seed)
        self.accuracy_tracker = keras.metrics.Mean(name="contrastive_accuracy")

    def method_metrics(self):
        return [self.accuracy_tracker]

    def compute_ssl_loss(self, inputs, labels, training):
        views = two_views(self, inputs)
        z = self.projector(self.encoder(views, training=training), training=training)
        p = self.predictor(z, training=training)
        z1, z2 = tf.split(z, 2, axis=0)
        p1, p2 = tf.split(p, 2, axis=0)
        queue = tf.convert_to_tensor(self.queue)  # read before the enqueue below
        loss1, accuracy1 = losses.nnclr(losses.nearest_neighbour(z1, queue), p2,
                                        self.temperature, return_accuracy=True)
        loss2, accuracy2 = losses.nnclr(losses.nearest_neighbour(z2, queue), p1,
                                        self.temperature, return_accuracy=True)
        if training:
            self._enqueue(tf.stop_gradient(tf.math.l2_normalize(tf.cast(z1, "float32"), -1)))
        self.accuracy_tracker.update_state((accuracy1 + accuracy2) / 2.0)
        return (loss1 + loss2) / 2.0

    def check_inputs(self, inputs, labels) -> None:
        super().check_inputs(inputs, labels)
        self.check_queue_holds_the_batch(inputs)

    def get_config(self):
        return {
            **super().get_config(),
            "projection_dim": self.projection_dim,
            "hidden_dim": self.hidden_dim,
            "temperature": self.temperature,
            "queue_size": self.queue_size,
        }
