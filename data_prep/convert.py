"""The generic converter: any `data_prep.dataset` reader -> one database per split.

Worker processes read and check records through the dataset module, compress them into tiles and
commit each record to the LMDB of `<out>/<split>.partial/` in one transaction (LMDB serialises the
writers).
When every record is in, the manifest is written and the directory renamed to `<out>/<split>`:

- atomic: `<out>/<split>` exists only when complete;
- resumable: after an interruption (Ctrl-C, kill, power) a rerun of the same command keeps the
  committed records and converts the rest, ending with the same records as an uninterrupted run;
- a bad input (`DataError`) stops the conversion and removes the partial directory, unless
  `skip_bad` is set: then the record is left out and listed in `skipped.json` with its fault;
- exclusive: a converter holds `<out>/.<split>.lock` (`data_prep.lock`) for its whole run; a
  second one into the same split is refused at once, naming the holder; a killed one's is stale;
- the environment's faults (a full disk, a file-size limit, a read-only --out, a worker process
  killed) are a `database.StorageError` naming the file: the records done are kept for a rerun;
- signals: SIGINT and SIGTERM are the main process's (docs/DESIGN.md); the worker processes ignore
  Ctrl-C, die silently on SIGTERM and die with the main process.
"""

import glob
import hashlib
import json
import multiprocessing
import os
import shutil
import signal
import sys
from typing import NamedTuple

from data_prep import database as db
from data_prep import dataset_module, lock
from data_prep.dataset import check_record
from data_prep.errors import DataError

#: Bumped whenever the records a converter writes would change.
CONVERTER_VERSION = '1.0'
_JOB = 'job.json'


class Task(NamedTuple):
    """What a worker needs to convert one record (picklable)."""

    dataset: str
    root: str
    split: str
    record_id: int
    key: str
    skip_bad: bool


def convert_record(task):
    """Read, check and encode one record: ('ok', id, values) or ('skipped', id, note)."""
    module = dataset_module(task.dataset)
    try:
        record = module.load_record(task.root, task.split, task.key)
        check_record(record, len(module.CLASS_NAMES))
    except DataError as err:
        if not task.skip_bad:
            raise
        return (
            'skipped',
            task.record_id,
            {'id': task.record_id, 'key': task.key, 'path': _relative(err.path, task.root), 'fault': err.fault},
        )
    sources = [_relative(path, task.root) for path in record.sources]
    _, values = db.encode_record(task.record_id, record, task.key, sources)
    return 'ok', task.record_id, values


def convert_split(dataset, root, out, split, workers=1, skip_bad=False, overwrite=False, progress=True):
    """Convert `split` of the dataset at `root` into `<out>/<split>`; returns the database path.

    Raises DataError for bad inputs (leaving no database behind) and for an `out` that holds
    another dataset. KeyboardInterrupt leaves `<out>/<split>.partial` for a rerun to resume.
    """
    module = dataset_module(dataset)
    root, out = os.path.abspath(root), os.path.abspath(out)
    final = os.path.join(out, split)
    if split not in module.SPLITS:
        raise ValueError(f'{dataset} has no split {split!r}; it has {", ".join(module.SPLITS)}')
    _check_output(out, final, dataset)
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as err:
        raise DataError(out, f'cannot create the output directory: {err.strerror}') from None
    # one converter per split: a second one is refused (naming the holder), a killed one's lock is stale
    with lock.exclusive(os.path.join(out, f'.{split}.lock'), f'the database {final}', remove=True):
        return _convert_locked(module, dataset, root, split, final, workers, skip_bad, overwrite, progress)


def _convert_locked(module, dataset, root, split, final, workers, skip_bad, overwrite, progress):
    partial = final + db.PARTIAL_SUFFIX
    if os.path.isdir(final) and not overwrite:
        _say(f'{final}: {dataset} {split} already converted (pass --overwrite to rebuild)', progress)
        return final

    keys = module.list_records(root, split)
    if not keys:
        raise DataError(root, f'no {split} records found')
    if len(keys) != module.SPLITS[split]:
        _say(
            f'note: {len(keys)} {split} records; the official {dataset} {split} split has '
            f'{module.SPLITS[split]} (sample data or a partial download?)',
            progress,
        )
    job = {
        'dataset': dataset,
        'split': split,
        'root': root,
        'converter_version': CONVERTER_VERSION,
        'format_version': db.FORMAT_VERSION,
        'skip_bad': skip_bad,
        'count': len(keys),
        'keys_sha256': hashlib.sha256('\n'.join(keys).encode()).hexdigest(),
    }
    _start_or_resume(partial, job)
    try:
        with db.Writer(partial) as writer:
            entries, skipped = writer.done()
        finished = {e['id'] for e in entries} | {s['id'] for s in skipped}
        tasks = [Task(dataset, root, split, i, key, skip_bad) for i, key in enumerate(keys) if i not in finished]
        _run(tasks, partial, workers, len(finished), len(keys), f'{dataset}/{split}', progress)
        with db.Writer(partial) as writer:
            entries, skipped = writer.done()
        return _finish(partial, final, entries, skipped, job, module, progress)
    except (db.StorageError, OSError) as err:  # the disk's fault: keep the records done for a rerun
        if not isinstance(err, DataError):
            err = db.StorageError(err.filename or partial, err.strerror or err)
        raise db.StorageError(
            err.path,
            f'{err.fault}; the records done are kept in {partial}: fix that, then rerun the same command to resume',
        ) from None
    except DataError:  # the input's fault: nothing half-written stays
        shutil.rmtree(partial, ignore_errors=True)
        raise


_WRITER = None  # each worker process's handle on the partial database


def _open_writer(partial):
    global _WRITER
    _WRITER = db.Writer(partial)


def _start_worker(partial):
    """Pool initializer: signals are the main process's business. Ctrl-C (sent to the whole process
    group) is ignored; SIGTERM (`pool.terminate`, or the group) ends the worker silently; and the
    worker is killed when the main process dies, so that none lingers or writes into a closed pipe."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _die_with_parent()
    _open_writer(partial)


def _die_with_parent():
    try:
        import ctypes  # noqa: PLC0415

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG (Linux)
    except (OSError, AttributeError):
        pass  # elsewhere: a worker notices a closed task pipe and ends


def convert_and_store(task):
    """`convert_record`, committed by this process to its `_WRITER` (LMDB serialises writers)."""
    status, record_id, payload = convert_record(task)
    if status == 'ok':
        _WRITER.put(payload)
    else:
        _WRITER.put_skipped(record_id, payload)
    return status


def _run(tasks, partial, workers, done, total, description, progress):
    from tqdm import tqdm  # noqa: PLC0415 (not needed in workers)

    bar = tqdm(
        total=total, initial=done, unit='img', desc=description, disable=not progress, dynamic_ncols=True, smoothing=0.1
    )
    with bar:
        if workers <= 1 or len(tasks) <= 1:
            _open_writer(partial)
            try:
                for task in tasks:
                    convert_and_store(task)
                    bar.update()
            finally:
                _WRITER.close()
            return
        _run_pool(tasks, partial, min(workers, len(tasks)), bar)


def _run_pool(tasks, partial, workers, bar):
    """Workers read, encode and commit records themselves: only small acknowledgements come back.
    A worker that dies (the out-of-memory killer, kill -9) ends the conversion with a clear error
    (a `multiprocessing.Pool` would wait for its task forever)."""
    from concurrent.futures import ProcessPoolExecutor, as_completed  # noqa: PLC0415
    from concurrent.futures.process import BrokenProcessPool  # noqa: PLC0415

    context = multiprocessing.get_context('fork')
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker, initargs=(partial,))
    processes = {}
    try:
        futures = [pool.submit(convert_and_store, task) for task in tasks]
        processes.update(pool._processes)  # all started at the first submit (fork)
        for future in as_completed(futures):
            future.result()
            bar.update()
    except BaseException as err:
        for process in list(processes.values()):  # a signal or an error: stop the rest now
            if process.is_alive():
                process.terminate()
        if not isinstance(err, BrokenProcessPool):
            raise
        for process in processes.values():  # reaped by the executor's thread or here: then exitcode is known
            process.join(5)
        codes = [p.exitcode for p in processes.values() if p.exitcode and p.exitcode != -signal.SIGTERM]
        how = f'killed by {signal.Signals(-codes[0]).name}' if codes and codes[0] < 0 else f'exit code {codes}'
        raise db.StorageError(
            partial, f'a worker process died ({how if codes else "unknown cause"}; out of memory?)'
        ) from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _finish(partial, final, entries, skipped, job, module, progress):
    if not entries:
        shutil.rmtree(partial, ignore_errors=True)
        raise DataError(
            job['root'],
            f'no {job["split"]} record could be converted; first fault: {skipped[0]["path"]}: {skipped[0]["fault"]}',
        )
    manifest = db.build_manifest(
        job['dataset'],
        job['split'],
        job['split'] in module.LABELLED_SPLITS,
        module.CLASS_NAMES,
        entries,
        skipped,
        converter_version=CONVERTER_VERSION,
        source_root=job['root'],
    )
    if skipped:
        report = os.path.join(final, db.SKIP_REPORT)
        db.write_json(os.path.join(partial, db.SKIP_REPORT), skipped)
        _say(f'skipped {len(skipped)} of {job["count"]} {job["split"]} records (report: {report}):', progress)
        for item in skipped[:5]:
            _say(f'  {item["path"]}: {item["fault"]}', progress)
    db.seal(partial, manifest)  # before job.json goes: a partial without job.json could not resume
    os.remove(os.path.join(partial, _JOB))
    if os.path.isdir(final):  # --overwrite: swap the new database in, then drop the old one
        old = f'{final}.old-{os.getpid()}'
        os.rename(final, old)
        os.rename(partial, final)
        shutil.rmtree(old)
    else:
        os.rename(partial, final)
    return final


def _check_output(out, final, dataset):
    """DataError when `out` is no directory or already holds another dataset's databases."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise DataError(out, 'output path exists and is not a directory')
    for manifest_path in [os.path.join(out, db.MANIFEST)] + sorted(glob.glob(os.path.join(out, '*', db.MANIFEST))):
        if not os.path.isfile(manifest_path):
            continue
        try:
            with open(manifest_path, encoding='utf-8') as f:
                other = json.load(f).get('dataset')
        except (ValueError, AttributeError):
            other = None
        if other != dataset:
            raise DataError(
                manifest_path,
                f'output directory already holds a different dataset '
                f'({other or "unreadable manifest"}), not {dataset}: choose another --out',
            )
    if os.path.exists(final) and not os.path.isfile(os.path.join(final, db.MANIFEST)):
        raise DataError(final, 'exists and is not a database: move it away or choose another --out')


def _start_or_resume(partial, job):
    job_path = os.path.join(partial, _JOB)
    if os.path.isdir(partial):
        try:
            with open(job_path, encoding='utf-8') as f:
                previous = json.load(f)
        except (OSError, ValueError):
            previous = None
        if previous != job:
            differs = sorted(k for k in job if not previous or previous.get(k) != job[k])
            raise DataError(
                partial,
                f'holds an interrupted conversion with other settings '
                f'({", ".join(differs) or "unreadable job.json"}): rerun it with those, or delete it',
            )
        # we hold the split's lock, so no one writes it now: a killed writer's LMDB lock is stale
        lmdb_lock = os.path.join(partial, 'lock.mdb')
        if os.path.exists(lmdb_lock):
            os.remove(lmdb_lock)
        return
    try:
        os.makedirs(partial)
        db.write_json(job_path, job)
    except OSError as err:  # nothing committed yet: leave nothing behind
        shutil.rmtree(partial, ignore_errors=True)
        raise db.StorageError(err.filename or partial, f'cannot start the database: {err.strerror}') from None


def _relative(path, root):
    """`path` relative to `root` when inside it (manifests do not depend on where root is mounted)."""
    return os.path.relpath(path, root) if str(path).startswith(root + os.sep) else str(path)


def _say(message, progress=True):
    if progress:
        print(message, file=sys.stderr)
