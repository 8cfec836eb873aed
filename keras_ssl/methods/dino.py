"""DINO (Caron et al., ICCV 2021): self-distillation with a momentum teacher, no labels.

Differences from the reference (facebookresearch/dino): the head is smaller for CPU runs (512
hidden, 128 bottleneck, 1024 prototypes, not 2048/256/65536); the teacher momentum starts at
0.99 (0.996 in the paper) and the teacher temperature warms up over the first 30% of the steps
(30 of 100 epochs in the paper) rather than a number of epochs; local crops of ViT encoders are
resized up to the global size (a ViT's position embedding is fixed to one patch grid), while
convolutional encoders see them at their own smaller size through a shared-weights copy.
As the reference's evaluation does, the teacher's encoder gives the embeddings (evaluation,
export); `teacher_embeddings=False` gives the student's.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import layers

from keras_ssl import losses
from keras_ssl.augment.multicrop import MultiCrop
from keras_ssl.encoders.shared import shared_weights_at
from keras_ssl.methods._momentum import (
    MomentumTargetMixin,
    check_momentum,
    check_total_steps,
    momentum_copy,
)
from keras_ssl.methods.base import SelfSupervisedModel
from keras_ssl.methods.registry import register_method
from keras_ssl.validate import check_fraction, check_int


@keras.saving.register_keras_serializable(package="keras_ssl")
class L2Normalize(layers.Layer):
    """Rows scaled to unit L2 norm (DINO's head before its last layer)."""

    def call(self, x):
        return tf.math.l2_normalize(x, axis=-1, epsilon=1e-12)

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="keras_ssl")
class NormalizedDense(layers.Layer):
    """A bias-free Dense layer whose kernel columns are scaled to unit norm in every call.

    DINO's last layer: `weight_norm(Linear)` with the magnitude fixed to 1 (`norm_last_layer`).
    """

    def __init__(self, units: int, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(int(input_shape[-1]), self.units),
                                      initializer="glorot_uniform", name="kernel")

    def call(self, x):
        kernel = tf.math.l2_normalize(tf.cast(self.kernel, x.dtype), axis=0, epsilon=1e-12)
        return tf.matmul(x, kernel)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def dino_head(input_dim, output_dim=1024, hidden_dim=512, bottleneck_dim=128, name="dino_head"):
    """DINO's head: 3-layer GELU MLP to a bottleneck, L2 normalisation, a weight-normalised layer."""
    inputs = keras.Input(shape=(int(input_dim),), name="features")
    x = layers.Dense(hidden_dim, activation="gelu", name="dense1")(inputs)
    x = layers.Dense(hidden_dim, activation="gelu", name="dense2")(x)
    x = layers.Dense(bottleneck_dim, name="bottleneck")(x)
    x = L2Normalize(name="l2_normalize")(x)
    return keras.Model(inputs, NormalizedDense(output_dim, name="prototypes")(x), name=name)


@register_method("dino")
@keras.saving.register_keras_serializable(package="keras_ssl")
class DINO(MomentumTargetMixin, SelfSupervisedModel):
    """DINO: a student matches a momentum teacher's centred, sharpened outputs across crops.

    Each image gets 2 global views and `num_local_views` smaller local views (`MultiCrop`). The
    student (encoder + `dino_head`) sees every view; the teacher (EMA copies, `momentum_copy`)
    only the global ones. `losses.dino` is the cross entropy between the teacher's softmax at
    temperature tau_t of (output - center) and the student's log-softmax at 0.1, over every pair
    of a teacher view and a different student view. The center is a non-trainable `[K]` variable
    following the batch mean of the teacher's outputs (all-reduced across replicas) with
    momentum `center_momentum`; tau_t warms up linearly from `warmup_teacher_temperature` to
    `teacher_temperature` over the first `teacher_warmup_fraction` of training, and the teacher's
    EMA momentum follows BYOL's cosine schedule to 1 (both need the number of steps: a
    `training.WarmupCosine` learning-rate schedule's, else `total_steps`; without either tau_t is
    `teacher_temperature` and the momentum stays at `momentum`).

    Local views reach a convolutional encoder at their own size through a shared-weights copy
    (`shared_weights_at`); for a ViT they are resized to the global size (`local_mode`).

    Args:
        encoder: image encoder to pretrain (functional; it is cloned for the teacher).
        augmenter: a `MultiCrop`-like layer returning (global views, local views); default
            `MultiCrop(image_size, num_local_views)`.
        output_dim, hidden_dim, bottleneck_dim: the head's prototypes, MLP width, bottleneck.
        student_temperature: 0.1.
        teacher_temperature, warmup_teacher_temperature: 0.07 after a warm-up from 0.04.
        teacher_warmup_fraction: share of the training steps the warm-up takes (0.3).
        momentum: base teacher momentum.
        center_momentum: 0.9.
        num_local_views: local crops per image (used only by the default augmenter).
        total_steps: steps of the schedules when the optimizer has no `WarmupCosine`.
        teacher_embeddings: whether the teacher's encoder (True, the paper's choice: it is the
            better one throughout training) or the student's gives the embeddings that
            evaluation and export use (`embedding_encoder`).
        seed: seed for the views.
    """

    min_batch_size = 1
    short_run_steps = 1000

    def __init__(self, encoder, augmenter=None, *, output_dim=1024, hidden_dim=512,
                 bottleneck_dim=128, student_temperature=0.1, teacher_temperature=0.07,
                 warmup_teacher_temperature=0.04, teacher_warmup_fraction=0.3, momentum=0.99,
                 center_momentum=0.9, num_local_views=6, total_steps=None,
                 teacher_embeddings=True, seed=None, **kwargs):
        super().__init__(encoder, augmenter, seed=seed, **kwargs)
        self.output_dim = check_int(output_dim, "output_dim", least=1)
        self.hidden_dim = check_int(hidden_dim, "hidden_dim", least=1)
        self.bottleneck_dim = check_int(bottleneck_dim, "bottleneck_dim", least=1)
        for value, name in ((student_temperature, "student_temperature"),
                            (teacher_temperature, "teacher_temperature"),
                            (warmup_teacher_temperature, "warmup_teacher_temperature")):
            losses.check_temperature(value, name)
        self.student_temperature = float(student_temperature)
        self.teacher_temperature = float(teacher_temperature)
        self.warmup_teacher_temperature = float(warmup_teacher_temperature)
        self.teacher_warmup_fraction = (0.0 if teacher_warmup_fraction == 0 else check_fraction(
            teacher_warmup_fraction, "teacher_warmup_fraction"))
        self.momentum = check_momentum(momentum)
        self.center_momentum = check_momentum(center_momentum, "center_momentum")
        self.num_local_views = check_int(num_local_views, "num_local_views", least=0)
        self.total_steps = check_total_steps(total_steps)
        self.teacher_embeddings = bool(teacher_embeddings)
        if self.augmenter is None:
            self.augmenter = MultiCrop(self.image_size, num_local_views, seed=seed)
        self.head = dino_head(self.feature_dim, output_dim, hidden_dim, bottleneck_dim)
        self.teacher_encoder = momentum_copy(self.encoder, f"teacher_{self.encoder.name}")
        self.teacher_head = momentum_copy(self.head, "teacher_dino_head")
        self.center = self.add_weight(shape=(output_dim,), initializer="zeros", trainable=False,
                                      name="center")
        # Built on first use; kept out of Keras' tracking (it shares the encoder's weights).
        object.__setattr__(self, "_local_encoders", {})

    def _target_pairs(self):
        return ((self.teacher_encoder, self.encoder), (self.teacher_head, self.head))

    @property
    def embedding_encoder(self):
        return self.teacher_encoder if self.teacher_embeddings else self.encoder

    def local_encoder(self, size):
        """(model, mode) for local views of `size`: a shared-weights copy, or the encoder after a
        resize to the global size."""
        size = tuple(int(s) for s in size)
        if size == self.image_size:
            return self.encoder, "global"
        if size not in self._local_encoders:
            shared = shared_weights_at(self.encoder, size)
            self._local_encoders[size] = (shared, "shared") if shared is not None else (
                self.encoder, "resize")
        return self._local_encoders[size]

    def teacher_temperature_now(self):
        """tau_t at the optimizer's current step (a float32 tensor)."""
        total = self.schedule_total_steps()
        if total is None or self.teacher_warmup_fraction == 0 or getattr(
                self, "optimizer", None) is None:
            return tf.constant(self.teacher_temperature, tf.float32)
        warmup = tf.maximum(tf.cast(total, tf.float32) * self.teacher_warmup_fraction, 1.0)
        progress = tf.minimum(tf.cast(self.optimizer.iterations, tf.float32) / warmup, 1.0)
        return self.warmup_teacher_temperature + progress * (
            self.teacher_temperature - self.warmup_teacher_temperature)

    def compute_ssl_loss(self, inputs, labels, training):
        global_views, local_views = self.augmenter(inputs, training=True)
        student = [self.head(self.encoder(global_views, training=training), training=training)]
        if local_views is not None:
            model, mode = self.local_encoder(local_views.shape[1:3])
            if mode == "resize":
                local_views = tf.image.resize(local_views, self.image_size)
            student.append(self.head(model(local_views, training=training), training=training))
        teacher = tf.stop_gradient(self.teacher_head(
            self.teacher_encoder(global_views, training=training), training=training))
        teachers = tf.split(teacher, 2, axis=0)
        students = tf.split(student[0], 2, axis=0)
        if len(student) > 1:
            count = getattr(self.augmenter, "num_local", None)
            if count is None:  # another multi-crop layer: count the views from static shapes
                count = student[1].shape[0] // global_views.shape[0] * 2
            students += tf.split(student[1], count, axis=0)
        center = tf.convert_to_tensor(self.center)
        loss = losses.dino(students, teachers, center, self.student_temperature,
                           self.teacher_temperature_now())
        if training:
            m = self.center_momentum
            self.center.assign(m * center + (1.0 - m) * losses.dino_center(teachers))
        return loss

    def get_config(self):
        return {
            **super().get_config(),
            "output_dim": self.output_dim,
            "hidden_dim": self.hidden_dim,
            "bottleneck_dim": self.bottleneck_dim,
            "student_temperature": self.student_temperature,
            "teacher_temperature": self.teacher_temperature,
            "warmup_teacher_temperature": self.warmup_teacher_temperature,
            "teacher_warmup_fraction": self.teacher_warmup_fraction,
            "momentum": self.momentum,
            "center_momentum": self.center_momentum,
            "num_local_views": self.num_local_views,
            "total_steps": self.total_steps,
            "teacher_embeddings": self.teacher_embeddings,
        }

    @classmethod
    def from_config(cls, config):
        # Configs saved before `teacher_embeddings` existed embedded with the student.
        return super().from_config({"teacher_embeddings": False, **config})
