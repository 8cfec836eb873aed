"""Learning-rate and momentum schedules whose length can be set after the step is traced."""

from __future__ import annotations

import math

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="keras_ssl")
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """A linear warm-up to `learning_rate` over the first `warmup_fraction` of training, then
    cosine decay to zero at `total_steps`.

    `total_steps` lives in a variable, so it can be set after the training step has been traced:
    `training.plan_budget` times a few real steps first and only then knows how many fit in the
    budget.
    """

    def __init__(self, learning_rate: float, total_steps: int, warmup_fraction: float = 0.05):
        self.learning_rate = float(learning_rate)
        self.warmup_fraction = float(warmup_fraction)
        self.total_steps = tf.Variable(float(max(int(total_steps), 1)), trainable=False,
                                       dtype=tf.float32, name="total_steps")

    def set_total_steps(self, steps: int) -> None:
        self.total_steps.assign(float(max(int(steps), 1)))

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        total = tf.convert_to_tensor(self.total_steps)
        warmup = tf.maximum(1.0, tf.floor(total * self.warmup_fraction))
        warming = self.learning_rate * step / warmup
        progress = tf.clip_by_value((step - warmup) / tf.maximum(total - warmup, 1.0), 0.0, 1.0)
        decaying = self.learning_rate * 0.5 * (1.0 + tf.cos(math.pi * progress))
        return tf.where(step < warmup, warming, decaying)

    def get_config(self):
        return {"learning_rate": self.learning_rate,
                "total_steps": int(self.total_steps.numpy()),
                "warmup_fraction": self.warmup_fraction}


__all__ = ["WarmupCosine"]
