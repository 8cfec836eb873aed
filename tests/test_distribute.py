"""keras_ssl.distribute and keras_ssl.replicas: strategies by name, per-replica randomness, sync BN.

The MirroredStrategy checks need two logical CPU devices, which must be configured before
TensorFlow initialises, so they run in a fresh Python process that prints its numbers as JSON.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_ssl
from keras_ssl import distribute, replicas
from keras_ssl.errors import KerasSSLError

REPO = Path(__file__).resolve().parents[1]


# ----- in this process (one device) ------------------------------------------------------------
def test_none_is_the_default_strategy_and_unknown_names_fail():
    assert distribute.make_strategy("none") is tf.distribute.get_strategy()
    assert distribute.make_strategy("none").num_replicas_in_sync == 1
    with pytest.raises(KerasSSLError, match="mirrored, multi_worker"):
        distribute.make_strategy("horovod")


def test_mirrored_on_one_device_works_and_says_there_is_no_data_parallelism(capsys):
    strategy = distribute.make_strategy("mirrored", devices=["/cpu:0"])
    assert strategy.num_replicas_in_sync == 1
    assert "MirroredStrategy with one device" in capsys.readouterr().out


def test_multi_worker_without_or_with_a_bad_tf_config_says_how_to_set_it(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(KerasSSLError, match="TF_CONFIG.*not set"):
        distribute.make_strategy("multi_worker")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(KerasSSLError, match="not a valid cluster"):
        distribute.make_strategy("multi_worker")
    monkeypatch.setenv("TF_CONFIG", distribute.tf_config(["a:1", "b:2"], 1).replace(
        '"index": 1', '"index": 5'))
    with pytest.raises(KerasSSLError, match="index from 0 to 1"):
        distribute.make_strategy("multi_worker")


def test_tf_config_describes_the_cluster_and_the_task():
    config = json.loads(distribute.tf_config(["10.0.0.1:2222", "10.0.0.2:2222"], 1))
    assert config == {"cluster": {"worker": ["10.0.0.1:2222", "10.0.0.2:2222"]},
                      "task": {"type": "worker", "index": 1}}
    with pytest.raises(KerasSSLError, match="index must be 0..1"):
        distribute.tf_config(["a:1", "b:1"], 2)
    with pytest.raises(KerasSSLError, match="host:port"):
        distribute.tf_config(["localhost"], 0)


def test_one_process_is_the_chief():
    assert distribute.is_chief() and distribute.worker_index() == 0
    assert distribute.num_workers() == 1


def test_sync_batchnorm_reaches_every_nested_batchnorm():
    model = keras_ssl.MoCo(keras_ssl.encoders.ConvNet((16, 16, 1), width=4), queue_size=16,
                           projection_dim=8)
    layers = [layer for layer in model._flatten_layers(include_self=False, recursive=True)
              if isinstance(layer, keras.layers.BatchNormalization)]
    assert layers and not any(layer.synchronized for layer in layers)
    # encoder, projection head and their momentum copies
    assert distribute.sync_batchnorm(model) == len(layers)
    assert all(layer.synchronized for layer in layers)
    assert model.key_encoder.get_layer("block1_a_bn").get_config()["synchronized"] is True


def test_sync_batchnorm_changes_nothing_on_one_device():
    x = np.random.default_rng(0).integers(0, 256, (8, 16, 16, 1), dtype="uint8")
    losses = []
    for sync in (False, True):
        keras.utils.set_random_seed(0)
        model = keras_ssl.SimCLR(keras_ssl.encoders.ConvNet((16, 16, 1), width=4),
                                 projection_dim=8, temperature=0.5, seed=0)
        if sync:
            distribute.sync_batchnorm(model)
        model.compile(optimizer="sgd", jit_compile=False)
        losses.append(model.fit(x, batch_size=8, verbose=0).history["loss"][0])
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-5)  # float32 reduction order


def test_splitting_an_initialised_cpu_again_is_refused():
    tf.constant(0.0)  # TensorFlow is initialised with one CPU device in this process
    with pytest.raises(KerasSSLError, match="already initialised"):
        distribute.use_logical_cpus(len(tf.config.list_logical_devices("CPU")) + 1)
    with pytest.raises(KerasSSLError, match="positive"):
        distribute.use_logical_cpus(0)


def test_replica_helpers_are_plain_draws_on_one_device():
    draw = lambda n: keras.random.uniform([n, 3], seed=5)  # noqa: E731
    np.testing.assert_array_equal(replicas.replica_rows(draw, 4), draw(4))
    assert replicas.num_replicas() == 1 and int(replicas.replica_id()) == 0
    plain, per_replica = keras.random.SeedGenerator(9), replicas.ReplicaSeedGenerator(9)
    for _ in range(2):
        np.testing.assert_array_equal(plain.next(), per_replica.next())


# ----- two replicas on two logical CPU devices (fresh process) ---------------------------------
CHILD = textwrap.dedent(
    """
    import json, os
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np
    from keras_ssl import distribute
    distribute.use_logical_cpus(2)
    import keras
    import tensorflow as tf
    import keras_ssl
    from keras_ssl import augment, replicas

    strategy = distribute.make_strategy("mirrored")
    out = {"replicas": strategy.num_replicas_in_sync}
    rng = np.random.default_rng(0)
    N = 8  # global batch: 4 per replica

    def per_replica(array):
        half = len(array) // 2
        return strategy.experimental_distribute_values_from_function(
            lambda ctx: tf.constant(array[ctx.replica_id_in_sync_group * half:][:half]))

    def local(values):
        return [np.asarray(v) for v in strategy.experimental_local_results(values)]

    # 1. Augmentation: 8 copies of one image, so any difference comes from the random draws.
    same = np.repeat(rng.integers(0, 256, (1, 16, 16, 3), dtype="uint8"), N, axis=0)
    single_views = augment.simclr(16, seed=3)(same, training=True).numpy()
    vectors = np.ones((N, 6), "float32")
    single_vectors = augment.vectors(seed=4)(vectors, training=True).numpy()
    wave = np.sin(np.linspace(0, 6, 40, dtype="float32"))[None, :, None]
    series = np.repeat(np.concatenate([wave, np.cos(wave)], -1), N, axis=0)
    series_recipe = lambda: augment.series(permute_segments=3, channel_mask=0.5, seed=6)
    single_series = series_recipe()(series, training=True).numpy()
    with strategy.scope():
        aug, vec, ser = augment.simclr(16, seed=3), augment.vectors(seed=4), series_recipe()
    views = local(strategy.run(tf.function(lambda x: aug(x, training=True)),
                               (per_replica(same),)))
    vector_views = local(strategy.run(tf.function(lambda x: vec(x, training=True)),
                                      (per_replica(vectors),)))
    out["replica_views_differ"] = not np.array_equal(views[0], views[1])
    out["views_max_diff"] = float(np.abs(np.concatenate(views) - single_views).max())
    out["vectors_max_diff"] = float(np.abs(np.concatenate(vector_views) - single_vectors).max())
    series_views = local(strategy.run(tf.function(lambda x: ser(x, training=True)),
                                      (per_replica(series),)))
    out["series_replicas_differ"] = not np.array_equal(series_views[0], series_views[1])
    out["series_max_diff"] = float(np.abs(np.concatenate(series_views) - single_series).max())

    # 2. Method seeds: the same state, a different seed per replica.
    with strategy.scope():
        generator = replicas.ReplicaSeedGenerator(11)
    seeds = local(strategy.run(tf.function(lambda: generator.next())))
    out["seeds"] = [s.tolist() for s in seeds]

    # 3. SimCLR with its real augmentation: two steps on a global batch of 8.
    x = rng.integers(0, 256, (2 * N, 16, 16, 1), dtype="uint8")

    class Record(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.losses, self.after_first = [], None
        def on_train_batch_end(self, batch, logs=None):
            # logs hold the running mean: step k's own loss is k * mean_k - (k-1) * mean_(k-1)
            self.losses.append(float(logs["loss"]))
            if batch == 0:
                self.after_first = [w.tolist() for w in self.model.get_weights()]

    def build(sync):
        keras.utils.set_random_seed(0)
        # Temperature 0.5, not the default 0.1, which multiplies float32 rounding by 10: what
        # is compared here is where the batch-norm statistics come from.
        model = keras_ssl.SimCLR(keras_ssl.encoders.ConvNet((16, 16, 1), width=4),
                                 projection_dim=8, temperature=0.5, seed=1)
        if sync:
            distribute.sync_batchnorm(model)
        model.compile(optimizer=keras.optimizers.SGD(0.1), jit_compile=False)
        return model

    def train(model):
        record = Record()
        model.fit(tf.data.Dataset.from_tensor_slices(x).batch(N), epochs=1, verbose=0,
                  callbacks=[record])
        return {"losses": record.losses, "after_first": record.after_first}

    out["single"] = train(build(sync=False))
    for sync in (True, False):
        initial = build(sync).get_weights()
        with strategy.scope():
            model = build(sync)
            model.set_weights(initial)
        out[f"mirrored_sync_{sync}"] = train(model)
    print(json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def mirrored(tmp_path_factory):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), str(REPO)) if p)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    proc = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True,
                          timeout=600, cwd=tmp_path_factory.mktemp("mirrored"), env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_make_strategy_mirrored_uses_every_logical_cpu(mirrored):
    assert mirrored["replicas"] == 2


def test_replicas_augment_differently_and_exactly_like_one_device(mirrored):
    # Before per-replica rows, both replicas cropped and coloured their images identically.
    assert mirrored["replica_views_differ"]
    assert mirrored["views_max_diff"] < 1e-5  # graph vs eager rounding
    assert mirrored["vectors_max_diff"] < 1e-5
    # Series views (crop, warps, scaling, jitter, segment shuffles, channel masks) alike.
    assert mirrored["series_replicas_differ"]
    assert mirrored["series_max_diff"] < 1e-5


def test_method_seeds_differ_between_replicas(mirrored):
    first, second = mirrored["seeds"]
    assert first == [11, 0] and second != first


def test_simclr_with_sync_batchnorm_on_two_replicas_trains_like_one_device(mirrored):
    single, synced = mirrored["single"], mirrored["mirrored_sync_True"]
    np.testing.assert_allclose(synced["losses"], single["losses"], rtol=1e-5)
    for got, expected in zip(synced["after_first"], single["after_first"], strict=True):
        np.testing.assert_allclose(np.array(got), np.array(expected), rtol=1e-4, atol=1e-5)


def test_without_sync_batchnorm_replica_statistics_change_the_loss(mirrored):
    # Each replica normalises with its own 2 x 4 views: the comparison above can fail.
    unsynced, single = mirrored["mirrored_sync_False"], mirrored["single"]
    assert abs(unsynced["losses"][0] - single["losses"][0]) > 1e-3
