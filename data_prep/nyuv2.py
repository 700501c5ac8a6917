"""NYU Depth v2 (paper sec. 5.3, L527-532): the labelled subset's .mat files -> records.

Layout under `--root`, the three files as distributed (docs/REFERENCE.md, Datasets):

    nyu_depth_v2_labeled.mat   v7.3; as h5py sees it: images (1449, 3, 640, 480) uint8,
                               depths (1449, 640, 480) float32 metres,
                               labels (1449, 640, 480) uint16 (0 unlabeled, 1..894)
    splits.mat                 v5: trainNdxs (795), testNdxs (654), 1-based image indices
    classMapping40.mat         v5: mapClass (1 x 894) -> 1..40, className (the 40 names)

MATLAB stores column-major, so image i is `images[i - 1].transpose(2, 1, 0)` (480 x 640 x 3) and
its maps `depths[i - 1].T`: transposed, never reshaped. Labels go 894 -> 40 through mapClass and
are shifted to 0..39, unlabeled -> 255. Depth is used as stored (filled maps, metres).
Record keys are the 1-based indices of splits.mat, zero-padded to 4 digits so they sort.
"""

import os

import numpy as np

from data_prep import matlab
from data_prep.dataset import IGNORE, Record, check_depth, map_labels
from data_prep.errors import DataError

NAME = 'nyuv2'
#: The 40 classes of classMapping40 (Gupta et al.'s NYU-40, spelling as in the file).
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
    'floor mat',
    'clothes',
    'ceiling',
    'books',
    'refridgerator',
    'television',
    'paper',
    'towel',
    'shower curtain',
    'box',
    'whiteboard',
    'person',
    'night stand',
    'toilet',
    'sink',
    'lamp',
    'bathtub',
    'bag',
    'otherstructure',
    'otherfurniture',
    'otherprop',
]
SPLITS = {'train': 795, 'test': 654}  # paper L530
LABELLED_SPLITS = ('train', 'test')

LABELED_FILE = 'nyu_depth_v2_labeled.mat'
SPLITS_FILE = 'splits.mat'
MAPPING_FILE = 'classMapping40.mat'
SPLIT_VARIABLES = {'train': 'trainNdxs', 'test': 'testNdxs'}
NUM_RAW_CLASSES = 894


def list_records(root, split):
    """Sorted keys ('0001'...) of the images splits.mat puts in `split`, checked against the .mat."""
    path = os.path.join(root, SPLITS_FILE)
    variable = SPLIT_VARIABLES[split]
    with matlab.open_v73(os.path.join(root, LABELED_FILE)) as h5file:
        count = labeled_arrays(h5file)[0].shape[0]
    others = [v for v in SPLIT_VARIABLES.values() if v != variable]
    content = matlab.load_v5(path, [variable], optional=others)
    indices = matlab.as_integers(path, variable, content[variable], 1, count)
    _check_unique(path, variable, indices.tolist())
    for other in (v for v in others if v in content):
        shared = sorted(set(indices.tolist()) & set(matlab.as_integers(path, other, content[other], 1, count).tolist()))
        if shared:
            raise DataError(
                path,
                f"image {shared[0]} is in both '{variable}' and '{other}' ({len(shared)} shared): the splits overlap",
            )
    return [f'{i:04d}' for i in sorted(indices.tolist())]


def _check_unique(path, variable, indices):
    """DataError when a split names one image twice (a record would weigh double)."""
    seen = set()
    for position, index in enumerate(indices):
        if index in seen:
            raise DataError(path, f"'{variable}' entry {position + 1} names image {index} a second time")
        seen.add(index)


def load_record(root, split, key):
    """Image `key` (1-based index) of nyu_depth_v2_labeled.mat, labels mapped to the 40 classes."""
    path = os.path.join(root, LABELED_FILE)
    lut, valid = class_mapping(root)
    with matlab.open_v73(path) as h5file:
        images, depths, labels = labeled_arrays(h5file)
        if not key.isdigit() or not 1 <= int(key) <= images.shape[0]:
            raise DataError(path, f'no image {key!r}: indices run 1..{images.shape[0]}')
        i = int(key) - 1
        image = matlab.read_slice(images, i).transpose(2, 1, 0)
        depth = matlab.read_slice(depths, i).transpose()
        raw_label = matlab.read_slice(labels, i).transpose()
    depth = check_depth(f'{path} (depths, image {int(key)})', depth)
    label = map_labels(f'{path} (labels, image {int(key)})', raw_label, lut, valid)
    return Record(
        np.ascontiguousarray(image), label, np.ascontiguousarray(depth), [path, os.path.join(root, MAPPING_FILE)]
    )


def labeled_arrays(h5file):
    """The (images, depths, labels) datasets, their structure checked (shapes as h5py sees them)."""
    path = h5file.filename
    images = matlab.v73_dataset(h5file, 'images', ndim=4, dtype=np.uint8)
    depths = matlab.v73_dataset(h5file, 'depths', ndim=3)
    labels = matlab.v73_dataset(h5file, 'labels', ndim=3)
    if images.shape[1] != 3:
        raise DataError(path, f"'images' has shape {images.shape}, expected (N, 3, W, H)")
    if not np.issubdtype(depths.dtype, np.floating):
        raise DataError(path, f"'depths' is {depths.dtype}, expected float32 metres")
    if not np.issubdtype(labels.dtype, np.unsignedinteger):
        raise DataError(path, f"'labels' is {labels.dtype}, expected uint16 class ids")
    expected = (images.shape[0],) + images.shape[2:]
    for name, dataset in (('depths', depths), ('labels', labels)):
        if dataset.shape != expected:
            raise DataError(
                path, f"'{name}' has shape {dataset.shape}, 'images' {images.shape}: image and {name[:-1]} sizes differ"
            )
    return images, depths, labels


def class_mapping(root):
    """(lut, valid) of classMapping40.mat: raw id 0..894 -> training label 0..39 / 255."""
    path = os.path.join(root, MAPPING_FILE)
    content = matlab.load_v5(path, ['mapClass'], optional=['className'])
    map_class = matlab.as_integers(path, 'mapClass', content['mapClass'], 1, len(CLASS_NAMES))
    if map_class.size != NUM_RAW_CLASSES:
        raise DataError(path, f"'mapClass' has {map_class.size} entries, expected {NUM_RAW_CLASSES}")
    if 'className' in content:
        check_class_names(path, matlab.as_list(content['className']))
    lut = np.concatenate([[IGNORE], map_class - 1]).astype(np.uint8)
    return lut, np.ones(len(lut), bool)


def check_class_names(path, names):
    """DataError unless the file's 40 class names are CLASS_NAMES (case, '_' vs ' ' aside)."""

    def norm(name):
        return str(name).strip().lower().replace('_', ' ')

    if len(names) != len(CLASS_NAMES):
        raise DataError(path, f"'className' has {len(names)} names, expected {len(CLASS_NAMES)}")
    for i, (got, want) in enumerate(zip(names, CLASS_NAMES)):
        if not isinstance(got, str) or norm(got) != norm(want):
            raise DataError(path, f"'className' {i + 1} is {got!r}, expected {want!r}")
