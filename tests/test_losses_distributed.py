"""nt_xent, supcon and TS2Vec's hierarchical loss (one shared span for the batch, and one per
series) under tf.distribute: two CPU replicas give the single-device loss and gradient.

Logical devices must be configured before TensorFlow initialises, so the distributed part runs
in a fresh Python process (once per module) and prints its numbers as JSON; the tests below
compare them.
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
    from keras_ssl import losses

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    rng = np.random.default_rng(0)
    N, D = 16, 8
    z1 = rng.normal(size=(N, D)).astype("float32")
    z2 = (z1 + 0.5 * rng.normal(size=(N, D))).astype("float32")
    labels = rng.integers(0, 4, N).astype("int64")  # repeated labels across replicas
    # TS2Vec's per-step features [N, T, D'], the first 5 of 7 steps shared by the views.
    s1 = rng.normal(size=(N, 7, 4)).astype("float32")
    s2 = (s1 + 0.5 * rng.normal(size=s1.shape)).astype("float32")
    # Series of different lengths: 1 to 7 shared steps each, unevenly spread over the replicas.
    shared = np.array([7, 1, 3, 7, 2, 5, 6, 7, 1, 2, 2, 3, 4, 2, 1, 3], "int32")

    def single(z1, z2, labels, s1=s1, s2=s2, shared=shared):
        # One device, the whole global batch.
        a, b, c, d = (tf.constant(v) for v in (z1, z2, s1, s2))
        with tf.GradientTape(persistent=True) as tape:
            tape.watch([a, b, c, d])
            nt, acc = losses.nt_xent(a, b, 0.5, return_accuracy=True)
            sc = losses.supcon(a, b, labels, 0.1)
            hc = losses.hierarchical_contrastive(c, d, valid_steps=5)
            hl = losses.hierarchical_contrastive(c, d, valid_steps=shared)
        return {
            "nt_xent": float(nt), "accuracy": float(acc), "supcon": float(sc),
            "hierarchical": float(hc), "hierarchical_lengths": float(hl),
            "hierarchical_lengths_grad": np.concatenate(tape.gradient(hl, [c, d])).tolist(),
            "nt_xent_grad": np.concatenate(tape.gradient(nt, [a, b])).tolist(),
            "supcon_grad": np.concatenate(tape.gradient(sc, [a, b])).tolist(),
            "hierarchical_grad": np.concatenate(tape.gradient(hc, [c, d])).tolist(),
        }

    def distributed(split):
        # split: the global row index where replica 1's rows start.
        def per_replica(array):
            parts = [array[:split], array[split:]]
            return strategy.experimental_distribute_values_from_function(
                lambda ctx: tf.constant(parts[ctx.replica_id_in_sync_group])
            )

        def step(a, b, y, c, d, e):
            # Each replica's loss is a mean over its own anchors; weight it by its share of the
            # global batch (1 / num_replicas for even splits, as Keras' train_step scales).
            ctx = tf.distribute.get_replica_context()
            share = tf.cast(tf.shape(a)[0], tf.float32) / N
            with tf.GradientTape(persistent=True) as tape:
                tape.watch([a, b, c, d])
                nt, acc = losses.nt_xent(a, b, 0.5, return_accuracy=True)
                sc = losses.supcon(a, b, y, 0.1)
                hc = losses.hierarchical_contrastive(c, d, valid_steps=5)
                hl = losses.hierarchical_contrastive(c, d, valid_steps=e)
                nt_w, sc_w, hc_w, hl_w = nt * share, sc * share, hc * share, hl * share
            return {
                "nt_xent": nt_w, "accuracy": acc * share, "supcon": sc_w, "hierarchical": hc_w,
                "nt_xent_grad": tf.concat(tape.gradient(nt_w, [a, b]), 0),
                "supcon_grad": tf.concat(tape.gradient(sc_w, [a, b]), 0),
                "hierarchical_grad": tf.concat(tape.gradient(hc_w, [c, d]), 0),
                "hierarchical_lengths": hl_w,
                "hierarchical_lengths_grad": tf.concat(tape.gradient(hl_w, [c, d]), 0),
                "num_replicas": ctx.num_replicas_in_sync,
                "unweighted_nt_xent": nt,
            }

        run = tf.function(lambda *args: strategy.run(step, args))
        out = run(per_replica(z1), per_replica(z2), per_replica(labels), per_replica(s1),
                  per_replica(s2), per_replica(shared))
        result = {}
        for key in ("nt_xent", "accuracy", "supcon", "hierarchical", "hierarchical_lengths"):
            result[key] = float(strategy.reduce(tf.distribute.ReduceOp.SUM, out[key], axis=None))
        result["mean_of_replica_nt_xent"] = float(
            strategy.reduce(tf.distribute.ReduceOp.MEAN, out["unweighted_nt_xent"], axis=None)
        )
        for key in ("nt_xent_grad", "supcon_grad", "hierarchical_grad",
                    "hierarchical_lengths_grad"):
            # Replica r holds d(sum of weighted losses)/d(its own rows of [z1; z2]).
            local = [g.numpy() for g in strategy.experimental_local_results(out[key])]
            n = [split, N - split]
            g1 = np.concatenate([local[r][: n[r]] for r in range(2)])
            g2 = np.concatenate([local[r][n[r]:] for r in range(2)])
            result[key] = np.concatenate([g1, g2]).tolist()
        result["num_replicas"] = int(strategy.experimental_local_results(out["num_replicas"])[0])
        return result

    def halves():
        # What each replica would compute on its own rows only (no gathering).
        h = N // 2
        parts = [single(z1[s], z2[s], labels[s], s1[s], s2[s], shared[s])
                 for s in (slice(None, h), slice(h, None))]
        return {key: (parts[0][key] + parts[1][key]) / 2
                for key in ("nt_xent", "supcon", "hierarchical")}

    with strategy.scope():  # cross-replica context: no replica to gather from, local loss
        in_scope = float(losses.nt_xent(z1, z2, 0.5))

    print(json.dumps({
        "single": single(z1, z2, labels),
        "even": distributed(N // 2),
        "uneven": distributed(9),
        "halves": halves(),
        "in_scope": in_scope,
    }))
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


@pytest.mark.parametrize("split", ["even", "uneven"])
@pytest.mark.parametrize("loss", ["nt_xent", "supcon", "hierarchical", "hierarchical_lengths"])
def test_two_replicas_match_single_device_loss_and_gradient(results, split, loss):
    single, dist = results["single"], results[split]
    assert dist["num_replicas"] == 2
    np.testing.assert_allclose(dist[loss], single[loss], rtol=1e-5)
    np.testing.assert_allclose(
        np.array(dist[f"{loss}_grad"]), np.array(single[f"{loss}_grad"]), rtol=1e-4, atol=1e-6
    )


def test_even_split_mean_over_replicas_is_the_global_loss(results):
    # With equal per-replica batches the plain MEAN reduction of the replicas' losses is the
    # single-device loss; likewise the contrastive accuracy.
    np.testing.assert_allclose(
        results["even"]["mean_of_replica_nt_xent"], results["single"]["nt_xent"], rtol=1e-5
    )
    np.testing.assert_allclose(
        results["even"]["accuracy"], results["single"]["accuracy"], rtol=1e-6
    )


@pytest.mark.parametrize("loss", ["nt_xent", "supcon", "hierarchical"])
def test_without_gathering_the_loss_would_differ(results, loss):
    # Each replica seeing only its own negatives gives a smaller loss (fewer negatives): the
    # comparison above can fail.
    assert results["halves"][loss] < results["single"][loss] - 0.05


def test_cross_replica_context_computes_locally(results):
    np.testing.assert_allclose(results["in_scope"], results["single"]["nt_xent"], rtol=1e-6)
