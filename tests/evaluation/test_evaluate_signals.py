"""tools.evaluate stopped by SIGINT or SIGTERM (a real process, a real signal): one line, exit
130 / 143, no traceback, and no run directory, partial or not, left behind (issue 12)."""

import glob
import os
import signal
import subprocess
import sys
import time

import pytest

from data_prep.database import write_database
from tests.support import ROOT
from tests.support.colour_net import colour_database, write_colour_net


@pytest.fixture(scope='module')
def slow_split(tmp_path_factory):
    """A colour net and 12 large images: seconds of tiled evaluation, time to be stopped."""
    directory = tmp_path_factory.mktemp('eval')
    deploy, weights = write_colour_net(directory)
    records = colour_database([(400, 720)] * 12).records
    db = write_database(directory / 'db', records, 'cityscapes', 'val', ['c%d' % i for i in range(19)])
    return deploy, weights, db


def evaluate_command(deploy, weights, db, out):
    return [
        sys.executable,
        '-m',
        'tools.evaluate',
        '--net',
        'a2',
        '--dataset',
        'cityscapes',
        '--prototxt',
        str(deploy),
    ] + ['--weights', str(weights), '--db', str(db), '--out', str(out), '--quiet', '--figures', '0']


@pytest.mark.parametrize(
    'signum, status, line',
    [(signal.SIGINT, 130, 'interrupted (SIGINT)'), (signal.SIGTERM, 143, 'terminated (SIGTERM)')],
)
@pytest.mark.parametrize('when', ['loading', 'predicting'])
def test_a_signal_leaves_no_run_directory(slow_split, tmp_path, signum, status, line, when):
    out = tmp_path / 'run'
    env = dict(os.environ, PYTHONPATH=ROOT, GLOG_minloglevel='2')
    proc = subprocess.Popen(evaluate_command(*slow_split, out), env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    if when == 'loading':
        time.sleep(0.5)  # Caffe still importing
    else:
        while not glob.glob(str(tmp_path / '.run.partial-*')) and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert proc.poll() is None, 'the evaluation ended before it could be stopped'
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == status, err
    assert 'Traceback' not in err and err.strip() == line
    assert os.listdir(tmp_path) == []  # neither the run nor its partial directory
