"""The evaluator on a checked-in deploy net of netgen (A2, random weights, one tile: a real net at
321 x 321 costs seconds per tile on a CPU): the blob contract (data, seg_prob, depth) holds end to end."""

import math
from pathlib import Path

import numpy as np

from tests.support.colour_net import colour_database
from tools.core import deploy_prototxt as deploy_path
from tools.evaluation.metrics import DEPTH_KEYS
from tools.evaluation.run import evaluate


def test_a2_cityscapes_deploy_net_in_tiles(tmp_path):
    deploy = Path(deploy_path('a2', 'cityscapes'))
    assert deploy.is_file(), 'netgen did not write %s' % deploy
    database = colour_database([(300, 321)], names=['bonn_000000_000019'])  # one padded tile
    results = evaluate(
        'a2',
        'cityscapes',
        None,
        'val',
        tmp_path / 'run',
        database=database,
        batch_size=1,
        num_figures=1,
        progress=False,
    )
    assert results['tasks'] == ['segmentation', 'depth'] and results['random_weights']
    assert results['deploy'] == str(deploy)
    assert 0 <= results['segmentation']['G'] <= 1
    assert all(math.isfinite(results['depth']['per_image'][key]) for key in DEPTH_KEYS)
    with np.load(tmp_path / 'run' / 'predictions' / 'bonn_000000_000019.npz') as saved:
        assert saved['label'].shape == saved['depth'].shape == (300, 321)
        assert saved['label'].max() < 19
