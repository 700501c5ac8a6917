#!/usr/bin/env bash
# The GPU checks of issues 8 and 16 in one run (at most DEADLINE_S = 450 s on an H200), for
# a machine with an NVIDIA driver, CUDA 13, cuDNN 9, python3 with PyTorch and no Caffe, no
# network: the device machine. Run from the repository root there:
#   bash bench/device_check.sh [runs/gpu-bundle/hybridnet-caffe-cuda.tar.xz]
# (make the archive here with `make gpu-bundle`; the device tool carries runs/gpu-bundle).
# The bundle's caffe takes cuBLAS, cuRAND, cudart and cuDNN from the machine's own PyTorch
# wheels (its bin/caffe wrapper). One build serves every Caffe variant: CAFFE_CUDNN=0 keeps
# Caffe's own GPU layers (im2col + cuBLAS, as a build without cuDNN), CAFFE_TF32=1 switches
# cuBLAS and cuDNN to TF32 tensor cores; without -gpu it runs the CPU code of the CPU build.
# Results in $OUT (default /tmp/device-check; the device tool brings back 8 files): summary.txt,
# PERFORMANCE-gpu.md, parity.json, speed.json, learn.json and results.tgz (every step's log
# and JSON), refreshed after each step, so a run cut short still brings back what it did;
# the summary is also printed at the end. The steps:
#   1. gpu, ldd, device_query: nvidia-smi and torch, where each library comes from,
#      `caffe device_query -gpu 0`
#   2. parity (-> parity.json): one forward + backward of A2 and DeepLab-ASPP (DummyData,
#      same batch and weights from the seed, no Dropout, batch PARITY_BATCH of the bundle)
#      on the CPU and on the GPU without cuDNN, with cuDNN FP32 and cuDNN TF32: losses and
#      every parameter gradient, relative to the CPU (target for FP32: <= 1e-4)
#   3. learn (-> learn.json): `caffe train -gpu 0` of A2 for LEARN_ITERS iterations on the
#      bundle's learning set (data_prep's rendered Cityscapes sample cut by the HybridData
#      pipeline, read through HDF5Data; MSRA fillers and Adam 1e-5, `make demo`'s recipe
#      for a start from scratch), the loss terms at every iteration
#   4. speed (-> speed.json, PERFORMANCE-gpu.md): training step at batch 7 of DeepLab-ASPP
#      and A2, Caffe (no cuDNN / cuDNN FP32 / cuDNN TF32) and the same nets in PyTorch
#      (FP32 / TF32 / bf16 autocast), alternated over ROUNDS rounds, medians, img/s
#   5. layers_aspp: `caffe time -gpu 0` per layer of DeepLab-ASPP with cuDNN FP32
#   6. tf32_parity_aspp / tf32_parity_a2 (python -m bench.tf32_parity, issue 8)
# Each step has its own time limit, cut to what is left of DEADLINE_S; a failing step is
# reported and the others still run. Environment: OUT, ITERS (10), ROUNDS (2), LEARN_ITERS
# (300), DEADLINE_S (450), PYTHON (python3).
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUNDLE=${1:-$ROOT/runs/gpu-bundle/hybridnet-caffe-cuda.tar.xz}
OUT=${OUT:-/tmp/device-check}
ITERS=${ITERS:-10}
ROUNDS=${ROUNDS:-2}
LEARN_ITERS=${LEARN_ITERS:-300}
DEADLINE_S=${DEADLINE_S:-450}
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
W=$(mktemp -d /tmp/hybridnet-gpu.XXXXXX)
RES=$W/results   # every step's log and JSON; $OUT gets the main ones and results.tgz
mkdir -p "$RES"
declare -A RESULT
START=$(date +%s)
STEPS=()

summary() {  # the outcome of every step so far, and the main figures
  echo "=== summary ($(( $(date +%s) - START )) s of ${DEADLINE_S} s)"
  for k in "${STEPS[@]}"; do
    printf '%-16s %s\n' "$k" "${RESULT[$k]:-not run}"
  done
  grep -h '^parity ' "$RES/parity.log" 2>/dev/null
  sed -n '/^| net /,$p' "$RES/PERFORMANCE-gpu.md" 2>/dev/null
  grep -h '^learn' "$RES/learn.log" 2>/dev/null
  grep -h 'Average Forward-Backward\|Average Forward pass\|Average Backward pass' "$RES/layers_aspp.log" 2>/dev/null
  grep -h 'TF32 parity' "$RES"/tf32_parity_*.log 2>/dev/null
  return 0
}

publish() {  # $OUT: at most 8 files (the device tool's limit)
  summary >"$OUT/summary.txt"
  for f in PERFORMANCE-gpu.md parity.json speed.json learn.json; do
    [ -f "$RES/$f" ] && cp "$RES/$f" "$OUT/$f"
  done
  tar -C "$W" -czf "$OUT/results.tgz.tmp" results && mv "$OUT/results.tgz.tmp" "$OUT/results.tgz"
  return 0
}

step() {  # step NAME TIMEOUT_S COMMAND...: run, log to $RES/NAME.log, remember the outcome
  local name=$1 limit=$2; shift 2
  local left=$(( DEADLINE_S - ($(date +%s) - START) - 5 ))
  STEPS+=("$name")
  if [ "$left" -lt 15 ]; then
    RESULT[$name]="skipped: ${DEADLINE_S}s deadline reached"; echo "=== $name: ${RESULT[$name]}"; publish; return 0
  fi
  [ "$limit" -le "$left" ] || limit=$left
  local t0=$(date +%s)
  echo "=== $name (limit ${limit}s): $*"
  timeout "$limit" "$@" > >(tee "$RES/$name.log") 2>&1
  local rc=$?
  RESULT[$name]="rc=$rc $(( $(date +%s) - t0 ))s"
  echo "=== $name: ${RESULT[$name]}"
  publish
  return 0
}

[ -f "$BUNDLE" ] || { echo "no bundle at $BUNDLE (make gpu-bundle on a machine with the CUDA build)" >&2; exit 1; }
tar -C "$W" -xJf "$BUNDLE" || { echo "cannot unpack $BUNDLE" >&2; exit 1; }
B=$W/hybridnet-caffe-cuda
CAFFE=$B/bin/caffe
# caffe_pb2 for the PyTorch side (the device's own protobuf), the repository for bench/, tools/
export PYTHONPATH="$B/pyshim:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
head -5 "$B/MANIFEST.txt"
echo "$B/learn/a2_sample.h5" >"$W/learn.list"
sed "s|@LEARN_LIST@|$W/learn.list|" "$B/nets/a2.learn.prototxt" >"$W/a2.learn.prototxt"

# --- the Python of steps 2-4 (tests/test_gpu_cudnn.py parses it and runs it on the CPU) ---
cat >"$W/parity.py" <<'PY'
"""CPU vs GPU parity of one training step: `caffe train` (SGD, momentum 0, weight decay 0,
one iteration, base_lr LR) from the same seed, so the same DummyData batch and the same
initial weights (both drawn on the CPU); then each parameter's update w0 - w1 = LR * lr_mult
* gradient is read from the snapshots. LR is large (1e6) so the update dwarfs w0 and float32
rounding of w1 costs ~1e-7 of the gradient. Relative errors are against the first variant."""
import argparse
import json
import os
import re
import subprocess
import sys
import time

import numpy as np


def varint(buf, i):
    shift = value = 0
    while True:
        byte = buf[i]
        i += 1
        value |= (byte & 0x7f) << shift
        if byte < 0x80:
            return value, i
        shift += 7


def fields(buf, i, end):
    """(field number, wire type, value or (start, end) span) of a protobuf message."""
    while i < end:
        key, i = varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = varint(buf, i)
        elif wire == 1:
            value, i = (i, i + 8), i + 8
        elif wire == 2:
            n, i = varint(buf, i)
            value, i = (i, i + n), i + n
        elif wire == 5:
            value, i = (i, i + 4), i + 4
        else:
            raise ValueError('unsupported wire type %d' % wire)
        yield number, wire, value


def read_caffemodel(path):
    """{(layer name, blob index): float64 array} from a binary NetParameter (V2 layers):
    layer = field 100, its name = 1, blobs = 7; BlobProto.data = 5, double_data = 8."""
    buf = memoryview(open(path, 'rb').read())
    blobs = {}
    for number, wire, span in fields(buf, 0, len(buf)):
        if number != 100 or wire != 2:
            continue
        name, layer_blobs = None, []
        for n2, w2, v2 in fields(buf, *span):
            if n2 == 1:
                name = bytes(buf[v2[0]:v2[1]]).decode()
            elif n2 == 7:
                parts = []
                for n3, w3, v3 in fields(buf, *v2):
                    if n3 == 5:
                        parts.append(np.frombuffer(buf[v3[0]:v3[1]], '<f4'))
                    elif n3 == 8:
                        parts.append(np.frombuffer(buf[v3[0]:v3[1]], '<f8'))
                layer_blobs.append(np.concatenate(parts).astype(np.float64) if parts else np.zeros(0))
        for k, b in enumerate(layer_blobs):
            blobs[(name, k)] = b
    return blobs


SOLVER = '''net: "{net}"
base_lr: {lr}
lr_policy: "fixed"
momentum: 0
weight_decay: 0
max_iter: {iters}
display: {display}
snapshot_after_train: true
snapshot_prefix: "{prefix}"
random_seed: {seed}
solver_mode: {mode}
'''
LOSS = re.compile(r'Iteration 0(?: \([^)]*\))?, loss = (\S+)')
OUTPUT = re.compile(r'Train net output #\d+: (\S+) = (\S+)')


def caffe_step(caffe, net, workdir, tag, gpu, env, lr, seed, iters=1, timeout=600):
    os.makedirs(workdir, exist_ok=True)
    solver = os.path.join(workdir, tag + '.solver.prototxt')
    with open(solver, 'w') as f:
        # display 2: iteration 0 is logged, and no extra forward follows the last iteration
        f.write(SOLVER.format(net=os.path.abspath(net), lr=lr, iters=iters, display=2 if iters else 0,
                              prefix=os.path.join(workdir, tag), seed=seed, mode='GPU' if gpu else 'CPU'))
    e = dict(os.environ, GLOG_logtostderr='1', GLOG_minloglevel='0')
    for k in ('CAFFE_TF32', 'CAFFE_CUDNN'):
        e.pop(k, None)
    e.update(env)
    cmd = [caffe, 'train', '-solver', solver] + (['-gpu', '0'] if gpu else [])
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True, env=e, timeout=timeout)
    log = p.stdout + p.stderr
    with open(os.path.join(workdir, tag + '.log'), 'w') as f:
        f.write(log)
    if p.returncode != 0:
        raise RuntimeError('caffe exited %d: %s' % (p.returncode, reason(log)))
    model = os.path.join(workdir, '%s_iter_%d.caffemodel' % (tag, iters))
    losses = {}
    m = LOSS.search(log)
    if m:
        losses['loss'] = float(m.group(1))
        for name, value in OUTPUT.findall(log[m.end():]):
            losses.setdefault(name, float(value))
    return dict(model=model, losses=losses, seconds=round(time.time() - t0, 1),
                tf32_logged='CUDNN_TENSOR_OP_MATH' in log or 'CUBLAS_TF32' in log,
                cudnn_off_logged='CAFFE_CUDNN=0' in log)


def reason(log):
    """The line of a caffe log that says why it stopped (glog's F line, a Check failure)."""
    lines = [l for l in log.splitlines() if l.strip()]
    for l in reversed(lines):
        if l.startswith('F') or 'Check failed' in l or 'Error' in l:
            return l.split('] ', 1)[-1][:300]
    return lines[-1][:300] if lines else 'no output'


def rel(a, b):
    d = np.linalg.norm(a - b)
    n = np.linalg.norm(b)
    return float(d / n) if n > 0 else (0.0 if d == 0 else float('inf'))


def compare(w0, ref, other):
    """Per-blob and overall relative error of the updates w0 - w1 (blobs that moved)."""
    per, num, den = {}, 0.0, 0.0
    for key, a0 in w0.items():
        dr, do = a0 - ref[key], a0 - other[key]
        if not np.any(dr):
            continue   # lr_mult 0 (frozen): no gradient
        per['%s/%d' % key] = rel(do, dr)
        num += float(np.sum((do - dr) ** 2))
        den += float(np.sum(dr ** 2))
    worst = sorted(per.items(), key=lambda kv: -kv[1])[:5]
    return dict(overall=(num ** 0.5) / (den ** 0.5) if den else None, max=worst[0][1] if worst else None,
                median=float(np.median(list(per.values()))) if per else None, worst=worst, blobs=len(per))


# (name, on the GPU, environment); the first is the reference
VARIANTS = [('cpu', False, {}), ('gpu_nocudnn', True, {'CAFFE_CUDNN': '0'}),
            ('gpu_cudnn_fp32', True, {}), ('gpu_cudnn_tf32', True, {'CAFFE_TF32': '1'})]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument('--caffe', required=True)
    p.add_argument('--net', action='append', required=True, metavar='NAME=PROTOTXT')
    p.add_argument('--variants', default=','.join(v[0] for v in VARIANTS))
    p.add_argument('--workdir', required=True)
    p.add_argument('--lr', type=float, default=1e6)
    p.add_argument('--seed', type=int, default=1)
    p.add_argument('--tol', type=float, default=1e-4, help='FP32 target (relative)')
    p.add_argument('--json', required=True)
    args = p.parse_args(argv)
    chosen = [v for v in VARIANTS if v[0] in args.variants.split(',')]
    report = dict(tol=args.tol, lr=args.lr, nets={})
    for spec in args.net:
        name, net = spec.split('=', 1)
        wd = os.path.join(args.workdir, name)
        entry = report['nets'][name] = dict(net=os.path.basename(net), variants={})
        try:
            w0 = read_caffemodel(caffe_step(args.caffe, net, wd, 'w0', False, {}, args.lr, args.seed,
                                            iters=0)['model'])
            runs = {}
            for tag, gpu, env in chosen:
                try:
                    runs[tag] = caffe_step(args.caffe, net, wd, tag, gpu, env, args.lr, args.seed)
                except Exception as err:   # report, go on with the other variants
                    entry['variants'][tag] = dict(error=str(err)[:400])
            ref_tag = chosen[0][0]
            ref = read_caffemodel(runs[ref_tag]['model'])
            for tag, _, _ in chosen:
                if tag not in runs:
                    continue
                r = runs[tag]
                out = dict(losses=r['losses'], seconds=r['seconds'], tf32_logged=r['tf32_logged'],
                           cudnn_off_logged=r['cudnn_off_logged'])
                if tag != ref_tag:
                    other = read_caffemodel(r['model'])
                    out['grad'] = compare(w0, ref, other)
                    out['loss_rel'] = {k: abs(v - runs[ref_tag]['losses'][k]) / max(abs(runs[ref_tag]['losses'][k]), 1e-30)
                                       for k, v in r['losses'].items() if k in runs[ref_tag]['losses']}
                    if 'tf32' not in tag:
                        worst = max([out['grad']['overall'] or 0.0] + list(out['loss_rel'].values()))
                        out['fp32_within_tol'] = bool(worst <= args.tol)
                    del other
                entry['variants'][tag] = out
                os.remove(r['model'])
        except Exception as err:
            entry['error'] = str(err)[-1500:]
        for f in os.listdir(wd) if os.path.isdir(wd) else []:
            if f.endswith(('.caffemodel', '.solverstate')):
                os.remove(os.path.join(wd, f))
        if 'error' in entry:
            print('parity %-13s FAILED: %s' % (name, entry['error'][:300]), flush=True)
        for tag, _, _ in chosen:
            v = entry['variants'].get(tag)
            if v is None:
                continue
            if 'error' in v:
                print('parity %-13s %-15s FAILED: %s' % (name, tag, v['error'][:200]), flush=True)
                continue
            g = v.get('grad') or {}
            rl = v.get('loss_rel', {}).get('loss')
            print('parity %-13s %-15s loss %-12g rel %-9s grad rel overall %-9s max %-9s %s' % (
                name, tag, v['losses'].get('loss', float('nan')), '%.2e' % rl if rl is not None else '-',
                '%.2e' % g['overall'] if g.get('overall') is not None else '-',
                '%.2e' % g['max'] if g.get('max') is not None else '-',
                {True: 'FP32 ok', False: 'FP32 OVER TOL'}.get(v.get('fp32_within_tol'), '')), flush=True)
        with open(args.json, 'w') as f:
            json.dump(report, f, indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(main())
PY

cat >"$W/speed.py" <<'PY'
"""Training-step speed at the nets' batch: Caffe (`caffe train -gpu 0`, the time between
consecutive "Iteration N, loss" log lines; no cuDNN / cuDNN FP32 / cuDNN TF32) and the same
net in PyTorch (tools.porting.torch_net's CaffeNet of the deploy net, loss = sum of mean(out^2),
backward, SGD step; FP32 / TF32 / bf16 autocast), alternated: every round times every
variant of every net once. Medians over all timed iterations of all rounds."""
import argparse
import datetime
import importlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.environ.get('HYBRIDNET_ROOT', os.getcwd())
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

CAFFE_VARIANTS = [('caffe_nocudnn', {'CAFFE_CUDNN': '0'}), ('caffe_cudnn_fp32', {}),
                  ('caffe_cudnn_tf32', {'CAFFE_TF32': '1'})]
TORCH_VARIANTS = ['torch_fp32', 'torch_tf32', 'torch_bf16']
STAMP = re.compile(r'^I\d{4,8} (\d\d):(\d\d):(\d\d\.\d+)\s+\d+ [^\]]*\] Iteration (\d+)(?: \([^)]*\))?, loss',
                   re.M)
SOLVER = '''net: "{net}"
base_lr: 1e-12
lr_policy: "fixed"
momentum: 0.9
weight_decay: 0.005
max_iter: {iters}
display: 1
snapshot_after_train: false
snapshot_prefix: "{prefix}"
random_seed: 1
solver_mode: GPU
'''


def find_attr(attr, candidates):
    """`attr` from the first module that has it: the listed names, then any module under
    tools/ or bench/ whose source defines it (the packages are being re-housed)."""
    names = list(candidates)
    for top in ('tools', 'bench'):
        for dirpath, _, files in os.walk(os.path.join(ROOT, top)):
            for f in files:
                if f.endswith('.py'):
                    path = os.path.join(dirpath, f)
                    if re.search(r'^(def|class) %s\b' % attr, open(path, errors='replace').read(), re.M):
                        names.append(os.path.relpath(path, ROOT)[:-3].replace(os.sep, '.'))
    errors = []
    for name in names:
        try:
            module = importlib.import_module(name)
        except Exception as err:
            errors.append('%s: %s' % (name, err))
            continue
        if hasattr(module, attr):
            return getattr(module, attr)
    raise ImportError('no module with %s (%s)' % (attr, '; '.join(errors) or 'none found'))


def caffe_times(caffe, net, iters, env, timeout=300):
    with tempfile.TemporaryDirectory() as tmp:
        solver = os.path.join(tmp, 'solver.prototxt')
        with open(solver, 'w') as f:
            f.write(SOLVER.format(net=os.path.abspath(net), iters=iters + 1, prefix=os.path.join(tmp, 's')))
        e = dict(os.environ, GLOG_logtostderr='1', GLOG_minloglevel='0')
        for k in ('CAFFE_TF32', 'CAFFE_CUDNN'):
            e.pop(k, None)
        e.update(env)
        p = subprocess.run([caffe, 'train', '-solver', solver, '-gpu', '0'], capture_output=True, text=True,
                           env=e, timeout=timeout)
    log = p.stdout + p.stderr
    if p.returncode != 0:
        lines = [l for l in log.splitlines() if l.strip()]
        why = [l for l in lines if l.startswith('F') or 'Check failed' in l] or lines[-1:] or ['no output']
        raise RuntimeError('caffe exited %d: %s' % (p.returncode, why[-1].split('] ', 1)[-1][:300]))
    stamps = {}
    for h, m, s, it in STAMP.findall(log):
        if int(it) <= iters:
            stamps[int(it)] = int(h) * 3600 + int(m) * 60 + float(s)
    its = sorted(stamps)
    if len(its) < 2:
        raise RuntimeError('no iteration timestamps in the log: %s' % log[-1500:])
    return [((stamps[b] - stamps[a]) % 86400) * 1000.0 for a, b in zip(its, its[1:])]


class TorchNet:
    """One converted net on the GPU, timed in every precision from the same weights."""

    def __init__(self, train, deploy, seed=0, device='cuda'):
        import torch
        CaffeNet = find_attr('CaffeNet', ['tools.porting.torch_net'])
        read_prototxt = find_attr('read_net', ['tools.core.protos'])
        module_key = find_attr('module_key', ['tools.porting.torch_net'])
        torch.manual_seed(seed)
        torch.backends.cudnn.benchmark = True
        self.torch = torch
        self.net = CaffeNet(read_prototxt(deploy))
        tnet = read_prototxt(train)
        frozen = {module_key(l.name) for l in tnet.layer
                  if len(l.param) and all(p.lr_mult == 0 for p in l.param)}
        with torch.no_grad():
            for name, p in self.net.named_parameters():
                p.normal_(0.0, 0.01)
                p.requires_grad_(name.split('.')[0] not in frozen)
        self.net.train()
        self.net.to(device)
        self.device = device
        self.inputs = [torch.randn(self.net.input_shapes[n], device=device) * 50 for n in self.net.input_names]
        self.opt = torch.optim.SGD([p for p in self.net.parameters() if p.requires_grad], lr=1e-12,
                                   momentum=0.9, weight_decay=0.005)

    def times(self, variant, iters, warmup=3):
        torch = self.torch
        tf32 = variant == 'torch_tf32'
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32

        sync = torch.cuda.synchronize if self.device == 'cuda' else (lambda: None)

        def step():
            self.opt.zero_grad(set_to_none=True)
            with torch.autocast(self.device, dtype=torch.bfloat16, enabled=variant == 'torch_bf16'):
                outs = self.net(*self.inputs)
                loss = sum((o.float() ** 2).mean() for o in outs.values())
            loss.backward()
            self.opt.step()

        out = []
        for i in range(warmup + iters):
            sync()
            t0 = time.perf_counter()
            step()
            sync()
            if i >= warmup:
                out.append((time.perf_counter() - t0) * 1000.0)
        return out


def write(args, batch, times, notes):
    """speed.json and the markdown table from what was timed so far."""
    rows = []
    for name in args.nets:
        ref = times.get((name, 'torch_fp32'))
        for tag in [t for t, _ in CAFFE_VARIANTS] + TORCH_VARIANTS:
            t = times.get((name, tag))
            if not t:
                continue
            med = statistics.median(t)
            rows.append(dict(net=name, variant=tag, batch=batch, median_ms=round(med, 2), n=len(t),
                             img_s=round(batch * 1000.0 / med, 1),
                             vs_torch_fp32=round(med / statistics.median(ref), 3) if ref else None))
    targets = {}

    def med(name, tag):
        t = times.get((name, tag))
        return statistics.median(t) if t else None
    if med('deeplab_aspp', 'caffe_cudnn_fp32') and med('deeplab_aspp', 'torch_fp32'):
        r = med('deeplab_aspp', 'caffe_cudnn_fp32') / med('deeplab_aspp', 'torch_fp32')
        targets['aspp_caffe_cudnn_fp32_vs_torch_fp32 <= 1.05'] = [round(r, 3), r <= 1.05]
    if med('deeplab_aspp', 'caffe_cudnn_tf32'):
        ips = batch * 1000.0 / med('deeplab_aspp', 'caffe_cudnn_tf32')
        targets['aspp_caffe_tf32_img_s >= 250'] = [round(ips, 1), ips >= 250]
    if med('a2', 'caffe_cudnn_tf32'):
        ips = batch * 1000.0 / med('a2', 'caffe_cudnn_tf32')
        targets['a2_caffe_tf32_img_s >= 97'] = [round(ips, 1), ips >= 97]
    with open(args.json, 'w') as f:
        json.dump(dict(rows=rows, notes=notes, targets=targets, iters=args.iters, rounds=args.rounds,
                       per_iter_ms={'%s/%s' % k: v for k, v in times.items()}), f, indent=1)
    lines = ['### %s, GPU: device check (bench/device_check.sh, speed step)' % datetime.date.today().isoformat(),
             '', '| net | variant | batch | median ms | img/s | x PyTorch FP32 |', '| --- | --- | ---: | ---: | ---: | ---: |']
    for r in rows:
        lines.append('| %s | %s | %d | %.1f | %.1f | %s |' % (r['net'], r['variant'], r['batch'], r['median_ms'],
                                                          r['img_s'], r['vs_torch_fp32'] or '-'))
    lines += [''] + ['- target %s: %s (%s)' % (k, v[0], 'met' if v[1] else 'NOT met') for k, v in targets.items()]
    lines += ['- %s' % n for n in notes]
    with open(args.md, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return lines


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument('--caffe', required=True)
    p.add_argument('--nets-dir', required=True)
    p.add_argument('--nets', nargs='+', default=['deeplab_aspp', 'a2'])
    p.add_argument('--iters', type=int, default=10)
    p.add_argument('--rounds', type=int, default=2)
    p.add_argument('--no-torch', action='store_true')
    p.add_argument('--json', required=True)
    p.add_argument('--md', required=True)
    args = p.parse_args(argv)
    manifest = json.load(open(os.path.join(args.nets_dir, 'manifest.json')))
    batch = manifest['batch']
    times, notes = {}, []
    torch_nets = {}
    for rnd in range(args.rounds):
        for name in args.nets:
            entry = manifest['nets'][name]
            train = os.path.join(args.nets_dir, entry['train'])
            deploy = os.path.join(args.nets_dir, entry['deploy'])
            for tag, env in CAFFE_VARIANTS:
                try:
                    t = caffe_times(args.caffe, train, args.iters, env)
                    times.setdefault((name, tag), []).extend(t)
                    print('round %d %-13s %-17s median %.1f ms' % (rnd, name, tag, statistics.median(t)), flush=True)
                except Exception as err:
                    notes.append('%s %s round %d: %s' % (name, tag, rnd, str(err).splitlines()[0][:300]))
                write(args, batch, times, notes)
            if args.no_torch:
                continue
            try:
                if name not in torch_nets:
                    torch_nets[name] = TorchNet(train, deploy)
                for tag in TORCH_VARIANTS:
                    t = torch_nets[name].times(tag, args.iters)
                    times.setdefault((name, tag), []).extend(t)
                    print('round %d %-13s %-17s median %.1f ms' % (rnd, name, tag, statistics.median(t)), flush=True)
            except Exception as err:
                notes.append('%s PyTorch round %d: %s: %s' % (name, rnd, type(err).__name__, str(err)[:300]))
            write(args, batch, times, notes)
    print('\n'.join(write(args, batch, times, notes)))
    return 0


if __name__ == '__main__':
    sys.exit(main())
PY

cat >"$W/learn.py" <<'PY'
"""Does a GPU run learn? `caffe train -gpu 0` of a training net (A2 reading the bundle's
learning set through HDF5Data, MSRA fillers, the fixed_* weights from -weights) for ITERS
iterations with `make demo`'s recipe (Adam, lr 1e-5, beta1 0.9, weight decay 0.005): from
scratch the paper's SGD at 2.5e-6 diverges to NaN within a few iterations (docs/GPU.md).
The loss terms at each display; falling = their mean over the last WINDOW displayed
iterations below the mean over the first WINDOW (whole passes over the learning set: with
display 1 and 4 batches, 20 = 5 passes, so each mean weighs every batch alike)."""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

SOLVER = '''net: "{net}"
type: "{solver_type}"
base_lr: {lr}
lr_policy: "fixed"
momentum: 0.9
weight_decay: 0.005
max_iter: {iters}
display: {display}
average_loss: 1
snapshot_after_train: false
snapshot_prefix: "{prefix}"
random_seed: 1
solver_mode: {mode}
'''
STAMP = re.compile(r'^I\d{4,8} (\d\d):(\d\d):(\d\d\.\d+)\s+\d+ [^\]]*\] Iteration (\d+)(?: \([^)]*\))?, loss = (\S+)',
                   re.M)
OUTPUT = re.compile(r'Train net output #\d+: (\S+) = (\S+)')


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument('--caffe', required=True)
    p.add_argument('--net', required=True)
    p.add_argument('--weights')
    p.add_argument('--iters', type=int, default=300)
    p.add_argument('--display', type=int, default=1)
    p.add_argument('--window', type=int, default=20,
                   help='displays averaged at each end, a multiple of the set\'s batches (default: %(default)s)')
    p.add_argument('--lr', type=float, default=1e-5)
    p.add_argument('--solver-type', default='Adam', help="Caffe's solver type (default: %(default)s)")
    p.add_argument('--cpu', action='store_true', help='CPU mode (tests)')
    p.add_argument('--timeout', type=float, default=None,
                   help='stop caffe after this many seconds and report what it logged')
    p.add_argument('--json', required=True)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        solver = os.path.join(tmp, 'solver.prototxt')
        with open(solver, 'w') as f:
            f.write(SOLVER.format(net=os.path.abspath(args.net), solver_type=args.solver_type, lr=args.lr,
                                  iters=args.iters,
                                  display=args.display, prefix=os.path.join(tmp, 's'),
                                  mode='CPU' if args.cpu else 'GPU'))
        cmd = [args.caffe, 'train', '-solver', solver] + ([] if args.cpu else ['-gpu', '0'])
        if args.weights:
            cmd += ['-weights', args.weights]
        env = dict(os.environ, GLOG_logtostderr='1', GLOG_minloglevel='0')
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout)
            rc, log = p.returncode, p.stdout + p.stderr
        except subprocess.TimeoutExpired as e:   # what it did so far
            text = lambda b: b.decode(errors='replace') if isinstance(b, bytes) else (b or '')
            rc, log = 'timeout after %g s' % args.timeout, text(e.stdout) + text(e.stderr)
    with open(os.path.splitext(args.json)[0] + '.caffe.log', 'w') as f:
        f.write(log)
    displays = []
    matches = list(STAMP.finditer(log))
    for k, m in enumerate(matches):
        it = int(m.group(4))
        if it >= args.iters:
            continue   # Solve()'s extra forward after the last update
        end = matches[k + 1].start() if k + 1 < len(matches) else len(log)
        terms = {name: float(v) for name, v in OUTPUT.findall(log[m.end():end])}
        t = int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
        displays.append(dict(iter=it, loss=float(m.group(5)), terms=terms, t=t))
    result = dict(rc=rc, iters=args.iters, lr=args.lr, solver_type=args.solver_type, displays=displays)
    if len(displays) >= 2:
        n = max(1, min(args.window, len(displays) // 2))
        first, last = displays[:n], displays[-n:]
        result['window'] = n
        keys = ['loss'] + sorted(displays[0]['terms'])
        mean = lambda ds, k: sum(d['loss'] if k == 'loss' else d['terms'].get(k, float('nan')) for d in ds) / len(ds)
        result['first_last'] = {k: [mean(first, k), mean(last, k)] for k in keys}
        result['falls'] = {k: v[1] < v[0] for k, v in result['first_last'].items()}
        span = displays[-1]['t'] - displays[0]['t']
        its = displays[-1]['iter'] - displays[0]['iter']
        if span > 0 and its > 0:
            result['ms_per_iter'] = round(1000.0 * span / its, 1)
    with open(args.json, 'w') as f:
        json.dump(result, f, indent=1)
    for d in displays:
        print('iter %4d loss %-12g %s' % (d['iter'], d['loss'], ' '.join('%s=%g' % kv for kv in sorted(d['terms'].items()))))
    for k, (a, b) in result.get('first_last', {}).items():
        print('learn %-14s first %-12g last %-12g %s' % (k, a, b, 'falls' if b < a else 'DOES NOT FALL'))
    if 'ms_per_iter' in result:
        print('learn: %.1f ms per iteration' % result['ms_per_iter'])
    if rc != 0:
        why = [l.split('] ', 1)[-1] for l in log.splitlines() if l.startswith('F') or 'Check failed' in l]
        print('learn: caffe %s%s' % (rc if isinstance(rc, str) else 'exited %d' % rc,
                                     ': ' + why[-1][:300] if why else ''))
    return 0 if rc == 0 else 1


if __name__ == '__main__':
    sys.exit(main())
PY

# --- the run -------------------------------------------------------------------------------
step gpu 60 bash -c "nvidia-smi; $PY -c 'import torch; print(\"torch\", torch.__version__, torch.version.cuda, \"cudnn\", torch.backends.cudnn.version(), torch.cuda.get_device_name(0))'"
step ldd 30 "$CAFFE" --ldd
step device_query 60 "$CAFFE" device_query -gpu 0
step parity 150 "$PY" "$W/parity.py" --caffe "$CAFFE" --workdir "$W/parity" --json "$RES/parity.json" \
  --net "deeplab_aspp=$B/nets/deeplab_aspp.gradparity.prototxt" --net "a2=$B/nets/a2.gradparity.prototxt"
mkdir -p "$RES/parity_runs" && cp "$W"/parity/*/*.log "$RES/parity_runs/" 2>/dev/null
step learn 90 "$PY" "$W/learn.py" --caffe "$CAFFE" --net "$W/a2.learn.prototxt" \
  --weights "$B/learn/a2_fixed.caffemodel" --iters "$LEARN_ITERS" --timeout 80 --json "$RES/learn.json"
step speed 170 env HYBRIDNET_ROOT="$ROOT" "$PY" "$W/speed.py" --caffe "$CAFFE" --nets-dir "$B/nets" \
  --nets deeplab_aspp a2 --iters "$ITERS" --rounds "$ROUNDS" --json "$RES/speed.json" --md "$RES/PERFORMANCE-gpu.md"
step layers_aspp 40 "$CAFFE" time -gpu 0 -iterations "$ITERS" -model "$B/nets/deeplab_aspp.train.prototxt"
step tf32_parity_aspp 45 "$PY" -m bench.tf32_parity --caffe "$CAFFE" --base-lr 1e-3 \
  --net "$B/nets/deeplab_aspp.parity.prototxt" --json "$RES/tf32_parity_aspp.json"
step tf32_parity_a2 45 "$PY" -m bench.tf32_parity --caffe "$CAFFE" --base-lr 0 \
  --net "$B/nets/a2.parity.prototxt" --json "$RES/tf32_parity_a2.json"

echo
publish
summary
rm -rf "$W"
