"""python -m netgen: write (or --check) the generated nets, solvers and net docs."""
import argparse
import sys

from . import generate


def main(argv=None):
    ap = argparse.ArgumentParser(
        prog='python -m netgen', description=__doc__,
        epilog='nets: %s; datasets: %s' % (', '.join(generate.NAMES),
                                           ', '.join(generate.DATASETS)))
    ap.add_argument('--net', action='append', metavar='NET',
                    help='only this net (repeatable; default: all)')
    ap.add_argument('--dataset', action='append', metavar='DATASET',
                    help='only this dataset (repeatable; default: all)')
    ap.add_argument('--root', default='.', help='repository root (default: .)')
    ap.add_argument('--check', action='store_true',
                    help='write nothing; exit 1 if a generated file is missing or stale')
    ap.add_argument('--no-draw', action='store_true', help='skip the diagrams')
    ap.add_argument('--print', nargs=3, metavar=('NET', 'DATASET', 'PHASE'),
                    help='print one net (phase train, test or deploy; NET may be '
                         '"depthnet" for its joint deploy net) or the solver (PHASE '
                         'solver) and exit')
    args = ap.parse_args(argv)
    nets = tuple(args.net or generate.NETS)
    datasets = tuple(args.dataset or generate.DATASETS)
    try:
        generate.check_names(nets, datasets)
        if args.print:
            net, dataset, phase = args.print
            generate.check_names([net], [dataset])
            if phase == 'solver':
                print(generate.solver(net, dataset), end='')
            else:
                from .nets import build
                print(build(net, dataset, phase), end='')
            return 0
    except ValueError as e:
        print('netgen: %s' % e, file=sys.stderr)
        return 2
    if args.check:
        problems = generate.check(args.root, nets, datasets)
        for p in problems:
            print(p)
        if problems:
            print('netgen: %d generated file(s) out of date: run `python -m netgen`'
                  % len(problems), file=sys.stderr)
            return 1
        print('netgen: generated files up to date')
        return 0
    written = generate.write_all(args.root, nets, datasets, diagrams=not args.no_draw,
                                 log=print)
    print('netgen: %d files up to date' % len(written))
    return 0


if __name__ == '__main__':
    sys.exit(main())
