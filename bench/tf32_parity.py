"""TF32 parity: the loss of the first training iterations with CAFFE_TF32=1 vs FP32.

Runs `caffe train -gpu G` twice on the same DummyData train net (`bench/train.py
--prepare` writes `<net>.parity.prototxt`: random images, labels and depth from Caffe's
CPU RNG, seeded by the solver's random_seed, so both runs see the same batches and the
same initial weights), once without and once with CAFFE_TF32=1, and compares the losses
logged at each iteration (iteration 0: the forward pass before any update; iteration 1:
the next batch after one SGD step with TF32 gradients). Passes when every relative
difference is within --tol (1e-3, issue 8) and only the TF32 run logged that TF32 was on.

From a random start A2's refining net (Gaussian std sqrt(0.1), the paper's init) blows its
depth loss up to ~1e11 and one step at the paper's rate to inf: for A2 use --base-lr 0
(two forward passes, backward still run); DeepLab-ASPP takes a real step (1e-6: its loss_seg weighs 1000).

    python -m bench.tf32_parity --caffe .venv/bin/caffe-gpu --net DIR/a2.parity.prototxt

Needs a CUDA build of Caffe and a GPU; no pycaffe (runs the caffe binary).
"""

import argparse
import json
import os
import sys
import tempfile

from bench import caffe_cli
from tools.core import REPO

ROOT = str(REPO)

TOL = 1e-3


def parity(caffe, net, gpu=0, iterations=1, tol=TOL, base_lr=2.5e-6, seed=1):
    """dict(fp32={it: loss}, tf32={it: loss}, rel_diff={it: d}, max_rel_diff, tf32_applied,
    ok). `iterations` SGD steps (the losses of iterations 0..iterations are compared)."""
    out = {}
    with tempfile.TemporaryDirectory(prefix='tf32-parity-') as tmp:
        solver = os.path.join(tmp, 'solver.prototxt')
        with open(solver, 'w') as f:
            f.write(
                caffe_cli.parity_solver(
                    os.path.abspath(net),
                    os.path.join(tmp, 'snap'),
                    base_lr=base_lr,
                    iterations=iterations,
                    seed=seed,
                    gpu=True,
                )
            )
        for label, tf32 in (('fp32', False), ('tf32', True)):
            losses, applied, _ = caffe_cli.caffe_train_losses(caffe, solver, gpu=gpu, tf32=tf32)
            out[label] = losses
            out[label + '_tf32_logged'] = applied
    common = sorted(set(out['fp32']) & set(out['tf32']))
    rel = {it: abs(out['tf32'][it] - out['fp32'][it]) / max(abs(out['fp32'][it]), 1e-30) for it in common}
    worst = max(rel.values()) if rel else float('inf')
    ok = bool(rel) and worst <= tol and out['tf32_tf32_logged'] and not out['fp32_tf32_logged']
    return dict(
        net=os.path.basename(net),
        fp32=out['fp32'],
        tf32=out['tf32'],
        rel_diff=rel,
        max_rel_diff=worst,
        tol=tol,
        tf32_applied=out['tf32_tf32_logged'],
        fp32_clean=not out['fp32_tf32_logged'],
        ok=ok,
    )


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument(
        '--caffe',
        default=os.path.join(ROOT, '.venv', 'bin', 'caffe-gpu'),
        help='CUDA caffe tool (default: %(default)s)',
    )
    p.add_argument('--net', required=True, help='a DummyData train net (<net>.parity.prototxt)')
    p.add_argument('--gpu', type=int, default=0)
    p.add_argument('--iterations', type=int, default=1, help='SGD steps (default: %(default)s)')
    p.add_argument(
        '--base-lr',
        type=float,
        default=2.5e-6,
        help="SGD step size (default: %(default)s, the paper's; 0: forward parity on "
        "two batches, for nets whose random init explodes, e.g. A2's refining net)",
    )
    p.add_argument('--tol', type=float, default=TOL, help='relative tolerance (default: %(default)s)')
    p.add_argument('--json', help='write the result here too')
    args = p.parse_args(argv)
    ok, why = caffe_cli.gpu_present()
    if not ok:
        print('tf32 parity not run: %s' % why)
        return 2
    r = parity(args.caffe, args.net, gpu=args.gpu, iterations=args.iterations, tol=args.tol, base_lr=args.base_lr)
    text = json.dumps(r, indent=1, sort_keys=True)
    print(text)
    if args.json:
        with open(args.json, 'w') as f:
            f.write(text)
    print(
        'TF32 parity %s: max relative loss difference %.3g (tol %g)'
        % ('OK' if r['ok'] else 'FAILED', r['max_rel_diff'], args.tol)
    )
    return 0 if r['ok'] else 1


if __name__ == '__main__':
    sys.exit(main())
