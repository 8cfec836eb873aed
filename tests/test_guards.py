"""A non-finite loss stops training with a clear message, and the last good checkpoint is kept."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_ssl.checkpoint import fit_resumable
from keras_ssl.cli import main
from keras_ssl.data import Position, resumable_dataset
from keras_ssl.guards import NonFiniteLossError, StopOnNonFiniteLoss


def _regression(learning_rate=0.01):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate), loss="mse")
    return model


def test_inf_in_the_data_stops_at_the_step_that_sees_it(tmp_path):
    x = np.random.default_rng(0).normal(size=(40, 3)).astype("float32")
    x[17, 1] = np.inf
    y = np.zeros((40, 1), "float32")
    # Where example 17 falls in the stream (5 steps per epoch): that step's loss is inf.
    batches = [b for b, _ in resumable_dataset(x, y, batch_size=8, epochs=1, seed=0)
               .as_numpy_iterator()]
    bad_step = next(i for i, b in enumerate(batches) if np.isinf(b).any()) + 1
    model = _regression()
    with pytest.raises(NonFiniteLossError) as err:
        fit_resumable(model, x, y, batch_size=8, epochs=2, seed=0, checkpoint_dir=tmp_path,
                      save_every_steps=1, verbose=0)
    assert (err.value.epoch, err.value.step) == (1, bad_step)
    assert not np.isfinite(err.value.value)
    message = str(err.value)
    assert f"at epoch 1, step {bad_step} of 5" in message
    assert "check the data for NaN or infinite values" in message and "\n" not in message
    assert bad_step == 4  # seed 0 puts it there: steps 1-3 were good and saved
    assert f"last good checkpoint (epoch 1, after step {bad_step - 1})" in message
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(tmp_path)))
    assert int(reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE")) == bad_step - 1


def test_cli_learning_rate_1e10_is_one_line_and_keeps_the_last_good_checkpoint(tmp_path, capsys):
    images = np.random.default_rng(0).integers(0, 256, (64, 16, 16, 1), dtype=np.uint8)
    np.savez(tmp_path / "tiny.npz", x=images)
    code = main(["pretrain", "--method", "simclr", "--data", str(tmp_path / "tiny.npz"),
                 "--epochs", "2", "--batch-size", "8", "--encoder", "convnet", "--width", "4",
                 "--learning-rate", "1e10", "--checkpoint-dir", str(tmp_path / "ckpt"),
                 "--checkpoint-every", "1", "--export", str(tmp_path / "export"),
                 "--verbose", "0"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("keras-ssl: error: The training loss became nan at epoch 1, step ")
    assert "lower the learning rate (--learning-rate" in err and "float32" in err
    assert "\n" not in err and "Traceback" not in err
    assert "The last good checkpoint (epoch 1, after step" in err
    assert not (tmp_path / "export").exists()  # nothing exported from a diverged run
    # The checkpoint on disk is finite: the NaN state was never saved over it.
    path = tf.train.latest_checkpoint(str(tmp_path / "ckpt"))
    reader = tf.train.load_checkpoint(path)
    for name, _ in tf.train.list_variables(path):
        value = reader.get_tensor(name)
        if isinstance(value, np.ndarray) and value.dtype.kind == "f":
            assert np.isfinite(value).all(), name


def test_plain_fit_without_checkpoint_says_so():
    model = _regression(learning_rate=1e30)
    x = np.full((8, 3), 1e5, "float32")
    with pytest.raises(NonFiniteLossError, match=r"No checkpoint was being written"):
        model.fit(x, np.ones((8, 1)), batch_size=4, epochs=3, verbose=0,
                  callbacks=[StopOnNonFiniteLoss()])
    assert model.stop_training


def test_finite_losses_pass_untouched():
    model = _regression()
    x = np.random.default_rng(1).normal(size=(16, 3)).astype("float32")
    history = model.fit(x, x[:, :1], batch_size=4, epochs=2, verbose=0,
                        callbacks=[StopOnNonFiniteLoss()])
    assert len(history.history["loss"]) == 2
    assert Position(1, 2).describe(3, 4) == "epoch 2 of 3, after step 2 of 4"
