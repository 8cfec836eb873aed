"""SupCon and MoCo under MirroredStrategy: two CPU replicas train like one device on the global batch.

Logical devices must be configured before TensorFlow initialises, so the training runs in a fresh
Python process that prints its numbers as JSON. The models avoid BatchNormalization in this
comparison (an encoder of Dense layers, a one-layer projection head): its batch statistics are
per replica by design, so it could not match one device; the MoCo default with BatchNorm and
`bn_splits` is run on its own to show its replicas' queues stay identical. No XLA: with
MirroredStrategy on CPU, TF 2.21 fails to compile the collectives (a resource on CPU:1 accessed
from CPU:0), and Keras' default `jit_compile="auto"` turns XLA off under a strategy anyway.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]

CHILD = textwrap.dedent(
    """
    import json, os
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    import keras_ssl
    from keras_ssl import heads
    from keras_ssl.methods._momentum import momentum_copy

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    rng = np.random.default_rng(0)
    N, STEPS = 8, 2  # global batch, steps
    x = rng.normal(size=(N * STEPS, 6)).astype("float32")
    y = rng.integers(0, 3, N * STEPS)  # labels repeat within and across replicas

    def encoder():
        inputs = keras.Input((6,))
        hidden = keras.layers.Dense(16, activation="relu")(inputs)
        return keras.Model(inputs, keras.layers.Dense(8)(hidden))

    def build(kind):
        keras.utils.set_random_seed(0)
        identity = keras.layers.Identity()  # deterministic views: replicas draw other numbers
        if kind == "supcon":
            model = keras_ssl.SupCon(encoder(), augmenter=identity, projection_dim=4,
                                     temperature=0.5)
            model.projector = heads.projection_head(8, 4, num_layers=1)
        else:
            model = keras_ssl.MoCo(encoder(), augmenter=identity, projection_dim=4,
                                   queue_size=20, momentum=0.9, temperature=0.5, bn_splits=1)
            model.projector = heads.projection_head(8, 4, num_layers=1)
            model.key_projector = momentum_copy(model.projector, "key_projection_head")
        model.compile(optimizer=keras.optimizers.SGD(0.5), jit_compile=False)
        return model

    def dataset(kind):
        data = (x, y) if kind == "supcon" else x
        return tf.data.Dataset.from_tensor_slices(data).batch(N)

    def local(variable):
        # The per-replica copies of a variable (one on a single device).
        return [np.asarray(v).tolist() for v in
                tf.distribute.get_strategy().experimental_local_results(variable.value)]

    def state(model, history):
        out = {"loss": history.history["loss"],
               "weights": [w.tolist() for w in model.get_weights()]}
        if isinstance(model, keras_ssl.MoCo):
            out["queues"] = local(model.queue)
            out["pointers"] = local(model.queue_pointer)
        return out

    results = {}
    for kind in ("supcon", "moco"):
        single = build(kind)
        initial = single.get_weights()
        history = single.fit(dataset(kind), epochs=1, verbose=0)
        results[kind] = {"single": state(single, history)}
        with strategy.scope():
            mirrored = build(kind)
            mirrored.set_weights(initial)
            history = mirrored.fit(dataset(kind), epochs=1, verbose=0)
            results[kind]["mirrored"] = state(mirrored, history)

    # The default MoCo (BatchNorm in the MLP and the head, bn_splits=2) under the strategy.
    with strategy.scope():
        keras.utils.set_random_seed(0)
        moco = keras_ssl.MoCo(keras_ssl.encoders.MLP(6, hidden=(16,), output_dim=8),
                              projection_dim=4, queue_size=20)
        moco.compile(optimizer="adam")
        history = moco.fit(dataset("moco"), epochs=1, verbose=0)
        queues = [np.asarray(q) for q in
                  strategy.experimental_local_results(moco.queue.value)]
        results["default_moco"] = {
            "replicas": len(queues),
            "queues_identical": bool(all(np.array_equal(q, queues[0]) for q in queues)),
            "pointers": local(moco.queue_pointer),
            "finite": bool(np.isfinite(history.history["loss"]).all()),
        }
    print(json.dumps(results))
    """
)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), str(REPO)) if p)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    proc = subprocess.run(
        [sys.executable, "-c", CHILD],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path_factory.mktemp("distributed"),  # keras_ssl comes from PYTHONPATH
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("kind", ["supcon", "moco"])
def test_two_replicas_train_like_one_device(results, kind):
    single, mirrored = results[kind]["single"], results[kind]["mirrored"]
    np.testing.assert_allclose(mirrored["loss"], single["loss"], rtol=1e-5)
    assert len(mirrored["weights"]) == len(single["weights"])
    for got, expected in zip(mirrored["weights"], single["weights"], strict=True):
        np.testing.assert_allclose(np.array(got), np.array(expected), rtol=1e-4, atol=1e-6)


def test_moco_gathers_keys_so_every_replica_holds_the_one_device_queue(results):
    single, mirrored = results["moco"]["single"], results["moco"]["mirrored"]
    assert len(mirrored["queues"]) == 2 and len(single["queues"]) == 1
    expected = np.array(single["queues"][0])
    for queue in mirrored["queues"]:  # both replicas, in the single device's row order
        np.testing.assert_allclose(np.array(queue), expected, rtol=1e-5, atol=1e-6)
    assert mirrored["pointers"] == [16, 16] and single["pointers"] == [16]


def test_default_moco_with_batchnorm_splits_keeps_replica_queues_identical(results):
    default = results["default_moco"]
    assert default["replicas"] == 2 and default["queues_identical"] and default["finite"]
    assert default["pointers"] == [16, 16]
