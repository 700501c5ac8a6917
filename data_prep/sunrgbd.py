"""SUN-RGBD (paper sec. 5.2, L447-454): the official SUNRGBDtoolbox metadata and image tree -> records.

Layout under `--root`, the two official archives unpacked side by side (docs/REFERENCE.md, Datasets):

    SUNRGBDtoolbox/Metadata/SUNRGBDMeta.mat       v7: struct array SUNRGBDMeta, one frame each
                                                  (rgbpath, depthpath, rgbname, depthname, K, ...)
    SUNRGBDtoolbox/Metadata/SUNRGBD2Dseg.mat      v7.3: SUNRGBD2Dseg(i).seglabel, H x W label map
                                                  of frame i (0 unlabeled, 1..37 = CLASS_NAMES)
    SUNRGBDtoolbox/traintestSUNRGBD/allsplit.mat  alltrain (5285) / alltest (5050): frame directories
    SUNRGBD/<sensor>/.../<frame>/image/<rgbname>.jpg and depth_bfx/<depthname>.png

The meta and split files hold absolute paths of the authors' machine
(`/n/fs/sun3d/data/SUNRGBD/kv1/NYUdata/NYU0001/...`); everything from their `SUNRGBD/` component on
is taken relative to `--root`. Depth comes from the filled `depth_bfx` maps: uint16 PNGs whose bits
are rotated left by 3; rotated back they are millimetres, capped at 10 m, raw 0 invalid
(the toolbox's read3dPoints.m). Labels are shifted to 0..36, unlabeled -> 255.
"""

import functools
import os
from pathlib import PurePosixPath
from typing import NamedTuple

import numpy as np

from data_prep import matlab
from data_prep.dataset import IGNORE, Record, check_same_size, map_labels, read_png, require_file
from data_prep.errors import DataError

NAME = 'sunrgbd'
#: The 37 classes of SUNRGBD2Dseg's seglabel ids 1..37 (seg37list), training label = id - 1.
CLASS_NAMES = [
    'wall',
    'floor',
    'cabinet',
    'bed',
    'chair',
    'sofa',
    'table',
    'door',
    'window',
    'bookshelf',
    'picture',
    'counter',
    'blinds',
    'desk',
    'shelves',
    'curtain',
    'dresser',
    'pillow',
    'mirror',
    'floor_mat',
    'clothes',
    'ceiling',
    'books',
    'fridge',
    'tv',
    'paper',
    'towel',
    'shower_curtain',
    'box',
    'whiteboard',
    'person',
    'night_stand',
    'toilet',
    'sink',
    'lamp',
    'bathtub',
    'bag',
]
SPLITS = {'train': 5285, 'test': 5050}  # paper L453
LABELLED_SPLITS = ('train', 'test')

META_FILE = 'SUNRGBDtoolbox/Metadata/SUNRGBDMeta.mat'
SEG_FILE = 'SUNRGBDtoolbox/Metadata/SUNRGBD2Dseg.mat'
SPLIT_FILE = 'SUNRGBDtoolbox/traintestSUNRGBD/allsplit.mat'
SPLIT_VARIABLES = {'train': 'alltrain', 'test': 'alltest'}
#: The path component from which the authors' absolute paths are taken relative to --root.
DATA_DIR = 'SUNRGBD'
DEPTH_DIR = 'depth_bfx'
MAX_DEPTH = 10.0  # metres, docs/REFERENCE.md

#: raw seglabel id -> training label; ids 0..37 are the table.
_LUT = np.array([IGNORE] + list(range(len(CLASS_NAMES))), np.uint8)
_VALID = np.ones(len(_LUT), bool)


class Frame(NamedTuple):
    """One entry of SUNRGBDMeta, with its paths relative to --root."""

    index: int  # 1-based position in SUNRGBDMeta and SUNRGBD2Dseg
    directory: str  # SUNRGBD/<sensor>/.../<frame>
    rgb: str  # <directory>/image/<name>.jpg: the record key
    depth: str  # <directory>/depth_bfx/<name>.png


def list_records(root, split):
    """Sorted keys (image paths relative to `root`) of the frames that allsplit.mat puts in `split`."""
    split_path = os.path.join(root, SPLIT_FILE)
    variable = SPLIT_VARIABLES[split]
    others = [v for v in SPLIT_VARIABLES.values() if v != variable]
    content = matlab.load_v5(split_path, [variable], optional=others)
    by_directory = {frame.directory: frame for frame in frames(root)}
    keys = _split_keys(split_path, variable, content[variable], by_directory)
    for other in (v for v in others if v in content):
        shared = sorted(keys & _split_keys(split_path, other, content[other], by_directory))
        if shared:
            raise DataError(
                split_path,
                f"frame {shared[0]} is in both '{variable}' and '{other}' ({len(shared)} shared): the splits overlap",
            )
    return sorted(keys)


def _split_keys(split_path, variable, value, by_directory):
    """The image keys of one split variable's frame directories; each must be a frame, and once."""
    keys = set()
    for i, entry in enumerate(matlab.as_list(value)):
        where = f'{variable} entry {i + 1}'
        if not isinstance(entry, str):
            raise DataError(split_path, f'{where} is {type(entry).__name__}, expected a directory path')
        frame = by_directory.get(relative_path(split_path, where, entry))
        if frame is None:
            raise DataError(split_path, f'{where} ({entry}) is not a frame of {META_FILE}')
        if frame.rgb in keys:
            raise DataError(split_path, f'{where} ({entry}) names frame {frame.directory} a second time')
        keys.add(frame.rgb)
    return keys


def load_record(root, split, key):
    """The frame whose image is `key`: its JPEG, depth_bfx depth and SUNRGBD2Dseg label map."""
    all_frames = frames(root)
    frame = next((f for f in all_frames if f.rgb == key), None)
    if frame is None:
        raise DataError(os.path.join(root, META_FILE), f'no frame with image {key}')
    image_path, depth_path = os.path.join(root, frame.rgb), os.path.join(root, frame.depth)
    image = read_jpeg(image_path)
    raw_depth = read_png(depth_path, 'grayscale', 16)
    check_same_size(depth_path, raw_depth.shape, image_path, image.shape)
    seg_path, raw_label = read_seglabel(root, frame.index, len(all_frames))
    where = f'{seg_path} (SUNRGBD2Dseg({frame.index}).seglabel)'
    check_same_size(where, raw_label.shape, image_path, image.shape)
    label = map_labels(where, raw_label, _LUT, _VALID)
    return Record(
        image, label, decode_depth(raw_depth), [image_path, depth_path, seg_path, os.path.join(root, META_FILE)]
    )


def decode_depth(raw):
    """depth_bfx uint16 -> float32 metres: bits rotated right by 3 (uint16), / 1000, capped at 10 m.

    Raw 0 stays 0 (invalid).
    """
    raw = np.asarray(raw, np.uint16)
    millimetres = (raw >> 3) | (raw << 13)
    return np.minimum(millimetres.astype(np.float32) / np.float32(1000), np.float32(MAX_DEPTH))


def read_jpeg(path):
    """An RGB JPEG as H x W x 3 uint8; DataError when missing, truncated or not a colour image."""
    from PIL import Image  # noqa: PLC0415

    path = require_file(path)
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode not in ('RGB', 'L'):
                raise DataError(path, f'image mode {image.mode}, expected RGB')
            return np.asarray(image.convert('RGB'))
    except (OSError, SyntaxError, ValueError) as err:
        raise DataError(path, f'truncated or corrupt image ({err})') from None


def read_seglabel(root, index, count):
    """(path, raw label map H x W int64) of frame `index` (1-based) from SUNRGBD2Dseg.mat."""
    path = os.path.join(root, SEG_FILE)
    with matlab.open_v73(path) as h5file:
        refs = matlab.read_references(h5file, 'SUNRGBD2Dseg/seglabel', count)
        what = f'SUNRGBD2Dseg({index}).seglabel'
        dataset = matlab.dereference(h5file, refs[index - 1], what)
        if dataset.attrs.get('MATLAB_empty', 0):
            raise DataError(path, f'{what} is empty: the frame has no label map')
        if dataset.ndim != 2 or not np.issubdtype(dataset.dtype, np.number):
            raise DataError(path, f'{what} is {dataset.dtype} {dataset.shape}, expected a 2-D numeric map')
        label = matlab.read_slice(dataset, ()).transpose()
    if np.issubdtype(label.dtype, np.floating):
        if not np.isfinite(label).all() or (label != np.round(label)).any():
            raise DataError(path, f'{what} holds ids that are not whole numbers')
    bad = (label < 0) | (label > len(CLASS_NAMES))
    if bad.any():
        raise DataError(path, f"{what}: label id {label[bad][0]:g} not in the dataset's table (0..37)")
    return path, label.astype(np.int64)


def relative_path(path, where, authors_path):
    """The part of one of the authors' absolute paths from its SUNRGBD/ component on."""
    parts = PurePosixPath(authors_path.strip()).parts
    if DATA_DIR not in parts:
        raise DataError(path, f'{where}: path {authors_path!r} has no {DATA_DIR}/ component')
    return '/'.join(parts[parts.index(DATA_DIR) :])


def frames(root):
    """The frames of SUNRGBDMeta.mat, in order (cached per process while the file is unchanged)."""
    path = os.path.join(root, META_FILE)
    require_file(path)
    stat = os.stat(path)
    return _frames_of(path, (stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=4)
def _frames_of(path, stamp):
    frames = []
    for i, entry in enumerate(matlab.as_list(matlab.load_v5(path, ['SUNRGBDMeta'])['SUNRGBDMeta'])):
        where = f'SUNRGBDMeta({i + 1})'
        fields = {}
        for field in ('rgbpath', 'depthpath'):
            value = getattr(entry, field, None)
            if not isinstance(value, str):
                raise DataError(path, f"{where} has no '{field}' path")
            fields[field] = PurePosixPath(relative_path(path, where, value))
        rgb, depth = fields['rgbpath'], fields['depthpath']
        frames.append(Frame(i + 1, str(rgb.parent.parent), str(rgb), str(depth.parent.parent / DEPTH_DIR / depth.name)))
    return tuple(frames)
