"""MultiWorkerMirroredStrategy: two worker processes on 127.0.0.1 train like one process.

Two workers (TF_CONFIG on two free local ports) and one plain process train the same SimCLR (its
real augmentation, synchronised BatchNorm) for two steps on the same global batches of 8. Each
worker gets 4 examples per step; negatives are gathered across the workers, augmentation draws
come from the global batch, batch statistics are all-reduced. Both workers must end with the
same weights, equal to the single process's, and report its losses.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from keras_ssl import distribute

REPO = Path(__file__).resolve().parents[1]

CHILD = textwrap.dedent(
    """
    import json, os, sys
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from keras_ssl import distribute
    mode, out = sys.argv[1], sys.argv[2]
    strategy = distribute.make_strategy("multi_worker" if mode == "worker" else "none")
    import keras
    import numpy as np
    import tensorflow as tf
    import keras_ssl

    N, STEPS = 8, 2  # global batch, steps
    x = np.random.default_rng(0).integers(0, 256, (N * STEPS, 16, 16, 1), dtype="uint8")

    class Record(keras.callbacks.Callback):
        losses, after_first = [], None
        def on_train_batch_end(self, batch, logs=None):
            Record.losses.append(float(logs["loss"]))
            if batch == 0:
                Record.after_first = [w.tolist() for w in self.model.get_weights()]

    with strategy.scope():
        keras.utils.set_random_seed(0)
        model = keras_ssl.SimCLR(keras_ssl.encoders.ConvNet((16, 16, 1), width=4),
                                 projection_dim=8, seed=1)
        distribute.sync_batchnorm(model)
        model.compile(optimizer=keras.optimizers.SGD(0.1), jit_compile=False)
    dataset = tf.data.Dataset.from_tensor_slices(x).batch(N)
    model.fit(dataset, epochs=1, verbose=0, callbacks=[Record()])
    with open(out, "w") as f:
        json.dump({
            "losses": Record.losses,
            "weights": [w.tolist() for w in model.get_weights()],
            "after_first": Record.after_first,
            "replicas": strategy.num_replicas_in_sync,
            "worker": distribute.worker_index(strategy),
            "chief": distribute.is_chief(strategy),
            "workers": distribute.num_workers(strategy),
        }, f)
    """
)


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("multi_worker")
    script = folder / "child.py"
    script.write_text(CHILD)
    base = dict(os.environ)
    base["PYTHONPATH"] = os.pathsep.join(p for p in (base.get("PYTHONPATH"), str(REPO)) if p)
    base.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    base.pop("TF_CONFIG", None)
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    procs = {}
    for name, tf_config in (("single", None), ("worker0", distribute.tf_config(workers, 0)),
                            ("worker1", distribute.tf_config(workers, 1))):
        env = dict(base)
        if tf_config:
            env["TF_CONFIG"] = tf_config
        mode = "single" if tf_config is None else "worker"
        procs[name] = subprocess.Popen(
            [sys.executable, str(script), mode, str(folder / f"{name}.json")], cwd=folder,
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
    results = {}
    try:
        for name, proc in procs.items():
            _, stderr = proc.communicate(timeout=600)
            assert proc.returncode == 0, f"{name} failed:\n{stderr[-4000:]}"
            results[name] = json.loads((folder / f"{name}.json").read_text())
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
    return results


def test_each_worker_holds_one_of_two_replicas(runs):
    assert runs["single"]["replicas"] == 1
    for index in (0, 1):
        run = runs[f"worker{index}"]
        assert run["replicas"] == 2 and run["workers"] == 2 and run["worker"] == index
        assert run["chief"] == (index == 0)


def test_both_workers_end_with_identical_weights(runs):
    first, second = runs["worker0"]["weights"], runs["worker1"]["weights"]
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(np.array(a), np.array(b))


def test_two_workers_train_like_one_process_on_the_global_batch(runs):
    single = runs["single"]
    for name in ("worker0", "worker1"):
        np.testing.assert_allclose(runs[name]["losses"], single["losses"], rtol=1e-5)
    # After one step. (A second step on these tiny batch-norm batches amplifies float rounding
    # to ~1e-2 in the first convolution; the same happens between XLA and graph mode.)
    for got, expected in zip(runs["worker0"]["after_first"], single["after_first"], strict=True):
        np.testing.assert_allclose(np.array(got), np.array(expected), rtol=1e-4, atol=1e-5)


@pytest.mark.slow  # two more worker processes
def test_cli_workers_share_the_run_and_only_the_chief_exports(tmp_path):
    """`keras-ssl pretrain --strategy multi_worker` on two local workers: worker 0 writes the
    export and the checkpoints in --checkpoint-dir, worker 1 its checkpoints in worker-1/."""
    base = dict(os.environ)
    base["PYTHONPATH"] = os.pathsep.join(p for p in (base.get("PYTHONPATH"), str(REPO)) if p)
    base.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    command = [sys.executable, "-m", "keras_ssl", "pretrain", "--method", "simclr",
               "--strategy", "multi_worker", "--data", "digits", "--epochs", "1",
               "--max-examples", "128", "--batch-size", "32", "--eval-examples", "128",
               "--knn-every", "0", "--verbose", "0", "--checkpoint-dir", str(tmp_path / "ckpt"),
               "--export", str(tmp_path / "export")]
    procs = [
        subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env={**base, "TF_CONFIG": distribute.tf_config(workers, i)})
        for i in (0, 1)
    ]
    outputs = []
    try:
        for index, proc in enumerate(procs):
            out, err = proc.communicate(timeout=600)
            assert proc.returncode == 0, f"worker {index} failed:\n{err[-4000:]}"
            outputs.append(out)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    for index, out in enumerate(outputs):
        assert f"strategy multi_worker (2 replicas, worker {index} of 2)" in out
    assert "Exported encoder to" in outputs[0] and "Exported encoder to" not in outputs[1]
    assert sorted(p.name for p in (tmp_path / "export").iterdir()) == ["1"]
    assert (tmp_path / "ckpt" / "run.json").exists()
    assert (tmp_path / "ckpt" / "worker-1" / "run.json").exists()
