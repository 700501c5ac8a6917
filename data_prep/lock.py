"""Exclusive locks on directories being written: a database under conversion, a training run.

`exclusive(path, what)` takes an advisory `flock` on the file `path` (created if absent) and
writes who holds it (pid, host, command, start time) into it. A second writer is refused at
once with a `DataError` naming the file and the holder. The kernel drops a `flock` when its
process dies, however it dies (kill -9 included), so a lock file left behind by a killed process
is stale by construction: the next writer takes it, it is never obeyed forever. The file itself
is left in place unless the holder asks `release(fd, path)` to remove it: it unlinks it while still
holding the lock, and `acquire` retries when the file it locked is no longer the one at `path`
(removed or replaced meanwhile), so that two writers never hold two different files.

Only processes of one machine see each other's `flock` on a local disk; several machines
writing one directory over a network file system need that file system's own locking.
"""

import contextlib
import fcntl
import json
import os
import socket
import sys
import time

from data_prep.errors import DataError


def _holder(fd):
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        info = json.loads(os.read(fd, 4096).decode() or '{}')
        return 'pid %s on %s since %s: %s' % (
            info.get('pid', '?'),
            info.get('host', '?'),
            info.get('started', '?'),
            info.get('command', '?'),
        )
    except (OSError, ValueError):
        return 'a process that wrote no details'


def acquire(path, what):
    """Take the lock `path` for `what` (e.g. 'the database data/cityscapes/train'); returns the
    open descriptor to pass to `release`. Raises DataError when another process holds it."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise DataError(path, 'cannot create the lock file of %s: %s' % (what, err.strerror)) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise DataError(path, '%s is being written by another process (%s); wait for it to end' % (what, holder))
        if _same_file(fd, path):
            break
        os.close(fd)  # its holder removed it on release: lock the file now at `path`
    info = {
        'pid': os.getpid(),
        'host': socket.gethostname(),
        'started': time.strftime('%Y-%m-%d %H:%M:%S'),
        'command': ' '.join(sys.argv),
    }
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
    except OSError:
        pass  # a full disk: the lock holds all the same, without the holder's details
    return fd


def _same_file(fd, path):
    try:
        here, there = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def release(fd, path=None):
    """Drop a lock taken by `acquire`; with `path`, remove the lock file first (still holding it)."""
    try:
        if path is not None:
            with contextlib.suppress(OSError):
                os.unlink(path)
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextlib.contextmanager
def exclusive(path, what, remove=False):
    """`with exclusive(path, what):` the lock held for the block (see `acquire`); `remove`: the lock
    file goes with the lock (a killed holder's stays behind, stale)."""
    fd = acquire(path, what)
    try:
        yield
    finally:
        release(fd, path if remove else None)
