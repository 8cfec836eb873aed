"""Real faults: a full disk, exports racing each other, and SIGKILL at the worst moments.

Nothing here raises a simulated exception. The faults are the kernel's own:

- A full disk: `RLIMIT_FSIZE` lowered in the child process (with `SIGXFSZ` ignored, a write past
  the limit fails with `EFBIG`), or, where a tmpfs can be mounted (root), a 768 kB file system that
  really fills up (`ENOSPC`). The previous checkpoint and the published export versions must stay
  byte for byte, loadable; nothing half-written may stay; the user gets one line.
- Four processes exporting into one model folder at the same moment, while a reader polls it as
  TF Serving does: every writer gets its own version, and every version the reader sees loads.
- SIGKILL while TensorFlow writes a checkpoint's shard, after its files but before the state file
  names it, and during the first step after a resume; the rerun ends bit for bit where an
  uninterrupted run ends.

The child processes come from one `forkserver` that imports TensorFlow once (a fresh interpreter
per child would spend most of the time importing), so each child starts in about a second; a
forked child trains exactly as a fresh process does (the reference run is one too).
"""

from __future__ import annotations

import errno
import hashlib
import json
import multiprocessing
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

# ----- the child processes -----------------------------------------------------------------------
# A small regression with dropout: its checkpoint holds weights, Adam's slots and step, a seed
# generator (dropout), the metrics and the position. 4 steps per epoch, 3 epochs; a checkpoint
# every 2 steps, numbered by global step: ckpt-2, ckpt-4, ..., ckpt-12.
RUN = dict(batch_size=8, epochs=3, seed=1, save_every_steps=2, verbose=0)
FSIZE_LIMIT = 1000  # bytes: a checkpoint's data file (~4 kB) or an export's files exceed it


def _regression():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(64, activation="relu"),
                              keras.layers.Dropout(0.3), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")
    return model


def _data():
    x = np.random.default_rng(0).normal(size=(32, 3)).astype("float32")
    return x, x @ np.array([[1.0], [-2.0], [0.5]], "float32")


def _limit_file_size(limit=FSIZE_LIMIT):
    """From now on, writes past `limit` bytes fail with EFBIG (the signal would kill instead)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))


def _fill(path):
    """Fill the file system holding `path` to the last byte, with the file `path`."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        for size in (1 << 20, 1 << 16, 1 << 12, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError as err:
                assert err.errno == errno.ENOSPC, err
    finally:
        os.close(fd)


class _After(keras.callbacks.Callback):
    """Runs `action` at the end of this process's `step`-th step (0: when training starts).

    Listed after the checkpoint callback, so it runs after that step's save."""

    def __init__(self, step, action):
        super().__init__()
        self.step, self.action, self.seen = step, action, 0

    def on_train_begin(self, logs=None):
        if self.step == 0:
            self.action()

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen == self.step:
            self.action()


def _child(function):
    """Child-process entry: a traceback goes to `<out>.traceback` for the test to show."""

    def run(*args):
        out = args[1]
        try:
            function(*args)
        except BaseException:
            Path(f"{out}.traceback").write_text(traceback.format_exc())
            raise

    run.__name__ = run.__qualname__ = f"{function.__name__}_in_child"
    globals()[run.__name__] = run  # picklable by name
    return run


def _pause(out):
    Path(f"{out}.marker").write_text("here")
    time.sleep(3600)


@_child
def _train(directory, out, fault=None):
    """One run of `fit_resumable` into `directory`; the final state goes to `<out>.npz`.

    fault: ("fsize", step) lowers RLIMIT_FSIZE after that step; ("fill", step, path) fills the
    disk; ("kill-in-shard", n) / ("kill-after-files", n) / ("kill-first-step",) stop at that point
    and wait for the SIGKILL.
    """
    from keras_ssl.checkpoint import fit_resumable
    from keras_ssl.errors import KerasSSLError

    log = open(f"{out}.log", "w")  # noqa: SIM115 - for the "Resuming from ..." line
    sys.stdout = log
    kind = fault[0] if fault else None
    callbacks = []
    if kind == "fsize":
        callbacks.append(_After(fault[1], _limit_file_size))
    elif kind == "fill":
        callbacks.append(_After(fault[1], lambda: _fill(fault[2])))
    elif kind == "kill-in-shard":
        # TensorFlow has written ckpt-N's shard into ckpt-N_temp/ and not yet merged it into place.
        from tensorflow.python.ops import io_ops
        save_v2 = io_ops.save_v2

        def save_then_pause(prefix, *args, **kwargs):
            result = save_v2(prefix, *args, **kwargs)
            name = prefix.numpy().decode() if hasattr(prefix, "numpy") else str(prefix)
            if f"ckpt-{fault[1]}_temp" in name:
                _pause(out)
            return result

        io_ops.save_v2 = save_then_pause
    elif kind == "kill-after-files":
        # ckpt-N's data and index files are complete; the `checkpoint` state file does not name it.
        save = tf.train.CheckpointManager.save

        def write_then_pause(self, checkpoint_number=None, **kwargs):
            if checkpoint_number == fault[1]:
                self._checkpoint.write(f"{self._prefix}-{checkpoint_number}")
                _pause(out)
            return save(self, checkpoint_number=checkpoint_number, **kwargs)

        tf.train.CheckpointManager.save = write_then_pause
    elif kind == "kill-first-step":
        # The first step of this (resumed) process has updated the weights in memory, unsaved.
        callbacks.append(_After(1, lambda: _pause(out)))
    model = _regression()
    x, y = _data()
    try:
        fit_resumable(model, x, y, checkpoint_dir=directory, callbacks=callbacks, **RUN)
    except KerasSSLError as err:
        Path(f"{out}.error").write_text(f"{type(err).__name__}: {err}")
        return
    finally:
        log.flush()
    np.savez(f"{out}.npz", *[v.numpy() for v in model.variables + model.optimizer.variables])


@_child
def _export_with_full_disk(base, out, scenarios):
    """Export into `base` once per scenario, each with the disk full at another file."""
    from keras_ssl import encoders, export
    from keras_ssl.errors import KerasSSLError

    keras.utils.set_random_seed(1)
    encoder = encoders.ConvNet((16, 16, 1), width=4)
    _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    write_savedmodel, save_warmup = export._write_savedmodel, export.write_warmup_requests
    messages = {}
    for scenario in scenarios:
        if scenario == "variables":  # the SavedModel's variables (84 kB) hit the limit
            _limit_file_size(FSIZE_LIMIT)
        elif scenario == "saved_model.pb":  # the variables fit, the graph (238 kB) does not
            _limit_file_size(120_000)
        elif scenario == "encoder.keras":  # the SavedModel is complete; the Keras copy fails
            export._write_savedmodel = lambda *a: (write_savedmodel(*a), _limit_file_size())[0]
        elif scenario == "warmup":  # everything but the warm-up requests is written
            export.write_warmup_requests = (
                lambda *a, **k: (_limit_file_size(), save_warmup(*a, **k))[1])
        try:
            export.export_encoder(encoder, base)
            messages[scenario] = None
        except KerasSSLError as err:
            messages[scenario] = f"{type(err).__name__}: {err}"
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
            export._write_savedmodel = write_savedmodel
            export.write_warmup_requests = save_warmup
    Path(f"{out}.json").write_text(json.dumps(messages))


@_child
def _export_together(base, out, go, seed):
    """Stage an export, wait at the publishing step until `go` exists, then publish."""
    from keras_ssl import encoders, export

    keras.utils.set_random_seed(seed)
    encoder = encoders.ConvNet((16, 16, 1), width=4)
    fsync_tree = export._fsync_tree

    def wait_then_fsync(root):
        while not os.path.exists(go):
            time.sleep(0.01)
        fsync_tree(root)

    export._fsync_tree = wait_then_fsync
    version = export.export_encoder(encoder, base)
    serving = export._serving_model_of(encoder)
    probe = export._probe_batch(serving)
    np.savez(f"{out}.npz", probe=probe, expected=serving.predict(probe, verbose=0))
    Path(f"{out}.version").write_text(version.name)


# ----- helpers in the test process ----------------------------------------------------------------
@pytest.fixture(scope="module")
def processes():
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["keras_ssl.checkpoint", "keras_ssl.export", __name__])
    return context


def _start(processes, target, *args):
    process = processes.Process(target=target, args=args)
    process.start()
    return process


def _finish(process, out, timeout=300):
    process.join(timeout)
    if process.is_alive():
        process.kill()
        raise AssertionError(f"{out}: the child did not finish in {timeout} s")
    failed = Path(f"{out}.traceback")
    assert process.exitcode == 0, failed.read_text() if failed.exists() else process.exitcode


def _kill_at_marker(process, out, timeout=300):
    marker, deadline = Path(f"{out}.marker"), time.monotonic() + timeout
    while not marker.exists():
        if not process.is_alive():
            failed = Path(f"{out}.traceback")
            raise AssertionError(f"{out}: ended before the kill point "
                                 f"{failed.read_text() if failed.exists() else process.exitcode}")
        assert time.monotonic() < deadline, f"{out}: no kill point in {timeout} s"
        time.sleep(0.01)
    process.kill()  # SIGKILL
    process.join()
    assert process.exitcode == -signal.SIGKILL


def _run(processes, directory, out, fault=None):
    _finish(_start(processes, _train, str(directory), str(out), fault), out)


def _final_state(out) -> list[np.ndarray]:
    with np.load(f"{out}.npz") as saved:
        return [saved[f"arr_{i}"] for i in range(len(saved.files))]


def _assert_equal_states(actual, expected):
    assert len(actual) == len(expected) > 0
    for i, (a, b) in enumerate(zip(actual, expected, strict=True)):
        np.testing.assert_array_equal(a, b, err_msg=f"variable {i}")


def _latest(directory) -> str:
    return Path(tf.train.latest_checkpoint(str(directory))).name


def _checkpoint_files(directory) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in Path(directory).iterdir() if p.is_file()}


def _only_named_checkpoints(directory):
    """No temporary folder and no checkpoint file the state file does not name."""
    state = tf.train.get_checkpoint_state(str(directory))
    named = {Path(p).name for p in state.all_model_checkpoint_paths}
    for path in Path(directory).iterdir():
        assert not path.is_dir(), f"left behind: {path.name}"
        if path.name not in ("checkpoint", "run.json"):
            assert path.name.split(".")[0] in named, f"left behind: {path.name}"


@pytest.fixture(scope="module")
def uninterrupted(processes, tmp_path_factory):
    """The final state of the run, never interrupted."""
    folder = tmp_path_factory.mktemp("uninterrupted")
    _run(processes, folder / "ckpt", folder / "ref")
    return _final_state(folder / "ref")


@pytest.fixture
def small_filesystem(tmp_path):
    """A 768 kB tmpfs, where mounting one is allowed (root)."""
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=768k", "tmpfs", str(mount_point)],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("no tmpfs can be mounted here (needs root); the RLIMIT_FSIZE cases cover a "
                    "full disk")
    yield mount_point
    subprocess.run(["umount", str(mount_point)], check=True)


def _digest(folder: Path) -> str:
    sha = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        sha.update(str(path.relative_to(folder)).encode())
        if path.is_file():
            sha.update(path.read_bytes())
    return sha.hexdigest()


def _versions(base: Path) -> list[int]:
    """What TF Serving would load: the integer-named folders."""
    return sorted(int(p.name) for p in base.iterdir() if p.name.isdigit())


# ----- a full disk during checkpoints ----------------------------------------------------------------
def _check_full_disk_checkpoint(processes, tmp_path, directory, fault, failed, kept):
    out = tmp_path / "full"
    _run(processes, directory, out, fault)
    message = Path(f"{out}.error").read_text()
    print(message)
    assert "\n" not in message
    assert message.startswith(f"DiskFullError: Could not write the checkpoint of {failed} in "
                              f"{directory}: ")
    if kept is None:
        assert "No earlier checkpoint was there to keep and the half-written files were " \
               "removed." in message
        assert set(os.listdir(directory)) <= {"run.json"}
    else:
        assert f"The last checkpoint ({kept}) is kept and the half-written files were " \
               "removed." in message
        assert _latest(directory) == "ckpt-2"
        _only_named_checkpoints(directory)
    assert "Free some space (or raise the file-size limit, ulimit -f), then run the same " \
           "command again to resume." in message
    return out


@pytest.mark.parametrize("after_step", [pytest.param(0, marks=pytest.mark.slow), 2],
                         ids=["first-save", "later-save"])
def test_file_size_limit_during_a_checkpoint_keeps_the_last_one(processes, tmp_path,
                                                                uninterrupted, after_step):
    directory = tmp_path / "ckpt"
    if after_step == 0:  # the limit is there from the start: the first save (step 2) fails
        _check_full_disk_checkpoint(processes, tmp_path, directory, ("fsize", 0),
                                    failed="epoch 1, after step 2", kept=None)
    else:  # ckpt-2 is written, then the limit: the epoch-end save (step 4) fails
        _check_full_disk_checkpoint(processes, tmp_path, directory, ("fsize", 2),
                                    failed="epoch 2, after step 0", kept="epoch 1, after step 2")
        kept = _checkpoint_files(directory)
        assert "ckpt-2.index" in kept
    # The rerun (no limit) resumes from what was kept and ends where the uninterrupted run ends.
    _run(processes, directory, tmp_path / "rerun")
    log = (tmp_path / "rerun.log").read_text()
    if after_step == 0:
        assert "Resuming" not in log
    else:
        assert "Resuming from checkpoint" in log and "after step 2 of 4 (2 steps done)" in log
    _assert_equal_states(_final_state(tmp_path / "rerun"), uninterrupted)
    _only_named_checkpoints(directory)


@pytest.mark.slow
def test_full_file_system_during_a_checkpoint_keeps_the_last_one(processes, tmp_path,
                                                                 uninterrupted, small_filesystem):
    directory, filler = small_filesystem / "ckpt", small_filesystem / "filler"
    _check_full_disk_checkpoint(processes, tmp_path, directory, ("fill", 2, str(filler)),
                                failed="epoch 2, after step 0", kept="epoch 1, after step 2")
    assert "no space left on the device" in Path(f"{tmp_path / 'full'}.error").read_text()
    filler.unlink()  # the user frees space
    _run(processes, directory, tmp_path / "rerun")
    assert "after step 2 of 4 (2 steps done)" in (tmp_path / "rerun.log").read_text()
    _assert_equal_states(_final_state(tmp_path / "rerun"), uninterrupted)
    _only_named_checkpoints(directory)


# ----- a full disk during exports ---------------------------------------------------------------------
# The default suite fails the first file written and one written after the SavedModel; -m slow
# adds the graph and the warm-up requests (each export costs about 7 s on a loaded 2-core machine).
EXPORT_SCENARIOS = ["variables", "saved_model.pb", "encoder.keras", "warmup"]
QUICK_EXPORT_SCENARIOS = ["variables", "encoder.keras"]
FAILED_FILE = {"variables": "part-00000-of-00001.data-00000-of-00001",
               "saved_model.pb": "saved_model.pb", "encoder.keras": "encoder.keras",
               "warmup": "tf_serving_warmup_requests"}


@pytest.fixture(scope="module")
def first_version(tmp_path_factory):
    import keras_ssl
    from keras_ssl import encoders

    keras.utils.set_random_seed(0)
    base = tmp_path_factory.mktemp("first") / "model"
    return keras_ssl.export_encoder(encoders.ConvNet((16, 16, 1), width=4), base)


def _check_export_left_alone(base, first_version):
    from keras_ssl.export import validate_export

    assert _versions(base) == [1]
    assert sorted(os.listdir(base)) == ["1"], "a half-written export was left behind"
    assert _digest(base / "1") == _digest(first_version)
    validate_export(base / "1")


def _export_next(base):
    import keras_ssl
    from keras_ssl import encoders
    from keras_ssl.export import validate_export

    version = keras_ssl.export_encoder(encoders.ConvNet((16, 16, 1), width=4), base)
    assert version == base / "2"
    validate_export(version)


@pytest.mark.parametrize("scenarios", [
    QUICK_EXPORT_SCENARIOS,
    pytest.param(sorted(set(EXPORT_SCENARIOS) - set(QUICK_EXPORT_SCENARIOS)),
                 marks=pytest.mark.slow),
], ids=["quick", "slow"])
def test_file_size_limit_during_an_export_keeps_the_published_versions(processes, tmp_path,
                                                                        first_version, scenarios):
    base, out = tmp_path / "model", tmp_path / "export"
    shutil.copytree(first_version, base / "1")
    process = _start(processes, _export_with_full_disk, str(base), str(out), scenarios)
    _finish(process, out)
    messages = json.loads(Path(f"{out}.json").read_text())
    for scenario in scenarios:
        message = messages[scenario]
        print(message)
        assert message is not None, f"{scenario}: the export succeeded past the limit"
        assert "\n" not in message
        assert message == (
            f"DiskFullError: Could not export to {str(base)!r}: file too large (writing "
            f"{FAILED_FILE[scenario]}). Nothing was published and the half-written version was "
            "removed; the versions already there (1) are unchanged. Free some space (or raise "
            "the file-size limit, ulimit -f) and export again, or choose another --export path."
        ), scenario
    _check_export_left_alone(base, first_version)
    _export_next(base)


@pytest.mark.slow
def test_full_file_system_during_an_export_keeps_the_published_versions(processes, tmp_path,
                                                                         first_version,
                                                                         small_filesystem):
    base, out = small_filesystem / "model", tmp_path / "export"
    shutil.copytree(first_version, base / "1")  # ~490 kB of the 768 kB: the next one cannot fit
    process = _start(processes, _export_with_full_disk, str(base), str(out), ["as-is"])
    _finish(process, out)
    message = json.loads(Path(f"{out}.json").read_text())["as-is"]
    print(message)
    assert message.startswith(f"DiskFullError: Could not export to {str(base)!r}: no space "
                              "left on the device (writing ")
    assert "the versions already there (1) are unchanged" in message and "\n" not in message
    _check_export_left_alone(base, first_version)


# ----- exports racing each other --------------------------------------------------------------------
WRITERS = 4


def test_the_version_claim_never_replaces_a_folder_and_takes_the_next_number(tmp_path):
    """The publishing rename itself claims the number: the claim a racing export loses."""
    from keras_ssl import export
    from keras_ssl.errors import KerasSSLError

    base = tmp_path / "model"
    (base / "1").mkdir(parents=True)
    (base / "1" / "saved_model.pb").write_bytes(b"one")
    (base / "2").mkdir()  # even an empty folder (a plain rename would replace it) is never taken
    staged = []
    for i in range(3):
        folder = base / f".tmp-2-host-pid1-{i}"
        folder.mkdir()
        (folder / "saved_model.pb").write_bytes(str(i).encode())
        staged.append(folder)
    # All three aim at the same next number, as racing writers do; each gets its own.
    claimed = [export._publish(folder, base, None) for folder in staged]
    assert [p.name for p in claimed] == ["3", "4", "5"]
    assert [(p / "saved_model.pb").read_bytes() for p in claimed] == [b"0", b"1", b"2"]
    assert (base / "1" / "saved_model.pb").read_bytes() == b"one" and not any((base / "2").iterdir())
    late = base / ".tmp-9-host-pid1-x"
    late.mkdir()
    (late / "saved_model.pb").write_bytes(b"late")
    with pytest.raises(KerasSSLError, match="already exists and is never overwritten"):
        export._publish(late, base, 4)  # an explicit version that exists
    assert (base / "4" / "saved_model.pb").read_bytes() == b"1" and late.exists()


@pytest.mark.slow  # 20 s on a 2-core machine at load 7, 35-47 s at load 12
def test_concurrent_exports_get_distinct_complete_versions(processes, tmp_path, first_version):
    """Four processes export into one model folder at the same moment; a reader polls it as TF
    Serving does (list the integer folders, load the newest) and must never fail to load one."""
    base, go = tmp_path / "model", tmp_path / "go"
    shutil.copytree(first_version, base / "1")
    outs = [tmp_path / f"writer{i}" for i in range(WRITERS)]
    writers = [_start(processes, _export_together, str(base), str(out), str(go), 10 + i)
               for i, out in enumerate(outs)]
    loaded, started = {}, time.monotonic()
    while any(w.is_alive() for w in writers):
        staged = list(base.glob(".tmp-*"))
        if not go.exists() and len(staged) == WRITERS:
            go.touch()  # all four are staged: they publish together, all first aiming at 2
        if not go.exists():
            assert _versions(base) == [1]
        newest = max(_versions(base))
        if newest not in loaded:
            # What a server does: load the newest version and run its signature.
            signature = tf.saved_model.load(str(base / str(newest))).signatures["serving_default"]
            loaded[newest] = signature(images=tf.zeros((1, 16, 16, 1), tf.uint8))["embeddings"]
        assert time.monotonic() - started < 300, "the writers did not finish"
        time.sleep(0.01)
    for writer, out in zip(writers, outs, strict=True):
        _finish(writer, out)
    print(f"{WRITERS} concurrent exports done in {time.monotonic() - started:.1f} s; the reader "
          f"loaded versions {sorted(loaded)}")
    claimed = sorted(int(Path(f"{out}.version").read_text()) for out in outs)
    assert claimed == [2, 3, 4, 5]
    assert sorted(os.listdir(base)) == ["1", "2", "3", "4", "5"]  # nothing staged is left
    assert _digest(base / "1") == _digest(first_version)
    from keras_ssl.export import validate_export

    for out in outs:
        # Each version holds exactly its own writer's encoder, complete.
        with np.load(f"{out}.npz", allow_pickle=False) as written:
            validate_export(base / Path(f"{out}.version").read_text(),
                            expected=written["expected"], probe=written["probe"])


# ----- SIGKILL at the worst moments ----------------------------------------------------------------
def test_sigkill_during_checkpoint_writes_and_the_first_step_after_resume(processes, tmp_path,
                                                                         uninterrupted):
    directory = tmp_path / "ckpt"

    def killed(name, fault):
        out = tmp_path / name
        _kill_at_marker(_start(processes, _train, str(directory), str(out), fault), out)
        return out

    # 1. Killed while TensorFlow writes ckpt-4: its shard is in ckpt-4_temp/, not merged.
    killed("in-shard", ("kill-in-shard", 4))
    assert (directory / "ckpt-4_temp").is_dir()
    assert _latest(directory) == "ckpt-2"
    # 2. The rerun resumes from ckpt-2, removes the leftovers, and is killed in its first step.
    out = killed("first-step", ("kill-first-step",))
    assert "Resuming from checkpoint" in Path(f"{out}.log").read_text()
    assert "after step 2 of 4 (2 steps done)" in Path(f"{out}.log").read_text()
    assert not (directory / "ckpt-4_temp").exists()
    assert _latest(directory) == "ckpt-2"
    # 3. The next rerun resumes from ckpt-2 again, saves ckpt-4, and is killed after writing
    #    ckpt-6's files but before the state file names it.
    killed("after-files", ("kill-after-files", 6))
    assert (directory / "ckpt-6.index").exists()
    assert _latest(directory) == "ckpt-4"
    # 4. The last rerun resumes from ckpt-4 (the end of epoch 1) and finishes.
    _run(processes, directory, tmp_path / "last")
    assert "epoch 2 of 3, after step 0 of 4 (4 steps done)" in (tmp_path / "last.log").read_text()
    _assert_equal_states(_final_state(tmp_path / "last"), uninterrupted)
    assert _latest(directory) == "ckpt-12"
    _only_named_checkpoints(directory)
