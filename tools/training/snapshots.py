"""Snapshots a run can trust: written as a pair, atomically, checked finite; the newest good one.

Caffe writes a snapshot in place, the `.caffemodel` then the `.solverstate`, and the
solverstate names its caffemodel (`learned_net`). A kill in between, a truncated copy or a
diverged update would leave a snapshot that `solver.restore` aborts on (a CHECK, exit 134) or
that resumes on NaN weights. So:

- `write` lets Caffe snapshot under a hidden prefix (`snapshots/.partial/`, the run copy's
  `snapshot_prefix`, see `caffe_prefix`), fsyncs both files, checks them (`problem`: complete,
  finite weights and history), points the solverstate's `learned_net` at the final caffemodel
  name, then renames the caffemodel first and the solverstate last: a `.solverstate` exists
  only beside its complete caffemodel. A snapshot that is not finite is deleted, never named.
- `problem(state)` says why a snapshot cannot be resumed from (truncated or unparsable,
  missing caffemodel, NaN/inf, a net or solver it does not fit), or None; `newest_good` walks
  the snapshots newest first and skips the bad ones, saying which and why.
"""

import glob
import os
import re
import shutil
import time

import numpy as np
from caffe.proto import caffe_pb2

from tools.core import ToolError
from tools.core.protos import blob_array, fit_arrays, layer_blobs, read_binary, read_caffemodel

SNAPSHOTS = 'snapshots'
PARTIAL = '.partial'
#: Solver types that keep two history blobs per learnable parameter (Caffe's *PreSolve).
TWO_HISTORIES = ('Adam', 'AdaDelta')
#: How every reason that a snapshot is not finite begins.
NONFINITE = 'NaN or infinite'


def caffe_prefix(run_dir, stage):
    """The `snapshot_prefix` Caffe writes under: a hidden folder of the snapshots directory."""
    return os.path.join(run_dir, SNAPSHOTS, PARTIAL, stage)


def final_name(partial_path):
    """`.../snapshots/.partial/X` -> `.../snapshots/X`."""
    folder = os.path.dirname(os.path.dirname(partial_path))
    return os.path.join(folder, os.path.basename(partial_path))


def iteration(path):
    match = re.search(r'_iter_(\d+)\.(solverstate|caffemodel)$', path)
    return int(match.group(1)) if match else -1


def states(directory):
    """The .solverstate files of a stage directory, newest first."""
    found = glob.glob(os.path.join(directory, SNAPSHOTS, '*_iter_*.solverstate'))
    return sorted(found, key=iteration, reverse=True)


def any_snapshot(directory):
    """Whether the stage directory holds any snapshot file (good, torn or orphaned)."""
    return bool(glob.glob(os.path.join(directory, SNAPSHOTS, '*_iter_*.*')))


def caffemodel_of(state_path):
    return state_path[: -len('.solverstate')] + '.caffemodel'


# --- checking ----------------------------------------------------------------------------


def _read_state(path):
    try:
        state = read_binary(path, caffe_pb2.SolverState(), 'solverstate')
    except ToolError as err:
        return None, str(err)[len(str(path)) + 2 :]
    if not state.HasField('current_step'):  # Caffe writes it last: a cut at a field boundary
        return None, 'truncated solverstate (it ends before its last field)'
    return state, None


def _nonfinite(arrays_by_name):
    return [name for name, arrays in arrays_by_name.items() if not all(np.isfinite(a).all() for a in arrays)]


def learnable_count(net):
    """Caffe's learnable parameters of a live net (shared blobs counted once)."""
    return len({blob.data.ctypes.data for blobs in net.params.values() for blob in blobs})


def _fits_net(model, net, weights):
    saved = layer_blobs(model)
    missing = [name for name in net.params if name not in saved]
    if missing:
        return 'caffemodel %s lacks layers %s of the net (truncated, or another net)' % (weights, ', '.join(missing))
    for name, blobs in net.params.items():
        _, why = fit_arrays(saved[name], [b.data.shape for b in blobs])
        if why:
            return 'caffemodel %s does not fit layer %s of the net: %s' % (weights, name, why)
    return None


def problem(state_path, net=None, solver_type=None):
    """Why the snapshot `state_path` cannot be resumed from, or None when it can: the
    solverstate parses completely, its caffemodel exists and parses, weights and history are
    finite, and (given the live `net` and Caffe's `solver_type`) both fit the net."""
    state, why = _read_state(state_path)
    if why:
        return why
    weights = state.learned_net or caffemodel_of(state_path)
    if not os.path.isfile(weights):
        return 'its caffemodel %s is missing' % weights
    try:
        model = read_caffemodel(weights)
    except ToolError as err:
        return str(err)
    bad = _nonfinite(layer_blobs(model))
    if bad:
        return '%s weights in %s (layers %s)' % (NONFINITE, weights, ', '.join(bad[:5]))
    bad = [i for i, blob in enumerate(state.history) if not np.isfinite(blob_array(blob)).all()]
    if bad:
        return '%s solver history (blobs %s)' % (NONFINITE, ', '.join(map(str, bad[:5])))
    if net is not None:
        why = _fits_net(model, net, weights)
        if why:
            return why
        expected = learnable_count(net) * (2 if solver_type in TWO_HISTORIES else 1)
        if len(state.history) != expected:
            return 'holds %d history blobs, the %s solver of this net has %d (truncated, or another net or solver)' % (
                len(state.history),
                solver_type or 'SGD',
                expected,
            )
    return None


def check_named(state_path, net, solver_type):
    """`--resume FILE`: a ToolError naming the file and the fault unless it can be resumed."""
    why = problem(state_path, net, solver_type)
    if why:
        raise ToolError('%s: cannot resume from it: %s' % (state_path, why))


def newest_good(directory, net, solver_type, say):
    """The newest snapshot of the stage directory that can be resumed from (None if none),
    after saying which newer ones were skipped and why. Returns (path, [(skipped, why)])."""
    skipped = []
    for path in states(directory):
        why = problem(path, net, solver_type)
        if why is None:
            return path, skipped
        say('skipping snapshot %s: %s' % (path, why))
        skipped.append((path, why))
    return None, skipped


# --- writing -----------------------------------------------------------------------------


def _fsync_file(path):
    with open(path, 'rb') as f:
        os.fsync(f.fileno())


def _fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(*paths):
    for path in paths:
        if os.path.lexists(path):
            os.remove(path)


def clear_partial(directory):
    """Remove what a killed snapshot left in the hidden partial folder of a stage directory."""
    shutil.rmtree(os.path.join(directory, SNAPSHOTS, PARTIAL), ignore_errors=True)
    os.makedirs(os.path.join(directory, SNAPSHOTS, PARTIAL), exist_ok=True)


def write(solver, prefix, pause=None):
    """Snapshot `solver` whose `snapshot_prefix` is `prefix` (see `caffe_prefix`) as a pair.

    Returns (final solverstate path, None), or (None, why) when the snapshot is not finite or
    not complete (then nothing of it is kept). `pause`: seconds to sleep between the two
    renames (a test hook: the window a kill -9 hits)."""
    os.makedirs(os.path.dirname(prefix), exist_ok=True)
    solver.snapshot()
    partial_model = '%s_iter_%d.caffemodel' % (prefix, solver.iter)
    partial_state = '%s_iter_%d.solverstate' % (prefix, solver.iter)
    _fsync_file(partial_model)
    why = problem(partial_state)
    if why:
        _remove(partial_model, partial_state)
        return None, why
    model, state_path = final_name(partial_model), final_name(partial_state)
    state, _ = _read_state(partial_state)
    state.learned_net = model
    with open(partial_state, 'wb') as f:
        f.write(state.SerializeToString())
        f.flush()
        os.fsync(f.fileno())
    folder = os.path.dirname(state_path)
    _remove(state_path)  # an older state of this iteration must never pair with the new model
    os.replace(partial_model, model)
    _fsync_dir(folder)
    if pause:
        time.sleep(pause)
    os.replace(partial_state, state_path)
    _fsync_dir(folder)
    return state_path, None
