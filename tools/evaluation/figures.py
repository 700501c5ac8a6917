"""Figures in the style of the paper's Figs. 5-8: one row per example image, columns
input | other runs' predictions (--compare) | this run's prediction | ground truth.

Segmentation in the official Cityscapes colours (by trainId) or, for SUN-RGBD and NYUv2,
a fixed palette (PASCAL VOC's bit-interleaved colour map); ignored pixels black.
Depth: one colour map and one range (the 1st-99th percentile of the shown ground truth)
for every panel, a colour bar in metres, invalid ground truth grey.
"""

import math
from pathlib import Path

import cv2
import numpy as np

from data_prep.database import open_database
from data_prep.errors import DataError
from tools.core import ToolError
from tools.evaluation.paper import PAPER_NAMES

IGNORE_COLOUR = (0, 0, 0)
INVALID_DEPTH_COLOUR = (128, 128, 128)
DEPTH_CMAP = 'jet'
PANEL_WIDTH = 512  # pixels per panel in the saved figure


def cityscapes_palette():
    """19 x 3 uint8: the official colour of each trainId (cityscapesscripts)."""
    from cityscapesscripts.helpers.labels import trainId2label  # noqa: PLC0415 (slow import)

    return np.array([trainId2label[i].color for i in range(19)], np.uint8)


def fixed_palette(num_classes):
    """num_classes x 3 uint8: PASCAL VOC's colour map of labels 1..K (label 0's black is
    skipped, black marks ignored pixels)."""
    colours = np.zeros((num_classes, 3), np.uint8)
    for index in range(num_classes):
        value, colour = index + 1, [0, 0, 0]
        for bit in range(8):
            for channel in range(3):
                colour[channel] |= ((value >> channel) & 1) << (7 - bit)
            value >>= 3
        colours[index] = colour
    return colours


def palette(dataset, num_classes):
    return cityscapes_palette() if dataset == 'cityscapes' else fixed_palette(num_classes)


def colorize_labels(label, colours):
    """H x W labels (255 or any value >= K: ignored) -> H x W x 3 uint8."""
    table = np.tile(np.array(IGNORE_COLOUR, np.uint8), (256, 1))
    table[: len(colours)] = colours
    return table[np.asarray(label).astype(np.int64).clip(0, 255)]


def colorize_depth(depth, vmin, vmax, cmap=DEPTH_CMAP):
    """H x W metres -> H x W x 3 uint8 through `cmap` on [vmin, vmax]; invalid (not finite
    or <= 0) grey."""
    from matplotlib import colormaps  # noqa: PLC0415

    depth = np.asarray(depth, np.float64)
    valid = np.isfinite(depth) & (depth > 0)
    scaled = np.clip((np.where(valid, depth, vmin) - vmin) / max(vmax - vmin, 1e-12), 0, 1)
    rgb = (colormaps[cmap](scaled)[..., :3] * 255).round().astype(np.uint8)
    rgb[~valid] = INVALID_DEPTH_COLOUR
    return rgb


def depth_range(depth_maps):
    """(vmin, vmax): the 1st and 99th percentiles of the valid pixels of `depth_maps`."""
    values = np.concatenate([d[np.isfinite(d) & (d > 0)] for d in depth_maps])
    if not values.size:
        return 0.0, 1.0
    low, high = np.percentile(values, [1, 99])
    return float(low), float(max(high, low + 1e-6))


def _shrink(array, step, smooth):
    """Every `step`-th pixel (labels, depth: no mixing), or area-averaged (images)."""
    if step == 1:
        return array
    if smooth:
        height, width = array[::step, ::step].shape[:2]
        return cv2.resize(array, (width, height), interpolation=cv2.INTER_AREA)
    return array[::step, ::step]


def draw_grid(path, titles, rows, row_names, colorbar=None):
    """Save a grid of RGB panels: rows x len(titles); colorbar (vmin, vmax, cmap, label)."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt  # noqa: PLC0415

    height, width = rows[0][0].shape[:2]
    panel = 3.2
    fig, axes = plt.subplots(
        len(rows),
        len(titles),
        squeeze=False,
        figsize=(panel * len(titles) + (0.8 if colorbar else 0), panel * height / width * len(rows) + 0.5),
    )
    for r, panels in enumerate(rows):
        for c, image in enumerate(panels):
            ax = axes[r][c]
            ax.imshow(image, interpolation='nearest')
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(titles[c], fontsize=9)
            if c == 0:
                ax.set_ylabel(row_names[r], fontsize=6)
    if colorbar:
        vmin, vmax, cmap, label = colorbar
        mappable = plt.cm.ScalarMappable(plt.Normalize(vmin, vmax), cmap)
        fig.colorbar(mappable, ax=axes, fraction=0.02, pad=0.01).set_label(label)
    fig.savefig(path, dpi=PANEL_WIDTH / panel, bbox_inches='tight')
    plt.close(fig)


def _bounded(depth, max_depth):
    """Ground truth as the metrics see it: deeper than `max_depth` is invalid (drawn grey)."""
    if max_depth is None or depth is None:
        return depth
    return np.where(np.asarray(depth) > max_depth, 0, depth)


def _load_prediction(run_dir, name):
    with np.load(Path(run_dir) / 'predictions' / ('%s.npz' % name)) as data:
        return {key: data[key] for key in data.files}


def write_run_figures(run_dir, results, database, compare_runs=()):
    """figures/segmentation.png and figures/depth.png for the run's figure images; returns
    their paths relative to run_dir."""
    run_dir = Path(run_dir)
    names, indices = results['figure_images'], results['figure_indices']
    if not names:
        return []
    (run_dir / 'figures').mkdir(exist_ok=True)
    records = [database[i] for i in indices]
    ours = [_load_prediction(run_dir, name) for name in names]
    step = max(1, math.ceil(records[0].image.shape[1] / PANEL_WIDTH))
    written = []
    for task, key in (('segmentation', 'label'), ('depth', 'depth')):
        if task not in results:
            continue
        others = [run for run in compare_runs if task in run['results']]
        theirs = [[_load_prediction(run['dir'], name)[key] for name in names] for run in others]
        truth = [
            _bounded(getattr(record, key), results.get('max_depth') if task == 'depth' else None) for record in records
        ]
        columns = [theirs_maps for theirs_maps in theirs] + [[p[key] for p in ours], truth]
        titles = (
            ['input'] + [_column_title(run['results']) for run in others] + [_column_title(results), 'ground truth']
        )
        if task == 'segmentation':
            colours = palette(results['dataset'], len(results['class_names']))
            paint, colorbar = (lambda m: colorize_labels(m, colours)), None
        else:
            vmin, vmax = depth_range(truth)
            paint = lambda m: colorize_depth(m, vmin, vmax)  # noqa: E731
            colorbar = (vmin, vmax, DEPTH_CMAP, 'depth (m)')
        rows = [
            [_shrink(record.image, step, True)] + [paint(_shrink(col[i], step, False)) for col in columns]
            for i, record in enumerate(records)
        ]
        path = Path('figures') / ('%s.png' % task)
        draw_grid(run_dir / path, titles, rows, names, colorbar)
        written.append(str(path))
    return written


def _column_title(results):
    return PAPER_NAMES.get(results['net'], results['net'])


def open_figure_database(path, dataset):
    """The database a run read, to draw inputs and ground truth again."""
    try:
        return open_database(path, dataset)
    except DataError as err:
        raise ToolError('%s (pass --db if the database moved)' % err) from None
