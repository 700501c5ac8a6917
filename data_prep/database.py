"""The database of one split: an LMDB of zlib-compressed 64 x 64 tiles, plus `manifest.json`.

Layout of `data/<dataset>/<split>/`::

    manifest.json   dataset, split, count, shapes, dtypes, class names, per record its key,
                    sources, shape, sha256 and id; converter version; skipped records
    skipped.json    only when --skip-bad skipped something: key, file and fault of each
    data.mdb        LMDB: b'<id>/<map>/<ty>/<tx>' -> zlib(tile bytes) for map in image
                    (H x W x 3 uint8 RGB), label (H x W uint8, 255 = ignore; labelled splits only),
                    depth (H x W float32 metres, 0 = invalid); b'meta/<id>' -> JSON entry

Why (figures: `bench/data.py`, docs/PERFORMANCE.md): training reads many random 321 x 321
crops of 2048 x 1024 records (16 MB raw each). Tiles let a crop decompress only what it touches
(a few ms) while the database stays about 3x smaller than raw arrays; PNG values would be decoded
whole for every crop. HDF5 chunks do the same job as fast, but h5py cannot be imported inside
the `caffe` command-line tool (its bundled HDF5 2.0 clashes with the system HDF5 1.10 that Caffe
links), and the data layer must run there; py-lmdb carries LMDB with hidden symbols. LMDB also
commits each record atomically, which makes conversion resumable after a kill.
"""

import hashlib
import json
import os
import resource
import zlib

import lmdb
import numpy as np

from data_prep.dataset import Record
from data_prep.errors import DataError


class StorageError(DataError):
    """A database that cannot be written (disk full, file too large, read-only): the environment's
    fault, not the input's, so a converter keeps what it committed for a rerun to resume."""


FORMAT = 'hybridnet-lmdb-tiles'
FORMAT_VERSION = 1
MANIFEST = 'manifest.json'
SKIP_REPORT = 'skipped.json'
PARTIAL_SUFFIX = '.partial'
TILE = 64
ZLIB_LEVEL = 1
MAPS = {'image': np.uint8, 'label': np.uint8, 'depth': np.float32}
DTYPES = {name: np.dtype(dtype).name for name, dtype in MAPS.items()}
#: LMDB map of a new database; it doubles when full, so readers map about the data's size.
INITIAL_MAP_SIZE = 1 << 28


class DamagedRecord(DataError):
    """A record whose stored bytes are damaged; `detail` is the fault alone (which tile, how)."""

    def __init__(self, path, fault, detail=None):
        super().__init__(path, fault)
        self.detail = fault if detail is None else detail

    def __reduce__(self):  # travels from the data layer's worker processes
        return (DamagedRecord, (self.path, self.fault, self.detail))


# ---------------------------------------------------------------------------------- records as tiles


def record_checksum(record):
    """sha256 over the shapes and bytes of image, label (if any) and depth."""
    digest = hashlib.sha256()
    for name in MAPS:
        array = getattr(record, name)
        if array is not None:
            digest.update(f'{name}{array.shape}{array.dtype}'.encode())
            digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def _tile_key(record_id, name, ty, tx):
    return f'{record_id:08d}/{name}/{ty:03d}/{tx:03d}'.encode()


def _meta_key(record_id):
    return f'meta/{record_id:08d}'.encode()


def encode_record(record_id, record, key, sources):
    """(manifest entry, {LMDB key: value}) of one record: its compressed tiles and its entry."""
    height, width = record.image.shape[:2]
    values = {}
    for name in MAPS:
        array = getattr(record, name)
        if array is None:
            continue
        for ty in range(0, -(-height // TILE)):
            for tx in range(0, -(-width // TILE)):
                tile = np.ascontiguousarray(array[ty * TILE : (ty + 1) * TILE, tx * TILE : (tx + 1) * TILE])
                values[_tile_key(record_id, name, ty, tx)] = zlib.compress(tile.tobytes(), ZLIB_LEVEL)
    entry = {
        'id': record_id,
        'key': key,
        'sources': list(sources),
        'shape': [height, width],
        'sha256': record_checksum(record),
    }
    values[_meta_key(record_id)] = json.dumps(entry).encode()
    return entry, values


class Writer:
    """The LMDB of a database being built; each record (or skip note) lands in one transaction."""

    def __init__(self, path):
        # metasync=False: one fsync per record instead of two; a crash of the machine may undo the
        # last record, never corrupt the database (LMDB's MDB_NOMETASYNC); close() syncs fully
        self.data = os.path.join(str(path), 'data.mdb')
        try:
            self.env = lmdb.open(
                str(path), map_size=INITIAL_MAP_SIZE, subdir=True, readahead=False, meminit=False, metasync=False
            )
        except lmdb.Error as err:
            raise StorageError(self.data, f'cannot open the LMDB for writing ({_lmdb_fault(err)})') from None

    def put(self, values):
        """Commit `values` in one transaction, growing the map (x2) when it is full.

        A write the disk refuses (full, file too large, read-only, I/O error) is a StorageError."""
        while True:
            try:
                with self.env.begin(write=True) as txn:
                    for key, value in values.items():
                        txn.put(key, value)
                return
            except lmdb.MapFullError:
                self.env.set_mapsize(2 * self.env.info()['map_size'])
            except lmdb.MapResizedError:  # another writer process grew it
                self.env.set_mapsize(0)
            except lmdb.Error as err:
                needed = sum(len(key) + len(value) for key, value in values.items())
                raise StorageError(self.data, _write_fault(err, self.data, needed)) from None

    def put_skipped(self, record_id, note):
        self.put({f'skip/{record_id:08d}'.encode(): json.dumps(note).encode()})

    def done(self):
        """(entries, skip notes) committed so far, each sorted by record id."""
        found = {'meta/': [], 'skip/': []}
        with self.env.begin() as txn:
            for prefix, items in found.items():
                cursor = txn.cursor()
                if cursor.set_range(prefix.encode()):
                    for key, value in cursor:
                        if not key.startswith(prefix.encode()):
                            break
                        items.append(json.loads(value))
        return found['meta/'], found['skip/']

    def close(self):
        try:
            self.env.sync(True)
        except lmdb.Error as err:
            raise StorageError(self.data, f'cannot write ({_lmdb_fault(err)})') from None
        finally:
            self.env.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _write_fault(err, data, needed):
    """Why LMDB could not write `needed` more bytes to `data`: LMDB reports a short write on a full
    disk or past a file-size limit as EIO, so look at the free space and the limit."""
    said = _lmdb_fault(err)
    try:
        fs = os.statvfs(os.path.dirname(data))
        free = fs.f_bavail * fs.f_frsize
        size = os.path.getsize(data)
    except OSError:
        return f'cannot write ({said})'
    if free < 2 * needed + (1 << 20):
        return f'disk full: {free} bytes free on its file system, a record needs about {needed} ({said})'
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY and size + needed > limit:
        return f'file size limit reached: {size} of at most {limit} bytes (ulimit -f; {said})'
    return f'cannot write ({said})'


def _lmdb_fault(err):
    """py-lmdb's message without the path it sometimes starts with (the DataError names the file)."""
    text = str(err)
    return text.split(': ', 1)[1] if text.startswith('/') and ': ' in text else text


# ---------------------------------------------------------------------------------- manifest


def build_manifest(dataset, split, labelled, class_names, records, skipped=(), **extra):
    """The manifest of a database holding `records` (entries from `encode_record`)."""
    shapes = {}
    for entry in records:
        shape = 'x'.join(map(str, entry['shape']))
        shapes[shape] = shapes.get(shape, 0) + 1
    manifest = {
        'format': FORMAT,
        'format_version': FORMAT_VERSION,
        'tile': TILE,
        'dataset': dataset,
        'split': split,
        'count': len(records),
        'labelled': bool(labelled),
        'class_names': list(class_names),
        'num_classes': len(class_names),
        'dtypes': DTYPES,
        'shapes': shapes,
        'meaning': {
            'image': 'H x W x 3 RGB',
            'label': 'H x W class index, 255 = ignore',
            'depth': 'H x W metres, 0 = invalid',
        },
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


def seal(directory, manifest):
    """Finish a database built in `directory`: manifest in, LMDB lock file out (readers need none)."""
    write_json(os.path.join(directory, MANIFEST), manifest)
    lock = os.path.join(directory, 'lock.mdb')
    if os.path.exists(lock):
        os.remove(lock)


def write_database(path, records, dataset, split, class_names):
    """A database at `path` from in-memory `Record`s (tests, tools); atomic like the converter's."""
    path = str(path)
    temporary = path + PARTIAL_SUFFIX
    os.makedirs(temporary)
    writer = Writer(temporary)
    entries = []
    for record_id, record in enumerate(records):
        entry, values = encode_record(record_id, record, str(record_id), record.sources)
        writer.put(values)
        entries.append(entry)
    writer.close()
    labelled = all(r.label is not None for r in records)
    seal(temporary, build_manifest(dataset, split, labelled, class_names, entries))
    os.rename(temporary, path)
    return path


def read_manifest(path):
    """The manifest of the database at `path`, with clear errors for anything that is not one."""
    path = str(path)
    manifest_path = os.path.join(path, MANIFEST)
    if not os.path.isfile(manifest_path):
        if os.path.isdir(path + PARTIAL_SUFFIX):
            raise DataError(
                path,
                'incomplete database: its conversion was interrupted '
                f'({path + PARTIAL_SUFFIX} holds the part done); rerun the converter to finish it',
            )
        if not os.path.exists(path):
            raise DataError(
                path, 'missing database directory (convert with `python -m data_prep <dataset> --root ... --out ...`)'
            )
        raise DataError(manifest_path, 'missing manifest: not a database, or an incomplete one')
    try:
        with open(manifest_path, encoding='utf-8') as f:
            manifest = json.load(f)
    except ValueError as err:
        raise DataError(manifest_path, f'malformed manifest ({err})') from None
    if not isinstance(manifest, dict) or manifest.get('format') != FORMAT:
        raise DataError(manifest_path, f'not a {FORMAT} manifest')
    if manifest.get('format_version') != FORMAT_VERSION or manifest.get('tile') != TILE:
        raise DataError(
            manifest_path,
            f'database format version {manifest.get("format_version")}, '
            f'this code reads {FORMAT_VERSION}: convert again',
        )
    return manifest


# ---------------------------------------------------------------------------------- reading


class Database:
    """Read access to one converted split: `len(db)`, `db[i] -> Record`, `db.read_window(...)`.

    Thread-safe for reading; the LMDB is opened on first use in each process.
    """

    def __init__(self, path, manifest):
        self.path = str(path)
        self.manifest = manifest
        self.records = manifest['records']
        self._env, self._pid = None, None

    dataset = property(lambda self: self.manifest['dataset'])
    split = property(lambda self: self.manifest['split'])
    class_names = property(lambda self: self.manifest['class_names'])
    labelled = property(lambda self: self.manifest['labelled'])

    def __len__(self):
        return len(self.records)

    def __repr__(self):
        return f'<Database {self.dataset}/{self.split}: {len(self)} records at {self.path}>'

    def shape(self, index):
        """(H, W) of record `index`, from the manifest."""
        return tuple(self.records[self._check_index(index)]['shape'])

    def __getitem__(self, index):
        height, width = self.shape(index)
        return self.read_window(index, 0, 0, height, width)

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def read_window(self, index, top, left, height, width):
        """Record `index` cut to rows top:top+height, cols left:left+width (only those tiles are read)."""
        entry = self.records[self._check_index(index)]
        full_height, full_width = entry['shape']
        if not (
            0 <= top
            and 0 <= left
            and 0 < height
            and 0 < width
            and top + height <= full_height
            and left + width <= full_width
        ):
            raise IndexError(
                f'window {top}:{top + height}, {left}:{left + width} outside record {index} '
                f'({full_height} x {full_width})'
            )
        maps = {}
        try:
            with self._environment().begin(buffers=True) as txn:
                for name, dtype in MAPS.items():
                    if name == 'label' and not self.labelled:
                        maps[name] = None
                        continue
                    shape = (height, width, 3) if name == 'image' else (height, width)
                    maps[name] = self._assemble(txn, entry, name, dtype, shape, top, left)
        except lmdb.Error as err:
            raise self.damaged(entry, f'unreadable LMDB ({_lmdb_fault(err)})') from None
        return Record(maps['image'], maps['label'], maps['depth'], entry['sources'])

    def source_of(self, entry):
        """The first source file of a manifest entry, under the root it was converted from."""
        if not entry.get('sources'):
            return 'no source listed'
        return os.path.join(self.manifest.get('source_root', ''), entry['sources'][0])

    def damaged(self, entry, fault):
        """The DataError of a damaged record: the database, the record's key and source file, the fault."""
        source = self.source_of(entry)
        return DamagedRecord(
            self.path,
            f'damaged record {entry["id"]} ({entry["key"]}, from {source}): {fault}; '
            f'`python -m data_prep verify --db {self.path}` lists every damaged record, convert again to repair',
            detail=fault,
        )

    def _assemble(self, txn, entry, name, dtype, shape, top, left):
        out = np.empty(shape, dtype)
        full_height, full_width = entry['shape']
        bottom, right = top + shape[0], left + shape[1]
        for ty in range(top // TILE, (bottom - 1) // TILE + 1):
            y0, y1 = ty * TILE, min((ty + 1) * TILE, full_height)
            for tx in range(left // TILE, (right - 1) // TILE + 1):
                x0, x1 = tx * TILE, min((tx + 1) * TILE, full_width)
                tile = self._tile(txn, entry, name, dtype, (ty, tx), (y1 - y0, x1 - x0) + shape[2:])
                ya, yb, xa, xb = max(top, y0), min(bottom, y1), max(left, x0), min(right, x1)
                out[ya - top : yb - top, xa - left : xb - left] = tile[ya - y0 : yb - y0, xa - x0 : xb - x0]
        return out

    def _tile(self, txn, entry, name, dtype, where, shape):
        value = txn.get(_tile_key(entry['id'], name, *where))
        if value is None:
            raise self.damaged(entry, f'{name} tile {where} is missing')
        try:
            raw = zlib.decompress(value)
        except zlib.error as err:
            raise self.damaged(entry, f'{name} tile {where} does not decompress ({err})') from None
        expected = int(np.prod(shape)) * np.dtype(dtype).itemsize
        if len(raw) != expected:
            raise self.damaged(entry, f'{name} tile {where} holds {len(raw)} bytes, {expected} expected')
        return np.frombuffer(raw, dtype).reshape(shape)

    def _environment(self):
        if self._env is None or self._pid != os.getpid():  # an LMDB handle must not cross a fork
            self._env, self._pid = _shared_environment(self.path), os.getpid()
        return self._env

    def _check_index(self, index):
        index = int(index)
        if not 0 <= index < len(self.records):
            raise IndexError(f'record {index} out of range: {self.path} holds {len(self.records)}')
        return index

    def close(self):
        self._env = None  # the environment itself stays open for other readers of this process

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __getstate__(self):  # the LMDB handle does not travel to other processes
        return {'path': self.path, 'manifest': self.manifest}

    def __setstate__(self, state):
        self.__init__(state['path'], state['manifest'])


_ENVIRONMENTS = {}


def _shared_environment(path):
    """One read-only LMDB environment per process and file (LMDB forbids opening one twice)."""
    data = os.path.join(path, 'data.mdb')
    try:
        stat = os.stat(data)
    except OSError:
        raise DataError(data, 'missing LMDB data file: incomplete database, convert again') from None
    pid = os.getpid()
    for inherited in [k for k in _ENVIRONMENTS if k[0] != pid]:  # forked: drop the parent's handles
        _ENVIRONMENTS.pop(inherited).close()
    key = (pid, stat.st_dev, stat.st_ino)
    if key not in _ENVIRONMENTS:
        try:
            env = lmdb.open(path, readonly=True, lock=False, readahead=False, subdir=True)
            needed = (env.info()['last_pgno'] + 1) * env.stat()['psize']
        except lmdb.Error as err:
            raise DataError(data, f'unreadable LMDB ({_lmdb_fault(err)}): damaged database, convert again') from None
        if stat.st_size < needed:  # pages past the end would be a SIGBUS at the first read
            env.close()
            raise DataError(
                data,
                f'truncated: {stat.st_size} bytes, its LMDB needs {needed} (an incomplete copy?): '
                'copy it again or convert again',
            )
        _ENVIRONMENTS[key] = env
    return _ENVIRONMENTS[key]


def _check_entries(database, env):
    """DataError unless the LMDB holds as many entries as the manifest describes (tiles, entries, skip notes)."""
    manifest = database.manifest
    tiles = sum(-(-h // TILE) * -(-w // TILE) for h, w in (r['shape'] for r in manifest['records']))
    least = 2 * tiles + len(manifest['records']) + len(manifest.get('skipped', []))
    most = least + tiles  # label tiles: all of them in a labelled split, some or none otherwise
    if manifest['labelled']:
        least = most
    entries = env.stat()['entries']
    if not least <= entries <= most:
        raise DataError(
            os.path.join(database.path, 'data.mdb'),
            f'holds {entries} LMDB entries, {database.path}/{MANIFEST} describes '
            f'{least if least == most else f"{least} to {most}"} ({len(database)} records): '
            'the two do not belong together or the database is damaged; convert again',
        )


def open_database(path, dataset=None):
    """Open the database of one split at `path`; `dataset`: fail unless it holds that dataset."""
    manifest = read_manifest(path)
    manifest_path = os.path.join(str(path), MANIFEST)
    if dataset is not None and manifest['dataset'] != dataset:
        raise DataError(manifest_path, f'holds dataset {manifest["dataset"]!r}, expected {dataset!r}')
    if not manifest['records']:
        raise DataError(manifest_path, 'empty database: no records')
    if manifest['count'] != len(manifest['records']):
        raise DataError(
            manifest_path,
            f'incomplete database: count {manifest["count"]} but {len(manifest["records"])} records listed',
        )
    database = Database(path, manifest)
    # a missing, unreadable, truncated or mismatched data.mdb fails here, not in the first batch
    _check_entries(database, database._environment())
    return database


def verify_records(database):
    """Per record of `database`, in order: (manifest entry, None) when its bytes match the
    manifest's sha256, else (entry, the fault); reads every tile once."""
    for index, entry in enumerate(database.records):
        try:
            record = database[index]
        except DamagedRecord as err:
            yield entry, err.detail
            continue
        checksum = record_checksum(record)
        yield (
            entry,
            None
            if checksum == entry['sha256']
            else f'sha256 {checksum[:12]}..., the manifest says {entry["sha256"][:12]}...',
        )
