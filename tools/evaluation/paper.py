"""The paper's evaluation tables and names, as data: Tables 2 / 5 / 7 (segmentation: G, C, mIoU
in %) and Tables 4 / 6 / 8 (depth, in each table's own unit: Table 6 prints the delta ratios in
%). The numbers are copied as printed (strings, so that 58.1 stays 58.1); "printed after L<n>"
cites the paper text line the table follows. Read by `tools.evaluation.report` and
`tools.evaluation.figures`.
"""

import collections

SegTable = collections.namedtuple('SegTable', 'title where rows')
DepthTable = collections.namedtuple('DepthTable', 'title where percent columns values')

#: Our net names -> the paper's row / column names.
PAPER_NAMES = {'a2': 'HybridNet A2', 'a1': 'HybridNet A1', 'deeplab_aspp': 'DeepLab-ASPP', 'depthnet': 'DepthNet'}

#: Depth rows in the order of Tables 4 and 6: (key, label, higher is better).
DEPTH_ROWS = (
    ('pp_mvn', 'γ < 1.25 (MVN)', True),
    ('delta1', 'γ < 1.25', True),
    ('delta2', 'γ < 1.25²', True),
    ('delta3', 'γ < 1.25³', True),
    ('ard', 'ARD', False),
    ('srd', 'SRD', False),
    ('rmse', 'RMSE-linear', False),
    ('rmse_log', 'RMSE-log', False),
    ('sie', 'SIE', False),
)
#: Our extra row: Table 3's SIE formula as printed (sign slip, no root); the paper's rows have none.
SIE_TABLE3_ROW = ('sie_table3', 'SIE, Table 3 formula as printed', False)

_ = '-'  # the paper's "-": no number given
PAPER_SEGMENTATION = {
    'cityscapes': SegTable(
        'Table 2',
        'printed after L407',
        [
            ('HybridNet A2', 'a2', ('93.26', '79.47', '66.61')),
            ('HybridNet A1', 'a1', ('89.31', '77.22', '58.1')),
            ('PLEDL [25]', None, (_, _, '64.3')),
            ('DeepLab-ASPP [16]', 'deeplab_aspp', ('90.99', '74.88', '58.02')),
            ('FCN [11]', None, (_, _, '65.3')),
            ('SegNet [13]', None, (_, _, '57.0')),
            ('GoogLeNetFCN [26]', None, (_, _, '63.0')),
        ],
    ),
    'sunrgbd': SegTable(
        'Table 5',
        'printed after L504',
        [
            ('HybridNet A2', 'a2', ('71.63', '46.20', '34.30')),
            ('HybridNet A1', 'a1', ('69.34', '38.64', '28.68')),
            ('DeepLab-ASPP [16]', 'deeplab_aspp', ('73.87', '40.09', '29.22')),
            ('SegNet [13]', None, ('72.63', '44.76', '31.84')),
            ('DeepLab-LargeFOV [16]', None, ('71.90', '42.21', '32.08')),
            ('DeepLab-LargeFOV-denseCRF [16]', None, ('66.96', '33.06', '24.13')),
            ('FCN (learned deconv) [11]', None, ('68.18', '38.41', '27.39')),
            ('DeconvNet [38]', None, ('66.13', '32.28', '22.57')),
        ],
    ),
    'nyuv2': SegTable(
        'Table 7',
        'printed after L546',
        [('HybridNet A2', 'a2', ('64.7', '48.4', '36.5')), ('Eigen [21]', None, ('65.6', '45.1', '34.1'))],
    ),
}
PAPER_DEPTH = {
    'cityscapes': DepthTable(
        'Table 4',
        'printed after L436',
        False,
        [('HybridNet A2', 'a2'), ('HybridNet A1', 'a1'), ('DepthNet [19]', 'depthnet')],
        {
            'pp_mvn': ('0.7483', '0.6834', '0.7248'),
            'delta1': ('0.5968', '0.5037', '0.6048'),
            'delta2': ('0.8221', '0.8172', '0.8187'),
            'delta3': ('0.9292', '0.9194', '0.9152'),
            'ard': ('0.24', '0.2879', '0.23'),
            'srd': ('4.27', '4.35', '4.43'),
            'rmse': ('12.09', '12.67', '12.35'),
            'rmse_log': ('0.4343', '0.3407', '0.4340'),
            'sie': ('0.19', '0.2', '0.25'),
        },
    ),
    'sunrgbd': DepthTable(
        'Table 6',
        'printed after L512',
        True,
        [('HybridNet A2', 'a2'), ('HybridNet A1', 'a1'), ('DepthNet', 'depthnet')],
        {
            'pp_mvn': ('89.63', '62.81', '83.59'),
            'delta1': ('61.33', '38.63', '57.73'),
            'delta2': ('89.17', '69.38', '87.42'),
            'delta3': ('97.43', '86.28', '97.08'),
            'ard': ('0.202', '0.301', '0.218'),
            'srd': ('0.186', '3.02', '0.204'),
            'rmse': ('0.682', '8.35', '0.715'),
            'rmse_log': ('0.25', '0.432', '0.27'),
            'sie': ('0.122', '0.316', '0.126'),
        },
    ),
    'nyuv2': DepthTable(
        'Table 8',
        'printed after L546',
        False,
        [('HybridNet A2', 'a2'), ('Eigen [21]', None)],
        {
            'pp_mvn': ('0.7293', _),
            'sie': ('0.1571', '0.171'),
            'delta1': ('0.5006', '0.769'),
            'delta2': ('0.8013', '0.95'),
            'delta3': ('0.9422', '0.98'),
            'ard': ('0.2787', '0.158'),
            'srd': ('0.3236', '0.121'),
            'rmse': ('0.9423', '0.64'),
            'rmse_log': ('0.3219', '0.214'),
        },
    ),
}
RATIO_KEYS = ('pp_mvn', 'delta1', 'delta2', 'delta3')
