"""Streamed data: every source, exact resume, bad files, worker sharding, streamed evaluation.

The fixtures are tiny image folders made here; each image's pixels hold its file number, so a
batch says which files it came from.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import keras_ssl
from keras_ssl import data, encoders, evaluate
from keras_ssl.callbacks import KNNMonitor
from keras_ssl.checkpoint import fit_resumable
from keras_ssl.data import Position, SSLData, StreamData, stream
from keras_ssl.data.prepare import prepare
from keras_ssl.errors import KerasSSLError

REPO = Path(__file__).resolve().parents[1]


def _numbered_folder(root: Path, classes=2, per_class=10, size=8, deep=True, mode="L"):
    """class sub-folders (some files one level deeper) of random-texture PNGs whose first pixel is
    the file number."""
    number = 0
    for c in range(classes):
        for i in range(per_class):
            folder = root / f"class{c}" / ("deep" if deep and i % 3 == 0 else "")
            folder.mkdir(parents=True, exist_ok=True)
            pixels = np.random.default_rng(number).integers(0, 256, (size, size), np.uint8)
            pixels[0, 0] = number
            image = Image.fromarray(pixels)
            image = image.convert(mode) if mode != "L" else image
            image.save(folder / f"{number:04d}.png")
            number += 1
    return root


def _numbers(images) -> list[int]:
    return [int(v) for v in np.asarray(images)[:, 0, 0, 0]]


# ----- sources --------------------------------------------------------------------------------
def test_a_folder_streams_with_labels_from_class_folders_at_any_depth(tmp_path):
    root = _numbered_folder(tmp_path / "photos")
    d = data.load(root, stream=True, test_fraction=0.2, seed=0)
    assert isinstance(d, StreamData)
    assert d.kind == "images" and d.name == "photos" and d.input_shape == (8, 8, 1)
    assert d.has_labels and d.class_names == ["class0", "class1"] and d.num_classes == 2
    assert d.num_train == 16 and d.num_test == 4
    seen = []
    for images, labels in d.train_dataset(4, labels=True).as_numpy_iterator():
        assert images.dtype == np.uint8 and images.shape == (4, 8, 8, 1)
        np.testing.assert_array_equal(labels, np.array(_numbers(images)) // 10)
        seen += _numbers(images)
    held_out = _numbers(np.concatenate(list(d.test_dataset(3).as_numpy_iterator())))
    assert len(set(seen)) == 16 and not set(seen) & set(held_out)
    assert sorted(seen + held_out) == list(range(20))
    # image_size resizes to the storage size; an epoch of unequal batches when asked
    small = data.load(root, stream=True, image_size=(4, 6), test_fraction=0)
    shapes = [b.shape for b in small.train_dataset(6, drop_remainder=False)]
    assert shapes == [(6, 4, 6, 1)] * 3 + [(2, 4, 6, 1)]


def test_flat_folders_file_lists_globs_and_single_files(tmp_path):
    root = _numbered_folder(tmp_path / "p", classes=1, per_class=6, deep=False)
    flat = root / "class0"
    d = data.load(flat, stream=True)
    assert not d.has_labels and d.num_train == 6 and d.evaluation_arrays(4) is None
    files = sorted(str(p) for p in flat.glob("*.png"))
    listed = data.load(files[:4], stream=True)
    assert isinstance(listed, StreamData) and listed.num_train == 4
    globbed = data.load(str(root / "**" / "*.png"), stream=True)
    assert globbed.num_train == 6
    one = data.load(files[0], stream=True)
    assert one.num_train == 1
    # stream=False and the automatic choice keep small data in memory
    assert isinstance(data.load(files[:4], stream=False), SSLData)
    assert isinstance(data.load(flat), SSLData)


def test_the_automatic_choice_streams_above_the_threshold(tmp_path, monkeypatch):
    root = _numbered_folder(tmp_path / "p")
    monkeypatch.setattr(stream, "STREAM_THRESHOLD_BYTES", 20 * 64 - 1)  # 20 images of 64 bytes
    assert isinstance(data.load(root), StreamData)
    monkeypatch.setattr(stream, "STREAM_THRESHOLD_BYTES", 20 * 64)
    assert isinstance(data.load(root), SSLData)


def test_prepare_writes_shards_atomically_and_they_stream(tmp_path):
    root = _numbered_folder(tmp_path / "p")
    (root / "class1" / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "shards"
    index = prepare(root, out, shards=3, test_fraction=0.2, seed=0, verbose=0)
    names = sorted(os.listdir(out))
    assert names == ["keras_ssl_shards.json", *[f"test-0000{k}-of-00001.tfrecord" for k in [0]],
                     *[f"train-0000{k}-of-00003.tfrecord" for k in range(3)]]
    assert index["count"] == 20 and index["skipped"] == 1
    assert index["skipped_files"][0].endswith("broken.png")
    assert index["class_names"] == ["class0", "class1"]
    d = data.load(out)
    assert isinstance(d, StreamData) and d.num_train + d.num_test == 20 and d.num_test >= 4
    assert d.has_labels and d.class_names == ["class0", "class1"] and d.input_shape == (8, 8, 1)
    seen = []
    for images, labels in d.train_dataset(4, labels=True, drop_remainder=False):
        np.testing.assert_array_equal(labels, np.array(_numbers(images)) // 10)
        seen += _numbers(images)
    assert len(seen) == d.num_train == len(set(seen))
    # Resized and re-encoded at a storage size; a second prepare replaces the first.
    index = prepare(root, out, shards=2, image_size=12, verbose=0)
    assert sorted(os.listdir(out)) == ["keras_ssl_shards.json", "train-00000-of-00002.tfrecord",
                                       "train-00001-of-00002.tfrecord"]
    resized = data.load(out)
    assert resized.input_shape == (12, 12, 1) and resized.num_train == 20
    assert next(iter(resized.train_dataset(5))).shape == (5, 12, 12, 1)


def test_tfrecords_written_elsewhere_are_counted_and_read(tmp_path):
    rng = np.random.default_rng(0)
    for shard in range(2):
        with tf.io.TFRecordWriter(str(tmp_path / f"data-{shard}.tfrecord")) as writer:
            for _ in range(5):
                encoded = tf.io.encode_png(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8))
                feature = {"image/encoded": tf.train.Feature(
                    bytes_list=tf.train.BytesList(value=[encoded.numpy()]))}
                writer.write(tf.train.Example(features=tf.train.Features(
                    feature=feature)).SerializeToString())
    d = data.load(str(tmp_path / "*.tfrecord"))
    assert d.num_train == 10 and not d.has_labels and d.input_shape == (6, 6, 3)
    assert [b.shape[0] for b in d.train_dataset(4)] == [4, 4]


@pytest.fixture
def mocked_tfds():
    """tfds.testing.mock_data, with builders reporting themselves prepared (the mock has no files)."""
    from unittest import mock

    import tensorflow_datasets as tfds

    with (
        tfds.testing.mock_data(num_examples=24),
        mock.patch.object(tfds.core.DatasetBuilder, "is_prepared", lambda self: True),
    ):
        yield


def test_tfds_sets_stream_through_as_dataset(mocked_tfds):
    d = data.load("cifar10", stream=True)
    assert isinstance(d, StreamData) and d.input_shape == (32, 32, 3)
    assert d.num_train == 24 and d.num_test == 24 and d.num_classes == 10
    images, labels = next(iter(d.train_dataset(8, labels=True)))
    assert images.shape == (8, 32, 32, 3) and images.dtype == tf.uint8 and labels.shape == (8,)
    bank_x, bank_y, test_x, test_y = d.evaluation_arrays(10, seed=0)
    assert bank_x.shape == (10, 32, 32, 3) and test_x.shape == (10, 32, 32, 3)
    assert isinstance(data.load("cifar10"), SSLData)  # the mock's splits are unknown: in memory


# ----- exact resume ----------------------------------------------------------------------------
class _Crash(keras.callbacks.Callback):
    def __init__(self, at):
        super().__init__()
        self.at, self.seen = at, 0

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen == self.at:
            raise RuntimeError("simulated crash")


def test_the_stream_order_depends_only_on_seed_and_epoch_and_starts_anywhere(tmp_path):
    d = data.load(_numbered_folder(tmp_path / "p", per_class=12), stream=True, test_fraction=0)
    full = [_numbers(b) for b in d.resumable_dataset(5, epochs=3, seed=7)]
    assert len(full) == 12  # 4 full batches of 5 out of 24 files, each epoch
    for epoch in range(3):
        assert len(set(sum(full[4 * epoch: 4 * epoch + 4], []))) == 20
    assert full[:4] != full[4:8]
    tail = [_numbers(b) for b in d.resumable_dataset(5, epochs=3, seed=7, start=Position(1, 2))]
    assert tail == full[6:]
    assert int(d.resumable_dataset(5, epochs=3, seed=7, start=Position(1, 2)).cardinality()) == 6


def _classifier():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((16, 16, 1)), keras.layers.Rescaling(1 / 255),
                              keras.layers.Flatten(), keras.layers.Dropout(0.2),
                              keras.layers.Dense(4, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy",
                  jit_compile=False)
    return model


def _simclr():
    keras.utils.set_random_seed(0)
    model = keras_ssl.SimCLR(encoders.ConvNet((16, 16, 1), width=4), projection_dim=8, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=False)
    return model


@pytest.mark.parametrize("method", [
    "classifier", pytest.param("simclr", marks=pytest.mark.slow)])  # simclr: 50 s
def test_a_resumed_stream_run_ends_with_the_uninterrupted_weights(method, tmp_path):
    root = _numbered_folder(tmp_path / "p", classes=4, per_class=10, size=16)
    (root / "class2" / "truncated.png").write_bytes((root / "class2" / "0021.png").read_bytes()[:30])
    make, labels = (_classifier, True) if method == "classifier" else (_simclr, False)
    run = dict(batch_size=8, epochs=3, seed=0, verbose=0, labels=labels)

    def load():
        return data.load(root, stream=True, test_fraction=0)

    reference = make()
    fit_resumable(reference, load(), **run)
    with pytest.raises(RuntimeError, match="simulated crash"):
        # 5 steps an epoch (41 files); checkpoints at steps 3, 5, 6, 9: a crash at 8 resumes at 6
        fit_resumable(make(), load(), checkpoint_dir=tmp_path / "ckpt", save_every_steps=3,
                      callbacks=[_Crash(8)], **run)
    resumed = make()
    history = fit_resumable(resumed, load(), checkpoint_dir=tmp_path / "ckpt",
                            save_every_steps=3, **run)
    assert history.epoch == [1, 2]
    for a, b in zip(reference.variables + reference.optimizer.variables,
                    resumed.variables + resumed.optimizer.variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)


# ----- bad files ---------------------------------------------------------------------------------
def _bad_file_folder(root: Path) -> dict[str, str]:
    _numbered_folder(root, classes=1, per_class=12, size=10, deep=False)
    folder = root / "class0"
    good = (folder / "0000.png").read_bytes()
    rgb = np.random.default_rng(0).integers(0, 256, (10, 10, 3), dtype=np.uint8)
    jpeg = folder / "0001.jpg"
    Image.fromarray(rgb).save(jpeg, quality=90)
    bad = {
        "truncated": folder / "truncated.jpg",
        "text": folder / "notes.jpg",
        "empty": folder / "empty.jpg",
        "garbled": folder / "garbled.png",
    }
    bad["truncated"].write_bytes(jpeg.read_bytes()[: len(jpeg.read_bytes()) // 2])
    bad["text"].write_text("this is not an image\n")
    bad["empty"].write_bytes(b"")
    bad["garbled"].write_bytes(good[:8] + b"\x00" * 40)
    # Converted, not skipped: CMYK JPEG, 16-bit PNG, palette PNG and GIF.
    Image.fromarray(rgb).convert("CMYK").save(folder / "cmyk.jpg")
    Image.fromarray(rgb[..., 0].astype(np.uint16) * 257).save(folder / "sixteen.png")
    Image.fromarray(rgb).convert("P").save(folder / "palette.png")
    Image.fromarray(rgb[::-1]).convert("P").save(folder / "palette.gif")
    return {k: str(v) for k, v in bad.items()}


def test_each_kind_of_bad_file_is_skipped_counted_and_named(tmp_path, caplog):
    bad = _bad_file_folder(tmp_path / "p")
    d = data.load(tmp_path / "p", stream=True, test_fraction=0)
    assert d.num_train == 21 and d.input_shape == (10, 10, 3)
    with caplog.at_level(logging.WARNING, logger="keras_ssl.data"):
        batches = list(d.train_dataset(3, shuffle=False).as_numpy_iterator())
    assert [b.shape for b in batches] == [(3, 10, 10, 3)] * 7  # the epoch keeps its length
    assert d.bad_files.count == 4 and sorted(d.bad_files.named) == sorted(bad.values())
    logged = caplog.text
    assert all(path in logged for path in bad.values())
    # A second epoch skips them again without naming them again.
    list(d.train_dataset(3))
    assert d.bad_files.count == 4 and d.bad_files.skips == 8
    # The skipped slots hold the previous good image, never zeros or garbage.
    images = np.concatenate(batches)
    assert len({im.tobytes() for im in images}) == 17


def test_on_bad_file_raise_stops_with_the_name(tmp_path):
    bad = _bad_file_folder(tmp_path / "p")
    d = data.load(tmp_path / "p", stream=True, test_fraction=0, on_bad_file="raise")
    with pytest.raises(tf.errors.OpError, match="could not read or decode .*(empty|garbled)"):
        list(d.train_dataset(5, shuffle=False))
    with pytest.raises(KerasSSLError, match="on_bad_file"):
        data.load(tmp_path / "p", stream=True, on_bad_file="ignore")
    assert bad


def test_a_stream_without_one_readable_image_is_an_error_before_training(tmp_path):
    folder = tmp_path / "broken"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.jpg").write_text("nope")
    (folder / "3.png").write_bytes(b"")
    with pytest.raises(KerasSSLError, match="none of the 4 image"):
        data.load(folder, stream=True)


# ----- several workers -----------------------------------------------------------------------
def test_workers_read_disjoint_parts_of_the_same_global_batches(tmp_path):
    root = _numbered_folder(tmp_path / "p", per_class=12)
    single = data.load(root, stream=True, test_fraction=0)
    workers = [data.load(root, stream=True, test_fraction=0, workers=(i, 2)) for i in (0, 1)]
    run = dict(epochs=2, seed=3, start=Position(0, 1))
    expected = [_numbers(b) for b in single.resumable_dataset(8, **run)]
    parts = [[_numbers(b) for b in w.resumable_dataset(8, **run)] for w in workers]
    # Each worker's stream: its halves of the global batches, two to an element.
    halves = [sum(p, []) for p in parts]
    for step, batch in enumerate(expected):
        assert halves[0][4 * step: 4 * step + 4] + halves[1][4 * step: 4 * step + 4] == batch
        assert not set(halves[0][4 * step: 4 * step + 4]) & set(halves[1][4 * step: 4 * step + 4])
    with pytest.raises(KerasSSLError, match="divisible by the 2 workers"):
        workers[0].resumable_dataset(7, epochs=1)
    options = workers[0].resumable_dataset(8, epochs=1).options()
    assert options.experimental_distribute.auto_shard_policy == \
        tf.data.experimental.AutoShardPolicy.OFF


def test_record_shards_are_split_by_file_between_workers(tmp_path):
    root = _numbered_folder(tmp_path / "p", per_class=12)
    prepare(root, tmp_path / "shards", shards=4, verbose=0)
    seen = []
    for index in (0, 1):
        d = data.load(tmp_path / "shards", workers=(index, 2))
        seen.append({n for b in d.train_dataset(4) for n in _numbers(b)})
    assert not seen[0] & seen[1] and len(seen[0] | seen[1]) >= 16


WORKER = textwrap.dedent(
    """
    import json, os, sys
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from keras_ssl import data, distribute
    mode, root, out = sys.argv[1], sys.argv[2], sys.argv[3]
    strategy = distribute.make_strategy("multi_worker" if mode == "worker" else "none")
    d = data.load(root, stream=True, test_fraction=0)
    ds = strategy.experimental_distribute_dataset(d.resumable_dataset(8, epochs=1, seed=1))
    steps, batches = [], iter(ds)
    for _ in range(data.steps_per_epoch(d.num_train, 8)):
        local = strategy.experimental_local_results(next(batches))
        steps.append([int(v) for part in local for v in part.numpy()[:, 0, 0, 0]])
    with open(out, "w") as f:
        json.dump({"steps": steps, "workers": list(d.workers)}, f)
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


@pytest.mark.slow  # three processes start TensorFlow: about 25 s on 2 cores
def test_two_worker_processes_read_disjoint_files(tmp_path):
    from keras_ssl import distribute

    root = _numbered_folder(tmp_path / "p", per_class=12)
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("TF_CONFIG", None)
    hosts = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    procs = {}
    for name, config in (("single", None), ("w0", distribute.tf_config(hosts, 0)),
                         ("w1", distribute.tf_config(hosts, 1))):
        child = dict(env, **({"TF_CONFIG": config} if config else {}))
        procs[name] = subprocess.Popen(
            [sys.executable, str(script), "single" if config is None else "worker", str(root),
             str(tmp_path / f"{name}.json")], env=child, cwd=tmp_path,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    results = {}
    try:
        for name, proc in procs.items():
            _, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, f"{name}: {err[-3000:]}"
            results[name] = json.loads((tmp_path / f"{name}.json").read_text())
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
    assert results["w0"]["workers"] == [0, 2] and results["w1"]["workers"] == [1, 2]
    single = results["single"]["steps"]
    assert len(single) == 3 and len(results["w0"]["steps"]) == 3
    for step, batch in enumerate(single):
        first, second = results["w0"]["steps"][step], results["w1"]["steps"][step]
        assert len(first) == len(second) == 4 and not set(first) & set(second)
        assert first + second == batch


# ----- caches ---------------------------------------------------------------------------------
def test_cache_in_memory_or_in_a_file(tmp_path):
    root = _numbered_folder(tmp_path / "p")
    in_memory = data.load(root, stream=True, cache=True, test_fraction=0.2)
    assert isinstance(in_memory, SSLData) and in_memory.x_train.shape == (16, 8, 8, 1)
    cached = data.load(root, stream=True, cache=str(tmp_path / "cache" / "p"), test_fraction=0)
    assert isinstance(cached, StreamData) and any((tmp_path / "cache").iterdir())
    first = [_numbers(b) for b in cached.resumable_dataset(4, epochs=2, seed=0)]
    assert sorted(sum(first[:5], [])) == list(range(20))
    again = [_numbers(b) for b in cached.resumable_dataset(4, epochs=2, seed=0,
                                                           start=Position(1, 2))]
    assert again == first[7:]


# ----- evaluation ----------------------------------------------------------------------------
def test_embed_and_evaluate_read_datasets_batch_by_batch(tmp_path):
    root = _numbered_folder(tmp_path / "p", size=16)
    d = data.load(root, stream=True, test_fraction=0.3)
    keras.utils.set_random_seed(0)
    model = keras_ssl.SimCLR(encoders.ConvNet((16, 16, 1), width=4), projection_dim=8)
    x_bank, y_bank, x_test, y_test = d.evaluation_arrays(100, seed=0)
    assert len(x_bank) == d.num_train and len(x_test) == d.num_test
    streamed = evaluate.embed(model, d.test_dataset(4))
    np.testing.assert_allclose(streamed, evaluate.embed(model, x_test), rtol=1e-5, atol=1e-6)
    fn = evaluate.embedding_function(model)
    bank, bank_labels = evaluate.embed_labelled(
        fn, d.train_dataset(4, labels=True, shuffle=False, drop_remainder=False))
    np.testing.assert_allclose(bank, evaluate.embed(model, x_bank), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(bank_labels, y_bank)
    knn = evaluate.knn_accuracy(bank, bank_labels, streamed, y_test, k=3)
    rows = evaluate.embed_to_file(model, d.test_dataset(4, labels=True), tmp_path / "e.npz")
    with np.load(tmp_path / "e.npz") as saved:
        np.testing.assert_array_equal(saved["embeddings"], streamed)
        np.testing.assert_array_equal(saved["labels"], y_test)
    assert rows == len(x_test)
    monitor = KNNMonitor(d.train_dataset(4, labels=True, drop_remainder=False),
                         d.test_dataset(4, labels=True), k=3)
    monitor.set_model(model)
    assert monitor.score() == pytest.approx(knn)
    # a bounded, seeded sample
    small = d.evaluation_arrays(5, seed=1)
    assert [len(a) for a in small] == [5, 5, 5, 5]
    np.testing.assert_array_equal(small[0], d.evaluation_arrays(5, seed=1)[0])


def test_knn_in_chunks_equals_knn_in_one_piece():
    rng = np.random.default_rng(0)
    bank, queries = rng.normal(size=(500, 6)), rng.normal(size=(70, 6))
    bank_y, query_y = rng.integers(0, 3, 500), rng.integers(0, 3, 70)
    whole = evaluate.knn_accuracy(bank, bank_y, queries, query_y, k=20)
    for chunk in (1, 7, 64, 499):
        assert evaluate.knn_accuracy(bank, bank_y, queries, query_y, k=20, batch_size=9,
                                     bank_chunk=chunk) == whole


@pytest.mark.slow  # starts TensorFlow in five child processes
def test_the_streaming_benchmark_runs_in_quick_mode(tmp_path):
    if not (REPO.parent / "shared" / "data" / "cifar10" / "cifar10-train-jpg.tar.gz").exists():
        pytest.skip("needs the CIFAR-10 JPEG tarball in ../shared")
    out = tmp_path / "figures.json"
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "streaming.py"), "--quick", "--work",
         str(tmp_path / "work"), "--json", str(out)],
        capture_output=True, text=True, timeout=900,
        env={**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(out.read_text())
    paths = [row["path"] for row in figures["first_step"]]
    assert paths == ["stream", "stream", "in memory"]
    assert [row["kind"] for row in figures["first_step"]] == ["StreamData"] * 2 + ["SSLData"]
    assert figures["throughput"][0]["ratio"] > 0 and figures["decode"][0]["img_s"] > 0
    assert "| stream |" in done.stdout
