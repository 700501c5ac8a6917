"""MATLAB .mat files as the official SUN-RGBD and NYUv2 distributions ship them.

Two formats (docs/REFERENCE.md, Datasets):

- v5/v7 (`splits.mat`, `classMapping40.mat`, `SUNRGBDMeta.mat`, `allsplit.mat`): read with
  `scipy.io.loadmat` through `load_v5`, written with `write_v5`.
- v7.3 (`nyu_depth_v2_labeled.mat`, `SUNRGBD2Dseg.mat`): HDF5 with a 512-byte userblock holding the
  MAT header. MATLAB is column-major, so h5py sees every array with its dimensions reversed: a
  480 x 640 x 3 x N MATLAB array is an (N, 3, 640, 480) dataset. `matlab_array` undoes that with a
  transpose (never a reshape). Cell arrays and struct-array fields are datasets of object
  references into the `#refs#` group; chars are uint16 code units; large arrays are deflated
  (chunked, gzip), as MATLAB's `save -v7.3` does.

The writers take Python values for MATLAB values: numpy array -> numeric array of the same shape
(1-D -> 1 x N row), str -> char row, list -> 1 x N cell, dict -> scalar struct, `StructArray` ->
1 x N struct array.
"""

import functools
import os
import struct
import time

import numpy as np

from data_prep.errors import DataError

#: Size of the userblock in front of the HDF5 data of a v7.3 file; its first 128 bytes are the
#: MAT header (116 bytes text, 8 bytes subsystem offset, version 0x0200, endian indicator 'IM').
USERBLOCK_BYTES = 512
V73_SIGNATURE = b'MATLAB 7.3 MAT-file'
_MI_COMPRESSED = 15  # v5 data element type of a zlib-compressed variable

#: numpy dtype -> MATLAB_class attribute of v7.3 datasets.
_MATLAB_CLASSES = {
    np.dtype(np.float64): 'double',
    np.dtype(np.float32): 'single',
    np.dtype(np.uint8): 'uint8',
    np.dtype(np.uint16): 'uint16',
    np.dtype(np.uint32): 'uint32',
    np.dtype(np.int8): 'int8',
    np.dtype(np.int16): 'int16',
    np.dtype(np.int32): 'int32',
    np.dtype(np.uint64): 'uint64',
    np.dtype(np.int64): 'int64',
    np.dtype(np.bool_): 'logical',
}


class StructArray(list):
    """A 1 x N MATLAB struct array: a list of dicts with the same keys, in field order."""

    @property
    def fields(self):
        return list(self[0]) if self else []


def matlab_array(dataset):
    """The array of a v7.3 numeric dataset in MATLAB's dimension order (a transpose, not a reshape)."""
    return np.asarray(dataset[()]).transpose()


# --------------------------------------------------------------------------------------
# Writing v7.3


def write_v73(path, variables):
    """Write `variables` (name -> value, see the module docstring) as a MATLAB v7.3 file."""
    import h5py  # noqa: PLC0415

    with h5py.File(path, 'w', userblock_size=USERBLOCK_BYTES, libver='earliest') as f:
        writer = _V73Writer(f)
        for name, value in variables.items():
            writer.write(f, name, value)
    with open(path, 'r+b') as f:
        f.write(_v73_header())


def _v73_header():
    created = time.strftime('%a %b %d %H:%M:%S %Y', time.gmtime(0))
    text = f'MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: {created} HDF5 schema 1.00 .'
    return text.encode('ascii').ljust(116) + b' ' * 8 + b'\x00\x02' + b'IM'


class _V73Writer:
    """Writes values into an open h5py file the way MATLAB's v7.3 `save` lays them out."""

    def __init__(self, h5file):
        self.file = h5file
        self.refs = None
        self.count = 0

    def write(self, group, name, value):
        """Write `value` as `group[name]`; return the created object."""

        if isinstance(value, StructArray):
            obj = group.create_group(name)
            self._struct_attrs(obj, value.fields)
            for field in value.fields:
                self._references(obj, field, [element[field] for element in value])
            return obj
        if isinstance(value, dict):
            obj = group.create_group(name)
            self._struct_attrs(obj, list(value))
            for field, element in value.items():
                self.write(obj, field, element)
            return obj
        if isinstance(value, list):
            obj = self._references(group, name, value)
            obj.attrs['MATLAB_class'] = np.bytes_('cell')
            return obj
        if isinstance(value, str):
            codes = np.array([ord(c) for c in value], dtype=np.uint16).reshape(1, -1)
            obj = group.create_dataset(name, data=codes.transpose())
            obj.attrs['MATLAB_class'] = np.bytes_('char')
            obj.attrs['MATLAB_int_decode'] = np.int32(2)
            return obj
        array = np.asarray(value)
        if array.ndim < 2:
            array = array.reshape(1, -1)
        matlab_class = _MATLAB_CLASSES[array.dtype]
        stored = array.astype(np.uint8) if matlab_class == 'logical' else array
        compress = {'compression': 'gzip', 'compression_opts': 3} if stored.size >= 4096 else {}
        obj = group.create_dataset(name, data=stored.transpose(), **compress)
        if matlab_class == 'logical':
            obj.attrs['MATLAB_int_decode'] = np.int32(1)
        obj.attrs['MATLAB_class'] = np.bytes_(matlab_class)
        return obj

    def _references(self, group, name, values):
        """A 1 x N dataset of references to `values`, each written into `#refs#`."""
        import h5py  # noqa: PLC0415

        refs = np.empty((len(values), 1), dtype=h5py.ref_dtype)
        for i, element in enumerate(values):
            refs[i, 0] = self._referenced(element).ref
        return group.create_dataset(name, data=refs)

    def _referenced(self, value):
        """Write `value` into `#refs#` under a fresh name, as MATLAB does for cell/struct elements."""
        if self.refs is None:
            self.refs = self.file.create_group('#refs#')
        name = _ref_name(self.count)
        self.count += 1
        return self.write(self.refs, name, value)

    @staticmethod
    def _struct_attrs(obj, fields):
        import h5py  # noqa: PLC0415

        obj.attrs['MATLAB_class'] = np.bytes_('struct')
        names = np.empty(len(fields), dtype=object)
        names[:] = [np.frombuffer(f.encode('ascii'), dtype='S1') for f in fields]
        obj.attrs.create('MATLAB_fields', names, dtype=h5py.vlen_dtype(np.dtype('S1')))


def _ref_name(n):
    """MATLAB's names in `#refs#`: a, b, ..., z, ba, bb, ... (base 26, letters)."""
    letters = 'abcdefghijklmnopqrstuvwxyz'
    name = letters[n % 26]
    while n >= 26:
        n = n // 26
        name = letters[n % 26] + name
    return name


# --------------------------------------------------------------------------------------
# Reading v7.3


def open_v73(path):
    """Open a MATLAB v7.3 file read-only (an h5py.File, use it as a context manager).

    DataError for a missing file, a file that is not HDF5 (e.g. a v5 .mat, or a truncated file).
    """
    import h5py  # noqa: PLC0415

    path = str(path)
    if not os.path.isfile(path):
        raise DataError(path, 'missing file')
    with open(path, 'rb') as f:
        head = f.read(len(V73_SIGNATURE))
    try:
        h5file = h5py.File(path, 'r')
    except OSError as err:
        kind = 'a MATLAB v5/v7 file' if head.startswith(b'MATLAB 5.0') else 'truncated or not HDF5'
        raise DataError(path, f'not a readable MATLAB v7.3 (HDF5) file: {kind} ({err})') from None
    if head != V73_SIGNATURE:
        h5file.close()
        raise DataError(path, 'HDF5 file without the MATLAB 7.3 MAT-file header')
    return h5file


def v73_dataset(h5file, name, ndim=None, dtype=None):
    """`h5file[name]` as h5py sees it, checked: DataError when missing or of the wrong structure."""
    import h5py  # noqa: PLC0415

    path = h5file.filename
    try:
        obj = h5file[name]
    except (KeyError, OSError, RuntimeError) as err:
        raise DataError(path, f"variable '{name}' missing or unreadable ({err})") from None
    if not isinstance(obj, h5py.Dataset):
        raise DataError(path, f"'{name}' is a group, expected an array")
    if ndim is not None and obj.ndim != ndim:
        raise DataError(path, f"'{name}' has shape {obj.shape} (as h5py sees it), expected {ndim} dimensions")
    if dtype is not None and obj.dtype != np.dtype(dtype):
        raise DataError(path, f"'{name}' is {obj.dtype}, expected {np.dtype(dtype)}")
    return obj


def read_slice(dataset, index):
    """`dataset[index]`, turning HDF5 read failures (truncated file) into a DataError."""
    try:
        return np.asarray(dataset[index])
    except (OSError, RuntimeError, ValueError) as err:
        raise DataError(
            dataset.file.filename, f"cannot read '{dataset.name}'[{index}]: truncated or corrupt ({err})"
        ) from None


def dereference(h5file, ref, what):
    """The dataset an object reference points to; DataError when it is null or dangling."""
    import h5py  # noqa: PLC0415

    try:
        obj = h5file[ref]
    except (ValueError, KeyError, OSError, RuntimeError) as err:
        raise DataError(h5file.filename, f'{what}: unreadable object reference ({err})') from None
    if not isinstance(obj, h5py.Dataset):
        raise DataError(h5file.filename, f'{what}: reference points to a group, expected an array')
    return obj


def read_references(h5file, name, count=None):
    """A v7.3 cell array or struct-array field of object references, flat in MATLAB's linear order.

    DataError when it is missing, not references, or (with `count`) does not hold `count` elements.
    """
    import h5py  # noqa: PLC0415

    dataset = v73_dataset(h5file, name)
    if h5py.check_ref_dtype(dataset.dtype) is None:
        raise DataError(h5file.filename, f"'{name}' holds {dataset.dtype}, expected object references")
    refs = matlab_array(dataset).ravel(order='F')
    if count is not None and refs.size != count:
        raise DataError(h5file.filename, f"'{name}' has {refs.size} elements, expected {count}")
    return refs


def read_char(dataset):
    """A v7.3 char array (uint16 code units) as a str."""
    return ''.join(chr(c) for c in matlab_array(dataset).ravel(order='F'))


def read_cell_strings(h5file, name):
    """A v7.3 cell array of strings as a list of str, in MATLAB's linear order."""
    return [
        read_char(dereference(h5file, ref, f"'{name}' element {i + 1}"))
        for i, ref in enumerate(read_references(h5file, name))
    ]


# --------------------------------------------------------------------------------------
# v5 / v7


def write_v5(path, variables):
    """Write `variables` (see the module docstring) as a compressed MATLAB v7 (v5 format) file."""
    import scipy.io  # noqa: PLC0415

    scipy.io.savemat(path, {k: _to_scipy(v) for k, v in variables.items()}, do_compression=True, oned_as='row')


def _to_scipy(value):
    if isinstance(value, StructArray):
        out = np.empty((1, len(value)), dtype=[(f, object) for f in value.fields])
        for i, element in enumerate(value):
            for field in value.fields:
                out[0, i][field] = _to_scipy(element[field])
        return out
    if isinstance(value, dict):
        return {k: _to_scipy(v) for k, v in value.items()}
    if isinstance(value, list):
        cell = np.empty((1, len(value)), dtype=object)
        for i, element in enumerate(value):
            cell[0, i] = _to_scipy(element)
        return cell
    return value


def load_v5(path, names, optional=()):
    """Variables `names` (and those of `optional` present) of a v5/v7 .mat file, as
    `scipy.io.loadmat(squeeze_me=True, struct_as_record=False)` gives them.

    Structs come back as `scipy.io.matlab.mat_struct` (attribute access), cells as object arrays.
    DataError for a missing, truncated or unparsable file or a missing variable. Results are
    cached per process while the file is unchanged (SUNRGBDMeta.mat is large): do not modify them.
    """
    path = str(path)
    if not os.path.isfile(path):
        raise DataError(path, 'missing file')
    stat = os.stat(path)
    content = _load_v5(path, (stat.st_mtime_ns, stat.st_size), tuple(names) + tuple(optional))
    for name in names:
        if name not in content:
            raise DataError(path, f"variable '{name}' missing")
    return content


@functools.lru_cache(maxsize=8)
def _load_v5(path, stamp, names):
    import scipy.io  # noqa: PLC0415

    _check_v5_complete(path)
    try:
        return scipy.io.loadmat(
            path, variable_names=list(names), squeeze_me=True, struct_as_record=False, chars_as_strings=True
        )
    except NotImplementedError:
        raise DataError(path, 'a MATLAB v7.3 (HDF5) file, expected a v5/v7 .mat') from None
    except Exception as err:
        raise DataError(path, f'truncated or corrupt .mat file ({type(err).__name__}: {err})') from None


def _check_v5_complete(path):
    """DataError when the data elements after the 128-byte header run past the end of the file.

    scipy reads a cut file silently up to the cut, dropping the variables after it.
    """
    size = os.path.getsize(path)
    with open(path, 'rb') as f:
        header = f.read(128)
        if len(header) < 128:
            raise DataError(path, f'truncated .mat file ({size} bytes, shorter than its header)')
        order = '<' if header[126:128] == b'IM' else '>'
        if struct.unpack(order + 'H', header[124:126])[0] == 0x0200:
            raise DataError(path, 'a MATLAB v7.3 (HDF5) file, expected a v5/v7 .mat')
        position = 128
        while position < size:
            f.seek(position)
            tag = f.read(8)
            if len(tag) < 8:
                raise DataError(path, f'truncated .mat file (cut inside the data element at byte {position})')
            kind, nbytes = struct.unpack(order + 'II', tag)
            if kind >> 16:  # small data element: type, size and data packed in 8 bytes
                position += 8
                continue
            end = position + 8 + nbytes
            if end > size:
                raise DataError(
                    path, f'truncated .mat file (the data element at byte {position} needs {end - size} more bytes)'
                )
            position = end if kind == _MI_COMPRESSED else end + (-end) % 8


def as_list(value):
    """A loaded MATLAB array/cell/struct array as a flat list (squeeze_me turns 1 x 1 into a scalar)."""
    if isinstance(value, np.ndarray):
        return list(value.ravel(order='F'))
    return [value]


def as_integers(path, name, value, low, high):
    """A loaded numeric vector as int64, checked to be whole numbers in low..high (DataError)."""
    array = np.asarray(value)
    if (
        array.dtype == object
        or not np.issubdtype(array.dtype, np.number)
        or array.ndim > 2
        or (array.ndim == 2 and min(array.shape) != 1)
    ):
        raise DataError(path, f"'{name}' must be a numeric vector, got {array.dtype} of shape {array.shape}")
    array = np.atleast_1d(array).ravel()
    if not np.isfinite(array).all() or (array != np.round(array)).any():
        raise DataError(path, f"'{name}' holds values that are not whole numbers")
    out = array.astype(np.int64)
    bad = (out < low) | (out > high)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(path, f"'{name}' entry {i + 1} = {out[i]} out of range {low}..{high}")
    return out
