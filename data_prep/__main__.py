"""Command line of `data_prep`: convert official layouts, write sample datasets, export records.

    python -m data_prep cityscapes --root R --out data/cityscapes [--splits train val] [--workers N]
    python -m data_prep sample --dataset cityscapes --out R [--count N] [--seed S]
    python -m data_prep export-record --db data/cityscapes/val --index 0 --out record.npz
"""
import argparse
import inspect
import os
import sys

import numpy as np

from data_prep import DATASET_MODULES, dataset_module
from data_prep.dataset import IGNORE
from data_prep.errors import DataError


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m data_prep', description=__doc__.split('\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest='command', required=True, metavar='COMMAND')
    for name in DATASET_MODULES:
        _add_convert(commands, name)
    _add_sample(commands)
    _add_export(commands)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except DataError as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print('\ninterrupted: rerun the same command to resume from the records done', file=sys.stderr)
        return 130


def _add_convert(commands, name):
    command = commands.add_parser(name, help=f'convert {name} from its official layout into databases',
                                  description=f'Convert {name} (official layout under --root) into one database '
                                              f'per split, <out>/<split>/ (LMDB of compressed tiles + manifest.json). '
                                              f'Atomic and resumable: rerun an interrupted command to finish it.')
    command.add_argument('--root', required=True, help='the dataset as distributed (or as `sample` wrote it)')
    command.add_argument('--out', required=True, help=f'output directory, e.g. data/{name}')
    command.add_argument('--splits', nargs='+', metavar='SPLIT',
                         help='splits to convert (default: the labelled ones; see each dataset module)')
    command.add_argument('--workers', type=int, default=os.cpu_count(),
                         help='worker processes (default: %(default)s, the CPU count)')
    command.add_argument('--skip-bad', action='store_true',
                         help='leave out records with a bad file and list them in <out>/<split>/skipped.json')
    command.add_argument('--overwrite', action='store_true', help='rebuild splits that are already converted')
    command.set_defaults(run=_convert, dataset=name)


def _convert(args):
    from data_prep import convert  # noqa: PLC0415
    module = dataset_module(args.dataset)
    splits = args.splits or list(module.LABELLED_SPLITS)
    unknown = [s for s in splits if s not in module.SPLITS]
    if unknown:
        raise SystemExit(f'error: {args.dataset} has no split {unknown[0]!r}; choose from {", ".join(module.SPLITS)}')
    for split in splits:
        if split not in module.LABELLED_SPLITS:
            print(f'note: {args.dataset} {split} has no public labels: converting image and depth only',
                  file=sys.stderr)
        path = convert.convert_split(args.dataset, args.root, args.out, split, workers=max(1, args.workers),
                                     skip_bad=args.skip_bad, overwrite=args.overwrite)
        print(path)
    return 0


def _add_sample(commands):
    command = commands.add_parser('sample', help='write a small sample dataset in an official layout',
                                  description='Write a small procedurally rendered dataset in the official '
                                              'layout and file formats of --dataset; convert it like the real one.')
    command.add_argument('--dataset', required=True, choices=list(DATASET_MODULES))
    command.add_argument('--out', required=True, help='root directory of the sample dataset')
    command.add_argument('--count', type=int, default=4, help='records per split (default: %(default)s)')
    command.add_argument('--seed', type=int, default=0, help='random seed (default: %(default)s)')
    command.set_defaults(run=_sample)


def _sample(args):
    module = dataset_module(args.dataset)
    print(f'writing a sample {args.dataset} ({args.count} records per split, seed {args.seed}) to {args.out}',
          file=sys.stderr)
    options = {'progress': True} if 'progress' in inspect.signature(module.write_sample).parameters else {}
    module.write_sample(args.out, args.count, args.seed, **options)
    print(args.out)
    return 0


def _add_export(commands):
    command = commands.add_parser('export-record', help='write one database record to a .npz file',
                                  description='Write record --index of the database --db to --out (.npz): image '
                                              '(H x W x 3 uint8 RGB), label (H x W uint8, 255 = ignore; all 255 '
                                              'in splits without labels), depth (H x W float32 metres, 0 = invalid).')
    command.add_argument('--db', required=True, help='database directory of one split, e.g. data/cityscapes/val')
    command.add_argument('--index', type=int, required=True, help='record number, 0-based')
    command.add_argument('--out', required=True, help='output .npz file')
    command.set_defaults(run=_export)


def _export(args):
    from data_prep.database import open_database  # noqa: PLC0415
    database = open_database(args.db)
    if not 0 <= args.index < len(database):
        raise SystemExit(f'error: --index {args.index} out of range: {args.db} holds {len(database)} records')
    record = database[args.index]
    label = record.label if record.label is not None else np.full(record.depth.shape, IGNORE, np.uint8)
    np.savez(args.out, image=record.image, label=label, depth=record.depth)
    print(f'{args.out}: {database.dataset}/{database.split} record {args.index} '
          f'({database.records[args.index]["key"]}), {record.image.shape[1]}x{record.image.shape[0]}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
