"""benchmarks/quality.py: every row scored, budgets kept, data sets found (or a clear error)."""

import json
import sys
import tarfile
from pathlib import Path

import keras
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
FASHION_MNIST = REPO.parent / "shared" / "data" / "fashion-mnist"
sys.path.insert(0, str(REPO / "benchmarks"))

import quality  # noqa: E402

MINUTES = 0.03  # 1.8 s per trained row
TINY = ["--minutes", str(MINUTES), "--examples", "128", "--eval-examples", "128",
        "--batch-size", "32", "--encoder", "convnet", "--width", "8"]


@pytest.fixture(autouse=True)
def restore_policy():
    yield
    keras.mixed_precision.set_dtype_policy("float32")


def test_every_row_is_scored_within_the_budget(tmp_path, capsys):
    out = tmp_path / "quality.json"
    assert quality.main(["--data", "digits", "--method", "simclr", *TINY,
                         "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    names = [row["name"] for row in result["rows"]]
    assert names == ["raw pixels", "random init", f"supervised ({MINUTES:g} min)",
                     f"simclr ({MINUTES:g} min)"]
    for row in result["rows"]:
        assert 0.0 <= row["knn_accuracy"] <= 1.0, row
        assert 0.0 <= row["linear_probe_accuracy"] <= 1.0, row
        assert row["name"] in printed
    for row in result["rows"][2:]:
        assert row["steps"] >= 1 and row["epochs"] > 0
        assert row["budget_seconds"] <= 60 * MINUTES + 10, row  # stops after the step past it
        assert row["train_seconds"] <= 60 * MINUTES + 15, row
    assert result["data"]["train"] == 128 and result["data"]["memory"] == 128
    assert result["machine"]["cores"] >= 1 and result["machine"]["tensorflow"]
    assert "benchmarks/quality.py --data digits --method simclr" in result["machine"]["command"]
    assert "| model" in printed and "linear probe" in printed and "train s" in printed


def test_an_unknown_data_set_is_refused_with_the_choices(capsys):
    with pytest.raises(SystemExit) as exit_info:
        quality.main(["--data", "mnist", "--method", "simclr", "--minutes", "1"])
    assert exit_info.value.code == 2
    assert "fashion_mnist or cifar10" in capsys.readouterr().err


@pytest.mark.parametrize("data", ["fashion_mnist", "cifar10"])
def test_a_missing_data_folder_says_to_give_data_dir(data, tmp_path, capsys):
    argv = ["--data", data, "--method", "simclr", "--minutes", "0.01",
            "--data-dir", str(tmp_path / "nowhere"), "--cache-dir", str(tmp_path / "cache")]
    assert quality.main(argv) == 2
    err = capsys.readouterr().err
    assert "quality.py: error:" in err and "--data-dir" in err and "nowhere" in err


@pytest.mark.parametrize("method, message", [("simclrr", "Unknown method 'simclrr'"),
                                             ("mlm", "learns from text, not images")])
def test_a_method_that_cannot_run_is_refused_before_training(method, message, capsys):
    assert quality.main(["--data", "digits", "--method", "simclr", "--method", method,
                         *TINY]) == 2
    captured = capsys.readouterr()
    assert message in captured.err and "# raw pixels" not in captured.out


def _cifar_like_tarball(path: Path, classes=3, per_class=8) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    root = path / "src"
    for c in range(classes):
        folder = root / "train" / f"class{c}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(image).save(folder / f"{i:04d}.jpg")
    tarball = path / "data" / quality.CIFAR10_TARBALL
    tarball.parent.mkdir()
    with tarfile.open(tarball, "w:gz") as archive:
        archive.add(root / "train", arcname="train")
    return tarball


def test_cifar10_is_extracted_and_decoded_once_then_read_from_the_cache(tmp_path):
    tarball = _cifar_like_tarball(tmp_path)
    cache = tmp_path / "cache"
    data, source = quality.load_cifar10(tarball.parent, cache, test_examples=6)
    assert (cache / "train" / "class0").is_dir() and "decoded into" in source
    assert data.x_train.shape == (18, 32, 32, 3) and data.x_test.shape == (6, 32, 32, 3)
    assert np.bincount(data.y_test).tolist() == [2, 2, 2]  # stratified
    again, source = quality.load_cifar10(tarball.parent, cache, test_examples=6)
    assert "decoded:" in source
    np.testing.assert_array_equal(again.x_test, data.x_test)
    np.testing.assert_array_equal(again.y_train, data.y_train)
    # An already extracted folder of class folders works as --data-dir too.
    direct, _ = quality.load_cifar10(cache / "train", tmp_path / "cache2", test_examples=6)
    np.testing.assert_array_equal(direct.y_test, data.y_test)


@pytest.mark.skipif(not FASHION_MNIST.is_dir(), reason="no ../shared/data/fashion-mnist")
def test_fashion_mnist_trains_on_the_first_examples_and_tests_on_t10k():
    args = quality.parse_args(["--data", "fashion_mnist", "--method", "simclr", "--minutes", "1",
                               "--examples", "2000", "--eval-examples", "3000"])
    split = quality.load_split(args)
    assert split.x_train.shape == (2000, 28, 28, 1) and split.x_train.dtype == np.uint8
    assert len(split.x_memory) == 3000 and len(split.x_test) == 10000
    assert split.num_classes == 10
    np.testing.assert_array_equal(split.x_memory[:2000], split.x_train)
