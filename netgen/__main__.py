"""python -m netgen: write (or --check) the generated nets, solvers and net docs.

Every decision docs/FIDELITY.md records is a constant of netgen/config.py; --set changes
one for this run (e.g. --set RANDOM_INIT_STD=0.316 --root /tmp/variant writes a variant
tree; --check with the same --set compares against it).

Exit status (docs/DESIGN.md, "One command-line convention"): 0 done (--check: every
generated file up to date); 1 with --check: some generated file is missing or stale (the
files are listed on stdout; run `python -m netgen`); 2 bad input (an unknown net, dataset
or --set constant, a value the generators reject) or a file that cannot be written or
read: one line `error: ...` on stderr.
"""

import argparse
import ast
import sys

from . import config, generate, names


def parse_set(item):
    """'NAME=VALUE' -> (NAME, value) for an upper-case constant of netgen.config; VALUE
    is a Python literal (a bare word is taken as a string)."""
    name, sep, text = item.partition('=')
    consts = sorted(k for k in vars(config) if k.isupper())
    if not sep or name not in consts:
        raise ValueError('--set %s: expected NAME=VALUE with NAME one of: %s' % (item, ', '.join(consts)))
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = text
    return name, value


def _parser():
    ap = argparse.ArgumentParser(
        prog='python -m netgen',
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='nets: %s; datasets: %s' % (', '.join(names.NAMES), ', '.join(names.DATASETS)),
    )
    ap.add_argument('--net', action='append', metavar='NET', help='only this net (repeatable; default: all)')
    ap.add_argument(
        '--dataset', action='append', metavar='DATASET', help='only this dataset (repeatable; default: all)'
    )
    ap.add_argument('--root', default='.', help='repository root (default: .)')
    ap.add_argument(
        '--check', action='store_true', help='write nothing; exit 1 if a generated file is missing or stale'
    )
    ap.add_argument('--no-draw', action='store_true', help='skip the diagrams')
    ap.add_argument(
        '--baseline-recipe',
        choices=config.BASELINE_RECIPES,
        help='solver and batch size of DeepLab-ASPP and the DepthNet stages: '
        '"hybrid" (default: the hybrid nets\' configuration, paper '
        'L362-365) or "parent" (each parent\'s own recipe; DeepLab-ASPP '
        'loss_seg weight 1). The checked-in files are "hybrid".',
    )
    ap.add_argument(
        '--set',
        action='append',
        metavar='NAME=VALUE',
        default=[],
        help='override a constant of netgen/config.py for this run (repeatable), e.g. --set FLIP=True',
    )
    ap.add_argument(
        '--print',
        nargs=3,
        metavar=('NET', 'DATASET', 'PHASE'),
        help='print one net (phase train, test or deploy; NET may be '
        '%s for its joint deploy net) or the solver (PHASE '
        'solver) and exit' % ' or '.join('"%s"' % a for a in names.JOINT_DEPLOY),
    )
    return ap


def _print(net, dataset, phase):
    """--print: one net or solver on stdout."""
    names.check_names([net], [dataset])
    if phase == 'solver':
        print(generate.solver(net, dataset), end='')
    else:
        from .nets import build  # noqa: PLC0415

        print(build(net, dataset, phase), end='')


def _check(args, nets, datasets):
    """--check: 0 when up to date, 1 listing the missing or stale files."""
    problems = generate.check(args.root, nets, datasets, diagrams=not args.no_draw)
    for p in problems:
        print(p)
    if problems:
        print('netgen: %d generated file(s) out of date: run `python -m netgen`' % len(problems), file=sys.stderr)
        return 1
    print('netgen: generated files up to date')
    return 0


def _run(args):
    nets = tuple(args.net or names.NETS)
    datasets = tuple(args.dataset or names.DATASETS)
    for name, value in map(parse_set, args.set):
        setattr(config, name, value)
    if args.baseline_recipe:
        config.BASELINE_RECIPE = args.baseline_recipe
    names.check_names(nets, datasets)
    if args.print:
        _print(*args.print)
        return 0
    if args.check:
        return _check(args, nets, datasets)
    written = generate.write_all(args.root, nets, datasets, diagrams=not args.no_draw, log=print)
    print('netgen: %d files up to date' % len(written))
    return 0


def main(argv=None):
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except ValueError as e:
        print('error: %s' % e, file=sys.stderr)
    except OSError as e:
        print('error: %s: %s' % (e.filename, e.strerror) if e.filename else 'error: %s' % e, file=sys.stderr)
    return 2


if __name__ == '__main__':
    sys.exit(main())
