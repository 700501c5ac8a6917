"""Every entry point follows docs/DESIGN.md's command-line convention: `--help` works, and the
same bad input (a file that does not exist) gives one line `error: <file>: ...` on stderr, exit
status 2 and no traceback, in every tool."""

import subprocess
import sys

import pytest

from tests.support import ROOT

MISSING = '/nonexistent/hybridnet-missing'

ENTRY_POINTS = [
    'netgen',
    'data_prep',
    'tools.train',
    'tools.evaluate',
    'tools.report',
    'tools.plot_log',
    'tools.export',
    'tools.parity',
    'tools.demo',
    'bench.train',
    'bench.eval',
    'bench.backends',
    'bench.data',
    'bench.distributed',
    'bench.tf32_parity',
]

#: tool -> arguments naming MISSING where the tool reads a file.
MISSING_INPUT = {
    'data_prep cityscapes': ['data_prep', 'cityscapes', '--root', MISSING, '--out', '{tmp}/out'],
    'data_prep export-record': ['data_prep', 'export-record', '--db', MISSING, '--index', '0', '--out', '{tmp}/r.npz'],
    'tools.train': ['tools.train', '--solver', MISSING + '.prototxt', '--out', '{tmp}/run', '--quiet'],
    'tools.train --weights': [
        'tools.train', '--net', 'a2', '--dataset', 'cityscapes', '--weights', MISSING + '.caffemodel',
        '--out', '{tmp}/r',
    ],
    'tools.evaluate': [
        'tools.evaluate', '--net', 'a2', '--dataset', 'cityscapes', '--weights', MISSING + '.caffemodel',
        '--db', MISSING, '--out', '{tmp}/e', '--quiet',
    ],
    'tools.report': ['tools.report', MISSING],
    'tools.plot_log': ['tools.plot_log', MISSING],
    'tools.export': ['tools.export', '--net', 'a1', '--dataset', 'cityscapes', '--weights', MISSING + '.caffemodel',
                     '--to', 'npz', '--out', '{tmp}/w.npz'],
    'tools.parity': ['tools.parity', '--net', 'a1', '--dataset', 'cityscapes', '--weights', MISSING + '.caffemodel'],
}  # fmt: skip


def run(args, tmp_path):
    args = [a.format(tmp=tmp_path) for a in args]
    return subprocess.run([sys.executable, '-m'] + args, cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize('module', ENTRY_POINTS)
def test_help_works(module, tmp_path):
    proc = run([module, '--help'], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert 'usage:' in proc.stdout


@pytest.mark.parametrize('case', sorted(MISSING_INPUT))
def test_a_missing_file_is_one_line_and_exit_2(case, tmp_path):
    proc = run(MISSING_INPUT[case], tmp_path)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert 'Traceback' not in proc.stderr
    errors = [line for line in lines if line.startswith('error: ')]
    assert len(errors) == 1 and MISSING in errors[0], proc.stderr
