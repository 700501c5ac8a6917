"""Data preparation for HybridNet (paper sec. 5): official layouts -> databases -> training batches.

- `data_prep.dataset`: the interface every dataset reader implements (read it first), `Record`.
- `data_prep.cityscapes`, `data_prep.sunrgbd`, `data_prep.nyuv2`: readers of the official layouts
  and writers of sample datasets in those layouts.
- `data_prep.synth`: a small z-buffer renderer the sample writers draw scenes with.
- `data_prep.convert`: the generic converter (workers, resume, atomic rename, --skip-bad, manifest).
- `data_prep.database`: the on-disk database (LMDB of zlib tiles) and `open_database(path)`, the
  reader the drivers use; `write_database` makes one from in-memory records (tests, tools).
- `data_prep.batches`: crops, flips, subsampling and mean subtraction (no Caffe), worker processes.
- `data_prep.layers.HybridData`: the Caffe Python data layer of the train and test nets.
- `python -m data_prep --help`: the command line.
"""

#: Dataset name -> module implementing `data_prep.dataset`'s interface (imported on demand).
DATASET_MODULES = {
    'cityscapes': 'data_prep.cityscapes',
    'sunrgbd': 'data_prep.sunrgbd',
    'nyuv2': 'data_prep.nyuv2',
}


def dataset_module(name):
    """The module of dataset `name` (a key of `DATASET_MODULES`)."""
    import importlib  # noqa: PLC0415
    if name not in DATASET_MODULES:
        raise ValueError(f'unknown dataset {name!r}; choose from {", ".join(DATASET_MODULES)}')
    return importlib.import_module(DATASET_MODULES[name])
