"""Optimizer defaults shared by the CLI, the examples and the benchmarks, and training to a
wall-clock budget ("train for 10 minutes") instead of a number of epochs."""

from __future__ import annotations

import math
import time

import keras
import tensorflow as tf

from keras_ssl.errors import KerasSSLError


@keras.saving.register_keras_serializable(package="keras_ssl")
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """A linear warm-up to `learning_rate` over the first `warmup_fraction` of training, then
    cosine decay to zero at `total_steps`.

    `total_steps` lives in a variable, so it can be set after the training step has been traced:
    `fit_within` times a few real steps first and only then knows how many fit in the budget.
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


def default_optimizer(learning_rate: float = 2e-3, total_steps: int = 1000,
                      weight_decay: float = 1e-4, warmup_fraction: float = 0.05):
    """AdamW with a linear warm-up to `learning_rate`, then cosine decay to zero.

    Contrastive losses are unstable in the first steps with a large learning rate; the warm-up
    (5% of training) avoids that, and cosine decay is what SimCLR, MoCo v2 and most of their
    re-implementations use.
    """
    schedule = WarmupCosine(learning_rate, total_steps, warmup_fraction)
    return keras.optimizers.AdamW(learning_rate=schedule, weight_decay=weight_decay)


class TimeBudget(keras.callbacks.Callback):
    """Stops `fit` once its training steps have taken `seconds` (checked after every step).

    Only the epochs' steps count (input pipeline included): evaluations that callbacks run at an
    epoch's end, such as `KNNMonitor`, do not eat into the budget.
    """

    def __init__(self, seconds: float):
        super().__init__()
        self.seconds = float(seconds)
        self.spent = 0.0
        self.stopped_at_step = None

    def on_train_begin(self, logs=None):
        self.spent, self._steps = 0.0, 0

    def on_epoch_begin(self, epoch, logs=None):
        self._mark = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        self.spent += now - self._mark
        self._mark = now
        self._steps += 1
        if self.spent >= self.seconds:
            self.stopped_at_step = self._steps
            self.model.stop_training = True


def seconds_per_step(model: keras.Model, batch, steps: int = 3) -> float:
    """The wall-clock seconds one training step of `model` takes on `batch`, leaving the model as
    it was.

    The step is traced (and compiled) once, which `fit` then reuses; every variable the step
    changes (weights, optimizer slots and step counter, random-number states, MoCo queues) is
    restored afterwards, so measuring does not train.
    """
    state = [*model.variables, *model.optimizer.variables]
    saved = [v.numpy() for v in state]
    batch = tuple(tf.convert_to_tensor(b) for b in (batch if isinstance(batch, tuple) else (batch,)))
    model.train_on_batch(*batch)  # trace and compile, not timed
    start = time.perf_counter()
    for _ in range(steps):
        logs = model.train_on_batch(*batch, return_dict=True)
    float(next(iter(logs.values())))  # wait for the device
    elapsed = (time.perf_counter() - start) / steps
    for variable, value in zip(state, saved, strict=True):
        variable.assign(value)
    return elapsed


def epochs_within(minutes: float, seconds_per_step: float, steps_per_epoch: int) -> int:
    """How many whole epochs of `steps_per_epoch` steps fit in `minutes` (at least 1)."""
    if not minutes or minutes <= 0:
        raise KerasSSLError(f"A time budget must be a positive number of minutes, got {minutes}.")
    return max(1, int(minutes * 60 / (seconds_per_step * steps_per_epoch)))


def plan_budget(model: keras.Model, x, y=None, *, batch_size: int, minutes: float) -> int:
    """Set `model`'s learning-rate schedule for the steps that fit in `minutes`; return the
    number of epochs.

    Times a few steps on a real batch of `x` (see `seconds_per_step`), so the estimate includes
    augmentation. Pair it with `TimeBudget` to stop on time when the estimate was optimistic.
    """
    schedule = getattr(model.optimizer, "_learning_rate", None)
    n = min(batch_size, len(x))
    batch = (x[:n],) if y is None else (x[:n], y[:n])
    step = seconds_per_step(model, batch)
    steps_per_epoch = max(1, math.ceil(len(x) / batch_size))
    epochs = epochs_within(minutes, step, steps_per_epoch)
    if isinstance(schedule, WarmupCosine):
        schedule.set_total_steps(epochs * steps_per_epoch)
    return epochs


__all__ = ["TimeBudget", "WarmupCosine", "default_optimizer", "epochs_within", "plan_budget",
           "seconds_per_step"]
