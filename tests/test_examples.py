"""Every example in examples/ runs end to end in its --quick mode and prints its results.

All quick runs share one subprocess (TensorFlow starts once, not once per script); each example
runs there as `__main__` with its own argv, and its output, exit status and time are reported back
to the test of that example.
"""

import json
import os
import re
import subprocess
import sys

import pytest
from conftest import REPO

import keras_ssl

EXAMPLES = REPO / "examples"

# script -> (the keras_ssl class it needs, extra arguments, a regex its output must match)
TABLE_ROW = r"random init\s+[01]\.\d{3,4}\s+[01]\.\d{3,4}"
CASES = {
    "simclr_cifar10": ("SimCLR", [], TABLE_ROW + r".*online probe accuracy"),
    "moco": ("MoCo", [], TABLE_ROW),
    "supcon": ("SupCon", [], TABLE_ROW),
    "triplet": ("Triplet", [], TABLE_ROW + r".*nearest neighbours' labels \[\d"),
    "rotnet": ("RotNet", [], TABLE_ROW + r".*\(pretext, last epoch\): [01]\.\d{3}"),
    "jigsaw": ("Jigsaw", [], TABLE_ROW + r".*jigsaw accuracy"),
    "masked_autoencoder": ("AutoEncoder", ["--plots", "{tmp}"],
                           r"reconstructions\.png.*" + TABLE_ROW + r".*reconstruction error"),
    "masked_language_model": ("MaskedLanguageModel", [],
                              r"masked-token accuracy: train [01]\.\d{3}, held-out [01]\.\d{3}"
                              r".*query: .*nearest: "),
    **{name: (cls, [], TABLE_ROW + r".*embedding std 0\.\d{4}, effective rank \d")
       for name, cls in (("byol", "BYOL"), ("simsiam", "SimSiam"), ("barlow_twins", "BarlowTwins"),
                         ("vicreg", "VICReg"), ("dino", "DINO"), ("nnclr", "NNCLR"),
                         ("mae_vit", "MAE"))},
    "next_token": ("NextTokenModel", [],
                   r"unigram\s+0\.\d{3}.*next_token\s+0\.\d{3}.*query: .*nearest: "),
    "time_series": ("MaskedSteps", [], TABLE_ROW + r".*ts2vec\s+[01]\.\d{3}\s+[01]\.\d{3}"),
    "downstream_classifier": ("SimCLR", [],
                              r"(1% \(\d+\)\s+linear probe\s+[01]\.\d{3}\s+[01]\.\d{3}).*"
                              r"(10% \(\d+\)\s+fine-tune\s+[01]\.\d{3}\s+[01]\.\d{3})"),
}

RUNNER = """
import contextlib, io, json, os, runpy, sys, time, traceback
results, out_path = {}, os.path.abspath("results.json")
for name, argv in json.loads(sys.argv[1]).items():
    out, start, error = io.StringIO(), time.perf_counter(), None
    sys.argv = [name + ".py", *argv]
    with contextlib.redirect_stdout(out):
        try:
            runpy.run_path(os.path.join(EXAMPLES, name + ".py"), run_name="__main__")
        except SystemExit as exit:
            if exit.code not in (0, None):
                error = f"SystemExit({exit.code!r})"
        except BaseException:
            error = traceback.format_exc()
    results[name] = {"stdout": out.getvalue(), "error": error,
                     "seconds": time.perf_counter() - start}
    print(f"{name}: {results[name]['seconds']:.1f} s", file=sys.stderr)
with open(out_path, "w") as f:
    json.dump(results, f)
"""


# The default suite runs the two examples that show plots and text (masked_autoencoder,
# masked_language_model); every other example runs with -m slow (the default suite stays under
# 10 minutes on 2 cores).
SLOW = {"simclr_cifar10", "downstream_classifier", "moco", "supcon", "triplet", "rotnet",
        "jigsaw", "byol", "simsiam", "barlow_twins", "vicreg", "dino", "nnclr", "mae_vit",
        "next_token", "time_series"}


def _quick_runs(names, folder):
    """Every example in `names` with --quick, in one process; {name: result}."""
    runs = {
        name: ["--quick", *(a.replace("{tmp}", str(folder)) for a in CASES[name][1])]
        for name in names
    }
    script = folder / "runner.py"
    script.write_text(f"EXAMPLES = {str(EXAMPLES)!r}\n" + RUNNER)
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run([sys.executable, str(script), json.dumps(runs)], cwd=folder, env=env,
                            capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((folder / "results.json").read_text())
    # Seen with `pytest -s`: how long each quick mode took.
    print("".join(f"\n  {name}: {r['seconds']:.1f} s" for name, r in results.items()))
    return results


@pytest.fixture(scope="module")
def quick_runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("examples")
    return _quick_runs(sorted(set(CASES) - SLOW), folder), folder


@pytest.fixture(scope="module")
def slow_quick_runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("method_examples")
    return _quick_runs(sorted(SLOW), folder), folder


def _check(name, runs):
    # The class the example shows is public API: a renamed class fails here, not skips.
    assert hasattr(keras_ssl, CASES[name][0]), f"keras_ssl.{CASES[name][0]} is gone"
    results, folder = runs
    result = results[name]
    assert result["error"] is None, result["error"] + result["stdout"][-2000:]
    assert re.search(CASES[name][2], result["stdout"], re.S), result["stdout"][-3000:]
    if name == "masked_autoencoder":
        assert (folder / "reconstructions.png").stat().st_size > 1000


@pytest.mark.parametrize("name", sorted(set(CASES) - SLOW))
def test_example_quick_mode_runs_and_reports(name, quick_runs):
    _check(name, quick_runs)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SLOW))
def test_method_example_quick_mode_runs_and_reports(name, slow_quick_runs):
    _check(name, slow_quick_runs)


def test_every_example_script_is_tested():
    scripts = {p.stem for p in EXAMPLES.glob("*.py")}
    assert scripts == set(CASES), scripts ^ set(CASES)
