"""benchmarks/series_quality.py: rows with options, several seeds, mean and spread."""

import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import series_quality  # noqa: E402


def test_rows_with_view_options_and_seeds_report_mean_and_spread(capsys):
    results = series_quality.main([
        "--quick", "--seeds", "0,1", "--width", "4",
        "--method", "simclr:time_warp=0,crop_scale=none", "--method", "segment_order:segments=2"])
    _, rows = results["GunPoint"]
    assert list(rows) == ["raw series", "random init", "simclr time_warp=0 crop_scale=none",
                          "segment_order segments=2", "supervised"]
    for row in rows.values():
        assert len(row["knn_runs"]) == 2 and np.isclose(row["knn"], np.mean(row["knn_runs"]))
        assert np.isclose(row["linear_std"], np.std(row["linear_runs"]))
    # The seed changes the encoder's first weights: the random-init scores are two draws.
    assert rows["raw series"]["knn_std"] == 0.0
    printed = capsys.readouterr().out
    assert "# GunPoint, seed 1:" in printed and "seeds=0,1" in printed and " ± " in printed


def test_view_options_reach_the_views_and_the_rest_the_method():
    encoder = series_quality.make_encoder(
        type("Data", (), {"input_shape": (32, 1)})(), width=4, seed=0)
    model = series_quality.build_method(
        "simclr", encoder, 0, {"time_warp": 0, "crop_scale": None, "temperature": 0.3})
    names = [type(layer).__name__ for layer in model.augmenter.augmentations]
    assert "TimeWarp" not in names and "WindowCrop" not in names and "Jitter" in names
    assert model.temperature == pytest.approx(0.3)


@pytest.mark.parametrize("argv", [["--method", "simclr:time_warp"], ["--method", "rotnet"],
                                  ["--seeds", "0,x"], ["--seeds", "1,1"]])
def test_bad_rows_and_seeds_are_refused_before_anything_trains(argv, capsys):
    with pytest.raises(SystemExit):
        series_quality.main(["--quick", *argv])
    assert "error:" in capsys.readouterr().err
