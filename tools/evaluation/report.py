"""The run's report: the paper's table for the dataset (`tools.evaluation.paper`) with this
run's numbers beside it, and other runs' (`--compare`); report.md and report.json.
"""

import json
import math
from pathlib import Path

from tools.core import ToolError
from tools.evaluation import compare
from tools.evaluation.paper import DEPTH_ROWS, PAPER_DEPTH, PAPER_NAMES, PAPER_SEGMENTATION, RATIO_KEYS, SIE_TABLE3_ROW

# --- runs -------------------------------------------------------------------------------


def load_run(path):
    """{'dir': Path, 'results': report.json} of a finished run directory."""
    path = Path(path)
    try:
        with open(path / 'report.json', encoding='utf-8') as f:
            results = json.load(f)
    except FileNotFoundError:
        raise ToolError('%s is not a finished evaluation run: no report.json' % path) from None
    except ValueError as err:
        raise ToolError('%s: malformed report.json (%s)' % (path, err)) from None
    return {'dir': path, 'results': results}


def check_comparable(run, dataset, names):
    """ToolError unless `run` is on `dataset` and kept predictions of the images `names`."""
    results = run['results']
    if results.get('dataset') != dataset:
        raise ToolError(
            'cannot compare with %s: it evaluated %s, not %s' % (run['dir'], results.get('dataset'), dataset)
        )
    missing = [name for name in names if not (run['dir'] / 'predictions' / ('%s.npz' % name)).is_file()]
    if missing:
        raise ToolError(
            'cannot compare with %s: it kept no prediction of %s (evaluate it on the same '
            'split with the same --figures)' % (run['dir'], ', '.join(missing))
        )


def run_label(results):
    return '%s (%s)' % (PAPER_NAMES.get(results['net'], results['net']), results['net'])


# --- formatting ---------------------------------------------------------------------------


def _fmt(value, digits, scale=1):
    """value * scale with `digits` decimals; '-' for None / NaN (the paper's "-", JSON's null)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return '-'
    return '%.*f' % (digits, value * scale)


def _table(header, rows):
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    lines += ['| ' + ' | '.join(row) + ' |' for row in rows]
    return lines


def _seg_cells(scores):
    return [_fmt(scores[key], 2, 100) for key in ('G', 'C', 'mIoU')]


def segmentation_section(results, compare_runs):
    dataset, scores = results['dataset'], results['segmentation']
    table = PAPER_SEGMENTATION[dataset]
    rows = [['**this run: %s**' % run_label(results)] + ['**%s**' % c for c in _seg_cells(scores)]]
    for run in compare_runs:
        if 'segmentation' in run['results']:
            rows.append(
                ['compared: %s, `%s`' % (run_label(run['results']), run['dir'])]
                + _seg_cells(run['results']['segmentation'])
            )
    for name, key, values in table.rows:
        marker = ' ← same net' if key == results['net'] else ''
        rows.append(['%s (paper)%s' % (name, marker)] + list(values))
    lines = ['## Segmentation: paper %s (%s)' % (table.title, table.where), '']
    lines += _table(['', 'G', 'C', 'mIoU'], rows)
    lines += [
        '',
        'In %%. One confusion matrix over %d images and %d labelled pixels: G = correct / all, '
        'C = mean over classes of per-class accuracy, mIoU = mean over classes of IoU '
        '(paper L388-393). Classes absent from both ground truth and prediction are left out '
        'of the means.' % (scores['images'], scores['pixels']),
    ]
    official = results.get('official_cityscapes')
    if official:
        lines += [
            '',
            'Official `cityscapesscripts` scorer on the written labelId PNGs: mIoU %s %% '
            '(this evaluator: %s %%).' % (_fmt(official['mIoU'], 2, 100), _fmt(scores['mIoU'], 2, 100)),
        ]
    lines += ['', '### Per-class IoU', '']
    header = ['class', 'IoU %', 'accuracy %', 'labelled pixels']
    header += ['IoU % ' + run['results']['net'] for run in compare_runs if 'segmentation' in run['results']]
    gt_pixels = [sum(row) for row in scores['confusion']]
    rows = []
    for i, name in enumerate(results['class_names']):
        row = [name, _fmt(scores['iou'][i], 2, 100), _fmt(scores['accuracy'][i], 2, 100), str(gt_pixels[i])]
        row += [
            _fmt(run['results']['segmentation']['iou'][i], 2, 100)
            for run in compare_runs
            if 'segmentation' in run['results']
        ]
        rows.append(row)
    return lines + _table(header, rows)


def _depth_cell(value, key, percent):
    if key in RATIO_KEYS and percent:
        return _fmt(value, 2, 100)
    return _fmt(value, 4)


def depth_section(results, compare_runs):
    table = PAPER_DEPTH[results['dataset']]
    scores = results['depth']
    header = ['metric', '**this run**, mean over images', 'this run, pooled over pixels']
    compared = [run for run in compare_runs if 'depth' in run['results']]
    header += ['compared: %s, mean over images' % run_label(run['results']) for run in compared]
    header += ['%s (paper)%s' % (name, ' ← same net' if key == results['net'] else '') for name, key in table.columns]
    rows = []
    for key, label, higher in DEPTH_ROWS + (SIE_TABLE3_ROW,):
        row = [
            '%s (%s)' % (label, 'higher is better' if higher else 'lower is better'),
            '**%s**' % _depth_cell(scores['per_image'][key], key, table.percent),
            _depth_cell(scores['pooled'][key], key, table.percent),
        ]
        row += [_depth_cell(run['results']['depth']['per_image'][key], key, table.percent) for run in compared]
        row += list(table.values.get(key, ('-',) * len(table.columns)))
        rows.append(row)
    lines = ['## Depth: paper %s (%s)' % (table.title, table.where), '']
    lines += _table(header, rows)
    lines += [
        '',
        'Over %d images with %d valid ground-truth pixels%s; %s. Depth in metres, natural logs. '
        '"mean over images": each metric per image, then averaged; "pooled": over all valid '
        "pixels of the set (MVN and the SIE mean stay per image). SIE = Eigen et al.'s "
        'sqrt(mean(g²) - mean(g)²), g = ln d - ln d*; PP-MVN: the γ < 1.25 test after '
        "aligning the prediction's mean and spread to the ground truth's (docs/FIDELITY.md)."
        % (
            scores['images'],
            scores['pixels'],
            '' if results.get('max_depth') is None else ' (ground truth up to %g m)' % results['max_depth'],
            'ratios in %' if table.percent else "ratios as fractions, as the paper's table prints them",
        ),
    ]
    if scores.get('images_without_valid_depth'):
        lines += ['', '%d images had no valid depth pixel and are left out.' % scores['images_without_valid_depth']]
    return lines


def notes(results):
    out = []
    if results.get('random_weights'):
        out.append(
            '**Random weights**: this run evaluates an untrained net (a smoke test); '
            'its numbers say nothing about the paper.'
        )
    if results['images'] < results['images_in_split']:
        out.append(
            '**Partial set**: %d of the %d images of the split (--limit).'
            % (results['images'], results['images_in_split'])
        )
    if results['dataset'] == 'cityscapes' and results['split'] == 'val':
        out.append(
            'The paper evaluates Cityscapes on val + test, 2025 images (L345-347); test labels are '
            'not public, so segmentation is scored on val (500).'
        )
    return out


def _engine(backend):
    """The forward's engine (runs before engines were recorded: Caffe)."""
    if not backend:
        return 'caffe'
    return '%s %s, %d threads' % (backend['name'], backend['version'], backend['threads'])


def render_markdown(results, compare_runs=()):
    mode = (
        'tiles of 321 x 321 with minimum overlap, %d per forward (paper L349-357)' % results['batch_size']
        if results['mode'] == 'tiles'
        else 'resized to 321 x 321 (%s), prediction resized back (paper L456-461)' % results['resize_interpolation']
    )
    lines = ['# Evaluation: %s on %s/%s' % (run_label(results), results['dataset'], results['split']), '']
    lines += _table(
        ['', ''],
        [
            ['weights', '`%s`' % results['weights'] if results['weights'] else 'random (deploy net fillers)'],
            ['deploy net', '`%s`' % results['deploy']],
            ['database', '`%s`' % results['database']],
            ['images', '%d of %d' % (results['images'], results['images_in_split'])],
            ['inference', mode],
            [
                'time',
                '%.1f s on %s, %.3f images/s' % (results['seconds'], results['device'], results['images_per_second']),
            ],
            ['engine', _engine(results.get('backend'))],
            ['created', results['created']],
        ],
    )
    for note in notes(results):
        lines += ['', '> ' + note]
    if 'segmentation' in results:
        lines += [''] + segmentation_section(results, compare_runs)
    if 'depth' in results:
        lines += [''] + depth_section(results, compare_runs)
    if results.get('backend_comparison'):
        lines += [''] + compare.markdown(results)
    if results.get('figures'):
        lines += ['', '## Figures', '']
        lines += ['![%s](%s)' % (Path(path).stem, path) for path in results['figures']]
    lines += [
        '',
        '## Files',
        '',
        '- `per_image.csv`: every metric of every image',
        "- `predictions/`: the figure images' predictions (for `--compare` by other runs)",
    ]
    if 'segmentation' in results and results['dataset'] == 'cityscapes':
        lines += [
            '- `cityscapes_results/`: full-resolution labelId PNGs in the official naming '
            '(`cityscapesscripts` scores them unchanged)'
        ]
    return '\n'.join(lines) + '\n'


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_report(run_dir, results, compare_runs=()):
    """report.md and report.json (NaN written as null) in `run_dir`."""
    run_dir = Path(run_dir)
    results['compared_runs'] = [str(run['dir']) for run in compare_runs]
    (run_dir / 'report.md').write_text(render_markdown(results, compare_runs), encoding='utf-8')
    with open(run_dir / 'report.json', 'w', encoding='utf-8') as f:
        json.dump(_json_safe(results), f, indent=1)


def summary(results):
    """A few lines for the console."""
    lines = [
        '%s on %s/%s, %d images, %.3f images/s'
        % (run_label(results), results['dataset'], results['split'], results['images'], results['images_per_second'])
    ]
    paper = {key: values for _, key, values in PAPER_SEGMENTATION[results['dataset']].rows if key}
    if 'segmentation' in results:
        ours = _seg_cells(results['segmentation'])
        theirs = list(paper.get(results['net'], ('-',) * 3))
        lines.append('segmentation %%: G %s  C %s  mIoU %s   (paper: G %s  C %s  mIoU %s)' % tuple(ours + theirs))
    if 'depth' in results:
        depth = results['depth']['per_image']
        lines.append(
            'depth (mean over images): '
            + '  '.join('%s %s' % (label, _fmt(depth[key], 4)) for key, label, _ in DEPTH_ROWS)
        )
    lines += compare.summary_lines(results)
    for note in notes(results):
        lines.append('note: ' + note.replace('**', ''))
    return '\n'.join(lines)
