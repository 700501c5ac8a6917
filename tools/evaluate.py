"""Evaluate a deploy net on a converted split: the paper's inference, metrics, report, figures.

    python -m tools.evaluate --net a2 --dataset cityscapes --weights RUN/a2.caffemodel

Inference (paper L349-357, L456-461):
- `tiles` (Cityscapes' default): the image is covered by 321 x 321 tiles with the minimum
  number and overlap (tools.tiling), forwarded in batches; in overlaps the label of the
  more confident tile wins and depth is averaged.
- `resize` (SUN-RGBD's and NYUv2's default): the image is resized to 321 x 321, predicted,
  and the prediction brought back to the ground truth's size.
41 x 41 scores and 81 x 81 depth reach the target size by corner-aligned bilinear
upsampling. Every choice the paper leaves open is in docs/FIDELITY.md ("Evaluation").

The run directory (written under a temporary name, renamed when complete) holds
report.md, report.json, per_image.csv, figures/, predictions/ (the figure images'
predictions, for `--compare` by later runs) and, for Cityscapes, cityscapes_results/: full-
resolution labelId PNGs named as the official scorer expects.
"""
import argparse
import csv
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault('GLOG_minloglevel', '2')  # keep Caffe's net dumps off the console

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from tqdm import tqdm  # noqa: E402

import caffe  # noqa: E402
from netgen import config  # noqa: E402
from netgen.fixed_weights import PREFIX as FIXED_PREFIX, fill_fixed_weights  # noqa: E402
from tools import caffemodel, figures, report  # noqa: E402
from tools.metrics import DEPTH_KEYS, DepthMeter, SegmentationMeter, official_cityscapes_scores  # noqa: E402
from tools.tiling import TileMerger, pad_to_tile, tile_origins, upsample  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
NETS = ('a1', 'a2', 'deeplab_aspp', 'depthnet')
#: Split evaluated by default: Cityscapes' test labels are not public (paper L346-347 uses
#: val + test; val is what can be scored); SUN-RGBD and NYUv2 have a test split.
DEFAULT_SPLIT = {'cityscapes': 'val', 'sunrgbd': 'test', 'nyuv2': 'test'}
DEFAULT_MODE = {'cityscapes': 'tiles', 'sunrgbd': 'resize', 'nyuv2': 'resize'}
#: Deploy blob of each task (docs/DESIGN.md).
HEADS = {'segmentation': 'seg_prob', 'depth': 'depth'}
RESIZE_INTERPOLATION = {'area': cv2.INTER_AREA, 'linear': cv2.INTER_LINEAR, 'cubic': cv2.INTER_CUBIC}
DEFAULT_BATCH = 7  # 28 Cityscapes tiles = 4 forwards
#: tqdm's bar with the rate always in images/s (tqdm inverts rates below 1 by default).
PROGRESS_FORMAT = '{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_noinv_fmt}]'


class EvaluationError(Exception):
    """Bad input: a message for the user, no traceback."""


# --- the net ------------------------------------------------------------------------

def deploy_path(net_name, dataset):
    return REPO / 'prototxt' / ('%s_%s' % (net_name, dataset)) / 'deploy.prototxt'


def _same_shape(saved, wanted):
    """Caffe's rule: equal shapes, or a legacy 4-d blob equal to `wanted` padded with 1s."""
    if saved == wanted:
        return True
    padded = (1,) * (4 - len(wanted)) + tuple(wanted)
    return len(saved) == 4 and len(wanted) <= 4 and saved == padded


def read_weights(weights):
    """The parsed .caffemodel (NetParameter), with a clear error for anything else."""
    try:
        return caffemodel.read_caffemodel(weights)
    except OSError as err:
        raise EvaluationError('cannot read weights %s: %s' % (weights, err.strerror)) from None
    except Exception as err:  # protobuf's DecodeError
        raise EvaluationError('weights %s: not a caffemodel (%s)' % (weights, err)) from None


def check_weights(net, model, weights):
    """Raise EvaluationError unless `model` (the parsed caffemodel `weights`) holds every
    learned layer of `net` with the right blob count and shapes (Caffe would leave a missing
    layer at its random init silently, and abort the process on a wrong shape). `fixed_*`
    layers may be absent: netgen.fixed_weights writes them. Returns the names of layers
    with blobs in the file but not in the net (ignored, as Caffe does)."""
    saved = {layer.name: [caffemodel.blob_shape(b) for b in layer.blobs]
             for layer in caffemodel.all_layers(model) if len(layer.blobs)}
    missing, wrong = [], []
    for name, blobs in net.params.items():
        if name not in saved:
            if not name.startswith(FIXED_PREFIX):
                missing.append(name)
            continue
        wanted = [tuple(b.data.shape) for b in blobs]
        if len(saved[name]) != len(wanted) or not all(map(_same_shape, saved[name], wanted)):
            wrong.append('%s: file %s, net %s' % (name, saved[name], wanted))
    if missing or wrong:
        problems = []
        if missing:
            problems.append('layers missing from the file: %s' % ', '.join(missing))
        if wrong:
            problems.append('layers with other shapes: %s' % '; '.join(wrong))
        raise EvaluationError('weights %s do not fit the net (%s)' % (weights, '. '.join(problems)))
    return sorted(set(saved) - set(net.params))


def copy_weights(net, model):
    """Write the parsed caffemodel's blobs into `net` by layer name. Done here rather than by
    Caffe's copy_from, whose reader refuses files over 512 MB (A2's are 551 MB)."""
    arrays = caffemodel.layer_blobs(model)
    for name, blobs in net.params.items():
        for blob, array in zip(blobs, arrays.get(name, ())):
            blob.data[...] = array.reshape(blob.data.shape)


def gpu_available(device):
    """Whether this Caffe build can use GPU `device` (a CPU-only build aborts the process
    when asked for a GPU, so ask in a child process)."""
    probe = 'import caffe; caffe.set_mode_gpu(); caffe.set_device(%d)' % device
    return subprocess.run([sys.executable, '-c', probe], capture_output=True).returncode == 0


def load_net(deploy, weights=None, gpu=None):
    """The deploy net in TEST phase with `weights` (checked first) or, when None, its
    fillers' random weights; fixed (non-learned) weights written in both cases."""
    deploy = Path(deploy)
    if not deploy.is_file():
        raise EvaluationError('no deploy net at %s (generate the nets with `python -m netgen`)' % deploy)
    if weights is not None and not Path(weights).is_file():
        raise EvaluationError('no weights file at %s' % weights)
    if gpu is not None:
        if not gpu_available(gpu):
            raise EvaluationError('--gpu %d: this Caffe build cannot use GPU %d (CPU-only build, '
                                  'or no such device); build with `make setup CAFFE_GPU=1`' % (gpu, gpu))
        caffe.set_mode_gpu()
        caffe.set_device(gpu)
    else:
        caffe.set_mode_cpu()
    net = caffe.Net(str(deploy), caffe.TEST)
    if weights is not None:
        model = read_weights(weights)
        check_weights(net, model, weights)
        copy_weights(net, model)
    fill_fixed_weights(net)
    return net


class Predictor:
    """Forwards 321 x 321 RGB inputs through a deploy net in batches; predicts whole images
    by tiling or by resizing. Outputs: H x W int32 labels and/or H x W float32 depth."""

    def __init__(self, net, tasks, batch_size=DEFAULT_BATCH, tile=config.INPUT_SIZE,
                 resize_interpolation='area'):
        self.net, self.tasks, self.batch_size, self.tile = net, tuple(tasks), batch_size, tile
        self.interpolation = RESIZE_INTERPOLATION[resize_interpolation]
        self.mean_bgr = np.asarray(config.MEAN_BGR, np.float32)

    def preprocess(self, image):
        """H x W x 3 uint8 RGB -> H x W x 3 float32 BGR minus the mean (0 = mean colour)."""
        return image[:, :, ::-1].astype(np.float32) - self.mean_bgr

    def forward(self, inputs):
        """N x tile x tile x 3 preprocessed inputs -> {blob: N x C x h x w} for the tasks' heads."""
        outputs = {HEADS[task]: [] for task in self.tasks}
        data = self.net.blobs['data']
        for start in range(0, len(inputs), self.batch_size):
            batch = inputs[start:start + self.batch_size]
            if data.data.shape[0] != len(batch):
                data.reshape(len(batch), 3, self.tile, self.tile)
                self.net.reshape()
            data.data[...] = batch.transpose(0, 3, 1, 2)
            result = self.net.forward(blobs=list(outputs))
            for name in outputs:
                outputs[name].append(result[name].copy())
        return {name: np.concatenate(parts) for name, parts in outputs.items()}

    def predict_tiled(self, image):
        """Paper L349-357: tiles, batched forwards, confidence / mean merge."""
        height, width = image.shape[:2]
        padded = pad_to_tile(self.preprocess(image), self.tile, 0)
        origins = tile_origins(height, width, self.tile)
        tiles = np.stack([padded[y:y + self.tile, x:x + self.tile] for y, x in origins])
        outputs = self.forward(tiles)
        merger = TileMerger(height, width, self.tile)
        for i, (y, x) in enumerate(origins):
            if 'segmentation' in self.tasks:
                merger.add_segmentation(y, x, outputs['seg_prob'][i])
            if 'depth' in self.tasks:
                merger.add_depth(y, x, outputs['depth'][i])
        return (merger.label() if 'segmentation' in self.tasks else None,
                merger.depth() if 'depth' in self.tasks else None)

    def predict_resized(self, image):
        """Paper L456-461: resize to the input size, predict, resize back."""
        height, width = image.shape[:2]
        resized = cv2.resize(image, (self.tile, self.tile), interpolation=self.interpolation)
        outputs = self.forward(self.preprocess(resized)[None])
        label = depth = None
        if 'segmentation' in self.tasks:
            label = upsample(outputs['seg_prob'][0], height, width).argmax(0).astype(np.int32)
        if 'depth' in self.tasks:
            depth = upsample(outputs['depth'][0], height, width)[0]
        return label, depth


# --- the data -----------------------------------------------------------------------

def database_path(dataset, split):
    return REPO / 'data' / dataset / split


def open_split(dataset, split, database=None):
    """`database` (a path or an opened database), default data/<dataset>/<split>."""
    if database is None or isinstance(database, (str, Path)):
        from data_prep.database import open_database
        from data_prep.errors import DataError
        path = database or database_path(dataset, split)
        try:
            database = open_database(path, dataset)
        except DataError as err:
            raise EvaluationError(str(err)) from None
    if len(database) == 0:
        raise EvaluationError('database %s is empty: nothing to evaluate' % getattr(database, 'path', database))
    return database


def record_name(record, index):
    """Cityscapes' <city>_<seq>_<frame> (official naming), else the image file's stem."""
    for source in record.sources:
        base = os.path.basename(source)
        if base.endswith('_leftImg8bit.png'):
            return base[:-len('_leftImg8bit.png')]
    if record.sources:
        return '%05d_%s' % (index, os.path.splitext(os.path.basename(record.sources[0]))[0])
    return '%05d' % index


def default_class_names(dataset):
    """Class names when the database has none: Cityscapes' official ones, else numbers."""
    if dataset == 'cityscapes':
        from cityscapesscripts.helpers.labels import trainId2label
        return [trainId2label[i].name for i in range(config.NUM_CLASSES[dataset])]
    return ['class %d' % i for i in range(config.NUM_CLASSES[dataset])]


def cityscapes_label_ids():
    """trainId -> official labelId (Cityscapes), from cityscapesscripts' table."""
    from cityscapesscripts.helpers.labels import trainId2label
    return np.array([trainId2label[i].id for i in range(config.NUM_CLASSES['cityscapes'])], np.uint8)


def save_cityscapes_prediction(path, train_ids):
    """A full-resolution labelId PNG as the official scorer reads it."""
    Image.fromarray(cityscapes_label_ids()[train_ids]).save(path)


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
        raise EvaluationError('net %s has neither a %s output: not a deploy net of this project'
                              % (net_name, ' nor a '.join(map(repr, HEADS.values()))))
    tasks = list(tasks or available)
    for task in tasks:
        if task not in HEADS:
            raise EvaluationError('unknown task %r: choose from %s' % (task, ', '.join(HEADS)))
        if task not in available:
            raise EvaluationError('net %s has no %r output: it does not do %s (it does: %s)'
                                  % (net_name, HEADS[task], task, ', '.join(available)))
    if 'segmentation' in tasks and (getattr(database, 'labelled', True) is False or database[0].label is None):
        raise EvaluationError('split %s has no segmentation labels (Cityscapes test labels are not public); '
                              'evaluate depth only with --task depth, or another split'
                              % getattr(database, 'path', 'of this database'))
    return tasks


def figure_indices(count, figures_wanted):
    if figures_wanted <= 0:
        return []
    return sorted(set(np.linspace(0, count - 1, min(figures_wanted, count)).round().astype(int).tolist()))


def _partial_dir(out_dir):
    return out_dir.with_name('.%s.partial-%d' % (out_dir.name, os.getpid()))


def evaluate(net_name, dataset, weights, split=None, out_dir=None, gpu=None, *, deploy=None,
             database=None, batch_size=DEFAULT_BATCH, mode=None, tasks=None, limit=None,
             num_figures=4, compare=(), official_scorer=False, resize_interpolation='area',
             max_depth=None, overwrite=False, progress=True):
    """Evaluate net `net_name` on `dataset`/`split` and write the run directory.

    weights: a .caffemodel, or None for the deploy net's random init (marked in the report).
    Returns the results dict that report.json holds."""
    if dataset not in config.NUM_CLASSES:
        raise EvaluationError('unknown dataset %r: choose from %s' % (dataset, ', '.join(config.NUM_CLASSES)))
    split = split or DEFAULT_SPLIT[dataset]
    mode = mode or DEFAULT_MODE[dataset]
    if mode not in ('tiles', 'resize'):
        raise EvaluationError("unknown mode %r: 'tiles' or 'resize'" % mode)
    if batch_size < 1:
        raise EvaluationError('batch size must be >= 1, not %d' % batch_size)
    if limit is not None and limit < 1:
        raise EvaluationError('--limit must be >= 1, not %d' % limit)
    if official_scorer and (dataset != 'cityscapes' or (tasks and 'segmentation' not in tasks)):
        raise EvaluationError('--official-scorer scores Cityscapes segmentation only')
    out_dir = Path(out_dir or REPO / 'runs' / 'eval' / ('%s_%s_%s' % (net_name, dataset, split)))
    if out_dir.exists() and not overwrite:
        raise EvaluationError('%s exists: pass --overwrite or another --out' % out_dir)
    try:
        compare_runs = [report.load_run(path) for path in compare]
    except report.ReportError as err:
        raise EvaluationError(str(err)) from None
    deploy = Path(deploy or deploy_path(net_name, dataset))
    database = open_split(dataset, split, database)
    net = load_net(deploy, weights, gpu)
    tasks = choose_tasks(net, net_name, tasks, database)
    num_classes = config.NUM_CLASSES[dataset]
    if 'segmentation' in tasks and net.blobs['seg_prob'].data.shape[1] != num_classes:
        raise EvaluationError('net %s outputs %d classes, %s has %d: wrong deploy net?' % (
            deploy, net.blobs['seg_prob'].data.shape[1], dataset, num_classes))
    count = len(database) if limit is None else min(limit, len(database))
    shown = figure_indices(count, num_figures)
    names = {i: record_name(database[i], i) for i in shown}
    try:
        for run in compare_runs:
            report.check_comparable(run, dataset, [names[i] for i in shown])
    except report.ReportError as err:
        raise EvaluationError(str(err)) from None

    predictor = Predictor(net, tasks, batch_size, resize_interpolation=resize_interpolation)
    predict = predictor.predict_tiled if mode == 'tiles' else predictor.predict_resized
    seg_meter = SegmentationMeter(num_classes, config.IGNORE_LABEL)
    depth_meter = DepthMeter(max_depth=max_depth)
    class_names = list(getattr(database, 'class_names', None) or default_class_names(dataset))
    official = dataset == 'cityscapes' and 'segmentation' in tasks

    partial = _partial_dir(out_dir)
    shutil.rmtree(partial, ignore_errors=True)
    (partial / 'predictions').mkdir(parents=True)
    if official:
        (partial / 'cityscapes_results').mkdir()
    rows, gt_files = [], []
    started = time.time()
    try:
        with tqdm(total=count, unit=' images', desc='%s %s/%s' % (net_name, dataset, split),
                  disable=not progress, dynamic_ncols=True, bar_format=PROGRESS_FORMAT) as bar:
            for index in range(count):
                record = database[index]
                name = names.get(index) or record_name(record, index)
                if 'segmentation' in tasks and record.label is None:
                    raise EvaluationError('record %d (%s) has no segmentation label' % (index, name))
                if 'depth' in tasks and record.depth is None:
                    raise EvaluationError('record %d (%s) has no depth ground truth' % (index, name))
                label, depth = predict(record.image)
                row = {'index': index, 'name': name}
                try:
                    if label is not None:
                        row.update(_prefixed('seg_', seg_meter.update(label, record.label), SEG_COLUMNS))
                    if depth is not None:
                        row.update(_prefixed('depth_', depth_meter.update(depth, record.depth), DEPTH_KEYS))
                except ValueError as err:
                    raise EvaluationError('record %d (%s): %s' % (index, name, err)) from None
                if official:
                    save_cityscapes_prediction(partial / 'cityscapes_results' / ('%s_labelIds.png' % name), label)
                    gt_files.append(_gt_file(database, record))
                rows.append(row)
                if index in names:
                    np.savez_compressed(partial / 'predictions' / ('%s.npz' % name), **{
                        key: value for key, value in (('label', label), ('depth', depth)) if value is not None})
                bar.update()
        seconds = time.time() - started
        results = {
            'net': net_name, 'dataset': dataset, 'split': split, 'tasks': tasks,
            'weights': str(weights) if weights else None, 'random_weights': weights is None,
            'deploy': str(deploy), 'database': str(getattr(database, 'path', '<in memory>')),
            'images': count, 'images_in_split': len(database), 'mode': mode, 'batch_size': batch_size,
            'resize_interpolation': resize_interpolation if mode == 'resize' else None,
            'max_depth': max_depth, 'seconds': seconds, 'images_per_second': count / seconds,
            'device': 'gpu %d' % gpu if gpu is not None else 'cpu',
            'created': time.strftime('%Y-%m-%d %H:%M:%S'), 'class_names': class_names,
            'figure_images': [names[i] for i in shown], 'figure_indices': shown,
        }
        if 'segmentation' in tasks:
            results['segmentation'] = seg_meter.scores()
        if 'depth' in tasks:
            results['depth'] = depth_meter.scores()
        if official_scorer:
            results['official_cityscapes'] = _run_official_scorer(gt_files, partial)
        _write_csv(partial / 'per_image.csv', rows)
        results['figures'] = figures.write_run_figures(partial, results, database, compare_runs)
        report.write_report(partial, results, compare_runs)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        partial.rename(out_dir)
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
        raise EvaluationError('--official-scorer needs the gtFine files the database was converted from; '
                              'not found: %s' % (missing[0] or 'no *_gtFine_labelIds.png among the sources'))
    scores = official_cityscapes_scores(run_dir / 'cityscapes_results', gt_files)
    return {'mIoU': scores['averageScoreClasses'], 'class_iou': scores['classScores']}


def _write_csv(path, rows):
    fields = list(dict.fromkeys(key for row in rows for key in row))
    with open(path, 'w', newline='') as f:
        writer = csv.DictWriter(f, fields)
        writer.writeheader()
        for row in rows:
            writer.writerow({key: ('%.6g' % value if isinstance(value, float) else value)
                             for key, value in row.items()})


# --- command line ---------------------------------------------------------------------

def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog='python -m tools.evaluate', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--net', required=True, choices=NETS)
    parser.add_argument('--dataset', required=True, choices=tuple(config.NUM_CLASSES))
    weights = parser.add_mutually_exclusive_group(required=True)
    weights.add_argument('--weights', help='trained .caffemodel')
    weights.add_argument('--random-weights', action='store_true',
                         help="the deploy net's random init (a smoke test; marked in the report)")
    parser.add_argument('--split', help='default: val for cityscapes, test otherwise')
    parser.add_argument('--gpu', type=int, help='GPU id (a CUDA build of Caffe); default CPU')
    parser.add_argument('--out', help='run directory (default runs/eval/<net>_<dataset>_<split>)')
    parser.add_argument('--overwrite', action='store_true', help='replace an existing run directory')
    parser.add_argument('--deploy', help='deploy prototxt (default prototxt/<net>_<dataset>/deploy.prototxt)')
    parser.add_argument('--data', help='database directory (default data/<dataset>/<split>)')
    parser.add_argument('--task', action='append', choices=tuple(HEADS),
                        help='evaluate only this task (repeatable); default every head the net has')
    parser.add_argument('--mode', choices=('tiles', 'resize'),
                        help='tiles (cityscapes default, paper L349-357) or resize (default otherwise, L456-461)')
    parser.add_argument('--batch', type=int, default=DEFAULT_BATCH, help='tiles per forward (default %(default)s)')
    parser.add_argument('--resize-interp', choices=tuple(RESIZE_INTERPOLATION), default='area',
                        help='image resize in resize mode (default %(default)s)')
    parser.add_argument('--max-depth', type=float, help='ignore ground truth deeper than this (metres)')
    parser.add_argument('--limit', type=int, help='evaluate only the first N images')
    parser.add_argument('--figures', type=int, default=4, help='example rows in the figures (default %(default)s)')
    parser.add_argument('--compare', action='append', default=[], metavar='RUN_DIR',
                        help="another run's directory: its numbers and predictions go beside ours")
    parser.add_argument('--official-scorer', action='store_true',
                        help='also run the official cityscapesscripts scorer on the written labelId PNGs')
    parser.add_argument('--quiet', action='store_true', help='no progress bar')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        results = evaluate(args.net, args.dataset, None if args.random_weights else args.weights,
                           args.split, args.out, args.gpu, deploy=args.deploy, database=args.data,
                           batch_size=args.batch, mode=args.mode, tasks=args.task, limit=args.limit,
                           num_figures=args.figures, compare=args.compare,
                           official_scorer=args.official_scorer, resize_interpolation=args.resize_interp,
                           max_depth=args.max_depth, overwrite=args.overwrite, progress=not args.quiet)
    except EvaluationError as err:
        print('error: %s' % err, file=sys.stderr)
        return 2
    print(report.summary(results))
    print('report: %s' % (Path(results['run_dir']) / 'report.md'))
    return 0


if __name__ == '__main__':
    sys.exit(main())
