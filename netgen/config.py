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
