"""data_prep.nyuv2: transposes, the 894 -> 40 mapping, the sample read back exactly, bad input."""

import os
import shutil

import h5py
import numpy as np
import pytest

from data_prep import matlab, nyuv2, sample_nyuv2
from data_prep.__main__ import main as cli
from data_prep.errors import DataError

H, W, N = 5, 7, 3  # tiny, non-square: a missed transpose changes the shape, a reshape the content


def tiny_arrays():
    """MATLAB-layout arrays (H x W x 3 x N, H x W x N) whose every element encodes its position."""
    r, c, ch, n = np.meshgrid(np.arange(H), np.arange(W), np.arange(3), np.arange(N), indexing='ij')
    images = (r * 40 + c * 5 + ch + n * 2).astype(np.uint8)
    depths = (1.0 + r[..., 0, :] + c[..., 0, :] / 10 + n[..., 0, :] / 100).astype(np.float32)
    labels = ((r[..., 0, :] * W + c[..., 0, :]) * 7 + n[..., 0, :] * 50).astype(np.uint16) % 895
    return {'images': images, 'depths': depths, 'labels': labels}


def tiny_mapping():
    return np.arange(894) % 40 + 1.0  # raw id k -> class ((k - 1) % 40) + 1


def write_tiny(root, arrays=None, train=(1, 3), test=(2,), map_class=None, class_names=nyuv2.CLASS_NAMES):
    os.makedirs(root, exist_ok=True)
    matlab.write_v73(os.path.join(root, nyuv2.LABELED_FILE), arrays or tiny_arrays())
    matlab.write_v5(
        os.path.join(root, nyuv2.SPLITS_FILE),
        {'trainNdxs': np.array(train, float).reshape(-1, 1), 'testNdxs': np.array(test, float).reshape(-1, 1)},
    )
    mapping = {'mapClass': tiny_mapping() if map_class is None else map_class}
    if class_names is not None:
        mapping['className'] = list(class_names)
    matlab.write_v5(os.path.join(root, nyuv2.MAPPING_FILE), mapping)
    return root


@pytest.fixture
def tiny(tmp_path):
    return write_tiny(str(tmp_path / 'tiny'))


@pytest.fixture(scope='module')
def sample(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('nyuv2'))
    return root, sample_nyuv2.write(root, count=2, seed=5)


# --------------------------------------------------------------------------------------
# Reading


def test_tiny_file_is_transposed_not_reshaped(tiny):
    arrays = tiny_arrays()
    with h5py.File(os.path.join(tiny, nyuv2.LABELED_FILE), 'r') as f:
        assert f['images'].shape == (N, 3, W, H)  # as h5py sees the real file: (1449, 3, 640, 480)
    assert nyuv2.list_records(tiny, 'train') == ['0001', '0003']
    assert nyuv2.list_records(tiny, 'test') == ['0002']
    for key in ('0001', '0002', '0003'):
        i = int(key) - 1
        record = nyuv2.load_record(tiny, 'train', key)
        assert record.image.shape == (H, W, 3)
        np.testing.assert_array_equal(record.image, arrays['images'][..., i])
        np.testing.assert_array_equal(record.depth, arrays['depths'][..., i])
        raw = arrays['labels'][..., i].astype(int)
        expected = np.where(raw == 0, 255, (raw - 1) % 40)  # mapClass then the shift to 0..39
        np.testing.assert_array_equal(record.label, expected)
    assert (arrays['labels'] == 0).any()


def test_sample_reads_back_as_drawn(sample):
    root, truth = sample
    for split in ('train', 'test'):
        keys = nyuv2.list_records(root, split)
        assert keys == sorted(truth[split]) and len(keys) == 2
        for key in keys:
            record, drawn = nyuv2.load_record(root, split, key), truth[split][key]
            assert record.image.shape == (480, 640, 3)
            np.testing.assert_array_equal(record.image, drawn.image)
            np.testing.assert_array_equal(record.label, drawn.label)
            np.testing.assert_array_equal(record.depth, drawn.depth)
            assert (record.label == 255).any() and len(np.unique(record.label)) > 5


def test_sample_files_have_the_official_structure(sample):
    root, _ = sample
    with h5py.File(os.path.join(root, nyuv2.LABELED_FILE), 'r') as f:
        assert f.userblock_size == 512
        assert (f['images'].shape, f['images'].dtype) == ((4, 3, 640, 480), np.uint8)
        assert (f['depths'].shape, f['depths'].dtype) == ((4, 640, 480), np.float32)
        assert (f['labels'].shape, f['labels'].dtype) == ((4, 640, 480), np.uint16)
        assert f['labels'].attrs['MATLAB_class'] == b'uint16' and f['depths'].attrs['MATLAB_class'] == b'single'
        assert matlab.read_cell_strings(f, 'names')[20] == 'wall'  # raw id 21
    content = matlab.load_v5(os.path.join(root, nyuv2.MAPPING_FILE), ['mapClass', 'className'])
    assert content['mapClass'].shape == (894,) and list(content['className']) == nyuv2.CLASS_NAMES


def test_convert_then_export_record_gives_back_the_sample(sample, tmp_path):
    root, truth = sample
    out = str(tmp_path / 'db')
    assert cli(['nyuv2', '--root', root, '--out', out, '--workers', '1']) == 0
    for split in ('train', 'test'):
        for index, key in enumerate(sorted(truth[split])):
            npz = str(tmp_path / f'{split}{index}.npz')
            assert cli(['export-record', '--db', os.path.join(out, split), '--index', str(index), '--out', npz]) == 0
            exported, drawn = np.load(npz), truth[split][key]
            for name in ('image', 'label', 'depth'):
                np.testing.assert_array_equal(exported[name], getattr(drawn, name))


# --------------------------------------------------------------------------------------
# Bad input: each names the file and the fault


def test_missing_files(tiny):
    for rel, call in (
        (nyuv2.MAPPING_FILE, lambda: nyuv2.load_record(tiny, 'train', '0001')),
        (nyuv2.SPLITS_FILE, lambda: nyuv2.list_records(tiny, 'train')),
        (nyuv2.LABELED_FILE, lambda: nyuv2.list_records(tiny, 'train')),
    ):
        os.remove(os.path.join(tiny, rel))
        with pytest.raises(DataError, match='missing file') as err:
            call()
        assert err.value.path == os.path.join(tiny, rel)


def test_image_and_label_sizes_differ(tmp_path):
    arrays = tiny_arrays()
    arrays['labels'] = arrays['labels'][:, :-1]
    root = write_tiny(str(tmp_path), arrays)
    with pytest.raises(DataError, match='image and label sizes differ') as err:
        nyuv2.load_record(root, 'train', '0001')
    assert err.value.path.endswith(nyuv2.LABELED_FILE)


def test_label_id_beyond_the_894_names(tmp_path):
    arrays = tiny_arrays()
    arrays['labels'][2, 3, 1] = 900
    root = write_tiny(str(tmp_path), arrays)
    nyuv2.load_record(root, 'train', '0001')  # image 1 is fine
    with pytest.raises(DataError, match="label id 900 not in the dataset's table") as err:
        nyuv2.load_record(root, 'test', '0002')
    assert nyuv2.LABELED_FILE in err.value.path and 'image 2' in err.value.path


@pytest.mark.parametrize(
    'change, fault',
    [
        (lambda m: m.__setitem__(10, 41), "'mapClass' entry 11 = 41 out of range 1..40"),
        (lambda m: m.__setitem__(3, 0), "'mapClass' entry 4 = 0 out of range 1..40"),
        (lambda m: m.__setitem__(3, 2.5), 'not whole numbers'),
    ],
)
def test_mapping_out_of_range(tmp_path, change, fault):
    mapping = tiny_mapping()
    change(mapping)
    root = write_tiny(str(tmp_path), map_class=mapping)
    with pytest.raises(DataError, match=fault) as err:
        nyuv2.load_record(root, 'train', '0001')
    assert err.value.path.endswith(nyuv2.MAPPING_FILE)


def test_mapping_of_the_wrong_length_or_with_other_class_names(tmp_path):
    root = write_tiny(str(tmp_path / 'a'), map_class=tiny_mapping()[:893])
    with pytest.raises(DataError, match="'mapClass' has 893 entries, expected 894"):
        nyuv2.load_record(root, 'train', '0001')
    names = list(nyuv2.CLASS_NAMES)
    names[23] = 'refrigerator'
    root = write_tiny(str(tmp_path / 'b'), class_names=names)
    with pytest.raises(DataError, match="'className' 24 is 'refrigerator', expected 'refridgerator'"):
        nyuv2.load_record(root, 'train', '0001')
    root = write_tiny(str(tmp_path / 'c'), class_names=None)  # names absent: nothing to check
    assert nyuv2.load_record(root, 'train', '0001').label.shape == (H, W)


@pytest.mark.parametrize('value, fault', [(np.nan, 'NaN or infinite'), (-0.5, 'negative depth')])
def test_nan_or_negative_depth(tmp_path, value, fault):
    arrays = tiny_arrays()
    arrays['depths'][1, 2, 0] = value
    root = write_tiny(str(tmp_path), arrays)
    with pytest.raises(DataError, match=fault) as err:
        nyuv2.load_record(root, 'train', '0001')
    assert nyuv2.LABELED_FILE in err.value.path


def test_truncated_mat_files(tiny):
    for rel, call in (
        (nyuv2.LABELED_FILE, lambda: nyuv2.load_record(tiny, 'train', '0001')),
        (nyuv2.SPLITS_FILE, lambda: nyuv2.list_records(tiny, 'train')),
        (nyuv2.MAPPING_FILE, lambda: nyuv2.load_record(tiny, 'train', '0001')),
    ):
        path = os.path.join(tiny, rel)
        data = open(path, 'rb').read()
        open(path, 'wb').write(data[: len(data) // 2])
        with pytest.raises(DataError, match='truncated') as err:
            call()
        assert err.value.path == path
        open(path, 'wb').write(data)


def test_wrong_structure(tmp_path):
    arrays = tiny_arrays()
    del arrays['depths']
    with pytest.raises(DataError, match="variable 'depths' missing"):
        nyuv2.list_records(write_tiny(str(tmp_path / 'a'), arrays), 'train')
    arrays = tiny_arrays()
    arrays['images'] = arrays['images'][..., 0, :]  # H x W x N: no colour axis
    with pytest.raises(DataError, match="'images' has shape .* expected 4 dimensions"):
        nyuv2.list_records(write_tiny(str(tmp_path / 'b'), arrays), 'train')
    arrays = tiny_arrays()
    arrays['labels'] = arrays['labels'].astype(np.float64)
    with pytest.raises(DataError, match="'labels' is float64, expected uint16"):
        nyuv2.load_record(write_tiny(str(tmp_path / 'c'), arrays), 'train', '0001')
    root = str(tmp_path / 'd')
    write_tiny(root)
    matlab.write_v73(os.path.join(root, nyuv2.SPLITS_FILE), {'trainNdxs': np.ones(2), 'testNdxs': np.ones(1)})
    with pytest.raises(DataError, match='v7.3 .*expected a v5/v7'):
        nyuv2.list_records(root, 'train')


@pytest.mark.parametrize(
    'train, fault',
    [((1, 4), "'trainNdxs' entry 2 = 4 out of range 1..3"), ((0, 2), "'trainNdxs' entry 1 = 0 out of range 1..3")],
)
def test_split_indices_out_of_range(tmp_path, train, fault):
    root = write_tiny(str(tmp_path), train=train)
    with pytest.raises(DataError, match=fault) as err:
        nyuv2.list_records(root, 'train')
    assert err.value.path.endswith(nyuv2.SPLITS_FILE)


def test_record_key_that_is_no_image(tiny):
    with pytest.raises(DataError, match="no image '0009': indices run 1..3"):
        nyuv2.load_record(tiny, 'train', '0009')


def test_sample_is_reproducible_and_seeded(tmp_path, sample):
    _, truth = sample
    again = sample_nyuv2.write(str(tmp_path / 'again'), count=2, seed=5)
    for split in ('train', 'test'):
        assert sorted(again[split]) == sorted(truth[split])
        for key in truth[split]:
            np.testing.assert_array_equal(again[split][key].image, truth[split][key].image)
    shutil.rmtree(tmp_path / 'again')
