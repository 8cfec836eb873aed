"""CollapseMonitor: the std and effective rank of normalised embeddings, in the epoch logs."""

import math
import warnings

import keras
import numpy as np
import pytest

from keras_ssl.collapse import (
    CollapseMonitor,
    effective_rank,
    embedding_std,
    top_direction_share,
)
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
    assert top_direction_share(spread) == pytest.approx(1 / 16, rel=0.2)
    assert top_direction_share(line) == pytest.approx(1.0)
    assert top_direction_share(collapsed) == 0.0


def test_top_direction_share_against_numpy_pca():
    # One feature far larger than the rest, as "is it a 1" grows in BYOL's first steps: the share
    # is the first eigenvalue of the centred, normalised rows' covariance over the eigenvalues' sum.
    rng = np.random.default_rng(1)
    z = rng.normal(size=(300, 12)) + 2.0
    z[:30] += 20.0 * rng.normal(size=12)
    rows = z - z.mean(0)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    eigenvalues = np.linalg.eigvalsh(rows.T @ rows)
    assert top_direction_share(z) == pytest.approx(eigenvalues[-1] / eigenvalues.sum())
    assert top_direction_share(z) > 0.8


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


def _line_model(x):
    """A Dense model and a callback that, from epoch 2, makes its outputs vary along one line."""
    inputs = keras.Input((x.shape[1],))
    dense = keras.layers.Dense(8, use_bias=False)
    model = keras.Model(inputs, dense(inputs))
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    line = np.outer(np.ones(x.shape[1]), np.arange(1, 9)).astype("float32")

    class OneLine(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                dense.kernel.assign(line)

    return model, dense, line, OneLine()


def _share_warnings(model, x, callbacks, epochs=3):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(x, np.zeros((len(x), 8)), epochs=epochs, verbose=0,
                            callbacks=callbacks)
    return history, [str(w.message) for w in caught if "one direction holds" in str(w.message)]


def test_monitor_warns_once_when_one_direction_outgrows_the_others():
    # Std stays fine (the outputs spread along a line), yet one direction holds all the variance.
    x = np.random.default_rng(0).normal(size=(64, 6)).astype("float32")
    model, _, _, one_line = _line_model(x)
    history, messages = _share_warnings(model, x, [one_line, CollapseMonitor(x)])
    assert len(messages) == 1 and messages[0].startswith("Epoch 2: one direction holds 100%")
    assert "simclr, vicreg and barlow_twins do not" in messages[0]
    shares = history.history["top_direction_share"]
    assert shares[0] < 0.6 and shares[1:] == pytest.approx([1.0, 1.0])


def test_monitor_is_quiet_when_the_share_was_high_from_the_start():
    # An encoder that starts with one strong direction (brightness on CIFAR-10) and keeps it.
    x = np.random.default_rng(0).normal(size=(64, 6)).astype("float32")
    model, dense, line, _ = _line_model(x)
    dense.kernel.assign(line)
    history, messages = _share_warnings(model, x, [CollapseMonitor(x)])
    assert messages == [] and history.history["top_direction_share"][-1] == pytest.approx(1.0)


def test_bad_arguments():
    with pytest.raises(KerasSSLError, match="at least 2"):
        CollapseMonitor(np.zeros((1, 4)))
    with pytest.raises(KerasSSLError, match="every"):
        CollapseMonitor(np.zeros((4, 4)), every=0)
    with pytest.raises(KerasSSLError, match="max_top_share"):
        CollapseMonitor(np.zeros((4, 4)), max_top_share=1.5)
