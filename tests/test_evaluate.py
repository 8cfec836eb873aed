"""Evaluation: kNN against a brute-force reference, linear probe, embed, KNNMonitor, online probe."""

import contextlib
import importlib.util
import io
from unittest import mock

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_ssl
from keras_ssl import encoders, evaluate
from keras_ssl.callbacks import KNNMonitor
from keras_ssl.cli import main
from keras_ssl.errors import KerasSSLError
from keras_ssl.methods.base import SelfSupervisedModel


def _knn_reference(train_x, train_y, test_x, k, temperature, num_classes):
    """One test point at a time, sorted neighbours, explicit weighted votes."""
    predictions = []
    for query in test_x:
        sims = np.array([
            np.dot(query, t) / (np.linalg.norm(query) * np.linalg.norm(t)) for t in train_x
        ])
        order = np.argsort(-sims, kind="stable")[:k]
        votes = np.zeros(num_classes)
        for j in order:
            votes[train_y[j]] += np.exp(sims[j] / temperature)
        predictions.append(int(np.argmax(votes)))
    return np.array(predictions)


@pytest.mark.parametrize("k, temperature", [(1, 0.1), (5, 0.1), (7, 0.5), (500, 0.1)])
def test_knn_accuracy_matches_a_brute_force_reference(k, temperature):
    rng = np.random.default_rng(k)
    train_x, test_x = rng.normal(size=(60, 6)), rng.normal(size=(25, 6))
    # Labels that depend on the features (so neighbours matter) plus noise.
    train_y = (train_x[:, 0] > 0).astype(int) + 2 * (rng.random(60) < 0.3)
    test_y = (test_x[:, 0] > 0).astype(int) + 2 * (rng.random(25) < 0.3)
    predicted = _knn_reference(train_x, train_y, test_x, min(k, 60), temperature, 4)
    expected = float(np.mean(predicted == test_y))
    got = evaluate.knn_accuracy(train_x, train_y, test_x, test_y, k=k, temperature=temperature,
                                batch_size=7)  # several query batches
    assert got == pytest.approx(expected)
    assert 0.0 < got < 1.0  # a case where the votes decide, not a trivial one


def test_knn_accuracy_votes_are_weighted_by_similarity():
    # Two far neighbours of class 1 against one near neighbour of class 0: with k=3 the
    # unweighted majority says 1, the similarity weights at t=0.1 say 0.
    train_x = np.array([[1.0, 0.0], [0.0, 1.0], [-0.1, 1.0]])
    train_y = np.array([0, 1, 1])
    test_x = np.array([[1.0, 0.05]])
    assert evaluate.knn_accuracy(train_x, train_y, test_x, [0], k=3, temperature=0.1) == 1.0
    assert evaluate.knn_accuracy(train_x, train_y, test_x, [0], k=3, temperature=100.0) == 0.0


def test_linear_probe_separates_separable_data_and_not_random_labels():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    x = rng.normal(size=(300, 8)) + 4.0 * np.eye(8)[y]
    assert evaluate.linear_probe(x[:200], y[:200], x[200:], y[200:]) >= 0.98
    shuffled = rng.permutation(y)
    assert evaluate.linear_probe(x[:200], shuffled[:200], x[200:], shuffled[200:]) < 0.6


def test_embed_of_a_method_its_encoder_and_its_export_agree(tmp_path, textured_images):
    keras.utils.set_random_seed(0)
    model = keras_ssl.SimCLR(encoders.ConvNet((16, 16, 1), width=4), projection_dim=8)
    images = textured_images(10, size=16)
    from_method = evaluate.embed(model, images, batch_size=4)  # uneven last batch
    # The bare encoder takes float images in [0, 1]; the method and the export take uint8.
    from_encoder = evaluate.embed(model.encoder, images.astype("float32") / 255.0)
    version = keras_ssl.export_encoder(model, tmp_path / "simclr")
    from_export = evaluate.embed(tmp_path / "simclr", images)
    from_loaded = evaluate.embed(keras_ssl.load_encoder(version), images)
    assert from_method.shape == (10, model.feature_dim) and from_method.dtype == np.float32
    for other in (from_encoder, from_export, from_loaded):
        np.testing.assert_allclose(other, from_method, rtol=1e-5, atol=1e-5)
    assert np.abs(from_method[0] - from_method[1]).max() > 1e-4  # different images differ


def _two_blobs(n=48, dim=8, seed=0):
    """Two Gaussian blobs of feature vectors, labels 0 / 1: separable from the first step.

    Vectors and a small MLP keep these training tests fast; the code under test is the same for
    images (the CLI test below runs it on digits).
    """
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = rng.normal(size=(n, dim)) + 3.0 * y[:, None]
    return x.astype("float32"), y


def _mlp(dim=8):
    return encoders.MLP(dim, hidden=(16,), output_dim=8)


def test_knn_monitor_writes_val_knn_accuracy_into_history_progress_bar_and_later_callbacks():
    keras.utils.set_random_seed(0)
    x, y = _two_blobs()
    model = keras_ssl.SimCLR(_mlp(), projection_dim=8)
    model.compile(optimizer="adam", jit_compile=False)
    monitor = KNNMonitor((x[:32], y[:32]), (x[32:], y[32:]), every_n_epochs=2, k=5)
    seen = []
    after = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: seen.append("val_knn_accuracy" in logs))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        history = model.fit(x, batch_size=16, epochs=3, verbose=2, callbacks=[monitor, after])
    # Every 2nd epoch, and the last one.
    assert sorted(monitor.scores) == [2, 3]
    assert history.history["val_knn_accuracy"] == [monitor.scores[2], monitor.scores[3]]
    assert seen == [False, True, True]
    lines = [line for line in out.getvalue().splitlines() if "loss" in line]
    assert ["val_knn_accuracy" in line for line in lines] == [False, True, True]
    # The last score is the kNN accuracy of the final encoder.
    train, val = evaluate.embed(model, x[:32]), evaluate.embed(model, x[32:])
    assert monitor.scores[3] == pytest.approx(
        evaluate.knn_accuracy(train, y[:32], val, y[32:], k=5))


def test_knn_monitor_rejects_bad_arguments():
    x, y = _two_blobs(8)
    with pytest.raises(KerasSSLError, match="every_n_epochs"):
        KNNMonitor((x, y), (x, y), every_n_epochs=0)
    with pytest.raises(KerasSSLError, match="one label per"):
        KNNMonitor((x, y[:3]), (x, y))
    with pytest.raises(KerasSSLError, match=r"pair \(x, y\)"):
        KNNMonitor(x, (x, y))


class _NoLearning(SelfSupervisedModel):
    """A method whose loss gives the encoder zero gradient: only the probe can learn."""

    input_kinds = ("vectors",)

    def compute_ssl_loss(self, inputs, labels, training):
        return 0.0 * tf.reduce_sum(self.encoder(self.preprocess(inputs), training=False))


def test_online_probe_learns_reports_and_leaves_the_encoder_alone():
    keras.utils.set_random_seed(0)
    x, y = _two_blobs(64)
    model = _NoLearning(_mlp(), probe_classes=2, probe_learning_rate=0.05)
    before = [v.numpy().copy() for v in model.encoder.trainable_variables]
    probe_before = [v.numpy().copy() for v in model.probe.trainable_variables]
    model.compile(optimizer=keras.optimizers.SGD(0.1), jit_compile=True)
    history = model.fit(x, y, batch_size=16, epochs=4, verbose=0, validation_data=(x, y))
    assert model.jit_compile is True  # Keras did not fall back to graph mode
    assert {"probe_accuracy", "probe_loss", "val_probe_accuracy"} <= set(history.history)
    assert history.history["probe_accuracy"][-1] >= 0.8  # chance: 0.5
    for old, new in zip(before, model.encoder.trainable_variables, strict=True):
        np.testing.assert_array_equal(old, new.numpy())
    assert any(np.abs(old - new.numpy()).max() > 0
               for old, new in zip(probe_before, model.probe.trainable_variables, strict=True))


def test_online_probe_gradient_does_not_reach_the_encoder(textured_images):
    x, y = textured_images(8, size=16), np.arange(8) % 2
    model = keras_ssl.SimCLR(encoders.ConvNet((16, 16, 1), width=4), projection_dim=8,
                             probe_classes=2)
    with tf.GradientTape() as tape:
        loss = model.probe_loss(tf.constant(x), tf.constant(y), training=True)
    grads = tape.gradient(loss, model.encoder.trainable_variables + model.probe.trainable_variables)
    n = len(model.encoder.trainable_variables)
    assert all(g is None for g in grads[:n])
    assert all(g is not None and float(tf.reduce_max(tf.abs(g))) > 0 for g in grads[n:])


def test_online_probe_sits_out_unlabelled_batches_and_round_trips_its_config():
    x, _ = _two_blobs(16)
    model = keras_ssl.SimCLR(_mlp(), projection_dim=8, probe_classes=3)
    kernel = model.probe.trainable_variables[0].numpy().copy()
    model.compile(optimizer="adam", jit_compile=False)
    history = model.fit(x, batch_size=8, epochs=1, verbose=0)
    assert "probe_accuracy" not in history.history and "loss" in history.history
    np.testing.assert_array_equal(kernel, model.probe.trainable_variables[0].numpy())
    clone = keras_ssl.SimCLR.from_config(model.get_config())
    assert clone.probe_classes == 3 and clone.probe is not None
    assert keras_ssl.SimCLR(encoders.ConvNet((16, 16, 1), width=4)).probe is None


@pytest.mark.parametrize("bad", [1, 2.5, True, "10"])
def test_probe_classes_must_be_a_class_count(bad):
    with pytest.raises(KerasSSLError, match="probe_classes"):
        keras_ssl.SimCLR(encoders.ConvNet((16, 16, 1), width=4), probe_classes=bad)


# ----- the command line: evaluate, embed, and monitoring during pretraining ----------------------
@pytest.fixture(scope="module")
def exported_digits(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "simclr"
    keras.utils.set_random_seed(0)
    model = keras_ssl.SimCLR(encoders.ConvNet((32, 32, 1), width=4), projection_dim=8)
    keras_ssl.export_encoder(model, path)
    return model, path


def test_cli_evaluate_scores_an_export_like_the_python_api(exported_digits, capsys):
    model, path = exported_digits
    assert main(["evaluate", str(path), "--data", "digits", "--eval-examples", "500"]) == 0
    out = capsys.readouterr().out
    data = keras_ssl.data.load("digits")
    scores = evaluate.evaluate_encoder(model, data.x_train[:500], data.y_train[:500],
                                       data.x_test, data.y_test)
    assert "kNN accuracy" in out and f"{scores['knn_accuracy']:.4f}" in out
    assert f"{scores['linear_probe_accuracy']:.4f}" in out


def test_cli_embed_writes_embeddings_and_labels(exported_digits, tmp_path, capsys):
    model, path = exported_digits
    out = tmp_path / "emb.npz"
    assert main(["embed", str(path), "--data", "digits", "--out", str(out)]) == 0
    arrays = np.load(out)
    data = keras_ssl.data.load("digits")
    assert arrays["embeddings"].shape == (len(data.x_train), model.feature_dim)
    np.testing.assert_array_equal(arrays["labels"], data.y_train)
    np.testing.assert_array_equal(arrays["test_labels"], data.y_test)
    np.testing.assert_allclose(arrays["test_embeddings"][:5], evaluate.embed(model, data.x_test[:5]),
                               rtol=1e-5, atol=1e-5)


def test_cli_evaluate_of_a_missing_export_is_one_line(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "nothing"), "--data", "digits"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("keras-ssl: error:") and "\n" not in err


def test_cli_pretrain_with_knn_monitor_probe_and_tensorboard(tmp_path, capsys):
    logdir = tmp_path / "logs"
    assert main(["pretrain", "--data", "digits", "--max-examples", "256", "--epochs", "2",
                 "--batch-size", "64", "--width", "4", "--encoder", "convnet",
                 "--knn-every", "1", "--online-probe", "--logdir", str(logdir),
                 "--verbose", "2"]) == 0
    out = capsys.readouterr().out
    epoch_lines = [line for line in out.splitlines() if "probe_accuracy" in line]
    assert len(epoch_lines) == 2 and all("val_knn_accuracy" in line for line in epoch_lines)
    # Keras' TensorBoard writes val_* logs to the validation run, without the prefix.
    tags = {}
    for run in ("train", "validation"):
        events = list((logdir / run).glob("events.out.tfevents.*"))
        assert events, list(logdir.rglob("*"))
        tags[run] = {value.tag for event in tf.compat.v1.train.summary_iterator(str(events[0]))
                     for value in event.summary.value}
    assert {"epoch_loss", "epoch_probe_accuracy"} <= tags["train"]
    assert "epoch_knn_accuracy" in tags["validation"]


def test_cli_knn_every_must_not_be_negative_and_probe_needs_labels(tmp_path, capsys):
    assert main(["pretrain", "--knn-every", "-1", "--verbose", "0"]) == 2
    assert "--knn-every" in capsys.readouterr().err
    real_find_spec = importlib.util.find_spec
    with mock.patch("importlib.util.find_spec",
                    lambda name, *a: None if name == "tensorboard" else real_find_spec(name, *a)):
        assert main(["pretrain", "--logdir", str(tmp_path / "logs"), "--verbose", "0"]) == 2
    assert "pip install tensorboard" in capsys.readouterr().err
    np.savez(tmp_path / "unlabelled.npz", x=np.zeros((64, 16, 16, 1), "uint8"))
    assert main(["pretrain", "--data", str(tmp_path / "unlabelled.npz"), "--online-probe",
                 "--verbose", "0"]) == 2
    assert "--online-probe" in capsys.readouterr().err
