"""posttrain.plots: the shared figure set-up and saving, and the training curves drawn with it."""

from __future__ import annotations

import pytest

from posttrain.plots import plot_training_curves, pyplot, saved_figure

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_saved_figure_creates_folders_and_closes_the_figure(tmp_path):
    plt = pyplot()
    open_before = set(plt.get_fignums())
    path = tmp_path / "nested" / "plot.png"
    with saved_figure(path, "Test plot", ncols=2) as (fig, axes):
        assert len(axes) == 2
        axes[0].plot([0, 1], [1, 0])
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert set(plt.get_fignums()) == open_before


def test_saved_figure_saves_nothing_when_drawing_fails(tmp_path):
    plt = pyplot()
    open_before = set(plt.get_fignums())
    with pytest.raises(RuntimeError, match="drawing failed"):
        with saved_figure(tmp_path / "plot.png", "Test plot"):
            raise RuntimeError("drawing failed")
    assert not (tmp_path / "plot.png").exists()
    assert set(plt.get_fignums()) == open_before


def test_training_curves_one_panel_per_logged_curve(tmp_path):
    history = [{"step": s, "loss": 1.0 / s, "rewards/format/mean": 0.1 * s} for s in (1, 2, 3)]
    path = plot_training_curves(history, tmp_path / "curves.png", title="run")
    assert path == tmp_path / "curves.png" and path.read_bytes()[:8] == PNG_MAGIC
    assert plot_training_curves([{"step": 1, "epoch": 0.5}], tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()


def test_reliability_grid_lays_panels_out_in_rows(tmp_path):
    import struct

    from eval.calibration import reliability_bins
    from eval.plots import reliability_grid
    from posttrain.plots import DPI

    bins = reliability_bins([0.1, 0.8, 0.85, 0.95], [0, 1, 0, 1])
    path = reliability_grid([("a", bins), ("b", None), ("c", bins)], tmp_path / "grid.png", columns=2)
    header = path.read_bytes()[:24]
    assert header[:8] == PNG_MAGIC
    width, height = struct.unpack(
        ">II", header[16:24]
    )  # the PNG's IHDR: 2 columns, 2 rows of 3.4 x 4.0 inches
    assert (width, height) == (round(2 * 3.4 * DPI), round(2 * 4.0 * DPI))
