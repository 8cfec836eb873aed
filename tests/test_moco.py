"""MoCo: momentum key encoder (exact copy, no gradients, exact EMA), ring-buffer queue, checks."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_ssl
from keras_ssl import encoders, xla
from keras_ssl.errors import KerasSSLError


def _model(**kwargs):
    keras.utils.set_random_seed(1)
    settings = {"queue_size": 64, "projection_dim": 8, "seed": 1, **kwargs}
    return keras_ssl.MoCo(encoders.ConvNet((16, 16, 1), width=4), **settings)


def _images(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 16, 16, 1), dtype=np.uint8)


def _pairs(model):
    """(key, query) variables: every weight of the encoder and the projection head."""
    return [
        (k, q)
        for key_model, query_model in ((model.key_encoder, model.encoder),
                                       (model.key_projector, model.projector))
        for k, q in zip(key_model.weights, query_model.weights, strict=True)
    ]


def _averaged(model):
    """The pairs whose query weight is trainable (not the BatchNorm moving statistics)."""
    trainable = {id(v) for v in model.encoder.trainable_weights + model.projector.trainable_weights}
    return [(k, q) for k, q in _pairs(model) if id(q) in trainable]


def _moving(model):
    return [k for k, _ in _pairs(model) if "moving" in k.path]


MOMENTUM = 0.9


@pytest.fixture(scope="module")
def trained():
    """One model trained step by step (tracing a step costs seconds: share it), with snapshots."""
    model = _model(queue_size=12, momentum=MOMENTUM)
    # AdamW's weight decay would shrink any key variable handed to the optimizer.
    model.compile(optimizer=keras.optimizers.AdamW(1e-2, weight_decay=0.5))
    images = _images(4)
    snap = {"queue_0": model.queue.numpy()}
    model.fit(images, batch_size=4, epochs=1, verbose=0)  # step 1: now k != q
    snap["queue_1"], snap["pointer_1"] = model.queue.numpy(), int(model.queue_pointer.numpy())
    snap["k_before"] = [k.numpy() for k, _ in _averaged(model)]
    snap["moving_before"] = [v.numpy() for v in _moving(model)]
    model.fit(images, batch_size=4, epochs=1, verbose=0)  # step 2
    snap["k_after"] = [k.numpy() for k, _ in _averaged(model)]
    snap["q_after"] = [q.numpy() for _, q in _averaged(model)]
    snap["moving_after"] = [v.numpy() for v in _moving(model)]
    model.fit(images, batch_size=4, epochs=2, verbose=0)  # steps 3-4: 16 keys in 12 rows
    return model, snap


def test_key_encoder_starts_as_an_exact_copy():
    model = _model()
    pairs = _pairs(model)
    assert len(pairs) == len(model.encoder.weights) + len(model.projector.weights) > 10
    for key, query in pairs:
        assert key is not query and key.path == query.path
        np.testing.assert_array_equal(key.numpy(), query.numpy())
    images = keras_ssl.augment.to_float_images(_images(4))
    np.testing.assert_array_equal(model.key_encoder(images).numpy(), model.encoder(images).numpy())
    assert model.key_encoder.name == f"key_{model.encoder.name}"


def test_keys_get_no_gradient_and_stay_out_of_the_optimizer():
    model = _model()
    key_ids = {id(k) for k, _ in _pairs(model)}
    assert not key_ids & {id(v) for v in model.trainable_variables}
    model.trainable = False
    model.trainable = True  # re-flags every variable trainable; the keys must stay out
    assert not key_ids & {id(v) for v in model.trainable_variables}
    assert not key_ids & {id(v) for v in model.trainable_weights}
    assert key_ids <= {id(v) for v in model.non_trainable_weights}
    assert len(model.trainable_variables) == len(model.encoder.trainable_weights) + len(
        model.projector.trainable_weights
    )
    with tf.GradientTape() as tape:
        loss = model.compute_ssl_loss(_images(8), None, training=True)
    gradients = tape.gradient(loss, [k for k, _ in _averaged(model)] + model.trainable_variables)
    count = len(_averaged(model))
    assert all(g is None for g in gradients[:count])
    assert all(g is not None for g in gradients[count:])  # the queries do get gradients


def test_one_step_moves_each_key_weight_by_one_minus_m_times_q_minus_k(trained):
    # q after the optimizer step, k before it; an optimizer update of k (AdamW with weight
    # decay) would break the equality.
    _, snap = trained
    moved = 0.0
    for k, k_after, q in zip(snap["k_before"], snap["k_after"], snap["q_after"], strict=True):
        np.testing.assert_allclose(k_after, k + (1 - MOMENTUM) * (q - k), rtol=1e-5, atol=1e-7)
        moved = max(moved, float(np.abs(k_after - k).max()))
    assert moved > 1e-4
    # The key BatchNorm layers normalised with batch statistics, so their moving averages moved.
    assert any(not np.array_equal(a, b) for a, b in zip(snap["moving_after"],
                                                        snap["moving_before"], strict=True))


def test_momentum_update_leaves_the_key_batchnorm_statistics_alone():
    m = 0.5
    model = _model(momentum=m)
    for _, query in _pairs(model):  # make q != k everywhere, moving statistics included
        query.assign(query.numpy() + 1.0)
    keys = {id(k): k.numpy() for k, _ in _pairs(model)}
    model.after_train_step()
    averaged = {id(k) for k, _ in _averaged(model)}
    for key, query in _pairs(model):
        if id(key) in averaged:
            expected = m * keys[id(key)] + (1 - m) * query.numpy()
            np.testing.assert_allclose(key.numpy(), expected, rtol=1e-6)
        else:
            np.testing.assert_array_equal(key.numpy(), keys[id(key)])
    assert len(averaged) < len(keys)  # there were moving statistics to leave alone
    model.sync_targets()
    for key, query in _pairs(model):
        np.testing.assert_array_equal(key.numpy(), query.numpy())


def _unit_rows(n, dim, seed):
    rows = np.random.default_rng(seed).normal(size=(n, dim)).astype("float32")
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_queue_is_a_ring_buffer_that_wraps_around():
    model = _model(queue_size=10, projection_dim=4)
    initial = model.queue.numpy()
    assert initial.shape == (10, 4) and not model.queue.trainable
    np.testing.assert_allclose(np.linalg.norm(initial, axis=1), 1.0, rtol=1e-5)
    assert int(model.queue_pointer.numpy()) == 0
    expected = initial.copy()
    for seed, rows, pointer in ((0, [0, 1, 2, 3], 4), (1, [4, 5, 6, 7], 8),
                                (2, [8, 9, 0, 1], 2)):  # 10 is not a multiple of 4
        keys = _unit_rows(4, 4, seed)
        model._enqueue(tf.constant(keys))
        expected[rows] = keys
        np.testing.assert_array_equal(model.queue.numpy(), expected)
        assert int(model.queue_pointer.numpy()) == pointer


def test_training_enqueues_each_batch_of_keys(trained):
    model, snap = trained
    first, initial = snap["queue_1"], snap["queue_0"]
    assert snap["pointer_1"] == 4
    np.testing.assert_array_equal(first[4:], initial[4:])
    assert not np.isclose(first[:4], initial[:4]).all(axis=1).any()
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, rtol=1e-5)
    # Four steps of 4 keys in a queue of 12: wrapped around once.
    assert int(model.queue_pointer.numpy()) == 4
    assert not np.isclose(model.queue.numpy(), initial).all(axis=1).any()
    model.evaluate(_images(4), batch_size=4, verbose=0)  # evaluation does not enqueue
    assert int(model.queue_pointer.numpy()) == 4


def test_queue_and_key_encoder_are_saved_in_checkpoints(tmp_path, trained):
    model, _ = trained
    model.save_weights(tmp_path / "moco.weights.h5")
    restored = _model(queue_size=12, seed=7)
    assert not np.allclose(restored.queue.numpy(), model.queue.numpy())
    restored.load_weights(tmp_path / "moco.weights.h5")

    checkpoint = tf.train.Checkpoint(model=model).write(str(tmp_path / "ckpt"))
    from_checkpoint = _model(queue_size=12, seed=8)
    status = tf.train.Checkpoint(model=from_checkpoint).read(checkpoint)
    status.assert_existing_objects_matched().expect_partial()  # the optimizer is not restored

    for copy in (restored, from_checkpoint):
        np.testing.assert_array_equal(copy.queue.numpy(), model.queue.numpy())
        assert int(copy.queue_pointer.numpy()) == 4
        for (key, _), (original, _) in zip(_pairs(copy), _pairs(model), strict=True):
            np.testing.assert_array_equal(key.numpy(), original.numpy())


def test_export_load_encoder_and_keras_file(tmp_path, trained):
    model, _ = trained
    images = _images(8, seed=3)
    expected = keras_ssl.evaluate.embed(model, images)

    version = keras_ssl.export_encoder(model, tmp_path / "moco")
    assert version.name == "1"
    loaded = keras_ssl.load_encoder(tmp_path / "moco")
    np.testing.assert_allclose(loaded.predict(images, verbose=0), expected, rtol=1e-5, atol=1e-5)

    model.save(tmp_path / "moco.keras")
    restored = keras.saving.load_model(tmp_path / "moco.keras")
    assert isinstance(restored, keras_ssl.MoCo)
    assert (restored.momentum, restored.queue_size, restored.bn_splits) == (MOMENTUM, 12, 2)
    np.testing.assert_array_equal(restored.queue.numpy(), model.queue.numpy())
    for (key, _), (original, _) in zip(_pairs(restored), _pairs(model), strict=True):
        np.testing.assert_array_equal(key.numpy(), original.numpy())
    np.testing.assert_allclose(keras_ssl.evaluate.embed(restored, images), expected, atol=1e-5)


def test_queue_smaller_than_the_batch_fails_before_training():
    model = _model(queue_size=6)
    model.compile(optimizer="adam")
    with pytest.raises(KerasSSLError, match=r"queue_size \(6\) is smaller than the global batch"):
        model.fit(_images(8), batch_size=8, epochs=1, verbose=0)
    assert int(model.queue_pointer.numpy()) == 0


def test_batch_too_small_for_the_batchnorm_splits():
    model = _model(bn_splits=4)
    model.compile(optimizer="adam")
    with pytest.raises(KerasSSLError, match="at least 8"):
        model.fit(_images(4), batch_size=4, epochs=1, verbose=0)


def test_key_shuffle_gives_the_keys_back_in_order():
    # With splits, row n of the keys must still belong to example n: compare with one pass of
    # the key encoder in inference mode, where splitting and shuffling change nothing.
    model = _model(bn_splits=4)
    images = keras_ssl.augment.to_float_images(_images(8))
    whole = model._encode(model.key_encoder, model.key_projector, images, False, shuffle=True)
    for layer in model.key_encoder.layers + model.key_projector.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False  # frozen BatchNorm: inference statistics even in training
    split = model._encode(model.key_encoder, model.key_projector, images, True, shuffle=True)
    np.testing.assert_allclose(split.numpy(), whole.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.slow  # tests/test_xla.py checks every method compiles; this one trains longer
def test_loss_falls_and_step_runs_under_xla():
    # Digits, so that two crops of an image share content, and light views, so that a 4-channel
    # network makes progress in a few steps. The first epoch fills the queue with real keys
    # (before that the random negatives are easy), so compare with epoch 2.
    data = keras_ssl.data.load("digits")
    images = keras_ssl.augment.Resize(16, 16)(data.x_train[:128]).numpy()
    model = _model(queue_size=64, momentum=MOMENTUM, augmenter=keras_ssl.augment.weak(16, seed=1))
    model.compile(optimizer=keras.optimizers.Adam(3e-3), jit_compile=True)
    assert model.jit_compile is True
    history = model.fit(images, batch_size=32, epochs=12, verbose=0)
    assert model.jit_compile is True  # Keras silently falls back when a layer cannot compile
    assert xla.xla_compiled(model)  # the traced step is marked for XLA
    losses, accuracy = history.history["loss"], history.history["contrastive_accuracy"]
    assert min(losses[-2:]) < losses[1] - 0.3, (losses, accuracy)
    assert all(0.0 <= a <= 1.0 for a in accuracy)
    assert int(model.queue_pointer.numpy()) == (12 * 128) % 64


def test_vectors_train_with_an_mlp():
    keras.utils.set_random_seed(0)
    model = keras_ssl.MoCo(encoders.MLP(10, hidden=(16,), output_dim=8), queue_size=32,
                           projection_dim=8)
    model.compile(optimizer="adam")
    history = model.fit(np.random.default_rng(0).random((32, 10), "float32"), batch_size=16,
                        epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"momentum": 1.5}, "momentum"),
        ({"queue_size": 0}, "queue_size"),
        ({"bn_splits": 0}, "bn_splits"),
        ({"temperature": 0.0}, "temperature"),
    ],
)
def test_bad_settings_raise_clear_errors(settings, message):
    with pytest.raises(KerasSSLError, match=message):
        _model(**settings)


def test_encoder_that_cannot_be_cloned_is_refused():
    class Scale(keras.layers.Layer):  # __init__ takes an argument get_config does not return
        def __init__(self, factor):
            super().__init__()
            self.factor = factor

        def call(self, x):
            return x * self.factor

    inputs = keras.Input((10,))
    encoder = keras.Model(inputs, keras.layers.Dense(4)(Scale(2.0)(inputs)))
    with pytest.raises(KerasSSLError, match="clone_model"):
        keras_ssl.MoCo(encoder, queue_size=32)
