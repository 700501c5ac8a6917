"""Evaluate a deploy net on a converted split: the paper's inference, metrics, report, figures.

    python -m tools.evaluate --net a2 --dataset cityscapes --weights RUN/a2.caffemodel
    python -m tools.evaluate ... --backend onnxruntime --compare-backend caffe [--threads N]

Tiles (Cityscapes, paper L349-357) or resize (SUN-RGBD, NYUv2, L456-461); the paper's
metrics and tables; report.md, report.json, per_image.csv and figures in the run directory.
--backend runs the forward on Caffe (default), ONNX Runtime or PyTorch (the stand-alone export
of the same weights); --compare-backend B also runs B on the same images and reports whether
every metric is the same at its printed precision, and the per-pixel argmax agreement.
The evaluation itself is `tools.evaluation` (run, predictor, metrics, report, figures).

Exit codes: 0 done, 2 bad input, 130 / 143 stopped by SIGINT / SIGTERM (nothing half-written is left).
"""

import argparse
import sys
from pathlib import Path

from tools.core import interruptible_imports, run_cli

with interruptible_imports(__name__):  # Ctrl-C / SIGTERM: one line, the partial run removed (exit 130 / 143)
    import netgen
    from netgen import config
    from tools.evaluation import report
    from tools.evaluation.backends import BACKENDS, EngineOptions
    from tools.evaluation.predictor import DEFAULT_BATCH, HEADS, RESIZE_INTERPOLATION
    from tools.evaluation.run import MODES, database_path, evaluate


def _what(result):
    """What is evaluated on what, and where the run goes."""
    result.add_argument('--net', required=True, choices=netgen.NETS)
    result.add_argument('--dataset', required=True, choices=tuple(config.NUM_CLASSES))
    weights = result.add_mutually_exclusive_group(required=True)
    weights.add_argument('--weights', help='trained .caffemodel')
    weights.add_argument(
        '--random-weights',
        action='store_true',
        help="the deploy net's random init (a smoke test; marked in the report)",
    )
    result.add_argument('--split', help='default: val for cityscapes, test otherwise')
    data = result.add_mutually_exclusive_group()
    data.add_argument('--data', metavar='DIR', help="the dataset's database root (default data/<dataset>)")
    data.add_argument('--db', metavar='DIR', help="one split's database directory (instead of --data/--split)")
    result.add_argument('--gpu', type=int, help='GPU id (a CUDA build of Caffe); default CPU')
    result.add_argument('--out', help='run directory (default runs/eval/<net>_<dataset>_<split>)')
    result.add_argument('--overwrite', action='store_true', help='replace an existing run directory')
    result.add_argument('--prototxt', help='deploy prototxt (default prototxt/<net>_<dataset>/deploy.prototxt)')


def _how(result):
    """How the images are predicted and scored, and what the run shows."""
    result.add_argument(
        '--task',
        action='append',
        choices=tuple(HEADS),
        help='evaluate only this task (repeatable); default every head the net has',
    )
    result.add_argument(
        '--mode',
        choices=MODES,
        help='tiles (cityscapes default, paper L349-357) or resize (default otherwise, L456-461)',
    )
    result.add_argument('--batch', type=int, default=DEFAULT_BATCH, help='tiles per forward (default %(default)s)')
    result.add_argument(
        '--resize-interp',
        choices=tuple(RESIZE_INTERPOLATION),
        default='area',
        help='image resize in resize mode (default %(default)s)',
    )
    result.add_argument(
        '--max-depth',
        type=float,
        help='ignore ground truth deeper than this, metres (default: the bound the nets train with, '
        'netgen.config.MAX_DEPTH: cityscapes 80, sunrgbd / nyuv2 10; inf: none)',
    )
    result.add_argument('--limit', type=int, help='evaluate only the first N images')
    result.add_argument('--figures', type=int, default=4, help='example rows in the figures (default %(default)s)')
    result.add_argument(
        '--compare',
        action='append',
        default=[],
        metavar='RUN_DIR',
        help="another run's directory: its numbers and predictions go beside ours",
    )
    result.add_argument(
        '--official-scorer',
        action='store_true',
        help='also run the official cityscapesscripts scorer on the written labelId PNGs',
    )
    result.add_argument(
        '--backend',
        choices=BACKENDS,
        default='caffe',
        help='engine of the forward pass (default %(default)s, the faithful one); onnxruntime and pytorch run '
        'the stand-alone export of the same weights; tiling, metrics and report are the same',
    )
    result.add_argument(
        '--compare-backend',
        choices=BACKENDS,
        metavar='B',
        help='also run engine B on the same images; the report gives the metric differences and the '
        'per-pixel argmax agreement (e.g. --backend onnxruntime --compare-backend caffe)',
    )
    result.add_argument('--threads', type=int, help='threads of every engine (default: every core)')
    result.add_argument('--quiet', action='store_true', help='no progress bar')


def parser():
    result = argparse.ArgumentParser(
        prog='python -m tools.evaluate', description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    _what(result)
    _how(result)
    return result


def _engine(args):
    """The run's engines; the exporter (tools.porting, torch and onnx) loads only when needed."""
    exporter = None
    if {args.backend, args.compare_backend} - {'caffe', None}:
        from tools.porting.export import export_live_net  # noqa: PLC0415

        exporter = export_live_net
    return EngineOptions(args.backend, args.compare_backend, args.threads, exporter)


def _main(argv):
    args = parser().parse_args(argv)
    split = args.split or config.TEST_SPLIT[args.dataset]
    database = args.db or (database_path(args.dataset, split, args.data) if args.data else None)
    results = evaluate(
        args.net,
        args.dataset,
        None if args.random_weights else args.weights,
        split,
        args.out,
        args.gpu,
        deploy=args.prototxt,
        database=database,
        batch_size=args.batch,
        mode=args.mode,
        tasks=args.task,
        limit=args.limit,
        num_figures=args.figures,
        compare=args.compare,
        official_scorer=args.official_scorer,
        resize_interpolation=args.resize_interp,
        max_depth=args.max_depth,
        overwrite=args.overwrite,
        progress=not args.quiet,
        engine=_engine(args),
    )
    print(report.summary(results))
    print('report: %s' % (Path(results['run_dir']) / 'report.md'))
    return 0


def main(argv=None):
    """The command line; returns the exit status (docs/DESIGN.md)."""
    return run_cli(_main, argv)


if __name__ == '__main__':
    sys.exit(main())
