"""The project's promises about itself: README and CI agree, the backend check works."""

import re
import subprocess
import sys
from pathlib import Path

from conftest import REPO


def _quickstart_commands():
    text = (REPO / "README.md").read_text()
    block = re.search(r"^#+ .*Quickstart.*?$.*?^```[a-z]*\n(.*?)^```", text, re.M | re.S)
    assert block, "README has no Quickstart code block"
    return [line.strip() for line in block.group(1).splitlines() if line.strip()]


def test_readme_quickstart_has_two_commands_and_ci_runs_the_test_one():
    commands = _quickstart_commands()
    assert len(commands) == 2
    assert "keras-ssl pretrain" in commands[0]
    ci_lines = [line.strip() for line in (REPO / ".ci/run").read_text().splitlines()]
    assert commands[1] in ci_lines, f"{commands[1]!r} must be a line of .ci/run"


def test_saved_models_keeps_only_its_readme_in_git():
    tracked = subprocess.run(
        ["git", "ls-files", "saved_models"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    assert tracked == ["saved_models/README.md"]


def test_import_with_another_keras_backend_says_how_to_fix_it():
    result = subprocess.run(
        [sys.executable, "-c", "import keras_ssl"],
        env={"KERAS_BACKEND": "jax", "PATH": "/usr/bin:/bin"},
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "TensorFlow backend" in result.stderr and "KERAS_BACKEND" in result.stderr


def test_imports_point_down_the_layers():
    """import-linter's contract in pyproject.toml: no cycle, no upward import."""
    import shutil

    lint = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    result = subprocess.run([lint], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "KEPT" in result.stdout


def test_modules_stay_small():
    """One idea per module: the command line under 250 lines, no library module over 500."""
    sizes = {p.relative_to(REPO).as_posix(): len(p.read_text().splitlines())
             for p in (REPO / "keras_ssl").rglob("*.py")}
    assert sizes["keras_ssl/cli.py"] < 250
    assert not {name: n for name, n in sizes.items() if n > 500}
