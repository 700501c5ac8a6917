"""The training targets of the Makefile (`make NET-DATASET`), run in a scratch copy of the
repository's Makefile with a stand-in `PY` that records each command it is given."""

import os
import shutil
import subprocess

import pytest

from tests.support import toy_scenes as T

FAKE_PY = r"""#!/bin/bash
echo "$*" >> "$(dirname "$0")/commands.log"
out=""; prev=""
for a in "$@"; do [ "$prev" = "--out" ] && out="$a"; prev="$a"; done
case "$*" in
  *"-m tools.train"*) mkdir -p "$out" && echo "training table" > "$out/training.md";;
  *"-m tools.evaluate"*) mkdir -p "$out" && echo "evaluation table" > "$out/report.md";;
  *"-m data_prep"*) mkdir -p "$out/train" && echo "{}" > "$out/train/manifest.json";;
esac
"""


@pytest.fixture
def workdir(tmp_path):
    shutil.copy(os.path.join(T.REPO, 'Makefile'), tmp_path / 'Makefile')
    fake = tmp_path / 'fakepy'
    fake.write_text(FAKE_PY)
    fake.chmod(0o755)
    return tmp_path


def make(workdir, *args):
    proc = subprocess.run(
        ['make', '--no-print-directory', '-C', str(workdir), 'PY=./fakepy'] + list(args),
        capture_output=True,
        text=True,
        timeout=60,
    )
    log = workdir / 'commands.log'
    commands = log.read_text().splitlines() if log.exists() else []
    return proc, commands


def test_missing_dataset_names_the_root_variable(workdir):
    proc, commands = make(workdir, 'a2-cityscapes')
    assert proc.returncode != 0
    assert 'data/cityscapes is missing and CITYSCAPES_ROOT is not set' in proc.stderr
    assert commands == ['-m netgen --net a2 --dataset cityscapes --no-draw']


def test_pipeline_converts_trains_evaluates(workdir):
    proc, commands = make(
        workdir,
        'a2-sunrgbd',
        'SUNRGBD_ROOT=/raw/sun',
        'ITERS=7',
        'GPU=1',
        'INIT_DEEPLAB=/m/deeplab.caffemodel',
        'INIT_DEPTHNET=/m/depthnet.caffemodel',
    )
    assert proc.returncode == 0, proc.stderr
    assert commands[0] == '-m netgen --net a2 --dataset sunrgbd --no-draw'
    assert commands[1] == '-m data_prep sunrgbd --root /raw/sun --out data/sunrgbd'
    assert (
        commands[2].split()
        == (
            '-m tools.train --net a2 --dataset sunrgbd --resume auto --out runs/a2_sunrgbd --gpu 1 '
            '--iters 7 --init-deeplab /m/deeplab.caffemodel --init-depthnet /m/depthnet.caffemodel'
        ).split()
    )
    assert (
        commands[3].split()
        == (
            '-m tools.evaluate --net a2 --dataset sunrgbd --weights runs/a2_sunrgbd/final.caffemodel '
            '--out runs/a2_sunrgbd/eval --overwrite --gpu 1'
        ).split()
    )
    assert 'training table' in proc.stdout and 'evaluation table' in proc.stdout
    # the database exists now: no second conversion; OUT moves the run
    proc, commands = make(workdir, 'a2-sunrgbd', 'OUT=elsewhere')
    assert proc.returncode == 0, proc.stderr
    assert not any('data_prep' in c for c in commands[4:])
    assert '--out elsewhere --cpu' in commands[5]


def test_inits_go_only_to_nets_that_take_them(workdir):
    (workdir / 'data' / 'nyuv2' / 'train').mkdir(parents=True)
    (workdir / 'data' / 'nyuv2' / 'train' / 'manifest.json').write_text('{}')
    inits = ['INIT_DEEPLAB=/m/d.caffemodel', 'INIT_DEPTHNET=/m/n.caffemodel']
    _, commands = make(workdir, 'depthnet-nyuv2', *inits)
    train = next(c for c in commands if 'tools.train' in c)
    assert '--init-depthnet /m/n.caffemodel' in train and '--init-deeplab' not in train
    _, commands = make(workdir, 'deeplab_aspp-nyuv2', *inits)
    train = [c for c in commands if 'tools.train' in c][-1]
    assert '--init-deeplab /m/d.caffemodel' in train and '--init-depthnet' not in train


def test_unknown_dataset_is_refused(workdir):
    proc, commands = make(workdir, 'a1-kitti')
    assert proc.returncode != 0 and "unknown dataset 'kitti'" in proc.stderr
    assert commands == []


def test_help_lists_the_training_targets():
    out = subprocess.run(['make', '--no-print-directory', '-C', T.REPO, 'help'], capture_output=True, text=True).stdout
    for target in ('a1-%', 'a2-%', 'deeplab_aspp-%', 'depthnet-%', 'demo'):
        assert '\n' + target in '\n' + out
