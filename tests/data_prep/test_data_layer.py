"""The HybridData layer: crops, flips and subsampling keep image, label and depth aligned; padding;
seeded reproducibility; test mode; and the layer inside pycaffe and the `caffe` command line.

Records encode their pixel coordinates (R = 4x, G = 4y, B = 10 * record, label = (x + y) % 5,
depth = 1 + x + 100 y), so any misalignment between the tops shows up as a wrong value.
"""

import json
import os
import subprocess

import caffe
import numpy as np
import pytest

from data_prep.batches import BatchWorkers, CropSampler, parse_param_str
from data_prep.cityscapes import disparity_to_depth
from data_prep.database import open_database, write_database
from data_prep.dataset import Record
from data_prep.errors import DataError
from netgen import build
from netgen.config import MAX_DEPTH, MEAN_BGR
from tests.support import ROOT
from tools.evaluation.metrics import DepthMeter
from tools.evaluation.run import default_max_depth

CAFFE_CLI = os.path.join(ROOT, '.venv', 'bin', 'caffe')


def coded_record(index, height, width, labelled=True):
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([4 * x, 4 * y, np.full_like(x, 10 * index)], axis=-1).astype(np.uint8)
    label = ((x + y) % 5).astype(np.uint8) if labelled else None
    return Record(image, label, (1 + x + 100 * y).astype(np.float32), [f'record{index}'])


@pytest.fixture(scope='module')
def coded_db(tmp_path_factory):
    records = [coded_record(i, h, w) for i, (h, w) in enumerate([(50, 60), (41, 63), (20, 50), (33, 33)])]
    return write_database(tmp_path_factory.mktemp('layer') / 'db', records, 'toy', 'train', list('abcde'))


def params(source, **given):
    base = {
        'source': str(source),
        'batch_size': 4,
        'crop_size': 33,
        'label_size': 5,
        'depth_sizes': [9, 17],
        'mean': list(MEAN_BGR),
    }
    return parse_param_str(json.dumps(dict(base, **given)))


def decode(data):
    """(record, x, y) maps of one sample's data top (3 x c x c, BGR minus mean); -1 where padded."""
    bgr = data + np.asarray(MEAN_BGR, np.float32)[:, None, None]
    padded = np.abs(data).max(axis=0) < 1e-3
    x, y, record = (np.rint(bgr[2] / 4).astype(int), np.rint(bgr[1] / 4).astype(int), np.rint(bgr[0] / 10).astype(int))
    return [np.where(padded, -1, m) for m in (record, x, y)]


def check_alignment(sample, strides):
    """Label and depth tops equal what the data top's coordinates say, at the corner-aligned positions."""
    data, label, *depths = sample
    _, x, y = decode(data)
    for stride, depth in zip(strides, depths):
        xs, ys = x[::stride, ::stride], y[::stride, ::stride]
        np.testing.assert_array_equal(depth[0], np.where(xs < 0, 0, 1 + xs + 100 * ys))
    xs, ys = x[::8, ::8], y[::8, ::8]
    np.testing.assert_array_equal(label[0], np.where(xs < 0, 255, (xs + ys) % 5))
    return x, y


def test_augmentation_keeps_image_label_and_depth_aligned(coded_db):
    sampler = CropSampler(open_database(coded_db), params(coded_db, mirror=True, flip=True, seed=3))
    assert sampler.label_stride == 8 and sampler.depth_strides == [4, 2]
    seen = set()
    batches = sampler.batches()
    for _ in range(8):
        batch = next(batches)
        assert [b.shape for b in batch] == [(4, 3, 33, 33), (4, 1, 5, 5), (4, 1, 9, 9), (4, 1, 17, 17)]
        assert all(b.dtype == np.float32 for b in batch)
        for sample in zip(*batch):
            x, y = check_alignment(sample, [4, 2])
            inside = (x[16] >= 0).nonzero()[0]  # middle row / column: always image, never padding
            step_x = np.unique(np.diff(x[16, inside]))
            step_y = np.unique(np.diff(y[(y[:, 16] >= 0), 16]))
            assert len(step_x) == 1 and len(step_y) == 1 and abs(step_x[0]) == abs(step_y[0]) == 1
            seen.add((step_x[0] < 0, step_y[0] < 0))
    assert seen == {(False, False), (True, False), (False, True), (True, True)}  # mirror and flip both occur


def test_no_flip_or_mirror_unless_asked(coded_db):
    batches = CropSampler(open_database(coded_db), params(coded_db, mirror=False, flip=False)).batches()
    for _ in range(4):
        for data in next(batches)[0]:
            _, x, y = decode(data)
            assert (np.diff(x[16][x[16] >= 0]) == 1).all() and (np.diff(y[:, 16][y[:, 16] >= 0]) == 1).all()


def test_random_crops_cover_the_image_and_pad_when_smaller(coded_db):
    sampler = CropSampler(open_database(coded_db), params(coded_db, mirror=False, batch_size=1, seed=5))
    corners, first_rows, batches = {}, set(), sampler.batches()
    for _ in range(120):
        record, x, y = decode(next(batches)[0][0])
        r = record.max()
        corners.setdefault(r, set()).add((x[x >= 0].min(), y[y >= 0].min()))
        if r == 2:  # 20 rows < 33: the whole height, padded above and below at a random place
            rows = (record >= 0).any(axis=1).nonzero()[0]
            np.testing.assert_array_equal(rows, np.arange(rows[0], rows[0] + 20))
            first_rows.add(rows[0])
    assert set(corners) == {0, 1, 2, 3}
    assert {c[0] for c in corners[0]} <= set(range(0, 60 - 33 + 1)) and len(corners[0]) > 10
    assert {c[1] for c in corners[2]} == {0} and len(first_rows) > 3 and max(first_rows) <= 33 - 20
    assert corners[3] == {(0, 0)}  # 33 x 33: the crop is the whole image


def test_padding_uses_mean_ignore_and_invalid_depth_and_test_mode_centres(tmp_path):
    path = write_database(
        tmp_path / 'db', [coded_record(0, 10, 12), coded_record(1, 50, 45)], 'toy', 'val', list('abcde')
    )
    sampler = CropSampler(
        open_database(path), params(path, train=False, batch_size=3, crop_size=17, label_size=3, depth_sizes=[17])
    )
    data, label, depth = next(sampler.batches())
    record, x, y = decode(data[0])
    inside = record >= 0
    assert inside[3:13, 2:14].all() and inside.sum() == 10 * 12  # centred: (17 - 10) // 2, (17 - 12) // 2
    np.testing.assert_array_equal(x[3, 2:14], np.arange(12))
    assert (data[0][:, ~inside] == 0).all()  # mean colour, once subtracted
    assert (depth[0, 0][~inside] == 0).all()
    assert label[0, 0, 0, 0] == 255 and label[0, 0, 1, 1] == (x[8, 8] + y[8, 8]) % 5
    record, x, y = decode(data[1])  # larger: the centre crop, no flips
    np.testing.assert_array_equal(x[0], np.arange(14, 31))
    np.testing.assert_array_equal(y[:, 0], np.arange(16, 33))
    assert decode(data[2])[0].max() == 0  # test mode goes through records in order


def test_same_seed_same_batches_other_seed_other_batches(coded_db):
    def first_batches(seed):
        batches = CropSampler(open_database(coded_db), params(coded_db, flip=True, seed=seed)).batches()
        return [next(batches) for _ in range(3)]

    a, b, c = first_batches(7), first_batches(7), first_batches(8)
    for batch_a, batch_b in zip(a, b):
        for top_a, top_b in zip(batch_a, batch_b):
            np.testing.assert_array_equal(top_a, top_b)
    assert any(not np.array_equal(ta, tc) for ba, bc in zip(a, c) for ta, tc in zip(ba, bc))


def test_each_epoch_visits_every_record_once(coded_db):
    batches = CropSampler(open_database(coded_db), params(coded_db, batch_size=4, seed=2)).batches()
    for _ in range(3):
        assert sorted(decode(d)[0].max() for d in next(batches)[0]) == [0, 1, 2, 3]


def test_param_str_errors(coded_db, tmp_path):
    with pytest.raises(ValueError, match="unknown key 'mirorr'"):
        params(coded_db, mirorr=True)
    with pytest.raises(ValueError, match='missing source, mean'):
        parse_param_str(json.dumps({'batch_size': 1, 'crop_size': 321}))
    with pytest.raises(ValueError, match='missing mean'):  # the nets always pass it: no default
        parse_param_str(json.dumps({'source': 'x', 'batch_size': 1, 'crop_size': 321}))
    with pytest.raises(ValueError, match='batch_size must be a positive integer'):
        params(coded_db, batch_size=0)
    with pytest.raises(ValueError, match='not JSON'):
        parse_param_str('{source: x}')
    with pytest.raises(ValueError, match=r'label_size 40 does not fit crop_size 321.*e\.g\. 41 \(stride 8\) or 81'):
        CropSampler(open_database(coded_db), params(coded_db, crop_size=321, label_size=40, depth_sizes=[81]))
    with pytest.raises(ValueError, match='depth_sizes entry 80 does not fit crop_size 320'):
        CropSampler(open_database(coded_db), params(coded_db, crop_size=320, label_size=None, depth_sizes=[80]))
    unlabelled = write_database(
        tmp_path / 'test', [coded_record(0, 40, 40, labelled=False)], 'toy', 'test', list('abcde')
    )
    with pytest.raises(DataError, match='has no labels'):
        CropSampler(open_database(unlabelled), params(unlabelled))
    sampler = CropSampler(open_database(unlabelled), params(unlabelled, label_size=None, depth_sizes=[]))
    assert [t.shape for t in next(sampler.batches())] == [(4, 3, 33, 33)]


def layer_net(path, param_str, tops):
    top_lines = ' '.join(f'top: "{t}"' for t in tops)
    text = (
        f'name: "data_only"\nlayer {{ name: "data" type: "Python" {top_lines}\n'
        f'  python_param {{ module: "data_prep.layers" layer: "HybridData" param_str: \'{param_str}\' }} }}\n'
    )
    path.write_text(text)
    return str(path)


def test_layer_in_pycaffe_serves_the_sampler_batches(coded_db, tmp_path):
    given = {
        'source': coded_db,
        'batch_size': 2,
        'crop_size': 33,
        'label_size': 5,
        'depth_sizes': [9],
        'flip': True,
        'seed': 11,
        'mean': list(MEAN_BGR),
    }
    net = caffe.Net(layer_net(tmp_path / 'net.prototxt', json.dumps(given), ['data', 'label', 'depth']), caffe.TRAIN)
    expected = CropSampler(open_database(coded_db), parse_param_str(json.dumps(given))).batches()
    for _ in range(3):
        net.forward()
        for name, array in zip(['data', 'label', 'depth'], next(expected)):
            np.testing.assert_array_equal(net.blobs[name].data, array)
    with pytest.raises(ValueError, match='asks for 3 tops \\(data, label, depth\\) but the layer has 2'):
        caffe.Net(layer_net(tmp_path / 'bad.prototxt', json.dumps(given), ['data', 'label']), caffe.TRAIN)


def test_layer_trains_through_the_caffe_command_line(coded_db, tmp_path):
    param_str = json.dumps(
        {
            'source': coded_db,
            'batch_size': 2,
            'crop_size': 33,
            'label_size': 5,
            'depth_sizes': [9],
            'seed': 1,
            'mean': list(MEAN_BGR),
        }
    )
    net = tmp_path / 'train.prototxt'
    net.write_text(f"""name: "tiny"
layer {{ name: "data" type: "Python" top: "data" top: "label" top: "depth"
  python_param {{ module: "data_prep.layers" layer: "HybridData" param_str: '{param_str}' }} }}
layer {{ name: "score" type: "Convolution" bottom: "data" top: "score"
  convolution_param {{ num_output: 5 kernel_size: 1 stride: 8 weight_filler {{ type: "gaussian" std: 0.01 }} }} }}
layer {{ name: "loss_seg" type: "SoftmaxWithLoss" bottom: "score" bottom: "label" top: "loss_seg"
  loss_param {{ ignore_label: 255 }} }}
layer {{ name: "pred" type: "Convolution" bottom: "data" top: "pred"
  convolution_param {{ num_output: 1 kernel_size: 1 stride: 4 weight_filler {{ type: "gaussian" std: 0.01 }} }} }}
layer {{ name: "loss_depth_abs" type: "EuclideanLoss" bottom: "pred" bottom: "depth" top: "loss_depth_abs" }}
""")
    solver = tmp_path / 'solver.prototxt'
    solver.write_text(
        f'net: "{net}"\nbase_lr: 1e-9\nlr_policy: "fixed"\nmax_iter: 3\ndisplay: 1\n'
        f'snapshot_prefix: "{tmp_path}/snap"\nsolver_mode: CPU\n'
    )
    for command in (['train', '-solver', str(solver)], ['time', '-model', str(net), '-iterations', '2']):
        out = subprocess.run([CAFFE_CLI, *command], cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-3000:]
    assert 'Iteration 3' in out.stderr or os.path.exists(f'{tmp_path}/snap_iter_3.caffemodel')


def test_worker_processes_serve_the_same_stream_and_pass_errors_on(coded_db, tmp_path):
    sampler = CropSampler(open_database(coded_db), params(coded_db, flip=True, seed=4, batch_size=3))
    inline, forked = BatchWorkers(sampler, 0), BatchWorkers(sampler, 3)
    for _ in range(7):
        for a, b in zip(inline.next(), forked.next()):
            np.testing.assert_array_equal(a, b)
    forked.close()
    path = write_database(tmp_path / 'db', [coded_record(0, 40, 40)], 'toy', 'train', list('abcde'))
    broken = CropSampler(open_database(path), params(path))
    os.remove(os.path.join(path, 'data.mdb'))  # the workers open their own LMDB handle: and fail
    workers = BatchWorkers(broken, 2)
    with pytest.raises(DataError, match='data.mdb: missing LMDB data file'):
        workers.next()
    workers.close()


def test_depth_beyond_the_bound_is_never_a_target_or_scored(tmp_path):
    """Cityscapes disparity p = 2 is ~121 km (aachen camera): with the nets' bound
    (netgen.config.MAX_DEPTH, param_str `max_depth`) such pixels are invalid (0) in every depth
    top, and the evaluation (the same bound by default) leaves them out of every metric."""
    bound = MAX_DEPTH['cityscapes']
    layer = build('a2', 'cityscapes', 'train').layer[0]
    assert json.loads(layer.python_param.param_str)['max_depth'] == bound
    assert default_max_depth('cityscapes') == bound and default_max_depth('cityscapes', float('inf')) is None
    y, x = np.mgrid[0:41, 0:41]
    disparity = (1 + 256 * (4 + (x + y) % 17)).astype(np.uint16)  # 4..20 px: 24..118 m
    disparity[::3, ::2] = 2  # ~121 km
    depth = disparity_to_depth(disparity, 0.209313, 2262.52)
    far = disparity == 2
    assert depth[far].min() > 1e5 and (depth[~far] > bound).any() and (depth[~far] <= bound).any()
    record = Record(np.zeros((41, 41, 3), np.uint8), np.zeros((41, 41), np.uint8), depth, ['p2'])
    db = write_database(tmp_path / 'db', [record], 'toy', 'train', list('ab'))
    for train in (True, False):
        given = dict(batch_size=2, crop_size=41, label_size=41, depth_sizes=[41, 21], train=train)
        bounded = CropSampler(open_database(db), params(db, max_depth=bound, **given)).batch(0)
        raw = CropSampler(open_database(db), params(db, **given)).batch(0)
        for top, unbounded in zip(bounded[2:], raw[2:]):
            assert top.max() <= bound and (top > 0).any()
            np.testing.assert_array_equal(top, np.where(unbounded > bound, 0, unbounded))
    meter = DepthMeter(max_depth=default_max_depth('cityscapes'))
    prediction = np.full_like(depth, 30.0)
    scores = meter.update(prediction, depth)
    kept = (depth > 0) & (depth <= bound)
    assert meter.scores()['pixels'] == np.count_nonzero(kept) < np.count_nonzero(depth > 0)
    np.testing.assert_allclose(scores['rmse'], np.sqrt(np.mean((30.0 - depth[kept]) ** 2)), rtol=1e-6)
