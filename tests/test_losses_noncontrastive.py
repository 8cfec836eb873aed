"""BYOL, SimSiam, Barlow Twins, VICReg, DINO and NNCLR losses against NumPy references.

Values and gradients (central differences of the float64 NumPy reference), XLA compilation, and
2 CPU replicas under MirroredStrategy equal to one device on the same global batch (in a fresh
process: logical devices must be set before TensorFlow starts).
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from keras_ssl import losses
from keras_ssl.errors import KerasSSLError

REPO = Path(__file__).resolve().parents[1]


# ----- NumPy references (float64), written from the papers' equations ----------------------------
def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def byol_np(p1, p2, z1, z2):
    cos = lambda p, z: (_unit(p) * _unit(z)).sum(1)  # noqa: E731
    return np.mean(2 - 2 * cos(p1, z2)) + np.mean(2 - 2 * cos(p2, z1))


def simsiam_np(p1, p2, z1, z2):
    cos = lambda p, z: (_unit(p) * _unit(z)).sum(1)  # noqa: E731
    return -0.5 * np.mean(cos(p1, z2)) - 0.5 * np.mean(cos(p2, z1))


def barlow_np(z1, z2, lam=5e-3):
    bn = lambda z: (z - z.mean(0)) / np.sqrt(z.var(0) + 1e-5)  # noqa: E731
    c = bn(z1).T @ bn(z2) / len(z1)
    off = c - np.diag(np.diag(c))
    return ((1 - np.diag(c)) ** 2).sum() + lam * (off**2).sum()


def vicreg_np(z1, z2, a=25.0, b=25.0, c=1.0):
    n, d = z1.shape
    inv = np.mean((z1 - z2) ** 2)
    var = cov = 0.0
    for z in (z1, z2):
        z = z - z.mean(0)
        var += np.mean(np.maximum(0, 1 - np.sqrt(z.var(0, ddof=1) + 1e-4))) / 2
        m = z.T @ z / (n - 1)
        cov += ((m - np.diag(np.diag(m))) ** 2).sum() / d
    return a * inv + b * var + c * cov


def _log_softmax(x):
    x = x - x.max(1, keepdims=True)
    return x - np.log(np.exp(x).sum(1, keepdims=True))


def dino_np(students, teachers, center, ts=0.1, tt=0.04):
    total, terms = 0.0, 0
    for a, t in enumerate(teachers):
        q = np.exp(_log_softmax((t - center) / tt))
        for v, s in enumerate(students):
            if v != a:
                total += np.mean((-q * _log_softmax(s / ts)).sum(1))
                terms += 1
    return total / terms


def nnclr_np(nn, p, t=0.1):
    logits = _unit(nn) @ _unit(p).T / t
    return -np.mean(np.diag(_log_softmax(logits)))


def numerical_gradient(f, x, eps=1e-6):
    x = np.array(x, dtype=np.float64)
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[i] += eps
        down[i] -= eps
        grad[i] = (f(up) - f(down)) / (2 * eps)
    return grad


rng = np.random.default_rng(0)
N, D = 6, 4
P1, P2, Z1, Z2 = (rng.normal(size=(N, D)) for _ in range(4))
Z2 = Z1 + 0.5 * Z2


def _tf_grads(fn, *arrays):
    tensors = [tf.constant(a, tf.float32) for a in arrays]
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(tensors)
        value = fn(*tensors)
    return float(value), [tape.gradient(value, t) for t in tensors]


def _check_grad(tf_grad, np_grad):
    assert tf_grad is not None
    np.testing.assert_allclose(tf_grad.numpy(), np_grad, rtol=2e-3, atol=2e-5)


@pytest.mark.parametrize("tf_fn, np_fn", [(losses.byol, byol_np), (losses.simsiam, simsiam_np)])
def test_byol_and_simsiam_values_and_stop_gradient(tf_fn, np_fn):
    value, grads = _tf_grads(tf_fn, P1, P2, Z1, Z2)
    np.testing.assert_allclose(value, np_fn(P1, P2, Z1, Z2), rtol=1e-5)
    _check_grad(grads[0], numerical_gradient(lambda p: np_fn(p, P2, Z1, Z2), P1))
    _check_grad(grads[1], numerical_gradient(lambda p: np_fn(P1, p, Z1, Z2), P2))
    # z is the target: no gradient flows into it.
    assert grads[2] is None or not np.any(grads[2].numpy())
    assert grads[3] is None or not np.any(grads[3].numpy())
    # Perfect predictions: BYOL 0, SimSiam -1.
    perfect = float(tf_fn(Z2, Z1, Z1, Z2))
    assert perfect == pytest.approx(0.0 if tf_fn is losses.byol else -1.0, abs=1e-5)


@pytest.mark.parametrize("tf_fn, np_fn", [
    (lambda a, b: losses.barlow_twins(a, b, 5e-3), barlow_np),
    (lambda a, b: losses.vicreg(a, b), vicreg_np),
], ids=["barlow_twins", "vicreg"])
def test_barlow_twins_and_vicreg_values_and_gradients(tf_fn, np_fn):
    value, grads = _tf_grads(tf_fn, Z1, Z2)
    np.testing.assert_allclose(value, np_fn(Z1, Z2), rtol=1e-4)
    _check_grad(grads[0], numerical_gradient(lambda z: np_fn(z, Z2), Z1))
    _check_grad(grads[1], numerical_gradient(lambda z: np_fn(Z1, z), Z2))


def test_barlow_twins_is_zero_only_for_decorrelated_identical_views():
    # Rows of a scaled orthogonal matrix: each dimension standardised, dimensions uncorrelated.
    z = np.linalg.qr(rng.normal(size=(8, 4)))[0]
    z = (z - z.mean(0)) / z.std(0)
    assert float(losses.barlow_twins(z, z)) == pytest.approx(barlow_np(z, z), abs=1e-4)
    assert float(losses.barlow_twins(z, -z)) > 3.9  # anti-correlated: diagonal at -1


def test_vicreg_terms_and_weights():
    loss, (inv, var, cov) = losses.vicreg(Z1, Z2, 2.0, 3.0, 5.0, return_terms=True)
    assert float(loss) == pytest.approx(2 * float(inv) + 3 * float(var) + 5 * float(cov), rel=1e-5)
    assert float(losses.vicreg(Z1, Z1, 1.0, 0.0, 0.0)) == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(KerasSSLError, match="invariance"):
        losses.vicreg(Z1, Z2, invariance=-1.0)


def test_dino_value_gradient_and_teacher_stop_gradient():
    k = 5
    students = [rng.normal(size=(N, k)) for _ in range(4)]  # 2 global + 2 local
    teachers = [rng.normal(size=(N, k)) for _ in range(2)]
    center = rng.normal(size=k) * 0.1

    def fn(*tensors):
        return losses.dino(list(tensors[:4]), list(tensors[4:]), center, 0.1, 0.04)

    value, grads = _tf_grads(fn, *students, *teachers)
    np.testing.assert_allclose(value, dino_np(students, teachers, center), rtol=1e-5)
    for i in range(4):
        def f(s, i=i):
            return dino_np([s if j == i else students[j] for j in range(4)], teachers, center)
        _check_grad(grads[i], numerical_gradient(f, students[i]))
    assert all(g is None or not np.any(g.numpy()) for g in grads[4:])
    # The teacher temperature may be a tensor (the warm-up schedule's value).
    assert float(losses.dino(students, teachers, center, 0.1, tf.constant(0.04))) == pytest.approx(
        value, rel=1e-6)
    np.testing.assert_allclose(losses.dino_center(teachers).numpy(),
                               np.concatenate(teachers).mean(0), rtol=1e-6)
    with pytest.raises(KerasSSLError, match="two student views"):
        losses.dino(students[:1], teachers[:1], center)


def test_nnclr_neighbours_value_and_gradient():
    support = rng.normal(size=(10, D))
    nn = losses.nearest_neighbour(Z1, support).numpy()
    expected = _unit(support)[np.argmax(_unit(Z1) @ _unit(support).T, axis=1)]
    np.testing.assert_allclose(nn, expected, rtol=1e-6)
    value, grads = _tf_grads(lambda a, b: losses.nnclr(a, b, 0.1), nn, P2)
    np.testing.assert_allclose(value, nnclr_np(nn, P2), rtol=1e-5)
    assert grads[0] is None or not np.any(grads[0].numpy())
    _check_grad(grads[1], numerical_gradient(lambda p: nnclr_np(nn, p), P2))
    loss, accuracy = losses.nnclr(Z1, Z1 + 1e-3, 0.1, return_accuracy=True)
    assert float(accuracy) == 1.0


def test_every_loss_compiles_under_xla():
    students = [tf.constant(rng.normal(size=(N, 5)), tf.float32) for _ in range(3)]

    @tf.function(jit_compile=True)
    def all_losses(p1, p2, z1, z2):
        return (losses.byol(p1, p2, z1, z2) + losses.simsiam(p1, p2, z1, z2)
                + losses.barlow_twins(z1, z2) + losses.vicreg(z1, z2)
                + losses.dino(students, students[:2], losses.dino_center(students[:2]))
                + losses.nnclr(losses.nearest_neighbour(z1, p1), p2))

    args = [tf.constant(a, tf.float32) for a in (P1, P2, Z1, Z2)]
    assert np.isfinite(float(all_losses(*args)))


# ----- two replicas ----------------------------------------------------------------------------
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
    N, D, K = 12, 4, 5
    arrays = [rng.normal(size=(N, D)).astype("float32") for _ in range(4)]
    arrays += [rng.normal(size=(N, K)).astype("float32") for _ in range(4)]
    center = rng.normal(size=K).astype("float32")
    support = tf.constant(rng.normal(size=(20, D)).astype("float32"))

    def compute(t):
        p1, p2, z1, z2, s1, s2, s3, s4 = t
        return {
            "byol": losses.byol(p1, p2, z1, z2),
            "simsiam": losses.simsiam(p1, p2, z1, z2),
            "barlow_twins": losses.barlow_twins(z1, z2),
            "vicreg": losses.vicreg(z1, z2),
            "dino": losses.dino([s1, s2, s3, s4], [s1, s2], center, 0.1, 0.05),
            "nnclr": losses.nnclr(losses.nearest_neighbour(z1, support), p2, 0.1),
        }

    def single():
        t = [tf.constant(a) for a in arrays]
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(t)
            values = compute(t)
        out = {k: float(v) for k, v in values.items()}
        for k, v in values.items():
            grads = tape.gradient(v, t)
            out[k + "_grad"] = np.concatenate(
                [np.zeros_like(a) if g is None else g.numpy() for g, a in zip(grads, arrays)],
                axis=1).tolist()
        out["center"] = losses.dino_center([t[4], t[5]]).numpy().tolist()
        return out

    def distributed(split):
        def per_replica(array):
            parts = [array[:split], array[split:]]
            return strategy.experimental_distribute_values_from_function(
                lambda ctx: tf.constant(parts[ctx.replica_id_in_sync_group]))

        def step(*t):
            t = list(t)
            share = tf.cast(tf.shape(t[0])[0], tf.float32) / N
            with tf.GradientTape(persistent=True) as tape:
                tape.watch(t)
                values = {k: v * share for k, v in compute(t).items()}
            out = dict(values)
            for k, v in values.items():
                grads = tape.gradient(v, t)
                out[k + "_grad"] = tf.concat(
                    [tf.zeros_like(a) if g is None else g for g, a in zip(grads, t)], axis=1)
            out["center"] = losses.dino_center([t[4], t[5]])
            return out

        run = tf.function(lambda *args: strategy.run(step, args))
        out = run(*[per_replica(a) for a in arrays])
        result = {}
        for key, value in out.items():
            local = [v.numpy() for v in strategy.experimental_local_results(value)]
            if key.endswith("_grad"):
                result[key] = np.concatenate(local).tolist()
            elif key == "center":
                result[key] = local[0].tolist()
                result["center_replica_1"] = local[1].tolist()
            else:
                result[key] = float(sum(local))
        return result

    print(json.dumps({"single": single(), "even": distributed(N // 2), "uneven": distributed(5)}))
    """
)

LOSSES = ["byol", "simsiam", "barlow_twins", "vicreg", "dino", "nnclr"]


@pytest.fixture(scope="module")
def replicas(tmp_path_factory):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), str(REPO)) if p)
    proc = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path_factory.mktemp("replicas"), env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("split", ["even", "uneven"])
def test_two_replicas_match_one_device(replicas, split):
    single, dist = replicas["single"], replicas[split]
    for name in LOSSES:
        np.testing.assert_allclose(dist[name], single[name], rtol=1e-5, err_msg=name)
        np.testing.assert_allclose(np.array(dist[name + "_grad"]),
                                   np.array(single[name + "_grad"]), rtol=1e-4, atol=1e-6,
                                   err_msg=name)
    # DINO's centre is the mean over the global batch, the same on every replica.
    np.testing.assert_allclose(dist["center"], single["center"], rtol=1e-5)
    np.testing.assert_allclose(dist["center_replica_1"], single["center"], rtol=1e-5)
