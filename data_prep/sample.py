"""Sample datasets: small procedurally rendered datasets in the official layouts and file formats.

`write_sample(dataset, out, count, seed, progress)` is the one entry point, the same for every
dataset (`python -m data_prep sample` calls it). It imports the dataset's writer on demand:

- `data_prep.sample_cityscapes`: street scenes, PNG images, labelIds, disparity and camera JSON;
- `data_prep.sample_sunrgbd`: rooms (`data_prep.render_indoor`) from SUN-RGBD's four sensors,
  with its .mat metadata, JPEG images and bit-rotated depth PNGs;
- `data_prep.sample_nyuv2`: rooms in NYUv2's labelled .mat file, splits and class mapping.

Each writer module has ``write(out_dir, count=4, seed=0, progress=False)`` returning a mapping
split -> the record keys it wrote; the SUN-RGBD and NYUv2 writers map each key to the `Record`
the reader must give back (their tests compare), Cityscapes' writer returns a sorted key list and
takes `splits` and `size` for quick tests. Writers depend on the readers (for the layout's names
and tables), never the reverse.
"""

import importlib

#: Dataset name -> module of its sample writer (imported on demand).
SAMPLE_MODULES = {
    'cityscapes': 'data_prep.sample_cityscapes',
    'sunrgbd': 'data_prep.sample_sunrgbd',
    'nyuv2': 'data_prep.sample_nyuv2',
}


def write_sample(dataset, out, count=4, seed=0, progress=False):
    """Write a sample `dataset` (a key of `SAMPLE_MODULES`) in its official layout under `out`:
    `count` records in each of its splits, drawn from `seed` (the same seed writes the same
    bytes); `progress`: a progress bar on stderr.

    Returns {split: [record keys, sorted]}, the keys as the reader's ``list_records(out, split)``
    lists them: file paths relative to `out` (Cityscapes, SUN-RGBD) or 1-based indices (NYUv2).
    """
    if dataset not in SAMPLE_MODULES:
        raise ValueError(f'unknown dataset {dataset!r}; choose from {", ".join(SAMPLE_MODULES)}')
    if count < 1:
        raise ValueError(f'count must be at least 1 (records per split), got {count}')
    written = importlib.import_module(SAMPLE_MODULES[dataset]).write(str(out), count, seed, progress=progress)
    return {split: sorted(keys) for split, keys in written.items()}
