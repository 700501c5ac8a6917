"""data_prep.sunrgbd: the sample in the official layout read back exactly, depth decoding, bad input."""

import os
import shutil

import cv2
import h5py
import numpy as np
import pytest
import scipy.io

from data_prep import matlab, sample_sunrgbd, sunrgbd
from data_prep.__main__ import main as cli
from data_prep.dataset import png_header
from data_prep.errors import DataError


@pytest.fixture(scope='module')
def sample(tmp_path_factory):
    """(root, truth) of a 2-frames-per-split sample (4 frames, one per sensor)."""
    root = str(tmp_path_factory.mktemp('sunrgbd'))
    return root, sample_sunrgbd.write(root, count=2, seed=3)


@pytest.fixture
def copy(sample, tmp_path):
    """A fresh copy of the sample root, for a test to corrupt."""
    root = str(tmp_path / 'root')
    shutil.copytree(sample[0], root)
    return root


def first_key(root, split='train'):
    return sunrgbd.list_records(root, split)[0]


def frame_of(root, key):
    return next(f for f in sunrgbd.frames(root) if f.rgb == key)


def rewrite_seglabels(root, change):
    """Rewrite SUNRGBD2Dseg.mat with change(list of H x W maps) applied."""
    path = os.path.join(root, sunrgbd.SEG_FILE)
    with h5py.File(path, 'r') as f:
        maps = [f[ref][()].T for ref in f['SUNRGBD2Dseg/seglabel'][:, 0]]
    change(maps)
    matlab.write_v73(path, {'SUNRGBD2Dseg': matlab.StructArray([{'seglabel': m} for m in maps])})


# --------------------------------------------------------------------------------------
# The sample, read back


def test_sample_reads_back_as_drawn(sample):
    root, truth = sample
    sizes = set()
    for split in ('train', 'test'):
        keys = sunrgbd.list_records(root, split)
        assert keys == sorted(truth[split]) and len(keys) == 2
        for key in keys:
            record, drawn = sunrgbd.load_record(root, split, key), truth[split][key]
            np.testing.assert_array_equal(record.label, drawn.label)
            np.testing.assert_array_equal(record.depth, drawn.depth)
            assert record.image.shape == drawn.image.shape and record.image.dtype == np.uint8
            assert np.abs(record.image.astype(int) - drawn.image).mean() < 4  # JPEG, quality 95
            assert record.depth.dtype == np.float32 and record.label.dtype == np.uint8
            assert os.path.join(root, key) in record.sources
            sizes.add(record.image.shape[:2])
    assert len(sizes) == 4  # one frame per sensor, each its own (non-square) size
    assert all(h != w for h, w in sizes)
    depths = np.concatenate([r.depth.ravel() for t in truth.values() for r in t.values()])
    assert (depths == 0).any() and (depths == 10.0).any() and ((depths > 8.2) & (depths < 10)).any()


def test_labels_are_the_seglabel_ids_shifted_with_unlabeled_ignored(sample):
    root, _ = sample
    key = first_key(root)
    with h5py.File(os.path.join(root, sunrgbd.SEG_FILE), 'r') as f:
        raw = f[f['SUNRGBD2Dseg/seglabel'][frame_of(root, key).index - 1, 0]][()].T
    label = sunrgbd.load_record(root, 'train', key).label
    assert (raw == 0).any() and (raw >= 2).any()
    np.testing.assert_array_equal(label[raw == 0], 255)
    np.testing.assert_array_equal(label[raw > 0], raw[raw > 0] - 1)


def test_depth_decoding_rotates_three_bits_and_caps_at_10_m():
    millimetres = np.array([[0, 1234, 5000, 9999, 10001, 57345]], np.uint16)
    raw = ((millimetres.astype(np.uint32) << 3) | (millimetres >> 13)) & 0xFFFF  # rotate left by 3
    depth = sunrgbd.decode_depth(raw.astype(np.uint16))
    assert depth.dtype == np.float32
    np.testing.assert_allclose(depth, [[0.0, 1.234, 5.0, 9.999, 10.0, 10.0]], atol=1e-6)
    # 57345 mm has its top bits set: a plain shift (raw >> 3) would read 0.001 m
    assert raw[0, 5] == 15 and depth[0, 5] == 10.0


def test_sample_files_have_the_official_formats(sample):
    root, _ = sample
    frame = frame_of(root, first_key(root))
    assert png_header(os.path.join(root, frame.depth))[2:] == (16, 'grayscale')
    meta = scipy.io.loadmat(os.path.join(root, sunrgbd.META_FILE))['SUNRGBDMeta']
    assert meta.shape == (1, 4)
    assert {'rgbpath', 'depthpath', 'K', 'sequenceName', 'Rtilt'} <= set(meta.dtype.names)
    assert meta[0, 0]['rgbpath'][0].startswith('/n/fs/sun3d/data/SUNRGBD/')
    split = scipy.io.loadmat(os.path.join(root, sunrgbd.SPLIT_FILE))
    assert split['alltrain'].shape == (1, 2) and split['alltest'].shape == (1, 2)
    assert open(os.path.join(root, sunrgbd.SEG_FILE), 'rb').read(19) == b'MATLAB 7.3 MAT-file'


def test_convert_then_export_record_gives_back_the_sample(sample, tmp_path):
    root, truth = sample
    out = str(tmp_path / 'db')
    assert cli(['sunrgbd', '--root', root, '--out', out, '--workers', '1']) == 0
    for split in ('train', 'test'):
        for index, key in enumerate(sorted(truth[split])):
            npz = str(tmp_path / f'{split}{index}.npz')
            assert cli(['export-record', '--db', os.path.join(out, split), '--index', str(index), '--out', npz]) == 0
            exported, drawn = np.load(npz), truth[split][key]
            np.testing.assert_array_equal(exported['label'], drawn.label)
            np.testing.assert_array_equal(exported['depth'], drawn.depth)
            np.testing.assert_array_equal(exported['image'], sunrgbd.load_record(root, split, key).image)


# --------------------------------------------------------------------------------------
# Bad input: each names the file and the fault


def test_missing_image_depth_or_label_file(copy):
    key = first_key(copy)
    frame = frame_of(copy, key)
    os.remove(os.path.join(copy, frame.rgb))
    with pytest.raises(DataError, match='missing file') as err:
        sunrgbd.load_record(copy, 'train', key)
    assert err.value.path == os.path.join(copy, frame.rgb)
    key = first_key(copy, 'test')
    os.remove(os.path.join(copy, frame_of(copy, key).depth))
    with pytest.raises(DataError, match='missing file') as err:
        sunrgbd.load_record(copy, 'test', key)
    assert err.value.path.endswith('.png') and '/depth_bfx/' in err.value.path
    os.remove(os.path.join(copy, sunrgbd.SEG_FILE))
    with pytest.raises(DataError, match='missing file') as err:
        sunrgbd.load_record(copy, 'test', sunrgbd.list_records(copy, 'test')[1])
    assert err.value.path.endswith('SUNRGBD2Dseg.mat')


def test_truncated_png_and_jpeg(copy):
    key = first_key(copy)
    frame = frame_of(copy, key)
    for rel in (frame.depth, frame.rgb):
        path = os.path.join(copy, rel)
        data = open(path, 'rb').read()
        open(path, 'wb').write(data[: len(data) // 2])
        with pytest.raises(DataError, match='truncated or corrupt') as err:
            sunrgbd.load_record(copy, 'train', key)
        assert err.value.path == path
        open(path, 'wb').write(data)


def test_depth_png_must_be_16_bit(copy):
    key = first_key(copy)
    path = os.path.join(copy, frame_of(copy, key).depth)
    cv2.imwrite(path, (cv2.imread(path, cv2.IMREAD_UNCHANGED) >> 8).astype(np.uint8))
    with pytest.raises(DataError, match='wrong bit depth: 8-bit, expected 16-bit') as err:
        sunrgbd.load_record(copy, 'train', key)
    assert err.value.path == path


def test_image_and_label_or_depth_sizes_differ(copy):
    key = first_key(copy)
    frame = frame_of(copy, key)
    rewrite_seglabels(copy, lambda maps: maps.__setitem__(frame.index - 1, maps[frame.index - 1][:, :-1]))
    with pytest.raises(DataError, match='differs from') as err:
        sunrgbd.load_record(copy, 'train', key)
    assert 'SUNRGBD2Dseg.mat' in err.value.path and f'SUNRGBD2Dseg({frame.index})' in err.value.path
    path = os.path.join(copy, frame.depth)
    cv2.imwrite(path, cv2.imread(path, cv2.IMREAD_UNCHANGED)[1:])
    with pytest.raises(DataError, match='differs from') as err:
        sunrgbd.load_record(copy, 'train', key)
    assert err.value.path == path


def test_label_id_outside_the_37_classes(copy):
    key = first_key(copy)
    index = frame_of(copy, key).index

    for value, fault in (
        (38, "label id 38 not in the dataset's table"),
        (-1, 'label id -1 not'),
        (2.5, 'not whole numbers'),
    ):
        rewrite_seglabels(copy, lambda maps: maps[index - 1].__setitem__((5, 7), value))
        with pytest.raises(DataError, match=fault) as err:
            sunrgbd.load_record(copy, 'train', key)
        assert err.value.path.endswith('SUNRGBD2Dseg.mat') and f'SUNRGBD2Dseg({index})' in err.value.fault


def test_truncated_mat_files(copy):
    for rel, call in (
        (sunrgbd.SEG_FILE, lambda: sunrgbd.load_record(copy, 'train', first_key(copy))),
        (sunrgbd.META_FILE, lambda: sunrgbd.list_records(copy, 'train')),
        (sunrgbd.SPLIT_FILE, lambda: sunrgbd.list_records(copy, 'test')),
    ):
        path = os.path.join(copy, rel)
        data = open(path, 'rb').read()
        open(path, 'wb').write(data[: len(data) // 3])
        with pytest.raises(DataError) as err:
            call()
        assert err.value.path == path and ('truncated' in err.value.fault or 'corrupt' in err.value.fault)
        open(path, 'wb').write(data)


def test_wrong_structure_mat_files(copy):
    split_path = os.path.join(copy, sunrgbd.SPLIT_FILE)
    matlab.write_v5(split_path, {'alltrain': ['/n/fs/sun3d/data/SUNRGBD/kv1/NYUdata/NYU0001']})
    with pytest.raises(DataError, match="variable 'alltest' missing"):
        sunrgbd.list_records(copy, 'test')
    seg_path = os.path.join(copy, sunrgbd.SEG_FILE)
    key = sunrgbd.list_records(copy, 'train')[0]  # NYU0001, the one frame alltrain still lists
    rewrite_seglabels(copy, lambda maps: maps.pop())
    with pytest.raises(DataError, match='has 3 elements, expected 4') as err:
        sunrgbd.load_record(copy, 'train', key)
    assert err.value.path == seg_path
    meta_path = os.path.join(copy, sunrgbd.META_FILE)
    matlab.write_v5(
        meta_path, {'SUNRGBDMeta': matlab.StructArray([{'depthpath': '/n/fs/sun3d/data/SUNRGBD/a/depth/x.png'}])}
    )
    with pytest.raises(DataError, match="SUNRGBDMeta\\(1\\) has no 'rgbpath' path") as err:
        sunrgbd.list_records(copy, 'train')
    assert err.value.path == meta_path


def test_split_entry_that_is_not_a_frame(copy):
    split_path = os.path.join(copy, sunrgbd.SPLIT_FILE)
    split = scipy.io.loadmat(split_path)
    train = [str(p[0]) for p in split['alltrain'][0]] + ['/n/fs/sun3d/data/SUNRGBD/kv1/NYUdata/NYU9999']
    matlab.write_v5(split_path, {'alltrain': train, 'alltest': [str(p[0]) for p in split['alltest'][0]]})
    with pytest.raises(DataError, match='alltrain entry 3 .*NYU9999.* is not a frame') as err:
        sunrgbd.list_records(copy, 'train')
    assert err.value.path == split_path
    matlab.write_v5(split_path, {'alltrain': ['/somewhere/else/NYU0001'], 'alltest': []})
    with pytest.raises(DataError, match='no SUNRGBD/ component'):
        sunrgbd.list_records(copy, 'train')
