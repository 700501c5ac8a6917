"""data_prep's shared machinery: file checks, the database format, atomic and resumable conversion,
the sample entry point, the command-line convention (exit 2 on bad input, 130 / 143 on signals).

The generic converter is exercised through the Cityscapes reader on small sample datasets
(256 x 128: only the sample and converter tests of tests/test_cityscapes.py use full size).
"""

import json
import os
import pickle
import signal
import subprocess
import sys
import time

import cv2
import lmdb
import numpy as np
import pytest

from data_prep import cityscapes, convert, dataset_module, sample_cityscapes
from data_prep.database import PARTIAL_SUFFIX, open_database, write_database
from data_prep.dataset import Record, check_depth, check_record, map_labels, png_header, read_json, read_png
from data_prep.errors import DataError
from data_prep.sample import write_sample
from tests.support import ROOT

SMALL = (256, 128)


def small_cityscapes(root, count=3, splits=('train',), size=SMALL, seed=0):
    sample_cityscapes.write(str(root), count, seed, splits=splits, size=size)
    return str(root)


def committed(partial):
    """Record ids committed to the LMDB of an unfinished conversion."""
    with lmdb.open(partial, readonly=True, subdir=True) as env, env.begin() as txn:
        return [json.loads(v)['id'] for k, v in txn.cursor() if k.startswith(b'meta/')]


def records_of(path):
    database = open_database(path)
    return [database[i] for i in range(len(database))], database.manifest


def assert_same_database(a, b):
    records_a, manifest_a = records_of(a)
    records_b, manifest_b = records_of(b)
    assert manifest_a == manifest_b
    assert len(records_a) == len(records_b)
    for ra, rb in zip(records_a, records_b):
        for name in ('image', 'label', 'depth'):
            np.testing.assert_array_equal(getattr(ra, name), getattr(rb, name))


# ---------------------------------------------------------------------------------- errors, file checks


def test_data_error_names_file_and_fault_and_survives_pickling():
    err = pickle.loads(pickle.dumps(DataError('a/b.png', 'truncated')))
    assert (err.path, err.fault, str(err)) == ('a/b.png', 'truncated', 'a/b.png: truncated')


def test_read_png_checks_colour_type_bit_depth_and_truncation(tmp_path):
    rgb, grey16 = str(tmp_path / 'rgb.png'), str(tmp_path / 'g16.png')
    image = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    cv2.imwrite(rgb, image[:, :, ::-1])
    cv2.imwrite(grey16, np.arange(600, dtype=np.uint16).reshape(20, 30) * 50)
    np.testing.assert_array_equal(read_png(rgb, 'RGB', 8), image)
    assert read_png(grey16, 'grayscale', 16).dtype == np.uint16
    assert png_header(grey16) == (30, 20, 16, 'grayscale')
    with pytest.raises(DataError, match='wrong bit depth: 16-bit, expected 8-bit'):
        read_png(grey16, 'grayscale', 8)
    with pytest.raises(DataError, match='wrong PNG colour type: RGB, expected grayscale'):
        read_png(rgb, 'grayscale', 8)
    with pytest.raises(DataError, match='missing file'):
        read_png(str(tmp_path / 'absent.png'), 'RGB', 8)
    (tmp_path / 'text.png').write_text('not an image')
    with pytest.raises(DataError, match='not a PNG'):
        read_png(str(tmp_path / 'text.png'), 'RGB', 8)
    with open(rgb, 'rb') as f:
        data = f.read()
    (tmp_path / 'cut.png').write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match='truncated or corrupt') as info:
        read_png(str(tmp_path / 'cut.png'), 'RGB', 8)
    assert info.value.path == str(tmp_path / 'cut.png')


def test_read_json_and_value_checks(tmp_path):
    (tmp_path / 'bad.json').write_text('{"a": ')
    with pytest.raises(DataError, match='malformed JSON'):
        read_json(str(tmp_path / 'bad.json'))
    lut = np.full(256, 255, np.uint8)
    lut[7], lut[8] = 0, 1
    valid = np.zeros(256, bool)
    valid[:10] = True
    np.testing.assert_array_equal(map_labels('l.png', np.array([[7, 8, 3]], np.uint8), lut, valid), [[0, 1, 255]])
    with pytest.raises(DataError, match='label id 12 not in'):
        map_labels('l.png', np.array([[7, 12]], np.uint8), lut, valid)
    with pytest.raises(DataError, match='NaN'):
        check_depth('d.png', np.array([1.0, np.nan]))
    with pytest.raises(DataError, match='negative'):
        check_depth('d.png', np.array([1.0, -2.0]))


def test_check_record_rejects_malformed_records():
    good = Record(np.zeros((4, 5, 3), np.uint8), np.zeros((4, 5), np.uint8), np.ones((4, 5), np.float32), ['x'])
    check_record(good, 19)
    with pytest.raises(DataError, match='label value 19'):
        check_record(good._replace(label=np.full((4, 5), 19, np.uint8)), 19)
    with pytest.raises(DataError, match='depth must be'):
        check_record(good._replace(depth=np.ones((4, 6), np.float32)), 19)
    with pytest.raises(DataError, match='image must be'):
        check_record(good._replace(image=np.zeros((4, 5), np.uint8)), 19)


# ---------------------------------------------------------------------------------- database


def test_write_database_round_trip_windows_and_pickling(tmp_path):
    rng = np.random.default_rng(1)
    records = [
        Record(
            rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
            rng.integers(0, 3, (h, w), dtype=np.uint8),
            rng.random((h, w), dtype=np.float32),
            [f'src{i}'],
        )
        for i, (h, w) in enumerate([(70, 90), (130, 65), (9, 200)])
    ]
    path = write_database(tmp_path / 'db', records, 'toy', 'train', ['a', 'b', 'c'])
    database = open_database(path)
    assert len(database) == 3 and database.shape(1) == (130, 65) and database.labelled
    assert database.manifest['shapes'] == {'70x90': 1, '130x65': 1, '9x200': 1}
    for original, stored in zip(records, database):
        for name in ('image', 'label', 'depth'):
            np.testing.assert_array_equal(getattr(stored, name), getattr(original, name))
    window = database.read_window(1, 10, 20, 70, 33)
    np.testing.assert_array_equal(window.image, records[1].image[10:80, 20:53])
    np.testing.assert_array_equal(window.depth, records[1].depth[10:80, 20:53])
    clone = pickle.loads(pickle.dumps(database))
    np.testing.assert_array_equal(clone[2].label, records[2].label)
    with pytest.raises(IndexError):
        database[3]


def test_open_database_errors(tmp_path):
    with pytest.raises(DataError, match='missing database directory'):
        open_database(tmp_path / 'nothing')
    (tmp_path / 'empty').mkdir()
    with pytest.raises(DataError, match='missing manifest'):
        open_database(tmp_path / 'empty')
    (tmp_path / 'cut').mkdir()
    (tmp_path / 'cut.partial').mkdir()
    with pytest.raises(DataError, match='incomplete database: its conversion was interrupted'):
        open_database(tmp_path / 'cut')
    record = Record(np.zeros((8, 8, 3), np.uint8), None, np.zeros((8, 8), np.float32), [])
    path = write_database(tmp_path / 'db', [record, record], 'toy', 'test', ['a'])
    with pytest.raises(DataError, match="holds dataset 'toy', expected 'cityscapes'"):
        open_database(path, dataset='cityscapes')
    assert open_database(path)[0].label is None
    os.rename(os.path.join(path, 'data.mdb'), os.path.join(path, 'moved.mdb'))
    with pytest.raises(DataError, match='data.mdb: missing LMDB data file'):
        open_database(path)
    manifest = json.load(open(os.path.join(path, 'manifest.json')))
    manifest['records'] = []
    manifest['count'] = 0
    json.dump(manifest, open(os.path.join(path, 'manifest.json'), 'w'))
    with pytest.raises(DataError, match='empty database'):
        open_database(path)


# ---------------------------------------------------------------------------------- converter


def test_conversion_is_the_same_with_any_worker_count(tmp_path):
    root = small_cityscapes(tmp_path / 'cs', count=5)
    one = convert.convert_split('cityscapes', root, tmp_path / 'a', 'train', workers=1, progress=False)
    two = convert.convert_split('cityscapes', root, tmp_path / 'b', 'train', workers=2, progress=False)
    assert_same_database(one, two)
    manifest = open_database(one).manifest
    assert [r['key'] for r in manifest['records']] == cityscapes.list_records(root, 'train')
    assert [r['id'] for r in manifest['records']] == list(range(5))
    assert sorted(os.listdir(tmp_path / 'b')) == ['train']  # no partial directory left
    assert sorted(os.listdir(two)) == ['data.mdb', 'manifest.json']


def test_interrupted_conversion_resumes_to_the_same_database(tmp_path, monkeypatch):
    root = small_cityscapes(tmp_path / 'cs', count=5)
    reference = convert.convert_split('cityscapes', root, tmp_path / 'ref', 'train', progress=False)
    calls = []
    real_load = cityscapes.load_record

    def load_then_interrupt(*args):
        calls.append(args)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real_load(*args)

    monkeypatch.setattr(cityscapes, 'load_record', load_then_interrupt)
    out = tmp_path / 'out'
    with pytest.raises(KeyboardInterrupt):
        convert.convert_split('cityscapes', root, out, 'train', progress=False)
    partial = str(out / 'train') + PARTIAL_SUFFIX
    assert committed(partial) == [0, 1, 2]
    assert not os.path.exists(out / 'train')
    with pytest.raises(DataError, match='incomplete database'):
        open_database(out / 'train')
    with pytest.raises(DataError, match='other settings \\(skip_bad\\)'):
        convert.convert_split('cityscapes', root, out, 'train', skip_bad=True, progress=False)
    monkeypatch.setattr(cityscapes, 'load_record', real_load)
    calls.clear()
    monkeypatch.setattr(cityscapes, 'load_record', lambda *args: calls.append(args) or real_load(*args))
    resumed = convert.convert_split('cityscapes', root, out, 'train', progress=False)
    assert [c[2] for c in calls] == cityscapes.list_records(root, 'train')[3:]  # only the rest is read
    assert_same_database(resumed, reference)
    assert sorted(os.listdir(out)) == ['train']


def test_killed_multiprocess_conversion_resumes_to_the_same_database(tmp_path):
    """SIGKILL (no cleanup at all) in the middle of a 2-worker CLI run, then the same command again."""
    root = small_cityscapes(tmp_path / 'cs', count=6, size=(512, 256))
    command = [
        sys.executable,
        '-m',
        'data_prep',
        'cityscapes',
        '--root',
        root,
        '--out',
        str(tmp_path / 'out'),
        '--splits',
        'train',
        '--workers',
        '2',
    ]
    partial = str(tmp_path / 'out' / 'train') + PARTIAL_SUFFIX
    process = subprocess.Popen(
        command, cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 60
    while time.time() < deadline and process.poll() is None:
        if os.path.isfile(os.path.join(partial, 'data.mdb')) and committed(partial):
            break
        time.sleep(0.005)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not os.path.exists(tmp_path / 'out' / 'train'), 'finished before the kill: make the sample larger'
    assert 1 <= len(committed(partial)) < 6
    finished = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr
    reference = convert.convert_split('cityscapes', root, tmp_path / 'ref', 'train', progress=False)
    assert_same_database(tmp_path / 'out' / 'train', reference)


def test_existing_database_is_kept_unless_overwrite(tmp_path):
    root = small_cityscapes(tmp_path / 'cs', count=2)
    path = convert.convert_split('cityscapes', root, tmp_path / 'out', 'train', progress=False)
    data = os.path.join(path, 'data.mdb')
    stamp = os.stat(data).st_mtime_ns
    convert.convert_split('cityscapes', root, tmp_path / 'out', 'train', progress=False)
    assert os.stat(data).st_mtime_ns == stamp
    small_cityscapes(root, count=3, seed=1)  # the dataset changed: --overwrite rebuilds it
    convert.convert_split('cityscapes', root, tmp_path / 'out', 'train', overwrite=True, progress=False)
    assert len(open_database(path)) == 3
    assert sorted(os.listdir(tmp_path / 'out')) == ['train']


def test_output_holding_another_dataset_is_refused(tmp_path):
    record = Record(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.float32), [])
    write_database(tmp_path / 'out' / 'train', [record], 'sunrgbd', 'train', ['a'])
    root = small_cityscapes(tmp_path / 'cs', count=1, splits=('val',))
    with pytest.raises(DataError, match='already holds a different dataset \\(sunrgbd\\)') as info:
        convert.convert_split('cityscapes', root, tmp_path / 'out', 'val', progress=False)
    assert info.value.path == str(tmp_path / 'out' / 'train' / 'manifest.json')
    assert sorted(os.listdir(tmp_path / 'out')) == ['train']
    (tmp_path / 'junk' / 'val').mkdir(parents=True)
    with pytest.raises(DataError, match='exists and is not a database'):
        convert.convert_split('cityscapes', root, tmp_path / 'junk', 'val', progress=False)


# ---------------------------------------------------------------------------------- sample entry point, layering


@pytest.mark.parametrize('dataset', ['cityscapes', 'sunrgbd', 'nyuv2'])
def test_write_sample_is_one_entry_point_returning_the_keys_the_reader_lists(tmp_path, dataset):
    keys = write_sample(dataset, tmp_path / 'root', count=1, seed=0)
    module = dataset_module(dataset)
    assert sorted(keys) == sorted(module.SPLITS)
    for split, split_keys in keys.items():
        assert split_keys == module.list_records(str(tmp_path / 'root'), split) and len(split_keys) == 1
    with pytest.raises(ValueError, match='count must be at least 1'):
        write_sample(dataset, tmp_path / 'other', count=0)


def test_readers_import_neither_their_sample_writers_nor_other_packages():
    code = (
        'import sys, data_prep.__main__, data_prep.batches, data_prep.convert, data_prep.cityscapes, '
        'data_prep.sunrgbd, data_prep.nyuv2\n'
        'print(sorted(m for m in sys.modules if m.split(".")[0] in ("netgen", "tools", "bench") '
        'or m.startswith("data_prep.sample_")))'
    )
    out = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == '[]'


# ---------------------------------------------------------------------------------- the command-line convention


def run_cli(*args):
    out = subprocess.run(
        [sys.executable, '-m', 'data_prep', *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    return out.returncode, out.stderr


def test_cli_expected_faults_are_one_line_and_exit_2(tmp_path):
    root = small_cityscapes(tmp_path / 'cs', count=1)
    db = convert.convert_split('cityscapes', root, tmp_path / 'data', 'train', progress=False)
    missing = tmp_path / 'nothing'
    cases = [
        (
            ('cityscapes', '--root', root, '--out', tmp_path / 'out', '--splits', 'nosuch'),
            f"error: {root}: cityscapes has no split 'nosuch'; choose from train, val, test",
        ),
        (
            ('cityscapes', '--root', missing, '--out', tmp_path / 'out', '--splits', 'train'),
            f'error: {missing / "leftImg8bit" / "train"}: missing directory: not a Cityscapes root',
        ),
        (
            ('export-record', '--db', db, '--index', 1, '--out', tmp_path / 'r.npz'),
            f'error: {db}: --index 1 out of range: the database holds 1 records',
        ),
        (
            ('export-record', '--db', db, '--index', 0, '--out', missing / 'r.npz'),
            f'error: {missing / "r.npz"}: No such file or directory',
        ),
    ]
    for args, message in cases:
        code, err = run_cli(*args)
        assert (code, err.strip().splitlines()[-1][: len(message)]) == (2, message), err
        assert 'Traceback' not in err
    code, err = run_cli('sample', '--dataset', 'nyuv2', '--out', tmp_path / 'nyuv2', '--count', 0)
    assert code == 2 and 'argument --count: must be at least 1' in err and not (tmp_path / 'nyuv2').exists()


def test_sigterm_stops_a_conversion_with_143_and_a_rerun_resumes(tmp_path):
    """`kill PID` (SIGTERM, the main process only) in the middle of a 2-worker run: the same cleanup
    and message as Ctrl-C, exit 143; the same command then finishes the database."""
    root = small_cityscapes(tmp_path / 'cs', count=6, size=(512, 256))
    command = [
        sys.executable,
        '-m',
        'data_prep',
        'cityscapes',
        '--root',
        root,
        '--out',
        str(tmp_path / 'out'),
        '--splits',
        'train',
        '--workers',
        '2',
    ]
    partial = str(tmp_path / 'out' / 'train') + PARTIAL_SUFFIX
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and process.poll() is None:
        if os.path.isfile(os.path.join(partial, 'data.mdb')) and committed(partial):
            break
        time.sleep(0.005)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert not os.path.exists(tmp_path / 'out' / 'train'), 'finished before the signal: make the sample larger'
    assert process.returncode == 143, err
    assert err.rstrip().endswith('interrupted: rerun the same command to resume from the records done')
    assert 'Traceback' not in err
    assert 1 <= len(committed(partial)) < 6
    finished = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr
    reference = convert.convert_split('cityscapes', root, tmp_path / 'ref', 'train', progress=False)
    assert_same_database(tmp_path / 'out' / 'train', reference)
