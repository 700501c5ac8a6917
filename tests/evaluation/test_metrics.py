"""tools.metrics: hand-computed cases for every metric (paper L388-393, Table 3)."""

import math

import numpy as np
import pytest

from tools.evaluation.metrics import (
    DEPTH_EPSILON,
    DEPTH_KEYS,
    DepthMeter,
    SegmentationMeter,
    confusion_matrix,
    depth_scores,
    depth_sums,
)
from tools.evaluation.paper import PAPER_DEPTH

# --- segmentation -------------------------------------------------------------------

GT = np.array([[0, 0, 1], [1, 2, 255]])
PRED = np.array([[0, 1, 1], [1, 0, 2]])
# valid pixels (gt, pred): (0,0) (0,1) (1,1) (1,1) (2,0); the 255 pixel is ignored
CONFUSION = [[1, 1, 0], [0, 2, 0], [1, 0, 0]]


def test_confusion_matrix_by_hand():
    np.testing.assert_array_equal(confusion_matrix(PRED, GT, 3), CONFUSION)


def test_segmentation_scores_by_hand():
    meter = SegmentationMeter(3)
    meter.update(PRED, GT)
    scores = meter.scores()
    assert scores['G'] == pytest.approx(3 / 5)
    assert scores['accuracy'] == pytest.approx([1 / 2, 1, 0])
    assert scores['C'] == pytest.approx(1 / 2)
    # IoU = diag / (row + column - diag): 1/(2+2-1), 2/(2+3-2), 0/(1+0-0)
    assert scores['iou'] == pytest.approx([1 / 3, 2 / 3, 0])
    assert scores['mIoU'] == pytest.approx(1 / 3)
    assert scores['pixels'] == 5 and scores['images'] == 1


def test_class_absent_from_gt_and_prediction_is_nan_and_left_out():
    meter = SegmentationMeter(4)
    meter.update(PRED, GT)
    scores = meter.scores()
    assert math.isnan(scores['iou'][3]) and math.isnan(scores['accuracy'][3])
    assert scores['mIoU'] == pytest.approx(1 / 3) and scores['C'] == pytest.approx(1 / 2)


def test_class_predicted_but_absent_from_gt_has_iou_zero_and_counts():
    pred = PRED.copy()
    pred[0, 0] = 3  # gt 0 predicted as 3
    meter = SegmentationMeter(4)
    meter.update(pred, GT)
    scores = meter.scores()
    assert scores['iou'][3] == 0 and math.isnan(scores['accuracy'][3])
    # class 0 now: tp 0 -> IoU 0; classes 1, 2 unchanged; class 3: 0
    assert scores['iou'] == pytest.approx([0, 2 / 3, 0, 0])
    assert scores['mIoU'] == pytest.approx((2 / 3) / 4)


def test_one_confusion_matrix_over_the_set_not_a_mean_of_images():
    meter = SegmentationMeter(2)
    first = meter.update(np.array([0, 0, 0, 1]), np.array([0, 0, 0, 0]))
    second = meter.update(np.array([1]), np.array([1]))
    assert first['mIoU'] == pytest.approx(3 / 8)  # classes 0: 3/4, 1: 0/1
    assert second['mIoU'] == pytest.approx(1)  # class 0 absent from both: left out
    set_scores = meter.scores()
    # summed matrix [[3, 1], [0, 1]]: IoU 3/4 and 1/2
    assert set_scores['mIoU'] == pytest.approx((3 / 4 + 1 / 2) / 2)
    assert set_scores['mIoU'] != pytest.approx((first['mIoU'] + second['mIoU']) / 2)


def test_confusion_matrix_equals_a_pixel_loop_on_random_labels():
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 5, (40, 50))
    gt[rng.random(gt.shape) < 0.2] = 255
    pred = rng.integers(0, 5, gt.shape)
    expected = np.zeros((5, 5), int)
    for g, p in zip(gt.ravel(), pred.ravel()):
        if g != 255:
            expected[g, p] += 1
    np.testing.assert_array_equal(confusion_matrix(pred, gt, 5), expected)


def test_bad_segmentation_input_is_refused():
    with pytest.raises(ValueError, match='shape'):
        confusion_matrix(np.zeros((2, 2)), np.zeros((2, 3)), 3)
    with pytest.raises(ValueError, match='ground truth holds labels outside'):
        confusion_matrix(np.zeros(2), np.array([0, 7]), 3)
    with pytest.raises(ValueError, match='prediction holds labels outside'):
        confusion_matrix(np.array([0, 3]), np.zeros(2), 3)


# --- depth ----------------------------------------------------------------------------


def scores_of(pred, gt):
    return depth_scores(depth_sums(np.array(pred, float), np.array(gt, float)))


def test_delta_thresholds_by_hand():
    # ratios 1, 1.2 (< 1.25), 1.25 (not < 1.25: strict), 1/0.7 = 1.43 (< 1.25^2),
    # 1.9 (< 1.25^3 = 1.953), 2.5 (fails all)
    scores = scores_of([1, 1.2, 1.25, 0.7, 1.9, 2.5], [1] * 6)
    assert scores['delta1'] == pytest.approx(2 / 6)
    assert scores['delta2'] == pytest.approx(4 / 6)
    assert scores['delta3'] == pytest.approx(5 / 6)


def test_ard_srd_rmse_by_hand():
    # (d, d*) = (3, 2), (2, 4): |d - d*| = 1, 2; the gt 0 and NaN pixels are invalid
    scores = scores_of([3, 2, 9, 9], [2, 4, 0, np.nan])
    assert scores['ard'] == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert scores['srd'] == pytest.approx((1 / 2 + 4 / 4) / 2)
    assert scores['rmse'] == pytest.approx(math.sqrt((1 + 4) / 2))


def test_log_metrics_by_hand():
    # g = ln d - ln d* = 1, 3
    scores = scores_of([math.e, math.e**3], [1, 1])
    assert scores['rmse_log'] == pytest.approx(math.sqrt((1 + 9) / 2))
    assert scores['sie'] == pytest.approx(math.sqrt((1 + 9) / 2 - 2**2))  # = 1
    assert scores['sie_table3'] == pytest.approx(((1 + 2) ** 2 + (3 + 2) ** 2) / 2)  # = 17


def test_sie_is_scale_invariant_and_rmse_log_is_not():
    rng = np.random.default_rng(2)
    gt, pred = rng.uniform(1, 50, 100), rng.uniform(1, 50, 100)
    base, scaled = scores_of(pred, gt), scores_of(7 * pred, gt)
    assert scaled['sie'] == pytest.approx(base['sie'])
    assert scaled['rmse_log'] != pytest.approx(base['rmse_log'])


def test_pp_mvn_by_hand():
    # An affine copy of the truth is perfect after MVN, though delta1 fails everywhere.
    affine = scores_of([10, 20, 30], [1, 2, 3])
    assert affine['pp_mvn'] == 1 and affine['delta1'] == 0
    # Reversed order: MVN(d) = -MVN(d*), aligned = [3, 1] against [1, 3]: ratios 3.
    assert scores_of([3, 1], [1, 3])['pp_mvn'] == 0
    # gt [1, 2, 3] (mean 2, std sqrt(2/3)), d [0, 0, 1] (mean 1/3, std sqrt(2/9)):
    # aligned = 2 + sqrt(3) (d - 1/3) = [1.423, 1.423, 3.155]; ratios 1.423, 1.406, 1.052
    assert scores_of([0, 0, 1], [1, 2, 3])['pp_mvn'] == pytest.approx(1 / 3)


def test_non_positive_predictions_are_clamped_not_nan():
    scores = scores_of([-1, 0], [1, 1])
    assert all(np.isfinite(scores[key]) for key in DEPTH_KEYS)
    assert scores['rmse_log'] == pytest.approx(-math.log(DEPTH_EPSILON))
    assert scores['delta3'] == 0


def test_pooled_over_pixels_and_mean_over_images_are_both_reported():
    meter = DepthMeter()
    meter.update(np.array([1.0]), np.array([1.0]))  # ard 0, one pixel
    meter.update(np.full(3, 2.0), np.ones(3))  # ard 1, three pixels
    meter.update(np.ones(2), np.array([0.0, np.inf]))  # no valid pixel: left out
    scores = meter.scores()
    assert scores['pooled']['ard'] == pytest.approx(3 / 4)
    assert scores['per_image']['ard'] == pytest.approx(1 / 2)
    assert scores['per_image_std']['ard'] == pytest.approx(1 / 2)
    assert scores['images'] == 2 and scores['pixels'] == 4
    assert scores['images_without_valid_depth'] == 1


def test_depth_range_limits_the_valid_pixels():
    meter = DepthMeter(max_depth=10)
    meter.update(np.array([1.0, 50.0]), np.array([1.0, 100.0]))
    assert meter.scores()['pixels'] == 1 and meter.scores()['pooled']['rmse'] == 0


def test_bad_depth_input_is_refused():
    with pytest.raises(ValueError, match='NaN or infinite'):
        depth_sums(np.array([np.nan]), np.array([1.0]))
    with pytest.raises(ValueError, match='shape'):
        depth_sums(np.ones(2), np.ones(3))
    empty = DepthMeter().scores()
    assert empty['images'] == 0 and math.isnan(empty['pooled']['rmse'])


def test_both_sie_forms_fit_every_printed_number():
    """Why SIE's root form is a choice, not forced (docs/FIDELITY.md, "SIE"): with g = ln d - ln d*
    and m its mean, the root form sqrt(mean(g^2) - m^2) <= RMSE-log, and Table 3's printed form
    mean((g + m)^2) = RMSE-log^2 + 3 m^2 lies in [RMSE-log^2, 4 RMSE-log^2]. Every SIE the paper
    prints satisfies both bounds (Table 4 A2: 0.19 >= 0.4343^2 = 0.1886 only just), so the
    numbers cannot tell the forms apart."""
    rng = np.random.default_rng(3)
    gt = rng.uniform(1, 50, (20, 30))
    pred = gt * np.exp(0.3 + 0.2 * rng.standard_normal(gt.shape))
    s = depth_scores(depth_sums(pred, gt))
    g = np.log(pred) - np.log(gt)
    assert s['sie'] ** 2 == pytest.approx(s['rmse_log'] ** 2 - g.mean() ** 2)
    assert s['sie_table3'] == pytest.approx(s['rmse_log'] ** 2 + 3 * g.mean() ** 2)
    for dataset, table in PAPER_DEPTH.items():
        for sie, rmse_log in zip(table.values['sie'], table.values['rmse_log']):
            sie, rmse_log = float(sie), float(rmse_log)
            assert sie <= rmse_log, (dataset, sie, rmse_log)  # root form
            assert rmse_log**2 <= sie <= 4 * rmse_log**2, (dataset, sie, rmse_log)  # printed form
