"""Data speed: conversion with 2 workers vs 1, storage formats for random crops, and the HybridData
layer vs a naive layer that decodes the PNGs per crop; side by side in one run.

    .venv/bin/python -m bench.data [--count 8] [--crops 60] [--batches 12] [--workdir DIR]

On a sample Cityscapes at full size (2048 x 1024, written first):
1. conversion images/s, `--workers 1` then `--workers 2`, same records (target: >= 1.8x on 2 cores);
2. bytes per record and random 321 x 321 crops/s (image + label + depth windows) for the same
   records stored as our LMDB of zlib tiles, as HDF5 chunks (gzip 1, 64 x 64), as raw arrays in
   LMDB, and as the official PNG files decoded per crop;
3. training crops/s through pycaffe (`net.forward()` of a net holding only the data layer, batch 7,
   crop 321, label 41, depth 81, mirror): `data_prep.layers.HybridData` with its default 2 worker
   processes and with none, vs a naive layer running the same augmentation on records decoded
   from the official PNGs per crop (target: >= 100/s).
The formats are timed in alternation (A B C D, then D C B A) so that drift in machine load hits all.
"""

import argparse
import json
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault('GLOG_minloglevel', '2')

import lmdb
import numpy as np

from data_prep import cityscapes, convert, sample_cityscapes
from data_prep.batches import CropSampler, parse_param_str
from data_prep.database import open_database
from data_prep.dataset import png_header
from netgen.config import MEAN_BGR

CROP = 321


class PngSource:
    """The official files as a 'database': every window decodes the record's PNGs in full (naive)."""

    def __init__(self, root, split):
        self.root, self.split = root, split
        self.keys = cityscapes.list_records(root, split)
        self.labelled = True

    def __len__(self):
        return len(self.keys)

    def shape(self, index):
        width, height = png_header(os.path.join(self.root, self.keys[index]))[:2]
        return height, width

    def read_window(self, index, top, left, height, width):
        record = cityscapes.load_record(self.root, self.split, self.keys[index])
        rows, cols = slice(top, top + height), slice(left, left + width)
        return record._replace(
            image=record.image[rows, cols], label=record.label[rows, cols], depth=record.depth[rows, cols]
        )


class Hdf5Source:
    """The same records as HDF5 chunks (gzip 1, 64 x 64): the format HybridData would use but cannot."""

    def __init__(self, path, database):
        import h5py  # noqa: PLC0415 (only here: h5py must stay out of the layer's imports)

        with h5py.File(path, 'w') as f:
            for i, record in enumerate(database):
                for name in ('image', 'label', 'depth'):
                    array = getattr(record, name)
                    f.create_dataset(
                        f'{i}/{name}',
                        data=array,
                        chunks=(64, 64) + array.shape[2:],
                        compression='gzip',
                        compression_opts=1,
                    )
        self.file = h5py.File(path, 'r', rdcc_nbytes=0)

    def read_window(self, index, top, left, height, width):
        group = self.file[str(index)]
        return [group[name][top : top + height, left : left + width] for name in ('image', 'label', 'depth')]


class RawLmdbSource:
    """The same records as raw arrays in LMDB (memory-mapped, no decoding at all)."""

    def __init__(self, path, database):
        shutil.rmtree(path, ignore_errors=True)
        self.env = lmdb.open(path, map_size=1 << 40)
        self.shapes = []
        with self.env.begin(write=True) as txn:
            for i, record in enumerate(database):
                for name in ('image', 'label', 'depth'):
                    txn.put(f'{i}/{name}'.encode(), getattr(record, name).tobytes())
                self.shapes.append(record.image.shape[:2])

    def read_window(self, index, top, left, height, width):
        out = []
        h, w = self.shapes[index]
        with self.env.begin(buffers=True) as txn:
            for name, dtype, shape in (
                ('image', np.uint8, (h, w, 3)),
                ('label', np.uint8, (h, w)),
                ('depth', np.float32, (h, w)),
            ):
                array = np.frombuffer(txn.get(f'{index}/{name}'.encode()), dtype).reshape(shape)
                out.append(array[top : top + height, left : left + width].copy())
        return out


def folder_bytes(path):
    return sum(f.stat().st_size for f in Path(path).rglob('*') if f.is_file())


def time_crops(source, shapes, count, seed):
    """(wall seconds, CPU seconds of this process) for `count` random crops."""
    rng = np.random.default_rng(seed)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(count):
        index = int(rng.integers(len(shapes)))
        height, width = shapes[index]
        source.read_window(index, int(rng.integers(height - CROP + 1)), int(rng.integers(width - CROP + 1)), CROP, CROP)
    return np.array([time.perf_counter() - wall, time.process_time() - cpu])


def cpu_seconds():
    """(CPU seconds of this process, of its finished children)."""
    return np.array(
        [
            r.ru_utime + r.ru_stime
            for r in (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN))
        ]
    )


def bench_conversion(root, work, count):
    """{workers: (images/s, main-process CPU s / image, worker CPU s / image)}, best of two alternated runs."""
    rates = {}
    for workers in (1, 2, 2, 1):
        out = os.path.join(work, f'convert{workers}')
        shutil.rmtree(out, ignore_errors=True)
        wall, cpu = time.perf_counter(), cpu_seconds()
        convert.convert_split('cityscapes', root, out, 'train', workers=workers, progress=False)
        result = (count / (time.perf_counter() - wall), *((cpu_seconds() - cpu) / count))
        rates[workers] = max(rates.get(workers, result), result)
    return rates


def projected_speedup(rates):
    """2-worker speed-up on two idle cores, from CPU time: the main process and two workers share them."""
    single = sum(rates[1][1:])
    main, workers = rates[2][1:]
    return single / max(main, (main + workers) / 2)


def bench_storage(root, db_path, work, crops):
    database = open_database(db_path)
    shapes = [database.shape(i) for i in range(len(database))]
    n = len(database)
    sources = {
        'LMDB, zlib tiles 64 (ours)': (database, folder_bytes(db_path) / n),
        'HDF5, gzip-1 chunks 64': (
            Hdf5Source(os.path.join(work, 'records.h5'), database),
            os.path.getsize(os.path.join(work, 'records.h5')) / n,
        ),
        'LMDB, raw arrays': (
            RawLmdbSource(os.path.join(work, 'raw.lmdb'), database),
            folder_bytes(os.path.join(work, 'raw.lmdb')) / n,
        ),
        'official PNGs, decoded per crop': (
            PngSource(root, 'train'),
            sum(folder_bytes(os.path.join(root, d, 'train')) for d in ('leftImg8bit', 'gtFine', 'disparity', 'camera'))
            / n,
        ),
    }
    seconds = {name: np.zeros(2) for name in sources}
    counts = {name: 0 for name in sources}
    order = list(sources)
    for round_index, names in enumerate((order, order[::-1])):
        for name in names:
            count = max(4, crops // 8) if name.startswith('official') else crops // 2
            seconds[name] += time_crops(sources[name][0], shapes, count, seed=round_index)
            counts[name] += count
    return {name: (sources[name][1], *(counts[name] / seconds[name])) for name in sources}


def data_layer_net(path, module, layer, param_str):
    Path(path).write_text(
        f'name: "data_only"\nlayer {{ name: "data" type: "Python" top: "data" top: "label" top: "depth"\n'
        f'  python_param {{ module: "{module}" layer: "{layer}" param_str: \'{param_str}\' }} }}\n'
    )
    return path


def bench_layers(root, db_path, work, batches):
    import caffe  # noqa: PLC0415

    caffe.set_mode_cpu()
    given = {
        'source': db_path,
        'batch_size': 7,
        'crop_size': CROP,
        'label_size': 41,
        'depth_sizes': [81],
        'mirror': True,
        'seed': 1,
        'mean': list(MEAN_BGR),
    }
    os.environ['BENCH_PNG_ROOT'] = root
    nets = {
        'HybridData, 2 worker processes (default)': ('data_prep.layers', 'HybridData', 2),
        'HybridData, workers 0 (built inside forward)': ('data_prep.layers', 'HybridData', 0),
        'naive: decode the PNGs per crop, inside forward': ('bench.data', 'NaivePngData', 0),
    }
    rates = {}
    for name, (module, layer, workers) in nets.items():
        param_str = json.dumps(dict(given, workers=workers))
        net = caffe.Net(
            data_layer_net(os.path.join(work, f'{layer}{workers}.prototxt'), module, layer, param_str), caffe.TRAIN
        )
        count = batches if layer == 'HybridData' else max(2, batches // 6)
        net.forward()  # warm-up: the first batch includes opening the database and starting workers
        start, cpu = time.perf_counter(), time.process_time()
        for _ in range(count):
            net.forward()
        rates[name] = (
            7 * count / (time.perf_counter() - start),
            7 * count / (time.process_time() - cpu) if not workers else None,
        )
        del net
    return rates


try:  # the naive layer, importable as bench/data.py's `NaivePngData` by the net above as `bench.data`
    import caffe as _caffe

    class NaivePngData(_caffe.Layer):
        """HybridData's augmentation on records decoded from the official PNG files per crop."""

        def setup(self, bottom, top):
            params = parse_param_str(self.param_str)
            self.sampler = CropSampler(PngSource(os.environ['BENCH_PNG_ROOT'], 'train'), params)
            self.batches = self.sampler.batches()

        def reshape(self, bottom, top):
            for i, shape in enumerate(self.sampler.top_shapes()):
                top[i].reshape(*shape)

        def forward(self, bottom, top):
            for i, array in enumerate(next(self.batches)):
                top[i].data[...] = array

        def backward(self, top, propagate_down, bottom):
            pass
except ImportError:  # pragma: no cover (the benchmark itself imports caffe and fails loudly)
    pass


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--count', type=int, default=8, help='full-size sample records (default: %(default)s)')
    parser.add_argument('--crops', type=int, default=60, help='random crops per storage format (default: %(default)s)')
    parser.add_argument(
        '--batches', type=int, default=12, help='batches of 7 through HybridData (default: %(default)s)'
    )
    parser.add_argument('--workdir', help='where the sample and databases go (default: a temporary directory)')
    args = parser.parse_args()
    work = args.workdir or tempfile.mkdtemp(prefix='bench_data_')
    os.makedirs(work, exist_ok=True)
    root = os.path.join(work, 'cityscapes')
    try:
        print(
            f'machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; '
            f'writing {args.count} full-size sample records ...',
            flush=True,
        )
        if not os.path.isdir(root):
            sample_cityscapes.write(root, args.count, seed=0, splits=('train',))
        rates = bench_conversion(root, work, args.count)
        print('\n## conversion (sample Cityscapes train, 2048 x 1024)')
        print(
            '| workers | images/s | CPU s / image, main process | CPU s / image, workers |\n| --- | --- | --- | --- |'
        )
        for workers, (rate, main, children) in sorted(rates.items()):
            print(f'| {workers} | {rate:.2f} | {main:.2f} | {children:.2f} |')
        print(
            f'speed-up with 2 workers: {rates[2][0] / rates[1][0]:.2f}x measured, '
            f'{projected_speedup(rates):.2f}x projected on 2 idle cores from CPU time'
        )

        db_path = os.path.join(work, 'convert1', 'train')
        storage = bench_storage(root, db_path, work, args.crops)
        print('\n## storage: random 321 x 321 crops of image + label + depth, one thread')
        print('| format | MB / record | crops/s | crops per CPU-second |\n| --- | --- | --- | --- |')
        for name, (size, rate, cpu_rate) in storage.items():
            print(f'| {name} | {size / 1e6:.2f} | {rate:.0f} | {cpu_rate:.0f} |')

        layers = bench_layers(root, db_path, work, args.batches)
        print('\n## data layer through pycaffe (batch 7, crop 321, label 41, depth 81, mirror)')
        print('| layer | crops/s | crops per CPU-second |\n| --- | --- | --- |')
        for name, (rate, cpu_rate) in layers.items():
            print(f'| {name} | {rate:.1f} | {"-" if cpu_rate is None else f"{cpu_rate:.1f}"} |')
        values = [rate for rate, _ in layers.values()]
        print(
            f'HybridData / naive: {values[0] / values[-1]:.1f}x (workers 2), {values[1] / values[-1]:.1f}x '
            f'(workers 0); load average now {os.getloadavg()[0]:.1f}'
        )
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
    main()
