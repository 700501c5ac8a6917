"""Segmentation and depth metrics of the paper (L388-393, Table 3 at L420-423).

Segmentation: one confusion matrix accumulated over the whole set (np.bincount, as in
FCN's score.py), rows = ground truth, columns = prediction, ignored pixels left out.
  G    = trace / total                               (global pixel accuracy)
  C    = mean over classes of diag / row sum         (class average accuracy)
  IoU  = diag / (row sum + column sum - diag) per class; mIoU = their mean
A class absent from both ground truth and prediction has an undefined IoU (NaN) and
is left out of the mean, as the official Cityscapes scorer does; a class absent from
the ground truth has an undefined accuracy (NaN), left out of C. A class predicted but
absent from the ground truth has IoU 0 and counts.

Depth, over valid ground-truth pixels (finite and > 0), d = prediction, d* = truth:
  delta_k    fraction with max(d / d*, d* / d) < 1.25^k, k = 1, 2, 3
  pp_mvn     delta_1 after mean-variance normalisation, see `mvn_aligned`
  ard        mean |d - d*| / d*                 srd   mean (d - d*)^2 / d*
  rmse       sqrt(mean (d - d*)^2)              rmse_log  sqrt(mean (ln d - ln d*)^2)
  sie        Eigen et al. 2014's scale-invariant error, the root form:
             sqrt(mean(g^2) - mean(g)^2) with g = ln d - ln d*
  sie_table3 the paper's Table 3 formula as printed: mean((g_i + mean(g))^2)
             (its sign slip and missing root kept; only for comparison)
Each metric is reported two ways: `pooled` over all valid pixels of the set, and
`per_image`, the mean (and standard deviation) of the per-image values. The MVN of
pp_mvn and the mean of the SIE are per image in both. Predicted depth <= DEPTH_EPSILON
is clamped to DEPTH_EPSILON so that ratios and logs stay finite.
"""

import numpy as np

#: Smallest predicted depth in metres used in ratios and logs (docs/FIDELITY.md).
DEPTH_EPSILON = 1e-3
#: Caffe's MVN epsilon, added to the standard deviation.
MVN_EPSILON = 1e-9
#: Base of the delta thresholds 1.25, 1.25^2, 1.25^3 (Table 3).
DELTA_BASE = 1.25

DEPTH_KEYS = ('pp_mvn', 'delta1', 'delta2', 'delta3', 'ard', 'srd', 'rmse', 'rmse_log', 'sie', 'sie_table3')


def confusion_matrix(pred, gt, num_classes, ignore_label=255):
    """num_classes x num_classes int64 counts (rows gt, columns prediction)."""
    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError('prediction shape %s differs from ground truth shape %s' % (pred.shape, gt.shape))
    valid = gt != ignore_label
    gt_valid, pred_valid = gt[valid].astype(np.int64), pred[valid].astype(np.int64)
    if gt_valid.size and (gt_valid.min() < 0 or gt_valid.max() >= num_classes):
        raise ValueError(
            'ground truth holds labels outside 0..%d and %d: %s'
            % (num_classes - 1, ignore_label, np.unique(gt_valid[(gt_valid < 0) | (gt_valid >= num_classes)]))
        )
    if pred_valid.size and (pred_valid.min() < 0 or pred_valid.max() >= num_classes):
        raise ValueError('prediction holds labels outside 0..%d' % (num_classes - 1))
    return np.bincount(num_classes * gt_valid + pred_valid, minlength=num_classes**2).reshape(num_classes, num_classes)


def _ratio(numerator, denominator):
    """numerator / denominator, NaN where the denominator is 0 (no warning)."""
    numerator = np.asarray(numerator, np.float64)
    out = np.full(numerator.shape, np.nan)
    np.divide(numerator, denominator, out=out, where=np.asarray(denominator) != 0)
    return out


def _nanmean(values):
    values = np.asarray(values, np.float64)
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else float('nan')


def segmentation_scores(confusion):
    """G, C, mIoU (fractions) and per-class `accuracy` and `iou` lists of a confusion matrix."""
    confusion = np.asarray(confusion, np.float64)
    diag, gt_total, pred_total = np.diag(confusion), confusion.sum(1), confusion.sum(0)
    accuracy = _ratio(diag, gt_total)
    iou = _ratio(diag, gt_total + pred_total - diag)
    total = confusion.sum()
    return {
        'G': float(diag.sum() / total) if total else float('nan'),
        'C': _nanmean(accuracy),
        'mIoU': _nanmean(iou),
        'accuracy': accuracy.tolist(),
        'iou': iou.tolist(),
        'pixels': int(total),
    }


class SegmentationMeter:
    """Accumulates one confusion matrix over a set (paper L388-393)."""

    def __init__(self, num_classes, ignore_label=255):
        self.num_classes, self.ignore_label = num_classes, ignore_label
        self.confusion = np.zeros((num_classes, num_classes), np.int64)
        self.images = 0

    def update(self, pred, gt):
        """Adds one image; returns that image's own scores."""
        confusion = confusion_matrix(pred, gt, self.num_classes, self.ignore_label)
        self.confusion += confusion
        self.images += 1
        return segmentation_scores(confusion)

    def scores(self):
        """Scores of the whole set, plus `images` and the confusion matrix."""
        result = segmentation_scores(self.confusion)
        result.update(images=self.images, confusion=self.confusion.tolist())
        return result


def mvn(values):
    """Mean-variance normalisation as Caffe's MVN layer: (x - mean) / (std + 1e-9)."""
    return (values - values.mean()) / (values.std() + MVN_EPSILON)


def mvn_aligned(pred, gt):
    """The prediction after MVN, expressed in the ground truth's mean and spread:
    MVN(d) * std(d*) + mean(d*). Then d' / d* = (MVN(d) + c) / (MVN(d*) + c) with
    c = mean(d*) / std(d*): the paper's MVN ratio of Table 3, both maps shifted by
    the same c so that the ratio is positive and meaningful (docs/FIDELITY.md)."""
    return mvn(pred) * gt.std() + gt.mean()


def depth_sums(pred, gt, min_depth=None, max_depth=None):
    """Per-image sufficient statistics of every depth metric (float64 sums and counts)."""
    pred, gt = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    if pred.shape != gt.shape:
        raise ValueError('depth prediction shape %s differs from ground truth shape %s' % (pred.shape, gt.shape))
    if not np.isfinite(pred).all():
        raise ValueError('depth prediction holds NaN or infinite values (a diverged net?)')
    valid = np.isfinite(gt) & (gt > 0)
    if min_depth is not None:
        valid &= gt >= min_depth
    if max_depth is not None:
        valid &= gt <= max_depth
    d, truth = np.maximum(pred[valid], DEPTH_EPSILON), gt[valid]
    sums = {'n': int(d.size)}
    if not d.size:
        return sums
    ratio = np.maximum(d / truth, truth / d)
    aligned = np.maximum(mvn_aligned(d, truth), DEPTH_EPSILON)
    log_diff = np.log(d) - np.log(truth)
    sums.update(
        {
            'delta1': np.count_nonzero(ratio < DELTA_BASE),
            'delta2': np.count_nonzero(ratio < DELTA_BASE**2),
            'delta3': np.count_nonzero(ratio < DELTA_BASE**3),
            'pp_mvn': np.count_nonzero(np.maximum(aligned / truth, truth / aligned) < DELTA_BASE),
            'abs_rel': float((np.abs(d - truth) / truth).sum()),
            'sq_rel': float(((d - truth) ** 2 / truth).sum()),
            'sq': float(((d - truth) ** 2).sum()),
            'log_sq': float((log_diff**2).sum()),
            # SIE is scale invariant per image: centre g on its image's own mean.
            'log_centred_sq': float(((log_diff - log_diff.mean()) ** 2).sum()),
            'log_table3_sq': float(((log_diff + log_diff.mean()) ** 2).sum()),
        }
    )
    return sums


def depth_scores(sums):
    """The metrics of `DEPTH_KEYS` from (summed) `depth_sums`; NaN when n = 0."""
    n = sums['n']
    if not n:
        return {key: float('nan') for key in DEPTH_KEYS}
    return {
        'pp_mvn': sums['pp_mvn'] / n,
        'delta1': sums['delta1'] / n,
        'delta2': sums['delta2'] / n,
        'delta3': sums['delta3'] / n,
        'ard': sums['abs_rel'] / n,
        'srd': sums['sq_rel'] / n,
        'rmse': float(np.sqrt(sums['sq'] / n)),
        'rmse_log': float(np.sqrt(sums['log_sq'] / n)),
        'sie': float(np.sqrt(sums['log_centred_sq'] / n)),
        'sie_table3': sums['log_table3_sq'] / n,
    }


class DepthMeter:
    """Depth metrics of Table 3, pooled over the set's valid pixels and per image."""

    def __init__(self, min_depth=None, max_depth=None):
        self.min_depth, self.max_depth = min_depth, max_depth
        self._total = {}
        self._per_image = []
        self.images_without_valid_depth = 0

    def update(self, pred, gt):
        """Adds one image; returns its own scores (NaN if it has no valid pixel)."""
        sums = depth_sums(pred, gt, self.min_depth, self.max_depth)
        if not sums['n']:
            self.images_without_valid_depth += 1
            return depth_scores(sums)
        for key, value in sums.items():
            self._total[key] = self._total.get(key, 0) + value
        scores = depth_scores(sums)
        self._per_image.append([scores[key] for key in DEPTH_KEYS])
        return scores

    def scores(self):
        """{'pooled': ..., 'per_image': ..., 'per_image_std': ..., 'images': ..., 'pixels': ...}."""
        if not self._per_image:
            nan = depth_scores({'n': 0})
            return {
                'pooled': nan,
                'per_image': nan,
                'per_image_std': nan,
                'images': 0,
                'pixels': 0,
                'images_without_valid_depth': self.images_without_valid_depth,
            }
        table = np.array(self._per_image)
        return {
            'pooled': depth_scores(self._total),
            'per_image': dict(zip(DEPTH_KEYS, table.mean(0).tolist())),
            'per_image_std': dict(zip(DEPTH_KEYS, table.std(0).tolist())),
            'images': len(self._per_image),
            'pixels': self._total['n'],
            'images_without_valid_depth': self.images_without_valid_depth,
        }


def official_cityscapes_scores(prediction_dir, gt_files):
    """Runs the official `cityscapesscripts` pixel-level scorer, unchanged, on
    full-resolution labelId PNGs in `prediction_dir` (matched to each
    `<city>_<seq>_<frame>_gtFine_labelIds.png` by its own `getPrediction`).

    Returns its dict: `averageScoreClasses` is its mIoU over the 19 classes,
    `classScores` the per-class IoU. The instance-weighted nIoU is switched off: it
    needs `*_instanceIds.png` and calls `np.in1d`, which numpy 2.4 removed.
    """
    import contextlib  # noqa: PLC0415
    import copy  # noqa: PLC0415
    import io  # noqa: PLC0415

    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as scorer  # noqa: PLC0415

    args = copy.copy(scorer.args)
    args.predictionPath, args.predictionWalk = str(prediction_dir), None
    args.evalInstLevelScore = args.evalPixelAccuracy = args.JSONOutput = False
    args.quiet, args.colorized, args.bold, args.nocol = True, False, '', ''
    output = io.StringIO()
    try:
        with contextlib.redirect_stdout(output):
            predictions = [scorer.getPrediction(args, str(gt)) for gt in gt_files]
            return scorer.evaluateImgLists(predictions, [str(gt) for gt in gt_files], args)
    except SystemExit:
        raise RuntimeError('official Cityscapes scorer failed: %s' % output.getvalue().strip()) from None
