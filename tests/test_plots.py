"""Plots are real PNG images with content, written atomically."""

import numpy as np
import pytest
from PIL import Image

from tlkit import plots


def _assert_png(path, min_size=(300, 200)):
    with Image.open(path) as im:
        assert im.format == "PNG"
        assert im.size[0] >= min_size[0] and im.size[1] >= min_size[1]
        arr = np.asarray(im.convert("L"))
    assert arr.std() > 5, "the picture is blank"
    assert not list(path.parent.glob(".*.tmp.png"))


def test_training_curves(tmp_path):
    hist = [
        {
            "epoch": i,
            "loss": 1 / (i + 1),
            "val_loss": 1.2 / (i + 1),
            "accuracy": i / 6,
            "val_accuracy": i / 7,
            "stage": 1 if i < 3 else 2,
        }
        for i in range(6)
    ]
    _assert_png(plots.training_curves(hist, tmp_path / "curves.png"))


def test_confusion_matrix(tmp_path):
    m = np.array([[5, 1, 0], [0, 4, 2], [1, 0, 6]])
    _assert_png(plots.confusion_matrix(m, ["a", "b", "c"], tmp_path / "confusion.png"))


def test_score_map_overlay_and_line(tmp_path):
    img = np.random.default_rng(0).integers(0, 255, (64, 80, 3)).astype(np.uint8)
    _assert_png(plots.score_map_overlay(img, np.eye(4), tmp_path / "heat.png"))
    _assert_png(
        plots.line_plot(
            [1e-5, 1e-3, 1e-1], [2.0, 1.0, 3.0], tmp_path / "lr.png", xlabel="lr", ylabel="loss", logx=True, mark_x=1e-3
        )
    )


# ----------------------------------------------------------------- pictures that tell the truth


@pytest.fixture()
def figures(monkeypatch):
    """Every figure the plots module saves, kept for inspection after it is written."""
    kept = []
    save = plots._save

    def keep(fig, path, title=""):
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        kept.append(fig)
        out = save(fig, path, title)
        FigureCanvasAgg(fig)  # closing left a bare canvas: give it a renderer again for measuring
        return out

    monkeypatch.setattr(plots, "_save", keep)
    return kept


def _boxes_disjoint(boxes: dict) -> None:
    names = list(boxes)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not boxes[a].overlaps(boxes[b]), f"{a} {boxes[a]} overlaps {b} {boxes[b]}"


def _map_with_no_data_strip():
    rng = np.random.default_rng(1)
    grid = rng.uniform(0.05, 0.6, (4, 5))
    grid[:, -1] = np.nan  # the last column: no window covers it
    return grid


def test_heatmap_title_gives_the_max_of_the_drawn_map(tmp_path, figures):
    img = np.zeros((64, 80, 3), np.uint8)
    grid = _map_with_no_data_strip()
    plots.score_map_overlay(img, grid, tmp_path / "heat.png", title="tabby at scale 512 (stride 32)")
    ax = figures[0].axes[1]
    drawn = ax.images[1].get_array()  # the score layer over the image
    shown_max = float(np.ma.masked_invalid(drawn).max())
    assert shown_max == pytest.approx(np.nanmax(grid))
    assert ax.get_title() == f"tabby at scale 512 (stride 32)\nmax {shown_max:.3f} on this map"
    with Image.open(tmp_path / "heat.png") as im:
        assert im.info["Title"] == ax.get_title()  # what a person reads, for a program to read
    # The colour scale is the map's own: its top is the value the title names.
    assert ax.images[1].norm.vmax == pytest.approx(shown_max)


def test_heatmap_draws_cells_without_windows_as_no_data(tmp_path, figures):
    from scipy import ndimage

    img = np.zeros((64, 80, 3), np.uint8)  # black: the score colours and the grey cannot be confused
    grid = _map_with_no_data_strip()
    out = plots.score_map_overlay(img, grid, tmp_path / "heat.png")
    ax = figures[0].axes[1]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["no data: no window covers it"]
    # The NaN cells are masked out of the colour map, not drawn as its lowest colour.
    assert ax.images[1].get_array().mask[:, -1].all() and not ax.images[1].get_array().mask[:, :-1].any()

    grey = tuple(int(plots.NO_DATA_COLOR[i : i + 2], 16) for i in (1, 3, 5))
    with Image.open(out) as im:
        rgb = np.asarray(im.convert("RGB")).astype(int)
    is_grey = (rgb == grey).all(axis=-1)
    labels, n = ndimage.label(is_grey)
    assert n >= 1, "no pixel of the no-data colour in the picture"
    sizes = ndimage.sum(is_grey, labels, range(1, n + 1))
    strip = labels == 1 + int(np.argmax(sizes))
    rows, cols = np.flatnonzero(strip.any(axis=1)), np.flatnonzero(strip.any(axis=0))
    height, width = rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1
    assert strip.sum() == height * width, "the no-data strip is not a filled rectangle"
    assert height / width == pytest.approx(64 / 16, rel=0.1)  # one 16-pixel column of cells, full height
    # It is as tall as the image: the black image on the left panel.
    black_rows = np.flatnonzero((rgb == 0).all(axis=-1).sum(axis=1) > 50)
    assert abs(height - len(black_rows)) <= 2


def test_heatmap_title_colour_bar_and_legend_do_not_overlap(tmp_path, figures):
    img = np.random.default_rng(0).integers(0, 255, (300, 451, 3)).astype(np.uint8)
    grid = _map_with_no_data_strip()
    plots.score_map_overlay(
        img, grid, tmp_path / "heat.png", title="a rather long class name, tiger cat at scale 512 (stride 32)"
    )
    fig = figures[0]
    renderer = fig.canvas.get_renderer()
    ax0, ax1, cax = fig.axes + [c for a in fig.axes for c in a.child_axes]  # image, map, colour bar
    _boxes_disjoint(
        {
            "image title": ax0.title.get_window_extent(renderer),
            "map title": ax1.title.get_window_extent(renderer),
            "colour bar": cax.get_tightbbox(renderer),
            "legend": ax1.get_legend().get_window_extent(renderer),
            "image": ax0.get_window_extent(renderer),
            "map": ax1.get_window_extent(renderer),
        }
    )


def test_training_curves_have_integer_epochs_and_mark_the_kept_checkpoint(tmp_path, figures):
    # Three epochs (matplotlib's default ticks would be 1.00, 1.25, ...); val_accuracy peaks at
    # epoch 2 and ties at epoch 3: the run keeps epoch 2 (a later epoch must be strictly better).
    hist = [
        {"epoch": 0, "loss": 1.0, "val_loss": 1.1, "accuracy": 0.5, "val_accuracy": 0.4, "stage": 1},
        {"epoch": 1, "loss": 0.8, "val_loss": 0.9, "accuracy": 0.6, "val_accuracy": 0.7, "stage": 1},
        {"epoch": 2, "loss": 0.6, "val_loss": 0.95, "accuracy": 0.7, "val_accuracy": 0.7, "stage": 2},
    ]
    assert plots.kept_epoch(hist) == 2
    plots.training_curves(hist, tmp_path / "curves.png")
    fig = figures[0]
    fig.canvas.draw()
    for ax in fig.axes:
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
        labels = [t.get_text().replace("\u2212", "-") for t in ax.get_xticklabels() if t.get_text()]
        assert labels and all(lab.lstrip("-").isdigit() for lab in labels), labels
        (marker,) = [ln for ln in ax.get_lines() if ln.get_label().startswith("kept checkpoint")]
        assert list(marker.get_xdata()) == [2]
        assert marker.get_label() == "kept checkpoint (epoch 2)"
    val_acc = [ln for ln in fig.axes[1].get_lines() if ln.get_label().startswith("kept")][0].get_ydata()
    assert list(val_acc) == [0.7]


def test_confusion_matrix_title_states_accuracy_and_split(tmp_path, figures):
    m = np.array([[5, 1, 0], [0, 4, 2], [1, 0, 6]])
    plots.confusion_matrix(m, ["a", "b", "c"], tmp_path / "confusion.png", split="val")
    title = figures[0].axes[0].get_title()
    assert title.splitlines()[0] == f"accuracy {15 / 19:.4f} (val split, 19 images)"
