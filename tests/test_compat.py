"""One test per private Keras / TensorFlow API in keras_ssl/_compat.py: a release that changes one
fails here, by name."""

import inspect

import keras
import numpy as np
import tensorflow as tf

from keras_ssl import _compat, encoders
from keras_ssl.schedules import WarmupCosine


def test_scale_loss_for_distribution_divides_by_the_replicas():
    strategy = tf.distribute.get_strategy()
    with strategy.scope():
        assert float(_compat.scale_loss_for_distribution(tf.constant(6.0))) == 6.0


def test_all_layers_reaches_nested_models():
    encoder = encoders.ConvNet((16, 16, 1), width=4)
    outer = keras.Sequential([keras.Input((16, 16, 1)), encoder, keras.layers.Dense(2)])
    layers = _compat.all_layers(outer)
    assert outer in layers and encoder in layers
    assert sum(isinstance(layer, keras.layers.BatchNormalization) for layer in layers) == 8


def test_in_multi_worker_mode_is_false_for_one_process():
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    assert _compat.in_multi_worker_mode(strategy) is False


def test_in_xla_context_only_inside_a_compiled_function():
    seen = []

    def probe(x):
        seen.append(_compat.in_xla_context())
        return x + 1

    probe(tf.constant(1.0))
    tf.function(probe)(tf.constant(1.0))
    tf.function(probe, jit_compile=True)(tf.constant(1.0))
    assert seen == [False, False, True]


def test_learning_rate_schedule_is_the_schedule_object():
    schedule = WarmupCosine(1e-3, 100)
    optimizer = keras.optimizers.AdamW(learning_rate=schedule)
    assert _compat.learning_rate_schedule(optimizer) is schedule


def test_traced_functions_find_the_compiled_train_step():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse", jit_compile=True)
    model.fit(np.zeros((4, 3)), np.zeros((4, 1)), epochs=1, verbose=0)
    traced = _compat.traced_functions(model.train_function)
    assert traced and _compat.concrete_functions(traced[0])


def test_keras_model_still_has_the_symbolic_build_hook_keras_ssl_overrides():
    hook = getattr(keras.Model, _compat.SYMBOLIC_BUILD)
    assert {"iterator", "data_batch"} <= set(inspect.signature(hook).parameters)
