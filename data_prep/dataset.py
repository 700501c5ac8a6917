"""The dataset interface every reader of an official layout implements, and the checks they share.

A dataset module (`data_prep.cityscapes`, `data_prep.sunrgbd`, `data_prep.nyuv2`) exposes:

``NAME``
    str, the name on the command line (``python -m data_prep NAME ...``).
``CLASS_NAMES``
    list of K class names, index = training label (paper: 19 / 37 / 40 classes, L342, L450, L527).
``SPLITS``
    dict split -> official record count, e.g. ``{'train': 2975, 'val': 500, 'test': 1525}``.
``LABELLED_SPLITS``
    tuple of the splits that have segmentation labels; also the splits converted by default.
``list_records(root, split) -> list[str]``
    Stable, sorted record keys: a source file path relative to `root` (Cityscapes, SUN-RGBD) or an
    index string (NYUv2). Raises `DataError` naming the file and the fault when the layout is wrong
    (missing directory or .mat, split indices out of range, ...).
``load_record(root, split, key) -> Record``
    One record, fully checked (use the helpers below). Raises `DataError(path, fault)`.

A dataset also has a sample writer, `data_prep/sample_<name>.py` (registered in
`data_prep.sample.SAMPLE_MODULES`; `data_prep.sample.write_sample` calls it), with
``write(out_dir, count=4, seed=0, progress=False) -> {split: keys}``: a small dataset in the
official layout and file formats that the converter must not be able to tell from the real
thing, and per split the record keys written (SUN-RGBD's and NYUv2's writers: a dict key ->
the `Record` the reader must return). The writer imports the reader (names, tables), never the
reverse. `data_prep.synth` renders box/plane scenes with agreeing label and depth, if it helps.

Keep dataset modules light: import only numpy, PIL, cv2, h5py, scipy, json/os/pathlib, and
`data_prep.errors` / `data_prep.dataset` (Cityscapes also imports `cityscapesscripts` for the
official label table): the converter's worker processes import them.

Shared helpers below, so that every reader names files and faults the same way: `require_file`,
`png_header`, `read_png` (colour type, bit depth, truncation), `read_json`, `check_same_size`,
`map_labels` (unknown ids are errors), `check_depth` (NaN / negative), `check_record`.
Label maps: 0..K-1, `IGNORE` (255) for unlabelled pixels. Depth: float32 metres, 0 = invalid.

Everything else (database writing, worker processes, resume, atomic rename, ``--skip-bad``,
manifest, checksums, progress) is `data_prep.convert`'s business.
"""

import json
import os
import struct
from typing import List, NamedTuple, Optional

import numpy as np

from data_prep.errors import DataError

#: Label value of pixels without a class (Caffe's ignore_label, docs/REFERENCE.md).
IGNORE = 255


class Record(NamedTuple):
    """One converted sample, as the database stores it and `Database[i]` returns it."""

    image: np.ndarray  # H x W x 3 uint8, RGB
    label: Optional[np.ndarray]  # H x W uint8, 0..K-1, 255 = ignore; None where the split has no labels
    depth: np.ndarray  # H x W float32, metres, 0 = invalid
    sources: List[str]  # the files read to make it


# --------------------------------------------------------------------------------------
# Files


def require_file(path):
    """`path` as a str; DataError('missing file') unless it is a regular file."""
    path = str(path)
    if not os.path.isfile(path):
        raise DataError(path, 'missing file' if not os.path.exists(path) else 'not a regular file')
    return path


_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
_PNG_COLOUR_TYPES = {0: 'grayscale', 2: 'RGB', 3: 'palette', 4: 'grayscale+alpha', 6: 'RGBA'}


def png_header(path):
    """(width, height, bit_depth, colour_type name) from the IHDR chunk; DataError if not a PNG."""
    path = require_file(path)
    with open(path, 'rb') as f:
        head = f.read(33)
    if len(head) < 33 or head[:8] != _PNG_SIGNATURE or head[12:16] != b'IHDR':
        raise DataError(path, 'not a PNG file (bad signature or header)')
    width, height, bit_depth, colour = struct.unpack('>IIBB', head[16:26])
    return width, height, bit_depth, _PNG_COLOUR_TYPES.get(colour, f'colour type {colour}')


def read_png(path, colour, bit_depth):
    """Decode a PNG that must be `colour` ('RGB' or 'grayscale') with `bit_depth` bits per sample.

    Returns H x W x 3 uint8 RGB, H x W uint8 or H x W uint16. Faults named: missing file,
    not a PNG, wrong colour type, wrong bit depth, truncated or corrupt data.
    """
    path = require_file(path)
    width, height, got_depth, got_colour = png_header(path)
    if got_colour != colour:
        raise DataError(path, f'wrong PNG colour type: {got_colour}, expected {colour}')
    if got_depth != bit_depth:
        raise DataError(path, f'wrong bit depth: {got_depth}-bit, expected {bit_depth}-bit')
    import cv2  # noqa: PLC0415 (kept local: cv2 is the heaviest import here)

    with open(path, 'rb') as f:
        data = np.frombuffer(f.read(), np.uint8)
    array = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if array is None or array.shape[:2] != (height, width):
        raise DataError(path, 'truncated or corrupt PNG data (cannot be decoded)')
    if colour == 'RGB':
        array = np.ascontiguousarray(array[:, :, ::-1])  # cv2 decodes to BGR
    return array


def read_json(path):
    """Parsed JSON; DataError for a missing or malformed file."""
    path = require_file(path)
    try:
        with open(path, encoding='utf-8') as f:
            return json.load(f)
    except (ValueError, UnicodeDecodeError) as err:
        raise DataError(path, f'malformed JSON ({err})') from None


# --------------------------------------------------------------------------------------
# Checks every reader applies to what it built


def check_same_size(path, shape, reference_path, reference_shape):
    """DataError on `path` unless its H x W equals that of `reference_path`."""
    if tuple(shape[:2]) != tuple(reference_shape[:2]):
        raise DataError(
            path,
            f'size {shape[1]}x{shape[0]} differs from {reference_path} '
            f'({reference_shape[1]}x{reference_shape[0]}), W x H',
        )


def map_labels(path, raw, lut, valid):
    """Map raw label ids through `lut` (256- or 65536-entry array to 0..K-1 / 255).

    `valid[id]` says whether `id` is in the dataset's table; any other id is a DataError on `path`.
    """
    ids = np.unique(raw)
    bad = ids[(ids >= len(valid)) | ~valid[np.minimum(ids, len(valid) - 1)]]
    if bad.size:
        raise DataError(
            path, f"label id {int(bad[0])} not in the dataset's table ({bad.size} unknown ids: {bad[:8].tolist()})"
        )
    return lut[raw].astype(np.uint8)


def check_depth(path, depth):
    """DataError on `path` for NaN, infinite or negative depth; returns float32 metres."""
    depth = np.asarray(depth, dtype=np.float32)
    if not np.isfinite(depth).all():
        raise DataError(path, f'{int((~np.isfinite(depth)).sum())} NaN or infinite depth values')
    if (depth < 0).any():
        raise DataError(path, f'{int((depth < 0).sum())} negative depth values (min {depth.min():g} m)')
    return depth


def check_record(record, num_classes):
    """The invariants of a `Record`, checked by the converter on every record a reader returns."""
    where = ', '.join(record.sources) or '<record>'
    image, label, depth = record.image, record.label, record.depth
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise DataError(where, f'image must be H x W x 3 uint8, got {image.shape} {image.dtype}')
    if depth.dtype != np.float32 or depth.shape != image.shape[:2]:
        raise DataError(where, f'depth must be {image.shape[:2]} float32, got {depth.shape} {depth.dtype}')
    check_depth(where, depth)
    if label is not None:
        if label.dtype != np.uint8 or label.shape != image.shape[:2]:
            raise DataError(where, f'label must be {image.shape[:2]} uint8, got {label.shape} {label.dtype}')
        bad = (label >= num_classes) & (label != IGNORE)
        if bad.any():
            raise DataError(where, f'label value {int(label[bad][0])} outside 0..{num_classes - 1} and 255')
