"""What BYOL, DINO and MoCo share: an EMA target (teacher, key) network and its momentum schedule.

The target networks are `momentum_copy`s (exact, non-trainable copies): kept out of the
optimizer's variables, saved with the weights and in checkpoints, and moved after every optimizer
step (`SelfSupervisedModel.after_train_step`) towards their online counterparts,

    target <- tau * target + (1 - tau) * online      (every trainable online weight)

with BYOL's schedule tau = 1 - (1 - tau_base) (cos(pi k / K) + 1) / 2 from tau_base at step 0 to
1 at the last step K. K is the learning-rate schedule's `total_steps` when the optimizer uses
`keras_ssl.schedules.WarmupCosine` (so `plan_budget` setting it later is followed), else the
method's `total_steps` argument; with neither, tau stays at tau_base. MoCo keeps tau constant.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from keras_ssl.errors import KerasSSLError
from keras_ssl.schedules import WarmupCosine
from keras_ssl.validate import check_int, check_number

__all__ = ["MomentumTargetMixin", "cosine_momentum", "momentum_copy"]


def momentum_copy(model: keras.Model, name: str) -> keras.Model:
    """An exact copy of `model` (same layers, same weights) whose variables get no gradients.

    The copy's *layers* stay trainable, so its BatchNormalization layers still normalise with the
    statistics of the batch in training mode; only its *variables* are flagged non-trainable, which
    keeps them out of `trainable_variables` and so out of the optimizer.
    """
    try:
        copy = keras.models.clone_model(model)
    except Exception as err:  # e.g. a layer whose get_config cannot rebuild it
        raise KerasSSLError(
            f"The momentum (key, target or teacher) network is a keras.models.clone_model copy "
            f"of {model.name!r}, which failed ({type(err).__name__}: {err}). Use a functional or "
            "Sequential encoder (keras_ssl.encoders builds functional ones)."
        ) from err
    if [w.shape for w in copy.weights] != [w.shape for w in model.weights]:
        raise KerasSSLError(
            f"keras.models.clone_model({model.name!r}) did not reproduce its weights; use a "
            "functional or Sequential encoder."
        )
    copy.set_weights(model.get_weights())
    copy.name = name
    for variable in copy.weights:
        variable.trainable = False
    return copy


def cosine_momentum(base, step, total_steps):
    """tau(k) = 1 - (1 - base) (cos(pi min(k / K, 1)) + 1) / 2, as a float32 tensor."""
    progress = tf.clip_by_value(
        tf.cast(step, tf.float32) / tf.maximum(tf.cast(total_steps, tf.float32), 1.0), 0.0, 1.0
    )
    return 1.0 - (1.0 - float(base)) * (tf.cos(math.pi * progress) + 1.0) / 2.0


def check_momentum(value, name="momentum"):
    return check_number(value, name, least=0.0, most=1.0,
                        hint="Use e.g. 0.99 for short runs, 0.996 for long ones.")


def check_total_steps(value):
    return None if value is None else check_int(value, "total_steps", least=1)


class MomentumTargetMixin:
    """Mixin for a `SelfSupervisedModel` with EMA targets; list them in `_target_pairs()`."""

    def _target_pairs(self):
        """[(target model, online model)], set by the method."""
        raise NotImplementedError

    # ----- what the optimizer sees (as MoCo: `model.trainable = True` cannot free them) ----------
    def _target_variables(self):
        return [v for target, _ in self._target_pairs() for v in target.weights]

    def _without_targets(self, variables):
        targets = {id(v) for v in self._target_variables()}
        return [v for v in variables if id(v) not in targets]

    def _with_targets(self, variables):
        ids = {id(v) for v in variables}
        return variables + [v for v in self._target_variables() if id(v) not in ids]

    @property
    def trainable_weights(self):
        return self._without_targets(super().trainable_weights)

    @property
    def trainable_variables(self):
        return self._without_targets(super().trainable_variables)

    @property
    def non_trainable_weights(self):
        return self._with_targets(super().non_trainable_weights)

    @property
    def non_trainable_variables(self):
        return self._with_targets(super().non_trainable_variables)

    # ----- the schedule and the update ------------------------------------------------------------
    def schedule_total_steps(self):
        """K: the WarmupCosine schedule's `total_steps` variable, else `total_steps`, else None."""
        optimizer = getattr(self, "optimizer", None)
        optimizer = getattr(optimizer, "inner_optimizer", optimizer)
        schedule = getattr(optimizer, "_learning_rate", None)
        if isinstance(schedule, WarmupCosine):
            return tf.convert_to_tensor(schedule.total_steps)
        return self.total_steps

    def current_momentum(self):
        """tau for the optimizer's current step count (a float32 tensor)."""
        total = self.schedule_total_steps()
        if total is None:
            return tf.constant(self.momentum, tf.float32)
        return cosine_momentum(self.momentum, self.optimizer.iterations, total)

    def after_train_step(self):
        tau = self.current_momentum()
        for target, online in self._momentum_pairs():
            target.assign(tau * target + (1.0 - tau) * online)

    def _momentum_pairs(self):
        pairs = []
        for target_model, online_model in self._target_pairs():
            trainable = {id(v) for v in online_model.trainable_weights}
            pairs += [(t, o) for t, o in zip(target_model.weights, online_model.weights,
                                             strict=True) if id(o) in trainable]
        return pairs

    def sync_targets(self) -> None:
        """Copy every online weight (BatchNorm statistics included) into the target networks."""
        for target_model, online_model in self._target_pairs():
            target_model.set_weights(online_model.get_weights())
