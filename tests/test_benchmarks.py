"""benchmarks/augment.py, train_step.py and scaling.py run end to end and report sane numbers.

Each runs in this process (scaling.py starts its own processes, one per replica count) at its
`--quick` sizes, or smaller, and writes its JSON; the tests read the rows back. The PyTorch
reference is skipped where torch is not installed.
"""

import json
import math
import subprocess
import sys
from pathlib import Path

import keras
import pytest

import keras_ssl
from keras_ssl.errors import KerasSSLError
from keras_ssl.methods import METHODS

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import _torch_reference  # noqa: E402
import augment as augment_benchmark  # noqa: E402
import scaling  # noqa: E402
import train_step  # noqa: E402

needs_torch = pytest.mark.skipif(not _torch_reference.available(),
                                 reason="torch is not installed (pip install torch)")


def _run(module, args, tmp_path):
    out = tmp_path / f"{module.__name__}.json"
    assert module.main([*args, "--json", str(out)]) == 0
    return json.loads(out.read_text())


def _positive(value):
    return isinstance(value, float) and math.isfinite(value) and value > 0


# ----- options -----------------------------------------------------------------------------------
@pytest.mark.parametrize("module", [augment_benchmark, train_step, scaling])
def test_help_explains_every_option_and_shows_examples(module, capsys):
    with pytest.raises(SystemExit) as exit_info:
        module.parse_args(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert f"python benchmarks/{Path(module.__file__).name} --quick" in text
    lines = text.splitlines()
    options = [(i, line.split()) for i, line in enumerate(lines) if line.startswith("  --")]
    assert {"--quick", "--json"} <= {words[0] for _, words in options}
    for i, words in options:  # every option has a help text, on its line or the next
        has_metavar = len(words) > 1 and (words[1].isupper() or words[1].startswith("{"))
        on_its_line = len(words) > 1 + has_metavar
        assert on_its_line or lines[i + 1].startswith(" " * 10), words[0]


def test_quick_shrinks_only_the_options_not_given():
    args = train_step.parse_args(["--quick", "--batch-size", "8"])
    assert (args.batch_size, args.steps, args.methods) == (8, 2, "simclr")
    assert train_step.parse_args([]).methods.split(",") == sorted(METHODS)
    assert augment_benchmark.parse_args(["--quick"]).sizes == [16]
    assert scaling.parse_args(["--quick", "--batch-sizes", "8"]).batches == [8]
    with pytest.raises(SystemExit):
        train_step.parse_args(["--methods", "simclr,nope"])


# ----- augment.py ----------------------------------------------------------------------------------
def test_augment_times_the_recipe_and_the_tf_data_map_on_the_same_images(tmp_path):
    result = _run(augment_benchmark, ["--quick", "--stages"], tmp_path)
    rows = result["rows"]
    assert [row["key"] for row in rows] == ["recipe", "recipe_xla", "map"]
    assert {row["size"] for row in rows} == {16}
    for row in rows:
        assert _positive(row["views_per_s"]) and _positive(row["cpu_ms_per_1000"]), row
        assert 1e-3 < row["speedup"] < 1e3 and 1e-3 < row["cpu_speedup"] < 1e3, row
    assert rows[-1]["speedup"] == rows[-1]["cpu_speedup"] == 1.0
    assert result["machine"]["tensorflow"] and result["args"]["batch_size"] == 16
    stages = result["stages"]  # 16 px: no blur
    assert [(row["stage"], row["compiled"]) for row in stages] == [
        ("RandomResizedCrop + RandomFlip", "XLA"), ("ColorJitter + RandomGrayscale", "XLA")]
    assert all(_positive(row["cpu_ms_per_1000"]) for row in stages)


# ----- train_step.py -------------------------------------------------------------------------------
def _convnet_step_gflop(batch, size=32, width=32):
    """Conv FLOPs of a SimCLR step on ConvNet: 2 views, forward + 2 gradients (the first layer's
    input gradient is not needed)."""
    encoder = keras_ssl.encoders.ConvNet((size, size, 3), width=width)
    convs = []
    for layer in encoder.layers:
        if isinstance(layer, keras.layers.Conv2D):
            _, height, width_out, _ = layer.output.shape
            convs.append(2 * height * width_out * math.prod(layer.kernel.shape))
    return 2 * batch * (3 * sum(convs) - convs[0]) / 1e9


def test_train_step_times_a_method_and_counts_its_flops(tmp_path):
    result = _run(train_step, ["--quick", "--xla", "off"], tmp_path)
    assert _positive(result["matmul_peak_gflops"]["peak"])
    (row,) = result["methods"]
    assert (row["method"], row["encoder"], row["precision"], row["xla"]) == (
        "simclr", "convnet", "float32", "off")
    assert row["jit"] is False and row["xla_compiled"] is False
    for key in ("img_per_s", "seconds_per_step", "gflop_per_s", "pipeline_img_per_s"):
        assert _positive(row[key]), key
    assert 0.1 < row["pipeline_ratio"] < 10
    assert 0 < row["peak_fraction"] < 2
    assert row["first_step_s"] > row["seconds_per_step"]  # the first step holds the tracing
    # The count covers the convolutions and their gradients, plus a little (head, crops).
    assert 0.95 < row["gflop_per_step"] / _convnet_step_gflop(16) < 1.2


def test_train_step_times_policies_against_the_peak_of_their_compute_dtype():
    args = train_step.parse_args(["--precision", "float32, MIXED_BFLOAT16"])
    assert train_step.precisions(args) == ["float32", "mixed_bfloat16"]
    peaks = {"peak": 200.0, "tensorflow": 200.0, "tensorflow_bfloat16": 400.0}
    assert train_step.peak_of(peaks, "mixed_bfloat16") == 400.0
    assert train_step.peak_of(peaks, "float32") == 200.0
    with pytest.raises(KerasSSLError, match="mixed_bfloat16"):
        train_step.precisions(train_step.parse_args(["--precision", "bf16"]))


def test_train_step_builds_every_registered_method_on_the_inputs_it_takes():
    # `--methods all` (the default) times every method: MAE on its ViT, the series methods on
    # series, next-token prediction on a causal Transformer.
    args = train_step.parse_args(["--quick"])
    for name in sorted(METHODS):
        model, x, _ = train_step.build_method(name, args)
        assert len(x) == args.examples, name
        kind = {"int32": "text", "float32": "series", "uint8": "images"}[str(x.dtype)]
        assert kind in model.input_kinds, name


def test_references_compare_the_keras_io_example_with_keras_ssl_on_its_encoder(tmp_path):
    result = _run(train_step, ["--suite", "references", "--quick", "--no-resnet", "--no-torch",
                               "--xla", "off"], tmp_path)
    rows = {row["key"]: row for row in result["references"]}
    assert list(rows) == ["kerasio_example", "keras_ssl_kerasio_xla_off"]
    example, ours = rows["kerasio_example"], rows["keras_ssl_kerasio_xla_off"]
    assert example["parameters"] == ours["parameters"] == train_step.KERAS_IO_PARAMETERS
    assert example["xla_compiled"] is False  # its RandomZoom / RandomTranslation
    for row in (example, ours):
        assert _positive(row["img_per_s"]) and _positive(row["gflop_per_step"]), row
    # Same encoder and head: the same work per step, within the augmentation's share.
    assert abs(ours["gflop_per_step"] / example["gflop_per_step"] - 1) < 0.05
    assert _positive(ours["augment_ms"])
    assert result["pytorch"] == "skipped (--no-torch)"


def test_without_torch_or_lightly_the_references_are_skipped_with_a_note(capsys):
    assert train_step.has_modules(sys.executable, ["json", "tensorflow"])
    assert not train_step.has_modules(sys.executable, ["json", "no_module_by_this_name"])
    args = train_step.parse_args(["--suite", "references", "--quick",
                                  "--torch-python", sys.executable])
    args.torch_python = str(REPO / "no-python-here")  # an interpreter that cannot run
    notes = {}
    assert train_step.torch_in_subprocess("kerasio", args, 1, 0, notes) is None
    assert train_step.torch_in_subprocess("lightly", args, 1, 0, notes) is None
    assert notes["pytorch"].startswith("skipped: torch not installed for ")
    assert notes["lightly"].startswith("skipped: torch and lightly not installed for ")
    assert "pip install torch lightly, or --torch-python" in capsys.readouterr().out


@needs_torch
def test_pytorch_reference_runs_alone_and_times_the_keras_io_encoder():
    code = (
        "import runpy, sys\n"
        f"sys.argv = ['_torch_reference.py', 'kerasio', '--batch-size', '4', '--steps', '1',"
        " '--warmup', '0']\n"
        f"runpy.run_path({str(BENCHMARKS / '_torch_reference.py')!r}, run_name='__main__')\n"
        "print('TENSORFLOW', 'tensorflow' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    row = json.loads(next(line for line in lines if line.startswith("RESULT "))[7:])
    assert "TENSORFLOW False" in lines  # PyTorch times its step with no TensorFlow beside it
    assert row["parameters"] == train_step.KERAS_IO_PARAMETERS
    for key in ("img_per_s", "gflop_per_step", "gflop_per_s", "torch_matmul_peak"):
        assert _positive(row[key]), key
    assert math.isfinite(row["loss"]) and row["threads"] >= 1


@pytest.mark.slow  # XLA compiles every method's step: minutes on 2 cores
def test_train_step_quick_runs_every_method_with_and_without_xla(tmp_path):
    result = _run(train_step, ["--quick", "--methods", "all"], tmp_path)
    rows = result["methods"]
    methods = sorted(METHODS)
    assert [(row["method"], row["xla"]) for row in rows] == [
        (m, x) for m in methods for x in ("on", "off")]
    for row in rows:
        assert row["xla_compiled"] is (row["xla"] == "on"), row
        assert _positive(row["img_per_s"]) and _positive(row["gflop_per_step"]), row
        assert 0 < row["peak_fraction"] < 2, row


@pytest.mark.slow  # ResNet-18 under XLA, and PyTorch in its own process: a minute or two
def test_references_quick_compare_keras_ssl_and_pytorch_on_the_same_encoders(tmp_path):
    result = _run(train_step, ["--suite", "references", "--quick"], tmp_path)
    rows = {row["key"]: row for row in result["references"]}
    expected = ["kerasio_example", "keras_ssl_kerasio_xla_on", "keras_ssl_kerasio_xla_off",
                "keras_ssl_resnet18_xla_on", "keras_ssl_resnet18_xla_off"]
    if _torch_reference.available():
        expected[3:3] = ["pytorch_kerasio"]
        expected.append("pytorch_resnet18")
    if train_step.has_modules(sys.executable, ["torch", "lightly"]):
        expected.append("lightly_resnet18")
    assert list(rows) == expected
    assert _positive(rows["keras_ssl_resnet18_xla_off"]["pipeline_img_per_s"])
    for row in rows.values():
        assert _positive(row["img_per_s"]) and _positive(row["gflop_per_step"]), row
    assert rows["keras_ssl_kerasio_xla_on"]["xla_compiled"] is True
    if _torch_reference.available():
        assert result["pytorch"] == "measured"
        # The same step counted by two FLOP counters: within the augmentation's share.
        for encoder in ("kerasio", "resnet18"):
            ours = rows[f"keras_ssl_{encoder}_xla_off"]["gflop_per_step"]
            assert abs(rows[f"pytorch_{encoder}"]["gflop_per_step"] / ours - 1) < 0.1


# ----- scaling.py ----------------------------------------------------------------------------------
@pytest.mark.slow  # two processes on two logical devices
def test_scaling_reports_one_and_two_replicas_training_alike(tmp_path):
    result = _run(scaling, ["--quick", "--batch-sizes", "16", "--sync-batchnorm"], tmp_path)
    rows = result["rows"]
    assert [(row["replicas"], row["batch"], row["per_replica"]) for row in rows] == [
        (1, 16, 16), (2, 16, 8)]
    assert rows[0]["devices"] == "default" and rows[1]["devices"] in ("CPU", "GPU")
    for row in rows:
        assert _positive(row["img_per_s"]) and _positive(row["ms_per_step"]), row
        assert math.isfinite(row["loss"]), row
    assert rows[0]["speedup"] == 1.0 and 0.05 < rows[1]["speedup"] < 20
    # Negatives gathered across replicas and synchronised batch norm: the loss of one device on
    # the global batch (each replica alone would see 8 images: a loss near log(15), not log(31)).
    assert rows[1]["loss"] == pytest.approx(rows[0]["loss"], rel=1e-2)


@pytest.mark.slow  # two more processes
def test_scaling_leaves_out_a_batch_the_replicas_cannot_share(tmp_path):
    result = _run(scaling, ["--quick", "--batch-sizes", "9,16"], tmp_path)
    assert [(row["replicas"], row["batch"]) for row in result["rows"]] == [
        (1, 9), (1, 16), (2, 16)]
