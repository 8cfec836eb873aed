"""MoCo v2 (He et al. 2020; Chen et al. 2020): a momentum key encoder and a queue of negatives."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from keras_ssl import augment, heads, losses
from keras_ssl.methods._momentum import MomentumTargetMixin, momentum_copy
from keras_ssl.methods._queue import SupportQueueMixin
from keras_ssl.methods.base import TWO_VIEWS_ON_FEW_SERIES, SelfSupervisedModel
from keras_ssl.methods.registry import register_method
from keras_ssl.validate import check_int, check_number

DEFAULT_QUEUE_SIZE = 4096
MIN_QUEUE_SIZE = 256


@register_method("moco")
@keras.saving.register_keras_serializable(package="keras_ssl")
class MoCo(MomentumTargetMixin, SupportQueueMixin, SelfSupervisedModel):
    """MoCo v2: InfoNCE between queries and momentum-encoded keys, against a queue of old keys.

    Each example gets two views. The query encoder (`encoder` + an MLP projection head, trained by
    gradient descent) embeds the first; the key encoder (a copy of both, never given gradients)
    embeds the second. For query q_n the positive is its own key k_n (logit column 0) and the
    negatives are the `queue_size` keys of earlier batches held in `queue`
    (`losses.info_nce`, temperature 0.2 in MoCo v2).

    - **Key encoder.** Made at construction as an exact copy of the encoder and the projection head
      (`keras.models.clone_model` + their weights). Its variables are non-trainable; after every
      optimizer step `after_train_step` moves each of them towards its query counterpart,
      k <- m k + (1 - m) q, for every *trainable* query weight (kernels, biases, BatchNorm gamma
      and beta). The key encoder's BatchNorm moving statistics are not averaged: as in the
      reference implementation (which averages `parameters()`, not buffers), they track the key
      encoder's own activations from its forward passes, which is what its inference mode (used by
      `evaluate`/`test_step`) needs. Call `sync_targets()` after changing the encoder's
      weights by hand. Unlike BYOL's and DINO's targets, m stays constant (as in MoCo v2).
    - **Queue.** `queue` holds `queue_size` L2-normalised keys (random unit vectors at first)
      and `queue_pointer` the oldest row; after the loss of a training batch its keys, gathered
      across replicas, overwrite the oldest rows (`methods._queue`). A queue smaller than the
      global batch is refused before training.
    - **BatchNorm leak.** With BatchNorm, a query and its positive key computed in batches of the
      same images can be matched through the batch statistics instead of their content (MoCo's
      "cheating"; the paper's fix is shuffle-BN across GPUs). Here it is emulated on every device
      as in the MoCo CIFAR-10 demo's SplitBatchNorm: in training, queries are encoded in
      `bn_splits` consecutive sub-batches and keys in `bn_splits` sub-batches of a random
      permutation of the batch (then put back in order), so each sub-batch gets its own
      BatchNorm statistics and a query and its key are normalised with different sets of images.
      Keras' BatchNormalization has no virtual batches, so this is `bn_splits` forward passes of
      `batch / bn_splits` examples each (same arithmetic, and the moving statistics are updated
      once per sub-batch). Under `tf.distribute` it happens inside each replica's batch; keys are
      not shuffled across replicas. `bn_splits=1` turns it off (merely permuting one full batch
      would change nothing: its statistics are the same). After
      `keras_ssl.distribute.sync_batchnorm(model)` each sub-batch's statistics span the replicas
      (the i-th sub-batch of every replica), and the split-and-shuffle still keeps a query and its
      key apart; with `bn_splits=1`, SyncBN would put them back into one batch.

    Args:
        encoder: image, series or vector encoder to pretrain; functional or Sequential (it is
            cloned).
        augmenter: view maker; default `augment.moco_v2(image_size)` (`augment.series()` for series,
            `augment.vectors()` for feature vectors).
        queue_size: number of negative keys K; at least the global batch size.
        momentum: m of the key encoder's moving average, in [0, 1] (0.999 in the paper for
            ImageNet's 5,000 steps per epoch; 0.99 suits short runs).
        temperature: InfoNCE temperature (0.2 in MoCo v2).
        projection_dim: output size of the MLP projection head and of the queue's rows.
        bn_splits: BatchNorm sub-batches per step (see above); the batch must hold at least
            2 examples per split.
        seed: seed for the views, the key shuffle and the initial queue.

    Example:
    >>> import numpy as np, keras_ssl
    >>> encoder = keras_ssl.encoders.ConvNet((32, 32, 1), width=8)
    >>> model = keras_ssl.MoCo(encoder, queue_size=64, projection_dim=16)
    >>> model.compile(optimizer="adam")
    >>> images = np.random.randint(0, 256, (32, 32, 32, 1), dtype="uint8")
    >>> history = model.fit(images, batch_size=16, epochs=1, verbose=0)
    >>> sorted(history.history), int(model.queue_pointer.numpy())
    (['contrastive_accuracy', 'loss'], 32)
    """

    input_kinds = ("images", "vectors", "series")
    few_series, few_series_evidence, few_series_advice = TWO_VIEWS_ON_FEW_SERIES
    min_batch_size = 2
    short_run_steps = 300
    short_run_evidence = ("in 1-minute runs on the digits (115-120 steps) its encoder gained under "
                          "2 points of kNN over the random-init one (5.8 points at 339 steps)")
    colour_short_run = (0, "")  # CIFAR-10, 1 minute: +5.9 points of kNN in 106 steps

    def __init__(self, encoder, augmenter=None, *, projection_dim=128, temperature=0.2,
                 queue_size=DEFAULT_QUEUE_SIZE, momentum=0.99, bn_splits=2, seed=None, **kwargs):
        super().__init__(encoder, augmenter, seed=seed, **kwargs)
        losses.check_temperature(temperature)
        for name, value in (("queue_size", queue_size), ("projection_dim", projection_dim),
                            ("bn_splits", bn_splits)):
            check_int(value, name, least=1)
        check_number(momentum, "momentum", least=0.0, most=1.0,
                     hint="Use e.g. 0.99 (0.999 for long runs): the key encoder follows the "
                     "query encoder slowly.")
        if self.augmenter is None:
            self.augmenter = self.default_views(augment.moco_v2, seed)
        self.momentum = float(momentum)
        self.temperature = temperature
        self.projection_dim = projection_dim
        self.bn_splits = bn_splits
        self.min_batch_size = max(2, 2 * bn_splits)
        self.projector = heads.projection_head(self.feature_dim, projection_dim)
        self.key_encoder = momentum_copy(self.encoder, f"key_{self.encoder.name}")
        self.key_projector = momentum_copy(self.projector, "key_projection_head")
        self.add_queue(queue_size, projection_dim, seed)
        self.accuracy_tracker = keras.metrics.Mean(name="contrastive_accuracy")

    @classmethod
    def from_data(cls, encoder, data, **options):
        """MoCo for `data`, its queue no longer than half the training set (at most 4,096 keys,
        a power of 2): a longer queue holds several keys of the same image, each a negative of its
        own positive, and a short run never replaces the random keys it starts with."""
        if "queue_size" not in options:
            options["queue_size"] = int(min(DEFAULT_QUEUE_SIZE,
                                            max(MIN_QUEUE_SIZE, 2 ** int(np.log2(max(
                                                data.num_train // 2, 1))))))
        return super().from_data(encoder, data, **options)

    def method_metrics(self):
        return [self.accuracy_tracker]

    # ----- the step -----------------------------------------------------------------------------
    def compute_ssl_loss(self, inputs, labels, training):
        """InfoNCE of the batch; in training it also enqueues the batch's keys."""
        # Views are random in evaluation too: the validation loss measures the same task.
        query_view = self.augmenter(inputs, training=True)
        key_view = self.augmenter(inputs, training=True)
        queries = self._encode(self.encoder, self.projector, query_view, training, shuffle=False)
        keys = tf.stop_gradient(
            self._encode(self.key_encoder, self.key_projector, key_view, training, shuffle=True)
        )
        keys = tf.math.l2_normalize(tf.cast(keys, "float32"), axis=-1)
        # Read the queue before the enqueue below overwrites it (ops on one variable run in
        # program order inside a tf.function).
        queue = tf.convert_to_tensor(self.queue)
        loss, accuracy = losses.info_nce(queries, keys, queue, self.temperature,
                                         return_accuracy=True)
        if training:
            self._enqueue(keys)
        self.accuracy_tracker.update_state(accuracy)
        return loss

    # ----- the key encoder: MomentumTargetMixin's EMA, at a constant momentum ------------------
    def _target_pairs(self):
        return [(self.key_encoder, self.encoder), (self.key_projector, self.projector)]

    def current_momentum(self):
        return tf.constant(self.momentum, tf.float32)

    # ----- helpers ------------------------------------------------------------------------------
    def _encode(self, encoder, projector, x, training, shuffle):
        """Projections of `x`; in training, in `bn_splits` BatchNorm sub-batches (see the class)."""
        splits = self.bn_splits if training else 1
        if splits == 1:
            return projector(encoder(x, training=training), training=training)
        batch = tf.shape(x)[0]
        if shuffle:
            order = tf.argsort(keras.random.uniform([batch], seed=self.seed_generator))
            x = tf.gather(x, order)
        static = x.shape[0]
        if static is not None:
            sizes = [(static * (i + 1)) // splits - (static * i) // splits for i in range(splits)]
        else:
            bounds = (batch * tf.range(splits + 1)) // splits
            sizes = bounds[1:] - bounds[:-1]
        parts = tf.split(x, sizes, num=splits)
        z = tf.concat(
            [projector(encoder(part, training=training), training=training) for part in parts],
            axis=0,
        )
        if shuffle:
            z = tf.gather(z, tf.argsort(order))  # undo the permutation: row n is example n again
        return z

    def check_inputs(self, inputs, labels) -> None:
        super().check_inputs(inputs, labels)
        self.check_queue_holds_the_batch(inputs)

    def get_config(self):
        return {
            **super().get_config(),
            "queue_size": self.queue_size,
            "momentum": self.momentum,
            "temperature": self.temperature,
            "projection_dim": self.projection_dim,
            "bn_splits": self.bn_splits,
        }
