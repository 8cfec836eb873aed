"""Every registered method's training step really runs under XLA, augmentation included.

`model.jit_compile` only says what Keras meant to do; `keras_ssl.xla.xla_compiled` reads the step
Keras traced and checks that TensorFlow marked it `_XlaMustCompile`, so a silent fallback to graph
mode (a layer that cannot compile, a strategy, op determinism) fails here.
"""

import keras
import numpy as np
import pytest
from tiny_methods import BATCH, tiny_method

import keras_ssl
from keras_ssl import xla
from keras_ssl.errors import KerasSSLError
from keras_ssl.methods import METHODS

ALL = sorted(METHODS)
# The per-method test files compile these too; here the checks of the traced step run once each.
FAST = ("rotnet",)  # SimCLR's compiled views: tests/test_augment_fused.py


def _param(name):
    return name if name in FAST else pytest.param(name, marks=pytest.mark.slow)


@pytest.mark.parametrize("name", [_param(n) for n in ALL])
def test_train_step_is_xla_compiled(name):
    model, x, y = tiny_method(name)
    model.compile(optimizer=keras.optimizers.SGD(0.01), jit_compile=True)
    history = model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)
    assert model.jit_compile is True  # Keras silently falls back when a layer cannot compile
    functions = xla.step_functions(model)
    assert functions and all(functions.values()), functions
    assert xla.xla_compiled(model)
    assert np.isfinite(history.history["loss"]).all()


def test_graph_mode_step_is_reported_as_not_compiled():
    model, x, _ = tiny_method("simclr")
    model.compile(optimizer="sgd", jit_compile=False)
    with pytest.raises(KerasSSLError, match="run model.fit"):
        xla.require_xla(model)  # nothing traced yet
    model.fit(x, batch_size=BATCH, epochs=1, verbose=0)
    functions = xla.step_functions(model)
    assert functions and not any(functions.values())
    assert not xla.xla_compiled(model)
    with pytest.raises(KerasSSLError, match="not XLA-compiled"):
        xla.require_xla(model)


def test_a_layer_that_cannot_compile_is_caught():
    # keras.layers.RandomZoom says supports_jit=False: Keras turns jit_compile off with a warning.
    model, x, _ = tiny_method("simclr")
    model.augmenter = keras.Sequential([keras.layers.Rescaling(1 / 255),
                                        keras.layers.RandomZoom(0.2)])
    with pytest.warns(UserWarning, match="jit_compile"):
        model.compile(optimizer="sgd", jit_compile=True)
    assert model.jit_compile is False
    model.fit(x, batch_size=BATCH, epochs=1, verbose=0)
    assert not xla.xla_compiled(model)


def test_every_registered_method_is_covered():
    # A new method registered later gets checked too (ALL is read from the registry).
    assert {"simclr", "moco", "supcon", "triplet", "rotnet", "jigsaw", "autoencoder", "denoising",
            "masked", "mlm"} <= set(ALL)
    for name in ALL:
        model, _, _ = tiny_method(name)
        assert isinstance(model, keras_ssl.SelfSupervisedModel)


def test_unknown_kind_is_refused():
    model, _, _ = tiny_method("simclr")
    with pytest.raises(KerasSSLError, match="kind must be one of"):
        xla.step_functions(model, "training")
