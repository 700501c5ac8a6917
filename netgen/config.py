"""Constants shared by the generators, the data layer's users and the drivers.

Sizes follow the paper: 321 x 321 input with a 41 x 41 (1/8) score map and global
depth map (paper L253-257) and an 81 x 81 refined depth map (L267-268).
"""

#: Per-channel mean subtracted from BGR input, DeepLab-v2's (REFERENCE.md, DeepLab).
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

# --- Nets (netgen) ------------------------------------------------------------------
# Everything below is used by the generators; docs/FIDELITY.md ("## Nets") says where
# each value comes from and which ones the paper leaves open.

#: Paper's alpha in LH = alpha * LS + (LDabs + LDmvn) (paper L322-325): loss_weight of
#: `loss_seg` in the hybrid nets (A1, A2). DeepLab-ASPP alone keeps weight 1.
SEG_LOSS_WEIGHT = 1000.0

#: Depth blobs are metres, but the depth losses are measured in DepthNet's unit, 10 m
#: (REFERENCE.md, DepthNet: "its depth targets are metres/10"), so that alpha = 1000
#: balances the two tasks as in the paper: `loss_*_abs` gets loss_weight 1 / unit^2.
#: MVN losses are scale-free and keep weight 1.
DEPTH_LOSS_UNIT_M = 10.0

#: DepthNet's refined output is its last conv scaled by 0.01 in 10 m units; in metres
#: that is 0.1 (a Power layer in front of `depth`).
DEPTH_OUTPUT_SCALE = 0.1

#: Gaussian std of the randomly initialised parts of A1 and A2: "zero mean and 0.1
#: variance" (paper L299-300, L303-304), i.e. std = sqrt(0.1).
RANDOM_INIT_STD = 0.1 ** 0.5

#: Training crop side. The paper crops 320 x 320 (L307-308); 321 = 8 * 40 + 1 keeps the
#: 41 x 41 and 81 x 81 maps corner-aligned to the crop (DeepLab's choice).
CROP_SIZE = INPUT_SIZE

#: Augmentation of the train nets (paper L347-349: "flipping and mirroring"): random
#: horizontal mirroring; no vertical flip (docs/FIDELITY.md, "Augmentation").
MIRROR = True
FLIP = False

#: ASPP atrous rates (paper L287-288).
ASPP_RATES = (6, 12, 18, 24)

#: Seed written into the data layer's param_str of every generated net.
DATA_SEED = 1

#: Database split each generated net reads: `data/<dataset>/<split>` (docs/DESIGN.md).
#: Cityscapes' test labels are not public: its test net reads `val`.
TRAIN_SPLIT = 'train'
TEST_SPLIT = {'cityscapes': 'val', 'sunrgbd': 'test', 'nyuv2': 'test'}

#: Test pass during training (solvers): test_iter batches of 1 every test_interval.
SOLVER_TEST_ITER = 100
SOLVER_TEST_INTERVAL = 2000
