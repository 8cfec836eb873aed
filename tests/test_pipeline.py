"""keras_ssl.pretrain: the pipeline the command line runs, as a library call."""

import warnings

import keras
import numpy as np
import pytest
from PIL import Image

import keras_ssl
from keras_ssl.cli import main
from keras_ssl.methods import METHODS

# Each method once through the command line and once through keras_ssl.pretrain; SimCLR in the
# default suite, every other method (text, series and ViT ones included) with -m slow.
FAST = {"simclr"}
TEXT = "The if statement is used for conditional execution. " * 3


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    rng = np.random.default_rng(0)
    np.savez(root / "images.npz", x=rng.integers(0, 256, (48, 16, 16, 1), dtype=np.uint8),
             y=np.arange(48) % 3)
    words = " ".join(f"word{i % 37} and the {i % 11} of" for i in range(3000))
    (root / "notes.txt").write_text(TEXT + words)
    steps = np.linspace(0, 4 * np.pi, 32)
    np.savez(root / "series.npz", series=np.sin(steps[None, :, None] * (1 + np.arange(48) % 3)
                                                [:, None, None]).astype("float32"),
             y=np.arange(48) % 3)
    return root


def _arguments(method, sources):
    cls, _ = METHODS[method]
    if "text" in cls.input_kinds:
        return dict(data=str(sources / "notes.txt"), batch_size=8, width=16, sequence_length=16,
                    vocab_size=200)
    if "images" not in cls.input_kinds:  # the series methods, on their default encoder
        return dict(data=str(sources / "series.npz"), batch_size=16,
                    encoder=cls.default_encoder or "resnet1d", width=4)
    if method == "mae":  # its ViT
        return dict(data=str(sources / "images.npz"), batch_size=16)
    return dict(data=str(sources / "images.npz"), batch_size=16, encoder="convnet", width=4)


def _cli_flags(options):
    flags = []
    for name, value in options.items():
        flags += [f"--{name.replace('_', '-')}", str(value)]
    return flags


def _weights(folder):
    model = keras_ssl.load_encoder(folder)
    return [w for w in model.get_weights()]


@pytest.mark.parametrize("method", [
    m if m in FAST else pytest.param(m, marks=pytest.mark.slow) for m in sorted(METHODS)])
def test_pretrain_gives_the_weights_of_the_command_line(method, sources, tmp_path):
    options = _arguments(method, sources)
    assert main(["pretrain", "--method", method, *_cli_flags(options), "--epochs", "2",
                 "--knn-every", "0", "--seed", "3", "--export", str(tmp_path / "cli"),
                 "--verbose", "0"]) == 0
    result = keras_ssl.pretrain(method, **options, epochs=2, seed=3, export=tmp_path / "api",
                                knn_every=0, verbose=0, report=False)
    assert result.export_path == tmp_path / "api" / "1"
    cli, api = _weights(tmp_path / "cli"), _weights(tmp_path / "api")
    assert len(cli) == len(api) > 0
    for a, b in zip(cli, api, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not all(np.array_equal(a, b) for a, b in
                   zip(api, keras_ssl.pretrain(method, **options, epochs=0, seed=3, verbose=0,
                                               evaluate_scores=False,
                                               report=False).model.encoder.get_weights(),
                       strict=True)), "training changed nothing"
    keras.backend.clear_session()


class _Epochs(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seen = []

    def on_epoch_end(self, epoch, logs=None):
        self.seen.append(dict(logs))


def test_the_result_holds_the_run(sources):
    counter = _Epochs()
    result = keras_ssl.pretrain("simclr", str(sources / "images.npz"), encoder="convnet", width=4,
                                batch_size=16, epochs=2, eval_examples=30, callbacks=[counter],
                                method_options={"temperature": 0.3}, verbose=0, report=False)
    assert len(counter.seen) == 2 and "loss" in counter.seen[0]
    assert result.model.temperature == 0.3
    assert result.steps == 2 * result.steps_per_epoch == 4
    assert set(result.before) == set(result.after) == {"knn_accuracy", "linear_probe_accuracy"}
    table = result.table()
    assert "random init" in table and "trained (2 epochs)" in table and "kNN accuracy" in table
    assert result.export_path is None and len(result.history.history["loss"]) == 2


def test_image_size_resizes_a_folder_of_mixed_sizes(tmp_path):
    rng = np.random.default_rng(1)
    for i, size in enumerate([(20, 24), (32, 32), (18, 30)] * 6):
        folder = tmp_path / "photos" / f"class{i % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    result = keras_ssl.pretrain("rotnet", tmp_path / "photos", image_size=16, encoder="convnet",
                                width=4, batch_size=8, epochs=1, evaluate_scores=False, verbose=0,
                                report=False)
    assert result.model.encoder.input_shape == (None, 16, 16, 3)


def test_set_options_reach_the_method_and_its_views(sources, capsys):
    assert main(["pretrain", "--data", str(sources / "images.npz"), "--encoder", "convnet",
                 "--width", "4", "--batch-size", "16", "--epochs", "0", "--set", "temperature=0.3",
                 "--set", "strength=1.0", "--set", "min_crop_area=0.2", "--verbose", "0"]) == 0
    model = keras_ssl.pipeline.build_model(
        "simclr", keras_ssl.data.load(str(sources / "images.npz")),
        method_options=keras_ssl.pipeline.parse_method_options(
            ["temperature=0.3", "min_crop_area=0.2", "fused_color=false"]))
    assert model.temperature == 0.3 and model.augmenter.augmentations[0].scale == (0.2, 1.0)
    assert model.augmenter.augmentations[2].fused is False
    assert main(["pretrain", "--data", str(sources / "images.npz"), "--set", "grid=3",
                 "--epochs", "0", "--verbose", "0"]) == 2
    assert "--method simclr" in capsys.readouterr().err


def test_a_short_run_of_a_slow_starting_method_is_warned_before_training(sources):
    with pytest.warns(UserWarning, match=r"BYOL learns slowly: .* This run plans 2 steps, fewer "
                                         r"than 1000: give it more time, or use simclr"):
        keras_ssl.pretrain("byol", **_arguments("byol", sources), epochs=1, seed=0, knn_every=0,
                           evaluate_scores=False, verbose=0, report=False)
    assert keras_ssl.SimCLR.short_run_warning(150) is None
    assert keras_ssl.SupCon.short_run_warning(3) is None
    assert keras_ssl.SimCLR.short_run_warning(149).endswith(
        "fewer than 150: give it more time, or use autoencoder for a short run.")
    assert keras_ssl.SimSiam.short_run_warning(999) and not keras_ssl.DINO.short_run_warning(1000)
    assert "NNCLR learns slowly: in 1- and 3-minute runs on the digits (72 and 192 steps) its " \
        "encoder ended below the random-init one" in keras_ssl.NNCLR.short_run_warning(300)
    assert not keras_ssl.VICReg.short_run_warning(500) and keras_ssl.BarlowTwins.short_run_warning(499)
    assert "gained under 2 points" in keras_ssl.MoCo.short_run_warning(120)
    assert not keras_ssl.MoCo.short_run_warning(300)
    assert "(249 steps)" in keras_ssl.MAE.short_run_warning(249)
    assert not keras_ssl.MAE.short_run_warning(800)
    # One class, three registered names: the plain autoencoder never warns.
    assert keras_ssl.AutoEncoder.short_run_warning(150, {"corruption": "noise"}) is None
    assert "(126 steps)" in keras_ssl.AutoEncoder.short_run_warning(149, {"corruption": "noise"})
    assert keras_ssl.AutoEncoder.short_run_warning(1) is None
    assert keras_ssl.AutoEncoder.short_run_warning(399, {"corruption": "mask"}).startswith(
        "The masked autoencoder learns slowly: in 1- and 3-minute runs on the digits")


def test_colour_images_have_their_own_short_run_thresholds():
    """CIFAR-10's 1-minute sweep: SimCLR and MoCo gain at once, the autoencoders lose."""
    assert keras_ssl.SimCLR.short_run_warning(1, colour=True) is None
    assert keras_ssl.MoCo.short_run_warning(1, colour=True) is None
    for options, name in (({}, "The autoencoder"), ({"corruption": "noise"}, "The denoising "
                          "autoencoder"), ({"corruption": "mask"}, "The masked autoencoder")):
        warning = keras_ssl.AutoEncoder.short_run_warning(399, options, colour=True)
        assert warning.startswith(f"{name} learns slowly: in a 1-minute CIFAR-10 run (86-91 steps)")
        assert warning.endswith("use simclr or moco for a short run.")
        assert keras_ssl.AutoEncoder.short_run_warning(400, options, colour=True) is None
    assert "(33 steps)" in keras_ssl.RotNet.short_run_warning(99, colour=True)
    assert keras_ssl.RotNet.short_run_warning(100, colour=True) is None
    assert keras_ssl.RotNet.short_run_warning(1) is None
    assert "(66 steps)" in keras_ssl.NNCLR.short_run_warning(149, colour=True)
    assert keras_ssl.NNCLR.short_run_warning(150, colour=True) is None
    assert "(72 and 192 steps)" in keras_ssl.NNCLR.short_run_warning(499)  # gray: the digits
    assert "(262 steps)" in keras_ssl.MAE.short_run_warning(499, colour=True)
    assert keras_ssl.MAE.short_run_warning(500, colour=True) is None
    assert "(249 steps)" in keras_ssl.MAE.short_run_warning(799)
    # The other methods keep the gray images' threshold and name the colour alternative.
    assert keras_ssl.BYOL.short_run_warning(999, colour=True).endswith(
        "fewer than 1000: give it more time, or use simclr or moco for a short run.")
    assert keras_ssl.BYOL.short_run_warning(1000, colour=True) is None


def test_a_short_budget_on_the_default_convnet_names_a_narrower_one(sources):
    """The Quickstart's path: a time budget planned before training, on the default ConvNet."""
    with pytest.warns(UserWarning, match=r"SimCLR learns slowly: .* use autoencoder for a short "
                                         r"run\. On a time budget a narrower encoder fits more "
                                         r"steps: width 16 \(--width 16\)"):
        result = keras_ssl.pretrain("simclr", str(sources / "images.npz"), batch_size=16,
                                    minutes=0.005, seed=0, knn_every=0, evaluate_scores=False,
                                    verbose=0, report=False)
    assert result.model.encoder.name == "convnet" and result.steps >= 1


def test_the_pipeline_warns_for_the_masked_autoencoder_and_on_colour_the_plain_one(sources):
    with pytest.warns(UserWarning, match="The masked autoencoder learns slowly"):
        keras_ssl.pretrain("masked", **_arguments("masked", sources), epochs=1, seed=0,
                           knn_every=0, evaluate_scores=False, verbose=0, report=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        keras_ssl.pretrain("autoencoder", **_arguments("autoencoder", sources), epochs=1, seed=0,
                           knn_every=0, evaluate_scores=False, verbose=0, report=False)
    colour = np.random.default_rng(0).integers(0, 256, (48, 16, 16, 3), dtype=np.uint8)
    with pytest.warns(UserWarning, match="The autoencoder learns slowly: in a 1-minute CIFAR-10"):
        keras_ssl.pretrain("autoencoder", colour, batch_size=16, encoder="convnet", width=4,
                           epochs=1, seed=0, knn_every=0, evaluate_scores=False, verbose=0,
                           report=False)
