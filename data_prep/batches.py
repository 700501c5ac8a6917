"""Training batches from a database: crop, pad, mirror, flip, subsample, subtract the mean.

Pure numpy (no Caffe), so the augmentation is testable on its own; `data_prep.layers.HybridData`
serves these batches to Caffe. The parameters are the layer's `param_str` keys (docs/DESIGN.md).

Paper: training images are shuffled and randomly cropped to the input size and augmented by
"flipping and mirroring" (L348-349, L455-456, L530-532). The label is shrunk to the score map and
the depth to each depth output by corner-aligned sampling: a map of side s covers a crop of side c
with stride (c - 1) / (s - 1), so 41 = crop[::8, ::8] and 81 = crop[::4, ::4] of a 321 crop
(docs/REFERENCE.md, DeepLab). Image, label and depth always share one crop and one pair of flips.

Batch b is a pure function of (seed, b): epoch e's record order comes from the seed and e, batch
b's crops and flips from the seed and b. So worker processes can build batches ahead in any
number and any order, and the stream is the same (`BatchWorkers`). Processes, not threads: Caffe
never releases Python's GIL while it computes, so a thread would only run inside `forward`.
"""

import itertools
import json
import multiprocessing
import os
import queue
import signal
import traceback
import weakref

import numpy as np

from data_prep.dataset import IGNORE
from data_prep.errors import DataError

#: `param_str` keys with their defaults; None: required (`mean` too: the nets pass the project's one
#: mean, netgen.config.MEAN_BGR), except `label_size`, where null means no label top, and `max_depth`,
#: where null means no bound (the nets pass netgen.config.MAX_DEPTH[dataset]: deeper ground truth is invalid).
DEFAULTS = {
    'source': None,
    'batch_size': None,
    'crop_size': None,
    'train': True,
    'mirror': True,
    'flip': False,
    'mean': None,
    'label_size': None,
    'depth_sizes': [],
    'seed': 0,
    'rank': 0,
    'world': 1,
    'workers': 2,
    'max_depth': None,
}


def parse_param_str(param_str):
    """The layer's JSON `param_str` as a dict with defaults filled in and every value checked."""
    try:
        given = json.loads(param_str or '{}')
    except ValueError as err:
        raise ValueError(f'HybridData param_str is not JSON ({err}): {param_str!r}') from None
    if not isinstance(given, dict):
        raise ValueError(f'HybridData param_str must be a JSON object, got {param_str!r}')
    unknown = sorted(set(given) - set(DEFAULTS))
    if unknown:
        raise ValueError(f'HybridData param_str: unknown key {unknown[0]!r}; known: {", ".join(DEFAULTS)}')
    params = dict(DEFAULTS, **given)
    missing = [k for k, v in params.items() if v is None and k not in ('label_size', 'max_depth')]
    if missing:
        raise ValueError(f'HybridData param_str: missing {", ".join(missing)}')

    def check(key, ok, expected):
        if not ok:
            raise ValueError(f'HybridData param_str: {key} must be {expected}, got {params[key]!r}')

    is_int = lambda v: isinstance(v, int) and not isinstance(v, bool)  # noqa: E731
    check('source', isinstance(params['source'], str), 'a database path')
    for key in ('batch_size', 'crop_size'):
        check(key, is_int(params[key]) and params[key] >= 1, 'a positive integer')
    for key in ('train', 'mirror', 'flip'):
        check(key, isinstance(params[key], bool), 'true or false')
    check('seed', is_int(params['seed']) and params['seed'] >= 0, 'a non-negative integer')
    check('workers', is_int(params['workers']) and params['workers'] >= 0, 'a non-negative integer')
    check('world', is_int(params['world']) and params['world'] >= 1, 'a positive integer')
    check('rank', is_int(params['rank']) and 0 <= params['rank'] < params['world'], 'an integer in [0, world)')
    check(
        'mean',
        isinstance(params['mean'], list)
        and len(params['mean']) == 3
        and all(isinstance(v, (int, float)) for v in params['mean']),
        '[B, G, R]',
    )
    check('label_size', params['label_size'] is None or is_int(params['label_size']), 'an integer or null')
    check(
        'max_depth',
        params['max_depth'] is None
        or (
            isinstance(params['max_depth'], (int, float))
            and not isinstance(params['max_depth'], bool)
            and params['max_depth'] > 0
        ),
        'a positive number (metres) or null',
    )
    check(
        'depth_sizes',
        isinstance(params['depth_sizes'], list) and all(map(is_int, params['depth_sizes'])),
        'a list of integers',
    )
    return params


def corner_aligned_stride(crop_size, size, key):
    """Stride k with size = (crop_size - 1) / k + 1, e.g. 8 for 41 of 321; ValueError if none."""
    if size == crop_size:
        return 1
    if size < 2 or size > crop_size or (crop_size - 1) % (size - 1):
        raise ValueError(
            f'HybridData: {key} {size} does not fit crop_size {crop_size}: corner-aligned '
            f'subsampling needs (crop_size - 1) divisible by ({key} - 1), e.g. '
            f'{(crop_size - 1) // 8 + 1} (stride 8) or {(crop_size - 1) // 4 + 1} (stride 4) '
            f'for crop_size {crop_size}; crop_size must then be 8n + 1, like 321'
        )
    return (crop_size - 1) // (size - 1)


class CropSampler:
    """Batches from `database` (anything with len, shape(i), labelled, read_window) per `params`.

    `batches()` yields lists of arrays in top order: data (N x 3 x c x c float32, BGR minus mean),
    label (N x 1 x s x s float32) if label_size is set, one N x 1 x s x s depth per depth_sizes entry.
    Train: a fresh permutation each epoch, random crop and flips from `seed`. Test: records in
    order, centre crop, no flips. An image smaller than the crop is padded with the mean colour
    (0 after subtraction), label 255 and depth 0.
    """

    def __init__(self, database, params):
        self.database, self.params = database, params
        crop = params['crop_size']
        self.label_stride = (
            None if params['label_size'] is None else corner_aligned_stride(crop, params['label_size'], 'label_size')
        )
        self.depth_strides = [corner_aligned_stride(crop, s, 'depth_sizes entry') for s in params['depth_sizes']]
        if self.label_stride is not None and not database.labelled:
            raise DataError(params['source'], 'has no labels (a test split?): set label_size to null')
        self.mean = np.asarray(params['mean'], np.float32)
        self._epoch, self._epoch_order = None, None

    def top_shapes(self):
        n, c = self.params['batch_size'], self.params['crop_size']
        shapes = [(n, 3, c, c)]
        if self.label_stride is not None:
            shapes.append((n, 1, self.params['label_size'], self.params['label_size']))
        shapes += [(n, 1, s, s) for s in self.params['depth_sizes']]
        return shapes

    def batches(self, start=0):
        """Batches start, start + 1, ... forever."""
        return (self.batch(b) for b in itertools.count(start))

    def batch(self, number):
        """Batch `number` (0-based) of the stream: a list of arrays in top order."""
        size, count = self.params['batch_size'], len(self.database)
        rng = np.random.default_rng(np.random.SeedSequence(self.params['seed'], spawn_key=(0, number)))
        tops = [np.empty(shape, np.float32) for shape in self.top_shapes()]
        # data parallel: rank r of `world` serves slots r * size .. of the global batch `number` of
        # world * size, with its crops: the draws of the slots before it are drawn and dropped
        first = (number * self.params['world'] + self.params['rank']) * size
        if self.params['train'] and self.params['rank']:
            rng.integers(0, np.iinfo(np.int64).max, 4 * self.params['rank'] * size)
        for slot, position in enumerate(range(first, first + size)):
            epoch, offset = divmod(position, count)
            self.sample(int(self._order(epoch)[offset]), rng, [top[slot] for top in tops])
        return tops

    def _order(self, epoch):
        """Record order of `epoch`: a permutation from (seed, epoch) in train, 0..n-1 in test."""
        if self._epoch != epoch:
            count = len(self.database)
            seeds = np.random.SeedSequence(self.params['seed'], spawn_key=(1, epoch))
            self._epoch_order = (
                np.random.default_rng(seeds).permutation(count) if self.params['train'] else np.arange(count)
            )
            self._epoch = epoch
        return self._epoch_order

    def sample(self, index, rng, out):
        """Fill `out` (one array per top, without the batch axis) from record `index`."""
        params, crop = self.params, self.params['crop_size']
        train = params['train']
        height, width = self.database.shape(index)
        # four draws per sample whatever the flags, so that a flag never shifts the other draws
        draws = rng.integers(0, np.iinfo(np.int64).max, 4) if train else None
        (src_y, dst_y, len_y), (src_x, dst_x, len_x) = (
            _axis_window(size, crop, None if draws is None else draws[k]) for k, size in enumerate((height, width))
        )
        record = self.database.read_window(index, src_y, src_x, len_y, len_x)
        # a flip of the crop = the window's content reversed, at the mirrored place in the crop
        rows, cols = slice(None), slice(None)
        if train and params['mirror'] and draws[2] % 2:
            cols, dst_x = slice(None, None, -1), crop - dst_x - len_x
        if train and params['flip'] and draws[3] % 2:
            rows, dst_y = slice(None, None, -1), crop - dst_y - len_y
        window = (slice(dst_y, dst_y + len_y), slice(dst_x, dst_x + len_x))

        data = out[0]  # 3 x crop x crop, BGR minus mean
        if (len_y, len_x) != (crop, crop):
            data[...] = 0  # padding: the mean colour, subtracted
        for channel in range(3):
            np.subtract(
                record.image[rows, cols, 2 - channel], self.mean[channel], out=data[channel][window], casting='unsafe'
            )
        tops = iter(out[1:])
        if self.label_stride is not None:
            label = _place(record.label[rows, cols], IGNORE, crop, window)
            next(tops)[0] = label[:: self.label_stride, :: self.label_stride]
        for stride in self.depth_strides:
            depth = next(tops)[0]
            depth[...] = _place(record.depth[rows, cols], 0, crop, window)[::stride, ::stride]
            if params['max_depth'] is not None:  # deeper ground truth is invalid (0), never a target
                depth[depth > params['max_depth']] = 0


def _place(content, fill, crop, window):
    """`content` as a crop x crop map: itself when it fills the crop, else on a `fill` canvas."""
    if content.shape == (crop, crop):
        return content
    canvas = np.full((crop, crop), fill, content.dtype)
    canvas[window] = content
    return canvas


def _axis_window(size, crop, draw):
    """(source offset, destination offset, length) along one axis; `draw`: None = centre."""
    slack = abs(size - crop)
    offset = slack // 2 if draw is None else int(draw % (slack + 1))
    return (offset, 0, crop) if size >= crop else (0, offset, size)


class BatchWorkers:
    """`workers` processes building the batches of `sampler` ahead, served in order by `next()`.

    Worker w builds batches w, w + workers, ...; each keeps up to `depth` finished batches in
    its queue. Workers are forked, stop with the parent and are stopped by `close()`.
    With workers = 0, `next()` builds each batch in the calling thread.
    """

    def __init__(self, sampler, workers, depth=2):
        self.sampler, self.count, self.number = sampler, workers, 0
        self._queues, self._processes = [], []
        if workers:
            context = multiprocessing.get_context('fork')
            for w in range(workers):
                self._queues.append(context.Queue(maxsize=depth))
                self._processes.append(
                    context.Process(
                        target=_build_batches,
                        args=(sampler, w, workers, self._queues[-1], os.getpid()),
                        name=f'HybridData-worker-{w}',
                        daemon=True,
                    )
                )
                self._processes[-1].start()
        self._finalizer = weakref.finalize(self, _stop, self._processes)  # also at exit

    def next(self):
        number, self.number = self.number, self.number + 1
        if not self.count:
            return self.sampler.batch(number)
        worker = number % self.count
        while True:
            try:
                kind, payload = self._queues[worker].get(timeout=5)
                break
            except queue.Empty:
                process = self._processes[worker]
                if not process.is_alive():
                    raise self._died(worker, process.exitcode, number) from None
        if kind == 'error':
            raise payload
        return payload

    def _died(self, worker, code, number):
        """The DataError of a worker that died building batch `number`: which database and records."""
        sampler = self.sampler
        source = getattr(sampler.database, 'path', sampler.params['source'])
        records = getattr(sampler.database, 'records', None)
        size, count = sampler.params['batch_size'], len(sampler.database)
        first = (number * sampler.params.get('world', 1) + sampler.params.get('rank', 0)) * size
        indices = [int(sampler._order(p // count)[p % count]) for p in range(first, first + size)]
        keys = [records[i]['key'] if records else str(i) for i in indices]
        how = f'killed by {signal.Signals(-code).name}' if code is not None and code < 0 else f'exit code {code}'
        hint = ' (a damaged or truncated database?)' if code == -signal.SIGBUS else ''
        return DataError(
            source,
            f'HybridData worker {worker} died ({how}){hint} building batch {number} from record '
            f'{", ".join(keys[:4])}{", ..." if len(keys) > 4 else ""}: check it with '
            f'`python -m data_prep verify --db {source}`',
        )

    def close(self):
        self._finalizer()


def _stop(processes):
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(timeout=5)


def _build_batches(sampler, worker, workers, out, parent):
    """Worker process: batches worker, worker + workers, ... into `out` until the parent is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's (Caffe snapshots, then stops)
    for number in itertools.count(worker, workers):
        try:
            item = ('batch', sampler.batch(number))
        except BaseException as err:
            item = ('error', err if _picklable(err) else RuntimeError(traceback.format_exc()))
        while True:
            try:
                out.put(item, timeout=1)
                break
            except queue.Full:
                if os.getppid() != parent:
                    out.cancel_join_thread()  # exit without flushing to a parent that is gone
                    return
        if item[0] == 'error':
            return


def _picklable(err):
    import pickle  # noqa: PLC0415

    try:
        pickle.loads(pickle.dumps(err))
        return True
    except Exception:
        return False
