"""The data side's fault matrix (issue 12; docs/FAULTS.md): every expected fault of a conversion or
of a database read ends in one line `error: <file>: <fault>` and a documented exit status, and
nothing is lost or half-written: a finished database passes `verify` and holds every record, a
failed conversion leaves no `<out>/<split>`, the user's input files are unchanged.

Processes are real where the case is about processes: two converters at once, kill -9, SIGTERM /
SIGINT to the main process or its whole process group, a worker killed by SIGBUS. A full disk is a
file-size limit (RLIMIT_FSIZE, portable) or a real tmpfs in a user + mount namespace
(`unshare -rm`); a read-only --out is a read-only bind mount in such a namespace (root ignores
permission bits, so chmod would prove nothing) or a path under a regular file (ENOTDIR).
"""

import faulthandler
import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
import zlib

import lmdb
import numpy as np
import pytest

from data_prep import convert, matlab, nyuv2, sample_nyuv2, sample_sunrgbd, sunrgbd
from data_prep.batches import BatchWorkers, CropSampler, parse_param_str
from data_prep.database import PARTIAL_SUFFIX, open_database, verify_records
from data_prep.errors import DataError
from tests.data_prep.test_data_core import assert_same_database, committed, small_cityscapes
from tests.support import ROOT

PROCESS_SIZE = (512, 256)  # large enough that a conversion can be caught in the middle


# ---------------------------------------------------------------------------------- helpers


@pytest.fixture(scope='module')
def samples(tmp_path_factory):
    """(Cityscapes root with train + val, reference database of its train split)."""
    base = tmp_path_factory.mktemp('faults')
    root = small_cityscapes(base / 'cs', count=6, splits=('train', 'val'), size=PROCESS_SIZE)
    reference = convert.convert_split('cityscapes', root, base / 'ref', 'train', progress=False)
    return root, reference


def convert_command(root, out, split='train', *extra):
    return [sys.executable, '-m', 'data_prep', 'cityscapes', '--root', str(root), '--out', str(out)] + [
        '--splits',
        split,
        '--workers',
        '2',
        *extra,
    ]


def run(command, **options):
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60, **options)


def start(command):
    """A converter in a process group of its own (its workers share it)."""
    return subprocess.Popen(
        command, cwd=ROOT, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def stop_after_first_commit(process, partial):
    """Wait until `process` committed a record to `partial`, then freeze its process group."""
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        if os.path.isfile(os.path.join(partial, 'data.mdb')) and committed(partial):
            os.killpg(process.pid, signal.SIGSTOP)
            return
        time.sleep(0.005)
    pytest.fail(f'no record committed before the converter ended: {process.communicate()}')


def digest(folder):
    """{relative path: sha256} of every file under `folder`: the inputs must stay as they were."""
    out = {}
    for base, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(base, name)
            with open(path, 'rb') as f:
                out[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
    return out


def last_line(stderr):
    lines = stderr.strip().splitlines()
    return lines[-1] if lines else ''


def assert_complete(path, reference):
    """A finished database: the same records as an uninterrupted conversion, every checksum right."""
    assert_same_database(path, reference)
    assert [fault for _, fault in verify_records(open_database(path))] == [None] * len(open_database(path))
    out = os.path.dirname(str(path))
    assert not os.path.exists(str(path) + PARTIAL_SUFFIX)
    assert not [n for n in os.listdir(out) if n.startswith('.')], 'lock file left behind'


# ---------------------------------------------------------------------------------- 1. concurrent conversions


@pytest.mark.parametrize('case', ['second converter, same split', 'kill -9, then rerun', 'other split at once'])
def test_concurrent_conversions(samples, tmp_path, case):
    root, reference = samples
    before = digest(root)
    out = tmp_path / 'out'
    partial = str(out / 'train') + PARTIAL_SUFFIX
    first = start(convert_command(root, out))
    stop_after_first_commit(first, partial)
    done = committed(partial)
    if case == 'second converter, same split':
        stamp = os.stat(os.path.join(partial, 'data.mdb')).st_mtime_ns
        second = run(convert_command(root, out))
        assert second.returncode == 2, second.stderr
        assert last_line(second.stderr).startswith(
            f'error: {out}/.train.lock: the database {out}/train is being written by another process '
            f'(pid {first.pid} on '
        )
        assert 'Traceback' not in second.stderr
        # the refused converter touched nothing of the running one
        assert committed(partial) == done and os.stat(os.path.join(partial, 'data.mdb')).st_mtime_ns == stamp
        assert os.path.exists(os.path.join(partial, 'lock.mdb'))
        os.killpg(first.pid, signal.SIGCONT)
        _, err = first.communicate(timeout=180)
        assert first.returncode == 0, err
    elif case == 'kill -9, then rerun':
        os.killpg(first.pid, signal.SIGKILL)
        first.communicate(timeout=60)
        assert os.path.exists(out / '.train.lock')  # stale: its holder is gone, the rerun takes it
        rerun = run(convert_command(root, out))
        assert rerun.returncode == 0, rerun.stderr
    else:
        other = run(convert_command(root, out, 'val'))
        assert other.returncode == 0, other.stderr
        os.killpg(first.pid, signal.SIGCONT)
        _, err = first.communicate(timeout=180)
        assert first.returncode == 0, err
        assert len(open_database(out / 'val')) == 6
    assert_complete(out / 'train', reference)
    assert digest(root) == before


# ---------------------------------------------------------------------------------- 2. damaged databases


@pytest.fixture(scope='module')
def small_db(tmp_path_factory):
    base = tmp_path_factory.mktemp('small')
    root = small_cityscapes(base / 'cs', count=4)
    return convert.convert_split('cityscapes', root, base / 'data', 'train', progress=False)


def tile_key(record, name='image', ty=0, tx=0):
    return f'{record:08d}/{name}/{ty:03d}/{tx:03d}'.encode()


def put_tile(db, key, value):
    with lmdb.open(db, subdir=True, lock=False) as env, env.begin(write=True) as txn:
        txn.put(key, value)


def zero_zlib_header(db):
    with lmdb.open(db, subdir=True, readonly=True, lock=False) as env, env.begin() as txn:
        value = bytes(txn.get(tile_key(1)))
    data_path = os.path.join(db, 'data.mdb')
    with open(data_path, 'r+b') as f:
        data = f.read()
        assert data.count(value) == 1
        f.seek(data.index(value))
        f.write(b'\0' * 8)  # bytes zeroed inside the file, as a bad disk or copy leaves them


def swap_tile(db):
    with lmdb.open(db, subdir=True, readonly=True, lock=False) as env, env.begin() as txn:
        value = bytes(txn.get(tile_key(0, 'depth')))
    put_tile(db, tile_key(1, 'depth'), value)  # decompresses fine: only the checksum tells


def drop_manifest_record(db):
    path = os.path.join(db, 'manifest.json')
    manifest = json.load(open(path))
    manifest['records'].pop()
    manifest['count'] -= 1
    json.dump(manifest, open(path, 'w'))


#: case -> (damage, record index to export, fault of open/export (after "error: "), verify's fault)
DAMAGES = {
    'truncated data.mdb': (
        lambda db: os.truncate(os.path.join(db, 'data.mdb'), os.path.getsize(os.path.join(db, 'data.mdb')) // 2),
        0,
        '{db}/data.mdb: truncated: ',
        None,
    ),
    'bytes zeroed in a tile': (
        zero_zlib_header,
        1,
        '{db}: damaged record 1 ({key1}, from {src1}): image tile (0, 0) does not decompress',
        'image tile (0, 0) does not decompress',
    ),
    'tile of the wrong size': (
        lambda db: put_tile(db, tile_key(1, 'label', 1, 2), zlib.compress(b'\0' * 10)),
        1,
        '{db}: damaged record 1 ({key1}, from {src1}): label tile (1, 2) holds 10 bytes, 4096 expected',
        'label tile (1, 2) holds 10 bytes, 4096 expected',
    ),
    'tile of another record': (
        swap_tile,
        1,
        "{db}: damaged record 1 ({key1}, from {src1}): its content differs from the manifest's sha256",
        'sha256 ',
    ),
    'manifest of other data': (
        drop_manifest_record,
        0,
        '{db}/data.mdb: holds 100 LMDB entries, {db}/manifest.json describes 75 (3 records)',
        None,
    ),
}


@pytest.mark.parametrize('case', sorted(DAMAGES))
def test_damaged_database(small_db, tmp_path, case):
    damage, index, fault, verify_fault = DAMAGES[case]
    db = str(tmp_path / 'train')
    shutil.copytree(small_db, db)
    damage(db)
    entry = json.load(open(os.path.join(small_db, 'manifest.json')))['records'][1]
    source = os.path.join(json.load(open(os.path.join(small_db, 'manifest.json')))['source_root'], entry['sources'][0])
    message = 'error: ' + fault.format(db=db, key1=entry['key'], src1=source)
    before = digest(db)
    npz = tmp_path / 'record.npz'

    exported = run(
        [sys.executable, '-m', 'data_prep', 'export-record', '--db', db, '--index', str(index), '--out', npz]
    )
    assert (exported.returncode, last_line(exported.stderr)[: len(message)]) == (2, message), exported.stderr
    assert not npz.exists() and 'Traceback' not in exported.stderr

    verified = run([sys.executable, '-m', 'data_prep', 'verify', '--db', db, '--quiet'])
    assert verified.returncode == 2 and 'Traceback' not in verified.stderr, verified.stderr
    if verify_fault is None:  # the structural check on open
        assert last_line(verified.stderr)[: len(message)] == message
    else:
        assert f'damaged: record 1 {entry["key"]} (from {source}): {verify_fault}' in verified.stderr
        assert last_line(verified.stderr) == f'error: {db}: 1 of 4 records damaged ({entry["key"]}): convert again'

    # the data layer's worker process reads through the same reader: the same fault reaches forward()
    if verify_fault is None:
        with pytest.raises(DataError) as info:
            open_database(db)
        assert f'error: {info.value}'.startswith(message)
    elif case != 'tile of another record':  # training does not checksum: verify does
        params = parse_param_str(
            json.dumps({'source': db, 'batch_size': 4, 'crop_size': 257, 'mean': [0, 0, 0], 'train': False})
        )
        workers = BatchWorkers(CropSampler(open_database(db), params), 1)
        try:
            with pytest.raises(DataError) as info:
                workers.next()
        finally:
            workers.close()
        assert f'error: {info.value}'.startswith(message)
    assert digest(db) == before  # reading, exporting and verifying change nothing


def test_a_clean_database_verifies_with_exit_0(small_db):
    verified = run([sys.executable, '-m', 'data_prep', 'verify', '--db', small_db])
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.strip() == f'{small_db}: all 4 records match their checksums (cityscapes/train)'
    assert '4/4' in verified.stderr  # the progress bar


def test_a_data_layer_worker_killed_names_the_database_and_its_records(small_db):
    """A worker process that dies (here: a real SIGBUS, as a truncated file gives) is reported with
    the database, the batch's record keys and the way to check them, not as a bare exit code."""
    params = parse_param_str(
        json.dumps({'source': small_db, 'batch_size': 2, 'crop_size': 65, 'mean': [0, 0, 0], 'train': False})
    )
    database = open_database(small_db)
    handler = faulthandler.is_enabled()
    faulthandler.disable()  # pytest's, inherited by the fork, would print the SIGBUS as a fatal error
    try:
        workers = BatchWorkers(CropSampler(database, params), 1, depth=1)
    finally:
        if handler:
            faulthandler.enable(file=sys.__stderr__)
    try:
        workers.next()  # the worker runs its loop
        os.kill(workers._processes[0].pid, signal.SIGBUS)
        workers._processes[0].join(10)
        with pytest.raises(DataError) as info:
            for _ in range(4):  # batches built before the kill are served first
                workers.next()
    finally:
        workers.close()
    number = workers.number - 1
    keys = [database.records[i]['key'] for i in (2 * number % 4, (2 * number + 1) % 4)]
    assert str(info.value) == (
        f'{small_db}: HybridData worker 0 died (killed by SIGBUS) (a damaged or truncated database?) building '
        f'batch {number} from record {keys[0]}, {keys[1]}: check it with `python -m data_prep verify --db {small_db}`'
    )


# ---------------------------------------------------------------------------------- 3. environment faults


def limit_file_size(limit):
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def namespaces_work():
    try:
        return subprocess.run(['unshare', '-rm', 'true'], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def in_namespace(script, *args):
    """`script` (sh) as root of a new user + mount namespace: its mounts vanish with it."""
    if not namespaces_work():
        pytest.skip('no user + mount namespaces here (unshare -rm)')
    return run(['unshare', '-rm', 'sh', '-c', script, 'sh', *map(str, args)])


def test_full_disk_stops_with_the_database_named_and_a_rerun_resumes(samples, tmp_path):
    """A file-size limit half the database's size: EFBIG at a commit, like ENOSPC on a full disk."""
    root, reference = samples
    out = tmp_path / 'out'
    limit = os.path.getsize(os.path.join(reference, 'data.mdb')) // 2
    failed = run(convert_command(root, out), preexec_fn=limit_file_size(limit))
    partial = str(out / 'train') + PARTIAL_SUFFIX
    assert failed.returncode == 2, failed.stderr
    assert last_line(failed.stderr).startswith(f'error: {partial}/data.mdb: file size limit reached: ')
    assert f'of at most {limit} bytes (ulimit -f; mdb_txn_commit: ' in last_line(failed.stderr)
    assert last_line(failed.stderr).endswith(
        f'; the records done are kept in {partial}: fix that, then rerun the same command to resume'
    )
    assert 'Traceback' not in failed.stderr
    assert not (out / 'train').exists() and committed(partial)
    rerun = run(convert_command(root, out))
    assert rerun.returncode == 0, rerun.stderr
    assert_complete(out / 'train', reference)


def test_export_record_past_a_file_size_limit_leaves_no_file(small_db, tmp_path):
    npz = tmp_path / 'record.npz'
    result = run(
        [sys.executable, '-m', 'data_prep', 'export-record', '--db', small_db, '--index', '0', '--out', npz],
        preexec_fn=limit_file_size(50_000),
    )
    assert (result.returncode, last_line(result.stderr)) == (2, f'error: {npz}: File too large')
    assert os.listdir(tmp_path) == []


def test_a_real_full_disk_then_more_space(samples, tmp_path):
    """ENOSPC from a tmpfs smaller than the database, then the same tmpfs made larger: resumed."""
    root, reference = samples
    out, copy = tmp_path / 'mnt', tmp_path / 'copy'
    out.mkdir()
    size = os.path.getsize(os.path.join(reference, 'data.mdb')) // 2
    command = ' '.join(convert_command(root, '$1/data'))
    script = (
        f'mount -t tmpfs -o size={size} tmpfs "$1" || exit 99\n'
        f'{command}; echo "first=$?" >&2\n'
        'mount -o remount,size=256m "$1"\n'
        f'{command}; echo "second=$?" >&2\n'
        'cp -r "$1/data/train" "$2"\n'
    )
    result = in_namespace(script, out, copy)
    lines = result.stderr.strip().splitlines()
    partial = f'{out}/data/train{PARTIAL_SUFFIX}'
    first = lines.index('first=2')
    assert lines[first - 1].startswith(f'error: {partial}/data.mdb: disk full: ')
    assert 'bytes free on its file system' in lines[first - 1] and 'Traceback' not in result.stderr
    assert 'second=0' in lines, result.stderr
    assert_same_database(copy, reference)
    assert all(fault is None for _, fault in verify_records(open_database(copy)))


@pytest.mark.parametrize('case', ['read-only --out', 'new --out in a read-only folder', '--out under a file'])
def test_unwritable_out_is_named_and_nothing_is_written(samples, tmp_path, case):
    root, _ = samples
    before = digest(root)
    if case == '--out under a file':
        (tmp_path / 'file').write_text('a file, not a folder')
        out = tmp_path / 'file' / 'out'
        result = run(convert_command(root, out))
        expected = f'error: {out}: cannot create the output directory: Not a directory'
    else:
        folder = tmp_path / 'ro'
        folder.mkdir()
        out = folder if case == 'read-only --out' else folder / 'new'
        command = ' '.join(convert_command(root, out))
        result = in_namespace(f'mount --bind -o ro "$1" "$1" && exec {command}', folder)
        expected = (
            f'error: {out}/.train.lock: cannot create the lock file of the database {out}/train: Read-only file system'
            if case == 'read-only --out'
            else f'error: {out}: cannot create the output directory: Read-only file system'
        )
        assert os.listdir(folder) == []
    assert (result.returncode, last_line(result.stderr)) == (2, expected), result.stderr
    assert 'Traceback' not in result.stderr
    assert digest(root) == before


@pytest.mark.parametrize(
    'sig, target',
    [(signal.SIGTERM, 'main process'), (signal.SIGTERM, 'process group'), (signal.SIGINT, 'process group')],
)
def test_signal_to_a_conversion_is_one_message_and_the_rerun_resumes(samples, tmp_path, sig, target):
    """`kill PID`, `kill -TERM -PGID` (a service manager) or Ctrl-C (the terminal signals the whole
    group): the main process says one thing and exits 143 / 130; the worker processes say nothing."""
    root, reference = samples
    out = tmp_path / 'out'
    partial = str(out / 'train') + PARTIAL_SUFFIX
    process = start(convert_command(root, out))
    stop_after_first_commit(process, partial)
    if target == 'main process':
        os.kill(process.pid, sig)
    else:
        os.killpg(process.pid, sig)
    os.killpg(process.pid, signal.SIGCONT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == (143 if sig == signal.SIGTERM else 130), err
    assert last_line(err) == 'interrupted: rerun the same command to resume from the records done'
    assert err.count('interrupted') == 1
    for noise in ('Traceback', 'BrokenPipeError', 'KeyboardInterrupt', 'Process ForkPoolWorker'):
        assert noise not in err
    assert not (out / 'train').exists() and committed(partial)
    rerun = run(convert_command(root, out))
    assert rerun.returncode == 0, rerun.stderr
    assert_complete(out / 'train', reference)


def test_a_worker_killed_mid_conversion_stops_it_and_a_rerun_resumes(samples, tmp_path):
    """kill -9 of one worker process (as the out-of-memory killer does): an error, not a hang."""
    root, reference = samples
    out = tmp_path / 'out'
    partial = str(out / 'train') + PARTIAL_SUFFIX
    process = start(convert_command(root, out))
    stop_after_first_commit(process, partial)
    with open(f'/proc/{process.pid}/task/{process.pid}/children') as f:
        workers = [int(pid) for pid in f.read().split()]
    assert len(workers) == 2
    os.kill(workers[0], signal.SIGKILL)
    os.killpg(process.pid, signal.SIGCONT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 2, err
    assert last_line(err) == (
        f'error: {partial}: a worker process died (killed by SIGKILL; out of memory?); the records done are '
        f'kept in {partial}: fix that, then rerun the same command to resume'
    )
    assert 'Traceback' not in err and not (out / 'train').exists() and committed(partial)
    rerun = run(convert_command(root, out))
    assert rerun.returncode == 0, rerun.stderr
    assert_complete(out / 'train', reference)


# ---------------------------------------------------------------------------------- 4. wrong but well-formed inputs


def set_camera(path, change):
    camera = json.load(open(path))
    change(camera)
    with open(path, 'w') as f:
        json.dump(camera, f)  # NaN and Infinity as Python's json writes them


#: case -> (change of one camera JSON, fault)
CAMERAS = {
    'baseline 0': (lambda c: c['extrinsic'].update(baseline=0), 'extrinsic.baseline is 0 metres: must be positive'),
    'negative baseline': (
        lambda c: c['extrinsic'].update(baseline=-0.2),
        'extrinsic.baseline is -0.2 metres: must be positive (it would give negative depth)',
    ),
    'fx 0': (lambda c: c['intrinsic'].update(fx=0.0), 'intrinsic.fx is 0 pixels: must be positive'),
    'NaN baseline': (
        lambda c: c['extrinsic'].update(baseline=float('nan')),
        'extrinsic.baseline is NaN: not a finite number of metres',
    ),
    'infinite fx': (lambda c: c['intrinsic'].update(fx=float('inf')), 'intrinsic.fx is inf: not a finite number'),
    'missing fx': (lambda c: c['intrinsic'].pop('fx'), 'wrong structure: needs extrinsic.baseline and intrinsic.fx'),
    'baseline as text': (lambda c: c['extrinsic'].update(baseline='0.2'), "baseline '0.2' and fx"),
}


@pytest.mark.parametrize('case', sorted(CAMERAS))
def test_physically_impossible_camera_is_refused_or_skipped(tmp_path, case):
    change, fault = CAMERAS[case]
    root = small_cityscapes(tmp_path / 'cs', count=3)
    camera = sorted(os.path.join(base, n) for base, _, names in os.walk(os.path.join(root, 'camera')) for n in names)[1]
    set_camera(camera, change)
    before = digest(root)
    out = tmp_path / 'out'
    result = run(convert_command(root, out))
    assert result.returncode == 2 and last_line(result.stderr).startswith(f'error: {camera}: {fault}'), result.stderr
    assert not (out / 'train').exists() and not (out / f'train{PARTIAL_SUFFIX}').exists()
    # --skip-bad: the rest is converted, the record is listed with its fault
    path = convert.convert_split('cityscapes', root, out, 'train', skip_bad=True, progress=False)
    database = open_database(path)
    assert len(database) == 2 and all(fault is None for _, fault in verify_records(database))
    (skipped,) = database.manifest['skipped']
    assert skipped['path'] == os.path.relpath(camera, root) and skipped['fault'].startswith(fault)
    assert digest(root) == before


def nyuv2_root(tmp_path, train, test):
    root = str(tmp_path / 'nyuv2')
    sample_nyuv2.write(root, count=2, seed=1)
    matlab.write_v5(
        os.path.join(root, nyuv2.SPLITS_FILE),
        {'trainNdxs': np.array(train, float).reshape(-1, 1), 'testNdxs': np.array(test, float).reshape(-1, 1)},
    )
    return root, os.path.join(root, nyuv2.SPLITS_FILE)


def sunrgbd_root(tmp_path, into):
    """A SUN-RGBD sample whose allsplit.mat lists the first training frame once more, in `into`."""
    root = str(tmp_path / 'sunrgbd')
    sample_sunrgbd.write(root, count=2, seed=1)
    path = os.path.join(root, sunrgbd.SPLIT_FILE)
    split = matlab.load_v5(path, ['alltrain', 'alltest'])
    lists = {name: list(matlab.as_list(split[name])) for name in ('alltrain', 'alltest')}
    lists[into].append(lists['alltrain'][0])
    matlab.write_v5(path, lists)
    return root, path


#: case -> (dataset, make the root -> (root, split file), fault)
SPLIT_FILES = {
    'NYUv2 index twice': (
        'nyuv2',
        lambda t: nyuv2_root(t, (1, 3, 1), (2, 4)),
        "'trainNdxs' entry 3 names image 1 a second time",
    ),
    'NYUv2 image in both splits': (
        'nyuv2',
        lambda t: nyuv2_root(t, (1, 3), (2, 3)),
        "image 3 is in both 'trainNdxs' and 'testNdxs' (1 shared): the splits overlap",
    ),
    'NYUv2 index past the images': ('nyuv2', lambda t: nyuv2_root(t, (1, 9), (2,)), "'trainNdxs' entry 2 = 9 out of"),
    'SUN-RGBD frame twice': ('sunrgbd', lambda t: sunrgbd_root(t, 'alltrain'), 'alltrain entry 3 '),
    'SUN-RGBD frame in both splits': (
        'sunrgbd',
        lambda t: sunrgbd_root(t, 'alltest'),
        'frame SUNRGBD/',
    ),
}


@pytest.mark.parametrize('case', sorted(SPLIT_FILES))
def test_split_files_naming_a_record_twice_or_none_are_refused(tmp_path, case):
    dataset, make, fault = SPLIT_FILES[case]
    root, split_file = make(tmp_path)
    before = digest(root)
    out = tmp_path / 'out'
    result = run([sys.executable, '-m', 'data_prep', dataset, '--root', root, '--out', out, '--splits', 'train'])
    assert result.returncode == 2 and 'Traceback' not in result.stderr, result.stderr
    assert last_line(result.stderr).startswith(f'error: {split_file}: {fault}')
    if case == 'SUN-RGBD frame twice':
        assert 'a second time' in last_line(result.stderr)
    if case == 'SUN-RGBD frame in both splits':
        assert "is in both 'alltrain' and 'alltest' (1 shared): the splits overlap" in last_line(result.stderr)
    assert not os.path.exists(out / 'train') and not os.path.exists(out / f'train{PARTIAL_SUFFIX}')
    assert digest(root) == before
