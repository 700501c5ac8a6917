"""The tooling behind the GPU figures, checked on the CPU: DummyData parity nets are
reproducible from the solver's seed (what the TF32 parity check relies on), `caffe train`
timing, the PyTorch side of bench/train.py and the PERFORMANCE.md writer."""

import os

import pytest
from google.protobuf import text_format

from bench import caffe_cli
from bench import train as bench_train
from tests.support import ROOT

CAFFE = os.path.join(ROOT, '.venv', 'bin', 'caffe')

TINY_TRAIN = """
name: "tiny"
layer { name: "hybrid_data" type: "Input" top: "data" top: "label" top: "depth_gt_9"
  input_param { shape { dim: 2 dim: 3 dim: 17 dim: 17 } shape { dim: 2 dim: 1 dim: 9 dim: 9 }
                shape { dim: 2 dim: 1 dim: 9 dim: 9 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  param { lr_mult: 1 } param { lr_mult: 2 }
  convolution_param { num_output: 4 kernel_size: 3 pad: 1 stride: 2
    weight_filler { type: "gaussian" std: 0.01 } } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "drop1" type: "Dropout" bottom: "conv1" top: "conv1" }
layer { name: "fc8" type: "Convolution" bottom: "conv1" top: "fc8"
  convolution_param { num_output: 5 kernel_size: 1 weight_filler { type: "gaussian" std: 0.01 } } }
layer { name: "fixed" type: "Convolution" bottom: "conv1" top: "fixed"
  param { lr_mult: 0 } param { lr_mult: 0 }
  convolution_param { num_output: 1 kernel_size: 1 weight_filler { type: "gaussian" std: 0.01 } } }
layer { name: "loss_seg" type: "SoftmaxWithLoss" bottom: "fc8" bottom: "label" top: "loss_seg"
  loss_param { ignore_label: 255 } }
layer { name: "loss_depth_abs" type: "EuclideanLoss" bottom: "fixed" bottom: "depth_gt_9"
  top: "loss_depth_abs" }
"""
TINY_DEPLOY = """
name: "tiny_deploy"
layer { name: "input" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 17 dim: 17 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  param { lr_mult: 1 } param { lr_mult: 2 } convolution_param { num_output: 4 kernel_size: 3 pad: 1 stride: 2 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "fc8" type: "Convolution" bottom: "conv1" top: "fc8" convolution_param { num_output: 5 kernel_size: 1 } }
layer { name: "seg_prob" type: "Softmax" bottom: "fc8" top: "seg_prob" }
layer { name: "fixed" type: "Convolution" bottom: "conv1" top: "depth"
  param { lr_mult: 0 } param { lr_mult: 0 } convolution_param { num_output: 1 kernel_size: 1 } }
"""


def _net(text):
    from caffe.proto import caffe_pb2

    net = caffe_pb2.NetParameter()
    text_format.Merge(text, net)
    return net


@pytest.fixture
def tiny(tmp_path):
    net = caffe_cli.dummy_data_net(_net(TINY_TRAIN))
    path = tmp_path / 'tiny.parity.prototxt'
    path.write_text(text_format.MessageToString(net))
    (tmp_path / 'tiny.train.prototxt').write_text(TINY_TRAIN)
    (tmp_path / 'tiny.deploy.prototxt').write_text(TINY_DEPLOY)
    return tmp_path


def test_dummy_data_net_replaces_input_with_seeded_fillers():
    net = caffe_cli.dummy_data_net(_net(TINY_TRAIN))
    data = net.layer[0]
    assert data.type == 'DummyData' and not data.HasField('input_param')
    p = data.dummy_data_param
    assert [list(s.dim) for s in p.shape] == [[2, 3, 17, 17], [2, 1, 9, 9], [2, 1, 9, 9]]
    assert p.data_filler[0].type == 'gaussian' and p.data_filler[0].std == 50
    assert p.data_filler[1].type == 'uniform' and p.data_filler[1].min == 0
    assert 4 < p.data_filler[1].max < 5  # 5 classes: labels 0..4 after Caffe's int cast
    assert p.data_filler[2].type == 'uniform' and p.data_filler[2].min >= 1


def test_dummy_data_net_of_a_generated_train_net():
    netgen = pytest.importorskip('netgen')
    train = netgen.build('a2', 'cityscapes', 'train', data_layer='input', batch_size=1)
    net = caffe_cli.dummy_data_net(train)
    data = [l for l in net.layer if l.top[0] == 'data'][0]
    assert data.type == 'DummyData'
    assert list(data.top) == ['data', 'label', 'depth_gt_81']
    assert 18 < data.dummy_data_param.data_filler[1].max < 19  # Cityscapes: 19 classes


def _solver(tmp_path, net, name, base_lr=0.01, iterations=2, seed=1):
    path = tmp_path / name
    path.write_text(
        caffe_cli.parity_solver(
            str(net), str(tmp_path / 'snap'), base_lr=base_lr, iterations=iterations, seed=seed, gpu=False
        )
    )
    return str(path)


def test_parity_losses_are_reproducible_from_the_seed(tiny):
    """The TF32 parity check compares two runs: on one device they must agree exactly."""
    s = _solver(tiny, tiny / 'tiny.parity.prototxt', 'solver.prototxt')
    a, tf32_a, _ = caffe_cli.caffe_train_losses(CAFFE, s)
    b, _, _ = caffe_cli.caffe_train_losses(CAFFE, s)
    assert sorted(a) == [0, 1, 2] and a == b, (a, b)
    assert all(v == v and abs(v) < 1e6 for v in a.values())
    assert not tf32_a  # the CPU build knows no TF32
    other = caffe_cli.caffe_train_losses(CAFFE, _solver(tiny, tiny / 'tiny.parity.prototxt', 's2.prototxt', seed=2))[0]
    assert other != a  # the seed draws the batches


def test_caffe_train_timing_counts_full_iterations(tiny):
    r = caffe_cli.caffe_train_timing(CAFFE, str(tiny / 'tiny.train.prototxt'), 3)
    assert len(r['per_iter_ms']) == 3 and all(t >= 0 for t in r['per_iter_ms'])


def test_torch_time_freezes_lr_mult_zero_layers(tiny):
    ok, why = bench_train.torch_available()
    if not ok:
        pytest.skip(why)
    assert bench_train.frozen_layers(_net(TINY_TRAIN)) == {'fixed'}
    r = bench_train.torch_time(str(tiny / 'tiny.train.prototxt'), str(tiny / 'tiny.deploy.prototxt'), 2)
    assert len(r['per_iter_ms']) == 2 and r['median_ms'] > 0


def test_report_appends_to_the_training_speed_section(tmp_path):
    md = tmp_path / 'PERFORMANCE.md'
    md.write_text('# Performance\n\n## Evaluation speed\n\nold text\n')
    row = dict(net='a2', device='cpu', batch=1, caffe_fp32=2000.0, torch_fp32=4000.0)
    block1 = bench_train.report([row], ['GPU not measured: none'], ['cpu'], 'python bench/train.py --batch 1')
    bench_train.append_section(str(md), block1)  # makes the section, at the end
    with open(md, 'a') as f:
        f.write('\n## Other\n\nkept\n')
    bench_train.append_section(str(md), block1.replace('--batch 1', '--batch 2'))
    text = md.read_text()
    assert text.count('## Training speed') == 1
    assert text.index('## Evaluation speed') < text.index('## Training speed') < text.index('## Other')
    assert text.index('--batch 1') < text.index('--batch 2') < text.index('## Other')
    assert '| a2 | cpu | 1 | 2000.0 | 4000.0 | - | - | 0.50 | 0.25 |' in text
    assert 'kept' in text and 'old text' in text


def test_prepare_writes_the_nets_the_device_check_reads(tmp_path):
    pytest.importorskip('netgen')
    m = bench_train.prepare(str(tmp_path), ['deeplab_aspp', 'depthnet'], 'cityscapes', 3)
    assert set(m['nets']) == {'deeplab_aspp', 'depthnet_global', 'depthnet_gradient', 'depthnet_refine'}
    assert bench_train.load_manifest(str(tmp_path)) == m
    entry = m['nets']['deeplab_aspp']
    assert set(entry) == {'train', 'deploy', 'parity'}
    train = bench_train.read_net(str(tmp_path / entry['train']))
    assert train.layer[0].type == 'Input' and train.layer[0].input_param.shape[0].dim[0] == 3
    assert bench_train.read_net(str(tmp_path / entry['parity'])).layer[0].type == 'DummyData'
    assert 'parity' not in m['nets']['depthnet_refine']
    refine = bench_train.read_net(str(tmp_path / m['nets']['depthnet_refine']['train']))
    frozen = bench_train.frozen_layers(refine)  # the frozen global and gradient stages
    assert len(frozen) >= 10, frozen
    assert not bench_train.frozen_layers(train) - {l.name for l in train.layer if 'fixed' in l.name}
