"""tools.classifier_init (`--init-classifier`, demo only): ridge fit of the ASPP scores."""

import caffe
import numpy as np
from caffe import layers as L
from caffe import params as P

from netgen import blocks as B
from netgen.config import SEG_LOSS_WEIGHT
from tests.support import toy_scenes as T
from tools import train
from tools.training import classifier_init
from tools.training.log import read_log


def test_ridge_separates_classes_sharing_a_large_mean():
    """Post-ReLU-like features: a large common offset, small class-specific deviations."""
    rng = np.random.RandomState(0)
    y = rng.randint(0, 3, 3000)
    centres = rng.randn(3, 50) * 0.3
    x = 20 + centres[y] + 0.1 * rng.randn(3000, 50)
    w, b = classifier_init.ridge_classifier(x, y, 4)
    assert w.shape == (4, 50) and b.shape == (4,)
    assert np.mean(np.argmax(x @ w.T + b, 1) == y) > 0.99
    assert np.all(np.argmax(x @ w.T + b, 1) != 3)  # an absent class is never the best


def aspp_toy_net(seed=0):
    """ToyScenes -> a shared conv -> four branches fc7_i (ReLU, dropout) -> fc8_i, summed."""
    n = caffe.NetSpec()
    T.toy_data(n, ('data', 'label', 'depth_gt'), seed=seed)
    top = B.conv(n, 'conv1', n.data, 8, 3, pad=1, wf=dict(type='msra'))
    top = B.max_pool(n, 'pool1', top, 3, 2, pad=1)
    scores = []
    for i in (1, 2, 3, 4):
        t = B.conv(n, 'fc7_%d' % i, top, 8, 1, wf=dict(type='msra'))
        n['drop7_%d' % i] = L.Dropout(t, dropout_ratio=0.5, in_place=True)
        scores.append(B.conv(n, 'fc8_%d' % i, n['drop7_%d' % i], 3, 1, relu=False))
    n.fc8 = L.Eltwise(*scores, operation=P.Eltwise.SUM)
    B.seg_loss(n, n.fc8, SEG_LOSS_WEIGHT)
    n.silence = L.Silence(n.depth_gt, ntop=0)
    return n.to_proto()


def test_init_classifier_fits_the_four_branches(tmp_path):
    solver = T.write_solver(str(tmp_path / 'cfg'), 'aspp', aspp_toy_net(), base_lr=1e-5, max_iter=1)
    run = tmp_path / 'run'
    assert train.main(['--quiet', '--no-plot', '--solver', solver, '--out', str(run), '--init-classifier', '4']) == 0
    init = next(r for r in read_log(run) if r['event'] == 'init')
    assert init['copied']['classifier']['batches'] == 4
    assert init['copied']['classifier']['pixel_accuracy'] > 0.95
    # the fitted scores classify new scenes (another seed) too
    test = T.make_net(aspp_toy_net(seed=7), str(tmp_path))
    model = caffe.Net(str(run / 'train.prototxt'), str(run / 'final.caffemodel'), caffe.TEST)
    test.share_with(model)
    right = total = 0
    for _ in range(3):
        test.forward()
        pred, gt = test.blobs['fc8'].data.argmax(1), test.blobs['label'].data[:, 0]
        right, total = right + np.sum(pred == gt), total + gt.size
    assert right / total > 0.9


def test_probe_classifier_refits_after_training(tmp_path):
    solver = T.write_solver(str(tmp_path / 'cfg'), 'aspp', aspp_toy_net(), base_lr=1e-3, max_iter=3)
    run = tmp_path / 'run'
    assert (
        train.main(
            [
                '--quiet',
                '--no-plot',
                '--solver',
                solver,
                '--out',
                str(run),
                '--probe-classifier',
                '4',
                '--snapshot-every',
                '3',
            ]
        )
        == 0
    )
    events = [r['event'] for r in read_log(run)]
    assert events.index('probe') < events.index('done')
    probe = next(r for r in read_log(run) if r['event'] == 'probe')
    assert probe['iter'] == 3 and probe['pixel_accuracy'] > 0.95
    model = caffe.Net(str(run / 'train.prototxt'), str(run / 'final.caffemodel'), caffe.TEST)
    test = T.make_net(aspp_toy_net(seed=7), str(tmp_path))
    test.share_with(model)
    test.forward()
    assert np.mean(test.blobs['fc8'].data.argmax(1) == test.blobs['label'].data[:, 0]) > 0.9


def test_init_classifier_needs_aspp_scores(tmp_path, capsys):
    solver = T.write_solver(str(tmp_path / 'cfg'), 'hybrid', T.hybrid_net(), max_iter=1)
    assert (
        train.main(
            ['--quiet', '--no-plot', '--solver', solver, '--out', str(tmp_path / 'run'), '--init-classifier', '2']
        )
        == 2
    )
    assert 'the net has no ASPP classifier (fc8_1..fc8_4)' in capsys.readouterr().err
