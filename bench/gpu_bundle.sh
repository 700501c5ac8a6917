#!/usr/bin/env bash
# make gpu-bundle: one archive with the CUDA build of Caffe for a GPU machine that has
# an NVIDIA driver, CUDA 13 and PyTorch but no Caffe and no network (the device machine
# of bench/device_check.sh):
#   bin/caffe.bin + bin/caffe    the tool, and a wrapper that finds the libraries
#   lib/                         libcaffe.so and every Debian/pyenv shared library it and
#                                the tool link (from ldd), except glibc, libstdc++/libgcc
#                                and the CUDA libraries (cudart, cuBLAS, cuRAND: the GPU
#                                machine has them, with PyTorch's nvidia-* wheels or the
#                                toolkit; together they are ~700 MB)
#   python/caffe                 pycaffe (Python 3.11, the .venv's: not importable by
#                                another Python)
#   pyshim/caffe/proto           caffe_pb2.py alone, for tools.caffe_to_torch on any Python
#   nets/                        bench/train.py --prepare: the training nets with Input
#                                blobs, their deploy nets and DummyData parity nets, batch 7
#   MANIFEST.txt                 what is inside, the build's cache key, ldd output
# Needs `make setup` (CPU pycaffe, to write the nets) and `make setup CAFFE_GPU=1`.
#   bash bench/gpu_bundle.sh [OUTPUT.tar.xz]   (default runs/gpu-bundle/hybridnet-caffe-cuda.tar.xz)
# Environment: BATCH (7), NETS ("a1 a2 deeplab_aspp depthnet"), HYBRIDNET_CACHE.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${HYBRIDNET_CACHE:-$HOME/.cache/hybridnet-caffe}
OUTPUT=${1:-$ROOT/runs/gpu-bundle/hybridnet-caffe-cuda.tar.xz}
BATCH=${BATCH:-7}
NETS=${NETS:-a1 a2 deeplab_aspp depthnet}
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
skip='^(linux-vdso|ld-linux|libc\.so|libm\.so|libmvec\.so|libdl\.so|libpthread\.so|librt\.so|libresolv\.so|libutil\.so|libanl\.so|libnsl\.so|libcrypt\.so|libstdc\+\+\.so|libgcc_s\.so|libcudart|libcublas|libcublasLt|libcurand|libnccl|libcuda\.so)'
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
# (python3 -c 'import nvidia'), else /usr/local/cuda/lib64.
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ -z "${CUDA_LIBS:-}" ]; then
  NV=$(python3 -c 'import nvidia, os; print(list(nvidia.__path__)[0])' 2>/dev/null || true)
  for d in "$NV/cu13/lib" "$NV/cublas/lib" "$NV/curand/lib" "$NV/cuda_runtime/lib" /usr/local/cuda/lib64; do
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
"$ROOT/.venv/bin/python" "$ROOT/bench/train.py" --prepare "$B/nets" --batch "$BATCH" --nets $NETS

{
  echo "HybridNet-Caffe gpu-bundle, $(date -u +%FT%TZ)"
  echo "CUDA build: $PREFIX ($(cat "$PREFIX/.complete"))"
  grep -E '^(CUDA_ARCH|CUDA_DIR) ' "$PREFIX/Makefile.config" || true
  echo "nets: $NETS, batch $BATCH"
  echo; echo "== files"; (cd "$STAGE" && find hybridnet-caffe-cuda -type f -printf '%s\t%p\n' | sort -k2)
  echo; echo "== ldd bin/caffe.bin here (CUDA libraries from this machine's build)"
  LD_LIBRARY_PATH="$B/lib" ldd "$B/bin/caffe.bin"
} >"$B/MANIFEST.txt"

mkdir -p "$(dirname "$OUTPUT")"
tar -C "$STAGE" -cJf "$OUTPUT.tmp" hybridnet-caffe-cuda
mv "$OUTPUT.tmp" "$OUTPUT"
echo "gpu-bundle: $OUTPUT ($(du -h "$OUTPUT" | cut -f1)); run it there with: bash bench/device_check.sh $OUTPUT"
