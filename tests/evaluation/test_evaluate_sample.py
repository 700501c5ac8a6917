"""The evaluator's command line on a real converted database: data_prep's Cityscapes sample
(official layout, 1024 x 2048) -> converter -> `python -m tools.evaluate` with the official
scorer run on the sample's own gtFine files."""

import csv
import json
import math
import subprocess
import sys

import pytest

from tests.support.colour_net import write_colour_net
from tools.evaluate import main
from tools.evaluation.metrics import DEPTH_KEYS


@pytest.fixture(scope='module')
def cityscapes_val(tmp_path_factory):
    root, out = tmp_path_factory.mktemp('cityscapes'), tmp_path_factory.mktemp('db')
    for command in (
        ['sample', '--dataset', 'cityscapes', '--out', str(root), '--count', '1'],
        ['cityscapes', '--root', str(root), '--out', str(out), '--splits', 'val'],
    ):
        subprocess.run([sys.executable, '-m', 'data_prep'] + command, check=True, capture_output=True)
    return out / 'val'


def test_command_line_on_a_converted_sample(cityscapes_val, tmp_path, capsys):
    deploy, weights = write_colour_net(tmp_path)
    run_dir = tmp_path / 'run'
    code = main(
        [
            '--net',
            'a2',
            '--dataset',
            'cityscapes',
            '--weights',
            str(weights),
            '--prototxt',
            str(deploy),
            '--db',
            str(cityscapes_val),
            '--out',
            str(run_dir),
            '--official-scorer',
            '--figures',
            '1',
            '--quiet',
        ]
    )
    assert code == 0
    assert 'report: %s' % (run_dir / 'report.md') in capsys.readouterr().out
    results = json.loads((run_dir / 'report.json').read_text())
    assert results['images'] == 1 and results['mode'] == 'tiles'
    # the official scorer read the sample's gtFine PNG and our labelId PNG, and agrees
    assert results['official_cityscapes']['mIoU'] == pytest.approx(results['segmentation']['mIoU'], abs=1e-12)
    assert results['segmentation']['pixels'] > 1e6
    for view in ('pooled', 'per_image'):
        assert all(math.isfinite(results['depth'][view][key]) for key in DEPTH_KEYS)
    with open(run_dir / 'per_image.csv') as f:
        (row,) = list(csv.DictReader(f))
    assert row['name'] == results['figure_images'][0] and row['name'].count('_') == 2  # <city>_<seq>_<frame>
    assert (run_dir / 'cityscapes_results' / ('%s_labelIds.png' % row['name'])).is_file()
