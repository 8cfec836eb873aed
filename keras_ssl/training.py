"""Optimizer defaults shared by the CLI, the examples and the benchmarks, and training to a
wall-clock budget ("train for 10 minutes") instead of a number of epochs."""

from __future__ import annotations

import math
import time

import keras
import tensorflow as tf

from keras_ssl._compat import learning_rate_schedule
from keras_ssl.data import steps_per_epoch
from keras_ssl.schedules import WarmupCosine
from keras_ssl.validate import check_number


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
    """Stops `fit` once its training steps have taken `seconds`, or after `max_steps` steps.

    Only the epochs' steps count (input pipeline included). Not counted: the first step, which
    traces and compiles the step function, and evaluations that callbacks run at an epoch's end
    (e.g. `KNNMonitor`). `plan_budget` returns one of these with `epochs` and `max_steps` set.
    """

    def __init__(self, seconds: float, max_steps: int | None = None, epochs: int | None = None):
        super().__init__()
        self.seconds = float(seconds)
        self.max_steps = max_steps
        self.epochs = epochs
        self.spent = 0.0
        self.steps = 0
        self.stopped_at_step = None

    def on_train_begin(self, logs=None):
        self.spent, self.steps, self.stopped_at_step = 0.0, 0, None

    def on_epoch_begin(self, epoch, logs=None):
        self._mark = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        if self.steps:  # the first step's time is tracing and compiling
            self.spent += now - self._mark
        self._mark = now
        self.steps += 1
        if self.spent >= self.seconds or (self.max_steps and self.steps >= self.max_steps):
            self.stopped_at_step = self.steps
            self.model.stop_training = True


def seconds_per_step(model: keras.Model, batch, steps: int = 5) -> float:
    """The wall-clock seconds one training step of `model` takes on `batch` (the median of
    `steps` timed steps), leaving the model as it was.

    Every variable the steps change (weights, optimizer slots and step counter, random-number
    states, MoCo queues) is restored afterwards, so measuring does not train.
    """
    state = [*model.variables, *model.optimizer.variables]
    saved = [v.numpy() for v in state]
    batch = tuple(tf.convert_to_tensor(b) for b in (batch if isinstance(batch, tuple) else (batch,)))
    model.train_on_batch(*batch)  # trace and compile, not timed
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        logs = model.train_on_batch(*batch, return_dict=True)
        float(next(iter(logs.values())))  # wait for the device
        times.append(time.perf_counter() - start)
    for variable, value in zip(state, saved, strict=True):
        variable.assign(value)
    return float(sorted(times)[len(times) // 2])


def plan_budget(model: keras.Model, x, y=None, *, batch_size: int, minutes: float,
                num_examples: int | None = None) -> TimeBudget:
    """Plan training `model` on `x` (and labels `y`) for `minutes`: set its learning-rate schedule
    to the steps that fit and return the `TimeBudget` callback that ends training on time.

    Times a few steps on a real batch (augmentation included, see `seconds_per_step`); `x` may
    be just that batch when `num_examples` gives the size of the training set. The
    returned callback's `epochs` is what to pass to `fit`; it stops at the planned step count,
    or earlier if the steps turn out slower than timed, so the schedule ends where training does.

    >>> budget = plan_budget(model, x, batch_size=256, minutes=10)  # doctest: +SKIP
    >>> model.fit(dataset, epochs=budget.epochs, callbacks=[budget])  # doctest: +SKIP
    """
    check_number(minutes, "A time budget (minutes)", above=0)
    n = min(batch_size, len(x))
    step = seconds_per_step(model, (x[:n],) if y is None else (x[:n], y[:n]))
    steps = max(1, round(minutes * 60 / step))
    per_epoch = steps_per_epoch(num_examples or len(x), batch_size)
    schedule = learning_rate_schedule(model.optimizer)
    if isinstance(schedule, WarmupCosine):
        schedule.set_total_steps(steps)
    return TimeBudget(minutes * 60, max_steps=steps, epochs=math.ceil(steps / per_epoch))


__all__ = ["TimeBudget", "WarmupCosine", "default_optimizer", "plan_budget", "seconds_per_step"]
