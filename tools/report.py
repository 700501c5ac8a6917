"""Rewrite an evaluation run's report with the paper's table beside it, and other runs beside it.

    python -m tools.report RUN_DIR [--compare OTHER_RUN_DIR ...] [--data DIR]

rewrites RUN_DIR's report.md, report.json and figures, adding other runs' numbers and
prediction columns (e.g. DeepLab-ASPP beside A2, as the paper's Figs. 5-8 do).
Segmentation: Tables 2 / 5 / 7; depth: Tables 4 / 6 / 8 (`tools.evaluation.paper`).
"""

import argparse
import os
import sys

from tools.core import run_cli
from tools.evaluation import figures, report


def _main(argv):
    parser = argparse.ArgumentParser(
        prog='python -m tools.report', description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument('run_dir', help='a finished evaluation run directory')
    parser.add_argument('--compare', action='append', default=[], metavar='RUN_DIR')
    parser.add_argument(
        '--db',
        '--data',
        dest='db',
        metavar='DIR',
        help='the database of the evaluated split, if it moved since the run',
    )
    args = parser.parse_args(argv)
    run = report.load_run(args.run_dir)
    results = run['results']
    compare_runs = [report.load_run(path) for path in args.compare]
    for other in compare_runs:
        report.check_comparable(other, results['dataset'], results['figure_images'])
    database = figures.open_figure_database(args.db or results['database'], results['dataset'])
    results['figures'] = figures.write_run_figures(run['dir'], results, database, compare_runs)
    report.write_report(run['dir'], results, compare_runs)
    print('rewrote %s' % os.path.join(args.run_dir, 'report.md'))
    return 0


def main(argv=None):
    """The command line; returns the exit status (docs/DESIGN.md)."""
    return run_cli(_main, argv)


if __name__ == '__main__':
    sys.exit(main())
