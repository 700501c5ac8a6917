"""netgen: NetSpec generators of every HybridNet-Caffe net and solver.

`python -m netgen` writes `prototxt/`, `solvers/`, `docs/nets/README.md` and the
diagrams `docs/nets/*.png`; `python -m netgen --check` fails (exit 1, listing the files)
when a checked-in file differs from what the generators produce now. Run
`python -m netgen --help` for the options (--net, --dataset, --root, --no-draw, --print,
--baseline-recipe, --set).

Nets (`NETS`; DepthNet trains in three stages, `STAGES['depthnet']`, paper L183-188; the
names, stages and the 'depthnet' alias live in `netgen.names`):

- `a1`: HybridNet A1, `a2`: HybridNet A2, `deeplab_aspp`: DeepLab-v2 VGG16 ASPP-L,
- `depthnet`: `depthnet_global`, `depthnet_gradient`, `depthnet_refine` (+ joint deploy).

Datasets (`DATASETS`): cityscapes (K=19), sunrgbd (K=37), nyuv2 (K=40).

API for the drivers (importing `netgen` does not import caffe; the functions that build
protos do):

- `paths(net, dataset, root=None)` -> dict(train=, test=, deploy=, solver=) for a1, a2,
  deeplab_aspp and each DepthNet stage (`depthnet_refine`'s deploy is the joint deploy
  net); for 'depthnet': dict(deploy=<joint deploy>, stages={stage: dict(...)}) in
  training order. Paths are relative to the repo root unless `root` is given.
- `build(net, dataset, phase, data_layer='python', batch_size=None, baseline_recipe=None)`
  -> NetParameter; phase 'train' | 'test' | 'deploy'; data_layer='input' swaps
  `data_prep.layers.HybridData` for an Input layer with the same tops (to run train/test
  nets without a database).
- `solver(net, dataset, baseline_recipe=None)` -> SolverParameter (paths relative to the
  repo root). Every net, baselines included, trains with the hybrid nets' configuration
  (paper L305-309, L362-365); baseline_recipe='parent' (or `config.BASELINE_RECIPE`, or
  `python -m netgen --baseline-recipe parent`) gives DeepLab-ASPP and the DepthNet stages
  their parents' own solver and batch size (and DeepLab-ASPP loss_seg weight 1).
- `write_all(root='.', nets=NETS, datasets=DATASETS, diagrams=True)`, `check(root='.')`
  -> list of problems (empty when up to date).
- `netgen.fixed_weights`: the weights of every `fixed_*` layer (bilinear x2 zoom, Prewitt)
  are written into the generated prototxt's `blobs` (`write_fixed_blobs`, by `build`), so any
  Caffe builds them from the files; `check_fixed_weights(net)` verifies a live caffe.Net.
- `DEPTHNET_LAYER_MAP` (`netgen.config`): our layer -> DepthNet's layer of the same role
  in its released model (`global_conv1` -> `conv1`, ..., `global_fc6` -> `fc-main`,
  `global_fc7` -> `fc-depth`), for weight surgery by name.

Decisions where the paper is silent or ambiguous are constants of `netgen.config`
(docs/FIDELITY.md, "## Nets": its audit table maps each paper statement to the generator,
the emitted layers and the test; its decision record names each constant);
`python -m netgen --set NAME=VALUE` builds a variant.

Contracts (docs/DESIGN.md): deploy input `data` N x 3 x 321 x 321 (BGR minus MEAN_BGR);
outputs `seg_prob` N x K x 41 x 41, `depth` N x 1 x 81 x 81 (metres), `depth_global`
N x 1 x 41 x 41 (metres) where the net has them (`depthnet_gradient`'s deploy net outputs
`gradient` N x 2 x 41 x 41). Train/test nets read `data/<dataset>/<split>` through
`HybridData` (tops `data`, `label` (41), `depth_gt_81` or `depth_gt_41`); every top named
`loss_*` is a loss term: `loss_seg` (weight 1000; 1 in DeepLab-ASPP under the parent
recipe), `loss_depth_abs` (weight 0.01: DepthNet's 10 m unit) / `loss_depth_mvn` (refined
depth), `loss_global_abs` / `loss_global_mvn` (global stage), `loss_gradient_mvn`
(gradient stage).
"""

from .config import DATASETS, DEPTHNET_LAYER_MAP
from .generate import check, paths, solver, write_all
from .names import NAMES, NETS, STAGES, check_names


def build(net, dataset, phase, data_layer='python', batch_size=None, baseline_recipe=None):
    """NetParameter of `net` for `dataset` and `phase` (see `netgen.nets.build`)."""
    from .nets import build as _build  # noqa: PLC0415

    check_names([net], [dataset])
    return _build(net, dataset, phase, data_layer=data_layer, batch_size=batch_size, baseline_recipe=baseline_recipe)


__all__ = [
    'DATASETS',
    'DEPTHNET_LAYER_MAP',
    'NAMES',
    'NETS',
    'STAGES',
    'build',
    'check',
    'paths',
    'solver',
    'write_all',
]
