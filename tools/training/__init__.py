"""Training through pycaffe (paper sec. 4.3, L297-325): `run` (`train(TrainOptions)`, stages,
snapshots, resume), `solver_config` (the run's copy of the solver and nets), `surgery`
(pretrained weights by layer name, L297-304), `guard` (signals, NaN/inf), `log` (the JSON
lines log), `plot` (loss curves, training.md), `classifier_init` (demo-only ridge classifier),
`snapshots` (written atomically as a pair, checked finite; the newest good one to resume from),
`run_dir` (the run directory's lock and recorded settings), `data_checks` (the database's dataset
and class count against the net), `distributed` (data-parallel ranks under torchrun, gradients
averaged by torch.distributed).

May import: `tools.core`, `netgen`, `data_prep` (its data layer runs inside the nets), caffe.
"""
