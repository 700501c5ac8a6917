"""Cityscapes: the sample writer's layout and formats, sample -> convert -> export-record, bad inputs."""

import json
import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
from cityscapesscripts.helpers.labels import id2label
from PIL import Image

from data_prep import cityscapes, convert, sample_cityscapes
from data_prep.database import open_database
from data_prep.dataset import png_header
from data_prep.errors import DataError
from tests.support import ROOT

STEM = 'aachen_000000_000019'


def run_cli(*args):
    out = subprocess.run(
        [sys.executable, '-m', 'data_prep', *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    return out.returncode, out.stdout, out.stderr


def files_of(root, split, city, stem):
    return {
        kind: os.path.join(root, kind, split, city, f'{stem}_{suffix}')
        for kind, suffix in [
            ('leftImg8bit', 'leftImg8bit.png'),
            ('gtFine', 'gtFine_labelIds.png'),
            ('disparity', 'disparity.png'),
            ('camera', 'camera.json'),
        ]
    }


def expected_record(files, labelled=True):
    """What the converter must produce, computed independently: PIL, cityscapesscripts, the formula."""
    image = np.asarray(Image.open(files['leftImg8bit']))
    disparity = np.asarray(Image.open(files['disparity'])).astype(np.float64)
    camera = json.load(open(files['camera']))
    baseline, fx = camera['extrinsic']['baseline'], camera['intrinsic']['fx']
    with np.errstate(divide='ignore'):
        depth = np.where(disparity > 1, baseline * fx / ((disparity - 1) / 256), 0).astype(np.float32)
    label = np.full(image.shape[:2], 255, np.uint8)
    if labelled:
        ids = np.asarray(Image.open(files['gtFine']))
        for label_id in np.unique(ids):
            train_id = id2label[int(label_id)].trainId
            label[ids == label_id] = train_id if 0 <= train_id < 255 else 255
    return image, label, depth


@pytest.fixture(scope='module')
def full_sample(tmp_path_factory):
    """One full-size (2048 x 1024) record per split, converted by the CLI with 2 workers."""
    base = tmp_path_factory.mktemp('cityscapes_full')
    root, out = base / 'root', base / 'data'
    code, _, err = run_cli('sample', '--dataset', 'cityscapes', '--out', root, '--count', 1, '--seed', 3)
    assert code == 0, err
    code, stdout, err = run_cli(
        'cityscapes', '--root', root, '--out', out, '--splits', 'train', 'val', 'test', '--workers', 2
    )
    assert code == 0, err
    assert 'test has no public labels' in err
    return str(root), str(out), base


def test_sample_has_the_official_layout_and_file_formats(full_sample):
    root, _, _ = full_sample
    for split, city in [('train', 'aachen'), ('val', 'frankfurt'), ('test', 'berlin')]:
        files = files_of(root, split, city, f'{city}_000000_000019')
        assert png_header(files['leftImg8bit']) == (2048, 1024, 8, 'RGB')
        assert png_header(files['disparity']) == (2048, 1024, 16, 'grayscale')
        camera = json.load(open(files['camera']))
        assert set(camera) == {'extrinsic', 'intrinsic'}
        assert set(camera['intrinsic']) == {'fx', 'fy', 'u0', 'v0'} and camera['extrinsic']['baseline'] > 0
        if split == 'test':  # test labels are not public
            assert not os.path.exists(files['gtFine'])
        else:
            assert png_header(files['gtFine']) == (2048, 1024, 8, 'grayscale')
            ids = np.unique(np.asarray(Image.open(files['gtFine'])))
            assert set(ids) <= set(id2label) and len(ids) >= 8


@pytest.mark.parametrize(
    'split,city,labelled', [('train', 'aachen', True), ('val', 'frankfurt', True), ('test', 'berlin', False)]
)
def test_sample_convert_export_gives_back_what_the_sample_wrote(full_sample, split, city, labelled):
    root, out, base = full_sample
    npz = base / f'{split}.npz'
    code, stdout, err = run_cli('export-record', '--db', os.path.join(out, split), '--index', 0, '--out', npz)
    assert code == 0, err
    exported = np.load(npz)
    image, label, depth = expected_record(files_of(root, split, city, f'{city}_000000_000019'), labelled)
    assert exported['image'].dtype == np.uint8 and exported['image'].shape == (1024, 2048, 3)
    assert exported['label'].dtype == np.uint8 and exported['depth'].dtype == np.float32
    np.testing.assert_array_equal(exported['image'], image)
    np.testing.assert_array_equal(exported['label'], label)
    np.testing.assert_array_equal(exported['depth'], depth)
    manifest = open_database(os.path.join(out, split)).manifest
    assert manifest['labelled'] is labelled and manifest['shapes'] == {'1024x2048': 1}
    assert manifest['class_names'][0] == 'road' and len(manifest['class_names']) == 19
    assert manifest['records'][0]['key'] == f'leftImg8bit/{split}/{city}/{city}_000000_000019_leftImg8bit.png'
    assert len(manifest['records'][0]['sources']) == (4 if labelled else 3)


def test_sample_labels_and_depth_agree(tmp_path):
    """Road pixels lie on the ground plane: depth * (v - v0) / fy is the camera height everywhere."""
    sample_cityscapes.write(str(tmp_path), 2, seed=5, splits=('train',), size=(512, 256))
    for city in ('aachen', 'bochum'):
        files = files_of(str(tmp_path), 'train', city, f'{city}_000000_000019')
        _, label, depth = expected_record(files)
        camera = json.load(open(files['camera']))['intrinsic']
        rows = np.arange(label.shape[0])[:, None].repeat(label.shape[1], 1)
        road = (label == 0) & (depth > 0)
        height = depth[road] * (rows[road] - camera['v0']) / camera['fy']
        assert road.sum() > 5000
        assert np.percentile(height, 99) - np.percentile(height, 1) < 0.05 * np.median(height)
        assert 1.0 < np.median(height) < 1.5
        sky = label == 10
        assert sky.any() and (depth[sky] == 0).all()
        assert (label[-5:] == 255).all() and (depth[-5:] == 0).all()  # the ego vehicle's bonnet
        near_cars = (label == 13) & (depth > 0)
        if near_cars.any():
            assert depth[near_cars].max() < 100


def test_sample_is_reproducible_from_its_seed(tmp_path):
    keys = [
        sample_cityscapes.write(str(tmp_path / name), 1, seed, splits=('val',), size=(128, 64))['val'][0]
        for name, seed in [('a', 1), ('b', 1), ('c', 2)]
    ]
    paths = [os.path.join(tmp_path / name, key) for name, key in zip('abc', keys)]
    data = [open(p, 'rb').read() for p in paths]
    assert data[0] == data[1] != data[2]


# ---------------------------------------------------------------------------------- bad inputs


@pytest.fixture(scope='module')
def small_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('cityscapes_small') / 'root'
    sample_cityscapes.write(str(root), 2, 0, splits=('train',), size=(192, 96))
    return root


def rewrite_png(path, array):
    assert cv2.imwrite(path, array)


def truncate(path):
    with open(path, 'rb') as f:
        data = f.read()
    with open(path, 'wb') as f:
        f.write(data[: len(data) // 2])


def set_baseline(path, value):
    camera = json.load(open(path))
    camera['extrinsic']['baseline'] = value
    with open(path, 'w') as f:
        json.dump(camera, f)  # float('nan') is written as NaN, as Python's json does


def move_image_away(files):
    os.remove(files['leftImg8bit'])


BAD_INPUTS = {
    'missing image': ('leftImg8bit', move_image_away, 'missing file'),
    'missing label': ('gtFine', lambda f: os.remove(f['gtFine']), 'missing file'),
    'missing depth': ('disparity', lambda f: os.remove(f['disparity']), 'missing file'),
    'missing camera': ('camera', lambda f: os.remove(f['camera']), 'missing file'),
    'truncated PNG': ('leftImg8bit', lambda f: truncate(f['leftImg8bit']), 'truncated or corrupt'),
    'not a PNG': ('gtFine', lambda f: open(f['gtFine'], 'w').write('GIF89a'), 'not a PNG'),
    'wrong bit depth': (
        'disparity',
        lambda f: rewrite_png(f['disparity'], np.ones((96, 192), np.uint8)),
        'wrong bit depth: 8-bit, expected 16-bit',
    ),
    'sizes differ': (
        'gtFine',
        lambda f: rewrite_png(f['gtFine'], np.full((48, 192), 7, np.uint8)),
        'size 192x48 differs from',
    ),
    'unknown label id': (
        'gtFine',
        lambda f: rewrite_png(f['gtFine'], np.full((96, 192), 40, np.uint8)),
        'label id 40 not in',
    ),
    'NaN depth': ('camera', lambda f: set_baseline(f['camera'], float('nan')), 'NaN'),
    'negative depth': ('camera', lambda f: set_baseline(f['camera'], -0.2), 'negative depth'),
    'wrong camera structure': (
        'camera',
        lambda f: open(f['camera'], 'w').write('{"intrinsic": {}}'),
        'wrong structure',
    ),
}


@pytest.mark.parametrize('case', sorted(BAD_INPUTS))
def test_bad_input_is_named_and_leaves_no_database(small_root, tmp_path, case):
    kind, corrupt, fault = BAD_INPUTS[case]
    root = tmp_path / 'root'
    shutil.copytree(small_root, root)
    files = files_of(str(root), 'train', 'aachen', STEM)
    corrupt(files)
    out = tmp_path / 'out'
    with pytest.raises(DataError, match=fault) as info:
        convert.convert_split('cityscapes', root, out, 'train', workers=2, progress=False)
    assert info.value.path == files[kind]
    assert not out.exists() or os.listdir(out) == []


def test_cli_reports_bad_input_with_file_and_fault(small_root, tmp_path):
    root = tmp_path / 'root'
    shutil.copytree(small_root, root)
    files = files_of(str(root), 'train', 'aachen', STEM)
    truncate(files['disparity'])
    code, _, err = run_cli('cityscapes', '--root', root, '--out', tmp_path / 'out', '--splits', 'train', '--workers', 1)
    assert code == 2
    assert f'error: {files["disparity"]}: truncated or corrupt PNG data' in err
    assert os.listdir(tmp_path / 'out') == []


def test_skip_bad_converts_the_rest_and_reports_what_was_skipped(small_root, tmp_path):
    root = tmp_path / 'root'
    shutil.copytree(small_root, root)
    sample_cityscapes.write(str(root), 4, 0, splits=('train',), size=(192, 96))
    bad = files_of(str(root), 'train', 'aachen', STEM)
    truncate(bad['leftImg8bit'])
    os.remove(files_of(str(root), 'train', 'bochum', 'bochum_000001_000019')['camera'])
    code, _, err = run_cli(
        'cityscapes', '--root', root, '--out', tmp_path / 'out', '--splits', 'train', '--skip-bad', '--workers', 2
    )
    assert code == 0, err
    assert 'skipped 2 of 4 train records' in err
    database = open_database(tmp_path / 'out' / 'train')
    assert [r['key'].split('/')[-1] for r in database.records] == [
        'aachen_000001_000019_leftImg8bit.png',
        'bochum_000000_000019_leftImg8bit.png',
    ]
    report = json.load(open(tmp_path / 'out' / 'train' / 'skipped.json'))
    assert [(r['path'], r['fault'].split(' (')[0]) for r in report] == [
        ('leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png', 'truncated or corrupt PNG data'),
        ('camera/train/bochum/bochum_000001_000019_camera.json', 'missing file'),
    ]
    assert database.manifest['skipped'] == report


def test_layout_errors(tmp_path):
    with pytest.raises(DataError, match='not a Cityscapes root') as info:
        cityscapes.list_records(str(tmp_path), 'train')
    assert info.value.path == os.path.join(str(tmp_path), 'leftImg8bit', 'train')
    sample_cityscapes.write(str(tmp_path), 1, 0, splits=('val',), size=(64, 32))
    assert cityscapes.list_records(str(tmp_path), 'val') == [
        'leftImg8bit/val/frankfurt/frankfurt_000000_000019_leftImg8bit.png'
    ]
