"""The database of one split: HDF5 shards of chunked, compressed records plus `manifest.json`.

Layout of `data/<dataset>/<split>/`::

    manifest.json          dataset, split, count, shapes, dtypes, class names, per-record
                           key / sources / sha256 / location, converter version, skipped records
    skipped.json           only after --skip-bad skipped something: key, file and fault of each
    shard-00000.h5 ...     groups named by source position, each holding
                           image (H x W x 3 uint8 RGB), depth (H x W float32 m, 0 = invalid)
                           and, in labelled splits, label (H x W uint8, 255 = ignore)

Why HDF5 shards (figures: `bench/data.py`, docs/PERFORMANCE.md): training reads many random
321 x 321 crops of 2048 x 1024 records (16 MB raw each). Chunked storage (64 x 64 chunks, gzip 1,
byte shuffle for depth) decompresses only the chunks a crop touches, so a crop costs a few
milliseconds while the files stay about 4x smaller than raw arrays (LMDB with raw values is faster
still but 4x larger: 50 GB for Cityscapes train; LMDB with PNG values decodes whole images per
crop). A shard is written under a temporary name and renamed when complete, so an interrupted
conversion leaves only whole shards and resumes from them.
"""
import collections
import hashlib
import json
import os

import h5py
import numpy as np

from data_prep.dataset import Record
from data_prep.errors import DataError

FORMAT = 'hybridnet-hdf5-shards'
FORMAT_VERSION = 1
MANIFEST = 'manifest.json'
SKIP_REPORT = 'skipped.json'
PARTIAL_SUFFIX = '.partial'
#: Chunk side of every stored map; compression of each map (see the module docstring).
CHUNK = 64
_COMPRESSION = {
    'image': dict(compression='gzip', compression_opts=1),
    'label': dict(compression='gzip', compression_opts=1),
    'depth': dict(compression='gzip', compression_opts=1, shuffle=True),
}
DTYPES = {'image': 'uint8', 'label': 'uint8', 'depth': 'float32'}


def shard_name(index):
    return f'shard-{index:05d}.h5'


def record_checksum(record):
    """sha256 over the shapes and bytes of image, label (if any) and depth."""
    digest = hashlib.sha256()
    for name in ('image', 'label', 'depth'):
        array = getattr(record, name)
        if array is not None:
            digest.update(f'{name}{array.shape}{array.dtype}'.encode())
            digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def write_record(h5file, group_name, record):
    """Store `record` as group `group_name` of an open shard; returns its shape and checksum."""
    group = h5file.create_group(group_name)
    for name in ('image', 'label', 'depth'):
        array = getattr(record, name)
        if array is None:
            continue
        chunks = (min(CHUNK, array.shape[0]), min(CHUNK, array.shape[1])) + array.shape[2:]
        group.create_dataset(name, data=array, chunks=chunks, **_COMPRESSION[name])
    return {'shape': list(record.image.shape[:2]), 'sha256': record_checksum(record)}


def build_manifest(dataset, split, labelled, class_names, records, skipped=(), **extra):
    """The manifest of a database holding `records` (entries as `write_record` + key/sources/shard/group)."""
    shapes = {}
    for entry in records:
        shape = 'x'.join(map(str, entry['shape']))
        shapes[shape] = shapes.get(shape, 0) + 1
    manifest = {
        'format': FORMAT, 'format_version': FORMAT_VERSION,
        'dataset': dataset, 'split': split, 'count': len(records), 'labelled': bool(labelled),
        'class_names': list(class_names), 'num_classes': len(class_names),
        'dtypes': DTYPES, 'shapes': shapes,
        'meaning': {'image': 'H x W x 3 RGB', 'label': 'H x W class index, 255 = ignore',
                    'depth': 'H x W metres, 0 = invalid'},
    }
    manifest.update(extra)
    manifest['skipped'] = list(skipped)
    manifest['records'] = list(records)
    return manifest


def write_json(path, obj):
    """Write `obj` as JSON to `path` atomically (temporary file, then rename)."""
    temporary = f'{path}.tmp'
    with open(temporary, 'w', encoding='utf-8') as f:
        json.dump(obj, f, indent=1)
        f.write('\n')
    os.replace(temporary, path)


def write_database(path, records, dataset, split, class_names, shard_size=4):
    """A database at `path` from in-memory `Record`s (tests, tools); atomic like the converter's."""
    path = str(path)
    temporary = path + PARTIAL_SUFFIX
    os.makedirs(temporary)
    entries = []
    for start in range(0, len(records), shard_size):
        name = shard_name(start // shard_size)
        with h5py.File(os.path.join(temporary, name), 'w') as h5file:
            for position in range(start, min(start + shard_size, len(records))):
                record = records[position]
                entry = {'key': str(position), 'sources': list(record.sources), 'shard': name, 'group': str(position)}
                entry.update(write_record(h5file, str(position), record))
                entries.append(entry)
    labelled = all(r.label is not None for r in records)
    write_json(os.path.join(temporary, MANIFEST), build_manifest(dataset, split, labelled, class_names, entries))
    os.rename(temporary, path)
    return path


def read_manifest(path):
    """The manifest of the database at `path`, with clear errors for anything that is not one."""
    path = str(path)
    manifest_path = os.path.join(path, MANIFEST)
    if not os.path.isfile(manifest_path):
        if os.path.isdir(path + PARTIAL_SUFFIX):
            raise DataError(path, 'incomplete database: its conversion was interrupted '
                                  f'({path + PARTIAL_SUFFIX} holds the part done); rerun the converter to finish it')
        if not os.path.exists(path):
            raise DataError(path, 'missing database directory (convert with `python -m data_prep <dataset> --root ... --out ...`)')
        raise DataError(manifest_path, 'missing manifest: not a database, or an incomplete one')
    try:
        with open(manifest_path, encoding='utf-8') as f:
            manifest = json.load(f)
    except ValueError as err:
        raise DataError(manifest_path, f'malformed manifest ({err})') from None
    if not isinstance(manifest, dict) or manifest.get('format') != FORMAT:
        raise DataError(manifest_path, f'not a {FORMAT} manifest')
    if manifest.get('format_version') != FORMAT_VERSION:
        raise DataError(manifest_path, f'database format version {manifest.get("format_version")}, '
                                       f'this code reads {FORMAT_VERSION}: convert again')
    return manifest


class Database:
    """Read access to one converted split: `len(db)`, `db[i] -> Record`, `db.read_window(...)`.

    Shard files are opened on first use and kept open (at most `max_open` at a time).
    """

    def __init__(self, path, manifest, max_open=32):
        self.path = str(path)
        self.manifest = manifest
        self.records = manifest['records']
        self._max_open = max_open
        self._open = collections.OrderedDict()

    # metadata --------------------------------------------------------------------
    dataset = property(lambda self: self.manifest['dataset'])
    split = property(lambda self: self.manifest['split'])
    class_names = property(lambda self: self.manifest['class_names'])
    labelled = property(lambda self: self.manifest['labelled'])

    def __len__(self):
        return len(self.records)

    def shape(self, index):
        """(H, W) of record `index`, from the manifest."""
        return tuple(self.records[self._check_index(index)]['shape'])

    def __repr__(self):
        return f'<Database {self.dataset}/{self.split}: {len(self)} records at {self.path}>'

    # data ------------------------------------------------------------------------
    def __getitem__(self, index):
        height, width = self.shape(index)
        return self.read_window(index, 0, 0, height, width)

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def read_window(self, index, top, left, height, width):
        """Record `index` cut to rows top:top+height, cols left:left+width (only those chunks are read)."""
        entry = self.records[self._check_index(index)]
        group = self._group(entry)
        rows, cols = slice(top, top + height), slice(left, left + width)
        try:
            image = group['image'][rows, cols]
            label = group['label'][rows, cols] if self.labelled else None
            depth = group['depth'][rows, cols]
        except (KeyError, OSError) as err:
            raise DataError(self._shard_path(entry), f'record {entry["group"]} unreadable ({err})') from None
        return Record(image, label, depth, entry['sources'])

    def close(self):
        while self._open:
            self._open.popitem()[1].close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __getstate__(self):  # open HDF5 handles do not travel to other processes
        return {'path': self.path, 'manifest': self.manifest, 'max_open': self._max_open}

    def __setstate__(self, state):
        self.__init__(state['path'], state['manifest'], state['max_open'])

    # internals -------------------------------------------------------------------
    def _check_index(self, index):
        index = int(index)
        if not 0 <= index < len(self.records):
            raise IndexError(f'record {index} out of range: {self.path} holds {len(self.records)}')
        return index

    def _shard_path(self, entry):
        return os.path.join(self.path, entry['shard'])

    def _group(self, entry):
        name = entry['shard']
        if name in self._open:
            self._open.move_to_end(name)
        else:
            path = self._shard_path(entry)
            if not os.path.isfile(path):
                raise DataError(path, 'missing shard: incomplete database, convert again')
            try:  # no chunk cache: random crops rarely touch a chunk twice
                self._open[name] = h5py.File(path, 'r', rdcc_nbytes=0)
            except OSError as err:
                raise DataError(path, f'unreadable shard ({err})') from None
            if len(self._open) > self._max_open:
                self._open.popitem(last=False)[1].close()
        try:
            return self._open[name][entry['group']]
        except KeyError:
            raise DataError(self._shard_path(entry), f'record group {entry["group"]} missing') from None


def open_database(path, dataset=None):
    """Open the database of one split at `path`; `dataset`: fail unless it holds that dataset."""
    manifest = read_manifest(path)
    manifest_path = os.path.join(str(path), MANIFEST)
    if dataset is not None and manifest['dataset'] != dataset:
        raise DataError(manifest_path, f'holds dataset {manifest["dataset"]!r}, expected {dataset!r}')
    if not manifest['records']:
        raise DataError(manifest_path, 'empty database: no records')
    if manifest['count'] != len(manifest['records']):
        raise DataError(manifest_path, f'incomplete database: count {manifest["count"]} but '
                                       f'{len(manifest["records"])} records listed')
    for shard in sorted({entry['shard'] for entry in manifest['records']}):
        if not os.path.isfile(os.path.join(str(path), shard)):
            raise DataError(os.path.join(str(path), shard), 'missing shard: incomplete database, convert again')
    return Database(path, manifest)
