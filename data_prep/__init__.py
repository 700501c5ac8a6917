"""Data preparation for HybridNet (paper sec. 5): official layouts -> databases -> training batches.

- `data_prep.dataset`: the interface every dataset reader implements (read it first), `Record`.
- `data_prep.cityscapes`, `data_prep.sunrgbd`, `data_prep.nyuv2`: readers of the official layouts
  (`data_prep.cityscapes` also holds the Cityscapes tables other packages use: `CLASS_NAMES`,
  `TRAIN_ID_TO_LABEL_ID`); `data_prep.matlab`: the .mat files (v5 and v7.3) SUN-RGBD and NYUv2 use.
- `data_prep.sample`: `write_sample(dataset, out, count, seed, progress)`, small procedurally
  rendered datasets in the official layouts, written by `data_prep.sample_cityscapes`,
  `data_prep.sample_sunrgbd` and `data_prep.sample_nyuv2` (which import the readers, never the
  reverse) with `data_prep.synth` (a small z-buffer renderer) and `data_prep.render_indoor` (rooms).
- `data_prep.convert`: the generic converter (workers, resume, atomic rename, --skip-bad, manifest).
- `data_prep.database`: the on-disk database (LMDB of zlib tiles) and `open_database(path)`, the
  reader the drivers use; `write_database` makes one from in-memory records (tests, tools).
- `data_prep.batches`: crops, flips, subsampling and mean subtraction (no Caffe), worker processes.
- `data_prep.layers.HybridData`: the Caffe Python data layer of the train and test nets.
- `data_prep.errors.DataError`: the one error type (a file and its fault).
- `python -m data_prep --help`: the command line (exit statuses of docs/DESIGN.md: 2 for a bad
  input, 130 / 143 for SIGINT / SIGTERM).

`data_prep` imports neither `netgen` nor `tools`: the nets pass everything it needs (the mean, in
the data layer's `param_str`).
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
