"""The engines of a run and their metric-level parity (`python -m tools.evaluate --backend A --compare-backend B`).

`open_engines` builds the run's predict(image) on its engine (`tools.evaluation.backends`)
and, when asked, a `Comparison` with a second engine on the same images.

`Comparison.wrap(predict)` runs the compared engine's predictor on every image the run's
engine predicts; `add(record)` scores it against the ground truth (its own meters) and counts
how far the two predictions differ: per-pixel argmax agreement, the largest depth difference.
`results(run)` gives the run's `backend_comparison`: every metric of both engines, their
difference, and whether they are equal at the precision the report prints them (segmentation
in % with 2 decimals, depth with 4); `markdown` and `summary_lines` render it.
"""

import math
import time

import numpy as np

from netgen import config
from tools.evaluation import backends
from tools.evaluation.metrics import DEPTH_KEYS, DepthMeter, SegmentationMeter
from tools.evaluation.predictor import Predictor

SEG_KEYS = ('G', 'C', 'mIoU')


def printed(value, scale, digits):
    """The value as the report prints it ('-' for None / NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return '-'
    return '%.*f' % (digits, value * scale)


class Comparison:
    """The compared engine's predictions and scores, image by image, beside the run's."""

    def __init__(self, predict_other, backend, num_classes, ignore_label, max_depth):
        self.predict_other, self.backend = predict_other, backend
        self.seg = SegmentationMeter(num_classes, ignore_label)
        self.depth = DepthMeter(max_depth=max_depth)
        self.pixels = self.agreeing = 0
        self.depth_difference = 0.0
        self.seconds = {'run': 0.0, 'compared': 0.0}
        self.last = None

    def wrap(self, predict):
        """predict(image) of the run, also running the compared engine (each one timed)."""

        def both(image):
            started = time.perf_counter()
            label, depth = predict(image)
            middle = time.perf_counter()
            other_label, other_depth = self.predict_other(image)
            self.seconds['run'] += middle - started
            self.seconds['compared'] += time.perf_counter() - middle
            self.last = (label, depth, other_label, other_depth)
            return label, depth

        return both

    def add(self, record):
        """Scores the compared engine's prediction of the last image against `record`'s truth."""
        label, depth, other_label, other_depth = self.last
        if label is not None:
            self.pixels += label.size
            self.agreeing += int(np.count_nonzero(label == other_label))
            self.seg.update(other_label, record.label)
        if depth is not None:
            self.depth_difference = max(self.depth_difference, float(np.abs(depth - other_depth).max()))
            self.depth.update(other_depth, record.depth)

    def _rows(self, run):
        rows = []
        if 'segmentation' in run:
            ours = self.seg.scores()
            rows += [('segmentation ' + k, run['segmentation'][k], ours[k], 100, 2) for k in SEG_KEYS]
        if 'depth' in run:
            ours = self.depth.scores()
            for view in ('per_image', 'pooled'):
                rows += [('depth %s (%s)' % (k, view), run['depth'][view][k], ours[view][k], 1, 4) for k in DEPTH_KEYS]
        return [
            {
                'metric': name,
                'run': a,
                'compared': b,
                'difference': a - b,
                'equal_as_printed': printed(a, scale, digits) == printed(b, scale, digits),
                'printed': [printed(a, scale, digits), printed(b, scale, digits)],
            }
            for name, a, b, scale, digits in rows
        ]

    def results(self, run):
        """The run's `backend_comparison` (run: the results dict with the run's scores)."""
        rows = self._rows(run)
        out = {
            'backend': self.backend,
            'metrics': rows,
            'identical_at_printed_precision': all(row['equal_as_printed'] for row in rows),
            'seconds': dict(self.seconds),
        }
        if 'segmentation' in run:
            out.update(pixels=self.pixels, argmax_agreement=self.agreeing / max(self.pixels, 1))
            out['pixels_differing'] = self.pixels - self.agreeing
        if 'depth' in run:
            out['depth_max_abs_difference'] = self.depth_difference
        return out


def _verdict(comparison):
    return 'identical' if comparison['identical_at_printed_precision'] else 'DIFFERENT'


def markdown(results):
    """The report's section on the compared engine."""
    comparison, ours = results['backend_comparison'], results['backend']
    other = comparison['backend']
    lines = [
        '## Engines compared: %s %s vs %s %s' % (ours['name'], ours['version'], other['name'], other['version']),
        '',
        'Both engines forwarded the same tiles of the same images; every metric at the precision '
        'this report prints it: **%s**.' % _verdict(comparison),
        '',
        '| metric | %s (this run) | %s | difference | equal as printed |' % (ours['name'], other['name']),
        '|---|---|---|---|---|',
    ]
    for row in comparison['metrics']:
        difference = '-' if not math.isfinite(row['difference']) else '%.2g' % row['difference']
        lines.append(
            '| %s | %s | %s | %s | %s |'
            % (
                row['metric'],
                row['printed'][0],
                row['printed'][1],
                difference,
                'yes' if row['equal_as_printed'] else '**no**',
            )
        )
    lines += [''] + ['- ' + line for line in _facts(comparison, ours)]
    return lines


def _facts(comparison, ours):
    facts = []
    if 'argmax_agreement' in comparison:
        facts.append(
            'per-pixel argmax agreement: %.6f %% (%d of %d pixels differ)'
            % (100 * comparison['argmax_agreement'], comparison['pixels_differing'], comparison['pixels'])
        )
    if 'depth_max_abs_difference' in comparison:
        facts.append('largest depth difference: %.3g m' % comparison['depth_max_abs_difference'])
    seconds = comparison['seconds']
    facts.append(
        'prediction time: %s %.1f s, %s %.1f s (%s threads each)'
        % (ours['name'], seconds['run'], comparison['backend']['name'], seconds['compared'], ours['threads'])
    )
    return facts


def summary_lines(results):
    """A few console lines on the compared engine."""
    comparison = results.get('backend_comparison')
    if not comparison:
        return []
    differing = [row['metric'] for row in comparison['metrics'] if not row['equal_as_printed']]
    lines = [
        'compared with %s %s: metrics %s at printed precision%s'
        % (
            comparison['backend']['name'],
            comparison['backend']['version'],
            _verdict(comparison).lower(),
            ' (differ: %s)' % ', '.join(differing) if differing else '',
        )
    ]
    return lines + ['  ' + fact for fact in _facts(comparison, results['backend'])]


class Engines:
    """The run's predict(image), its backend, and the comparison (None without --compare-backend)."""

    def __init__(self, predict, backend, comparison):
        self.predict, self.backend, self.comparison = predict, backend, comparison

    def results(self, run):
        """What the report adds to the run's results: 'backend', 'backend_comparison'."""
        out = {'backend': backends.describe(self.backend)}
        if self.comparison is not None:
            out['backend_comparison'] = self.comparison.results(run)
        return out


def open_engines(net, deploy, tasks, mode, batch_size, interpolation, options, dataset, max_depth, gpu=None):
    """Engines of a run: `options` (backends.EngineOptions, None: Caffe) on the weights of `net`."""
    options = options or backends.EngineOptions()
    backends.set_threads(options.threads)

    def predictor(name):
        backend = backends.open_backend(name, net, deploy, options.threads, options.exporter, gpu)
        made = Predictor(backend, tasks, batch_size, resize_interpolation=interpolation)
        return backend, made.predict_tiled if mode == 'tiles' else made.predict_resized

    backend, predict = predictor(options.backend)
    if options.compare is None:
        return Engines(predict, backend, None)
    other, predict_other = predictor(options.compare)
    comparison = Comparison(
        predict_other, backends.describe(other), config.NUM_CLASSES[dataset], config.IGNORE_LABEL, max_depth
    )
    return Engines(comparison.wrap(predict), backend, comparison)
