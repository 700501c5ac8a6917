"""Port a HybridNet caffemodel to PyTorch, ONNX or NumPy, and PyTorch/NumPy weights back to Caffe.

    python -m tools.export --net a1 --dataset cityscapes --weights a1.caffemodel --to pytorch
    python -m tools.export --net a1 --dataset cityscapes --weights a1.caffemodel --to onnx
    python -m tools.export --net a1 --dataset cityscapes --weights a1.caffemodel --to state_dict
    python -m tools.export --net a1 --dataset cityscapes --weights a1.caffemodel --to npz
    python -m tools.export --net a1 --dataset cityscapes --weights a1.pt --to caffemodel [--template a1.caffemodel]

Stand-alone, any batch size, outputs named as the Caffe blobs: pytorch: torch.export's
ExportedProgram (.pt2; `torch.export.load(f).module()(data)` with PyTorch alone); onnx: the
same graph at opset ONNX_OPSET, batch axis `batch`. Both are checked against the module at
batch 1 and 3. The weights alone (they need this project's CaffeNet and the prototxt):
state_dict (.pt, `torch.save`), keys `<caffe layer>.weight` / `.bias` in Caffe's blob shapes;
npz: the same arrays under the same keys. caffemodel: weights (.pt, .pt2, .npz) written back,
by pycaffe from the deploy net, or into a copy of --template with only the blob values
replaced. The porting itself is `tools.porting`; docs/PORTING.md is the guide.

Exit codes: 0 done, 2 bad input.
"""

import argparse
import os
import sys

from tools.core import run_cli
from tools.porting import export

SUFFIX = {'pytorch': '.pt2', 'onnx': '.onnx', 'state_dict': '.pt', 'npz': '.npz', 'caffemodel': '.caffemodel'}


def parser():
    result = argparse.ArgumentParser(
        prog='python -m tools.export', description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    result.add_argument('--net', help='a1, a2, deeplab_aspp, depthnet (or a DepthNet stage)')
    result.add_argument('--dataset', help='cityscapes, sunrgbd or nyuv2')
    result.add_argument('--prototxt', help='any deploy prototxt instead of --net/--dataset')
    result.add_argument(
        '--weights',
        required=True,
        help='a .caffemodel (to pytorch/onnx/state_dict/npz) or a .pt/.pt2/.npz (to caffemodel)',
    )
    result.add_argument('--to', required=True, choices=tuple(SUFFIX))
    result.add_argument('--out', help="output file (default: the weights' name with the format's suffix)")
    result.add_argument('--template', help='to caffemodel: copy this caffemodel, replacing only blob values')
    result.add_argument('--opset', type=int, default=export.ONNX_OPSET, help='ONNX opset (default %(default)s)')
    return result


def _check(cli, args):
    if args.prototxt is None and (args.net is None or args.dataset is None):
        cli.error('give --net and --dataset, or --prototxt')
    if args.weights.endswith('.caffemodel') == (args.to == 'caffemodel'):
        cli.error('--to caffemodel takes .pt/.pt2/.npz weights; the other formats take a .caffemodel')
    if args.template and args.to != 'caffemodel':
        cli.error('--template only applies to --to caffemodel')


def _main(argv):
    cli = parser()
    args = cli.parse_args(argv)
    _check(cli, args)
    out = args.out or os.path.splitext(args.weights)[0] + SUFFIX[args.to]
    prototxt = export.resolve_prototxt(args.prototxt, args.net, args.dataset)
    module = export.load_pytorch(args.weights, prototxt)
    if args.to in ('pytorch', 'onnx'):
        if args.to == 'pytorch':
            export.export_pytorch(module, out)
        else:
            export.export_onnx(module, out, args.opset)
        engine = 'ONNX Runtime' if args.to == 'onnx' else 'torch.export program'
        for (batch, name), err in export.check_artifact(module, out).items():
            print(f'{engine} vs CaffeNet, batch {batch}, {name}: max relative error {err:.1e}')
    elif args.to == 'state_dict':
        export.export_state_dict(module, out)
    elif args.to == 'npz':
        export.export_npz(module, out)
    else:
        export.export_caffemodel(module, prototxt, out, args.template)
    print(f'wrote {out}')
    return 0


def main(argv=None):
    """The command line; returns the exit status (docs/DESIGN.md)."""
    return run_cli(_main, argv)


if __name__ == '__main__':
    sys.exit(main())
