"""examples/recipes/cifar10.py: each recipe starts (--check), and the README's commands use only
the flags the script accepts."""

import math
import os
import re
import subprocess
import sys

import pytest
from conftest import REPO

RECIPES = REPO / "examples" / "recipes"
SCRIPT = RECIPES / "cifar10.py"
METHODS = ("simclr", "moco", "supcon")

# One subprocess for the three checks: TensorFlow starts once.
RUNNER = """
import runpy, sys
script, methods = sys.argv[1], sys.argv[2:]
for method in methods:
    print(f"=== {method}", flush=True)
    sys.argv = ["cifar10.py", "--method", method, "--check"]
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as exit:
        print(f"=== exit {exit.code}", flush=True)
"""


def _run(*args, timeout=300):
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=REPO,
                          env=env, timeout=timeout)


@pytest.fixture(scope="module")
def checks():
    result = _run("-c", RUNNER, str(SCRIPT), *METHODS)
    assert result.returncode == 0, result.stderr[-3000:]
    return {part.split("\n", 1)[0].strip(): part for part in result.stdout.split("=== ")[1:]
            if not part.startswith("exit")}, result.stdout


@pytest.mark.slow  # three recipe checks in one process, about 30 s
@pytest.mark.parametrize("method", METHODS)
def test_check_takes_steps_with_a_finite_loss(method, checks):
    outputs, stdout = checks
    out = outputs[method]
    match = re.search(r"steps taken: (\d+), final loss (\S+) \(finite\)", out)
    assert match, out
    assert int(match.group(1)) >= 1
    assert math.isfinite(float(match.group(2)))
    assert "val_knn_accuracy" in out
    assert f"=== {method}\n" in stdout


def _accepted_flags():
    help_text = _run(str(SCRIPT), "--help", timeout=120).stdout
    return set(re.findall(r"--[a-z][a-z-]*", help_text))


def test_readme_commands_name_only_accepted_flags():
    readme = (RECIPES / "README.md").read_text()
    commands = [line for line in readme.splitlines() if "recipes/cifar10.py" in line]
    assert len(commands) >= 3, commands
    used = {flag for line in commands for flag in re.findall(r"(?<![\w-])--[a-z][a-z-]*", line)}
    accepted = _accepted_flags()
    assert "--method" in accepted and "--check" in accepted
    assert used <= accepted, used - accepted
    for method in METHODS:
        assert any(f"--method {method}" in line for line in commands), method
