#!/usr/bin/env bash
# make gpu-bundle: one archive with the CUDA build of Caffe for a GPU machine that has
# an NVIDIA driver, CUDA 13 and PyTorch but no Caffe and no network (the device machine
# of bench/device_check.sh):
#   bin/caffe.bin + bin/caffe    the tool, and a wrapper that finds the libraries
#   lib/                         libcaffe.so and every Debian/pyenv shared library it and
#                                the tool link (from ldd), except glibc, libstdc++/libgcc
#                                and the CUDA libraries (cudart, cuBLAS, cuRAND, cuDNN: the
#                                GPU machine has them, with PyTorch's nvidia-* wheels or the
#                                toolkit; together they are ~1.2 GB)
#   python/caffe                 pycaffe (Python 3.11, the .venv's: not importable by
#                                another Python)
#   pyshim/caffe/proto           caffe_pb2.py alone, for tools.porting.torch_net on any Python
#   nets/                        python -m bench.train --prepare: the training nets with Input
#                                blobs, their deploy nets and DummyData parity nets, batch 7
#   nets/*.gradparity.prototxt,  the device check's own material (issue 16), written by
#   nets/a2.learn.prototxt,      --material below: DummyData nets without Dropout (the GPU
#   learn/                       draws other masks than the CPU) at batch PARITY_BATCH, for
#                                the CPU-vs-GPU gradient parity; A2's training net reading
#                                learn/a2_sample.h5 (LEARN_BATCHES batches of 7 crops that
#                                data_prep's HybridData pipeline cut from its rendered
#                                Cityscapes sample) through Caffe's HDF5Data layer, and
#                                learn/a2_fixed.caffemodel (the fixed_* layers' weights),
#                                for the learning run (MSRA fillers, as `make demo`'s)
#   MANIFEST.txt                 what is inside, the build's cache key, ldd output
# Needs `make setup` (CPU pycaffe, to write the nets) and `make setup CAFFE_GPU=1`.
#   bash bench/gpu_bundle.sh [OUTPUT.tar.xz]   (default runs/gpu-bundle/hybridnet-caffe-cuda.tar.xz)
#   bash bench/gpu_bundle.sh --material DIR    only the device check's material (no CUDA
#                                              build needed; tests/test_gpu_cudnn.py)
# Environment: BATCH (7), NETS ("a1 a2 deeplab_aspp depthnet"), PARITY_BATCH (2),
# LEARN_BATCHES (4), HYBRIDNET_CACHE.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${HYBRIDNET_CACHE:-$HOME/.cache/hybridnet-caffe}
BATCH=${BATCH:-7}
NETS=${NETS:-a1 a2 deeplab_aspp depthnet}
PARITY_BATCH=${PARITY_BATCH:-2}
LEARN_BATCHES=${LEARN_BATCHES:-4}

# material DIR: the device check's parity nets and learning set into DIR/nets, DIR/learn
# (CPU pycaffe, netgen and data_prep of .venv; DIR/nets must hold bench/train.py --prepare's
# <net>.parity.prototxt for a2 and deeplab_aspp, which it writes if missing).
material() {
  local dir=$1
  mkdir -p "$dir/nets" "$dir/learn"
  [ -f "$dir/nets/a2.parity.prototxt" ] && [ -f "$dir/nets/deeplab_aspp.parity.prototxt" ] ||
    (cd "$ROOT" && .venv/bin/python -m bench.train --prepare "$dir/nets" --batch "$BATCH" --nets a2 deeplab_aspp)
  "$ROOT/.venv/bin/python" - "$dir" "$PARITY_BATCH" "$LEARN_BATCHES" "$BATCH" "$ROOT" <<'PY'
"""Device-check material (bench/gpu_bundle.sh): gradient-parity nets, the learning set."""
import os
import subprocess
import sys
import tempfile

out, parity_batch, learn_batches, batch, root = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), \
    int(sys.argv[4]), sys.argv[5]
sys.path.insert(0, root)
import h5py  # noqa: E402
import numpy as np  # noqa: E402
from google.protobuf import text_format  # noqa: E402

import caffe  # noqa: E402
import netgen  # noqa: E402
from caffe.proto import caffe_pb2  # noqa: E402
from data_prep.batches import CropSampler, parse_param_str  # noqa: E402
from data_prep.database import open_database  # noqa: E402
from netgen.fixed_weights import check_fixed_weights  # noqa: E402

# 1. <net>.gradparity.prototxt: the DummyData parity net at parity_batch, without its
#    Dropout layers (all in place): the GPU draws its masks with cuRAND, the CPU with
#    boost, so with Dropout no CPU-vs-GPU comparison could agree.
for name in ('a2', 'deeplab_aspp'):
    net = caffe_pb2.NetParameter()
    text_format.Merge(open(os.path.join(out, 'nets', name + '.parity.prototxt')).read(), net)
    keep = []
    for layer in net.layer:
        if layer.type == 'Dropout':
            assert list(layer.top) == list(layer.bottom), layer.name   # in place: no rewiring
            continue
        if layer.type == 'DummyData':
            for shape in layer.dummy_data_param.shape:
                shape.dim[0] = parity_batch
        keep.append(layer)
    del net.layer[:]
    net.layer.extend(keep)
    with open(os.path.join(out, 'nets', name + '.gradparity.prototxt'), 'w') as f:
        f.write(text_format.MessageToString(net))

# 2. The learning set: data_prep's rendered Cityscapes sample, converted, cut into batches by
#    the HybridData pipeline (CropSampler: crops, flips, mean) and stored for HDF5Data.
work = tempfile.mkdtemp(prefix='gpu-bundle-learn-')
for command in (['sample', '--dataset', 'cityscapes', '--out', work + '/raw', '--count', '2'],
                ['cityscapes', '--root', work + '/raw', '--out', work + '/db', '--workers', '2']):
    subprocess.run([sys.executable, '-m', 'data_prep'] + command, check=True, capture_output=True, cwd=root)
train = netgen.build('a2', 'cityscapes', 'train', batch_size=batch)
data = [layer for layer in train.layer if layer.type == 'Python']
assert len(data) == 1, [layer.type for layer in train.layer[:3]]
data = data[0]
params = parse_param_str(data.python_param.param_str)
params.update(source=os.path.join(work, 'db', 'train'), workers=0)
sampler = CropSampler(open_database(params['source'], 'cityscapes'), params)
batches = [sampler.batch(b) for b in range(learn_batches)]
with h5py.File(os.path.join(out, 'learn', 'a2_sample.h5'), 'w') as f:
    for i, top in enumerate(data.top):
        a = np.concatenate([b[i] for b in batches])
        f.create_dataset(top, data=a, compression='gzip', compression_opts=9, shuffle=True,
                         chunks=(1,) + a.shape[1:])
# The training net with HDF5Data in the HybridData layer's place (same tops, in order);
# bench/device_check.sh writes the list file @LEARN_LIST@ (absolute path of the .h5).
hdf5 = caffe_pb2.LayerParameter(name=data.name, type='HDF5Data', top=list(data.top))
hdf5.include.extend(data.include)
hdf5.hdf5_data_param.source = '@LEARN_LIST@'
hdf5.hdf5_data_param.batch_size = batch
data.CopyFrom(hdf5)
# From scratch the paper's fillers and SGD diverge (NaN within a few iterations: measured on
# the CPU, and why `make demo` trains with MSRA fillers and Adam); the learning run uses the
# demo's recipe: tools.train --filler msra, rewritten here by the same function.
from tools.training.solver_config import replace_fillers
replace_fillers(train, 'msra')
with open(os.path.join(out, 'nets', 'a2.learn.prototxt'), 'w') as f:
    f.write(text_format.MessageToString(train))
# The fixed_* layers' weights (tools.train writes them into every net it makes; `caffe
# train -weights` copies these layers only, the others keep their fillers).
deploy = netgen.build('a2', 'cityscapes', 'train', data_layer='input', batch_size=1)
with tempfile.NamedTemporaryFile('w', suffix='.prototxt', delete=False) as f:
    f.write(text_format.MessageToString(deploy))
caffe.set_mode_cpu()
live = caffe.Net(f.name, caffe.TRAIN)
os.unlink(f.name)
filled = check_fixed_weights(live)  # the generated nets hold them (issue 13)
fixed = caffe_pb2.NetParameter(name='a2_fixed_weights')
for name in filled:
    layer = fixed.layer.add(name=name)
    for blob in live.params[name]:
        b = layer.blobs.add()
        b.shape.dim.extend(blob.data.shape)
        b.data.extend(blob.data.ravel().tolist())
with open(os.path.join(out, 'learn', 'a2_fixed.caffemodel'), 'wb') as f:
    f.write(fixed.SerializeToString())
print('material: %s (gradparity batch %d; learning set %d x %d crops; fixed layers %s)' % (
    out, parity_batch, learn_batches, batch, ', '.join(filled) or 'none'))
PY
}
if [ "${1:-}" = --material ]; then
  [ -n "${2:-}" ] || { echo "usage: bash bench/gpu_bundle.sh --material DIR" >&2; exit 2; }
  material "$2"
  exit 0
fi

OUTPUT=${1:-$ROOT/runs/gpu-bundle/hybridnet-caffe-cuda.tar.xz}
PREFIX=$(readlink -f "$CACHE/current-cuda" 2>/dev/null || true)
[ -n "$PREFIX" ] && [ -f "$PREFIX/.complete" ] || {
  echo "gpu-bundle: no CUDA build at $CACHE/current-cuda: run 'make setup CAFFE_GPU=1' first" >&2; exit 1; }
[ -x "$ROOT/.venv/bin/python" ] || { echo "gpu-bundle: no .venv: run 'make setup' first" >&2; exit 1; }

STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
B=$STAGE/hybridnet-caffe-cuda
mkdir -p "$B/bin" "$B/lib" "$B/python" "$B/pyshim/caffe/proto" "$B/nets"

# The tool and the library (real files, not the build tree's symlinks).
cp -L "$PREFIX/build/tools/caffe.bin" "$B/bin/caffe.bin"
real=$(readlink -f "$PREFIX/build/lib/libcaffe.so")
cp "$real" "$B/lib/"
ln -s "$(basename "$real")" "$B/lib/libcaffe.so"
cp -rL "$PREFIX/python/caffe" "$B/python/caffe"
find "$B/python" -name '__pycache__' -prune -exec rm -rf {} +
cp "$PREFIX/python/caffe/proto/caffe_pb2.py" "$B/pyshim/caffe/proto/"
: >"$B/pyshim/caffe/proto/__init__.py"
cat >"$B/pyshim/caffe/__init__.py" <<'EOF'
"""caffe_pb2 only (no pycaffe): enough for tools.caffe_to_torch and bench/ on any Python."""
EOF

# Shared libraries: everything ldd resolves outside glibc/libstdc++ and CUDA.
# glibc's own libraries (libresolv, libutil, ... use its private symbols: the host's must be
# used), the C++ runtime (the host's is newer) and CUDA's.
skip='^(linux-vdso|ld-linux|libc\.so|libm\.so|libmvec\.so|libdl\.so|libpthread\.so|librt\.so|libresolv\.so|libutil\.so|libanl\.so|libnsl\.so|libcrypt\.so|libstdc\+\+\.so|libgcc_s\.so|libcudart|libcublas|libcublasLt|libcurand|libcudnn|libnccl|libcuda\.so)'
for f in "$B/bin/caffe.bin" "$B/lib/$(basename "$real")" "$B/python/caffe/_caffe.so"; do
  LD_LIBRARY_PATH="$PREFIX/build/lib" ldd "$f"
done | awk '/=> \// {print $1, $3}' | sort -u | while read -r name path; do
  [[ $name =~ $skip ]] && continue
  [ "$name" = "$(basename "$real")" ] || [ "$name" = libcaffe.so ] && continue
  [ -e "$B/lib/$name" ] || cp -L "$path" "$B/lib/$name"
done

cat >"$B/bin/caffe" <<'EOF'
#!/usr/bin/env bash
# caffe (CUDA build) from the gpu-bundle: lib/ for Caffe's own dependencies, then the
# CUDA libraries of this machine: CUDA_LIBS if set, else PyTorch's nvidia-* wheels
# (python3 -c 'import nvidia': cuBLAS, cuRAND, cudart and cuDNN 9), else
# /usr/local/cuda/lib64.
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ -z "${CUDA_LIBS:-}" ]; then
  NV=$(python3 -c 'import nvidia, os; print(list(nvidia.__path__)[0])' 2>/dev/null || true)
  for d in "$NV/cu13/lib" "$NV/cublas/lib" "$NV/curand/lib" "$NV/cuda_runtime/lib" "$NV/cudnn/lib" /usr/local/cuda/lib64; do
    [ -d "$d" ] && CUDA_LIBS="${CUDA_LIBS:+$CUDA_LIBS:}$d"
  done
fi
export LD_LIBRARY_PATH="$HERE/lib:${CUDA_LIBS:-}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
if [ "${1:-}" = --ldd ]; then  # where each library comes from; fails if one is missing
  ldd "$HERE/bin/caffe.bin"; ! ldd "$HERE/bin/caffe.bin" | grep -q 'not found'; exit
fi
exec "$HERE/bin/caffe.bin" "$@"
EOF
chmod +x "$B/bin/caffe"

# The nets (CPU pycaffe writes them: netgen builds NetParameters with caffe.net_spec).
# shellcheck disable=SC2086
(cd "$ROOT" && .venv/bin/python -m bench.train --prepare "$B/nets" --batch "$BATCH" --nets $NETS)
material "$B"

{
  echo "HybridNet-Caffe gpu-bundle, $(date -u +%FT%TZ)"
  echo "CUDA build: $PREFIX ($(cat "$PREFIX/.complete"))"
  grep -E '^(CUDA_ARCH|CUDA_DIR) ' "$PREFIX/Makefile.config" || true
  echo "nets: $NETS, batch $BATCH; gradient parity batch $PARITY_BATCH; learning set $LEARN_BATCHES x $BATCH crops"
  grep -E '^USE_CUDNN ' "$PREFIX/Makefile.config" || true
  echo; echo "== files"; (cd "$STAGE" && find hybridnet-caffe-cuda -type f -printf '%s\t%p\n' | sort -k2)
  echo; echo "== ldd bin/caffe.bin here (CUDA libraries from this machine's build)"
  LD_LIBRARY_PATH="$B/lib" ldd "$B/bin/caffe.bin"
} >"$B/MANIFEST.txt"

mkdir -p "$(dirname "$OUTPUT")"
tar -C "$STAGE" -cJf "$OUTPUT.tmp" hybridnet-caffe-cuda
mv "$OUTPUT.tmp" "$OUTPUT"
echo "gpu-bundle: $OUTPUT ($(du -h "$OUTPUT" | cut -f1)); run it there with: bash bench/device_check.sh $OUTPUT"
