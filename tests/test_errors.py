"""Every bad input in docs/errors.md, through the Python API and the command line.

Each row of the table in docs/errors.md is one case here (its id is the test id). An API case must
raise `KerasSSLError` (or warn, for skipped files) with a message that says what was wrong and how
to fix it; a CLI case must print exactly one line, `keras-ssl: error: ...`, exit with status 2,
and leave an existing export folder and checkpoint folder byte for byte as they were.

`python tests/test_errors.py` prints the table rows with the messages of a real run.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import re
import shutil
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pytest

import keras_ssl
from keras_ssl import checkpoint, data, encoders, export, pretext
from keras_ssl.cli import main
from keras_ssl.errors import KerasSSLError

DOC = Path(__file__).resolve().parents[1] / "docs" / "errors.md"


@dataclass(frozen=True)
class Case:
    id: str
    kind: str  # the row's first column
    match: str  # a stable part of the message
    api: Callable | None = None  # f(workspace) that must raise
    cli: list | None = None  # `keras-ssl pretrain` arguments ({ws} is the workspace)
    warns: bool = False  # the API call warns instead of raising
    also: str = ""  # other tests that check the same input
    cli_match: str = ""  # when the command line words it differently
    command: str = "pretrain"  # the keras-ssl command the `cli` arguments go to


# ----- the workspace: bad files and folders, an existing export and checkpoint folder --------------
def _make_workspace(root: Path) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    np.savez(root / "unlabelled.npz", x=rng.integers(0, 256, (32, 16, 16, 1), dtype=np.uint8))
    np.savez(root / "rank5.npz", x=np.zeros((4, 2, 16, 16, 1), np.uint8))
    np.savez(root / "channels2.npz", x=np.zeros((4, 16, 16, 2), np.uint8))
    np.savez(root / "strings.npz", x=np.array([["a", "b"]] * 4))
    np.savez(root / "empty.npz", x=np.zeros((0, 16, 16, 1), np.uint8))
    np.savez(root / "tiny4px.npz", x=np.zeros((8, 4, 4, 1), np.uint8))
    np.savez(root / "range.npz", x=np.full((4, 16, 16, 1), 300.0, np.float32))
    (root / "corrupt.npz").write_bytes(b"PK\x03\x04 this is not a zip archive")
    (root / "no_images").mkdir()
    (root / "no_images" / "notes.md").write_text("notes")
    (root / "mixed_sizes" / "cats").mkdir(parents=True)
    Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(root / "mixed_sizes/cats/a.png")
    Image.fromarray(rng.integers(0, 256, (20, 16), dtype=np.uint8)).save(root / "mixed_sizes/cats/b.png")
    (root / "with_text").mkdir()
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(root / f"with_text/{i}.png")
    (root / "with_text" / "labels.csv").write_text("a,b")
    (root / "broken_image").mkdir()
    (root / "broken_image" / "broken.png").write_bytes(b"\x89PNG not really")
    (root / "a_file").write_text("keep me")
    np.savez(root / "inf_vectors.npz", x=np.array([[0.0, np.inf]] * 8, np.float32))
    np.savez(root / "labelled32.npz", x=rng.integers(0, 256, (40, 32, 32, 1), dtype=np.uint8),
             y=np.arange(40) % 2)
    latin1 = "Caf\xe9 cr\xe8me " + " ".join(f"word{i}" for i in range(40)) + ". "
    (root / "latin1.txt").write_bytes(latin1.encode("latin-1") * 20)
    (root / "empty_version" / "3").mkdir(parents=True)
    encoders.ConvNet((16, 16, 1), width=4).save_weights(root / "convnet4.weights.h5")
    keras.utils.set_random_seed(0)
    export.export_encoder(encoders.ConvNet((16, 16, 1), width=4), root / "exported")
    # A real checkpoint folder, of a run of another model.
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    checkpoint.fit_resumable(model, np.zeros((8, 3), "float32"), np.zeros((8, 1), "float32"),
                             batch_size=4, epochs=1, checkpoint_dir=root / "checkpoints",
                             verbose=0)
    return root


def _fit(model, x, y=None, batch_size=8):
    model.compile(optimizer="adam")
    model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0)


def _convnet(size=16, channels=1):
    return encoders.ConvNet((size, size, channels), width=4)


def _images(n=16, size=16, channels=1, dtype=np.uint8):
    return np.random.default_rng(0).integers(0, 256, (n, size, size, channels)).astype(dtype)


def _diverge(ws):
    """A regression whose data hold an inf, trained with checkpoints in a fresh folder."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x = np.random.default_rng(0).normal(size=(40, 3)).astype("float32")
    x[17, 1] = np.inf
    folder = ws / "diverged"
    shutil.rmtree(folder, ignore_errors=True)
    checkpoint.fit_resumable(model, x, np.zeros((40, 1), "float32"), batch_size=8, epochs=1,
                             checkpoint_dir=folder, save_every_steps=1, verbose=0)


CASES = [
    Case("rank", "wrong rank (5-D array)", "expected images [N, H, W, C]",
         api=lambda ws: data.load(ws / "rank5.npz"),
         cli=["--data", "{ws}/rank5.npz"], also="test_data.py::test_bad_images_are_clear_errors"),
    Case("rank-batch", "wrong rank (batch of 2-D images into fit)", "takes image batches [N, H, W, C]",
         api=lambda ws: _fit(keras_ssl.SimCLR(_convnet()), _images()[..., 0])),
    Case("dtype", "wrong dtype (strings)", "must be a numeric array",
         api=lambda ws: data.load(ws / "strings.npz"), cli=["--data", "{ws}/strings.npz"]),
    Case("dtype-batch", "wrong dtype (int64 images into fit)", "takes uint8 images (0-255) or float",
         api=lambda ws: _fit(keras_ssl.SimCLR(_convnet()), _images(dtype=np.int64))),
    Case("range", "float images outside [0, 1] and [0, 255]", "float images must be in [0, 1]",
         api=lambda ws: data.load(ws / "range.npz"), cli=["--data", "{ws}/range.npz"]),
    Case("channels", "wrong channel count (2)", "2 channels",
         api=lambda ws: data.load(ws / "channels2.npz"), cli=["--data", "{ws}/channels2.npz"],
         also="test_cli.py::test_bad_data_files_get_one_line_and_exit_2"),
    Case("channels-encoder", "channel count unlike the encoder's", "1-channel images but the data have 3",
         api=lambda ws: _fit(keras_ssl.SimCLR(_convnet()), _images(channels=3))),
    Case("smaller-than-crop", "images smaller than the crop", "smaller than the 8 px minimum",
         api=lambda ws: _fit(keras_ssl.SimCLR(encoders.ConvNet((4, 4, 1), width=4)),
                             _images(size=4)),
         cli=["--data", "{ws}/tiny4px.npz"],
         also="test_cli.py::test_images_smaller_than_the_crop_and_export_path_that_is_a_file"),
    Case("smaller-than-grid", "images smaller than the puzzle grid", "cannot run on 4x4 tiles",
         api=lambda ws: keras_ssl.Jigsaw(_convnet(16), grid=3)),
    Case("grid-pretext", "image smaller than the puzzle grid (pretext)", "no grid fits",
         api=lambda ws: pretext.make_puzzle(np.zeros((2, 7, 7, 3), np.uint8), grid=2),
         also="test_pretext.py::test_puzzle_errors_name_the_problem_and_the_fix"),
    Case("batch-1", "batch size below 2", "needs batches of at least 2 examples",
         api=lambda ws: _fit(keras_ssl.SimCLR(_convnet()), _images(), batch_size=1),
         cli=["--batch-size", "1"], cli_match="--batch-size 1 is too small",
         also="test_cli.py::test_bad_arguments_get_one_line_and_exit_2"),
    Case("batch-larger-than-data", "batch larger than the data", "so an epoch would hold no full batch",
         api=lambda ws: data.resumable_dataset(_images(4), batch_size=8, epochs=1),
         cli=["--data", "{ws}/unlabelled.npz", "--batch-size", "64"]),
    Case("empty", "empty data", "is empty",
         api=lambda ws: data.load(ws / "empty.npz"), cli=["--data", "{ws}/empty.npz"],
         also="test_cli.py::test_bad_data_files_get_one_line_and_exit_2"),
    Case("supcon-labels", "labels missing for SupCon", "SupCon needs class labels",
         api=lambda ws: _fit(keras_ssl.SupCon(_convnet()), _images()),
         cli=["--method", "supcon", "--data", "{ws}/unlabelled.npz"],
         cli_match="--method supcon needs class labels"),
    Case("triplet-labels", "labels missing for triplet", "Triplet needs class labels",
         api=lambda ws: _fit(keras_ssl.Triplet(_convnet()), _images()),
         cli=["--method", "triplet", "--data", "{ws}/unlabelled.npz"],
         cli_match="--method triplet needs class labels"),
    Case("label-count", "one label too few", "labels but there are",
         api=lambda ws: data.load((_images(8), np.zeros(7, int))),
         also="test_data.py::test_bad_labels_are_clear_errors"),
    Case("corrupt-npz", "a corrupt .npz", "Could not read",
         api=lambda ws: data.load(ws / "corrupt.npz"), cli=["--data", "{ws}/corrupt.npz"],
         also="test_data.py::test_corrupt_npz_is_a_clear_error"),
    Case("missing-folder", "a missing folder", "No such file or folder",
         api=lambda ws: data.load(ws / "no" / "such" / "folder"),
         cli=["--data", "{ws}/no/such/folder"], also="test_data.py::test_empty_and_missing_folders"),
    Case("no-images", "a folder with no images", "No images",
         api=lambda ws: data.load(ws / "no_images"), cli=["--data", "{ws}/no_images"],
         also="test_data.py::test_empty_and_missing_folders"),
    Case("mixed-sizes", "images of mixed sizes", "different sizes",
         api=lambda ws: data.load(ws / "mixed_sizes"), cli=["--data", "{ws}/mixed_sizes"],
         also="test_data.py::test_mixed_sizes_name_two_files_and_image_size_fixes_it"),
    Case("non-image-files", "non-image files in a folder (a warning; the images load)",
         "skipped 1 file(s)", api=lambda ws: data.load(ws / "with_text"), warns=True,
         also="test_data.py::test_non_image_files_are_skipped_with_a_warning"),
    Case("corrupt-image", "an undecodable image file", "Could not decode the image",
         api=lambda ws: data.load(ws / "broken_image"), cli=["--data", "{ws}/broken_image"],
         also="test_data.py::test_corrupt_image_is_named"),
    Case("export-file", "an export path that is a file", "is an existing file",
         api=lambda ws: keras_ssl.export_encoder(_convnet(), ws / "a_file"),
         cli=["--data", "{ws}/unlabelled.npz", "--export", "{ws}/a_file"],
         also="test_export.py::test_export_path_that_is_a_file_is_refused_and_left_alone"),
    Case("export-under-file", "an export path inside a file", "is a file",
         api=lambda ws: export.check_export_path(ws / "a_file" / "model"),
         cli=["--data", "{ws}/unlabelled.npz", "--export", "{ws}/a_file/model"]),
    Case("export-not-writable", "an export path that is not writable", "not writable",
         api=lambda ws: export.check_export_path("/sys/keras-ssl-export"),
         cli=["--data", "{ws}/unlabelled.npz", "--export", "/sys/keras-ssl-export"]),
    Case("export-version-exists", "an export version that exists", "never overwritten",
         api=lambda ws: keras_ssl.export_encoder(_convnet(), ws / "exported", version=1),
         also="test_export.py::test_existing_version_is_never_overwritten"),
    Case("unknown-method", "an unknown method", "Unknown method 'simclrr'. Did you mean 'simclr'",
         api=lambda ws: keras_ssl.methods.get_method("simclrr"), cli=["--method", "simclrr"],
         also="test_cli.py::test_bad_arguments_get_one_line_and_exit_2"),
    Case("unknown-encoder", "an unknown encoder", "Unknown encoder",
         api=lambda ws: encoders.build("vgg", (16, 16, 1)), cli=["--encoder", "vgg"]),
    Case("method-kind", "a method for images on vectors", "learns from images",
         cli=["--method", "rotnet", "--data", "digits_vectors"]),
    Case("temperature", "temperature <= 0", "temperature must be a finite number > 0",
         api=lambda ws: keras_ssl.SimCLR(_convnet(), temperature=0),
         also="test_losses.py::test_bad_temperature_raises"),
    Case("queue", "a MoCo queue smaller than the batch", "queue_size (4) is smaller than the global batch",
         api=lambda ws: _fit(keras_ssl.MoCo(_convnet(), queue_size=4, projection_dim=8), _images())),
    Case("momentum", "MoCo momentum outside [0, 1]", "momentum must be <= 1.0",
         api=lambda ws: keras_ssl.MoCo(_convnet(), momentum=1.5)),
    Case("permutations", "more jigsaw permutations than 9! allows", "only 9! = 362880 permutations",
         api=lambda ws: keras_ssl.Jigsaw(_convnet(48), grid=3, permutations=400_000),
         also="test_pretext.py::test_jigsaw_permutations_errors_say_the_limits"),
    Case("learning-rate", "a learning rate <= 0", "--learning-rate must be > 0",
         cli=["--learning-rate", "0"]),
    Case("epochs", "negative epochs", "--epochs must be an integer of at least 0", cli=["--epochs", "-1"],
         also="test_cli.py::test_bad_arguments_get_one_line_and_exit_2"),
    Case("checkpoint-file", "a checkpoint path that is a file", "is an existing file",
         api=lambda ws: checkpoint.TrainingCheckpoint(ws / "a_file"),
         cli=["--checkpoint-dir", "{ws}/a_file"]),
    Case("checkpoint-other-run", "a checkpoint folder of another run", "belong to another run",
         cli=["--data", "{ws}/unlabelled.npz", "--batch-size", "8", "--epochs", "1",
              "--encoder", "convnet", "--width", "4"],
         also="test_checkpoint.py::test_checkpoint_of_another_run_is_refused_and_left_alone"),
    Case("nan-loss", "a loss that becomes NaN or infinite (--learning-rate 1e10, inf in the data)",
         "The training loss became", api=lambda ws: _diverge(ws),
         also="test_guards.py::test_cli_learning_rate_1e10_is_one_line_and_keeps_the_last_good_"
              "checkpoint, test_guards.py::test_inf_in_the_data_stops_at_the_step_that_sees_it"),
    Case("minutes-nan", "a time budget that is not a finite number (--minutes nan / inf)",
         "is not a finite number", cli=["--minutes", "nan"]),
    Case("learning-rate-nan", "a learning rate that is NaN", "is not a finite number",
         cli=["--learning-rate", "nan"]),
    Case("eval-examples", "a negative number of evaluation examples",
         "--eval-examples must be an integer of at least 1", cli=["--eval-examples", "-5"],
         api=lambda ws: keras_ssl.pretrain(data=ws / "unlabelled.npz", eval_examples=-5)),
    Case("width", "an encoder width of 0", "--width must be an integer of at least 1",
         cli=["--width", "0"], api=lambda ws: keras_ssl.pretrain(width=0)),
    Case("unknown-flag", "an argument the command does not know (argparse)",
         "unrecognized arguments: --epoks", cli=["--epoks", "3"]),
    Case("inf-vectors", "inf in feature vectors", "NaN or infinite values",
         api=lambda ws: data.load(ws / "inf_vectors.npz"), cli=["--data", "{ws}/inf_vectors.npz"]),
    Case("evaluate-file", "keras-ssl evaluate / embed on a path that is a file",
         "is a file, not an exported encoder", command="evaluate",
         cli=["{ws}/a_file", "--data", "digits"],
         api=lambda ws: keras_ssl.serving.resolve_version(ws / "a_file")),
    Case("evaluate-incomplete", "a version folder without saved_model.pb",
         "is a version folder without saved_model.pb", command="evaluate",
         cli=["{ws}/empty_version/3", "--data", "digits"],
         api=lambda ws: keras_ssl.serving.resolve_version(ws / "empty_version" / "3")),
    Case("evaluate-shape", "an export of another image size than the data",
         "takes images of shape (16, 16, 1), but the data's are (32, 32, 1)", command="evaluate",
         cli=["{ws}/exported", "--data", "{ws}/labelled32.npz"],
         api=lambda ws: keras_ssl.serving.check_fits(ws / "exported", (32, 32, 1), "images")),
    Case("evaluate-kind", "an image export given feature vectors", "takes images, but the data "
         "are vectors", command="embed",
         cli=["{ws}/exported", "--data", "digits_vectors", "--out", "{ws}/e.npz"],
         api=lambda ws: keras_ssl.serving.check_fits(ws / "exported", (64,), "vectors")),
    Case("embed-out-folder", "keras-ssl embed --out into a folder that does not exist",
         "does not exist", command="embed",
         cli=["{ws}/exported", "--data", "digits", "--out", "{ws}/no/such/folder/e.npz"]),
    Case("encoder-weights", "encoder weights saved from another encoder",
         "does not fit the convnet encoder",
         api=lambda ws: encoders.build("convnet", (16, 16, 1), width=8,
                                       weights=ws / "convnet4.weights.h5"),
         cli=["--data", "{ws}/unlabelled.npz", "--encoder", "convnet", "--width", "8",
              "--encoder-weights", "{ws}/convnet4.weights.h5"],
         also="test_encoders_hub.py::test_pretrain_and_the_cli_start_a_named_encoder_from_its_weights"),
    Case("encoder-weights-file", "encoder weights that are not a weights file",
         "are not a .weights.h5 file",
         api=lambda ws: encoders.build("convnet", (16, 16, 1), width=4, weights=ws / "a_file"),
         cli=["--data", "{ws}/unlabelled.npz", "--encoder", "convnet", "--width", "4",
              "--encoder-weights", "{ws}/a_file"]),
    Case("ts2vec-encoder", "TS2Vec on an encoder without per-step features",
         "--encoder dilated_conv1d",
         api=lambda ws: keras_ssl.TS2Vec(encoders.ResNet1D((24, 1), width=4)),
         also="test_ts2vec.py::test_ts2vec_trains_with_xla_exports_and_refuses_other_encoders"),
    Case("not-utf8", "a .txt file that is not UTF-8", "is not UTF-8",
         api=lambda ws: keras_ssl.data.text.load(ws / "latin1.txt", test_fraction=0),
         warns=True),
]
API_CASES = [c for c in CASES if c.api is not None]
CLI_CASES = [c for c in CASES if c.cli is not None]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return _make_workspace(tmp_path_factory.mktemp("errors"))


def _digest(folder: Path) -> str:
    sha = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        sha.update(str(path.relative_to(folder)).encode())
        if path.is_file():
            sha.update(path.read_bytes())
            sha.update(str(path.stat().st_mtime_ns).encode())
    return sha.hexdigest()


def _api_message(case: Case, ws: Path) -> str:
    if case.warns:
        with pytest.warns(UserWarning) as record:
            case.api(ws)
        return " ".join(str(w.message) for w in record)
    with pytest.raises(KerasSSLError) as err:
        case.api(ws)
    return str(err.value)


def _cli_args(case: Case, ws: Path) -> list[str]:
    args = [a.replace("{ws}", str(ws)) for a in case.cli]
    if case.command != "pretrain":
        return [case.command, *args]
    # Every failing run gets the existing export and checkpoint folders, to show they survive.
    if "--export" not in args:
        args += ["--export", str(ws / "exported")]
    if "--checkpoint-dir" not in args:
        args += ["--checkpoint-dir", str(ws / "checkpoints")]
    if "--data" not in args:
        args += ["--data", str(ws / "unlabelled.npz")]
    return ["pretrain", *args, "--verbose", "0"]


def _cli_message(case: Case, ws: Path) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(_cli_args(case, ws))
    return code, err.getvalue().strip()


@pytest.mark.parametrize("case", API_CASES, ids=[c.id for c in API_CASES])
def test_api(case, workspace):
    message = _api_message(case, workspace)
    assert case.match in message, message


@pytest.mark.parametrize("case", CLI_CASES, ids=[c.id for c in CLI_CASES])
def test_cli_is_one_line_and_loses_nothing(case, workspace):
    before = {name: _digest(workspace / name) for name in ("exported", "checkpoints")}
    code, err = _cli_message(case, workspace)
    assert code == 2, err
    assert err.startswith("keras-ssl: error:") and (case.cli_match or case.match) in err, err
    assert "\n" not in err and "Traceback" not in err
    assert {name: _digest(workspace / name) for name in ("exported", "checkpoints")} == before
    assert (workspace / "a_file").read_text() == "keep me"
    assert sorted(p.name for p in (workspace / "exported").iterdir()) == ["1"]


def test_docs_table_has_every_case_with_its_message():
    text = DOC.read_text()
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `([a-z0-9-]+)` \|.*$", text, re.M)}
    assert sorted(rows) == sorted(c.id for c in CASES)
    for case in CASES:
        assert case.match in rows[case.id].replace("\\|", "|"), case.id
    assert len({c.kind for c in CASES}) >= 15


# ----- the table --------------------------------------------------------------------------------
def _markdown_rows(ws: Path) -> list[str]:
    """Table rows for docs/errors.md, with the messages of a real run."""

    def clean(message):
        return message.replace(str(ws), "<dir>").replace("|", "\\|").replace("\n", " ")

    rows = []
    for case in CASES:
        where, messages, tests = [], [], []
        if case.api is not None:
            where.append("API")
            messages.append(clean(_api_message(case, ws)))
            tests.append(f"`test_errors.py::test_api[{case.id}]`")
        if case.cli is not None:
            where.append("CLI")
            message = clean(_cli_message(case, ws)[1])
            if message.removeprefix("keras-ssl: error: ") not in messages:
                messages.append(message)
            tests.append(f"`test_errors.py::test_cli_is_one_line_and_loses_nothing[{case.id}]`")
        if case.also:
            tests += [f"`{t.strip()}`" for t in case.also.split(",")]
        message = "<br>".join(messages) if messages else f"`{case.match} ...` (see the tests)"
        rows.append(f"| `{case.id}` | {case.kind} | {' + '.join(where) or 'API + CLI'} | "
                    f"{message} | {', '.join(tests)} |")
    return rows


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        ws = _make_workspace(Path(folder))
        print("\n".join(_markdown_rows(ws)))
    sys.exit(0)

