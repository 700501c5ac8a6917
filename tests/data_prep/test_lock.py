"""data_prep.lock: one writer at a time, across processes; a killed holder's lock is stale."""

import os
import signal
import subprocess
import sys
import time

import pytest

from data_prep import lock
from data_prep.errors import DataError
from tests.support import ROOT

HOLD = """
import sys, time
from data_prep import lock
with lock.exclusive(sys.argv[1], 'the test directory'):
    print('held', flush=True)
    time.sleep(60)
"""


def holder(path):
    proc = subprocess.Popen([sys.executable, '-c', HOLD, str(path)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == 'held'
    return proc


def test_a_second_writer_is_refused_with_the_holder_named(tmp_path):
    path = tmp_path / '.lock'
    proc = holder(path)
    try:
        with pytest.raises(
            DataError, match=r'the test directory is being written by another process \(pid %d' % proc.pid
        ):
            lock.acquire(str(path), 'the test directory')
    finally:
        proc.kill()
        proc.wait()


def test_a_killed_holder_leaves_a_stale_lock_that_is_taken(tmp_path):
    path = tmp_path / '.lock'
    proc = holder(path)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert path.exists()  # the file stays; the kernel dropped the lock with the process
    with lock.exclusive(str(path), 'the test directory'):
        assert '"pid": %d' % os.getpid() in path.read_text()


def test_released_lock_can_be_taken_again(tmp_path):
    path = str(tmp_path / '.lock')
    with lock.exclusive(path, 'x'):
        pass
    start = time.time()
    with lock.exclusive(path, 'x'):
        assert time.time() - start < 1
