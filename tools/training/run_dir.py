"""A run directory: one training at a time, and the settings it was started with.

- `lock(run_dir)`: `RUN/train.lock` (`data_prep.lock`, a flock): a second `tools.train` into the
  same directory is refused at once, naming the lock and its holder; a killed run's lock is
  stale by construction (the kernel drops a flock with its process).
- `RUN/run.json` records the settings that define what is trained (`DEFINING`: the nets, the
  data, the schedule, the inits; not the device, the console or the snapshot interval) at the
  first start. A resumed run continues with them: an option not given (no `--data`, no
  `--init-deeplab`, ...) takes the recorded value (`inherit`); one given with another value is
  refused with every difference listed, unless `allow_changes`: then the file's `history` (and
  the caller's log) records the change.
"""

import dataclasses
import json
import os
import time

from data_prep import lock as locks
from tools.core import REPO, ToolError

LOCK = 'train.lock'
SETTINGS = 'run.json'
#: TrainOptions fields that define what is trained.
DEFINING = (
    'net',
    'dataset',
    'solver',
    'data',
    'batch',
    'iters',
    'base_lr',
    'solver_type',
    'filler',
    'loss_weight',
    'seed',
    'init_deeplab',
    'init_depthnet',
    'weights',
    'init_classifier',
    'probe_classifier',
)
_PATHS = ('solver', 'data', 'init_deeplab', 'init_depthnet')


def lock(run_dir):
    """Take the run directory's lock; returns what `unlock` takes. Raises DataError (exit 2)
    naming the lock file and the process holding it."""
    return locks.acquire(os.path.join(run_dir, LOCK), 'the training run %s' % run_dir)


def unlock(held):
    locks.release(held)


def settings(options):
    """The defining settings of `options` (a TrainOptions), with absolute paths."""
    out = {}
    for name in DEFINING:
        value = getattr(options, name, None)
        if name in _PATHS and value is not None:
            value = os.path.abspath(value)
        elif name == 'weights':
            value = [os.path.abspath(v) for v in value or []]
        elif name == 'loss_weight':
            value = {k: float(v) for k, v in value or []}
        out[name] = value
    if out['data'] is None and out['solver'] is None and out['dataset']:
        out['data'] = os.path.join(str(REPO), 'data', out['dataset'])  # the generated nets' default
    return out


def _read(path):
    try:
        with open(path) as f:
            record = json.load(f)
        if not isinstance(record.get('settings'), dict) or not isinstance(record.get('history'), list):
            raise ValueError('no settings and history')
        return record
    except (ValueError, AttributeError) as err:
        raise ToolError('%s: not a run settings file (%s): remove it to record the current settings' % (path, err))


def _write(path, record):
    temporary = path + '.tmp'
    with open(temporary, 'w') as f:
        json.dump(record, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)


def _unset(name, value):
    """Whether a TrainOptions field holds its not-given value (None, an empty list, 0 batches)."""
    if name in ('init_classifier', 'probe_classifier'):
        return not value
    return value is None or (isinstance(value, (list, tuple, dict)) and not value)


def inherit(run_dir, options, trained):
    """`options` with every defining option that was not given taken from the run's record
    (only when resuming a run that has one): `--resume auto` alone continues the same run."""
    path = os.path.join(run_dir, SETTINGS)
    if not trained or not os.path.isfile(path):
        return options
    given = _read(path).get('given', {})
    taken = {n: given[n] for n in DEFINING if _unset(n, getattr(options, n, None)) and not _unset(n, given.get(n))}
    if 'loss_weight' in taken:
        taken['loss_weight'] = list(taken['loss_weight'].items())
    return dataclasses.replace(options, **taken) if taken else options


def _flag(name):
    return '--' + name.replace('_', '-')


def differences(old, new):
    """[(option, recorded value, given value)] where the settings differ."""
    return [(_flag(k), old.get(k), new.get(k)) for k in DEFINING if old.get(k) != new.get(k)]


def check_settings(run_dir, options, trained, allow_changes=False, resolved=None):
    """Record the settings of a fresh run, or compare those of a resumed one (`trained`: the
    directory holds snapshots or a finished stage). `resolved`: settings whose defaults the
    caller resolved (e.g. the solvers' max_iter when --iters is not given), so that giving a
    default explicitly is no change. Returns the differences allowed (a list of (option, was,
    now)); raises ToolError listing them when they are not allowed."""
    path = os.path.join(run_dir, SETTINGS)
    current = dict(settings(options), **(resolved or {}))
    if not trained or not os.path.isfile(path):
        record = dict(settings=current, given=settings(options), history=[])
        _write(path, dict(record, started=time.strftime('%Y-%m-%d %H:%M:%S')))
        return []
    record = _read(path)
    diffs = differences(record['settings'], current)
    if diffs and not allow_changes:
        listed = '; '.join('%s was %s, now %s' % (flag, json.dumps(was), json.dumps(now)) for flag, was, now in diffs)
        raise ToolError(
            '%s: resuming with other settings than this run was started with: %s. Give the same options '
            'again, or pass --allow-changes to continue with the new ones (the change is recorded)' % (path, listed)
        )
    if diffs:
        record['history'].append(
            dict(time=time.strftime('%Y-%m-%d %H:%M:%S'), changes={f: [was, now] for f, was, now in diffs})
        )
        record['settings'], record['given'] = current, settings(options)
        _write(path, record)
    return diffs
