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

import _kerasio_reference  # noqa: E402
import quality  # noqa: E402

MINUTES = 0.03  # 1.8 s per trained row
TINY = ["--minutes", str(MINUTES), "--examples", "128", "--eval-examples", "128",
        "--batch-size", "32", "--encoder", "convnet", "--width", "8"]


@pytest.fixture(autouse=True)
def restore_policy():
    yield
    keras.mixed_precision.set_dtype_policy("float32")


@pytest.mark.slow
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
    assert "choose digits, fashion_mnist, cifar10" in capsys.readouterr().err


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


def _cifar_like_args(tmp_path, *more):
    tarball = _cifar_like_tarball(tmp_path, per_class=12)
    return ["--data", "cifar10", "--data-dir", str(tarball.parent), "--cache-dir",
            str(tmp_path / "cache"), "--test-examples", "6", "--examples", "30",
            "--eval-examples", "30", "--batch-size", "8", "--minutes", str(MINUTES),
            "--no-baselines", *more]


def test_the_keras_io_reference_trains_for_the_budget_beside_its_random_init(tmp_path):
    out = tmp_path / "quality.json"
    assert quality.main(_cifar_like_args(tmp_path, "--reference", "kerasio",
                                         "--json", str(out))) == 0
    rows = {row["name"]: row for row in json.loads(out.read_text())["rows"]}
    before = rows["keras-io example, random init"]
    after = rows[f"keras-io example ({MINUTES:g} min)"]
    assert before["parameters"] == _kerasio_reference.KERAS_IO_PARAMETERS
    assert after["batch_size"] == 30  # the example's 525, capped at the training images
    assert after["steps"] >= 1 and after["train_seconds"] <= 60 * MINUTES + 15
    # A constant learning rate has no schedule to plan: it trains until the time is spent.
    assert after["planned_epochs"] is None and after["stopped_on"] == "time"
    for row in (before, after):
        assert 0.0 <= row["knn_accuracy"] <= 1.0 and 0.0 <= row["linear_probe_accuracy"] <= 1.0


@pytest.mark.skipif(not quality._torch_reference.available(), reason="PyTorch is not installed")
def test_the_pytorch_reference_trains_in_its_own_process_and_is_scored_here(tmp_path):
    out = tmp_path / "quality.json"
    assert quality.main(_cifar_like_args(tmp_path, "--reference", "pytorch_resnet18",
                                         "--json", str(out))) == 0
    rows = {row["name"]: row for row in json.loads(out.read_text())["rows"]}
    after = rows[f"PyTorch ResNet-18 ({MINUTES:g} min)"]
    assert "PyTorch ResNet-18, random init" in rows
    assert after["steps"] >= 1 and after["train_seconds"] <= 60 * MINUTES + 15
    assert 0.0 <= after["knn_accuracy"] <= 1.0 and np.isfinite(after["final_loss"])


def test_references_are_refused_on_images_they_cannot_take(capsys):
    assert quality.main(["--data", "digits", "--reference", "kerasio", *TINY]) == 2
    err = capsys.readouterr().err
    assert "RGB images of 31 px or more" in err and "--data cifar10" in err


def test_an_unknown_reference_is_refused_with_the_choices(capsys):
    with pytest.raises(SystemExit):
        quality.main(["--data", "digits", "--reference", "lightly", *TINY])
    assert "kerasio, pytorch_resnet18" in capsys.readouterr().err


def test_set_options_change_the_method():
    args = quality.parse_args(["--data", "digits", "--method", "simclr", "--minutes", "1",
                               "--set", "temperature=0.5", "--set", "strength=1.0",
                               "--set", "min_crop_area=0.2"])
    assert args.options == {"temperature": 0.5, "strength": 1.0, "min_crop_area": 0.2}
    args.jit_compile = False
    model, _ = quality.build_method("simclr", quality.shape_only((32, 32, 1)), args, 10)
    assert model.temperature == 0.5
    assert model.augmenter.augmentations[0].scale == (0.2, 1.0)
    jitter = model.augmenter.augmentations[2]
    assert jitter.brightness == pytest.approx((0.2, 1.8))  # strength 1.0, not 32 px's 0.5
    plain = quality.parse_args(["--data", "digits", "--method", "triplet", "--minutes", "1",
                                "--set", "mining=batch_hard"])
    assert plain.options == {"mining": "batch_hard"}  # not a Python literal: kept as a string


def test_methods_are_built_for_the_images_they_train_on():
    args = quality.parse_args(["--data", "digits", "--method", "moco", "--minutes", "1"])
    args.jit_compile = False
    digits = quality.data_lib.SSLData(np.zeros((1437, 32, 32, 1), np.uint8), name="digits")
    model, _ = quality.build_method("moco", digits, args, 10)
    assert model.queue_size == 512  # sized to 1,437 images, not to a stand-in


def test_options_after_a_colon_apply_to_that_row_only(capsys):
    args = quality.parse_args(["--data", "digits", "--method", "byol", "--method",
                               "byol:momentum=0.9,strength=1.0", "--minutes", "1",
                               "--set", "hidden_dim=64"])
    assert quality.method_rows(args) == [
        ("byol", "byol hidden_dim=64", {"hidden_dim": 64}),
        ("byol", "byol hidden_dim=64 momentum=0.9 strength=1.0",
         {"hidden_dim": 64, "momentum": 0.9, "strength": 1.0}),
    ]
    with pytest.raises(SystemExit):
        quality.parse_args(["--data", "digits", "--method", "byol:momentum", "--minutes", "1"])
    assert "NAME=VALUE" in capsys.readouterr().err


def test_a_set_option_the_method_does_not_take_is_refused_before_training(capsys):
    assert quality.main(["--data", "digits", "--method", "simclr", "--set", "grid=3",
                         *TINY]) == 2
    assert "--set" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        quality.main(["--data", "digits", "--method", "simclr", "--set", "temperature", *TINY])


@pytest.mark.slow
def test_a_budget_sweep_resumes_where_it_stopped_and_marks_small_gains(tmp_path, capsys):
    out = tmp_path / "sweep.json"
    sweep = ["--data", "digits", *TINY, "--minutes", "0.02,0.03", "--no-baselines",
             "--json", str(out), "--resume"]
    assert quality.main([*sweep, "--method", "simclr"]) == 0
    first = json.loads(out.read_text())["rows"]
    assert [row["name"] for row in first] == ["raw pixels", "random init", "simclr (0.02 min)",
                                             "simclr (0.03 min)"]
    capsys.readouterr()
    # Run again with one more method: the rows already there are kept, not trained again.
    assert quality.main([*sweep, "--method", "simclr", "--method", "rotnet"]) == 0
    printed = capsys.readouterr().out
    rows = json.loads(out.read_text())["rows"]
    assert rows[:4] == first
    assert [row["name"] for row in rows[4:]] == ["rotnet (0.02 min)", "rotnet (0.03 min)"]
    assert "# simclr" not in printed and "# rotnet (0.02 min)" in printed
    table = printed[printed.index("| method | 0.02 min"):]
    gains = {row["label"]: [round(100 * (r["knn_accuracy"] - rows[1]["knn_accuracy"]), 1)
                            for r in rows if r.get("label") == row["label"]]
             for row in rows[2:]}
    for label, values in gains.items():
        line = next(line for line in table.splitlines() if line.startswith(f"| {label} |"))
        assert line.count(" *") == sum(v < 2 for v in values), line
    assert not list(tmp_path.glob("*.partial"))
    # Results of other data are not mixed in.
    assert quality.main([*sweep, "--method", "simclr", "--eval-examples", "64"]) == 2
    assert "holds results on other data" in capsys.readouterr().err


def test_a_method_with_its_own_encoder_is_measured_from_that_encoders_random_init():
    args = quality.parse_args(["--data", "digits", "--method", "mae", "--method", "simclr",
                               "--minutes", "1"])
    assert quality.own_encoder("mae", args) == "vit_tiny"
    assert quality.own_encoder("simclr", args) is None
    forced = quality.parse_args(["--data", "digits", "--method", "mae", "--minutes", "1",
                                 "--encoder", "convnet"])
    assert quality.own_encoder("mae", forced) is None  # --encoder: every row shares it
    rows = [{"name": "raw pixels", "knn_accuracy": 0.9, "linear_probe_accuracy": 0.95},
            {"name": "random init", "knn_accuracy": 0.80, "linear_probe_accuracy": 0.9},
            {"name": "random init (vit_tiny)", "knn_accuracy": 0.30, "linear_probe_accuracy": 0.8},
            {"name": "mae (1 min)", "label": "mae", "minutes": 1.0, "knn_accuracy": 0.40,
             "linear_probe_accuracy": 0.85, "baseline": "random init (vit_tiny)"},
            {"name": "simclr (1 min)", "label": "simclr", "minutes": 1.0, "knn_accuracy": 0.81,
             "linear_probe_accuracy": 0.97, "baseline": "random init"}]
    lines = quality.sweep_table(rows, [1.0]).splitlines()
    line = {row.split(" | ")[0].strip("| "): row for row in lines}
    assert "(+10.0)" in line["mae"] and " *" not in line["mae"]  # from the ViT's 0.30
    assert "(+1.0) *" in line["simclr"]  # from the ConvNet's 0.80
    assert "0.300 / 0.800" in line["random init (vit_tiny)"]
    rows[3] = {**rows[3], "baseline": "random init (vit_small)"}
    assert "no random init (vit_small) row" in quality.sweep_table(rows, [1.0])
