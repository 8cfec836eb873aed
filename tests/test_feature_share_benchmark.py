"""benchmarks/feature_share.py: the collapse monitor's numbers over the first steps, per method."""

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import feature_share  # noqa: E402


def test_rows_every_k_steps_from_the_same_random_init(tmp_path):
    out = tmp_path / "share.json"
    assert feature_share.main(["--data", "digits", "--image-size", "16", "--steps", "4",
                               "--every", "2", "--examples", "128", "--test-examples", "64",
                               "--batch-size", "32", "--method", "simclr",
                               "--method", "simclr:temperature=1.0",
                               "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["method"], r["steps"]) for r in rows] == [
        (m, s) for m in ("simclr", "simclr temperature=1.0") for s in (0, 2, 4)]
    for row in rows:
        assert 0 < row["top_share"] <= 1 and 1 <= row["effective_rank"] <= 64
        assert 0 <= row["knn_accuracy"] <= 1
    # Both rows start from the same seeded encoder; training moves it, the option differently.
    assert rows[0]["top_share"] == pytest.approx(rows[3]["top_share"])
    assert rows[2]["top_share"] != pytest.approx(rows[0]["top_share"])
    assert rows[5]["top_share"] != pytest.approx(rows[2]["top_share"])


def test_steps_must_be_a_multiple_of_every(capsys):
    with pytest.raises(SystemExit) as exit_info:
        feature_share.parse_args(["--data", "digits", "--method", "simclr", "--steps", "5",
                                  "--every", "2"])
    assert exit_info.value.code == 2
    assert "multiple of --every" in capsys.readouterr().err


def test_lightly_references_are_named_and_need_torch_and_lightly(capsys):
    with pytest.raises(SystemExit) as exit_info:
        feature_share.parse_args(["--data", "digits", "--reference", "lightly_dino"])
    assert exit_info.value.code == 2
    assert "'lightly_dino' is not one of lightly_simsiam, lightly_byol" in capsys.readouterr().err
    # This interpreter has neither torch nor lightly (the dev extras do not install them).
    assert feature_share.main(["--data", "digits", "--image-size", "16", "--steps", "2",
                               "--every", "2", "--examples", "64", "--test-examples", "32",
                               "--reference", "lightly_simsiam:adamw",
                               "--torch-python", sys.executable]) == 2
    err = capsys.readouterr().err
    assert "--reference lightly_simsiam:adamw needs torch and lightly in --torch-python" in err
