"""The run's report: the paper's table for the dataset with this run's numbers beside it.

    python -m tools.report RUN_DIR [--compare OTHER_RUN_DIR ...] [--data DIR]

rewrites RUN_DIR's report.md, report.json and figures, adding other runs' numbers and
prediction columns (e.g. DeepLab-ASPP beside A2, as the paper's Figs. 5-8 do).

Segmentation: Tables 2 / 5 / 7 (G, C, mIoU in %). Depth: Tables 4 / 6 / 8, in each table's
own unit (Table 6 prints the delta ratios in %). The paper's numbers are copied below as
printed (strings, so that 58.1 stays 58.1); "printed after L<n>" cites the paper text line the table follows.
"""
import argparse
import collections
import json
import math
import os
import sys
from pathlib import Path

SegTable = collections.namedtuple('SegTable', 'title where rows')
DepthTable = collections.namedtuple('DepthTable', 'title where percent columns values')

#: Our net names -> the paper's row / column names.
PAPER_NAMES = {'a2': 'HybridNet A2', 'a1': 'HybridNet A1', 'deeplab_aspp': 'DeepLab-ASPP', 'depthnet': 'DepthNet'}

#: Depth rows in the order of Tables 4 and 6: (key, label, higher is better).
DEPTH_ROWS = (('pp_mvn', 'γ < 1.25 (MVN)', True), ('delta1', 'γ < 1.25', True),
              ('delta2', 'γ < 1.25²', True), ('delta3', 'γ < 1.25³', True),
              ('ard', 'ARD', False), ('srd', 'SRD', False), ('rmse', 'RMSE-linear', False),
              ('rmse_log', 'RMSE-log', False), ('sie', 'SIE', False))
#: Our extra row: Table 3's SIE formula as printed (sign slip, no root); the paper's rows have none.
SIE_TABLE3_ROW = ('sie_table3', 'SIE, Table 3 formula as printed', False)

_ = '-'  # the paper's "-": no number given
PAPER_SEGMENTATION = {
    'cityscapes': SegTable('Table 2', 'printed after L407', [
        ('HybridNet A2', 'a2', ('93.26', '79.47', '66.61')),
        ('HybridNet A1', 'a1', ('89.31', '77.22', '58.1')),
        ('PLEDL [25]', None, (_, _, '64.3')),
        ('DeepLab-ASPP [16]', 'deeplab_aspp', ('90.99', '74.88', '58.02')),
        ('FCN [11]', None, (_, _, '65.3')),
        ('SegNet [13]', None, (_, _, '57.0')),
        ('GoogLeNetFCN [26]', None, (_, _, '63.0'))]),
    'sunrgbd': SegTable('Table 5', 'printed after L504', [
        ('HybridNet A2', 'a2', ('71.63', '46.20', '34.30')),
        ('HybridNet A1', 'a1', ('69.34', '38.64', '28.68')),
        ('DeepLab-ASPP [16]', 'deeplab_aspp', ('73.87', '40.09', '29.22')),
        ('SegNet [13]', None, ('72.63', '44.76', '31.84')),
        ('DeepLab-LargeFOV [16]', None, ('71.90', '42.21', '32.08')),
        ('DeepLab-LargeFOV-denseCRF [16]', None, ('66.96', '33.06', '24.13')),
        ('FCN (learned deconv) [11]', None, ('68.18', '38.41', '27.39')),
        ('DeconvNet [38]', None, ('66.13', '32.28', '22.57'))]),
    'nyuv2': SegTable('Table 7', 'printed after L546', [
        ('HybridNet A2', 'a2', ('64.7', '48.4', '36.5')),
        ('Eigen [21]', None, ('65.6', '45.1', '34.1'))]),
}
PAPER_DEPTH = {
    'cityscapes': DepthTable('Table 4', 'printed after L436', False,
                             [('HybridNet A2', 'a2'), ('HybridNet A1', 'a1'), ('DepthNet [19]', 'depthnet')], {
                                 'pp_mvn': ('0.7483', '0.6834', '0.7248'), 'delta1': ('0.5968', '0.5037', '0.6048'),
                                 'delta2': ('0.8221', '0.8172', '0.8187'), 'delta3': ('0.9292', '0.9194', '0.9152'),
                                 'ard': ('0.24', '0.2879', '0.23'), 'srd': ('4.27', '4.35', '4.43'),
                                 'rmse': ('12.09', '12.67', '12.35'), 'rmse_log': ('0.4343', '0.3407', '0.4340'),
                                 'sie': ('0.19', '0.2', '0.25')}),
    'sunrgbd': DepthTable('Table 6', 'printed after L512', True,
                          [('HybridNet A2', 'a2'), ('HybridNet A1', 'a1'), ('DepthNet', 'depthnet')], {
                              'pp_mvn': ('89.63', '62.81', '83.59'), 'delta1': ('61.33', '38.63', '57.73'),
                              'delta2': ('89.17', '69.38', '87.42'), 'delta3': ('97.43', '86.28', '97.08'),
                              'ard': ('0.202', '0.301', '0.218'), 'srd': ('0.186', '3.02', '0.204'),
                              'rmse': ('0.682', '8.35', '0.715'), 'rmse_log': ('0.25', '0.432', '0.27'),
                              'sie': ('0.122', '0.316', '0.126')}),
    'nyuv2': DepthTable('Table 8', 'printed after L546', False, [('HybridNet A2', 'a2'), ('Eigen [21]', None)], {
        'pp_mvn': ('0.7293', _), 'sie': ('0.1571', '0.171'), 'delta1': ('0.5006', '0.769'),
        'delta2': ('0.8013', '0.95'), 'delta3': ('0.9422', '0.98'), 'ard': ('0.2787', '0.158'),
        'srd': ('0.3236', '0.121'), 'rmse': ('0.9423', '0.64'), 'rmse_log': ('0.3219', '0.214')}),
}
RATIO_KEYS = ('pp_mvn', 'delta1', 'delta2', 'delta3')


class ReportError(Exception):
    """A run directory that cannot be read or compared."""


# --- runs -------------------------------------------------------------------------------

def load_run(path):
    """{'dir': Path, 'results': report.json} of a finished run directory."""
    path = Path(path)
    try:
        with open(path / 'report.json', encoding='utf-8') as f:
            results = json.load(f)
    except FileNotFoundError:
        raise ReportError('%s is not a finished evaluation run: no report.json' % path) from None
    except ValueError as err:
        raise ReportError('%s: malformed report.json (%s)' % (path, err)) from None
    return {'dir': path, 'results': results}


def check_comparable(run, dataset, names):
    """ReportError unless `run` is on `dataset` and kept predictions of the images `names`."""
    results = run['results']
    if results.get('dataset') != dataset:
        raise ReportError('cannot compare with %s: it evaluated %s, not %s' % (run['dir'], results.get('dataset'), dataset))
    missing = [name for name in names if not (run['dir'] / 'predictions' / ('%s.npz' % name)).is_file()]
    if missing:
        raise ReportError('cannot compare with %s: it kept no prediction of %s (evaluate it on the same '
                          'split with the same --figures)' % (run['dir'], ', '.join(missing)))


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
            rows.append(['compared: %s, `%s`' % (run_label(run['results']), run['dir'])]
                        + _seg_cells(run['results']['segmentation']))
    for name, key, values in table.rows:
        marker = ' ← same net' if key == results['net'] else ''
        rows.append(['%s (paper)%s' % (name, marker)] + list(values))
    lines = ['## Segmentation: paper %s (%s)' % (table.title, table.where), '']
    lines += _table(['', 'G', 'C', 'mIoU'], rows)
    lines += ['', 'In %%. One confusion matrix over %d images and %d labelled pixels: G = correct / all, '
              'C = mean over classes of per-class accuracy, mIoU = mean over classes of IoU '
              '(paper L388-393). Classes absent from both ground truth and prediction are left out '
              'of the means.' % (scores['images'], scores['pixels'])]
    official = results.get('official_cityscapes')
    if official:
        lines += ['', 'Official `cityscapesscripts` scorer on the written labelId PNGs: mIoU %s %% '
                  '(this evaluator: %s %%).' % (_fmt(official['mIoU'], 2, 100), _fmt(scores['mIoU'], 2, 100))]
    lines += ['', '### Per-class IoU', '']
    header = ['class', 'IoU %', 'accuracy %', 'labelled pixels']
    header += ['IoU % ' + run['results']['net'] for run in compare_runs if 'segmentation' in run['results']]
    gt_pixels = [sum(row) for row in scores['confusion']]
    rows = []
    for i, name in enumerate(results['class_names']):
        row = [name, _fmt(scores['iou'][i], 2, 100), _fmt(scores['accuracy'][i], 2, 100), str(gt_pixels[i])]
        row += [_fmt(run['results']['segmentation']['iou'][i], 2, 100)
                for run in compare_runs if 'segmentation' in run['results']]
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
        row = ['%s (%s)' % (label, 'higher is better' if higher else 'lower is better'),
               '**%s**' % _depth_cell(scores['per_image'][key], key, table.percent),
               _depth_cell(scores['pooled'][key], key, table.percent)]
        row += [_depth_cell(run['results']['depth']['per_image'][key], key, table.percent) for run in compared]
        row += list(table.values.get(key, ('-',) * len(table.columns)))
        rows.append(row)
    lines = ['## Depth: paper %s (%s)' % (table.title, table.where), '']
    lines += _table(header, rows)
    lines += ['', 'Over %d images with %d valid ground-truth pixels%s; %s. Depth in metres, natural logs. '
              '"mean over images": each metric per image, then averaged; "pooled": over all valid '
              'pixels of the set (MVN and the SIE mean stay per image). SIE = Eigen et al.\'s '
              'sqrt(mean(g²) - mean(g)²), g = ln d - ln d*; PP-MVN: the γ < 1.25 test after '
              'aligning the prediction\'s mean and spread to the ground truth\'s (docs/FIDELITY.md).'
              % (scores['images'], scores['pixels'],
                 '' if results.get('max_depth') is None else ' (ground truth up to %g m)' % results['max_depth'],
                 'ratios in %' if table.percent else 'ratios as fractions, as the paper\'s table prints them')]
    if scores.get('images_without_valid_depth'):
        lines += ['', '%d images had no valid depth pixel and are left out.' % scores['images_without_valid_depth']]
    return lines


def notes(results):
    out = []
    if results.get('random_weights'):
        out.append('**Random weights**: this run evaluates an untrained net (a smoke test); '
                   'its numbers say nothing about the paper.')
    if results['images'] < results['images_in_split']:
        out.append('**Partial set**: %d of the %d images of the split (--limit).'
                   % (results['images'], results['images_in_split']))
    if results['dataset'] == 'cityscapes' and results['split'] == 'val':
        out.append('The paper evaluates Cityscapes on val + test, 2025 images (L345-347); test labels are '
                   'not public, so segmentation is scored on val (500).')
    return out


def render_markdown(results, compare_runs=()):
    mode = ('tiles of 321 x 321 with minimum overlap, %d per forward (paper L349-357)' % results['batch_size']
            if results['mode'] == 'tiles' else
            'resized to 321 x 321 (%s), prediction resized back (paper L456-461)' % results['resize_interpolation'])
    lines = ['# Evaluation: %s on %s/%s' % (run_label(results), results['dataset'], results['split']), '']
    lines += _table(['', ''], [
        ['weights', '`%s`' % results['weights'] if results['weights'] else 'random (deploy net fillers)'],
        ['deploy net', '`%s`' % results['deploy']], ['database', '`%s`' % results['database']],
        ['images', '%d of %d' % (results['images'], results['images_in_split'])],
        ['inference', mode],
        ['time', '%.1f s on %s, %.3f images/s' % (results['seconds'], results['device'], results['images_per_second'])],
        ['created', results['created']]])
    for note in notes(results):
        lines += ['', '> ' + note]
    if 'segmentation' in results:
        lines += [''] + segmentation_section(results, compare_runs)
    if 'depth' in results:
        lines += [''] + depth_section(results, compare_runs)
    if results.get('figures'):
        lines += ['', '## Figures', '']
        lines += ['![%s](%s)' % (Path(path).stem, path) for path in results['figures']]
    lines += ['', '## Files', '', '- `per_image.csv`: every metric of every image',
              '- `predictions/`: the figure images\' predictions (for `--compare` by other runs)']
    if 'segmentation' in results and results['dataset'] == 'cityscapes':
        lines += ['- `cityscapes_results/`: full-resolution labelId PNGs in the official naming '
                  '(`cityscapesscripts` scores them unchanged)']
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
    lines = ['%s on %s/%s, %d images, %.3f images/s' % (run_label(results), results['dataset'],
                                                        results['split'], results['images'],
                                                        results['images_per_second'])]
    paper = {key: values for _, key, values in PAPER_SEGMENTATION[results['dataset']].rows if key}
    if 'segmentation' in results:
        ours = _seg_cells(results['segmentation'])
        theirs = list(paper.get(results['net'], ('-',) * 3))
        lines.append('segmentation %%: G %s  C %s  mIoU %s   (paper: G %s  C %s  mIoU %s)' % tuple(ours + theirs))
    if 'depth' in results:
        depth = results['depth']['per_image']
        lines.append('depth (mean over images): ' + '  '.join(
            '%s %s' % (label, _fmt(depth[key], 4)) for key, label, _ in DEPTH_ROWS))
    for note in notes(results):
        lines.append('note: ' + note.replace('**', ''))
    return '\n'.join(lines)


# --- command line -----------------------------------------------------------------------------

def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m tools.report', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('run_dir', help='a finished evaluation run directory')
    parser.add_argument('--compare', action='append', default=[], metavar='RUN_DIR')
    parser.add_argument('--data', help='database directory, if it moved since the run')
    args = parser.parse_args(argv)
    from tools import figures
    try:
        run = load_run(args.run_dir)
        results = run['results']
        compare_runs = [load_run(path) for path in args.compare]
        for other in compare_runs:
            check_comparable(other, results['dataset'], results['figure_images'])
        database = figures.open_figure_database(args.data or results['database'], results['dataset'])
        results['figures'] = figures.write_run_figures(run['dir'], results, database, compare_runs)
        write_report(run['dir'], results, compare_runs)
    except (ReportError, figures.FigureError) as err:
        print('error: %s' % err, file=sys.stderr)
        return 2
    print('rewrote %s' % os.path.join(args.run_dir, 'report.md'))
    return 0


if __name__ == '__main__':
    sys.exit(main())
