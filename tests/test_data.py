"""Tests for keras_ssl.data: every source kind, its validation, and the tf.data pipeline."""

import gzip
import hashlib
import struct
import tarfile
import time
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import tensorflow as tf

from keras_ssl import data
from keras_ssl.errors import KerasSSLError

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FASHION = SHARED_DATA / "fashion-mnist"
CIFAR_TAR = SHARED_DATA / "cifar10" / "cifar10-train-jpg.tar.gz"
CIFAR_MEANS = (0.491, 0.482, 0.447)


def rows(x):
    """The examples of x as a sorted list of bytes, to compare sets of examples."""
    return sorted(e.tobytes() for e in x)


def labelled_images(n=60, classes=3, size=8, channels=3, seed=0):
    """uint8 images whose first pixel encodes the label (label * 10), and the labels."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, size, size, channels), dtype=np.uint8)
    y = np.arange(n) % classes
    x[:, 0, 0, 0] = y * 10
    return x, y


# --------------------------------------------------------------------------------------------
# digits
# --------------------------------------------------------------------------------------------


def test_digits_shapes_dtype_range_and_stratified_split():
    d = data.load("digits")
    assert d.kind == "images" and d.name == "digits"
    assert d.x_train.shape == (1437, 32, 32, 1) and d.x_test.shape == (360, 32, 32, 1)
    assert d.x_train.dtype == np.uint8 and d.y_train.dtype == np.int64
    assert d.x_train.min() == 0 and d.x_train.max() == 255
    assert d.input_shape == (32, 32, 1) and d.num_classes == 10 and d.has_labels
    assert d.class_names == [str(i) for i in range(10)]
    # Bilinear upsampling makes in-between values; 0..16 scaled would give only 17.
    assert len(np.unique(d.x_train)) > 100
    # Stratified: each class is held out in proportion (within one example).
    total = np.bincount(np.concatenate([d.y_train, d.y_test]), minlength=10)
    held = np.bincount(d.y_test, minlength=10)
    assert np.all(np.abs(held - 0.2 * total) <= 1)


def test_digits_split_follows_seed_and_fraction():
    a, b, c = data.load("digits", seed=1), data.load("digits", seed=1), data.load("digits", seed=2)
    np.testing.assert_array_equal(a.x_test, b.x_test)
    assert not np.array_equal(a.y_test, c.y_test)
    d = data.load("digits", test_fraction=0.5)
    assert len(d.x_test) == 899 and len(d.x_train) == 898
    none = data.load("digits", test_fraction=0)
    assert none.x_test is None and none.y_test is None and len(none.x_train) == 1797


def test_digits_image_size_and_max_examples():
    d = data.load("digits", image_size=16, max_examples=100)
    assert d.x_train.shape == (100, 16, 16, 1)
    assert d.x_test.shape == (25, 16, 16, 1)  # the held-out split shrinks in proportion
    assert set(np.unique(d.y_train)) == set(range(10))  # a stratified subset
    full = data.load("digits")
    # The capped held-out set is drawn from the uncapped one: no training example leaks into it.
    assert set(rows(data.load("digits", max_examples=100).x_test)) <= set(rows(full.x_test))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"test_fraction": 1.0}, "test_fraction"),
        ({"test_fraction": -0.1}, "test_fraction"),
        ({"max_examples": 0}, "max_examples"),
        ({"image_size": (32,)}, "image_size"),
        ({"image_size": 0}, "image_size"),
    ],
)
def test_load_rejects_bad_options(kwargs, match):
    with pytest.raises(KerasSSLError, match=match):
        data.load("digits", **kwargs)


# --------------------------------------------------------------------------------------------
# .npz files and arrays
# --------------------------------------------------------------------------------------------


def test_npz_rank4_round_trip_with_stratified_split(tmp_path):
    x, y = labelled_images(60, classes=3)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    d = data.load(str(tmp_path / "d.npz"), test_fraction=0.25)
    assert d.name == "d.npz" and d.kind == "images" and d.input_shape == (8, 8, 3)
    assert len(d.x_train) == 45 and len(d.x_test) == 15
    assert rows(np.concatenate([d.x_train, d.x_test])) == rows(x)
    assert np.bincount(d.y_test).tolist() == [5, 5, 5]
    # Labels still travel with their images.
    np.testing.assert_array_equal(d.x_train[:, 0, 0, 0], d.y_train * 10)
    np.testing.assert_array_equal(d.x_test[:, 0, 0, 0], d.y_test * 10)
    assert d.num_classes == 3


def test_npz_rank3_gets_a_channel_axis_and_path_objects_work(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (10, 9, 7), dtype=np.uint8)
    np.savez(tmp_path / "g.npz", x=x)
    d = data.load(tmp_path / "g.npz")
    assert d.x_train.shape == (10, 9, 7, 1)
    # No labels: nothing held out, every example trains.
    assert d.x_test is None and d.y_test is None and d.y_train is None and not d.has_labels
    assert d.num_classes is None
    assert rows(d.x_train[..., 0]) == rows(x)


def test_npz_rank2_vectors(tmp_path):
    x = np.random.default_rng(0).normal(size=(40, 5))
    y = np.arange(40) % 2
    np.savez(tmp_path / "v.npz", x=x, y=y)
    d = data.load(str(tmp_path / "v.npz"))
    assert d.kind == "vectors" and d.x_train.dtype == np.float32 and d.input_shape == (5,)
    assert len(d.x_train) == 32 and len(d.x_test) == 8
    assert rows(np.concatenate([d.x_train, d.x_test])) == rows(x.astype(np.float32))
    with pytest.raises(KerasSSLError, match="image_size applies to images"):
        data.load(str(tmp_path / "v.npz"), image_size=8)


def test_float_images_in_unit_range_become_the_same_uint8(tmp_path):
    x, y = labelled_images(20, classes=2)
    np.savez(tmp_path / "f.npz", x=x.astype(np.float32) / 255.0, y=y)
    d = data.load(str(tmp_path / "f.npz"), test_fraction=0)
    assert d.x_train.dtype == np.uint8
    np.testing.assert_array_equal(d.x_train, x)
    # Floats in [0, 255] are accepted too.
    d255 = data.load((x.astype(np.float64), y), test_fraction=0)
    np.testing.assert_array_equal(d255.x_train, x)


def test_npz_with_its_own_held_out_split(tmp_path):
    x, y = labelled_images(20, classes=2)
    xt, yt = labelled_images(6, classes=2, seed=1)
    np.savez(tmp_path / "t.npz", x=x, y=y, x_test=xt, y_test=yt)
    d = data.load(str(tmp_path / "t.npz"), test_fraction=0.5)
    np.testing.assert_array_equal(d.x_train, x)  # untouched, in order
    np.testing.assert_array_equal(d.x_test, xt)
    np.testing.assert_array_equal(d.y_test, yt)


def test_corrupt_npz_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 this is not really a zip file")
    with pytest.raises(KerasSSLError, match=r"Could not read .*bad\.npz"):
        data.load(str(bad))
    x, y = labelled_images(20)
    good = tmp_path / "trunc.npz"
    np.savez(good, x=x, y=y)
    good.write_bytes(good.read_bytes()[:300])
    with pytest.raises(KerasSSLError, match="trunc.npz"):
        data.load(str(good))


def test_npz_without_x_lists_the_keys(tmp_path):
    np.savez(tmp_path / "k.npz", images=np.zeros((4, 8, 8), np.uint8))
    with pytest.raises(KerasSSLError, match=r"'x'.*images"):
        data.load(str(tmp_path / "k.npz"))


@pytest.mark.parametrize(
    "x, match",
    [
        (np.zeros((4, 8, 8, 4), np.uint8), "RGBA"),
        (np.zeros((4, 8, 8, 5), np.uint8), "5 channels"),
        (np.zeros((4, 3, 8, 8), np.uint8), "channels-first"),
        (np.zeros((0, 8, 8, 3), np.uint8), "empty"),
        (np.zeros((4, 8, 8, 3, 1), np.uint8), "shape"),
        (np.full((4, 8, 8, 3), 300.0, np.float32), r"\[0, 1\]"),
        (np.full((4, 8, 8, 3), -0.5, np.float32), "Rescale"),
        (np.full((4, 8, 8), 1000, np.int32), "0..255"),
        (np.full((4, 8, 8), np.nan, np.float32), "NaN"),
    ],
)
def test_bad_images_are_clear_errors(tmp_path, x, match):
    np.savez(tmp_path / "bad.npz", x=x)
    with pytest.raises(KerasSSLError, match=match):
        data.load(str(tmp_path / "bad.npz"))


def test_array_sources():
    x, y = labelled_images(30)
    d = data.load((x, y), test_fraction=0)
    np.testing.assert_array_equal(d.x_train, x)
    np.testing.assert_array_equal(d.y_train, y)
    assert d.name == "arrays"
    only_x = data.load(x)
    assert only_x.y_train is None and only_x.x_test is None and len(only_x.x_train) == 30
    from_dict = data.load({"x": x, "y": y, "x_test": x[:5], "y_test": y[:5]})
    assert len(from_dict.x_train) == 30 and len(from_dict.x_test) == 5


def test_string_labels_become_indices_with_class_names():
    x, _ = labelled_images(20)
    y = np.array(["dog", "cat"] * 10)
    d = data.load((x, y), test_fraction=0)
    assert d.class_names == ["cat", "dog"] and d.num_classes == 2
    np.testing.assert_array_equal(d.y_train, (y == "dog").astype(np.int64))


@pytest.mark.parametrize(
    "y, match",
    [
        (np.zeros(7), "7 labels but there are 20 examples"),
        (np.full(20, -1), "negative"),
        (np.full(20, 0.5), "non-integer"),
        (np.eye(2)[np.arange(20) % 2], "argmax"),
    ],
)
def test_bad_labels_are_clear_errors(y, match):
    x, _ = labelled_images(20)
    with pytest.raises(KerasSSLError, match=match):
        data.load((x, y))


def test_x_test_of_another_shape_needs_image_size():
    x, y = labelled_images(10, size=8)
    xt, yt = labelled_images(4, size=12)
    with pytest.raises(KerasSSLError, match="image_size"):
        data.load({"x": x, "y": y, "x_test": xt, "y_test": yt})
    d = data.load({"x": x, "y": y, "x_test": xt, "y_test": yt}, image_size=10)
    assert d.x_train.shape[1:] == d.x_test.shape[1:] == (10, 10, 3)


def test_unsplittable_classes_fall_back_to_a_random_split():
    x, _ = labelled_images(10)
    y = np.array([0] * 9 + [1])  # class 1 has a single example: cannot be stratified
    with pytest.warns(UserWarning, match="stratify"):
        d = data.load((x, y), test_fraction=0.2)
    assert len(d.x_train) == 8 and len(d.x_test) == 2


# --------------------------------------------------------------------------------------------
# Image folders
# --------------------------------------------------------------------------------------------

COLOURS = {"cat": (200, 10, 10), "dog": (10, 200, 10), "emu": (10, 10, 200)}


def write_image(path, size=(12, 10), colour=(255, 0, 0), mode="RGB"):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    value = colour if mode == "RGB" else colour[0]
    Image.new(mode, size, value).save(path)


def make_class_folder(root, per_class=4, size=(12, 10)):
    for name, colour in COLOURS.items():
        for i in range(per_class):
            write_image(root / name / f"{i}.png", size, colour)
    return root


def test_image_folder_labels_come_from_folder_names(tmp_path):
    root = make_class_folder(tmp_path / "animals")
    write_image(root / "emu" / "gray.png", colour=(77, 0, 0), mode="L")  # a grayscale one
    write_image(root / "dog" / "nested" / "deep.bmp", colour=COLOURS["dog"])
    d = data.load(str(root), test_fraction=0.25)
    assert d.name == "animals" and d.class_names == ["cat", "dog", "emu"]
    assert d.x_train.shape[1:] == (10, 12, 3)  # H x W, and grayscale mixed in -> RGB
    assert len(d.x_train) + len(d.x_test) == 14 and len(d.x_test) == 4
    x, y = np.concatenate([d.x_train, d.x_test]), np.concatenate([d.y_train, d.y_test])
    for image, label in zip(x, y, strict=True):
        name = d.class_names[label]
        expected = (77, 77, 77) if tuple(image[0, 0]) == (77, 77, 77) else COLOURS[name]
        assert np.all(image == np.array(expected, np.uint8)), name
    assert sum(tuple(i[0, 0]) == (77, 77, 77) for i in x) == 1
    assert np.all(y[[tuple(i[0, 0]) == (77, 77, 77) for i in x]] == 2)  # the gray one is an emu


def test_grayscale_folder_keeps_one_channel_and_jpeg_decodes(tmp_path):
    for i in range(3):
        write_image(tmp_path / "g" / f"{i}.jpg", (8, 8), (i * 100, 0, 0), mode="L")
    d = data.load(str(tmp_path / "g"))
    assert d.x_train.shape == (3, 8, 8, 1) and d.y_train is None and d.x_test is None
    assert sorted(int(v) for v in d.x_train[:, 4, 4, 0]) == pytest.approx([0, 100, 200], abs=3)


def test_flat_folder_has_no_labels(tmp_path):
    for i in range(5):
        write_image(tmp_path / f"{i}.png", colour=(i, i, i))
    d = data.load(str(tmp_path))
    assert not d.has_labels and d.x_test is None and d.class_names is None
    assert sorted(d.x_train[:, 0, 0, 0].tolist()) == [0, 1, 2, 3, 4]


def test_mixed_sizes_name_two_files_and_image_size_fixes_it(tmp_path):
    root = make_class_folder(tmp_path / "m", per_class=2)
    write_image(root / "cat" / "big.png", size=(20, 16), colour=COLOURS["cat"])
    with pytest.raises(KerasSSLError, match=r"different sizes.*\.png.*\.png.*image_size") as err:
        data.load(str(root), test_fraction=0)
    assert "20x16" in str(err.value)
    d = data.load(str(root), image_size=(6, 9), test_fraction=0)
    assert d.x_train.shape == (7, 6, 9, 3)
    np.testing.assert_array_equal(
        d.x_train[d.y_train == 0], np.broadcast_to(COLOURS["cat"], (3, 6, 9, 3))
    )


def test_non_image_files_are_skipped_with_a_warning(tmp_path):
    root = make_class_folder(tmp_path / "s", per_class=2)
    (root / "cat" / "notes.txt").write_text("not an image")
    (root / "dog" / "labels.csv").write_text("a,b")
    (root / ".DS_Store").write_bytes(b"\0")  # hidden files are ignored silently
    with pytest.warns(UserWarning, match=r"skipped 2 file.*(notes\.txt|labels\.csv)"):
        d = data.load(str(root), test_fraction=0)
    assert len(d.x_train) == 6


def test_corrupt_image_is_named(tmp_path):
    root = make_class_folder(tmp_path / "c", per_class=2)
    (root / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(KerasSSLError, match=r"broken\.png"):
        data.load(str(root), test_fraction=0)


def test_empty_and_missing_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(KerasSSLError, match="No images"):
        data.load(str(tmp_path / "empty"))
    (tmp_path / "txt" / "a").mkdir(parents=True)
    (tmp_path / "txt" / "a" / "readme.md").write_text("hi")
    with (
        pytest.warns(UserWarning, match="skipped 1"),
        pytest.raises(KerasSSLError, match="No images"),
    ):
        data.load(str(tmp_path / "txt"))
    with pytest.raises(KerasSSLError, match="No such file or folder"):
        data.load(str(tmp_path / "nowhere"))
    with pytest.raises(KerasSSLError, match="No such file or folder"):
        data.load("missing.npz")


def test_unsupported_file_kind(tmp_path):
    (tmp_path / "x.xyz").write_text("1,2")
    with pytest.raises(KerasSSLError, match="Don't know how to read"):
        data.load(str(tmp_path / "x.xyz"))


def test_folder_max_examples_decodes_a_stratified_subset(tmp_path):
    root = make_class_folder(tmp_path / "cap", per_class=10, size=(4, 4))
    d = data.load(str(root), max_examples=6, test_fraction=0.25)
    assert len(d.x_train) == 6 and len(d.x_test) == 2
    assert sorted(np.bincount(d.y_train).tolist()) == [2, 2, 2]


# --------------------------------------------------------------------------------------------
# idx folders
# --------------------------------------------------------------------------------------------


def idx_bytes(array: np.ndarray) -> bytes:
    assert array.dtype == np.uint8
    return (
        struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
        + struct.pack(f">{array.ndim}I", *array.shape)
        + array.tobytes()
    )


def write_idx(folder: Path, x, y, xt=None, yt=None, compress=True):
    folder.mkdir(parents=True, exist_ok=True)
    files = {"train-images-idx3-ubyte": x, "train-labels-idx1-ubyte": y}
    if xt is not None:
        files.update({"t10k-images-idx3-ubyte": xt, "t10k-labels-idx1-ubyte": yt})
    for name, array in files.items():
        payload = idx_bytes(np.asarray(array, np.uint8))
        if compress:
            with gzip.open(folder / f"{name}.gz", "wb") as f:
                f.write(payload)
        else:
            (folder / name).write_bytes(payload)


@pytest.mark.parametrize("compress", [True, False])
def test_idx_folder(tmp_path, compress):
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (12, 5, 4), dtype=np.uint8), np.arange(12) % 3
    xt, yt = rng.integers(0, 256, (4, 5, 4), dtype=np.uint8), np.arange(4) % 3
    write_idx(tmp_path / "mnistish", x, y, xt, yt, compress=compress)
    d = data.load(str(tmp_path / "mnistish"))
    np.testing.assert_array_equal(d.x_train[..., 0], x)
    np.testing.assert_array_equal(d.y_train, y)
    np.testing.assert_array_equal(d.x_test[..., 0], xt)  # t10k is the held-out split
    assert d.y_train.dtype == np.int64 and d.input_shape == (5, 4, 1)


def test_idx_folder_without_t10k_splits_off_test_fraction(tmp_path):
    x, y = np.zeros((10, 4, 4), np.uint8), np.arange(10) % 2
    write_idx(tmp_path / "only_train", x, y)
    d = data.load(str(tmp_path / "only_train"))
    assert len(d.x_train) == 8 and len(d.x_test) == 2


def test_idx_errors(tmp_path):
    x, y = np.zeros((10, 4, 4), np.uint8), np.arange(10) % 2
    write_idx(tmp_path / "trunc", x, y, compress=False)
    path = tmp_path / "trunc" / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(KerasSSLError, match="truncated or corrupt"):
        data.load(str(tmp_path / "trunc"))
    write_idx(tmp_path / "mismatch", x, y[:9])
    with pytest.raises(KerasSSLError, match="9 labels but there are 10"):
        data.load(str(tmp_path / "mismatch"))
    write_idx(tmp_path / "magic", x, y, compress=False)
    (tmp_path / "magic" / "train-labels-idx1-ubyte").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(KerasSSLError, match="not an idx file"):
        data.load(str(tmp_path / "magic"))
    write_idx(tmp_path / "nolabels", x, y, compress=False)
    (tmp_path / "nolabels" / "train-labels-idx1-ubyte").unlink()
    with pytest.raises(KerasSSLError, match="train-labels"):
        data.load(str(tmp_path / "nolabels"))


@pytest.mark.skipif(not FASHION.is_dir(), reason="../shared/data/fashion-mnist is not there")
def test_real_fashion_mnist_matches_the_published_md5s():
    d = data.load(str(FASHION))
    assert d.x_train.shape == (60000, 28, 28, 1) and d.x_test.shape == (10000, 28, 28, 1)
    assert np.bincount(d.y_train).tolist() == [6000] * 10
    assert np.bincount(d.y_test).tolist() == [1000] * 10
    # Re-serialize what we parsed: it must be byte-identical to the published files.
    md5 = {
        "train-images": (d.x_train[..., 0], "f4a8712d7a061bf5bd6d2ca38dc4d50a"),
        "train-labels": (d.y_train.astype(np.uint8), "9018921c3c673c538a1fc5bad174d6f9"),
        "t10k-images": (d.x_test[..., 0], "8181f5470baa50b63fa0f6fddb340f0a"),
        "t10k-labels": (d.y_test.astype(np.uint8), "15d484375f8d13e6eb1aabb0c3f46965"),
    }
    for name, (array, expected) in md5.items():
        assert hashlib.md5(idx_bytes(array)).hexdigest() == expected, name


# --------------------------------------------------------------------------------------------
# CIFAR-10 JPEG folder
# --------------------------------------------------------------------------------------------


def extract_cifar(dest: Path, keep=None) -> Path:
    with tarfile.open(CIFAR_TAR, "r:gz") as tar:
        members = [m for m in tar if m.isfile() and (keep is None or int(Path(m.name).stem) < keep)]
        tar.extractall(dest, members=members, filter="data")
    return dest / "train"


@pytest.mark.skipif(not CIFAR_TAR.is_file(), reason="../shared/data/cifar10 is not there")
def test_cifar10_jpeg_subset_as_a_folder(tmp_path):
    root = extract_cifar(tmp_path, keep=30)  # 30 images per class
    d = data.load(str(root))
    assert d.class_names == [
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ]
    assert d.x_train.shape == (240, 32, 32, 3) and d.x_test.shape == (60, 32, 32, 3)
    assert np.bincount(d.y_test).tolist() == [6] * 10
    means = np.concatenate([d.x_train, d.x_test]).reshape(-1, 3).mean(0) / 255
    np.testing.assert_allclose(means, CIFAR_MEANS, atol=0.05)


@pytest.mark.slow
@pytest.mark.skipif(not CIFAR_TAR.is_file(), reason="../shared/data/cifar10 is not there")
def test_cifar10_jpeg_full_folder(tmp_path):
    root = extract_cifar(tmp_path)
    start = time.perf_counter()
    d = data.load(str(root))
    seconds = time.perf_counter() - start
    assert d.x_train.shape == (40000, 32, 32, 3) and d.x_test.shape == (10000, 32, 32, 3)
    assert np.bincount(d.y_train).tolist() == [4000] * 10
    means = np.concatenate([d.x_train, d.x_test]).reshape(-1, 3).mean(0) / 255
    np.testing.assert_allclose(means, CIFAR_MEANS, atol=0.002)
    assert seconds < 120, f"decoding 50,000 small JPEGs took {seconds:.0f} s"


# --------------------------------------------------------------------------------------------
# tensorflow-datasets
# --------------------------------------------------------------------------------------------


@pytest.fixture
def mocked_tfds():
    """tfds.testing.mock_data, with builders reporting themselves prepared (the mock has no files)."""
    import tensorflow_datasets as tfds

    with (
        tfds.testing.mock_data(num_examples=24),
        mock.patch.object(tfds.core.DatasetBuilder, "is_prepared", lambda self: True),
    ):
        yield


def test_tfds_cifar10_through_the_mock(mocked_tfds, tmp_path):
    d = data.load("cifar10", data_dir=str(tmp_path))
    assert d.name == "cifar10" and d.kind == "images"
    assert d.x_train.shape == (24, 32, 32, 3) and d.x_test.shape == (24, 32, 32, 3)
    assert d.x_train.dtype == np.uint8 and d.y_train.dtype == np.int64
    assert d.num_classes == 10 and len(d.class_names) == 10
    assert data.load("cifar10", max_examples=5).x_train.shape == (5, 32, 32, 3)
    fashion = data.load("fashion_mnist", image_size=32)
    assert fashion.x_train.shape == (24, 32, 32, 1)


def test_tfds_variable_size_images_need_image_size(mocked_tfds):
    with pytest.raises(KerasSSLError, match="image_size"):
        data.load("imagenette")
    assert data.load("imagenette", image_size=16).x_train.shape == (24, 16, 16, 3)


def test_tfds_download_true_prepares(tmp_path):
    import tensorflow_datasets as tfds

    prepared = []
    with (
        tfds.testing.mock_data(num_examples=4),
        mock.patch.object(
            tfds.core.DatasetBuilder,
            "download_and_prepare",
            lambda self, **kw: prepared.append(self.name),
        ),
    ):
        d = data.load("cifar10", data_dir=str(tmp_path), download=True)
    assert prepared == ["cifar10"] and len(d.x_train) == 4


def test_tfds_not_prepared_fails_fast(tmp_path):
    start = time.perf_counter()
    with pytest.raises(KerasSSLError, match=r"not prepared") as err:
        data.load("cifar10", data_dir=str(tmp_path))
    assert time.perf_counter() - start < 5
    message = str(err.value)
    assert str(tmp_path) in message and "tfds build cifar10 --data_dir" in message
    assert "download=True" in message


def test_unknown_tfds_name_suggests_close_matches(tmp_path):
    with pytest.raises(KerasSSLError, match=r"Did you mean 'cifar10'.*\.npz") as err:
        data.load("cifar1O", data_dir=str(tmp_path))
    assert "digits" in str(err.value)
    with pytest.raises(KerasSSLError, match="No such file or folder"):
        data.load("no/such/place", data_dir=str(tmp_path))


def test_bad_source_type():
    with pytest.raises(KerasSSLError, match="Accepted sources"):
        data.load(42)


# --------------------------------------------------------------------------------------------
# tf.data pipelines
# --------------------------------------------------------------------------------------------


def small_data(n=50, labels=True):
    x, y = labelled_images(n, classes=5)
    return data.SSLData(x, y if labels else None, kind="images", name="small")


def test_train_dataset_static_batches_of_uint8():
    ds = small_data().train_dataset(16)
    assert ds.element_spec.shape.as_list() == [16, 8, 8, 3]
    assert ds.element_spec.dtype == tf.uint8
    assert int(ds.cardinality()) == 3  # 50 // 16, the last partial batch dropped
    assert [b.shape[0] for b in ds] == [16, 16, 16]


def test_train_dataset_labels_travel_with_their_images():
    ds = small_data().train_dataset(10, labels=True)
    images_spec, labels_spec = ds.element_spec
    assert labels_spec.dtype == tf.int64 and labels_spec.shape.as_list() == [10]
    for images, labels in ds:
        np.testing.assert_array_equal(images.numpy()[:, 0, 0, 0], labels.numpy() * 10)


def test_train_dataset_shuffles_each_epoch_reproducibly():
    d = small_data()

    def epochs(ds, n=2):
        return [np.concatenate([b.numpy()[:, 0, 0, 1] for b in ds]) for _ in range(n)]

    a1, a2 = epochs(d.train_dataset(10, seed=3, drop_remainder=False))
    b1, b2 = epochs(d.train_dataset(10, seed=3, drop_remainder=False))
    assert sorted(a1.tolist()) == sorted(d.x_train[:, 0, 0, 1].tolist())  # each example once
    assert not np.array_equal(a1, a2)  # reshuffled every epoch
    np.testing.assert_array_equal(a1, b1)  # same seed, same order
    np.testing.assert_array_equal(a2, b2)
    (ordered,) = epochs(d.train_dataset(10, shuffle=False), n=1)
    np.testing.assert_array_equal(ordered, d.x_train[:, 0, 0, 1])


def test_train_dataset_remainder_and_repeat():
    d = small_data()
    assert [b.shape[0] for b in d.train_dataset(16, drop_remainder=False)] == [16, 16, 16, 2]
    repeated = d.train_dataset(16, repeat=True)
    assert repeated.cardinality() == tf.data.INFINITE_CARDINALITY
    assert len(list(repeated.take(7))) == 7


def test_train_dataset_errors():
    with pytest.raises(KerasSSLError, match="no labels"):
        small_data(labels=False).train_dataset(8, labels=True)
    with pytest.raises(KerasSSLError, match="50 examples"):
        small_data().train_dataset(64)
    assert [b.shape[0] for b in small_data().train_dataset(64, drop_remainder=False)] == [50]
    with pytest.raises(KerasSSLError, match="positive integer"):
        small_data().train_dataset(0)


def test_to_dataset_with_vectors():
    x = np.random.default_rng(0).normal(size=(20, 3)).astype(np.float32)
    ds = data.to_dataset(x, np.arange(20), batch_size=5, shuffle=False)
    xb, yb = next(iter(ds))
    assert xb.dtype == tf.float32 and xb.shape == (5, 3)
    np.testing.assert_array_equal(xb.numpy(), x[:5])
    with pytest.raises(KerasSSLError, match="3 labels for 20 examples"):
        data.to_dataset(x, np.arange(3))


def test_ssldata_checks_itself():
    x, y = labelled_images(10)
    with pytest.raises(KerasSSLError, match="labels"):
        data.SSLData(x, y[:4])
    with pytest.raises(KerasSSLError, match="kind"):
        data.SSLData(x, kind="text")
    d = data.SSLData(x, y)
    assert "uint8[10, 8, 8, 3]" in repr(d)


# --------------------------------------------------------------------------------------------
# Small fixtures cut from the real files (tests/fixtures/make_fixtures.py): the readers are
# checked on real bytes even where ../shared/data is missing (CI).
# --------------------------------------------------------------------------------------------
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def test_real_fashion_mnist_bytes_from_the_fixture():
    folder = FIXTURES / "fashion-mnist-head"
    d = data.load(str(folder))
    assert d.x_train.shape == (40, 28, 28, 1) and d.x_test.shape == (10, 28, 28, 1)
    assert d.x_train.dtype == np.uint8
    # The published labels of the first examples, and the pixels' digests.
    assert d.y_train[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert d.y_test.tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]
    assert hashlib.md5(d.x_train.tobytes()).hexdigest() == "b5baa962d5dd02080d910f469dbcf195"
    assert hashlib.md5(d.x_test.tobytes()).hexdigest() == "f581a5e09947af53dd0cbc2942c1d829"
    # Re-serialised, what was parsed is the file byte for byte.
    for name, array in {"train-images": d.x_train[..., 0], "t10k-labels": d.y_test}.items():
        kind = "idx3" if "images" in name else "idx1"
        raw = gzip.decompress((folder / f"{name}-{kind}-ubyte.gz").read_bytes())
        assert idx_bytes(array.astype(np.uint8)) == raw, name
    if FASHION.is_dir():  # the fixture is the head of the real data set
        full = data.load(str(FASHION))
        np.testing.assert_array_equal(full.x_train[:40], d.x_train)
        np.testing.assert_array_equal(full.y_test[:10], d.y_test)


def test_real_cifar10_jpegs_from_the_fixture(tmp_path):
    with tarfile.open(FIXTURES / "cifar10-jpg-head.tar.gz") as tar:
        tar.extractall(tmp_path, filter="data")
    d = data.load(str(tmp_path / "train"), test_fraction=0)
    assert d.class_names == ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                             "horse", "ship", "truck"]
    assert d.x_train.shape == (30, 32, 32, 3) and d.x_train.dtype == np.uint8
    assert np.bincount(d.y_train).tolist() == [3] * 10
    # Colour order and decoding: the channel means of these 30 images (RGB, not BGR).
    np.testing.assert_allclose(d.x_train.reshape(-1, 3).mean(0) / 255, (0.470, 0.437, 0.400),
                               atol=0.01)


def test_image_modes_are_converted_in_memory_under_a_non_ascii_path(tmp_path):
    """RGBA, palette, 16-bit and CMYK files become RGB (alpha dropped, palettes looked up,
    16-bit scaled to 8, CMYK converted), as docs/errors.md says; paths may be any Unicode."""
    from PIL import Image

    folder = tmp_path / "фото é" / "chats"
    folder.mkdir(parents=True)
    rgb = np.random.default_rng(0).integers(0, 256, (12, 12, 3), dtype=np.uint8)
    Image.fromarray(rgb).convert("RGBA").save(folder / "rgba.png")
    Image.fromarray(rgb).convert("P").save(folder / "palette.png")
    Image.fromarray(rgb).convert("CMYK").save(folder / "cmyk.jpg")
    Image.fromarray(rgb[..., 0].astype(np.uint16) * 257).save(folder / "sixteen.png")
    d = data.load(str(tmp_path / "фото é"), test_fraction=0)
    assert d.x_train.shape == (4, 12, 12, 3) and d.x_train.dtype == np.uint8
    gray = sorted(range(4), key=lambda i: np.ptp(d.x_train[i].astype(int) - d.x_train[i, ..., :1]))[0]
    assert np.array_equal(d.x_train[gray, ..., 0], rgb[..., 0])  # 16-bit: x // 257, not clipped
