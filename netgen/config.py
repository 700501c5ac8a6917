"""Constants shared by the generators, the data layer's users and the drivers.

Sizes follow the paper: 321 x 321 input with a 41 x 41 (1/8) score map and global
depth map (paper L253-257) and an 81 x 81 refined depth map (L267-268).
"""

#: Per-channel mean subtracted from BGR input, DeepLab-v2's (docs/REFERENCE.md, DeepLab).
MEAN_BGR = (104.008, 116.669, 122.675)

#: Network input side (paper L257: "an input image with size 321 by 321").
INPUT_SIZE = 321
#: Score map and global depth map side: (321 - 1) / 8 + 1 (paper L255-257).
SCORE_SIZE = 41
#: Refined depth map side (paper L268).
DEPTH_SIZE = 81

#: Classes per dataset (paper L342-345, L450, L526-532).
NUM_CLASSES = {'cityscapes': 19, 'sunrgbd': 37, 'nyuv2': 40}
DATASETS = tuple(NUM_CLASSES)

#: Label value ignored by the losses and the metrics.
IGNORE_LABEL = 255

#: Deepest valid ground truth per dataset, metres: the data layer of every generated net
#: (param_str `max_depth`) marks deeper pixels invalid (0: no loss term, out of the MVN
#: masks) and `tools.evaluate` ignores them by default (`--max-depth`). Cityscapes' stereo
#: depth is unbounded (disparity p = 2 gives ~121 km); 80 m is the cap of the outdoor
#: evaluation protocol the paper's Eigen-style metrics come from (Eigen et al. 2014 on
#: KITTI, also used for Cityscapes), invalid rather than clamped as that protocol does.
#: Indoor: 10 m (NYUv2's Kinect range, SUN-RGBD's depth_bfx is clamped there already).
#: docs/FIDELITY.md, "Bounded depth". None: no bound.
MAX_DEPTH = {'cityscapes': 80.0, 'sunrgbd': 10.0, 'nyuv2': 10.0}

# --- Nets (netgen) ------------------------------------------------------------------
# Everything below is read by the generators when they build a net (not at import), so
# `python -m netgen --set NAME=VALUE` (or assigning `netgen.config.NAME` before calling
# `netgen.build`) changes it. docs/FIDELITY.md ("## Nets") says where each value comes
# from and which ones the paper leaves open; each decision there names its constant.

#: Paper's alpha in LH = alpha * LS + (LDabs + LDmvn) (paper L322-325): loss_weight of
#: `loss_seg` in the hybrid nets (A1, A2) and, under the 'hybrid' baseline recipe, in
#: DeepLab-ASPP alone (same configuration, paper L362-365; the 'parent' recipe gives 1).
SEG_LOSS_WEIGHT = 1000.0

#: Normalisation of `loss_seg` (Caffe's LossParameter.NormalizationMode name): 'VALID'
#: divides the summed cross-entropy by the number of non-ignored pixels (DeepLab-v2's,
#: whose printed values alpha was calibrated on, paper L324-325); 'NONE' keeps the sum
#: over positions that the paper's words describe (L310-312) (then divide alpha by ~1681).
SEG_LOSS_NORMALIZATION = 'VALID'

#: Depth blobs are metres, but the depth losses are measured in DepthNet's unit, 10 m
#: (docs/REFERENCE.md, DepthNet: "its depth targets are metres/10"), so that alpha = 1000
#: balances the two tasks as in the paper: `loss_*_abs` gets loss_weight 1 / unit^2.
#: MVN losses are scale-free and keep weight 1.
DEPTH_LOSS_UNIT_M = 10.0

#: Multiply the prediction by the validity mask (ground truth > 0) before the depth
#: losses, so that invalid pixels (depth 0 from the data layer) add nothing to LDabs.
#: False: plain Euclidean losses over every pixel (invalid ones pull the prediction to 0).
DEPTH_LOSS_MASK = True

#: DepthNet's refined output is its last conv scaled by 0.01 in 10 m units; in metres
#: that is 0.1 (a Power layer in front of `depth`).
DEPTH_OUTPUT_SCALE = 0.1

#: Gaussian std of the randomly initialised parts of A1 and A2 (paper L299-300, L303-304:
#: "zero mean and 0.1 variance"); docs/FIDELITY.md ("Random init") says why it is not
#: sqrt(0.1). None: Xavier.
RANDOM_INIT_STD = 0.01

#: LRN after every conv of the global and gradient nets (paper L247-248); False: only
#: after conv1 and conv2, as AlexNet and DepthNet have it. Default False: A2 loads
#: DepthNet's global net, trained with LRN after conv1-2 only, "without changes" (L233);
#: LRN after conv3-5 would rescale its pretrained activations (docs/FIDELITY.md).
LRN_EVERY_CONV = False

#: Filler of A2's global_fc6 / global_fc7, which cannot take DepthNet's fc weights at
#: 321 x 321 and so are among the "other parts" initialised with a Gaussian (L303-304):
#: 'gaussian' (std RANDOM_INIT_STD, the paper's) or 'xavier'.
A2_GLOBAL_FC_FILLER = 'gaussian'

#: Groups of the refining net's conv4: 2 as DepthNet's conv4-refine (its refining net
#: "without changes", L233); 1: a plain conv.
REFINE_CONV4_GROUP = 2

#: Channel order of the gradient net's output and of the Prewitt targets: ('x', 'y')
#: (channel 0 = right minus left) or DepthNet's ('y', 'x'). Only a labelling: prediction
#: and target follow the same order, and DepthNet's conv5-grad does not fit ours anyway.
GRADIENT_ORDER = ('x', 'y')

#: Mean-variance normalise the global depth map (MVN layer) before the refining net
#: concatenates it with the VGG features (A2) or the gradient maps (DepthNet's refine
#: stage), as DepthNet's code did. False: the raw map in metres, as the paper says
#: ("concatenated with outputs of", L265).
REFINE_CONTEXT_MVN = False

#: ReLU after the refining net's last conv. The paper says each of the four convs after the
#: concatenation "is followed by a ReLU layer" (L266-267) and also that A2 keeps DepthNet's
#: refining net "without changes" (L233-234), whose last conv is linear. False: DepthNet's
#: linear output (a ReLU'd output died at the paper's lr, docs/FIDELITY.md); True: ReLU.
REFINE_FINAL_RELU = False

#: Refining net conv1 (kernel, stride, pad) and pool1 (kernel, stride, pad): 321 -> 161
#: -> 81 (paper L268); DepthNet's own pads give 80 at 321.
REFINE_CONV1 = (11, 2, 5)
REFINE_POOL1 = (3, 2, 1)

#: The VGG blob (512 x 41 x 41) the refining net reads in A1 and A2 (the paper names no
#: layer); any of conv4_1..conv5_3, pool4, pool5.
REFINE_VGG_BLOB = 'pool5'

#: A2's global depth net gets its own losses (`loss_global_abs`, `loss_global_mvn` on the
#: 41 x 41 depth, the data layer then also serves `depth_gt_41`). False: the paper's LH
#: (eq. 1) has no such term.
A2_GLOBAL_LOSS = False

#: Per-layer (weight, bias) lr_mult replacing the generated ones (DeepLab's 1 / 2, fc8
#: 10 / 20) in every net. Default {}: every layer that starts random (A1's and A2's
#: refining net, L303-304) trains at the solver's rate (L305: "all of its components are
#: trained"); slow multipliers belong to layers initialised from a model.
LR_MULT_OVERRIDES = {}

#: DepthNet's own multipliers of its refining net, in DepthNet's stages only, where
#: `--init-depthnet` loads these layers from its model (its conv1-refine came from
#: ImageNet AlexNet, hence 0.001). {}: DeepLab's.
DEPTHNET_LR_MULTS = {'refine_conv1': (0.001, 0.001), 'refine_conv5': (0.01, 0.01)}

#: Training crop side. The paper crops 320 x 320 (L307-308); 321 = 8 * 40 + 1 keeps the
#: 41 x 41 and 81 x 81 maps corner-aligned to the crop (DeepLab's choice).
CROP_SIZE = INPUT_SIZE

#: Augmentation of the train nets (paper L347-349: "flipping and mirroring"): random
#: horizontal mirroring; no vertical flip (docs/FIDELITY.md, "Augmentation").
MIRROR = True
FLIP = False

#: ASPP atrous rates (paper L287-288).
ASPP_RATES = (6, 12, 18, 24)

#: Recipe (solver, batch size, DeepLab-ASPP's seg loss weight) of the single-task
#: baselines, DeepLab-ASPP and DepthNet's stages: 'hybrid' = the hybrid nets'
#: configuration (paper L362-365: "the same training configuration than the proposed
#: architectures"); 'parent' = each parent's own (DeepLab-v2's, DepthNet's).
#: Command line: `python -m netgen --baseline-recipe parent`.
BASELINE_RECIPES = ('hybrid', 'parent')
BASELINE_RECIPE = 'hybrid'

#: Seed written into the data layer's param_str of every generated net.
DATA_SEED = 1

#: Database split each generated net reads: `data/<dataset>/<split>` (docs/DESIGN.md).
#: Cityscapes' test labels are not public: its test net reads `val`.
TRAIN_SPLIT = 'train'
TEST_SPLIT = {'cityscapes': 'val', 'sunrgbd': 'test', 'nyuv2': 'test'}

#: Test pass during training (solvers): test_iter batches of 1 every test_interval.
SOLVER_TEST_ITER = 100
SOLVER_TEST_INTERVAL = 2000

# --- Weight transplant (tools/surgery.py) --------------------------------------------

#: Our layer -> DepthNet's layer of the same role, in its released model (Ivanecky's
#: Depth-Estimation `net_deploy.prototxt`: global `conv1`..`conv5`, `fc-main`,
#: `fc-depth`; gradient `conv1-grad`..`conv5-grad`; refine `conv1-refine`..
#: `conv5-refine`). Our names carry a prefix because A2 holds VGG16 too and DepthNet's
#: three nets share one model. Whether a layer transplants depends on its shape at our
#: 321 x 321 input (docs/FIDELITY.md, "Layer names"): the global net's conv1..conv5 do;
#: its fc layers (sized for DepthNet's input) and most gradient-net layers do not.
DEPTHNET_LAYER_MAP = {
    'global_conv1': 'conv1',
    'global_conv2': 'conv2',
    'global_conv3': 'conv3',
    'global_conv4': 'conv4',
    'global_conv5': 'conv5',
    'global_fc6': 'fc-main',
    'global_fc7': 'fc-depth',
    'grad_conv1': 'conv1-grad',
    'grad_conv2': 'conv2-grad',
    'grad_conv3': 'conv3-grad',
    'grad_conv4': 'conv4-grad',
    'gradient': 'conv5-grad',
    'refine_conv1': 'conv1-refine',
    'refine_conv2': 'conv2-refine',
    'refine_conv3': 'conv3-refine',
    'refine_conv4': 'conv4-refine',
    'refine_conv5': 'conv5-refine',
}
