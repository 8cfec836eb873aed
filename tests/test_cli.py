"""The keras-ssl command: the documented run works, bad input is one clear line and exit 2."""

import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from keras_ssl.cli import main


def test_help_explains_every_flag_with_an_example():
    result = subprocess.run([sys.executable, "-m", "keras_ssl", "pretrain", "--help"],
                            capture_output=True, text=True, check=True)
    for flag in ("--method", "--data", "--epochs", "--batch-size", "--seed", "--export",
                 "--encoder", "--image-size", "--learning-rate"):
        assert flag in result.stdout
    assert "example" in result.stdout and "simclr" in result.stdout


def test_pretrain_on_digits_prints_before_and_after_and_exports(tmp_path, capsys):
    code = main(["pretrain", "--method", "simclr", "--data", "digits", "--epochs", "2",
                 "--max-examples", "400", "--eval-examples", "400", "--knn-every", "0",
                 "--batch-size", "64", "--export", str(tmp_path / "simclr"), "--verbose", "0"])
    out = capsys.readouterr().out
    assert code == 0
    assert "random init" in out and "trained (2 epochs)" in out and "kNN accuracy" in out
    signature = tf.saved_model.load(str(tmp_path / "simclr" / "1")).signatures["serving_default"]
    assert signature.structured_input_signature[1]["images"].dtype == tf.uint8
    assert set(signature.structured_outputs) == {"embeddings"}


def test_zero_epochs_exports_the_random_init_baseline(tmp_path, capsys):
    assert main(["pretrain", "--data", "digits", "--epochs", "0", "--max-examples", "300",
                 "--export", str(tmp_path / "base"), "--verbose", "0"]) == 0
    assert (tmp_path / "base" / "1" / "saved_model.pb").exists()
    assert "Training time" in capsys.readouterr().out


def _bad_npz(tmp_path, name, **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return str(path)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--method", "simclrr"], "Unknown method 'simclrr'. Did you mean 'simclr'"),
        (["--data", "./no/such/folder"], "No such file or folder"),
        (["--batch-size", "1"], "--batch-size 1 is too small"),
        (["--epochs", "-1"], "--epochs must be an integer of at least 0, got -1"),
        (["--encoder", "vgg"], "Unknown encoder"),
    ],
)
def test_bad_arguments_get_one_line_and_exit_2(args, message, capsys):
    assert main(["pretrain", *args, "--verbose", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("keras-ssl: error:") and message in err
    assert "\n" not in err and "Traceback" not in err


def test_bad_data_files_get_one_line_and_exit_2(tmp_path, capsys):
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"not a zip file")
    cases = {
        str(corrupt): "npz",
        _bad_npz(tmp_path, "rank5.npz", x=np.zeros((4, 2, 8, 8, 1), "uint8")): "rank",
        _bad_npz(tmp_path, "channels.npz", x=np.zeros((4, 8, 8, 2), "uint8")): "channel",
        _bad_npz(tmp_path, "empty.npz", x=np.zeros((0, 8, 8, 1), "uint8")): "empty",
    }
    for source, word in cases.items():
        assert main(["pretrain", "--data", source, "--verbose", "0"]) == 2, source
        err = capsys.readouterr().err.strip()
        assert word in err.lower() and "\n" not in err, err


def test_images_smaller_than_the_crop_and_export_path_that_is_a_file(tmp_path, capsys):
    target = tmp_path / "file"
    target.write_text("keep")
    assert main(["pretrain", "--export", str(target), "--verbose", "0"]) == 2
    assert "existing file" in capsys.readouterr().err
    assert target.read_text() == "keep"
    tiny = _bad_npz(tmp_path, "tiny.npz", x=np.zeros((8, 4, 4, 1), "uint8"))
    assert main(["pretrain", "--data", tiny, "--verbose", "0"]) == 2
    assert "smaller" in capsys.readouterr().err.lower()
