"""keras-ssl pretrain's speed and scale flags: --precision, --xla, --strategy, --sync-batchnorm."""

import os
import subprocess
import sys
from pathlib import Path

import keras
import pytest

from keras_ssl.cli import main

REPO = Path(__file__).resolve().parents[1]
QUICK = ["--data", "digits", "--epochs", "1", "--max-examples", "256", "--batch-size", "64",
         "--eval-examples", "256", "--knn-every", "0", "--verbose", "0"]


@pytest.fixture(autouse=True)
def restore_policy():
    yield
    keras.mixed_precision.set_dtype_policy("float32")


def test_defaults_on_cpu_are_float32_without_xla_on_one_device(capsys):
    assert main(["pretrain", "--method", "rotnet", *QUICK]) == 0
    out = capsys.readouterr().out
    assert "Precision float32, XLA off, strategy none (1 replica)" in out
    assert "trained (1 epochs)" in out


@pytest.mark.slow
@pytest.mark.parametrize("xla", ["off", pytest.param("on", marks=pytest.mark.slow)])
def test_mixed_bfloat16_trains_exports_and_reports_it(xla, capsys, tmp_path):
    assert main(["pretrain", "--method", "simclr", "--precision", "mixed_bfloat16",
                 "--xla", xla, *QUICK, "--export", str(tmp_path / "m")]) == 0
    out = capsys.readouterr().out
    assert f"Precision mixed_bfloat16, XLA {xla}" in out
    assert (tmp_path / "m" / "1" / "saved_model.pb").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--precision", "float16"], "argument --precision: invalid choice: 'float16'"),
        (["--strategy", "multi_worker"], "TF_CONFIG environment variable, which is not set"),
        (["--cpu-devices", "2"], "--cpu-devices only applies to --strategy mirrored"),
    ],
)
def test_bad_speed_flags_get_one_line_and_exit_2(args, message, capsys, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert main(["pretrain", *args, *QUICK]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("keras-ssl: error:") and message in err and "\n" not in err


def _cli(*args, timeout=600):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), str(REPO)) if p)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env.pop("TF_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "keras_ssl", "pretrain", *args],
                          capture_output=True, text=True, timeout=timeout, env=env)


@pytest.mark.slow  # a second process on two logical devices
def test_mirrored_on_two_cpu_devices_with_sync_batchnorm_trains_and_exports(tmp_path):
    result = _cli("--method", "simclr", "--strategy", "mirrored", "--cpu-devices", "2",
                  "--sync-batchnorm", *QUICK, "--export", str(tmp_path / "m"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert ("Precision float32, XLA off, strategy mirrored (2 replicas), synchronised batch norm"
            in result.stdout)
    assert "trained (1 epochs)" in result.stdout
    assert (tmp_path / "m" / "1" / "saved_model.pb").exists()


@pytest.mark.slow  # three CLI processes; the batch check itself is unit-tested in-process
def test_uneven_global_batch_and_xla_under_a_cpu_strategy_are_refused():
    result = _cli("--strategy", "mirrored", "--cpu-devices", "2", *QUICK, "--batch-size", "63")
    assert result.returncode == 2
    assert "does not split evenly over 2 replicas" in result.stderr
    result = _cli("--strategy", "mirrored", "--cpu-devices", "3", "--data", "digits")  # 256
    assert result.returncode == 2
    assert "--batch-size 256 (the global batch) does not split evenly over 3" in result.stderr
    result = _cli("--strategy", "mirrored", "--cpu-devices", "2", "--xla", "on", *QUICK)
    assert result.returncode == 2
    assert "--xla on does not work under a strategy on CPU" in result.stderr
