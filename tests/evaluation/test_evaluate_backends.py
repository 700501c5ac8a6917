"""Evaluation on other engines (`--backend`, `--compare-backend`, `--threads`): the same tiling,
metrics and report, only the forward pass differs; on a converted Cityscapes sample, ONNX
Runtime and Caffe give the same metrics at their printed precision."""

import json
import subprocess
import sys

import numpy as np
import pytest

from data_prep import sample_cityscapes
from tests.support.colour_net import colour_database, write_colour_net
from tools.core import ToolError
from tools.evaluate import main
from tools.evaluation.backends import EngineOptions, open_backend
from tools.evaluation.predictor import Predictor, load_net
from tools.evaluation.run import evaluate
from tools.porting.export import export_live_net


@pytest.fixture(scope='module')
def colour_net(tmp_path_factory):
    return write_colour_net(tmp_path_factory.mktemp('net'))


@pytest.fixture(scope='module')
def cityscapes_val(tmp_path_factory):
    """data_prep's Cityscapes sample, 2 val images at 820 x 410 (3 x 2 tiles), converted."""
    root, out = tmp_path_factory.mktemp('cityscapes'), tmp_path_factory.mktemp('db')
    sample_cityscapes.write(root, count=2, splits=('val',), size=(820, 410))
    command = ['cityscapes', '--root', str(root), '--out', str(out), '--splits', 'val']
    subprocess.run([sys.executable, '-m', 'data_prep'] + command, check=True, capture_output=True)
    return out / 'val'


@pytest.mark.parametrize('name', ['onnxruntime', 'pytorch'])
def test_backends_forward_like_caffe(colour_net, name):
    deploy, weights = colour_net
    net = load_net(deploy, weights)
    backend = open_backend(name, net, deploy, threads=1, exporter=export_live_net)
    assert backend.name == name and backend.threads == 1 and backend.version
    image = colour_database([(350, 650)]).records[0].image
    caffe_label, caffe_depth = Predictor(net, ['segmentation', 'depth'], batch_size=4).predict_tiled(image)
    label, depth = Predictor(backend, ['segmentation', 'depth'], batch_size=3).predict_tiled(image)
    assert np.array_equal(label, caffe_label)
    np.testing.assert_allclose(depth, caffe_depth, rtol=1e-5)


def test_onnxruntime_compared_with_caffe_on_a_converted_sample(colour_net, cityscapes_val, tmp_path, capsys):
    deploy, weights = colour_net
    run_dir = tmp_path / 'run'
    args = ['--net', 'a2', '--dataset', 'cityscapes', '--weights', str(weights), '--prototxt', str(deploy)]
    args += ['--db', str(cityscapes_val), '--out', str(run_dir), '--figures', '1', '--quiet']
    assert main(args + ['--backend', 'onnxruntime', '--compare-backend', 'caffe', '--threads', '2']) == 0
    console = capsys.readouterr().out
    assert 'compared with caffe' in console and 'metrics identical at printed precision' in console
    results = json.loads((run_dir / 'report.json').read_text())
    assert results['backend']['name'] == 'onnxruntime' and results['backend']['threads'] == 2
    comparison = results['backend_comparison']
    assert comparison['backend']['name'] == 'caffe'
    assert comparison['identical_at_printed_precision'], comparison['metrics']
    names = [row['metric'] for row in comparison['metrics']]
    assert {'segmentation mIoU', 'segmentation G', 'segmentation C', 'depth delta1 (per_image)'} <= set(names)
    assert comparison['pixels'] == 2 * 820 * 410 and comparison['argmax_agreement'] > 0.9999
    assert comparison['depth_max_abs_difference'] < 1e-3
    report = (run_dir / 'report.md').read_text()
    assert '## Engines compared: onnxruntime' in report and 'argmax agreement' in report
    assert '| engine | onnxruntime %s, 2 threads |' % results['backend']['version'] in report


def test_same_engine_compared_is_exactly_equal(colour_net, tmp_path):
    deploy, weights = colour_net
    database = colour_database([(330, 400)])
    options = EngineOptions('caffe', 'caffe', threads=1)
    results = evaluate(
        'a2', 'cityscapes', weights, 'val', tmp_path / 'run', deploy=deploy, database=database, progress=False,
        num_figures=0, engine=options,
    )  # fmt: skip
    comparison = results['backend_comparison']
    assert comparison['argmax_agreement'] == 1.0 and comparison['depth_max_abs_difference'] == 0.0
    assert all(row['difference'] == 0 or np.isnan(row['difference']) for row in comparison['metrics'])


def test_engine_errors(colour_net):
    deploy, weights = colour_net
    net = load_net(deploy, weights)
    with pytest.raises(ToolError, match='unknown backend'):
        open_backend('tensorrt', net, deploy)
    with pytest.raises(ToolError, match='needs an exporter'):
        open_backend('onnxruntime', net, deploy)
    with pytest.raises(ToolError, match='runs on the CPU'):
        open_backend('pytorch', net, deploy, exporter=export_live_net, gpu=0)
    with pytest.raises(ToolError, match='--threads must be >= 1'):
        open_backend('caffe', net, deploy, threads=0)
