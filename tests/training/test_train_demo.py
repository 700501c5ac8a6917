"""tools.demo (`make demo`): the commands it chains and its verdict, with the commands replaced
by stand-ins that write what the real ones would (the real run takes minutes: `make demo`)."""

import json
import os

import pytest

from tools import demo

#: The constant depth predictor's val scores the fakes compare with (`demo.constant_depth_baseline`).
CONSTANT = (21.5, {'ard': 0.8, 'rmse': 14.0})


@pytest.fixture(autouse=True)
def fake_baseline(monkeypatch):
    monkeypatch.setattr(demo, 'constant_depth_baseline', lambda data: CONSTANT)


def fake_step(commands, seg_losses, miou, depth=(0.4, 9.0)):
    """A stand-in for subprocess.call: records the command, writes the outputs it names
    (the net's val depth ARD and RMSE: `depth`)."""

    def call(command, cwd=None):
        commands.append(command)
        out = command[command.index('--out') + 1]
        if 'tools.train' in command:
            os.makedirs(out, exist_ok=True)
            with open(os.path.join(out, 'train_log.jsonl'), 'w') as f:
                for i, seg in enumerate(seg_losses, 1):
                    f.write(
                        json.dumps(
                            dict(
                                event='iter',
                                stage='a2',
                                iter=i,
                                loss_seg=seg,
                                loss_depth_abs=1e6 * (1 + i % 3),
                                loss_depth_mvn=4000.0,
                                loss=1000 * seg + 1e4,
                            )
                        )
                        + '\n'
                    )
            with open(os.path.join(out, 'training.md'), 'w') as f:
                f.write('# Training losses\n')
        elif 'tools.evaluate' in command:
            os.makedirs(out, exist_ok=True)
            with open(os.path.join(out, 'report.json'), 'w') as f:
                json.dump(
                    {'segmentation': {'mIoU': miou}, 'depth': {'per_image': dict(zip(('ard', 'rmse'), depth))}}, f
                )
            with open(os.path.join(out, 'report.md'), 'w') as f:
                f.write('# Evaluation\n')
        return 0

    return call


def test_demo_chains_sample_convert_train_evaluate(tmp_path, monkeypatch, capsys):
    commands = []
    monkeypatch.setattr(demo.subprocess, 'call', fake_step(commands, [3.0, 2.9, 2.5, 2.0, 1.5], 0.08))
    assert demo.main(['--out', str(tmp_path / 'demo'), '--iters', '5', '--count', '2']) == 0
    modules = [c[2] for c in commands]
    assert modules == ['data_prep', 'data_prep', 'tools.train', 'tools.evaluate']
    out = str(tmp_path / 'demo')
    assert commands[0][3:] == [
        'sample',
        '--dataset',
        'cityscapes',
        '--out',
        out + '/sample',
        '--count',
        '2',
        '--seed',
        '1',
    ]
    assert commands[1][3:] == ['cityscapes', '--root', out + '/sample', '--out', out + '/data']
    train = commands[2]
    for flag, value in (
        ('--net', 'a2'),
        ('--data', out + '/data'),
        ('--iters', '5'),
        ('--batch', '1'),
        ('--filler', 'msra'),
        ('--solver-type', 'Adam'),
        ('--init-classifier', str(demo.CLASSIFIER_BATCHES)),
        ('--probe-classifier', str(demo.CLASSIFIER_BATCHES)),
        ('--probe-depth', str(demo.DEPTH_IMAGES)),
    ):
        assert train[train.index(flag) + 1] == value
    assert '--cpu' in train
    evaluate = commands[3]
    assert evaluate[evaluate.index('--weights') + 1] == out + '/train/final.caffemodel'
    assert evaluate[evaluate.index('--data') + 1] == out + '/data'
    printed = capsys.readouterr().out
    assert '# Training losses' in printed and '# Evaluation' in printed
    assert 'loss_seg 3 -> 1.5 (mean of the first and the last third of 5 iterations): falling' in printed
    assert 'val mIoU 8.00 % vs chance 5.26 % (1/19): above' in printed
    assert 'val depth (per image; constant predictor = training mean 21.5 m):' in printed
    assert '  ARD  net 0.4 vs constant 0.8: better' in printed
    assert '  RMSE net 9 vs constant 14: better' in printed


@pytest.mark.parametrize(
    'seg_losses, miou, depth, why',
    [
        ([2.0, 2.0, 2.5, 3.0, 3.0], 0.08, (0.4, 9.0), 'NOT falling'),  # loss rising
        ([3.0, 2.0, 1.0, 1.0, 0.5], 0.05, (0.4, 9.0), 'NOT above'),  # below chance
        ([3.0, 2.0, 1.0, 1.0, 0.5], 0.08, (0.9, 9.0), 'ARD  net 0.9 vs constant 0.8: NOT better'),
        ([3.0, 2.0, 1.0, 1.0, 0.5], 0.08, (0.4, 15.0), 'RMSE net 15 vs constant 14: NOT better'),
    ],
)
def test_demo_fails_when_it_did_not_learn(tmp_path, monkeypatch, capsys, seg_losses, miou, depth, why):
    """Either task at or below its trivial baseline fails the demo (exit 1)."""
    monkeypatch.setattr(demo.subprocess, 'call', fake_step([], seg_losses, miou, depth))
    assert demo.main(['--out', str(tmp_path / 'demo'), '--iters', '5']) == 1
    captured = capsys.readouterr()
    assert 'the run did not learn both tasks' in captured.err and why in captured.out


def test_a_failing_step_stops_the_demo(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(demo.subprocess, 'call', lambda command, cwd=None: 3)
    with pytest.raises(SystemExit) as stop:
        demo.main(['--out', str(tmp_path / 'demo')])
    assert stop.value.code == 3
    assert '"sample data (Cityscapes layout)" failed (exit 3)' in capsys.readouterr().err
