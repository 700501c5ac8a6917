"""Command line of `data_prep`: convert official layouts, write sample datasets, export records.

python -m data_prep cityscapes --root R --out data/cityscapes [--splits train val] [--workers N]
python -m data_prep sample --dataset cityscapes --out R [--count N] [--seed S]
python -m data_prep export-record --db data/cityscapes/val --index 0 --out record.npz
python -m data_prep verify --db data/cityscapes/val
"""

import argparse
import os
import signal
import sys
import threading

import numpy as np

from data_prep import DATASET_MODULES, dataset_module
from data_prep.dataset import IGNORE
from data_prep.errors import DataError, Terminated, raise_on_sigterm
from data_prep.sample import SAMPLE_MODULES

#: Exit statuses of docs/DESIGN.md ("One command-line convention").
EXIT_BAD_INPUT, EXIT_SIGINT, EXIT_SIGTERM = 2, 130, 143


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='python -m data_prep',
        description=__doc__.split('\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest='command', required=True, metavar='COMMAND')
    for name in DATASET_MODULES:
        _add_convert(commands, name)
    _add_sample(commands)
    _add_export(commands)
    _add_verify(commands)
    args = parser.parse_args(argv)
    return run(args.run, args)


def run(command, args):
    """`command(args)` under the convention: an expected fault (`DataError`, or an OSError on a
    named file: missing, unwritable, disk full) -> `error: <file>: <fault>` on stderr and exit 2;
    SIGINT / SIGTERM -> a note that a rerun resumes, exit 130 / 143; anything else is a bug."""
    main_thread = threading.current_thread() is threading.main_thread()
    previous = raise_on_sigterm() if main_thread else None
    try:
        return command(args)
    except (DataError, OSError) as err:
        if not isinstance(err, DataError):
            if err.filename is None:
                raise
            err = DataError(err.filename, err.strerror)
        print(f'error: {err}', file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt as err:
        print('\ninterrupted: rerun the same command to resume from the records done', file=sys.stderr)
        return EXIT_SIGTERM if isinstance(err, Terminated) else EXIT_SIGINT
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


def positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f'must be at least 1, got {value}')
    return value


def _add_convert(commands, name):
    command = commands.add_parser(
        name,
        help=f'convert {name} from its official layout into databases',
        description=f'Convert {name} (official layout under --root) into one database '
        f'per split, <out>/<split>/ (LMDB of compressed tiles + manifest.json). '
        f'Atomic and resumable: rerun an interrupted command to finish it.',
    )
    command.add_argument('--root', required=True, help='the dataset as distributed (or as `sample` wrote it)')
    command.add_argument('--out', required=True, help=f'output directory, e.g. data/{name}')
    command.add_argument(
        '--splits',
        nargs='+',
        metavar='SPLIT',
        help='splits to convert (default: the labelled ones; see each dataset module)',
    )
    command.add_argument(
        '--workers', type=int, default=os.cpu_count(), help='worker processes (default: %(default)s, the CPU count)'
    )
    command.add_argument(
        '--skip-bad',
        action='store_true',
        help='leave out records with a bad file and list them in <out>/<split>/skipped.json',
    )
    command.add_argument('--overwrite', action='store_true', help='rebuild splits that are already converted')
    command.set_defaults(run=_convert, dataset=name)


def _convert(args):
    from data_prep import convert  # noqa: PLC0415

    module = dataset_module(args.dataset)
    splits = args.splits or list(module.LABELLED_SPLITS)
    unknown = [s for s in splits if s not in module.SPLITS]
    if unknown:
        raise DataError(
            args.root, f'{args.dataset} has no split {unknown[0]!r}; choose from {", ".join(module.SPLITS)}'
        )
    for split in splits:
        if split not in module.LABELLED_SPLITS:
            print(
                f'note: {args.dataset} {split} has no public labels: converting image and depth only', file=sys.stderr
            )
        path = convert.convert_split(
            args.dataset,
            args.root,
            args.out,
            split,
            workers=max(1, args.workers),
            skip_bad=args.skip_bad,
            overwrite=args.overwrite,
        )
        print(path)
    return 0


def _add_sample(commands):
    command = commands.add_parser(
        'sample',
        help='write a small sample dataset in an official layout',
        description='Write a small procedurally rendered dataset in the official '
        'layout and file formats of --dataset; convert it like the real one.',
    )
    command.add_argument('--dataset', required=True, choices=list(SAMPLE_MODULES))
    command.add_argument('--out', required=True, help='root directory of the sample dataset')
    command.add_argument('--count', type=positive_int, default=4, help='records per split (default: %(default)s)')
    command.add_argument('--seed', type=int, default=0, help='random seed (default: %(default)s)')
    command.set_defaults(run=_sample)


def _sample(args):
    from data_prep.sample import write_sample  # noqa: PLC0415

    print(
        f'writing a sample {args.dataset} ({args.count} records per split, seed {args.seed}) to {args.out}',
        file=sys.stderr,
    )
    write_sample(args.dataset, args.out, args.count, args.seed, progress=True)
    print(args.out)
    return 0


def _add_export(commands):
    command = commands.add_parser(
        'export-record',
        help='write one database record to a .npz file',
        description='Write record --index of the database --db to --out (.npz): image '
        '(H x W x 3 uint8 RGB), label (H x W uint8, 255 = ignore; all 255 '
        'in splits without labels), depth (H x W float32 metres, 0 = invalid).',
    )
    command.add_argument('--db', required=True, help='database directory of one split, e.g. data/cityscapes/val')
    command.add_argument('--index', type=int, required=True, help='record number, 0-based')
    command.add_argument('--out', required=True, help='output .npz file')
    command.set_defaults(run=_export)


def _export(args):
    from data_prep.database import open_database, record_checksum  # noqa: PLC0415

    database = open_database(args.db)
    if not 0 <= args.index < len(database):
        raise DataError(args.db, f'--index {args.index} out of range: the database holds {len(database)} records')
    record = database[args.index]
    entry = database.records[args.index]
    if record_checksum(record) != entry['sha256']:  # bytes that decompress but are not what was converted
        raise database.damaged(entry, "its content differs from the manifest's sha256")
    label = record.label if record.label is not None else np.full(record.depth.shape, IGNORE, np.uint8)
    _write_npz(args.out, image=record.image, label=label, depth=record.depth)
    print(
        f'{args.out}: {database.dataset}/{database.split} record {args.index} '
        f'({database.records[args.index]["key"]}), {record.image.shape[1]}x{record.image.shape[0]}'
    )
    return 0


def _write_npz(path, **arrays):
    """`np.savez(path, ...)` (which adds .npz to a name without it), atomically: a full disk or a
    signal leaves no half-written file behind."""
    final = path if str(path).endswith('.npz') else f'{path}.npz'
    temporary = f'{final}.partial'
    try:
        with open(temporary, 'wb') as f:
            np.savez(f, **arrays)
        os.replace(temporary, final)
    except BaseException as err:
        if os.path.exists(temporary):
            os.remove(temporary)
        if isinstance(err, OSError) and err.filename in (None, temporary):  # a full disk, a size limit
            raise DataError(final, err.strerror or str(err)) from None
        raise


def _add_verify(commands):
    command = commands.add_parser(
        'verify',
        help="check every record of a database against its manifest's checksums",
        description='Read every record of --db and compare it with the sha256 its manifest.json holds; '
        'list the damaged records by key and source file. Exit 0: all records intact; 2: damaged.',
    )
    command.add_argument('--db', required=True, help='database directory of one split, e.g. data/cityscapes/val')
    command.add_argument('--quiet', action='store_true', help='no progress bar')
    command.set_defaults(run=_verify)


def _verify(args):
    from tqdm import tqdm  # noqa: PLC0415

    from data_prep.database import open_database, verify_records  # noqa: PLC0415

    database = open_database(args.db)
    damaged = []
    checks = verify_records(database)
    bar = tqdm(checks, total=len(database), unit='rec', desc=f'verify {args.db}', disable=args.quiet)
    for entry, fault in bar:
        if fault is not None:
            damaged.append(entry)
            source = database.source_of(entry)
            bar.write(f'damaged: record {entry["id"]} {entry["key"]} (from {source}): {fault}', file=sys.stderr)
    if damaged:
        raise DataError(
            args.db,
            f'{len(damaged)} of {len(database)} records damaged '
            f'({", ".join(e["key"] for e in damaged[:3])}{", ..." if len(damaged) > 3 else ""}): convert again',
        )
    print(f'{args.db}: all {len(database)} records match their checksums ({database.dataset}/{database.split})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
