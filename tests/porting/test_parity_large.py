"""A2's caffemodel is over 512 MB (the global net's fc6 alone holds 94.6 M weights): the parity
tool reads it through pycaffe and protobuf like any other (the build's patch 05 lifted Caffe's
512 MB reader limit; tools.core.protos never had one)."""

import os
import subprocess
import sys

import pytest

from tests.support import ROOT
from tools.porting.parity import random_net

pytestmark = pytest.mark.slow


def test_parity_tool_reads_a2s_551_mb_caffemodel(tmp_path):
    weights = tmp_path / 'a2_random.caffemodel'
    net = random_net(os.path.join(ROOT, 'prototxt', 'a2_cityscapes', 'deploy.prototxt'), seed=5)
    net.save(str(weights))
    del net
    assert weights.stat().st_size > 512 * 2**20
    proc = subprocess.run(
        [sys.executable, '-m', 'tools.parity', '--net', 'a2', '--dataset', 'cityscapes', '--weights', str(weights),
         '--backends', 'pytorch'],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert '| pytorch | `depth` |' in proc.stdout and 'worst' in proc.stdout
