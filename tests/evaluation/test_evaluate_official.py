"""Our Cityscapes mIoU equals the official `cityscapesscripts` scorer's on the same predictions.

The scorer runs unchanged on labelId PNGs in the official layout and naming: ground truth
`gtFine/val/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png`, predictions found by its own
`getPrediction` (pattern `<city>_<seq>_<frame>*.png`). It accepts any image size as long as
prediction and ground truth agree, so the images here are small.
"""

import math

import numpy as np
import pytest
from cityscapesscripts.helpers.labels import labels, trainId2label
from PIL import Image

from tests.support.colour_net import colour_database, write_colour_net
from tools.evaluation.metrics import SegmentationMeter, official_cityscapes_scores
from tools.evaluation.run import evaluate, save_cityscapes_prediction

FRAMES = ['frankfurt_000000_000294', 'frankfurt_000001_007973', 'munster_000042_000019']
LABEL_IDS = np.array([label.id for label in labels if label.id >= 0])
TRAIN_ID_OF = np.full(256, 255, np.uint8)
for _label in labels:
    if 0 <= _label.id and 0 <= _label.trainId < 255:
        TRAIN_ID_OF[_label.id] = _label.trainId
LABEL_ID_OF = np.zeros(256, np.uint8)  # trainId -> labelId, 255 -> 0 ('unlabeled')
LABEL_ID_OF[:19] = [trainId2label[i].id for i in range(19)]


def gt_path(root, frame):
    city = frame.split('_')[0]
    path = root / 'gtFine' / 'val' / city / ('%s_gtFine_labelIds.png' % frame)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def synthetic_pair(seed, shape=(96, 160)):
    """Ground-truth labelIds in blocks (every id, evaluated or ignored, may occur, 'train' never)
    and a prediction of trainIds: mostly right, some noise, some 'motorcycle' that no gt holds."""
    rng = np.random.default_rng(seed)
    allowed = LABEL_IDS[(LABEL_IDS != 31) & (LABEL_IDS != 32)]  # no train, no motorcycle in gt
    blocks = rng.choice(allowed, (shape[0] // 16, shape[1] // 16))
    gt_ids = np.kron(blocks, np.ones((16, 16), np.int64)).astype(np.uint8)
    gt_train = TRAIN_ID_OF[gt_ids]
    pred = np.where(gt_train == 255, rng.integers(0, 19, shape), gt_train)
    noise = rng.random(shape) < 0.15
    pred[noise] = rng.integers(0, 19, shape)[noise]
    pred[pred == 16] = 0  # 'train' never predicted either: NaN in both scorers
    pred[:4, :4] = 17  # 'motorcycle' predicted, never in gt: IoU 0 in both
    return gt_ids, gt_train, pred


def test_our_miou_equals_the_official_scorers(tmp_path):
    meter = SegmentationMeter(19)
    gt_files = []
    for seed, frame in enumerate(FRAMES):
        gt_ids, gt_train, pred = synthetic_pair(seed)
        gt_files.append(gt_path(tmp_path, frame))
        Image.fromarray(gt_ids).save(gt_files[-1])
        (tmp_path / 'results').mkdir(exist_ok=True)
        save_cityscapes_prediction(tmp_path / 'results' / ('%s_labelIds.png' % frame), pred)
        meter.update(pred, gt_train)
    ours = meter.scores()
    official = official_cityscapes_scores(tmp_path / 'results', gt_files)
    assert ours['mIoU'] == pytest.approx(official['averageScoreClasses'], abs=1e-12)
    for train_id, iou in enumerate(ours['iou']):
        theirs = official['classScores'][trainId2label[train_id].name]
        assert (math.isnan(iou) and math.isnan(theirs)) or iou == pytest.approx(theirs, abs=1e-12)
    assert math.isnan(ours['iou'][16]) and ours['iou'][17] == 0  # the two edge cases did occur
    assert 0.5 < ours['mIoU'] < 0.95


def test_official_scorer_failure_is_reported(tmp_path):
    gt_ids, _, _ = synthetic_pair(0)
    gt_file = gt_path(tmp_path, FRAMES[0])
    Image.fromarray(gt_ids).save(gt_file)
    (tmp_path / 'results').mkdir()
    with pytest.raises(RuntimeError, match='Found no prediction'):
        official_cityscapes_scores(tmp_path / 'results', [gt_file])


def test_evaluator_writes_pngs_the_official_scorer_reads_and_agrees(tmp_path):
    deploy, weights = write_colour_net(tmp_path)
    database = colour_database([(200, 400), (330, 340)], names=FRAMES[:2])
    for frame, record in zip(FRAMES, database.records):
        path = gt_path(tmp_path, frame)
        Image.fromarray(LABEL_ID_OF[record.label]).save(path)
        record.sources.append(str(path.relative_to(tmp_path)))
    database.manifest['source_root'] = str(tmp_path)
    results = evaluate(
        'a2',
        'cityscapes',
        weights,
        'val',
        tmp_path / 'run',
        deploy=deploy,
        database=database,
        tasks=['segmentation'],
        num_figures=0,
        official_scorer=True,
        progress=False,
    )
    assert results['official_cityscapes']['mIoU'] == pytest.approx(results['segmentation']['mIoU'], abs=1e-12)
    assert results['segmentation']['mIoU'] > 0.8
    assert 'Official `cityscapesscripts` scorer' in (tmp_path / 'run' / 'report.md').read_text()
