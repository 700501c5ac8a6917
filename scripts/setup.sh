#!/usr/bin/env bash
# Set up HybridNet-Caffe on a fresh Debian 12 machine:
#   1. Debian packages Caffe builds against   (third_party/caffe/apt-packages.txt)
#   2. .venv/ with the pinned Python packages  (requirements.txt)
#   3. Caffe built from PyPI's brocolli-caffe sdist, patched, into a cache keyed by
#      (sdist hash, patches, build flags, Python, numpy)   (~/.cache/hybridnet-caffe)
#   4. pycaffe importable from .venv, and .venv/bin/caffe: the CLI with the venv and
#      the project on PYTHONPATH, so nets with Python layers run through it.
# Idempotent: with everything in place a rerun takes seconds. A build runs in a temp
# dir renamed at the end, so an interrupted build never looks complete.
#
# Environment: CAFFE_GPU=1 builds the CUDA variant (CUDA_ARCH="90" by default, a
# list like "80 86 90" works; nvcc from CUDA_HOME, else the nvcc on PATH, else
# /usr/local/cuda; cuBLAS/cuRAND from the nvidia-* PyPI wheels of
# third_party/caffe/requirements-cuda.txt, installed into the cache entry; the
# patches of third_party/caffe/patches/cuda/ on top of the common ones). The CUDA
# variant lives beside the CPU one and does not rewire .venv: it adds
# .venv/bin/caffe-gpu and .venv/bin/python-gpu (docs/GPU.md); CAFFE_GPU_DEFAULT=1
# also makes it the .venv's default caffe (machines with a GPU only: a CUDA pycaffe
# cannot run without an NVIDIA driver). The CUDA variant uses cuDNN 9 (the
# nvidia-cudnn-cu13 wheel of requirements-cuda.txt, USE_CUDNN := 1, patch
# cuda/15-cudnn9); CAFFE_CUDNN=0 builds it without cuDNN instead, in its own cache
# entry (caffe-cuda-nocudnn-<key>, .venv/bin/caffe-gpu-nocudnn, python-gpu-nocudnn).
# HYBRIDNET_CACHE overrides the cache dir; PYTHON the interpreter for .venv.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
THIRD=$ROOT/third_party/caffe
VENV=$ROOT/.venv
CACHE=${HYBRIDNET_CACHE:-$HOME/.cache/hybridnet-caffe}
PYTHON=${PYTHON:-python3}
CAFFE_GPU=${CAFFE_GPU:-0}
CUDA_ARCH=${CUDA_ARCH:-90}
CAFFE_GPU_DEFAULT=${CAFFE_GPU_DEFAULT:-0}
CAFFE_CUDNN=${CAFFE_CUDNN:-1}
SDIST=brocolli-caffe-9.0.2.tar.gz
SDIST_SPEC=brocolli-caffe==9.0.2
SDIST_SHA256=c6410cc60bdd6db685d441b66be7df05410f8850ac88d6b75d48ef9b2315c08a
JOBS=${JOBS:-$(nproc)}

STEP="start"
LOG=""
say() { printf '[setup] %s\n' "$*"; }
on_error() {
  printf '[setup] FAILED at step: %s\n' "$STEP" >&2
  [ -n "$LOG" ] && printf '[setup] log: %s (last lines below)\n' "$LOG" >&2 && tail -n 25 "$LOG" >&2 || true
  exit 1
}
trap on_error ERR
mkdir -p "$CACHE/logs" "$CACHE/downloads"

# 1. Debian packages ---------------------------------------------------------------
install_debian_packages() {
  command -v dpkg-query >/dev/null || { say "no dpkg: skipping Debian packages (conda: see environment.yml)"; return; }
  local pkgs missing=() p
  mapfile -t pkgs < <(grep -v '^\s*#' "$THIRD/apt-packages.txt" | grep -v '^\s*$')
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -gt 0 ] || return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "[setup] missing Debian packages; run as root:" >&2
    echo "  apt-get update && apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  LOG=$CACHE/logs/apt.log
  say "installing Debian packages: ${missing[*]}"
  { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"; } >"$LOG" 2>&1
}
STEP="apt packages"
install_debian_packages

# 2. virtual environment ------------------------------------------------------------
STEP="python venv"
LOG=$CACHE/logs/pip.log
[ -x "$VENV/bin/python" ] || { say "creating $VENV"; "$PYTHON" -m venv "$VENV"; }
REQ_SHA=$(sha256sum "$ROOT/requirements.txt" | cut -d' ' -f1)
if [ "$(cat "$VENV/.requirements.sha256" 2>/dev/null)" != "$REQ_SHA" ]; then
  say "installing pinned Python packages (requirements.txt) - log $LOG"
  "$VENV/bin/python" -m pip install -q --upgrade pip >"$LOG" 2>&1
  "$VENV/bin/python" -m pip install -r "$ROOT/requirements.txt" >>"$LOG" 2>&1
  echo "$REQ_SHA" >"$VENV/.requirements.sha256"
fi
PY=$VENV/bin/python
PY_VERSION=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
PY_INCLUDE=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
PY_LIBDIR=$("$PY" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')
NP_INCLUDE=$("$PY" -c 'import numpy; print(numpy.get_include())')
NP_VERSION=$("$PY" -c 'import numpy; print(numpy.__version__)')
SITE=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')

# 3. Caffe --------------------------------------------------------------------------
STEP="cuda toolchain"
CUDA_DIR=/usr/local/cuda; EXTRA_INCLUDE=""; EXTRA_LIBDIR=""; EXTRA_RPATH=""; CPU_ONLY=1
VARIANT=cpu; ARCH_FLAGS=""; NAME=cpu; SUFFIX=""
if [ "$CAFFE_GPU" = "1" ]; then
  VARIANT=cuda; CPU_ONLY=""; NAME=cuda
  case $CAFFE_CUDNN in
    1) ;;
    0) NAME=cuda-nocudnn; SUFFIX=-nocudnn ;;
    *) echo "[setup] CAFFE_CUDNN must be 1 (cuDNN, the default) or 0, not '$CAFFE_CUDNN'" >&2; exit 1;;
  esac
  # CUDA_HOME, else /usr/local/cuda, else the toolkit of the nvcc on PATH (which
  # may be a wrapper script: the toolkit must have include/cuda_runtime.h).
  if [ -n "${CUDA_HOME:-}" ]; then CUDA_DIR=$CUDA_HOME
  elif [ ! -x /usr/local/cuda/bin/nvcc ] && command -v nvcc >/dev/null; then
    CUDA_DIR=$(dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")")
  fi
  [ -x "$CUDA_DIR/bin/nvcc" ] && [ -f "$CUDA_DIR/include/cuda_runtime.h" ] || {
    echo "[setup] CAFFE_GPU=1 needs a CUDA toolkit: no bin/nvcc + include/cuda_runtime.h in $CUDA_DIR (set CUDA_HOME)" >&2; exit 1; }
  CUDA_VERSION=$("$CUDA_DIR/bin/nvcc" --version | sed -n 's/.*release \([0-9.]*\),.*/\1/p')
  case $CUDA_VERSION in 13.*) ;; *)
    echo "[setup] CAFFE_GPU=1: nvcc '$CUDA_VERSION' at $CUDA_DIR; requirements-cuda.txt pins CUDA 13 wheels" >&2; exit 1;; esac
  for a in $CUDA_ARCH; do
    case $a in *[!0-9]*|"") echo "[setup] CUDA_ARCH: '$a' is not a compute capability like 90" >&2; exit 1;; esac
    ARCH_FLAGS+=" -gencode arch=compute_$a,code=sm_$a"
  done
  # The wheels go into the cache entry (nvidia-wheels/), found at run time through
  # an $ORIGIN-relative rpath: libcaffe.so (.build_release/lib), the caffe tool
  # (.build_release/tools) and pycaffe (python/caffe) all sit two levels below.
  # Wheels ship versioned sonames only: nvidia-wheels/link/ has the lib*.so names
  # the linker's -l flags look for. Paths are relative to the build dir.
  EXTRA_INCLUDE="nvidia-wheels/nvidia/cu13/include"
  EXTRA_LIBDIR="nvidia-wheels/link"
  # cuDNN's headers (its wheel: nvidia/cudnn/), and CUDA 13's thrust/cub, which moved
  # to include/cccl (nvcc adds it by itself, g++ does not: cudnn_bn/softmax .cpp).
  [ "$CAFFE_CUDNN" = 0 ] || EXTRA_INCLUDE+=" nvidia-wheels/nvidia/cudnn/include"
  [ ! -d "$CUDA_DIR/include/cccl" ] || EXTRA_INCLUDE+=" $CUDA_DIR/include/cccl"
fi

STEP="cache key"
KEY=$( { echo "$SDIST_SHA256"; cat "$THIRD"/patches/*.patch "$THIRD/Makefile.config.in";
         echo "variant=$VARIANT arch=$CUDA_ARCH py=$PY_VERSION $PY_INCLUDE numpy=$NP_VERSION"
         if [ "$VARIANT" = cuda ]; then   # the CPU key stays what it was
           cat "$THIRD"/patches/cuda/*.patch "$THIRD/requirements-cuda.txt"; echo "nvcc=$CUDA_VERSION $CUDA_DIR"
           echo "cudnn=$CAFFE_CUDNN"
         fi; } | sha256sum | cut -c1-16)
PREFIX=$CACHE/caffe-$NAME-$KEY
if [ -f "$PREFIX/.complete" ]; then
  say "Caffe ($NAME) up to date: $PREFIX"
else
  STEP="download sdist"
  LOG=$CACHE/logs/download.log
  if ! echo "$SDIST_SHA256  $CACHE/downloads/$SDIST" | sha256sum -c --status 2>/dev/null; then
    say "downloading $SDIST_SPEC (source package) from PyPI"
    rm -f "$CACHE/downloads/$SDIST"
    "$PY" -m pip download -q --no-deps --no-binary :all: "$SDIST_SPEC" -d "$CACHE/downloads" >"$LOG" 2>&1
  fi
  STEP="verify sdist sha256"
  echo "$SDIST_SHA256  $CACHE/downloads/$SDIST" | sha256sum -c --status || {
    echo "[setup] $CACHE/downloads/$SDIST: sha256 mismatch (expected $SDIST_SHA256)" >&2; exit 1; }

  STEP="unpack and patch"
  LOG=$CACHE/logs/build-$NAME-$KEY.log
  : >"$LOG"
  rm -rf "$CACHE"/tmp-"$NAME"-*
  TMP=$(mktemp -d "$CACHE/tmp-$NAME-XXXXXX")
  tar xzf "$CACHE/downloads/$SDIST" -C "$TMP" --strip-components=1
  for p in "$THIRD"/patches/*.patch; do
    [ -e "$p" ] || continue
    echo "== patch $(basename "$p")" >>"$LOG"
    patch -d "$TMP" -p1 --forward <"$p" >>"$LOG" 2>&1
  done
  if [ "$VARIANT" = cuda ]; then
    for p in "$THIRD"/patches/cuda/*.patch; do
      echo "== patch cuda/$(basename "$p")" >>"$LOG"
      patch -d "$TMP" -p1 --forward <"$p" >>"$LOG" 2>&1
    done
    STEP="cuda wheels (requirements-cuda.txt)"
    # CAFFE_CUDNN=0: every pinned wheel but cuDNN's.
    grep -v '^nvidia-cudnn' "$THIRD/requirements-cuda.txt" >"$TMP/requirements-cuda.nocudnn.txt"
    REQS=$THIRD/requirements-cuda.txt
    [ "$CAFFE_CUDNN" = 1 ] || REQS=$TMP/requirements-cuda.nocudnn.txt
    say "installing the CUDA wheels ($(grep -o '^nvidia-[a-z0-9-]*' "$REQS" | tr '\n' ' ')) into the cache entry - log $LOG"
    "$PY" -m pip install --no-deps --no-compile --target "$TMP/nvidia-wheels" \
        -r "$REQS" >>"$LOG" 2>&1
    mkdir -p "$TMP/nvidia-wheels/link"
    for so in "$TMP"/nvidia-wheels/nvidia/*/lib/lib*.so.*; do
      name=$(basename "$so"); dir=$(basename "$(dirname "$(dirname "$so")")")
      ln -sfn "../nvidia/$dir/lib/$name" "$TMP/nvidia-wheels/link/${name%%.so.*}.so"
    done
    STEP="unpack and patch"
  fi
  # Generated by an old protoc that current protobuf runtimes reject; `make proto`
  # regenerates it with Debian's protoc.
  rm -f "$TMP/python/caffe/proto/caffe_pb2.py"
  sed -e "s|@CPU_ONLY@|$CPU_ONLY|" -e "s|@CUDA_DIR@|$CUDA_DIR|" -e "s|@CUDA_ARCH@|$ARCH_FLAGS|" \
      -e "s|@PYTHON_INCLUDE@|$PY_INCLUDE|" -e "s|@NUMPY_INCLUDE@|$NP_INCLUDE|" \
      -e "s|@PYTHON_LIBDIR@|$PY_LIBDIR|" -e "s|@PYTHON_NODOT@|${PY_VERSION/./}|" \
      -e "s|@PYTHON_VERSION@|$PY_VERSION|" -e "s|@EXTRA_INCLUDE@|$EXTRA_INCLUDE|" \
      -e "s|@EXTRA_LIBDIR@|$EXTRA_LIBDIR|" -e "s|@EXTRA_RPATH@|$EXTRA_RPATH|" \
      "$THIRD/Makefile.config.in" >"$TMP/Makefile.config"
  if [ "$VARIANT" = cuda ]; then
    sed -i 's/^CPU_ONLY := $/# CPU_ONLY off: CUDA build/' "$TMP/Makefile.config"
    [ "$CAFFE_CUDNN" = 0 ] || sed -i 's/^USE_CUDNN := 0$/USE_CUDNN := 1/' "$TMP/Makefile.config"
    cat >>"$TMP/Makefile.config" <<EOF
# CUDA variant (scripts/setup.sh): run-time search path for the cuBLAS/cuRAND (and
# cuDNN) wheels of this cache entry (relative, so the entry can move: make
# gpu-bundle), then the toolkit's lib64 for libcudart.
LINKFLAGS += -Wl,-rpath,\\\$\$ORIGIN/../../nvidia-wheels/nvidia/cu13/lib -Wl,-rpath,\\\$\$ORIGIN/../../nvidia-wheels/nvidia/cudnn/lib -Wl,-rpath,$CUDA_DIR/lib64
EOF
  fi

  STEP="make proto"
  say "building Caffe ($NAME) in $TMP with $JOBS jobs - log $LOG"
  start=$(date +%s)
  make -C "$TMP" proto >>"$LOG" 2>&1
  STEP="make all pycaffe"
  make -C "$TMP" -j"$JOBS" all pycaffe >>"$LOG" 2>&1
  STEP="finish cache entry"
  find "$TMP/.build_release" -name '*.o' -delete 2>/dev/null || true
  find "$TMP/build" -name '*.o' -delete 2>/dev/null || true
  [ "$VARIANT" = cpu ] || find "$TMP/.build_release" -name '*.cuo' -delete 2>/dev/null || true
  echo "built $(date -u +%FT%TZ) in $(( $(date +%s) - start )) s; key $KEY" >"$TMP/.complete.tmp"
  rm -rf "$PREFIX"
  mv "$TMP" "$PREFIX"
  mv "$PREFIX/.complete.tmp" "$PREFIX/.complete"
  say "Caffe ($NAME) built in $(( $(date +%s) - start )) s: $PREFIX"
fi

# 4. wire it into .venv ---------------------------------------------------------------
# The caffe tool embeds libpython, which knows nothing of the venv. Its wrappers put
# EMBED on PYTHONPATH; its sitecustomize adds the venv's site-packages *after* the
# standard library, as the venv itself does (on PYTHONPATH, site-packages would
# shadow the standard library, e.g. with the old `typing` backport).
EMBED=$VENV/lib/hybridnet-embed
mkdir -p "$EMBED"
cat >"$EMBED/sitecustomize.py" <<EOF
"""Written by scripts/setup.sh: the venv's packages for Caffe's embedded Python."""
import site
site.addsitedir("$SITE")
EOF
if [ "$VARIANT" = cuda ]; then
  # The CUDA variant sits beside the CPU one: its own wrappers, the CPU wiring
  # (.pth, .venv/bin/caffe) untouched unless CAFFE_GPU_DEFAULT=1.
  STEP="wire the CUDA variant (.venv/bin/caffe-gpu, .venv/bin/python-gpu)"
  LOG=""
  ln -sfn "$PREFIX" "$CACHE/current-$NAME"
  cat >"$VENV/bin/caffe-gpu$SUFFIX" <<EOF
#!/usr/bin/env bash
# Caffe's command-line tool, CUDA build ($PREFIX; CUDA_ARCH="$CUDA_ARCH";
# cuDNN: $CAFFE_CUDNN). Needs an NVIDIA driver for -gpu; CAFFE_TF32=1 runs cuBLAS
# (and cuDNN) on TF32 tensor cores; CAFFE_CUDNN=0 keeps Caffe's own GPU layers.
export PYTHONPATH="$ROOT:$PREFIX/python:$EMBED\${PYTHONPATH:+:\$PYTHONPATH}"
exec "$PREFIX/build/tools/caffe" "\$@"
EOF
  cat >"$VENV/bin/python-gpu$SUFFIX" <<EOF
#!/usr/bin/env bash
# The .venv's Python with the CUDA build's pycaffe ($PREFIX) ahead of the CPU one.
export PYTHONPATH="$PREFIX/python:$ROOT\${PYTHONPATH:+:\$PYTHONPATH}"
exec "$PY" "\$@"
EOF
  chmod +x "$VENV/bin/caffe-gpu$SUFFIX" "$VENV/bin/python-gpu$SUFFIX"
  STEP="link check (CUDA variant, no LD_LIBRARY_PATH)"
  for f in build/lib/libcaffe.so build/tools/caffe.bin python/caffe/_caffe.so; do
    deps=$(env -u LD_LIBRARY_PATH ldd "$PREFIX/$f")
    if grep 'not found' <<<"$deps" >&2; then
      echo "[setup] $PREFIX/$f: unresolved libraries (above)" >&2; exit 1
    fi
    if [ "$CAFFE_CUDNN" = 1 ] && ! grep -q "libcudnn.so.9 => $PREFIX/" <<<"$deps"; then
      echo "[setup] $PREFIX/$f: libcudnn.so.9 not resolved to the cache entry's wheel:" >&2
      grep cudnn <<<"$deps" >&2 || true; exit 1
    fi
  done
  if [ "$CAFFE_GPU_DEFAULT" != 1 ]; then
    say "ready: CUDA Caffe in $PREFIX: .venv/bin/caffe-gpu$SUFFIX, .venv/bin/python-gpu$SUFFIX (.venv's default caffe unchanged)"
    exit 0
  fi
fi
STEP="wire pycaffe into .venv"
LOG=""
echo "$PREFIX/python" >"$SITE/hybridnet_caffe.pth"
ln -sfn "$PREFIX" "$CACHE/current"
cat >"$VENV/bin/caffe" <<EOF
#!/usr/bin/env bash
# Caffe's command-line tool ($VARIANT build, $PREFIX). It embeds libpython and
# does not see a virtualenv: hand it the venv's packages and the project so that
# nets with Python layers (data_prep.layers.HybridData) run through it.
export PYTHONPATH="$ROOT:$PREFIX/python:$EMBED\${PYTHONPATH:+:\$PYTHONPATH}"
exec "$PREFIX/build/tools/caffe" "\$@"
EOF
chmod +x "$VENV/bin/caffe"

STEP="import check"
"$PY" -c 'import caffe, sys; from caffe import layer_type_list; sys.exit(0 if "Python" in layer_type_list() else 1)' || {
  echo "[setup] import caffe failed in $VENV (or the Python layer is missing)" >&2; exit 1; }
say "ready: $VENV (caffe $VARIANT from $PREFIX)"
