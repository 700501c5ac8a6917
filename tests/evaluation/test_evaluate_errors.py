"""tools.evaluate on bad input: a clear message, and never a partial run presented as complete."""

import caffe
import numpy as np
import pytest
from caffe import layers as L
from caffe.proto import caffe_pb2

from netgen.fixed_weights import write_fixed_blobs
from tests.support.colour_net import colour_database, write_colour_net
from tools.core import ToolError as EvaluationError
from tools.evaluate import main
from tools.evaluation.predictor import load_net
from tools.evaluation.run import evaluate

NAMES = ['frankfurt_000000_000294', 'frankfurt_000001_007973']


@pytest.fixture(scope='module')
def colour_net(tmp_path_factory):
    return write_colour_net(tmp_path_factory.mktemp('net'))


def run(tmp_path, deploy, weights, database=None, **options):
    database = database if database is not None else colour_database([(64, 96)], names=NAMES[:1])
    options.setdefault('progress', False)
    options.setdefault('num_figures', 0)
    return evaluate(
        'a2',
        options.pop('dataset', 'cityscapes'),
        weights,
        None,
        tmp_path / 'run',
        deploy=deploy,
        database=database,
        **options,
    )


def test_weights_missing_a_layer(colour_net, tmp_path):
    deploy, _ = colour_net
    _, seg_only_weights = write_colour_net(tmp_path, name='seg_only', depth=False)
    with pytest.raises(EvaluationError, match=r'do not fit the net \(layers missing from the file: depth\)'):
        run(tmp_path, deploy, seg_only_weights)


def test_weights_of_another_shape(colour_net, tmp_path):
    deploy, _ = colour_net
    _, five_class_weights = write_colour_net(tmp_path, name='five', num_classes=5)
    with pytest.raises(
        EvaluationError,
        match=r'other shapes: score: file \[\(5, 3, 1, 1\), \(5,\)\], '
        r'net \[\(19, 3, 1, 1\), \(19,\)\]',
    ):
        run(tmp_path, deploy, five_class_weights)


def test_weights_that_are_no_caffemodel_or_missing(colour_net, tmp_path):
    deploy, _ = colour_net
    garbage = tmp_path / 'garbage.caffemodel'
    garbage.write_bytes(b'\xff\xfe not a protobuf at all')
    with pytest.raises(EvaluationError, match='not a caffemodel'):
        run(tmp_path, deploy, garbage)
    with pytest.raises(EvaluationError, match='no weights file at .*absent.caffemodel'):
        run(tmp_path, deploy, tmp_path / 'absent.caffemodel')
    with pytest.raises(EvaluationError, match='no deploy net at .*absent.prototxt'):
        run(tmp_path, tmp_path / 'absent.prototxt', None)


def test_fixed_layers_may_be_absent_from_the_weights(tmp_path):
    """The prototxt holds the fixed weights (netgen writes them, issue 13): a caffemodel without
    the fixed layers loads, and the net keeps the prototxt's corner-aligned x2 zoom."""
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 3, 321, 321]))
    n.pool8 = L.Pooling(n.data, pool=1, kernel_size=8, stride=8)
    n.coarse = L.Convolution(n.pool8, num_output=1, kernel_size=1)
    n.depth = L.Deconvolution(
        n.coarse,
        name='fixed_up2_depth',
        convolution_param=dict(num_output=1, kernel_size=3, stride=2, pad=1, group=1, bias_term=False),
    )
    proto = n.to_proto()
    assert write_fixed_blobs(proto) == ['fixed_up2_depth']
    deploy = tmp_path / 'deploy.prototxt'
    deploy.write_text(str(proto))
    net = caffe.Net(str(deploy), caffe.TEST)
    net.save(str(tmp_path / 'full.caffemodel'))
    model = caffe_pb2.NetParameter()
    model.ParseFromString((tmp_path / 'full.caffemodel').read_bytes())
    kept = [layer for layer in model.layer if not layer.name.startswith('fixed_')]
    del model.layer[:]
    model.layer.extend(kept)
    (tmp_path / 'learned_only.caffemodel').write_bytes(model.SerializeToString())
    loaded = load_net(deploy, tmp_path / 'learned_only.caffemodel')
    np.testing.assert_array_equal(
        loaded.params['fixed_up2_depth'][0].data[0, 0], np.outer([0.5, 1, 0.5], [0.5, 1, 0.5])
    )


def test_official_scorer_outside_cityscapes_segmentation(colour_net, tmp_path):
    deploy, weights = colour_net
    with pytest.raises(EvaluationError, match='scores Cityscapes segmentation only'):
        run(tmp_path, deploy, weights, dataset='sunrgbd', official_scorer=True)
    with pytest.raises(EvaluationError, match='scores Cityscapes segmentation only'):
        run(tmp_path, deploy, weights, tasks=['depth'], official_scorer=True)


def test_net_without_the_requested_head(tmp_path):
    deploy, weights = write_colour_net(tmp_path, depth=False)
    with pytest.raises(
        EvaluationError,
        match="net a2 has no 'depth' output: it does not do depth "
        r'\(it does: segmentation\)',
    ):
        run(tmp_path, deploy, weights, tasks=['depth'])


def test_net_with_the_wrong_number_of_classes(tmp_path):
    deploy, weights = write_colour_net(tmp_path, num_classes=37)
    with pytest.raises(EvaluationError, match='outputs 37 classes, cityscapes has 19'):
        run(tmp_path, deploy, weights)


def test_split_without_labels(colour_net, tmp_path):
    deploy, weights = colour_net
    unlabelled = colour_database([(64, 96)], labelled=False, names=NAMES[:1])
    with pytest.raises(EvaluationError, match='has no segmentation labels.*--task depth'):
        run(tmp_path, deploy, weights, unlabelled)
    results = run(tmp_path, deploy, weights, unlabelled, tasks=['depth'])  # depth alone is fine
    assert 'segmentation' not in results and results['depth']['images'] == 1


def test_empty_database(colour_net, tmp_path):
    deploy, weights = colour_net
    empty = colour_database([])
    with pytest.raises(EvaluationError, match='is empty: nothing to evaluate'):
        run(tmp_path, deploy, weights, empty)


def test_a_failure_mid_run_leaves_no_run_directory(colour_net, tmp_path):
    deploy, weights = colour_net
    database = colour_database([(64, 96), (64, 96)], names=NAMES)
    broken = database.records[1]
    database.records[1] = broken._replace(label=broken.label[:10])  # label of another size
    with pytest.raises(
        EvaluationError,
        match='record 1 .frankfurt_000001_007973.: prediction shape '
        r'\(64, 96\) differs from ground truth shape \(10, 96\)',
    ):
        run(tmp_path, deploy, weights, database)
    assert not list(tmp_path.glob('run*')) and not list(tmp_path.glob('.run*'))


def test_an_existing_run_directory_is_kept_unless_overwrite(colour_net, tmp_path):
    deploy, weights = colour_net
    (tmp_path / 'run').mkdir()
    (tmp_path / 'run' / 'keep.txt').write_text('earlier run')
    with pytest.raises(EvaluationError, match='exists: pass --overwrite'):
        run(tmp_path, deploy, weights)
    assert (tmp_path / 'run' / 'keep.txt').is_file()
    run(tmp_path, deploy, weights, overwrite=True)
    assert (tmp_path / 'run' / 'report.md').is_file() and not (tmp_path / 'run' / 'keep.txt').exists()


def test_command_line_reports_errors_without_traceback(tmp_path, capsys):
    code = main(
        [
            '--net',
            'a2',
            '--dataset',
            'cityscapes',
            '--random-weights',
            '--quiet',
            '--db',
            str(tmp_path / 'absent_db'),
            '--out',
            str(tmp_path / 'run'),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith('error: %s: missing database' % (tmp_path / 'absent_db')) and 'Traceback' not in err
    with pytest.raises(SystemExit):
        main(['--net', 'a2', '--dataset', 'cityscapes'])  # neither --weights nor --random-weights
