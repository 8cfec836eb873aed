"""Resumable training: a run killed mid-epoch and started again ends with the uninterrupted state.

The kill test runs the real `keras-ssl pretrain` command in subprocesses: one run is never
interrupted, another is SIGKILLed in the middle of an epoch (after a checkpoint, so that the restart
must resume mid-epoch), and the same command is run again to finish it. Every variable of the two
final checkpoints (weights, optimizer slots and step, MoCo's queue and key encoder, the seed
generators, the metrics) must be bit-for-bit equal on CPU.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from tiny_methods import tiny_method

import keras_ssl
from keras_ssl import encoders, training
from keras_ssl.checkpoint import TrainingCheckpoint, fit_resumable
from keras_ssl.data import Position, resumable_dataset
from keras_ssl.errors import KerasSSLError

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}

# Runs the CLI, but when the run reaches global step `kill_at` it writes a marker and waits to be
# killed: the kill lands at a known point (mid-epoch, after a mid-epoch checkpoint).
KILLABLE = """
import sys, time
from keras_ssl import checkpoint, cli
marker, kill_at = sys.argv[1], int(sys.argv[2])
original = checkpoint.TrainingCheckpoint.on_train_batch_end
def on_train_batch_end(self, batch, logs=None):
    original(self, batch, logs)
    if self._global_step() == kill_at:
        with open(marker, "w") as f:
            f.write(repr(self.last_saved))
        time.sleep(3600)
checkpoint.TrainingCheckpoint.on_train_batch_end = on_train_batch_end
sys.exit(cli.main(sys.argv[3:]))
"""


def _state(directory) -> dict[str, np.ndarray]:
    """Every saved tensor of the newest checkpoint in `directory`."""
    path = tf.train.latest_checkpoint(str(directory))
    reader = tf.train.load_checkpoint(path)
    return {
        name: reader.get_tensor(name) for name, _ in tf.train.list_variables(path)
        if name != "_CHECKPOINTABLE_OBJECT_GRAPH"
    }


def _wait_for(path: Path, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(f"the run ended (code {process.returncode}) before the kill point: "
                                 f"{process.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("the run did not reach the kill point in time")
        time.sleep(0.2)


@pytest.mark.slow  # 20 s; in the default suite a stopped run resumes exactly (below)
def test_cli_run_killed_mid_epoch_resumes_to_the_uninterrupted_state(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (64, 16, 16, 1), dtype=np.uint8)
    np.savez(tmp_path / "tiny.npz", x=images)
    # 8 steps per epoch, checkpoints at steps 3, 6, 8 (epoch end), 9, 12, ...: a kill at step 13
    # (epoch 2, step 5) must resume from step 12 (epoch 2, after step 4).
    command = ["pretrain", "--method", "moco", "--data", str(tmp_path / "tiny.npz"),
               "--epochs", "3", "--batch-size", "8", "--encoder", "convnet", "--width", "4",
               "--seed", "3", "--checkpoint-every", "3", "--verbose", "0"]
    started = time.monotonic()
    reference = subprocess.Popen(
        [sys.executable, "-m", "keras_ssl", *command, "--checkpoint-dir", str(tmp_path / "ref")],
        env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    marker = tmp_path / "killed-here"
    victim = subprocess.Popen(
        [sys.executable, "-c", KILLABLE, str(marker), "13", *command,
         "--checkpoint-dir", str(tmp_path / "run")],
        env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    _wait_for(marker, victim, timeout=400)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    killed_at = time.monotonic() - started
    assert victim.returncode == -signal.SIGKILL
    assert marker.read_text() == "Position(epoch=1, step=4)"

    resumed = subprocess.run(
        [sys.executable, "-m", "keras_ssl", *command, "--checkpoint-dir", str(tmp_path / "run")],
        env=ENV, capture_output=True, text=True, timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "Resuming from checkpoint" in resumed.stdout
    assert "epoch 2 of 3, after step 4 of 8 (12 steps done)" in resumed.stdout
    out, err = reference.communicate(timeout=600)
    assert reference.returncode == 0, err[-2000:]
    assert "Resuming" not in out
    print(f"killed after {killed_at:.1f} s; all three runs done after "
          f"{time.monotonic() - started:.1f} s")

    expected, actual = _state(tmp_path / "ref"), _state(tmp_path / "run")
    assert tf.train.latest_checkpoint(str(tmp_path / "run")).endswith("ckpt-24")
    assert sorted(actual) == sorted(expected)
    names = " ".join(expected)
    assert "optimizer" in names and "metrics" in names
    for name, value in expected.items():
        np.testing.assert_array_equal(actual[name], value, err_msg=name)


# ----- the data stream --------------------------------------------------------------------------
def test_each_epoch_order_depends_only_on_seed_and_epoch():
    x = np.arange(23)[:, None]
    full = [b[:, 0] for b in resumable_dataset(x, batch_size=5, epochs=3, seed=7)]
    assert len(full) == 12 and all(len(b) == 5 for b in full)  # 4 full batches per epoch
    for epoch in range(3):
        seen = np.concatenate(full[4 * epoch: 4 * epoch + 4])
        assert len(set(seen.tolist())) == 20  # a permutation, the last 3 examples dropped
    assert not np.array_equal(np.concatenate(full[:4]), np.concatenate(full[4:8]))
    # Starting mid-stream gives exactly the tail: no dependence on what was iterated before.
    tail = [b[:, 0] for b in resumable_dataset(x, batch_size=5, epochs=3, seed=7,
                                               start=Position(1, 2))]
    assert len(tail) == 6
    for a, b in zip(tail, full[6:], strict=True):
        np.testing.assert_array_equal(a, b)
    again = [b[:, 0] for b in resumable_dataset(x, batch_size=5, epochs=3, seed=7)]
    np.testing.assert_array_equal(np.concatenate(again), np.concatenate(full))
    other = [b[:, 0] for b in resumable_dataset(x, batch_size=5, epochs=1, seed=8)]
    assert not np.array_equal(np.concatenate(other), np.concatenate(full[:4]))


def test_labels_travel_with_their_examples_and_cardinality_is_known():
    x = np.arange(10)[:, None] * 10
    ds = resumable_dataset(x, np.arange(10), batch_size=3, epochs=2, start=Position(0, 1))
    assert int(ds.cardinality()) == 5
    for images, labels in ds.as_numpy_iterator():
        np.testing.assert_array_equal(images[:, 0], labels * 10)


def test_bad_stream_arguments(tmp_path):
    with pytest.raises(KerasSSLError, match="larger than the 4 training examples"):
        resumable_dataset(np.zeros((4, 2)), batch_size=5, epochs=1)
    with pytest.raises(KerasSSLError, match="3 labels for 4 examples"):
        resumable_dataset(np.zeros((4, 2)), np.zeros(3), batch_size=2, epochs=1)
    with pytest.raises(KerasSSLError, match="steps 0..1"):
        resumable_dataset(np.zeros((4, 2)), batch_size=2, epochs=1, start=Position(0, 2))
    (tmp_path / "file").write_text("x")
    with pytest.raises(KerasSSLError, match="existing file"):
        TrainingCheckpoint(tmp_path / "file")
    with pytest.raises(KerasSSLError, match="save_every_steps"):
        TrainingCheckpoint("x", save_every_steps=0)


# ----- determinism ------------------------------------------------------------------------------
def test_same_seed_gives_the_same_weights_with_plain_fit():
    """Two runs with one seed, through the plain Keras path (data.train_dataset + fit), on CPU."""
    images = np.random.default_rng(0).integers(0, 256, (32, 16, 16, 1), dtype=np.uint8)

    def run():
        keras.utils.set_random_seed(5)
        model = keras_ssl.SimCLR(encoders.ConvNet((16, 16, 1), width=4), projection_dim=8)
        initial = [w.copy() for w in model.get_weights()]
        model.compile(optimizer=keras.optimizers.Adam(1e-2))
        model.fit(keras_ssl.data.load(images).train_dataset(8, seed=5), epochs=2, verbose=0)
        return initial, model.get_weights()

    initial, first = run()
    _, second = run()
    assert any(not np.array_equal(a, b) for a, b in zip(initial, first, strict=True))
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)


# ----- in-process resume, every method ------------------------------------------------------------
class _Crash(keras.callbacks.Callback):
    """Raises after `at` steps of this fit: the process 'dies' mid-epoch."""

    def __init__(self, at):
        super().__init__()
        self.at, self.seen = at, 0

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen == self.at:
            raise RuntimeError("simulated crash")


def _method(name, jit_compile=False):
    keras.utils.set_random_seed(0)
    cls, preset = keras_ssl.METHODS[name]
    kwargs = dict(preset)
    if name == "mlm":
        # Dropout inside: its seed generators must be restored too.
        encoder = encoders.TransformerEncoder(50, 12, embed_dim=8, num_heads=2, ff_dim=16,
                                              num_layers=1)
        x = np.random.default_rng(0).integers(3, 50, (40, 12)).astype("int32")
        kwargs["vocab_size"] = 50
    elif name not in ("moco", "jigsaw") and not set(cls.input_kinds) & {"images"} or name == "mae":
        # Text, series and ViT methods: their tiny builds, on 40 examples.
        model, batch, _ = tiny_method(name)
        x = np.concatenate([batch] * 5)
        model.compile(optimizer=training.default_optimizer(1e-2, total_steps=15),
                      jit_compile=jit_compile)
        return model, x, (np.arange(40) % 4 if cls.needs_labels else None)
    else:
        if name == "moco":
            kwargs.update(queue_size=32, projection_dim=8)
        if name == "jigsaw":
            kwargs.update(permutations=10, hidden_dim=16)
        size = 48 if name == "jigsaw" else 16
        encoder = encoders.ConvNet((size, size, 1), width=4)
        x = np.random.default_rng(0).integers(0, 256, (40, size, size, 1), dtype=np.uint8)
    model = cls(encoder, seed=0, **kwargs)
    model.compile(optimizer=training.default_optimizer(1e-2, total_steps=15),
                  jit_compile=jit_compile)
    y = np.arange(40) % 4 if cls.needs_labels else None
    return model, x, y


def _resume_matches_uninterrupted(name, tmp_path, jit_compile=False):
    run = dict(batch_size=8, epochs=3, seed=0, verbose=0)
    reference, x, y = _method(name, jit_compile)
    history = fit_resumable(reference, x, y, **run)  # no checkpoint: the same batches anyway
    crashed, _, _ = _method(name, jit_compile)
    with pytest.raises(RuntimeError, match="simulated crash"):
        # 5 steps per epoch; checkpoints at 3, 5, 6, 9: a crash at step 8 resumes from 6.
        fit_resumable(crashed, x, y, checkpoint_dir=tmp_path, save_every_steps=3,
                      callbacks=[_Crash(8)], **run)
    resumed, _, _ = _method(name, jit_compile)
    resumed_history = fit_resumable(resumed, x, y, checkpoint_dir=tmp_path, save_every_steps=3,
                                    **run)
    assert resumed_history.epoch == [1, 2]
    for a, b in zip(reference.variables, resumed.variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    for a, b in zip(reference.optimizer.variables, resumed.optimizer.variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    # The resumed epoch reports the averages of the whole epoch, as the uninterrupted run did.
    for key, values in resumed_history.history.items():
        np.testing.assert_allclose(values, history.history[key][1:], rtol=1e-6, err_msg=key)
    if jit_compile:
        assert resumed.jit_compile is True
    return reference, resumed


@pytest.mark.slow
def test_resumed_simclr_equals_uninterrupted_including_random_state(tmp_path, capsys):
    reference, resumed = _resume_matches_uninterrupted("simclr", tmp_path)
    out = capsys.readouterr().out
    assert "Resuming from checkpoint" in out and "epoch 2 of 3, after step 1 of 5 (6 steps done)" in out
    # The augmentation's random state advanced during training, and was restored exactly
    # (the variables compared above include it).
    fresh, x, _ = _method("simclr")
    seeds = [(a, b) for a, b in zip(resumed.variables, fresh.variables, strict=True)
             if "seed_generator_state" in a.path]
    assert len(seeds) >= 2  # the method's and the augmentation layers' generators
    assert any(not np.array_equal(a.numpy(), b.numpy()) for a, b in seeds)
    # A rerun after the end restores the final state and trains no more.
    again = fresh
    history = fit_resumable(again, x, batch_size=8, epochs=3, seed=0, checkpoint_dir=tmp_path,
                            verbose=0)
    assert history.epoch == [] and "already finished" in capsys.readouterr().out
    for a, b in zip(reference.variables, again.variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


class _CopyCheckpoints(keras.callbacks.Callback):
    """Copies the checkpoint folder as it is after `at` steps: what a run killed then leaves."""

    def __init__(self, source, target, at):
        super().__init__()
        self.source, self.target, self.at, self.seen = source, target, at, 0

    def on_train_begin(self, logs=None):
        self.initial = [v.numpy().copy() for v in self.model.variables]

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen == self.at:
            shutil.copytree(self.source, self.target)


def test_resumed_moco_equals_uninterrupted_including_queue_key_encoder_and_random_state(
        tmp_path, capsys):
    """The default suite's resume of a self-supervised method: tiny MoCo, 16 px, 8 steps.

    The uninterrupted run leaves a copy of its checkpoint folder as it was after step 6 (epoch
    2, step 2; the checkpoint of step 6 written, nothing after it): the folder a run killed at
    that moment leaves. A new model resumed from that copy must end equal to the uninterrupted
    one, which holds only if the queue, its pointer, the key encoder and projector, the random
    states of the augmentation and the method, and the optimizer were all restored.
    """
    def moco():
        keras.utils.set_random_seed(0)
        model = keras_ssl.MoCo(encoders.ConvNet((16, 16, 1), width=4), queue_size=48,
                               projection_dim=8, seed=0)
        model.compile(optimizer=training.default_optimizer(1e-2, total_steps=8))
        return model

    x = np.random.default_rng(0).integers(0, 256, (32, 16, 16, 1), dtype=np.uint8)
    run = dict(batch_size=8, epochs=2, seed=0, save_every_steps=3, verbose=0)
    reference = moco()
    copy = _CopyCheckpoints(tmp_path / "run", tmp_path / "killed", at=6)
    fit_resumable(reference, x, checkpoint_dir=tmp_path / "run", callbacks=[copy], **run)
    resumed = moco()
    history = fit_resumable(resumed, x, checkpoint_dir=tmp_path / "killed", **run)
    assert history.epoch == [1]
    assert "epoch 2 of 2, after step 2 of 4 (6 steps done)" in capsys.readouterr().out
    for a, b in zip(reference.variables + reference.optimizer.variables,
                    resumed.variables + resumed.optimizer.variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    # The state compared above includes what makes MoCo's next steps, and each part of it
    # moved during training (else equality would prove nothing).
    parts = {
        "queue": [resumed.queue], "queue pointer": [resumed.queue_pointer],
        "key encoder": resumed.key_encoder.variables,
        "key projector": resumed.key_projector.variables,
        "random state": [v for v in resumed.variables if "seed_generator_state" in v.path],
    }
    by_id = {id(v): i for i, v in enumerate(resumed.variables)}
    for part, variables in parts.items():
        assert variables, part
        assert any(not np.array_equal(v.numpy(), copy.initial[by_id[id(v)]])
                   for v in variables), f"the {part} never changed"


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(keras_ssl.METHODS))
def test_every_method_resumes_exactly_with_xla(name, tmp_path):
    _resume_matches_uninterrupted(name, tmp_path, jit_compile=True)


class _StopAt(keras.callbacks.Callback):
    """Another callback that ends training in the middle of an epoch (e.g. a time limit)."""

    def __init__(self, at):
        super().__init__()
        self.at, self.seen = at, 0

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen == self.at:
            self.model.stop_training = True


def test_a_run_stopped_mid_epoch_by_another_callback_resumes_the_rest_of_that_epoch(
        tmp_path, capsys):
    def regression():
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="relu"),
                                  keras.layers.Dropout(0.3), keras.layers.Dense(1)])
        model.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")
        return model

    x = np.random.default_rng(0).normal(size=(40, 3)).astype("float32")
    y = x @ np.array([[1.0], [-2.0], [0.5]], "float32")
    run = dict(batch_size=8, epochs=3, seed=1, verbose=0)
    reference = regression()
    fit_resumable(reference, x, y, **run)
    stopped = regression()
    history = fit_resumable(stopped, x, y, checkpoint_dir=tmp_path, callbacks=[_StopAt(8)], **run)
    assert history.epoch == [0, 1]  # the second epoch was cut after 3 of its 5 steps
    resumed = regression()
    fit_resumable(resumed, x, y, checkpoint_dir=tmp_path, **run)
    assert "epoch 2 of 3, after step 3 of 5 (8 steps done)" in capsys.readouterr().out
    for a, b in zip(reference.variables + reference.optimizer.variables,
                    resumed.variables + resumed.optimizer.variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_checkpoint_of_another_run_is_refused_and_left_alone(tmp_path):
    model, x, _ = _method("rotnet")
    fit_resumable(model, x, batch_size=8, epochs=1, seed=0, checkpoint_dir=tmp_path, verbose=0)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    other, _, _ = _method("rotnet")
    with pytest.raises(KerasSSLError, match=r"belong to another run \(steps_per_epoch 5 there, 10"):
        fit_resumable(other, x, batch_size=4, epochs=1, seed=0, checkpoint_dir=tmp_path,
                      verbose=0)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


@pytest.mark.slow
def test_kill_during_a_checkpoint_write_resumes_from_the_previous_one(tmp_path):
    """SIGKILL while TensorFlow writes a checkpoint: the index still names the previous one."""
    images = np.random.default_rng(0).integers(0, 256, (48, 16, 16, 1), dtype=np.uint8)
    np.savez(tmp_path / "tiny.npz", x=images)
    command = ["pretrain", "--method", "simclr", "--data", str(tmp_path / "tiny.npz"),
               "--epochs", "2", "--batch-size", "8", "--encoder", "convnet", "--width", "4",
               "--checkpoint-every", "2", "--verbose", "0"]
    # The checkpoint of step 4 has its data files written but the index not updated yet.
    driver = """
import sys, time
import tensorflow as tf
from keras_ssl import cli
marker = sys.argv[1]
original = tf.train.CheckpointManager.save
def save(self, checkpoint_number=None, **kwargs):
    if checkpoint_number == 4:
        self._checkpoint.write(f"{self._prefix}-4")
        open(marker, "w").close()
        time.sleep(3600)
    return original(self, checkpoint_number=checkpoint_number, **kwargs)
tf.train.CheckpointManager.save = save
sys.exit(cli.main(sys.argv[2:]))
"""
    marker = tmp_path / "killed-here"
    victim = subprocess.Popen(
        [sys.executable, "-c", driver, str(marker), *command, "--checkpoint-dir",
         str(tmp_path / "run")], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    _wait_for(marker, victim, timeout=400)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert (tmp_path / "run" / "ckpt-4.index").exists()
    assert tf.train.latest_checkpoint(str(tmp_path / "run")).endswith("ckpt-2")
    resumed = subprocess.run(
        [sys.executable, "-m", "keras_ssl", *command, "--checkpoint-dir", str(tmp_path / "run")],
        env=ENV, capture_output=True, text=True, timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "after step 2 of 6 (2 steps done)" in resumed.stdout
    reference = subprocess.run(
        [sys.executable, "-m", "keras_ssl", *command, "--checkpoint-dir", str(tmp_path / "ref")],
        env=ENV, capture_output=True, text=True, timeout=600,
    )
    assert reference.returncode == 0, reference.stderr[-2000:]
    expected, actual = _state(tmp_path / "ref"), _state(tmp_path / "run")
    for name, value in expected.items():
        np.testing.assert_array_equal(actual[name], value, err_msg=name)
