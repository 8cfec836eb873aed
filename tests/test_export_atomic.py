"""Exports killed midway never leave a folder TF Serving would load, and the next export cleans up.

TF Serving's file-system source takes every child of the model folder whose name is an integer as
a version. Exports are killed with SIGKILL at four points: while the SavedModel is written, while
it is loaded back and checked, just before the rename that publishes it, and as soon as its
temporary folder appears. Afterwards every integer-named folder must be the untouched earlier
version, the half-written export must sit only in a hidden `.tmp-*` folder, and the next export
must write the next version and delete that folder.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import keras
import pytest

import keras_ssl
from keras_ssl import encoders, export
from keras_ssl.export import remove_stale_staging, validate_export

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}

DRIVER = """
import sys, time
import keras
from keras_ssl import encoders, export
base, marker, point = sys.argv[1:4]

def pause(*args, **kwargs):
    open(marker, "w").close()
    time.sleep(3600)

if point == "savedmodel":  # the SavedModel is on disk; the Keras copy, metadata, warm-up are not
    write = export._write_savedmodel
    export._write_savedmodel = lambda model, path: (write(model, path), pause())
elif point == "validate":
    export.validate_export = pause
elif point == "rename":
    export._fsync_tree = pause
keras.utils.set_random_seed(0)
export.export_encoder(encoders.ConvNet((16, 16, 1), width=4), base)
open(marker + ".finished", "w").close()
"""

def _digest(folder: Path) -> str:
    sha = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        sha.update(str(path.relative_to(folder)).encode())
        if path.is_file():
            sha.update(path.read_bytes())
    return sha.hexdigest()


def _versions(base: Path) -> list[str]:
    """The folders TF Serving would load: integer names."""
    return sorted(p.name for p in base.iterdir() if p.name.isdigit())


@pytest.fixture(scope="module")
def first_version(tmp_path_factory):
    keras.utils.set_random_seed(0)
    base = tmp_path_factory.mktemp("first") / "model"
    return keras_ssl.export_encoder(encoders.ConvNet((16, 16, 1), width=4), base)


def test_sigkill_during_export_never_leaves_a_servable_partial_version(tmp_path, first_version):
    _kill_exports_and_check(tmp_path, first_version, ["savedmodel", "poll"])


@pytest.mark.slow
def test_sigkill_while_validating_or_publishing(tmp_path, first_version):
    _kill_exports_and_check(tmp_path, first_version, ["validate", "rename"])


def _kill_exports_and_check(tmp_path, first_version, points):
    runs = {}
    for point in points:
        base = tmp_path / point / "model"
        shutil.copytree(first_version, base / "1")
        marker = tmp_path / f"{point}.marker"
        process = subprocess.Popen([sys.executable, "-c", DRIVER, str(base), str(marker), point],
                                   env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        runs[point] = (base, marker, process)
    before = _digest(first_version)
    started = time.monotonic()
    pending = dict(runs)
    while pending:
        for point, (base, marker, process) in list(pending.items()):
            staged = list(base.glob(".tmp-*"))
            due = marker.exists() if point != "poll" else bool(staged)
            if due:
                process.send_signal(signal.SIGKILL)
                process.wait()
                del pending[point]
            elif process.poll() is not None:
                raise AssertionError(f"{point}: the export ended before the kill "
                                     f"({process.stderr.read()[-2000:]!r})")
        assert time.monotonic() - started < 500, f"no kill point reached: {sorted(pending)}"
        time.sleep(0.01)
    print(f"{len(points)} exports killed within {time.monotonic() - started:.1f} s")

    for point, (base, marker, process) in runs.items():
        assert process.returncode == -signal.SIGKILL, point
        assert not Path(f"{marker}.finished").exists(), point
        # TF Serving sees only the earlier version, byte for byte as it was.
        assert _versions(base) == ["1"], point
        assert _digest(base / "1") == before, point
        validate_export(base / "1")
        staged = list(base.glob(".tmp-*"))
        assert len(staged) == 1 and f"-{socket.gethostname()}-pid{process.pid}-" in staged[0].name

        # The next export publishes version 2 and deletes the killed export's leftovers.
        version = keras_ssl.export_encoder(encoders.ConvNet((16, 16, 1), width=4), base)
        assert version == base / "2"
        assert sorted(os.listdir(base)) == ["1", "2"], point
        validate_export(version)


def test_only_dead_local_exports_are_cleaned_up(tmp_path):
    host = socket.gethostname()
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # a process id that no longer runs
    dead = tmp_path / f".tmp-3-{host}-pid{child.pid}-abcd"
    alive = tmp_path / f".tmp-3-{host}-pid{os.getpid()}-efgh"
    remote = tmp_path / f".tmp-3-elsewhere.example-pid{child.pid}-ijkl"
    unrelated = tmp_path / ".tmp-notes"
    for folder in (dead, alive, remote, unrelated):
        folder.mkdir()
        (folder / "saved_model.pb").write_bytes(b"partial")
    assert remove_stale_staging(tmp_path) == [dead]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in (alive, remote, unrelated)
    )


def test_export_that_fails_validation_is_not_published(tmp_path, monkeypatch, first_version):
    """A SavedModel whose outputs are not finite is refused, and nothing is left behind."""
    base = tmp_path / "model"
    shutil.copytree(first_version, base / "1")
    real = export.validate_export

    def nan_probe(path, expected=None, probe=None):
        # The check against the in-memory encoder, fed a NaN expectation, must fail.
        return real(path, expected=expected * float("nan"), probe=probe)

    monkeypatch.setattr(export, "validate_export", nan_probe)
    with pytest.raises(keras_ssl.KerasSSLError, match="does not reproduce"):
        keras_ssl.export_encoder(encoders.ConvNet((16, 16, 1), width=4), base)
    assert sorted(os.listdir(base)) == ["1"]
