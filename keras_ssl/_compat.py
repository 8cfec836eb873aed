"""Every private Keras / TensorFlow API keras_ssl relies on, in one place.

Each use has its own test in tests/test_compat.py, so a Keras or TensorFlow release that changes
one fails one named test. Supported versions: the bounds in pyproject.toml (Keras >= 3.15,
TensorFlow >= 2.21).

- `scale_loss_for_distribution`: Keras' own scaling of a replica's loss by 1 / replicas, so a
  custom `train_step` sums gradients across replicas as `Model.fit` does.
- `all_layers(model)`: every layer, nested models included (`Layer._flatten_layers`).
- `in_multi_worker_mode(strategy)`: whether a MultiWorkerMirroredStrategy spans several processes.
- `learning_rate_schedule(optimizer)`: the schedule object behind `optimizer.learning_rate`
  (the public property returns its current value).
- `traced_functions(function)`: the `tf.function`s a Keras step function closes over, read through
  closures (to check whether a step really compiled with XLA).
- `in_xla_context()`: whether the ops being built will be compiled by XLA (TensorFlow's
  `control_flow_util.GraphOrParentsInXlaContext`), so a layer picks the formulation that is fast
  there.
- `SelfSupervisedModel._maybe_symbolic_build` overrides Keras' private method of that name
  (`SYMBOLIC_BUILD`), to build models from the first replica's batch under a strategy.
"""

from __future__ import annotations

import tensorflow as tf
from keras.src.losses.loss import scale_loss_for_distribution

SYMBOLIC_BUILD = "_maybe_symbolic_build"


def all_layers(model) -> list:
    """`model` and every layer inside it, nested models included."""
    return list(model._flatten_layers(include_self=True, recursive=True))


def in_multi_worker_mode(strategy) -> bool:
    """Whether `strategy` runs over several worker processes."""
    return bool(strategy.extended._in_multi_worker_mode())


def in_xla_context() -> bool:
    """Whether the ops being built will be compiled by XLA (a `jit_compile=True` function).

    Some ops are fast in one world and slow in the other (XLA fuses elementwise chains that
    TensorFlow runs as one pass over memory each); the layers pick their formulation with this.
    """
    if tf.executing_eagerly():
        return False
    try:
        from tensorflow.python.ops import control_flow_util

        graph = tf.compat.v1.get_default_graph()
        return bool(control_flow_util.GraphOrParentsInXlaContext(graph))
    except (ImportError, AttributeError):  # without it, assume plain graphs (slower, not wrong)
        return False


def learning_rate_schedule(optimizer):
    """The `LearningRateSchedule` (or float variable) an optimizer was built with."""
    return getattr(optimizer, "_learning_rate", None)


def traced_functions(function) -> list:
    """The `tf.function`s that `function` closes over, found by walking closures and wrappers."""
    seen, found = set(), []
    stack = [function]
    while stack:
        fn = stack.pop()
        if id(fn) in seen:
            continue
        seen.add(id(fn))
        if hasattr(fn, "_list_all_concrete_functions"):
            found.append(fn)
        for cell in getattr(fn, "__closure__", None) or ():
            try:
                value = cell.cell_contents
            except ValueError:  # an empty cell
                continue
            if callable(value):
                stack.append(value)
        wrapped = getattr(fn, "__wrapped__", None)
        if wrapped is not None:
            stack.append(wrapped)
    return found


def concrete_functions(traced) -> list:
    """Every concrete function a `tf.function` was traced into."""
    return list(traced._list_all_concrete_functions())


__all__ = ["SYMBOLIC_BUILD", "all_layers", "concrete_functions", "in_multi_worker_mode",
           "learning_rate_schedule", "scale_loss_for_distribution", "traced_functions"]
