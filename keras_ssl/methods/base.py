"""`SelfSupervisedModel`: the one training loop every method shares.

A method subclasses it and writes `compute_ssl_loss(inputs, labels, training)`: make its views,
labels or corruptions (in the graph, per example), run the encoder and heads, return the scalar
loss and update its own metrics. The base class owns everything else: unpacking batches, input
checks at trace time, gradients (scaled for `tf.distribute`), the optimizer step, a post-step hook
(MoCo's momentum update), the loss metric, the inference path and what gets exported.
"""

from __future__ import annotations

import warnings

import keras
import tensorflow as tf

from keras_ssl import augment, encoders
from keras_ssl._compat import scale_loss_for_distribution
from keras_ssl.augment import to_float_images
from keras_ssl.distribute import reducible_logs
from keras_ssl.errors import KerasSSLError
from keras_ssl.methods.registry import METHODS
from keras_ssl.replicas import ReplicaSeedGenerator

# Random crops of a few pixels carry no content, and every encoder halves the resolution 3 times.
MIN_IMAGE_SIZE = 8

# (few_series, few_series_evidence, few_series_advice) of the methods that learn from two views
# (docs/series.md, "The two-view methods"): under 40 series none of them held random init's kNN.
TWO_VIEWS_ON_FEW_SERIES = (
    40, "on ArrowHead's 36 series SimCLR, MoCo, BYOL, SimSiam, Barlow Twins, VICReg and NNCLR each "
    "ended 11-17 points of kNN under the random-init encoder, while on GunPoint's 50 most gained "
    "4-6", "keep the random-init encoder (its kNN is printed before training), or pretrain on "
    "more unlabelled series of the kind")


class SelfSupervisedModel(keras.Model):
    """Base class of the self-supervised methods; train it with `compile()` and `fit()`.

    Args:
        encoder: a `keras.Model` from inputs to a `[N, D]` feature vector. This is what gets exported.
        augmenter: a Keras layer making random views in the graph (`None`: the method's default).
        seed: seed for the method's random ops (augmentation, masks, pretext labels).
        probe_classes: number of classes of an online linear probe (None: no probe). When set
            and a batch carries labels (`data.train_dataset(batch_size, labels=True)`), a Dense
            classifier is trained inside `train_step` on the encoder's detached features of the
            un-augmented inputs and reported as `probe_accuracy` (and `val_probe_accuracy` on
            labelled validation data), as keras-io's SimCLR example does. It has its own Adam
            optimizer, never trains the encoder and is not exported; labels must lie in
            [0, probe_classes).
        probe_learning_rate: learning rate of the probe's optimizer.

    Subclasses set:
        input_kinds: the kinds of data the method can learn from ("images", "vectors", "text").
        needs_labels: True when the loss uses class labels (SupCon, triplet).
        encoder_output_rank: 2 for `[N, D]` encoders, 3 for per-position `[N, L, D]` ones.
    """

    input_kinds: tuple[str, ...] = ("images",)
    needs_labels: bool = False
    # 2: the encoder gives one feature vector per example [N, D]; 3: per-position features
    # [N, L, D] of a sequence encoder (the masked language model pools them into [N, D]).
    encoder_output_rank: int = 2

    def __init__(self, encoder: keras.Model, augmenter=None, seed: int | None = None,
                 probe_classes: int | None = None, probe_learning_rate: float = 1e-2, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(encoder, keras.Model):
            raise KerasSSLError(
                f"encoder must be a keras.Model from inputs to feature vectors, got "
                f"{type(encoder).__name__}. Build one with keras_ssl.encoders (e.g. ConvNet(...))."
            )
        rank = self.encoder_output_rank
        if len(encoder.outputs or []) != 1 or len(encoder.output_shape) != rank:
            raise KerasSSLError(
                f"{type(self).__name__}'s encoder must output one "
                f"{'[batch, features]' if rank == 2 else '[batch, length, features]'} tensor, but "
                f"its output shape is {encoder.output_shape}. "
                + (
                    "End it with a pooling or Flatten layer." if rank == 2 else
                    "Return per-position features (e.g. return_sequences=True), not one vector."
                )
            )
        self.encoder = encoder
        if self.input_kind not in self.input_kinds:
            kind = self.input_kind
            others = sorted(name for name, (cls, _) in METHODS.items() if kind in cls.input_kinds)
            raise KerasSSLError(
                f"{type(self).__name__} learns from {' or '.join(self.input_kinds)}, but the "
                f"encoder takes {kind} (input shape {encoder.input_shape}). Build the encoder for "
                f"the data, or choose a method that learns from {kind}: {', '.join(others)}."
            )
        self.augmenter = augmenter
        self.seed = seed
        # Masks, puzzles and shuffles drawn from it differ between tf.distribute replicas.
        self.seed_generator = ReplicaSeedGenerator(seed)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self._init_probe(probe_classes, probe_learning_rate)
        # Every part is built on creation (functional encoder and heads, stateless augmenters),
        # and fit() never calls the model: say so, or save_weights() refuses an "unbuilt" model.
        self.built = True

    # ----- what a method provides -------------------------------------------------------------
    def compute_ssl_loss(self, inputs, labels, training: bool):
        """Return the scalar float32 loss of one batch and update the method's metrics."""
        raise NotImplementedError

    def method_metrics(self) -> list[keras.metrics.Metric]:
        """The method's own metrics besides the loss (e.g. pretext accuracy)."""
        return []

    def after_train_step(self) -> None:
        """Runs after the optimizer step, inside the compiled step (e.g. momentum updates)."""

    # ----- shape facts ------------------------------------------------------------------------
    @property
    def feature_dim(self) -> int:
        return int(self.encoder.output_shape[-1])

    @property
    def input_kind(self) -> str:
        """What the encoder takes: "images" [N, H, W, C], "series" [N, T, F] or "vectors"."""
        return {4: "images", 3: "series"}.get(len(self.encoder.input_shape), "vectors")

    def default_views(self, image_recipe, seed=None):
        """The augmenter of a method given none: `image_recipe(image_size, seed=seed)` for
        images (e.g. `augment.simclr`), `augment.series()` for series, `augment.vectors()` for
        feature vectors."""
        if self.input_kind == "images":
            return image_recipe(self.image_size, seed=seed)
        if self.input_kind == "series":
            return augment.series(seed=seed)
        return augment.vectors(seed=seed)

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(int(d) for d in self.encoder.input_shape[1:3])

    # ----- Keras hooks ------------------------------------------------------------------------
    @property
    def metrics(self):
        # Listing them here makes Keras reset them at each epoch.
        return [self.loss_tracker, *self.method_metrics(), *self.probe_metrics]

    @property
    def embedding_encoder(self) -> keras.Model:
        """The encoder whose features are the method's embeddings (`call`, evaluation, monitors,
        export): `encoder`, or another where the method's paper evaluates another (DINO's
        teacher)."""
        return self.encoder

    def call(self, inputs, training=False):
        """Embeddings of a batch: `embedding_encoder` applied to preprocessed inputs."""
        return self.embedding_encoder(self.preprocess(inputs), training=training)

    def preprocess(self, inputs):
        """Deterministic inference preprocessing: uint8 or [0,1] images to the encoder's size."""
        if self.input_kind != "images":
            return tf.cast(inputs, "float32")
        images = to_float_images(inputs)
        if tuple(images.shape[1:3]) != self.image_size:
            images = tf.image.resize(images, self.image_size)
        return images

    def train_step(self, data):
        inputs, labels = self._unpack(data)
        with tf.GradientTape() as tape:
            loss = self.compute_ssl_loss(inputs, labels, training=True)
            # Each replica's loss is a mean over its own examples: scale so gradients summed
            # across replicas average, then let a LossScaleOptimizer scale for float16.
            scaled = self.optimizer.scale_loss(scale_loss_for_distribution(loss))
        variables = self.optimized_variables()
        gradients = tape.gradient(scaled, variables)
        self.optimizer.apply(gradients, variables)
        self.after_train_step()
        self.train_probe(inputs, labels)
        self.loss_tracker.update_state(loss)
        return self._results(with_probe=labels is not None)

    def optimized_variables(self) -> list:
        """The variables the method's optimizer trains: all trainable ones but the online probe's
        (it has its own optimizer, `train_probe`)."""
        if self.probe is None:
            return self.trainable_variables
        probe_variables = {id(v) for v in self.probe.trainable_variables}
        return [v for v in self.trainable_variables if id(v) not in probe_variables]

    def make_train_function(self, force=False):
        # Without a strategy Keras builds the optimizer inside the first traced step, and
        # tf.function traces a step that creates variables twice (once more without creating
        # them). Built here, the first fit traces the step once.
        if self.optimizer is not None and not self.optimizer.built:
            with self.distribute_strategy.scope():
                self.optimizer.build(self.optimized_variables())
        return super().make_train_function(force)

    def test_step(self, data):
        inputs, labels = self._unpack(data)
        loss = self.compute_ssl_loss(inputs, labels, training=False)
        self.probe_loss(inputs, labels, training=False)
        self.loss_tracker.update_state(loss)
        return self._results(with_probe=labels is not None)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):  # _compat.SYMBOLIC_BUILD
        # Under a strategy, Keras 3.15 all-reduces (MEAN) the first distributed batch only to
        # learn its structure; MultiWorkerMirroredStrategy's collectives have no uint8 kernel, so
        # uint8 images failed there. The first replica's batch has the same shapes and dtypes.
        if iterator is not None and self._distribute_strategy is not None:
            for _, _, batches in iterator:
                data_batch = tf.nest.map_structure(
                    lambda v: self._distribute_strategy.experimental_local_results(v)[0]
                    if isinstance(v, tf.distribute.DistributedValues) else v,
                    next(batches),
                )
                break
            iterator = None
        return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def predict_step(self, data):
        inputs, _ = self._unpack(data)
        return self(inputs, training=False)

    def _results(self, with_probe: bool = True):
        skip = () if with_probe else self.probe_metrics
        logs = {metric.name: metric.result() for metric in self.metrics if metric not in skip}
        # Shaped for Keras' cross-worker reduction under MultiWorkerMirroredStrategy.
        return reducible_logs(logs, self.distribute_strategy)

    # ----- online linear probe ----------------------------------------------------------------
    def _init_probe(self, probe_classes, probe_learning_rate) -> None:
        if probe_classes is not None and (
            isinstance(probe_classes, bool) or not isinstance(probe_classes, int)
            or probe_classes < 2
        ):
            raise KerasSSLError(
                f"probe_classes must be the number of classes (an integer of 2 or more) or None, "
                f"got {probe_classes!r}."
            )
        self.probe_classes = probe_classes
        self.probe_learning_rate = probe_learning_rate
        self.probe = None
        if probe_classes is not None:
            # Batch norm without scale or shift standardises the features, as MAE's linear probe
            # does: raw features share a large common offset that slows a linear classifier
            # down. A fresh encoder's features vary by ~1e-3 (variance ~1e-7): a tiny epsilon,
            # and a moving variance that starts at 0, not 1, so that evaluation (which uses it)
            # is not flattened for hundreds of steps. Built now: variables must exist before fit
            # traces the step.
            self.probe = keras.Sequential(
                [
                    keras.Input((self.feature_dim,)),
                    # Momentum 0.9: the features drift while the encoder trains; the statistics
                    # that evaluation uses must keep up.
                    keras.layers.BatchNormalization(
                        center=False, scale=False, momentum=0.9, epsilon=1e-8,
                        moving_variance_initializer="zeros", name="probe_bn"),
                    keras.layers.Dense(probe_classes, name="probe_logits"),
                ],
                name="linear_probe",
            )
            # A linear classifier learns slowly at the method's learning rate and would starve at
            # the end of its decay; it gets its own constant-rate Adam, as in keras-io's example.
            self.probe_optimizer = keras.optimizers.Adam(probe_learning_rate, name="probe_adam")
            self.probe_optimizer.build(self.probe.trainable_variables)
            self.probe_loss_tracker = keras.metrics.Mean(name="probe_loss")
            self.probe_accuracy = keras.metrics.SparseCategoricalAccuracy(name="probe_accuracy")

    @property
    def probe_metrics(self) -> list[keras.metrics.Metric]:
        if self.probe is None:
            return []
        return [self.probe_loss_tracker, self.probe_accuracy]

    def probe_loss(self, inputs, labels, training: bool = False):
        """Cross-entropy of the online linear probe on this batch (0 without probe or labels).

        The probe reads the encoder's features of the un-augmented inputs in inference mode
        (the encoder's batch-norm statistics untouched) through `stop_gradient`, so it measures
        the representation as it is and its gradient never reaches the encoder.
        """
        if self.probe is None or labels is None:
            return tf.constant(0.0)
        features = tf.stop_gradient(self.call(inputs, training=False))
        logits = tf.cast(self.probe(features, training=training), "float32")
        labels = tf.reshape(tf.cast(labels, "int32"), [-1])
        loss = tf.reduce_mean(
            keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        )
        self.probe_loss_tracker.update_state(loss)
        self.probe_accuracy.update_state(labels, logits)
        return loss

    def train_probe(self, inputs, labels) -> None:
        """One optimizer step of the online linear probe (nothing without a probe or labels)."""
        if self.probe is None or labels is None:
            return
        variables = self.probe.trainable_variables
        with tf.GradientTape() as tape:
            loss = scale_loss_for_distribution(self.probe_loss(inputs, labels, training=True))
        self.probe_optimizer.apply(tape.gradient(loss, variables), variables)

    def _unpack(self, data):
        """Split a batch into (inputs, labels) and check it before the first step runs."""
        if isinstance(data, (tuple, list)):
            if len(data) not in (1, 2, 3):
                raise KerasSSLError(
                    f"A batch must be inputs or (inputs, labels); got a tuple of {len(data)}."
                )
            inputs, labels = data[0], (data[1] if len(data) > 1 else None)
        elif isinstance(data, dict):
            inputs, labels = data.get("image", data.get("images")), data.get("label")
        else:
            inputs, labels = data, None
        self.check_inputs(inputs, labels)
        return inputs, labels

    def check_inputs(self, inputs, labels) -> None:
        """Static checks, run once when the step is traced: fail before training, not during."""
        name = type(self).__name__
        if labels is None and self.needs_labels:
            raise KerasSSLError(
                f"{name} needs class labels: pass a dataset of (inputs, labels), e.g. "
                "data.train_dataset(batch_size, labels=True), or choose a method that needs none."
            )
        expected = self.encoder.input_shape
        shape = tf.TensorShape(inputs.shape)  # NumPy inputs give a tuple
        if self.input_kind == "images":
            dtype = tf.as_dtype(inputs.dtype)
            if dtype != tf.uint8 and not dtype.is_floating:
                raise KerasSSLError(
                    f"{name} takes uint8 images (0-255) or float images in [0, 1], got dtype "
                    f"{dtype.name}. Cast them first: x.astype('uint8') if the values are 0-255."
                )
            if shape.rank != 4:
                raise KerasSSLError(
                    f"{name} takes image batches [N, H, W, C], got shape {shape}. "
                    + (
                        "These look like feature vectors: use an MLP encoder and a method that "
                        "supports vectors." if shape.rank == 2 else "Batch your images first."
                    )
                )
            if None not in shape[1:3] and min(shape[1:3]) < MIN_IMAGE_SIZE:
                raise KerasSSLError(
                    f"Images of {shape[1]}x{shape[2]} px are smaller than the {MIN_IMAGE_SIZE} px "
                    "minimum that crops and encoders need. Upsample them first (e.g. "
                    "data.load(..., image_size=32))."
                )
            if shape[-1] != expected[-1]:
                raise KerasSSLError(
                    f"The encoder takes {expected[-1]}-channel images but the data have {shape[-1]} "
                    "channels. Build the encoder with the data's channel count."
                )
        elif shape.rank != len(expected) or shape[-1] != expected[-1]:
            raise KerasSSLError(
                f"{name}'s encoder takes inputs of shape {expected}, got {shape}."
            )
        if shape[0] is not None and shape[0] < self.min_batch_size:
            raise KerasSSLError(
                f"{name} needs batches of at least {self.min_batch_size} examples, got {shape[0]}. "
                "Raise the batch size."
            )

    min_batch_size: int = 1

    # ----- building from data -----------------------------------------------------------------
    @classmethod
    def from_data(cls, encoder: keras.Model, data, **options) -> SelfSupervisedModel:
        """The method for `encoder` on `data` (a `keras_ssl.data.SSLData`): what
        `keras_ssl.pretrain` builds, with a warning when `data` holds fewer series than the method
        learned from in the measured runs. Methods that need facts of the data (a vocabulary, a
        queue's length) override it, and call it where they take series."""
        if warning := cls.few_series_warning(data):
            warnings.warn(warning, stacklevel=2)
        return cls(encoder, **options)

    # Trained on fewer series than `few_series`, a method warns before training, saying what was
    # measured (`few_series_evidence`, docs/series.md) and what to do instead. The two-view
    # methods set these to `TWO_VIEWS_ON_FEW_SERIES`, the series pretext tasks to their own.
    few_series: int = 0
    few_series_evidence: str = ""
    few_series_advice: str = ""

    @classmethod
    def few_series_warning(cls, data) -> str | None:
        """The warning for `data`, or None when it is not series, holds enough of them, or the
        method has no measurement to warn with."""
        if (data.kind != "series" or data.num_train >= cls.few_series
                or not cls.few_series_evidence):
            return None
        return (f"{cls.__name__} learns little from a few dozen series: "
                f"{cls.few_series_evidence} (docs/series.md). {data.name} has {data.num_train} "
                f"training series, fewer than {cls.few_series}: {cls.few_series_advice}.")

    @staticmethod
    def sample_inputs(data, count: int = 256, seed: int = 0):
        """A seeded sample of at most `count` training inputs of `data`, as an array: what the
        `from_data` checks look at, without reading the whole (maybe streamed) data."""
        count = min(count, data.num_train)
        batch = next(iter(data.train_dataset(count, seed=seed)))
        return batch.numpy() if hasattr(batch, "numpy") else batch

    # Options of the registered encoder this method needs (a causal Transformer for next_token),
    # and the registered encoder it trains when none is named (None: the default for the data).
    encoder_options: dict = {}
    default_encoder: str | None = None

    # Runs planned shorter than `short_run_steps` get a warning before training, saying what
    # was measured (`short_run_evidence`, docs/results.md): BYOL, SimSiam and DINO ended below
    # their random-init encoder in 100-180-step CIFAR-10 runs; NNCLR, VICReg and Barlow Twins
    # gained under 2 points in 70-310-step runs on the digits and Fashion-MNIST, MoCo and the
    # masked autoencoder in 100-300-step runs on the digits; MAE lost 24 points at 249 steps.
    short_run_steps: int = 0
    short_run_evidence: str = ("in 2.5-minute CIFAR-10 runs (100-180 steps) its encoder ended "
                               "below the random-init one")
    # What the warning names instead: the methods that gained in such short runs.
    short_run_alternative: str = "simclr or denoising"
    # Colour images behave otherwise: in CIFAR-10's 1-minute runs (33-172 steps) SimCLR and MoCo
    # gained 6 points of kNN and every autoencoder lost 7-10. `(fewest steps, evidence)` on colour
    # images; None keeps the gray images' threshold (the digits, Fashion-MNIST).
    colour_short_run: tuple[int, str] | None = None
    colour_short_run_alternative: str = "simclr or moco"

    @classmethod
    def short_run(cls, options: dict, colour: bool = False) -> tuple[int, str, str, str]:
        """(fewest steps, name, evidence, alternative) of the short-run warning for the method
        built with `options` on gray or `colour` images (one class stands behind several
        registered names: the autoencoders)."""
        if not colour:
            return (cls.short_run_steps, cls.__name__, cls.short_run_evidence,
                    cls.short_run_alternative)
        fewest, evidence = cls.colour_short_run or (cls.short_run_steps, cls.short_run_evidence)
        return fewest, cls.__name__, evidence, cls.colour_short_run_alternative

    @classmethod
    def short_run_warning(cls, steps: int, options: dict | None = None,
                          colour: bool = False) -> str | None:
        """The warning for a run of `steps` steps on gray or `colour` images, or None when it
        is long enough."""
        fewest, name, evidence, alternative = cls.short_run(options or {}, colour)
        if steps >= fewest:
            return None
        return (f"{name} learns slowly: {evidence} (docs/results.md). This run plans {steps} "
                f"steps, fewer than {fewest}: give it more time, or use {alternative} for a "
                "short run.")

    baseline_label: str = "baseline"

    @classmethod
    def baseline_scores(cls, data) -> dict | None:
        """Held-out scores of a trivial predictor on `data`, printed beside the method's own
        (e.g. always the most frequent token); None when the method has none."""
        return None

    # ----- export -----------------------------------------------------------------------------
    def serving_model(self) -> keras.Model:
        """A functional model from raw inputs (uint8 images / float vectors) to embeddings."""
        return encoders.serving_model(self.embedding_encoder)

    # ----- serialization ----------------------------------------------------------------------
    def get_config(self):
        return {
            "name": self.name,
            "encoder": keras.saving.serialize_keras_object(self.encoder),
            "augmenter": keras.saving.serialize_keras_object(self.augmenter),
            "seed": self.seed,
            "probe_classes": self.probe_classes,
            "probe_learning_rate": self.probe_learning_rate,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["encoder"] = keras.saving.deserialize_keras_object(config["encoder"])
        config["augmenter"] = keras.saving.deserialize_keras_object(config["augmenter"])
        return cls(**config)
