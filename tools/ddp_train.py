"""Data-parallel training of a HybridNet module in PyTorch (DistributedDataParallel).

The multi-GPU path for the PyTorch side (docs/GPU.md): the deploy net converted by
`tools.porting.torch_net.CaffeNet`, wrapped in DDP, one process per GPU, NCCL between GPUs
(gloo on CPU), each process its own shard of the batches, gradients averaged by DDP.
Layers with lr_mult 0 in the prototxt (fixed upsampling, DepthNet's frozen stages) are
frozen. Loss: the paper's LH = alpha * LS + (LDabs + LDmvn) on the outputs the net has
(`fc8` logits -> softmax cross-entropy ignoring 255, alpha 1000 when the net also predicts
depth; `depth` and `depth_global` -> Euclidean in 10 m units + Euclidean after MVN, both
over valid pixels). Data: synthetic batches (random images, labels, depth), seeded by
(seed, rank): this script shows and tests the distributed mechanics; real training runs
through Caffe (tools/train) or plugs `data_prep.batches.CropSampler` in as `batches()`.

    torchrun --nproc_per_node=4 -m tools.ddp_train --net prototxt/a2_cityscapes/deploy.prototxt \
        --weights runs/a2/a2.caffemodel --steps 1000 --batch 7 --save runs/a2_ddp.pt
    python -m tools.ddp_train --net ... --steps 3      # one process (world size 1)

Without torchrun's environment (RANK, WORLD_SIZE, ...) it starts a group of one on
127.0.0.1, so DDP itself still runs.
"""

import argparse
import json
import os
import socket
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP

from netgen.config import DEPTH_LOSS_UNIT_M as DEPTH_UNIT_M
from netgen.config import IGNORE_LABEL as IGNORE
from netgen.config import SEG_LOSS_WEIGHT as SEG_ALPHA
from tools.core.protos import layer_blobs, read_caffemodel, read_net
from tools.porting.torch_net import CaffeNet, module_key


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def init_distributed(device):
    """(rank, world_size, local_rank, backend); a group of one without torchrun's env."""
    backend = 'nccl' if device == 'cuda' else 'gloo'
    if 'RANK' not in os.environ:
        os.environ.update(
            RANK='0', WORLD_SIZE='1', LOCAL_RANK='0', MASTER_ADDR='127.0.0.1', MASTER_PORT=str(_free_port())
        )
    dist.init_process_group(backend=backend)
    return dist.get_rank(), dist.get_world_size(), int(os.environ.get('LOCAL_RANK', 0)), backend


def build_net(net_path, batch, weights=None):
    net_param = read_net(net_path)
    for layer in net_param.layer:  # the deploy net's batch -> --batch
        if layer.type == 'Input':
            for shape in layer.input_param.shape:
                shape.dim[0] = batch
    frozen = {module_key(l.name) for l in net_param.layer if len(l.param) and all(p.lr_mult == 0 for p in l.param)}
    net = CaffeNet(net_param)
    if weights:
        net.load_caffe_blobs(layer_blobs(read_caffemodel(weights)))
    else:  # a demo start: every parameter N(0, 0.01), the fixed (frozen) layers too
        with torch.no_grad():
            for p in net.parameters():
                p.normal_(0.0, 0.01)
    for name, p in net.named_parameters():
        p.requires_grad_(name.split('.')[0] not in frozen)
    return net


def _mvn(x, eps=1e-9):
    """Caffe's MVN per sample and channel: eps added to the standard deviation."""
    flat = x.flatten(2)
    mean = flat.mean(-1, keepdim=True)
    # clamp: sqrt'(0) is inf, and a constant map (var 0) would turn every gradient NaN
    std = (flat - mean).pow(2).mean(-1, keepdim=True).clamp_min(1e-24).sqrt()
    return ((flat - mean) / (std + eps)).view_as(x)


def hybrid_loss(outs, targets):
    """LH on the outputs present; targets: label (N x 1 x s x s), depth_<side> in metres."""
    terms = {}
    has_depth = any(k in outs for k in ('depth', 'depth_global'))
    if 'fc8' in outs:
        label = targets['label'][:, 0].long()
        ce = F.cross_entropy(outs['fc8'], label, ignore_index=IGNORE)
        terms['seg'] = (SEG_ALPHA if has_depth else 1.0) * ce
    for key in ('depth', 'depth_global'):
        if key not in outs:
            continue
        pred = outs[key]
        gt = targets['depth_%d' % pred.shape[-1]]
        valid = (gt > 0).to(pred.dtype)
        n = pred.shape[0]
        diff = (pred - gt) / DEPTH_UNIT_M * valid
        terms[key + '_abs'] = diff.pow(2).sum() / (2 * n)
        mdiff = (_mvn(pred * valid) - _mvn(gt * valid)) * valid
        terms[key + '_mvn'] = mdiff.pow(2).sum() / (2 * n)
    if not terms:
        raise ValueError('the net has none of the outputs fc8, depth, depth_global')
    return sum(terms.values()), {k: float(v.detach()) for k, v in terms.items()}


def batches(net, batch, seed, rank, device, fixed=False):
    """Synthetic batches for this rank: image ~ N(0, 50), labels, depth 1..50 m."""
    g = torch.Generator().manual_seed(seed * 1000 + rank)
    shapes = net.blob_shapes
    k = shapes['fc8'][1] if 'fc8' in shapes else None
    depth_sides = {shapes[b][-1] for b in ('depth', 'depth_global') if b in shapes}

    def make():
        x = torch.randn(net.input_shapes[net.input_names[0]], generator=g) * 50
        t = {}
        if k is not None:
            s = shapes['fc8'][-1]
            t['label'] = torch.randint(0, k, (batch, 1, s, s), generator=g).float()
        for s in depth_sides:
            t['depth_%d' % s] = torch.rand((batch, 1, s, s), generator=g) * 49 + 1
        return x.to(device), {n: v.to(device) for n, v in t.items()}

    if fixed:
        one = make()
        while True:
            yield one
    while True:
        yield make()


def train(args):
    device = 'cuda' if args.device == 'cuda' else 'cpu'
    rank, world, local_rank, backend = init_distributed(device)
    if device == 'cuda':
        torch.cuda.set_device(local_rank)
        dev = torch.device('cuda', local_rank)
        torch.backends.cuda.matmul.allow_tf32 = args.tf32
        torch.backends.cudnn.allow_tf32 = args.tf32
    else:
        dev = torch.device('cpu')
    torch.manual_seed(args.seed)  # same initial weights in every process
    net = build_net(args.net, args.batch, args.weights).to(dev)
    extra = ('fc8',) if 'fc8' in net.blob_shapes and 'fc8' not in net.output_names else ()
    model = DDP(net, device_ids=[local_rank] if device == 'cuda' else None)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=args.lr, momentum=0.9, weight_decay=args.weight_decay)
    data = batches(net, args.batch, args.seed, rank, dev, fixed=args.fixed_batch)
    losses, times = [], []
    for step in range(args.steps):
        x, targets = next(data)
        if device == 'cuda':
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        outs = model(x, blobs=extra)
        loss, terms = hybrid_loss(outs, targets)
        loss.backward()
        opt.step()
        if device == 'cuda':
            torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1000.0)
        avg = loss.detach().clone()
        dist.all_reduce(avg)
        losses.append(float(avg) / world)
        if rank == 0:
            print(
                'step %d loss %.6g (%s) %.1f ms'
                % (step, losses[-1], ', '.join('%s %.4g' % kv for kv in sorted(terms.items())), times[-1]),
                flush=True,
            )
    result = dict(
        world_size=world,
        backend=backend,
        device=str(dev),
        batch_per_process=args.batch,
        steps=args.steps,
        losses=losses,
        ms_per_step=times,
        trainable_params=sum(p.numel() for p in params),
    )
    if rank == 0:
        if args.save:
            torch.save(net.state_dict(), args.save)
        if args.json:
            with open(args.json, 'w') as f:
                json.dump(result, f, indent=1)
    dist.barrier()
    dist.destroy_process_group()
    return result


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--net', required=True, help='deploy prototxt (its Input batch is replaced by --batch)')
    p.add_argument('--weights', help='caffemodel to start from (default: random N(0, 0.01))')
    p.add_argument('--steps', type=int, default=10)
    p.add_argument('--batch', type=int, default=7, help='images per process and step (default: %(default)s)')
    p.add_argument('--lr', type=float, default=2.5e-6, help='SGD learning rate (paper: %(default)s)')
    p.add_argument('--weight-decay', type=float, default=0.005)
    p.add_argument('--device', choices=('cpu', 'cuda'), default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--tf32', action='store_true', help='allow TF32 matmul/convolution (CUDA)')
    p.add_argument('--seed', type=int, default=1)
    p.add_argument('--fixed-batch', action='store_true', help='train on one batch (a check that the loss falls)')
    p.add_argument('--save', help='rank 0 writes the state_dict here')
    p.add_argument('--json', help='rank 0 writes the losses and timings here')
    return p.parse_args(argv)


if __name__ == '__main__':
    train(parse_args())
