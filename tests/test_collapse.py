"""CollapseMonitor: the std and effective rank of normalised embeddings, in the epoch logs."""

import math
import warnings

import keras
import numpy as np
import pytest

from keras_ssl.collapse import CollapseMonitor, effective_rank, embedding_std
from keras_ssl.errors import KerasSSLError


def test_statistics_on_known_embeddings():
    rng = np.random.default_rng(0)
    spread = rng.normal(size=(4000, 16))
    assert embedding_std(spread) == pytest.approx(1 / math.sqrt(16), rel=0.05)
    assert effective_rank(spread) == pytest.approx(16, rel=0.1)
    collapsed = np.tile(rng.normal(size=(1, 16)), (100, 1))
    assert embedding_std(collapsed) == pytest.approx(0.0, abs=1e-7)
    assert effective_rank(collapsed) == 0.0
    line = np.outer(rng.normal(size=100), rng.normal(size=16)) + 3.0  # one direction of variation
    assert effective_rank(line) == pytest.approx(1.0, abs=1e-6)
    # Dimensional collapse: spread over 2 of 16 dimensions only.
    flat = np.zeros((1000, 16))
    flat[:, :2] = rng.normal(size=(1000, 2))
    assert effective_rank(flat) == pytest.approx(2.0, rel=0.1)


def _model(constant=False):
    inputs = keras.Input((6,))
    dense = keras.layers.Dense(8, kernel_initializer="zeros" if constant else "glorot_uniform",
                               bias_initializer="ones")
    model = keras.Model(inputs, dense(inputs))
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    return model


def test_monitor_writes_the_epoch_logs_history_sees():
    x = np.random.default_rng(0).normal(size=(32, 6)).astype("float32")
    monitor = CollapseMonitor(x[:16], every=2)
    history = _model().fit(x, np.zeros((32, 8)), epochs=3, verbose=0, callbacks=[monitor])
    # Epoch 2 (every=2) and epoch 3 (the last) are measured.
    assert [h["epoch"] for h in monitor.history] == [1, 2]
    assert "embedding_std" in history.history and "effective_rank" in history.history
    assert len(history.history["embedding_std"]) == 2
    assert history.history["embedding_std"][-1] > 0.05


def test_monitor_warns_when_the_embeddings_collapse():
    x = np.random.default_rng(0).normal(size=(16, 6)).astype("float32")
    with pytest.warns(RuntimeWarning, match="collapsing"):
        _model(constant=True).fit(x, np.zeros((16, 8)), epochs=1, verbose=0,
                                  callbacks=[CollapseMonitor(x)])
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        _model().fit(x, np.zeros((16, 8)), epochs=1, verbose=0, callbacks=[CollapseMonitor(x)])


def test_bad_arguments():
    with pytest.raises(KerasSSLError, match="at least 2"):
        CollapseMonitor(np.zeros((1, 4)))
    with pytest.raises(KerasSSLError, match="every"):
        CollapseMonitor(np.zeros((4, 4)), every=0)
