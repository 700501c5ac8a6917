"""tools.evaluate end to end on small colour-coded deploy nets (real Caffe)."""

import csv
import json

import caffe  # the evaluator needs Caffe: fail, not skip, without it
import numpy as np
import pytest
from PIL import Image

from tests.support.colour_net import colour_database, write_colour_net
from tools.evaluation.predictor import Predictor, load_net
from tools.evaluation.run import evaluate

CITY_NAMES = ['frankfurt_000000_000294', 'lindau_000001_000019']


@pytest.fixture(scope='module')
def colour_net(tmp_path_factory):
    return write_colour_net(tmp_path_factory.mktemp('net'))


@pytest.fixture(scope='module')
def cityscapes_run(colour_net, tmp_path_factory):
    deploy, weights = colour_net
    # 400 x 700: 2 x 3 overlapping tiles; 300 x 330: padded in height, 2 tiles in width
    database = colour_database([(400, 700), (300, 330)], names=CITY_NAMES)
    out = tmp_path_factory.mktemp('runs') / 'run'
    results = evaluate(
        'a2',
        'cityscapes',
        weights,
        'val',
        out,
        deploy=deploy,
        database=database,
        batch_size=4,
        num_figures=2,
        progress=False,
    )
    return out, results


def test_tiled_evaluation_recovers_the_colour_coded_scenes(cityscapes_run):
    _, results = cityscapes_run
    seg, depth = results['segmentation'], results['depth']
    assert seg['G'] > 0.9 and seg['mIoU'] > 0.8  # wiring faults drop them: swapped BGR gives 0.31 / 0.30
    assert all(np.isnan(iou) for iou in seg['iou'][3:])  # classes never seen nor predicted: left out
    assert depth['per_image']['delta1'] > 0.95 and depth['pooled']['ard'] < 0.1  # pixel noise: ard ~0.06
    assert results['images'] == 2 and results['mode'] == 'tiles' and results['tasks'] == ['segmentation', 'depth']


def test_run_directory_holds_report_csv_figures_and_official_pngs(cityscapes_run):
    out, results = cityscapes_run
    report = (out / 'report.md').read_text()
    assert 'paper Table 2' in report and '66.61' in report  # Table 2's A2 mIoU beside ours
    assert 'paper Table 4' in report and '0.7483' in report  # Table 4's A2 PP-MVN
    assert '%.2f' % (100 * results['segmentation']['mIoU']) in report
    assert json.loads((out / 'report.json').read_text())['segmentation']['G'] == pytest.approx(
        results['segmentation']['G']
    )
    with open(out / 'per_image.csv') as f:
        rows = list(csv.DictReader(f))
    assert [row['name'] for row in rows] == CITY_NAMES
    assert {'seg_mIoU', 'depth_rmse', 'depth_sie', 'depth_pp_mvn'} <= set(rows[0])
    for task in ('segmentation', 'depth'):
        assert (out / 'figures' / ('%s.png' % task)).stat().st_size > 10000
    png = np.array(Image.open(out / 'cityscapes_results' / ('%s_labelIds.png' % CITY_NAMES[0])))
    assert png.shape == (400, 700) and set(np.unique(png)) <= {23, 24, 26, 7, 8, 11}  # labelIds, not trainIds
    assert not list(out.parent.glob('.*partial*'))


def test_batching_does_not_change_predictions(colour_net):
    deploy, weights = colour_net
    net = load_net(deploy, weights)
    image = colour_database([(350, 650)]).records[0].image
    one = Predictor(net, ['segmentation', 'depth'], batch_size=1).predict_tiled(image)
    many = Predictor(net, ['segmentation', 'depth'], batch_size=6).predict_tiled(image)
    np.testing.assert_array_equal(one[0], many[0])
    np.testing.assert_array_equal(one[1], many[1])


def test_resize_mode_predicts_at_the_ground_truth_size(tmp_path):
    deploy, weights = write_colour_net(tmp_path, num_classes=37)
    database = colour_database([(240, 320), (530, 730)])
    results = evaluate(
        'a2',
        'sunrgbd',
        weights,
        'test',
        tmp_path / 'run',
        deploy=deploy,
        database=database,
        num_figures=1,
        progress=False,
    )
    assert results['mode'] == 'resize' and results['split'] == 'test'
    assert results['segmentation']['G'] > 0.9 and results['depth']['per_image']['delta1'] > 0.9
    assert 'paper Table 5' in (tmp_path / 'run' / 'report.md').read_text()


@pytest.mark.parametrize('dataset', ['sunrgbd', 'nyuv2'])
def test_indoor_datasets_can_be_tiled_at_native_scale(tmp_path, dataset):
    """The paper resizes indoor test images to 321 (L455-461, the default); `--mode tiles`
    evaluates them at native scale instead, for comparison (docs/FIDELITY.md, "Resizing")."""
    deploy, weights = write_colour_net(tmp_path, num_classes=37 if dataset == 'sunrgbd' else 40)
    database = colour_database([(240, 320), (530, 730)])
    results = evaluate(
        'a2',
        dataset,
        weights,
        'test',
        tmp_path / 'run',
        deploy=deploy,
        database=database,
        mode='tiles',
        num_figures=1,
        progress=False,
    )
    assert results['mode'] == 'tiles' and results['max_depth'] == 10
    assert results['segmentation']['G'] > 0.9 and results['depth']['per_image']['delta1'] > 0.9


def test_compare_adds_the_other_runs_column(cityscapes_run, colour_net, tmp_path):
    first, _ = cityscapes_run
    deploy, weights = colour_net
    database = colour_database([(400, 700), (300, 330)], names=CITY_NAMES)
    results = evaluate(
        'deeplab_aspp',
        'cityscapes',
        weights,
        'val',
        tmp_path / 'second',
        deploy=deploy,
        database=database,
        tasks=['segmentation'],
        num_figures=2,
        compare=[first],
        progress=False,
    )
    report = (tmp_path / 'second' / 'report.md').read_text()
    assert 'compared: HybridNet A2 (a2)' in report
    assert results['compared_runs'] == [str(first)]
    assert 'depth' not in results and 'Table 4' not in report


def test_random_weights_are_marked(colour_net, tmp_path):
    deploy, _ = colour_net
    database = colour_database([(100, 120)], names=CITY_NAMES[:1])
    results = evaluate(
        'a2',
        'cityscapes',
        None,
        'val',
        tmp_path / 'run',
        deploy=deploy,
        database=database,
        num_figures=0,
        progress=False,
    )
    assert results['random_weights'] and 'Random weights' in (tmp_path / 'run' / 'report.md').read_text()


def test_weights_are_loaded_as_caffe_loads_them(colour_net):
    deploy, weights = colour_net
    ours = load_net(deploy, weights)
    theirs = caffe.Net(str(deploy), str(weights), caffe.TEST)
    assert list(ours.params) == list(theirs.params) == ['score', 'depth']
    for name in ours.params:
        for mine, reference in zip(ours.params[name], theirs.params[name]):
            np.testing.assert_array_equal(mine.data, reference.data)
