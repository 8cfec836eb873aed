"""TS2Vec: the hierarchical contrastive loss against a NumPy transcription of the reference code,
the contextual crops, the method's training, export and bad inputs."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_ssl
from keras_ssl import encoders, losses
from keras_ssl.errors import KerasSSLError
from keras_ssl.methods.ts2vec import contextual_crops


# ----- NumPy reference: yuezhihan/ts2vec models/losses.py, on the sliced shared span -----------
def _log_softmax(x):
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def _drop_diagonal(sim):
    return np.tril(sim, -1)[:, :, :-1] + np.triu(sim, 1)[:, :, 1:]


def _instance(z1, z2):
    b = z1.shape[0]
    z = np.concatenate([z1, z2], 0).transpose(1, 0, 2)
    logits = -_log_softmax(_drop_diagonal(z @ z.transpose(0, 2, 1)))
    i = np.arange(b)
    return (logits[:, i, b + i - 1].mean() + logits[:, b + i, i].mean()) / 2


def _temporal(z1, z2):
    t = z1.shape[1]
    z = np.concatenate([z1, z2], 1)
    logits = -_log_softmax(_drop_diagonal(z @ z.transpose(0, 2, 1)))
    s = np.arange(t)
    return (logits[:, s, t + s - 1].mean() + logits[:, t + s, s].mean()) / 2


def _pool(z):
    half = z.shape[1] // 2
    return z[:, : 2 * half].reshape(z.shape[0], half, 2, -1).max(axis=2)


def reference_loss(z1, z2, alpha=0.5):
    loss, scales = 0.0, 0
    while z1.shape[1] > 1:
        loss += alpha * _instance(z1, z2) + (1 - alpha) * _temporal(z1, z2)
        scales += 1
        z1, z2 = _pool(z1), _pool(z2)
    if z1.shape[1] == 1:
        loss += alpha * _instance(z1, z2)
        scales += 1
    return loss / scales


def _log_softmax_1d(x):
    x = np.asarray(x) - np.max(x)
    return x - np.log(np.exp(x).sum())


def _contrast(anchor, candidates, positive):
    """-log softmax of the anchor's dot products with the candidates, at the positive."""
    return -_log_softmax_1d([anchor @ c for c in candidates])[positive]


def reference_loss_per_series(z1, z2, shared, alpha=0.5):
    """The loss where series i shares its first shared[i] steps, written term by term from the
    definition: an anchor is a shared step of a series in one view; instance-wise its candidates
    are the other series' same step in both views (where that step is shared) and its own series
    in the other view; over time, every other shared step of its series in both views."""
    views, shared = (np.asarray(z1, float), np.asarray(z2, float)), np.asarray(shared)
    total, scales = 0.0, 0
    while True:
        n, steps = views[0].shape[:2]
        instance, temporal = [], []
        for t in range(steps):
            rows = [i for i in range(n) if t < shared[i]]
            for v in (0, 1):
                for i in rows:
                    others = [(w, j) for w in (0, 1) for j in rows if (w, j) != (v, i)]
                    instance.append(_contrast(views[v][i, t], [views[w][j, t] for w, j in others],
                                              others.index((1 - v, i))))
        for i in range(n):
            own = [(w, t) for w in (0, 1) for t in range(min(shared[i], steps))]
            if len(own) < 4:  # one shared step: no other step to contrast with
                continue
            for v, t in own:
                others = [c for c in own if c != (v, t)]
                temporal.append(_contrast(views[v][i, t], [views[w][i, u] for w, u in others],
                                          others.index((1 - v, t))))
        if instance:
            total += alpha * np.mean(instance) + (
                (1 - alpha) * np.mean(temporal) if temporal else 0.0)
            scales += 1
        if steps == 1:
            return total / scales
        views, shared = (_pool(views[0]), _pool(views[1])), shared // 2


def _features(n=4, steps=11, dim=6, seed=0):
    rng = np.random.default_rng(seed)
    z1 = rng.normal(size=(n, steps, dim))
    return z1, z1 + 0.7 * rng.normal(size=z1.shape)


@pytest.mark.parametrize("valid", [11, 8, 5, 1])
@pytest.mark.parametrize("alpha", [0.5, 0.0, 1.0])
def test_hierarchical_loss_matches_the_reference_on_the_shared_steps(valid, alpha):
    z1, z2 = _features()
    expected = reference_loss(z1[:, :valid], z2[:, :valid], alpha)
    got = losses.hierarchical_contrastive(z1, z2, valid_steps=valid, alpha=alpha)
    np.testing.assert_allclose(float(got), expected, rtol=1e-4)
    # The steps after the shared span do not matter.
    noise = np.random.default_rng(5).normal(size=z1.shape) * (np.arange(11) >= valid)[:, None]
    moved = losses.hierarchical_contrastive(z1 + 9 * noise, z2, valid_steps=valid, alpha=alpha)
    np.testing.assert_allclose(float(moved), float(got), rtol=1e-5)


@pytest.mark.parametrize("alpha", [0.5, 0.0, 1.0])
def test_hierarchical_loss_with_a_shared_span_per_series_matches_the_definition(alpha):
    z1, z2 = _features(n=4, steps=7, dim=3)
    shared = np.array([6, 1, 3, 4])
    got = losses.hierarchical_contrastive(z1, z2, valid_steps=shared, alpha=alpha)
    np.testing.assert_allclose(float(got), reference_loss_per_series(z1, z2, shared, alpha),
                               rtol=1e-4)
    # One span for all reads as that span for each series.
    np.testing.assert_allclose(
        float(losses.hierarchical_contrastive(z1, z2, valid_steps=np.array([5] * 4))),
        reference_loss(z1[:, :5], z2[:, :5]), rtol=1e-4)
    # The steps after each series' span do not matter, as anchors or as negatives.
    after = np.arange(7)[None, :, None] >= shared[:, None, None]
    noise = 9 * np.random.default_rng(5).normal(size=z1.shape) * after
    moved = losses.hierarchical_contrastive(z1 + noise, z2 - noise, valid_steps=shared,
                                            alpha=alpha)
    np.testing.assert_allclose(float(moved), float(got), rtol=1e-5)
    a = tf.Variable(z1.astype("float32"))
    with tf.GradientTape() as tape:
        loss = losses.hierarchical_contrastive(a, z2.astype("float32"), shared, alpha=alpha)
    grad = tape.gradient(loss, a).numpy()
    assert np.abs(grad[after[..., 0]]).max() == 0
    eps = 1e-5
    for index in [(0, 5, 0), (1, 0, 2), (2, 2, 1), (3, 1, 0)]:
        up, down = z1.copy(), z1.copy()
        up[index] += eps
        down[index] -= eps
        numeric = (reference_loss_per_series(up, z2, shared, alpha)
                   - reference_loss_per_series(down, z2, shared, alpha)) / (2 * eps)
        np.testing.assert_allclose(grad[index], numeric, rtol=2e-3, atol=1e-5)
    with pytest.raises(KerasSSLError, match=r"one per series \[N\]"):
        losses.hierarchical_contrastive(z1, z2, valid_steps=np.ones((4, 1), "int32"))


def test_hierarchical_loss_gradient_matches_finite_differences_of_the_reference():
    z1, z2 = _features(n=3, steps=6, dim=4)
    a = tf.Variable(z1.astype("float32"))
    with tf.GradientTape() as tape:
        loss = losses.hierarchical_contrastive(a, z2.astype("float32"), valid_steps=5)
    grad = tape.gradient(loss, a).numpy()
    eps = 1e-5
    for index in [(0, 0, 0), (1, 3, 2), (2, 4, 3), (0, 5, 1)]:
        up, down = z1.copy(), z1.copy()
        up[index] += eps
        down[index] -= eps
        numeric = (reference_loss(up[:, :5], z2[:, :5]) - reference_loss(down[:, :5], z2[:, :5]))
        np.testing.assert_allclose(grad[index], numeric / (2 * eps), rtol=2e-3, atol=1e-5)
    assert grad[:, 5].max() == 0 == grad[:, 5].min()  # step 5 lies outside the shared span


def test_hierarchical_loss_compiles_with_xla_and_checks_its_inputs():
    z1, z2 = (z.astype("float32") for z in _features())
    jitted = tf.function(lambda a, b, v: losses.hierarchical_contrastive(a, b, v), jit_compile=True)
    np.testing.assert_allclose(float(jitted(z1, z2, tf.constant(7))),
                               reference_loss(z1[:, :7], z2[:, :7]), rtol=1e-4)
    with pytest.raises(KerasSSLError, match=r"per-step features \[batch, steps, dim\]"):
        losses.hierarchical_contrastive(z1[:, 0], z2[:, 0])
    with pytest.raises(KerasSSLError, match="alpha must lie in"):
        losses.hierarchical_contrastive(z1, z2, alpha=1.5)


# ----- the crops ----------------------------------------------------------------------------------
def test_crops_share_their_span_and_are_placed_per_series():
    x = np.repeat(np.arange(40, dtype="float32")[None, :, None], 16, axis=0)
    for seed in range(5):
        crops = contextual_crops(x, seed=seed)
        start, overlap = int(crops.start[0]), int(crops.overlap[0])
        # Series of one length share the batch's crop lengths.
        assert len(set(crops.start.numpy())) == 1 == len(set(crops.overlap.numpy()))
        v1, v2 = crops.view1.numpy()[..., 0], crops.view2.numpy()[..., 0]
        assert 2 <= overlap <= 40
        np.testing.assert_array_equal(v1[:, start:start + overlap], v2[:, :overlap])
        for view, keep in ((v1, crops.keep1.numpy()), (v2, crops.keep2.numpy())):
            length = int(keep[0].sum())
            assert (keep == (np.arange(40) < length)).all()
            assert (view[:, length:] == 0).all()
            # Each crop is consecutive steps of its series.
            assert (np.diff(view[:, :length], axis=1) == 1).all()
        if overlap < 30:  # room to move: the 16 copies of one series are cropped at other steps
            assert len({row[0] for row in v2}) > 1


def test_crops_of_padded_series_stay_within_each_series():
    lengths = np.array([40, 9, 25, 2, 40, 17, 33, 5])
    x = np.zeros((8, 40, 1), "float32")
    for i, length in enumerate(lengths):  # steps 1 .. L, then zero padding
        x[i, :length, 0] = np.arange(1, length + 1)
    for seed in range(8):
        crops = contextual_crops(x, seed=seed, lengths=lengths)
        plain = contextual_crops(x, seed=seed)
        v1, v2 = crops.view1.numpy()[..., 0], crops.view2.numpy()[..., 0]
        start, overlap = crops.start.numpy(), crops.overlap.numpy()
        for i, length in enumerate(lengths):
            assert min(2, length) <= overlap[i] <= length
            np.testing.assert_array_equal(v1[i, start[i]:start[i] + overlap[i]],
                                          v2[i, :overlap[i]])
            for view, keep in ((v1[i], crops.keep1.numpy()[i]), (v2[i], crops.keep2.numpy()[i])):
                kept = view[keep == 1]
                # Consecutive steps of the series, none of its padding.
                assert len(kept) >= overlap[i] and (kept >= 1).all() and (kept <= length).all()
                assert (np.diff(kept) == 1).all() and (view[keep == 0] == 0).all()
        # Full-length series are cropped as without lengths (the same draws).
        for i in np.flatnonzero(lengths == 40):
            for a, b in zip(crops, plain, strict=True):
                np.testing.assert_array_equal(np.asarray(a)[i], np.asarray(b)[i])


def test_crops_are_the_same_under_xla():
    x = np.random.default_rng(0).normal(size=(8, 30, 2)).astype("float32")
    eager = contextual_crops(x, seed=tf.constant([3, 4], tf.int64))
    jitted = tf.function(lambda v, s: tuple(contextual_crops(v, seed=s)), jit_compile=True)(
        x, tf.constant([3, 4], tf.int64))
    for a, b in zip(eager, jitted, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


# ----- the method ---------------------------------------------------------------------------------
def _waves(n, steps, channels, seed=0):
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, steps)[None, :, None]
    freq = rng.integers(1, 4, (n, 1, channels))
    return (np.sin(2 * np.pi * freq * t + rng.uniform(0, 6, (n, 1, channels)))).astype("float32")


def test_ts2vec_trains_with_xla_exports_and_refuses_other_encoders(tmp_path):
    x = _waves(16, 24, 2)
    keras.utils.set_random_seed(0)
    model = keras_ssl.TS2Vec(encoders.DilatedConv1D((24, 2), width=8, depth=3), seed=0)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), jit_compile=True)

    def fixed_loss():  # the loss on the same crops and masks, before and after training
        crops = contextual_crops(x, seed=7)
        z1, z2 = (model.step_features(v, k, tf.constant([1, i], tf.int64), training=False)
                  for i, (v, k) in enumerate([crops[0:3:2], crops[1:4:2]]))
        shift = tf.minimum(crops.start[:, None] + tf.range(24)[None], 23)
        return float(losses.hierarchical_contrastive(tf.gather(z1, shift, batch_dims=1), z2,
                                                     crops.overlap))

    before = fixed_loss()
    history = model.fit(x, batch_size=8, epochs=8, verbose=0).history["loss"]
    assert np.isfinite(history).all() and fixed_loss() < 0.95 * before  # 2.43 -> 2.27
    padded = x.copy()
    padded[::2, 9:] = 0.0  # half the series end at step 9: cropped within it
    within = keras_ssl.TS2Vec(encoders.DilatedConv1D((24, 2), width=8, depth=1), seed=0,
                              within_length=True)
    within.compile(optimizer="adam", jit_compile=True)
    assert np.isfinite(within.fit(padded, batch_size=8, epochs=1, verbose=0).history["loss"]).all()
    assert keras_ssl.TS2Vec.from_config(within.get_config()).within_length is True
    version = keras_ssl.export_encoder(model, tmp_path / "ts2vec")
    loaded = keras_ssl.load_encoder(version)
    np.testing.assert_allclose(loaded(x[:3]).numpy(), model(x[:3]).numpy(), rtol=1e-4, atol=1e-4)
    assert model(x[:3]).shape == (3, 40)
    restored = keras_ssl.TS2Vec.from_config(model.get_config())
    assert (restored.alpha, restored.mask_rate, restored.within_length) == (0.5, 0.5, False)
    with pytest.raises(KerasSSLError, match="--encoder dilated_conv1d"):
        keras_ssl.TS2Vec(encoders.ResNet1D((24, 2), width=4))
    with pytest.raises(KerasSSLError, match="mask_rate must be"):
        keras_ssl.TS2Vec(encoders.DilatedConv1D((24, 2), width=8, depth=1), mask_rate=1.0)


def test_ts2vec_is_registered_with_its_encoder():
    cls, _ = keras_ssl.METHODS["ts2vec"]
    assert cls is keras_ssl.TS2Vec and cls.default_encoder == "dilated_conv1d"
    assert encoders.build("dilated_conv1d", (50, 3), width=8).output_shape == (None, 40)


def test_dilations_beyond_the_series_are_capped_without_changing_the_function():
    encoder = encoders.DilatedConv1D((12, 2), width=4, depth=6)  # dilations 1 .. 32
    capped = encoder.get_layer("steps").get_layer("block6_conv1")
    assert capped.dilation_rate == (12,)
    full = keras.layers.Conv1D(4, 3, padding="same", dilation_rate=32)
    h = np.random.default_rng(0).normal(size=(3, 12, 4)).astype("float32")
    full.build(h.shape)
    full.set_weights(capped.get_weights())
    np.testing.assert_allclose(capped(h).numpy(), full(h).numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("within_length", [True, False])
def test_ts2vec_crops_within_each_series_length_only_when_asked(monkeypatch, within_length):
    from keras_ssl.methods import ts2vec

    seen = []

    def spy(x, seed=None, min_overlap=2, lengths=None):
        seen.append(None if lengths is None else np.asarray(lengths).tolist())
        return contextual_crops(x, seed, min_overlap, lengths)

    monkeypatch.setattr(ts2vec, "contextual_crops", spy)
    x = _waves(4, 24, 2)
    x[1, 9:] = x[3, 20:] = 0.0
    model = keras_ssl.TS2Vec(encoders.DilatedConv1D((24, 2), width=4, depth=1), seed=0,
                             within_length=within_length)
    assert np.isfinite(float(model.compute_ssl_loss(tf.constant(x), None, training=False)))
    assert seen == [[24, 9, 24, 20] if within_length else None]
