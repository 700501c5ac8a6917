"""tools.export and tools.parity given a damaged caffemodel: one line naming the file and the
fault, exit 2, no traceback, nothing written (issue 12, case 10). Real processes."""

import os
import subprocess
import sys

import pytest
from caffe.proto import caffe_pb2

from tests.support import ROOT
from tests.support.colour_net import write_colour_net


def damage(model, how, out):
    data = open(model, 'rb').read()
    if how == 'truncated':  # a partial copy: cut inside a blob
        out.write_bytes(data[: len(data) // 2])
    else:  # cut at a layer boundary: a valid message that lacks the last layers
        net = caffe_pb2.NetParameter()
        net.ParseFromString(data)
        del net.layer[len(net.layer) // 2 :]
        out.write_bytes(net.SerializeToString())
    return out


def tool(*args):
    env = dict(os.environ, PYTHONPATH=ROOT, GLOG_minloglevel='2')
    return subprocess.run(
        [sys.executable, '-m'] + [str(a) for a in args], env=env, cwd=ROOT, capture_output=True, text=True
    )


@pytest.mark.parametrize(
    'how, fault',
    [('truncated', 'not a caffemodel (truncated or damaged'), ('cut', 'does not fit the net (no weights for layer(s)')],
)
def test_export_names_a_damaged_caffemodel(tmp_path, how, fault):
    deploy, weights = write_colour_net(tmp_path)
    bad = damage(weights, how, tmp_path / 'bad.caffemodel')
    out = tmp_path / 'bad.npz'
    proc = tool('tools.export', '--prototxt', deploy, '--weights', bad, '--to', 'npz', '--out', out)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]  # one line
    assert proc.stderr.startswith('error: %s: %s' % (bad, fault)), proc.stderr
    assert not out.exists()


def test_parity_names_a_truncated_caffemodel(tmp_path):
    _, weights = write_colour_net(tmp_path)
    bad = damage(weights, 'truncated', tmp_path / 'bad.caffemodel')
    proc = tool('tools.parity', '--net', 'a1', '--dataset', 'cityscapes', '--weights', bad)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == proc.stderr.strip().splitlines()[0]
    assert proc.stderr.startswith('error: %s: not a caffemodel (truncated or damaged' % bad), proc.stderr
