"""Evaluate a deploy net on a converted split: the paper's inference, metrics, report, figures.

Inference (paper L349-357, L456-461; `tools.evaluation.predictor`):
- `tiles` (Cityscapes' default): the image is covered by 321 x 321 tiles with the minimum
  number and overlap (`tools.evaluation.tiling`), forwarded in batches; in overlaps the label
  of the more confident tile wins and depth is averaged.
- `resize` (SUN-RGBD's and NYUv2's default): the image is resized to 321 x 321, predicted,
  and the prediction brought back to the ground truth's size.
Every choice the paper leaves open is in docs/FIDELITY.md ("Evaluation").

The run directory (written under a temporary name, renamed when complete) holds
report.md, report.json, per_image.csv, figures/, predictions/ (the figure images'
predictions, for `--compare` by later runs) and, for Cityscapes, cityscapes_results/: full-
resolution labelId PNGs named as the official scorer expects.
`python -m tools.evaluate` is the command line.
"""

import csv
import math
import os
import shutil
import time
from pathlib import Path

from tools.core import REPO, ToolError, deploy_prototxt, quiet_glog

quiet_glog()

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from tqdm import tqdm  # noqa: E402

from data_prep.cityscapes import CLASS_NAMES as CITYSCAPES_CLASS_NAMES  # noqa: E402
from data_prep.cityscapes import TRAIN_ID_TO_LABEL_ID  # noqa: E402
from data_prep.database import open_database  # noqa: E402
from data_prep.errors import DataError  # noqa: E402
from netgen import config  # noqa: E402
from tools.evaluation import figures, report  # noqa: E402
from tools.evaluation.compare import open_engines  # noqa: E402
from tools.evaluation.metrics import DEPTH_KEYS, DepthMeter, SegmentationMeter, official_cityscapes_scores  # noqa: E402
from tools.evaluation.predictor import DEFAULT_BATCH, HEADS, load_net  # noqa: E402

#: Split evaluated by default (`netgen.config.TEST_SPLIT`): Cityscapes' test labels are not
#: public (paper L346-347 uses val + test; val is what can be scored).
DEFAULT_SPLIT = config.TEST_SPLIT
DEFAULT_MODE = {'cityscapes': 'tiles', 'sunrgbd': 'resize', 'nyuv2': 'resize'}
MODES = ('tiles', 'resize')
#: tqdm's bar with the rate always in images/s (tqdm inverts rates below 1 by default).
PROGRESS_FORMAT = '{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_noinv_fmt}]'


# --- the data -----------------------------------------------------------------------


def database_path(dataset, split, data=None):
    """One split's database: `data`/<split>, default data/<dataset>/<split>."""
    return Path(data or REPO / 'data' / dataset) / split


def open_split(dataset, split, database=None):
    """`database` (a path or an opened database), default data/<dataset>/<split>."""
    if database is None or isinstance(database, (str, Path)):
        path = database or database_path(dataset, split)
        try:
            database = open_database(path, dataset)
        except DataError as err:
            raise ToolError(str(err)) from None
    if len(database) == 0:
        raise ToolError('database %s is empty: nothing to evaluate' % getattr(database, 'path', database))
    return database


def record_name(record, index):
    """Cityscapes' <city>_<seq>_<frame> (official naming), else the image file's stem."""
    for source in record.sources:
        base = os.path.basename(source)
        if base.endswith('_leftImg8bit.png'):
            return base[: -len('_leftImg8bit.png')]
    if record.sources:
        return '%05d_%s' % (index, os.path.splitext(os.path.basename(record.sources[0]))[0])
    return '%05d' % index


def default_class_names(dataset):
    """Class names when the database has none: Cityscapes' official ones, else numbers."""
    if dataset == 'cityscapes':
        return list(CITYSCAPES_CLASS_NAMES)
    return ['class %d' % i for i in range(config.NUM_CLASSES[dataset])]


def save_cityscapes_prediction(path, train_ids):
    """A full-resolution labelId PNG as the official scorer reads it."""
    Image.fromarray(TRAIN_ID_TO_LABEL_ID[train_ids]).save(path)


def _gt_file(database, record):
    root = database.manifest.get('source_root', '') if hasattr(database, 'manifest') else ''
    for source in record.sources:
        if source.endswith('_gtFine_labelIds.png'):
            return os.path.join(root, source)
    return None


# --- the run ------------------------------------------------------------------------


def choose_tasks(net, net_name, tasks, database):
    """The tasks to evaluate: those asked for (default: every head the net has), each
    checked against the net's outputs and the split's ground truth."""
    available = [task for task, blob in HEADS.items() if blob in net.blobs]
    if not available:
        raise ToolError(
            'net %s has neither a %s output: not a deploy net of this project'
            % (net_name, ' nor a '.join(map(repr, HEADS.values())))
        )
    tasks = list(tasks or available)
    for task in tasks:
        if task not in HEADS:
            raise ToolError('unknown task %r: choose from %s' % (task, ', '.join(HEADS)))
        if task not in available:
            raise ToolError(
                'net %s has no %r output: it does not do %s (it does: %s)'
                % (net_name, HEADS[task], task, ', '.join(available))
            )
    if 'segmentation' in tasks and (getattr(database, 'labelled', True) is False or database[0].label is None):
        raise ToolError(
            'split %s has no segmentation labels (Cityscapes test labels are not public); '
            'evaluate depth only with --task depth, or another split' % getattr(database, 'path', 'of this database')
        )
    return tasks


def figure_indices(count, figures_wanted):
    if figures_wanted <= 0:
        return []
    return sorted(set(np.linspace(0, count - 1, min(figures_wanted, count)).round().astype(int).tolist()))


def _partial_dir(out_dir):
    return out_dir.with_name('.%s.partial-%d' % (out_dir.name, os.getpid()))


def default_max_depth(dataset, max_depth=None):
    """The depth bound of the metrics: `max_depth` metres, by default the one the nets train
    with (`netgen.config.MAX_DEPTH[dataset]`: deeper ground truth is invalid in both);
    inf: none (returns None)."""
    if max_depth is None:
        return config.MAX_DEPTH.get(dataset)
    if max_depth <= 0:
        raise ToolError('--max-depth must be positive (inf: no bound), got %g' % max_depth)
    return None if math.isinf(max_depth) else float(max_depth)


def _check_arguments(dataset, mode, batch_size, limit, official_scorer, tasks):
    if dataset not in config.NUM_CLASSES:
        raise ToolError('unknown dataset %r: choose from %s' % (dataset, ', '.join(config.NUM_CLASSES)))
    if mode not in MODES:
        raise ToolError("unknown mode %r: 'tiles' or 'resize'" % mode)
    if batch_size < 1:
        raise ToolError('batch size must be >= 1, not %d' % batch_size)
    if limit is not None and limit < 1:
        raise ToolError('--limit must be >= 1, not %d' % limit)
    if official_scorer and (dataset != 'cityscapes' or (tasks and 'segmentation' not in tasks)):
        raise ToolError('--official-scorer scores Cityscapes segmentation only')


def _check_classes(net, deploy, dataset, tasks):
    num_classes = config.NUM_CLASSES[dataset]
    if 'segmentation' in tasks and net.blobs['seg_prob'].data.shape[1] != num_classes:
        raise ToolError(
            'net %s outputs %d classes, %s has %d: wrong deploy net?'
            % (deploy, net.blobs['seg_prob'].data.shape[1], dataset, num_classes)
        )


class _Scoring:
    """The metrics of one run, image by image, and what the run directory keeps of them."""

    def __init__(self, dataset, tasks, max_depth, partial, database):
        self.tasks, self.partial, self.database = tasks, partial, database
        self.seg = SegmentationMeter(config.NUM_CLASSES[dataset], config.IGNORE_LABEL)
        self.depth = DepthMeter(max_depth=max_depth)
        self.official = dataset == 'cityscapes' and 'segmentation' in tasks
        self.rows, self.gt_files = [], []
        (partial / 'predictions').mkdir(parents=True)
        if self.official:
            (partial / 'cityscapes_results').mkdir()

    def add(self, index, name, record, label, depth, keep):
        row = {'index': index, 'name': name}
        try:
            if label is not None:
                row.update(_prefixed('seg_', self.seg.update(label, record.label), SEG_COLUMNS))
            if depth is not None:
                row.update(_prefixed('depth_', self.depth.update(depth, record.depth), DEPTH_KEYS))
        except ValueError as err:
            raise ToolError('record %d (%s): %s' % (index, name, err)) from None
        if self.official:
            save_cityscapes_prediction(self.partial / 'cityscapes_results' / ('%s_labelIds.png' % name), label)
            self.gt_files.append(_gt_file(self.database, record))
        self.rows.append(row)
        if keep:
            np.savez_compressed(
                self.partial / 'predictions' / ('%s.npz' % name),
                **{key: value for key, value in (('label', label), ('depth', depth)) if value is not None},
            )

    def scores(self):
        out = {}
        if 'segmentation' in self.tasks:
            out['segmentation'] = self.seg.scores()
        if 'depth' in self.tasks:
            out['depth'] = self.depth.scores()
        return out


def _predict_all(predict, database, count, tasks, names, scoring, desc, progress, comparison=None):
    with tqdm(
        total=count, unit=' images', desc=desc, disable=not progress, dynamic_ncols=True, bar_format=PROGRESS_FORMAT
    ) as bar:
        for index in range(count):
            record = database[index]
            name = names.get(index) or record_name(record, index)
            if 'segmentation' in tasks and record.label is None:
                raise ToolError('record %d (%s) has no segmentation label' % (index, name))
            if 'depth' in tasks and record.depth is None:
                raise ToolError('record %d (%s) has no depth ground truth' % (index, name))
            label, depth = predict(record.image)
            scoring.add(index, name, record, label, depth, keep=index in names)
            if comparison is not None:
                comparison.add(record)
            bar.update()


def _open_compare_runs(compare, dataset, shown_names):
    runs = [report.load_run(path) for path in compare]
    for run in runs:
        report.check_comparable(run, dataset, shown_names)
    return runs


def _commit(partial, out_dir):
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    partial.rename(out_dir)


def evaluate(net_name, dataset, weights, split=None, out_dir=None, gpu=None, *, deploy=None, database=None,
             batch_size=DEFAULT_BATCH, mode=None, tasks=None, limit=None, num_figures=4, compare=(),
             official_scorer=False, resize_interpolation='area', max_depth=None, overwrite=False,
             progress=True, engine=None):  # fmt: skip
    """Evaluate net `net_name` on `dataset`/`split` and write the run directory.

    weights: a .caffemodel, or None for the deploy net's random init (marked in the report);
    database: one split's database directory (or an opened database), default
    data/<dataset>/<split>; engine: `backends.EngineOptions` (Caffe by default, a compared
    engine, threads). Returns the results dict that report.json holds."""
    split, mode = split or DEFAULT_SPLIT.get(dataset), mode or DEFAULT_MODE.get(dataset)
    _check_arguments(dataset, mode, batch_size, limit, official_scorer, tasks)
    max_depth = default_max_depth(dataset, max_depth)
    out_dir = Path(out_dir or REPO / 'runs' / 'eval' / ('%s_%s_%s' % (net_name, dataset, split)))
    if out_dir.exists() and not overwrite:
        raise ToolError('%s exists: pass --overwrite or another --out' % out_dir)
    deploy = Path(deploy or deploy_prototxt(net_name, dataset))
    database = open_split(dataset, split, database)
    count = len(database) if limit is None else min(limit, len(database))
    shown = figure_indices(count, num_figures)
    names = {i: record_name(database[i], i) for i in shown}
    compare_runs = _open_compare_runs(compare, dataset, [names[i] for i in shown])
    net = load_net(deploy, weights, gpu)
    tasks = choose_tasks(net, net_name, tasks, database)
    _check_classes(net, deploy, dataset, tasks)
    engines = open_engines(net, deploy, tasks, mode, batch_size, resize_interpolation, engine, dataset, max_depth, gpu)
    partial = _partial_dir(out_dir)
    shutil.rmtree(partial, ignore_errors=True)
    started = time.time()
    try:
        scoring = _Scoring(dataset, tasks, max_depth, partial, database)
        desc = '%s %s/%s' % (net_name, dataset, split)
        _predict_all(engines.predict, database, count, tasks, names, scoring, desc, progress, engines.comparison)
        seconds = time.time() - started
        results = {
            'net': net_name, 'dataset': dataset, 'split': split, 'tasks': tasks,
            'weights': str(weights) if weights else None, 'random_weights': weights is None,
            'deploy': str(deploy), 'database': str(getattr(database, 'path', '<in memory>')),
            'images': count, 'images_in_split': len(database), 'mode': mode, 'batch_size': batch_size,
            'resize_interpolation': resize_interpolation if mode == 'resize' else None,
            'max_depth': max_depth, 'seconds': seconds, 'images_per_second': count / seconds,
            'device': 'gpu %d' % gpu if gpu is not None else 'cpu', 'created': time.strftime('%Y-%m-%d %H:%M:%S'),
            'class_names': list(getattr(database, 'class_names', None) or default_class_names(dataset)),
            'figure_images': [names[i] for i in shown], 'figure_indices': shown, **scoring.scores(),
        }  # fmt: skip
        results.update(engines.results(results))
        if official_scorer:
            results['official_cityscapes'] = _run_official_scorer(scoring.gt_files, partial)
        _write_csv(partial / 'per_image.csv', scoring.rows)
        results['figures'] = figures.write_run_figures(partial, results, database, compare_runs)
        report.write_report(partial, results, compare_runs)
        _commit(partial, out_dir)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    results['run_dir'] = str(out_dir)
    return results


SEG_COLUMNS = ('G', 'C', 'mIoU', 'pixels')


def _prefixed(prefix, scores, keys):
    return {prefix + key: scores[key] for key in keys}


def _run_official_scorer(gt_files, run_dir):
    missing = [f for f in gt_files if not f or not os.path.isfile(f)]
    if missing:
        raise ToolError(
            '--official-scorer needs the gtFine files the database was converted from; '
            'not found: %s' % (missing[0] or 'no *_gtFine_labelIds.png among the sources')
        )
    scores = official_cityscapes_scores(run_dir / 'cityscapes_results', gt_files)
    return {'mIoU': scores['averageScoreClasses'], 'class_iou': scores['classScores']}


def _write_csv(path, rows):
    fields = list(dict.fromkeys(key for row in rows for key in row))
    with open(path, 'w', newline='') as f:
        writer = csv.DictWriter(f, fields)
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {key: ('%.6g' % value if isinstance(value, float) else value) for key, value in row.items()}
            )
