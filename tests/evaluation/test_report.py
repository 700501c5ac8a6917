"""tools.report (paper-layout tables) and tools.figures (palettes, colouring, `--compare`)."""

import json
import math

import numpy as np
import pytest
from PIL import Image

from data_prep.database import write_database
from tests.support.colour_net import colour_database, write_colour_net
from tools import report as report_cli
from tools.core import ToolError
from tools.evaluation import figures, report
from tools.evaluation.metrics import DEPTH_KEYS
from tools.evaluation.run import evaluate


def fake_results(dataset='cityscapes', net='a1', segmentation=True, depth=True, **extra):
    num_classes = {'cityscapes': 19, 'sunrgbd': 37, 'nyuv2': 40}[dataset]
    results = {
        'net': net,
        'dataset': dataset,
        'split': 'val',
        'weights': 'w.caffemodel',
        'random_weights': False,
        'deploy': 'deploy.prototxt',
        'database': 'db',
        'images': 3,
        'images_in_split': 3,
        'mode': 'tiles',
        'batch_size': 7,
        'resize_interpolation': None,
        'max_depth': None,
        'seconds': 6.0,
        'images_per_second': 0.5,
        'device': 'cpu',
        'created': 'now',
        'class_names': ['class %d' % i for i in range(num_classes)],
        'figure_images': [],
        'figure_indices': [],
    }
    if segmentation:
        iou = [0.5] * num_classes
        iou[1] = float('nan')
        results['segmentation'] = {
            'G': 0.1234,
            'C': 0.5678,
            'mIoU': 0.9012,
            'iou': iou,
            'accuracy': iou,
            'pixels': 100,
            'images': 3,
            'confusion': np.eye(num_classes, dtype=int).tolist(),
        }
    if depth:
        values = dict(zip(DEPTH_KEYS, [0.6133, 0.5, 0.6, 0.7, 0.202, 0.186, 0.682, 0.25, 0.122, 0.01]))
        results['depth'] = {
            'pooled': dict(values, ard=0.3),
            'per_image': values,
            'per_image_std': values,
            'images': 3,
            'pixels': 1000,
            'images_without_valid_depth': 0,
        }
    results.update(extra)
    return results


def test_segmentation_table_puts_the_paper_rows_beside_ours():
    markdown = report.render_markdown(fake_results())
    assert '## Segmentation: paper Table 2 (printed after L407)' in markdown
    assert '| **this run: HybridNet A1 (a1)** | **12.34** | **56.78** | **90.12** |' in markdown
    assert '| HybridNet A1 (paper) ← same net | 89.31 | 77.22 | 58.1 |' in markdown  # as printed
    assert '| PLEDL [25] (paper) | - | - | 64.3 |' in markdown
    assert '| class 1 | - | - | 1 |' in markdown  # NaN IoU shown as "-"


def test_depth_tables_use_the_papers_units():
    cityscapes = report.render_markdown(fake_results())
    assert '## Depth: paper Table 4 (printed after L436)' in cityscapes
    assert '| γ < 1.25 (MVN) (higher is better) | **0.6133** | 0.6133 | 0.7483 | 0.6834 | 0.7248 |' in cityscapes
    assert '| ARD (lower is better) | **0.2020** | 0.3000 | 0.24 | 0.2879 | 0.23 |' in cityscapes
    assert '| SIE, Table 3 formula as printed (lower is better) | **0.0100** | 0.0100 | - | - | - |' in cityscapes
    sun = report.render_markdown(fake_results('sunrgbd', 'a2'))
    assert 'paper Table 6' in sun and 'paper Table 5' in sun
    assert '| γ < 1.25 (MVN) (higher is better) | **61.33** | 61.33 | 89.63 | 62.81 | 83.59 |' in sun  # in %
    nyu = report.render_markdown(fake_results('nyuv2', 'a2'))
    assert 'paper Table 7' in nyu and 'paper Table 8' in nyu
    assert '| SIE (lower is better) | **0.1220** | 0.1220 | 0.1571 | 0.171 |' in nyu


def test_report_notes_random_weights_and_partial_sets():
    markdown = report.render_markdown(fake_results(random_weights=True, images=2, images_in_split=500))
    assert '**Random weights**' in markdown and '**Partial set**: 2 of the 500 images' in markdown


def test_report_json_writes_nan_as_null_and_reads_back(tmp_path):
    report.write_report(tmp_path, fake_results())
    loaded = report.load_run(tmp_path)['results']
    assert loaded['segmentation']['iou'][1] is None
    assert report.render_markdown(loaded) == (tmp_path / 'report.md').read_text()


def test_compare_adds_rows_and_columns_and_checks_the_other_run(tmp_path):
    other_dir = tmp_path / 'other'
    other_dir.mkdir()
    report.write_report(other_dir, fake_results(net='deeplab_aspp', depth=False))
    other = report.load_run(other_dir)
    markdown = report.render_markdown(fake_results(net='a2'), [other])
    assert '| compared: DeepLab-ASPP (deeplab_aspp), `%s` | 12.34 | 56.78 | 90.12 |' % other_dir in markdown
    assert 'IoU % deeplab_aspp' in markdown
    with pytest.raises(ToolError, match='it evaluated cityscapes, not sunrgbd'):
        report.check_comparable(other, 'sunrgbd', [])
    with pytest.raises(ToolError, match='kept no prediction of frankfurt_000000_000294'):
        report.check_comparable(other, 'cityscapes', ['frankfurt_000000_000294'])
    with pytest.raises(ToolError, match='no report.json'):
        report.load_run(tmp_path / 'nowhere')


def test_palettes():
    cityscapes = figures.cityscapes_palette()
    assert cityscapes.shape == (19, 3) and tuple(cityscapes[0]) == (128, 64, 128)  # road
    assert tuple(cityscapes[18]) == (119, 11, 32)  # bicycle
    fixed = figures.fixed_palette(40)
    assert len({tuple(c) for c in fixed}) == 40 and not (fixed == 0).all(1).any()
    assert tuple(fixed[0]) == (128, 0, 0)  # VOC's colour of label 1
    painted = figures.colorize_labels(np.array([[0, 255]]), cityscapes)
    assert painted.tolist() == [[[128, 64, 128], list(figures.IGNORE_COLOUR)]]


def test_depth_colours_share_one_range_and_mark_invalid_grey():
    depth = np.array([[0.0, np.nan, 1.0, 5.0, 9.0]])
    rgb = figures.colorize_depth(depth, 1.0, 5.0)
    assert (rgb[0, :2] == figures.INVALID_DEPTH_COLOUR).all()
    assert (rgb[0, 3] == rgb[0, 4]).all() and (rgb[0, 2] != rgb[0, 3]).any()  # clipped at vmax
    low, high = figures.depth_range([np.r_[np.zeros(10), np.arange(1, 101)].astype(float)])
    assert low == pytest.approx(1.99) and high == pytest.approx(99.01)


def test_report_command_rewrites_a_run_with_another_runs_column(tmp_path):
    deploy, weights = write_colour_net(tmp_path)
    names = ['frankfurt_000000_000294', 'lindau_000001_000019']
    records = colour_database([(200, 360), (200, 360)], names=names).records
    db = write_database(tmp_path / 'db', records, 'cityscapes', 'val', ['c%d' % i for i in range(19)])
    common = dict(deploy=deploy, database=db, num_figures=2, progress=False)
    evaluate('a2', 'cityscapes', weights, 'val', tmp_path / 'a2', **common)
    evaluate('deeplab_aspp', 'cityscapes', weights, 'val', tmp_path / 'aspp', tasks=['segmentation'], **common)
    width_before = Image.open(tmp_path / 'a2' / 'figures' / 'segmentation.png').width
    assert report_cli.main([str(tmp_path / 'a2'), '--compare', str(tmp_path / 'aspp')]) == 0
    assert 'compared: DeepLab-ASPP (deeplab_aspp)' in (tmp_path / 'a2' / 'report.md').read_text()
    assert Image.open(tmp_path / 'a2' / 'figures' / 'segmentation.png').width > 1.2 * width_before
    results = json.loads((tmp_path / 'a2' / 'report.json').read_text())
    assert results['compared_runs'] == [str(tmp_path / 'aspp')]
    assert math.isclose(
        results['segmentation']['mIoU'],
        json.loads((tmp_path / 'aspp' / 'report.json').read_text())['segmentation']['mIoU'],
    )  # same weights, same scores


def test_depth_figure_greys_ground_truth_beyond_the_metrics_bound():
    """The figure shows the ground truth the metrics score: deeper than max_depth is invalid."""
    depth = np.array([[5.0, 79.0, 81.0, 0.0]], np.float32)
    shown = figures._bounded(depth, 80.0)
    assert shown.tolist() == [[5.0, 79.0, 0.0, 0.0]]
    painted = figures.colorize_depth(shown, 1.0, 80.0)
    assert tuple(painted[0, 2]) == figures.INVALID_DEPTH_COLOUR and tuple(painted[0, 1]) != figures.INVALID_DEPTH_COLOUR
    assert figures._bounded(depth, None) is depth
