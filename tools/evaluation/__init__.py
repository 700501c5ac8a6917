"""Evaluation (paper sec. 5, L340-357, L456-461): `run` (`evaluate(...)`: the run directory),
`predictor` (deploy net, tiled and resized inference), `tiling`, `metrics` (Table 1 / Table 3
metrics, `np.bincount` confusion), `paper` (the paper's tables and names, as data), `report`
(report.md / report.json), `figures` (Figs. 5-8 style pictures).

May import: `tools.core`, `netgen.config`, `data_prep` (databases, Cityscapes' tables), caffe.
`report` and `figures` both read `paper`; neither imports the other.
"""
