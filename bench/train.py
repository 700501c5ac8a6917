"""Training speed: Caffe and the PyTorch module of the same net, side by side in one run.

For each training net (a1, a2, deeplab_aspp and DepthNet's three stages) at the given batch
and 321 x 321: the milliseconds of one training iteration (forward, backward, SGD update)

- in Caffe: `caffe train` on the train net with its HybridData layer swapped for Input
  blobs (netgen's `data_layer='input'`): every layer of the training net, losses and
  dropout included; the time between consecutive "Iteration N, loss" log lines
  (`bench.caffe_cli.caffe_train_timing`; stock `caffe time` aborts on the depth nets'
  Threshold layers, whose Backward it calls);
- in PyTorch: the net's deploy graph converted by `tools.porting.torch_net.CaffeNet` (same
  convolutions, pooling, LRN, upsampling, MVN; dropout off), random weights and input,
  loss = sum over the outputs of mean(out ** 2), `backward()`, `torch.optim.SGD` step
  (momentum 0.9, weight decay 0.005); parameters whose Caffe layer has lr_mult 0
  (DepthNet's frozen stages, the fixed upsampling) get no gradient, as in Caffe.

CPU always (unless --no-cpu), GPU when one answers (nvidia-smi) and a CUDA Caffe is given
(`.venv/bin/caffe-gpu` from `make setup CAFFE_GPU=1`); on the GPU also with TF32
(CAFFE_TF32=1 for Caffe, torch.backends.*.allow_tf32 for PyTorch). Prints a table and
appends it to docs/PERFORMANCE.md ("## Training speed") with the machine and the command.

    python -m bench.train --batch 1 --iters 2            # a CPU run of a few minutes
    python -m bench.train --prepare DIR --batch 7        # write the nets only (for
                                                         # make gpu-bundle); needs pycaffe
    python -m bench.train --nets-dir DIR --no-cpu ...    # time prepared nets (no pycaffe)
"""

import argparse
import datetime
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

from bench import caffe_cli
from netgen.generate import NETS, expand
from tools.core import REPO

ROOT = str(REPO)
PERFORMANCE_MD = os.path.join(ROOT, 'docs', 'PERFORMANCE.md')
SECTION = '## Training speed'
SECTION_INTRO = """\
Milliseconds per training iteration (forward, backward, SGD update) of the training nets at
321 x 321, measured by `python -m bench.train` (the command is shown with each table). Caffe:
`caffe train` on the train net with Input blobs in place of the data layer (losses and
dropout included), timed between its per-iteration log lines. PyTorch: the same net's
deploy graph converted by `tools.porting.torch_net` (dropout off), loss = sum of mean(out^2)
over its outputs, `backward()`, SGD step; lr_mult 0 layers frozen in both. Median of the
timed iterations, after one untimed warm-up iteration. TF32: `CAFFE_TF32=1` for Caffe (cuBLAS TF32 tensor-op math),
`torch.backends.cuda.matmul.allow_tf32` and `torch.backends.cudnn.allow_tf32` for
PyTorch; fp32 columns have both off. "n/a" says why in the notes below a table.
"""


# --- the nets ------------------------------------------------------------------------------


def prepare(out_dir, nets, dataset, batch, parity=('a2', 'deeplab_aspp')):
    """Write `<net>.train.prototxt` (Input data), `<net>.deploy.prototxt`, for the nets in
    `parity` also `<net>.parity.prototxt` (DummyData: a training iteration without a
    database, for bench/tf32_parity.py), and manifest.json. Needs pycaffe (netgen)."""
    from google.protobuf import text_format  # noqa: PLC0415

    import netgen  # noqa: PLC0415

    os.makedirs(out_dir, exist_ok=True)
    manifest = dict(dataset=dataset, batch=batch, nets={})
    for name in expand(nets):
        entry = {}
        train = netgen.build(name, dataset, 'train', data_layer='input', batch_size=batch)
        deploy = netgen.build(name, dataset, 'deploy', batch_size=batch)
        protos = [('train', train), ('deploy', deploy)]
        if name in parity:
            protos.append(('parity', caffe_cli.dummy_data_net(train)))
        for kind, proto in protos:
            fname = '%s.%s.prototxt' % (name, kind)
            with open(os.path.join(out_dir, fname), 'w') as f:
                f.write(text_format.MessageToString(proto))
            entry[kind] = fname
        manifest['nets'][name] = entry
    with open(os.path.join(out_dir, 'manifest.json'), 'w') as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
    return manifest


def load_manifest(nets_dir):
    with open(os.path.join(nets_dir, 'manifest.json')) as f:
        return json.load(f)


def read_net(path):
    from tools.core.protos import read_net as read  # noqa: PLC0415 (needs caffe_pb2 only)

    return read(path)


def frozen_layers(train_net):
    """Names of the layers whose every parameter has lr_mult 0 (no gradient in Caffe)."""
    return {l.name for l in train_net.layer if len(l.param) and all(p.lr_mult == 0 for p in l.param)}


# --- PyTorch -------------------------------------------------------------------------------


def torch_available():
    try:
        import torch  # noqa: F401, PLC0415

        from tools.porting.torch_net import CaffeNet  # noqa: F401, PLC0415
    except Exception as e:  # ImportError, or the converter failing to import
        return False, 'PyTorch converter not available (%s: %s)' % (type(e).__name__, e)
    return True, ''


def torch_time(train_path, deploy_path, iterations, device='cpu', tf32=False, seed=0):
    """Median ms of forward + loss + backward + SGD step of the converted deploy net."""
    import torch  # noqa: PLC0415

    from tools.porting.torch_net import CaffeNet, module_key  # noqa: PLC0415

    torch.manual_seed(seed)
    cuda = device.startswith('cuda')
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cudnn.benchmark = True
    net = CaffeNet(read_net(deploy_path))
    frozen = {module_key(n) for n in frozen_layers(read_net(train_path))}
    with torch.no_grad():
        for name, p in net.named_parameters():
            p.normal_(0.0, 0.01)
            p.requires_grad_(name.split('.')[0] not in frozen)
    net.train()  # the converter's modules are mode-free; dropout is not in the graph
    net.to(device)
    inputs = [torch.randn(net.input_shapes[n], device=device) * 50 for n in net.input_names]

    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=1e-12, momentum=0.9, weight_decay=0.005)

    def step():
        opt.zero_grad(set_to_none=True)
        outs = net(*inputs)
        loss = sum((o.float() ** 2).mean() for o in outs.values())
        loss.backward()
        opt.step()

    times = []
    for i in range(iterations + (2 if cuda else 1)):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        step()
        if cuda:
            torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1000.0)
    times = times[2 if cuda else 1 :]
    net = inputs = opt = params = None  # release the memory before the next net
    if cuda:
        torch.cuda.empty_cache()
    return dict(per_iter_ms=times, median_ms=statistics.median(times))


# --- the machine ---------------------------------------------------------------------------


def cpu_name():
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return '%s, %d cores' % (line.split(':', 1)[1].strip(), os.cpu_count())
    except OSError:
        pass
    return '%s, %d cores' % (platform.processor() or platform.machine(), os.cpu_count())


def gpu_name():
    try:
        out = (
            subprocess.run(
                ['nvidia-smi', '--query-gpu=name,driver_version,memory.total', '--format=csv,noheader'],
                capture_output=True,
                text=True,
                timeout=60,
            )
            .stdout.strip()
            .splitlines()
        )
        return out[0] if out else 'GPU'
    except (OSError, subprocess.TimeoutExpired):
        return 'GPU'


# --- the run -------------------------------------------------------------------------------


def fmt_ms(r):
    return 'n/a' if r is None else '%.1f' % r


def _nets(args, notes):
    """(nets_dir, manifest, names, tmp): prepared nets, or nets written into a temp dir."""
    if args.nets_dir:
        manifest = load_manifest(args.nets_dir)
        if manifest['batch'] != args.batch:
            notes.append(
                'nets of %s have batch %d (--batch %d ignored)' % (args.nets_dir, manifest['batch'], args.batch)
            )
            args.batch = manifest['batch']
        return args.nets_dir, manifest, [n for n in expand(args.nets) if n in manifest['nets']], None
    tmp = tempfile.TemporaryDirectory(prefix='bench-train-')
    return tmp.name, prepare(tmp.name, args.nets, args.dataset, args.batch), expand(args.nets), tmp


def _devices(args, notes):
    """(devices, torch_ok, torch_gpu, caffe_gpu): what can be timed, the reasons in `notes`."""
    devices = ['cpu'] if args.cpu else []
    gpu_ok, gpu_why = caffe_cli.gpu_present()
    if args.gpu == 'yes' and not gpu_ok:
        raise SystemExit('--gpu yes: %s' % gpu_why)
    if args.gpu != 'no':
        if gpu_ok:
            devices.append('gpu')
        else:
            notes.append('GPU not measured: %s' % gpu_why)
    torch_ok, torch_why = (False, '--no-torch') if args.no_torch else torch_available()
    if not torch_ok:
        notes.append('PyTorch: %s' % torch_why)
    torch_gpu = False
    if 'gpu' in devices and torch_ok:
        import torch  # noqa: PLC0415

        torch_gpu = torch.cuda.is_available()
        if not torch_gpu:
            notes.append('PyTorch on GPU: torch.cuda.is_available() is False (CPU-only torch)')
    caffe_gpu = args.caffe_gpu if args.caffe_gpu and os.path.exists(args.caffe_gpu) else None
    if 'gpu' in devices and caffe_gpu is None:
        notes.append('Caffe on GPU: no CUDA caffe at %s (make setup CAFFE_GPU=1)' % args.caffe_gpu)
    return devices, torch_ok, torch_gpu, caffe_gpu


def _time_caffe(row, caffe_bin, name, train, args, device, label, tf32, notes):
    try:
        r = caffe_cli.caffe_train_timing(caffe_bin, train, args.iters, gpu=0 if device == 'gpu' else None, tf32=tf32)
        row['caffe_' + label] = statistics.median(r['per_iter_ms'])
        if tf32 and not r['tf32_applied']:
            notes.append('%s: CAFFE_TF32=1 was not logged by caffe (build without the TF32 patch?)' % name)
    except caffe_cli.CaffeError as e:
        notes.append('Caffe %s %s %s failed: %s' % (name, device, label, str(e).splitlines()[0]))


def _time_torch(row, name, train, deploy, args, device, label, tf32, notes):
    try:
        r = torch_time(train, deploy, args.iters, device='cpu' if device == 'cpu' else 'cuda', tf32=tf32)
        row['torch_' + label] = r['median_ms']
    except Exception as e:  # report, keep going with the other nets
        notes.append(
            'PyTorch %s %s %s failed: %s: %s' % (name, device, label, type(e).__name__, str(e).splitlines()[0])
        )


def run(args):
    notes = []
    nets_dir, manifest, names, tmp = _nets(args, notes)
    devices, torch_ok, torch_gpu, caffe_gpu = _devices(args, notes)
    rows = []
    for device in devices:
        for name in names:
            entry = manifest['nets'][name]
            train = os.path.join(nets_dir, entry['train'])
            deploy = os.path.join(nets_dir, entry['deploy'])
            row = dict(net=name, device=device, batch=args.batch)
            variants = [('fp32', False)] + ([('tf32', True)] if device == 'gpu' else [])
            for label, tf32 in variants:
                caffe_bin = args.caffe if device == 'cpu' else caffe_gpu
                if caffe_bin:
                    _time_caffe(row, caffe_bin, name, train, args, device, label, tf32, notes)
                if torch_ok and (device == 'cpu' or torch_gpu):
                    _time_torch(row, name, train, deploy, args, device, label, tf32, notes)
            rows.append(row)
            print(format_row(row), flush=True)
    if tmp is not None:
        tmp.cleanup()
    return rows, notes, devices


HEADER = (
    '| net | device | batch | Caffe fp32 ms | PyTorch fp32 ms | Caffe TF32 ms | '
    'PyTorch TF32 ms | Caffe fp32 img/s | PyTorch fp32 img/s |\n'
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |'
)


def format_row(row):
    def ips(key):
        return 'n/a' if row.get(key) is None else '%.2f' % (row['batch'] * 1000.0 / row[key])

    tf = (lambda k: fmt_ms(row.get(k))) if row['device'] == 'gpu' else (lambda k: '-')
    return '| %s | %s | %d | %s | %s | %s | %s | %s | %s |' % (
        row['net'],
        row['device'],
        row['batch'],
        fmt_ms(row.get('caffe_fp32')),
        fmt_ms(row.get('torch_fp32')),
        tf('caffe_tf32'),
        tf('torch_tf32'),
        ips('caffe_fp32'),
        ips('torch_fp32'),
    )


def report(rows, notes, devices, command):
    machines = []
    if 'cpu' in devices:
        machines.append('CPU: %s' % cpu_name())
    if 'gpu' in devices:
        machines.append('GPU: %s' % gpu_name())
    lines = [
        '### %s, %s' % (datetime.date.today().isoformat(), '; '.join(machines) or 'no device'),
        '',
        'Command: `%s`' % command,
        '',
        HEADER,
    ] + [format_row(r) for r in rows]
    if notes:
        lines += [''] + ['- %s' % n for n in notes]
    return '\n'.join(lines) + '\n'


def append_section(path, block):
    """Append `block` at the end of the '## Training speed' section (made if missing)."""
    text = open(path).read() if os.path.exists(path) else '# Performance\n'
    if SECTION not in text:
        text = text.rstrip('\n') + '\n\n' + SECTION + '\n\n' + SECTION_INTRO
    start = text.index(SECTION)
    nxt = text.find('\n## ', start + len(SECTION))
    end = len(text) if nxt < 0 else nxt + 1
    head, tail = text[:end].rstrip('\n') + '\n\n' + block, text[end:]
    text = head + ('\n' + tail if tail else '')
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        f.write(text)


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument('--nets', nargs='+', default=list(NETS), help='default: %(default)s')
    p.add_argument('--dataset', default='cityscapes', help='class count of the nets (default: %(default)s)')
    p.add_argument('--batch', type=int, default=7, help="images per iteration (default: %(default)s, the paper's)")
    p.add_argument('--iters', type=int, default=5, help='timed iterations per measurement (default: %(default)s)')
    p.add_argument('--no-cpu', dest='cpu', action='store_false', help='skip the CPU measurements')
    p.add_argument(
        '--gpu',
        choices=('auto', 'yes', 'no'),
        default='auto',
        help='auto: measure on the GPU when nvidia-smi lists one (default)',
    )
    p.add_argument('--caffe', default=os.path.join(ROOT, '.venv', 'bin', 'caffe'), help='CPU caffe tool')
    p.add_argument(
        '--caffe-gpu',
        default=os.path.join(ROOT, '.venv', 'bin', 'caffe-gpu'),
        help='CUDA caffe tool (default: %(default)s)',
    )
    p.add_argument('--no-torch', action='store_true', help='Caffe only')
    p.add_argument('--nets-dir', help='time the nets prepared there by --prepare (no pycaffe needed)')
    p.add_argument('--prepare', metavar='DIR', help='only write the nets (and manifest.json) into DIR')
    p.add_argument('--out', default=PERFORMANCE_MD, help='markdown file to append to (default: %(default)s)')
    p.add_argument('--no-write', action='store_true', help='print only')
    p.add_argument('--json', help='also write the rows and notes as JSON here')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.prepare:
        m = prepare(args.prepare, args.nets, args.dataset, args.batch)
        print('wrote %d nets (batch %d) to %s' % (len(m['nets']), args.batch, args.prepare))
        return 0
    command = 'python -m bench.train ' + ' '.join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    rows, notes, devices = run(args)
    block = report(rows, notes, devices, command.strip())
    print()
    print(block)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(rows=rows, notes=notes, devices=devices, command=command), f, indent=1)
    if not args.no_write:
        append_section(args.out, block)
        print('appended to %s' % args.out)
    return 0


if __name__ == '__main__':
    sys.exit(main())
