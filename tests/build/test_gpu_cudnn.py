"""cuDNN 9 in the CUDA variant (issue 16), without a GPU.

Always run (needs the sdist in the cache, which `make setup` downloads, and g++): patch
cuda/15-cudnn9 applies after the others and leaves none of the v7 calls cuDNN 8 removed;
its code, cut out of the patched sources and compiled against a recording stub of the cuDNN
API (as tests/test_gpu_build.py does for cuBLAS):
  - CAFFE_TF32 picks the convolution math type: CUDNN_FMA_MATH (true FP32) when unset, ""
    or "0", CUDNN_TENSOR_OP_MATH (TF32) otherwise, set on every convolution descriptor,
    with the layer's dilation;
  - the algorithms come from cudnnFind* (default) or cudnnGet*_v7 (CAFFE_CUDNN_ALGO=
    heuristic): the fastest that succeeded within CAFFE_CUDNN_WORKSPACE_MB (1024 MiB by
    default), else the zero-workspace algorithm;
  - the layer factory hands DEFAULT engines to cuDNN only in GPU mode and not with
    CAFFE_CUDNN=0.
Run when the cuDNN build is in the cache (`make setup CAFFE_GPU=1`): libcaffe, the tool and
pycaffe resolve libcudnn.so.9 from the cache entry's wheel without LD_LIBRARY_PATH; the
library imports the cuDNN 8/9 entry points and none of the removed ones; the wheel's cuDNN
loads and reports the pinned version (no GPU needed for cudnnGetVersion).
Needs a GPU (skips saying so): the same DummyData training step with cuDNN (FP32) and with
CAFFE_CUDNN=0 gives the same loss within 1e-4.
bench/device_check.sh, on the CPU (its GPU run needs the device machine): the script and the
Python it runs parse; its parity program recovers every gradient exactly as pycaffe's
backward gives it; its learning program reads falling losses; `gpu_bundle.sh --material`
writes nets and a learning set that the CPU caffe trains (slow: A2 at batch 1).
"""

import ctypes
import glob
import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.support import ROOT
from tests.support.caffe_sources import CACHE, THIRD

CUDNN_PATCH = os.path.join(THIRD, 'patches', 'cuda', '15-cudnn9.patch')

# cuDNN's values (cudnn_graph.h / cudnn_ops.h of cuDNN 9).
DEFAULT_MATH, TENSOR_OP_MATH, FMA_MATH = 0, 1, 3


def test_cudnn_patch_is_there_and_says_why():
    assert os.path.exists(CUDNN_PATCH)
    head = [l for l in open(CUDNN_PATCH) if l.startswith('#')]
    text = ''.join(head)
    for why in ('cudnnFindConvolution', 'CAFFE_TF32', 'CUDNN_FMA_MATH', 'CAFFE_CUDNN=0'):
        assert why in text, why


def test_no_removed_v7_cudnn_call_is_left(patched):
    sources = [
        p
        for p in glob.glob(str(patched / 'src/caffe/**/*.c*'), recursive=True)
        + glob.glob(str(patched / 'include/caffe/**/*.hpp'), recursive=True)
        if 'cudnn' in open(p, errors='replace').read()
    ]
    removed = re.compile(
        r'cudnnGetConvolution(Forward|BackwardFilter|BackwardData)Algorithm\(|'
        r'_SPECIFY_WORKSPACE_LIMIT|_PREFER_FASTEST'
    )
    for path in sources:
        if '/test/' in path:
            continue  # Caffe's own gtest sources are not built
        code = [l for l in open(path) if not l.strip().startswith(('//', '*', '/*'))]
        hits = [l for l in code if removed.search(l)]
        assert not hits, (path, hits)
    header = (patched / 'include/caffe/util/cudnn.hpp').read_text()
    assert 'inline const char* cudnnGetErrorString' not in header  # cuDNN's own is used
    conv = (patched / 'src/caffe/layers/cudnn_conv_layer.cpp').read_text()
    assert 'cudnn::ChooseConvolutionAlgorithms(' in conv
    assert 'dilation_data[0], dilation_data[1]' in conv


def _block(text, start, end):
    i = text.index(start)
    return text[i : text.index(end, i)]


STUB = r"""
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>
// --- a recording stub of the cuDNN API the patch calls (values as in cuDNN 9) ---
#define CUDNN_VERSION 91300
#define CUDNN_VERSION_MIN(major, minor, patch) \
    (CUDNN_VERSION >= (major * 1000 + minor * 100 + patch))
typedef struct Opaque* cudnnHandle_t;
typedef struct Opaque* cudnnTensorDescriptor_t;
typedef struct Opaque* cudnnFilterDescriptor_t;
typedef struct Opaque* cudnnConvolutionDescriptor_t;
typedef enum { CUDNN_STATUS_SUCCESS = 0, CUDNN_STATUS_NOT_SUPPORTED = 3000 } cudnnStatus_t;
typedef enum { CUDNN_DEFAULT_MATH = 0, CUDNN_TENSOR_OP_MATH = 1,
               CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION = 2, CUDNN_FMA_MATH = 3 } cudnnMathType_t;
typedef enum { CUDNN_CONVOLUTION = 0, CUDNN_CROSS_CORRELATION = 1 } cudnnConvolutionMode_t;
typedef enum { CUDNN_DATA_FLOAT = 0, CUDNN_DATA_DOUBLE = 1 } cudnnDataType_t;
typedef enum { CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM = 0, CUDNN_CONVOLUTION_FWD_ALGO_COUNT = 8 } cudnnConvolutionFwdAlgo_t;
typedef enum { CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0 = 0, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT = 7 } cudnnConvolutionBwdFilterAlgo_t;
typedef enum { CUDNN_CONVOLUTION_BWD_DATA_ALGO_0 = 0, CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT = 6 } cudnnConvolutionBwdDataAlgo_t;
#define PERF(Name, Algo) typedef struct { Algo algo; cudnnStatus_t status; float time; \
    size_t memory; int determinism; cudnnMathType_t mathType; int reserved[3]; } Name;
PERF(cudnnConvolutionFwdAlgoPerf_t, cudnnConvolutionFwdAlgo_t)
PERF(cudnnConvolutionBwdFilterAlgoPerf_t, cudnnConvolutionBwdFilterAlgo_t)
PERF(cudnnConvolutionBwdDataAlgoPerf_t, cudnnConvolutionBwdDataAlgo_t)

static int g_math = -1, g_dil_h = -1, g_dil_w = -1;
static std::string g_calls;
static bool g_all_fail = false;
// The results cuDNN returns, fastest first: algo 7 needs 2 GiB, algo 2 10 MiB, algo 1
// failed, algo 0 none.
static const int kAlgo[4] = {7, 2, 1, 0};
static const size_t kMem[4] = {size_t(2) << 30, size_t(10) << 20, 0, 0};
static size_t MemOf(int algo) { for (int k = 0; k < 4; ++k) if (kAlgo[k] == algo) return kMem[k]; return 0; }
template <typename Perf, typename Algo> cudnnStatus_t Results(const char* who, int n, int* count, Perf* p) {
  g_calls += who; g_calls += " ";
  *count = n < 4 ? n : 4;
  for (int k = 0; k < *count; ++k) {
    p[k].algo = (Algo)kAlgo[k]; p[k].memory = kMem[k]; p[k].mathType = CUDNN_FMA_MATH;
    p[k].status = (g_all_fail || kAlgo[k] == 1) ? CUDNN_STATUS_NOT_SUPPORTED : CUDNN_STATUS_SUCCESS;
  }
  return CUDNN_STATUS_SUCCESS;
}
#define T cudnnTensorDescriptor_t
#define F cudnnFilterDescriptor_t
#define C cudnnConvolutionDescriptor_t
#define H cudnnHandle_t
cudnnStatus_t cudnnSetConvolution2dDescriptor(C, int, int, int, int, int dh, int dw,
    cudnnConvolutionMode_t, cudnnDataType_t) { g_dil_h = dh; g_dil_w = dw; return CUDNN_STATUS_SUCCESS; }
cudnnStatus_t cudnnSetConvolutionMathType(C, cudnnMathType_t m) { g_math = m; return CUDNN_STATUS_SUCCESS; }
cudnnStatus_t cudnnGetConvolutionForwardAlgorithmMaxCount(H, int* n) { *n = 8; return CUDNN_STATUS_SUCCESS; }
cudnnStatus_t cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(H, int* n) { *n = 7; return CUDNN_STATUS_SUCCESS; }
cudnnStatus_t cudnnGetConvolutionBackwardDataAlgorithmMaxCount(H, int* n) { *n = 6; return CUDNN_STATUS_SUCCESS; }
cudnnStatus_t cudnnFindConvolutionForwardAlgorithm(H, T, F, C, T, int n, int* c, cudnnConvolutionFwdAlgoPerf_t* p) {
  return Results<cudnnConvolutionFwdAlgoPerf_t, cudnnConvolutionFwdAlgo_t>("find-fwd", n, c, p); }
cudnnStatus_t cudnnGetConvolutionForwardAlgorithm_v7(H, T, F, C, T, int n, int* c, cudnnConvolutionFwdAlgoPerf_t* p) {
  return Results<cudnnConvolutionFwdAlgoPerf_t, cudnnConvolutionFwdAlgo_t>("v7-fwd", n, c, p); }
cudnnStatus_t cudnnFindConvolutionBackwardFilterAlgorithm(H, T, T, C, F, int n, int* c, cudnnConvolutionBwdFilterAlgoPerf_t* p) {
  return Results<cudnnConvolutionBwdFilterAlgoPerf_t, cudnnConvolutionBwdFilterAlgo_t>("find-filter", n, c, p); }
cudnnStatus_t cudnnGetConvolutionBackwardFilterAlgorithm_v7(H, T, T, C, F, int n, int* c, cudnnConvolutionBwdFilterAlgoPerf_t* p) {
  return Results<cudnnConvolutionBwdFilterAlgoPerf_t, cudnnConvolutionBwdFilterAlgo_t>("v7-filter", n, c, p); }
cudnnStatus_t cudnnFindConvolutionBackwardDataAlgorithm(H, F, T, C, T, int n, int* c, cudnnConvolutionBwdDataAlgoPerf_t* p) {
  return Results<cudnnConvolutionBwdDataAlgoPerf_t, cudnnConvolutionBwdDataAlgo_t>("find-data", n, c, p); }
cudnnStatus_t cudnnGetConvolutionBackwardDataAlgorithm_v7(H, F, T, C, T, int n, int* c, cudnnConvolutionBwdDataAlgoPerf_t* p) {
  return Results<cudnnConvolutionBwdDataAlgoPerf_t, cudnnConvolutionBwdDataAlgo_t>("v7-data", n, c, p); }
cudnnStatus_t cudnnGetConvolutionForwardWorkspaceSize(H, T, F, C, T, cudnnConvolutionFwdAlgo_t a, size_t* s) { *s = MemOf(a); return CUDNN_STATUS_SUCCESS; }
cudnnStatus_t cudnnGetConvolutionBackwardFilterWorkspaceSize(H, T, T, C, F, cudnnConvolutionBwdFilterAlgo_t a, size_t* s) { *s = MemOf(a); return CUDNN_STATUS_SUCCESS; }
cudnnStatus_t cudnnGetConvolutionBackwardDataWorkspaceSize(H, F, T, C, T, cudnnConvolutionBwdDataAlgo_t a, size_t* s) { *s = MemOf(a); return CUDNN_STATUS_SUCCESS; }
// --- glog's LOG / CHECK and Caffe's CUDNN_CHECK, enough for the patch's code ---
struct Fatal { bool on; Fatal(bool c) : on(!c) {} ~Fatal() { if (on) { std::cout << std::endl << "FATAL" << std::endl; exit(3); } }
  template <typename X> Fatal& operator<<(const X& x) { if (on) std::cout << x; return *this; } };
#define CHECK(c) Fatal(c) << "CHECK failed: "
#define INFO std::cout << "LOG(INFO) "
#define LOG(severity) severity
#define CUDNN_CHECK(condition) do { if ((condition) != CUDNN_STATUS_SUCCESS) { std::cout << "CUDNN_CHECK failed" << std::endl; exit(4); } } while (0)
namespace caffe { namespace cudnn {
template <typename Dtype> struct dataType { static const cudnnDataType_t type = CUDNN_DATA_FLOAT; };
%s
} }
int main(int argc, char** argv) {
  using namespace caffe::cudnn;
  std::string what = argv[1];
  if (what == "desc") {
    cudnnConvolutionDescriptor_t conv = 0;
    setConvolutionDesc<float>(&conv, 0, 0, 1, 1, 1, 1, 2, 3);
    std::cout << std::endl << "math " << g_math << " dilation " << g_dil_h << " " << g_dil_w << std::endl;
    setConvolutionDesc<float>(&conv, 0, 0, 1, 1, 1, 1);  // the old signature: no dilation
    std::cout << "math " << g_math << " dilation " << g_dil_h << " " << g_dil_w << std::endl;
  } else {
    g_all_fail = what == "fail";
    cudnnConvolutionFwdAlgo_t fwd; cudnnConvolutionBwdFilterAlgo_t filt; cudnnConvolutionBwdDataAlgo_t data;
    size_t fb = 99, kb = 99, db = 99;
    ChooseConvolutionAlgorithms(0, 0, 0, 0, 0, WorkspaceLimitBytes(), &fwd, &fb, &filt, &kb, &data, &db, "conv1");
    std::cout << std::endl << "calls " << g_calls << std::endl
              << "chosen " << fwd << " " << filt << " " << data << " bytes " << fb << " " << kb << " " << db << std::endl;
  }
  return 0;
}
"""


@pytest.fixture(scope='module')
def cudnn_stub(patched, tmp_path_factory):
    """The patch's cuDNN helpers (include/caffe/util/cudnn.hpp), compiled against STUB."""
    if shutil.which('g++') is None:
        pytest.skip('no g++')
    header = (patched / 'include/caffe/util/cudnn.hpp').read_text()
    code = _block(
        header,
        '// HybridNet-Caffe patch: CAFFE_TF32 governs cuDNN',
        'template <typename Dtype>\ninline void createPoolingDesc',
    )
    d = tmp_path_factory.mktemp('cudnn-stub')
    (d / 'stub.cpp').write_text(STUB % code)
    r = subprocess.run(
        ['g++', '-std=c++11', '-o', str(d / 'stub'), str(d / 'stub.cpp')], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr

    def run(what, **env):
        e = {
            k: v
            for k, v in os.environ.items()
            if k not in ('CAFFE_TF32', 'CAFFE_CUDNN_ALGO', 'CAFFE_CUDNN_WORKSPACE_MB')
        }
        e.update({k: v for k, v in env.items() if v is not None})
        return subprocess.run([str(d / 'stub'), what], env=e, capture_output=True, text=True)

    return run


@pytest.mark.parametrize('value', [None, '', '0'])
def test_convolutions_run_true_fp32_unless_caffe_tf32_is_set(cudnn_stub, value):
    out = cudnn_stub('desc', CAFFE_TF32=value).stdout
    assert 'math %d dilation 2 3' % FMA_MATH in out
    assert 'LOG(INFO) cuDNN math type CUDNN_FMA_MATH' in out and 'TENSOR_OP' not in out


@pytest.mark.parametrize('value', ['1', 'yes'])
def test_caffe_tf32_switches_cudnn_to_tensor_op_math_and_logs_it_once(cudnn_stub, value):
    out = cudnn_stub('desc', CAFFE_TF32=value).stdout
    assert 'math %d dilation 2 3' % TENSOR_OP_MATH in out
    assert 'math %d dilation 1 1' % TENSOR_OP_MATH in out  # every descriptor
    assert out.count('LOG(INFO) CAFFE_TF32=%s: cuDNN math type CUDNN_TENSOR_OP_MATH' % value) == 1


def test_algorithms_are_benchmarked_and_the_fastest_within_1_gib_wins(cudnn_stub):
    out = cudnn_stub('choose').stdout
    assert 'calls find-fwd find-filter find-data' in out
    # algo 7 (2 GiB) is over the default 1024 MiB limit, algo 2 (10 MiB) the next fastest
    assert 'chosen 2 2 2 bytes %d %d %d' % ((10 << 20,) * 3) in out
    assert 'cuDNN algorithms (find) for conv1: forward 2 (10 MiB)' in out


def test_a_larger_workspace_limit_admits_the_fastest_algorithm(cudnn_stub):
    out = cudnn_stub('choose', CAFFE_CUDNN_WORKSPACE_MB='4096').stdout
    assert 'chosen 7 7 7 bytes %d %d %d' % ((2 << 30,) * 3) in out


def test_heuristic_mode_asks_the_v7_queries(cudnn_stub):
    out = cudnn_stub('choose', CAFFE_CUDNN_ALGO='heuristic').stdout
    assert 'calls v7-fwd v7-filter v7-data' in out and 'find-' not in out
    assert 'chosen 2 2 2' in out


def test_without_a_fitting_result_the_zero_workspace_algorithms_are_used(cudnn_stub):
    out = cudnn_stub('fail').stdout
    assert 'chosen 0 0 0 bytes 0 0 0' in out


@pytest.mark.parametrize('env', [dict(CAFFE_CUDNN_ALGO='fastest'), dict(CAFFE_CUDNN_WORKSPACE_MB='lots')])
def test_bad_settings_stop_with_a_message(cudnn_stub, env):
    r = cudnn_stub('choose', **env)
    assert r.returncode == 3 and 'CHECK failed' in r.stdout and list(env.values())[0] in r.stdout


FACTORY_STUB = r"""
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#define INFO std::cout << "LOG(INFO) "
#define LOG(severity) severity
struct Caffe { enum Brew { CPU, GPU }; static Brew m; static Brew mode() { return m; } };
Caffe::Brew Caffe::m = Caffe::CPU;
%s
int main(int argc, char** argv) {
  Caffe::m = std::string(argv[1]) == "gpu" ? Caffe::GPU : Caffe::CPU;
  const bool cudnn = CuDNNByDefault();
  std::cout << std::endl << "cudnn " << cudnn << std::endl;
  return 0;
}
"""


@pytest.fixture(scope='module')
def factory(patched, tmp_path_factory):
    if shutil.which('g++') is None:
        pytest.skip('no g++')
    src = (patched / 'src/caffe/layer_factory.cpp').read_text()
    code = _block(src, 'static bool CuDNNByDefault()', '#endif')
    d = tmp_path_factory.mktemp('factory')
    (d / 'f.cpp').write_text(FACTORY_STUB.replace('%s', code))
    r = subprocess.run(['g++', '-o', str(d / 'f'), str(d / 'f.cpp')], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr

    def run(mode, cudnn=None):
        e = {k: v for k, v in os.environ.items() if k != 'CAFFE_CUDNN'}
        if cudnn is not None:
            e['CAFFE_CUDNN'] = cudnn
        return subprocess.run([str(d / 'f'), mode], env=e, capture_output=True, text=True, check=True).stdout

    return run, src


def test_default_engines_go_to_cudnn_only_in_gpu_mode(factory):
    run, src = factory
    assert 'cudnn 0' in run('cpu') and 'cudnn 0' in run('cpu', '1')
    assert 'cudnn 1' in run('gpu') and 'cudnn 1' in run('gpu', '1')
    out = run('gpu', '0')
    assert 'cudnn 0' in out and "CAFFE_CUDNN=0: Caffe's own GPU layers" in out
    # every engine the fork would default to cuDNN (convolution, pooling, LRN, ReLU,
    # sigmoid, softmax, tanh) asks it
    defaults = re.findall(r'engine = (\w+)Parameter_Engine_CUDNN;', src)
    assert sorted(defaults) == ['Convolution', 'LRN', 'Pooling', 'ReLU', 'Sigmoid', 'Softmax', 'TanH']
    for kind in defaults:
        i = src.index('engine = %sParameter_Engine_CUDNN;' % kind)
        assert 'CuDNNByDefault()' in src[i - 120 : i], kind
    # dilated convolutions are no longer kept off cuDNN (v6+ takes the dilation)
    assert 'CUDNN_VERSION_MIN(6, 0, 0) || !use_dilation' in src


def test_setup_builds_cudnn_by_default_and_keeps_a_separate_no_cudnn_entry():
    text = open(os.path.join(ROOT, 'scripts', 'setup.sh')).read()
    key = text[text.index('KEY=$(') : text.index('PREFIX=$CACHE/caffe-$NAME-$KEY')]
    assert 'echo "cudnn=$CAFFE_CUDNN"' in key[key.index('if [ "$VARIANT" = cuda ]') :]
    assert 'CAFFE_CUDNN=${CAFFE_CUDNN:-1}' in text
    assert '0) NAME=cuda-nocudnn; SUFFIX=-nocudnn ;;' in text
    assert "sed -i 's/^USE_CUDNN := 0$/USE_CUDNN := 1/'" in text
    assert "grep -v '^nvidia-cudnn'" in text
    # the CPU key does not move: Makefile.config.in keeps USE_CUDNN := 0
    assert 'USE_CUDNN := 0' in open(os.path.join(THIRD, 'Makefile.config.in')).read()


# --- the cuDNN cache entry, when one was built here -------------------------------------------


def _cudnn_prefix():
    link = os.path.join(CACHE, 'current-cuda')
    cands = [os.path.realpath(link)] if os.path.exists(os.path.join(link, '.complete')) else []
    cands += sorted(
        (
            os.path.dirname(p)
            for p in glob.glob(os.path.join(CACHE, 'caffe-cuda-*', '.complete'))
            if '-nocudnn-' not in p
        ),
        key=os.path.getmtime,
        reverse=True,
    )
    for prefix in cands:
        config = os.path.join(prefix, 'Makefile.config')
        if os.path.exists(config) and re.search(r'^USE_CUDNN := 1$', open(config).read(), re.M):
            return prefix
    return None


@pytest.fixture(scope='module')
def cudnn_prefix():
    prefix = _cudnn_prefix()
    if prefix is None:
        pytest.skip(
            'no cuDNN build of the CUDA variant in %s: `make setup CAFFE_GPU=1` builds '
            'one (tens of minutes on 2 cores; CI does not)' % CACHE
        )
    return prefix


@pytest.mark.parametrize('artefact', ['build/lib/libcaffe.so', 'build/tools/caffe.bin', 'python/caffe/_caffe.so'])
def test_cudnn_resolves_from_the_cache_entry_without_ld_library_path(cudnn_prefix, artefact):
    env = {k: v for k, v in os.environ.items() if k != 'LD_LIBRARY_PATH'}
    out = subprocess.run(
        ['ldd', os.path.join(cudnn_prefix, artefact)], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert 'not found' not in out, out
    libs = dict(re.findall(r'^\s*(\S+) => (.*?) \(0x', out, re.M))
    wheel = os.path.realpath(os.path.join(cudnn_prefix, 'nvidia-wheels', 'nvidia', 'cudnn', 'lib'))
    assert os.path.realpath(libs['libcudnn.so.9']).startswith(wheel), libs['libcudnn.so.9']


def test_libcaffe_calls_the_cudnn9_api_and_none_of_the_removed_queries(cudnn_prefix):
    lib = os.path.join(cudnn_prefix, 'build/lib/libcaffe.so')
    undefined = subprocess.run(['nm', '-D', '--undefined-only', lib], capture_output=True, text=True, check=True).stdout
    imported = set(re.findall(r'\b(cudnn\w+)', undefined))
    for needed in (
        'cudnnFindConvolutionForwardAlgorithm',
        'cudnnFindConvolutionBackwardFilterAlgorithm',
        'cudnnFindConvolutionBackwardDataAlgorithm',
        'cudnnGetConvolutionForwardAlgorithm_v7',
        'cudnnSetConvolutionMathType',
        'cudnnConvolutionForward',
        'cudnnGetErrorString',
    ):
        assert needed in imported, needed
    for removed in (
        'cudnnGetConvolutionForwardAlgorithm',
        'cudnnGetConvolutionBackwardFilterAlgorithm',
        'cudnnGetConvolutionBackwardDataAlgorithm',
    ):
        assert removed not in imported, removed
    defined = subprocess.run(
        ['nm', '-D', '-C', '--defined-only', lib], capture_output=True, text=True, check=True
    ).stdout
    assert 'caffe::CuDNNConvolutionLayer<float>::Forward_gpu' in defined
    runpath = subprocess.run(['readelf', '-d', lib], capture_output=True, text=True).stdout
    assert '$ORIGIN/../../nvidia-wheels/nvidia/cudnn/lib' in runpath


def test_the_wheels_cudnn_loads_and_is_the_pinned_version(cudnn_prefix):
    pin = [
        l.split('==')[1].strip()
        for l in open(os.path.join(THIRD, 'requirements-cuda.txt'))
        if l.startswith('nvidia-cudnn-cu13==')
    ][0]
    major, minor, patch = (int(x) for x in pin.split('.')[:3])
    lib = ctypes.CDLL(os.path.join(cudnn_prefix, 'nvidia-wheels', 'nvidia', 'cudnn', 'lib', 'libcudnn.so.9'))
    lib.cudnnGetVersion.restype = ctypes.c_size_t
    assert lib.cudnnGetVersion() == major * 10000 + minor * 100 + patch


# --- on a GPU --------------------------------------------------------------------------------


def _gpu():
    if shutil.which('nvidia-smi') is None:
        return 'no nvidia-smi: no NVIDIA driver on this machine'
    r = subprocess.run(['nvidia-smi', '-L'], capture_output=True, text=True)
    return None if r.returncode == 0 and 'GPU' in r.stdout else 'nvidia-smi finds no GPU'


def test_cudnn_and_caffe_engines_give_the_same_training_loss_on_the_gpu(cudnn_prefix, tmp_path):
    why = _gpu()
    if why:
        pytest.skip('needs a GPU (%s); bench/device_check.sh measures this on the device' % why)
    from google.protobuf import text_format

    from bench import caffe_cli
    from tests.build.test_gpu_bench import TINY_TRAIN, _net

    net = tmp_path / 'n.prototxt'
    net.write_text(text_format.MessageToString(caffe_cli.dummy_data_net(_net(TINY_TRAIN))))
    solver = tmp_path / 's.prototxt'
    solver.write_text(caffe_cli.parity_solver(str(net), str(tmp_path / 'snap'), base_lr=0.01, iterations=2, gpu=True))
    tool = os.path.join(cudnn_prefix, 'build', 'tools', 'caffe')
    os.environ.pop('CAFFE_CUDNN', None)
    cudnn = caffe_cli.caffe_train_losses(tool, str(solver), gpu=0)[0]
    os.environ['CAFFE_CUDNN'] = '0'
    try:
        own = caffe_cli.caffe_train_losses(tool, str(solver), gpu=0)[0]
    finally:
        del os.environ['CAFFE_CUDNN']
    assert len(cudnn) == len(own) == 3
    for a, b in zip(cudnn, own):
        assert abs(a - b) <= 1e-4 * max(abs(b), 1e-12), (cudnn, own)


# --- bench/device_check.sh and its material, on the CPU ---------------------------------------
# The device run cannot be rehearsed here, but its parts can: the script parses, its Python
# parses, the parity and learning programs run against the CPU caffe (the same programs the
# device runs against the GPU), and `gpu_bundle.sh --material` writes nets the CPU caffe
# trains.

DEVICE_CHECK = os.path.join(ROOT, 'bench', 'device_check.sh')
CPU_CAFFE = os.path.join(ROOT, '.venv', 'bin', 'caffe')


def _device_python():
    """{file name: source} of the programs device_check.sh writes (`cat >"$W/x.py" <<'PY'`)."""
    text = open(DEVICE_CHECK).read()
    return dict(re.findall(r"cat >\"\$W/(\w+\.py)\" <<'PY'\n(.*?)\nPY\n", text, re.S))


def test_device_check_parses_and_its_python_compiles():
    subprocess.run(['bash', '-n', DEVICE_CHECK], check=True)
    programs = _device_python()
    assert set(programs) == {'parity.py', 'speed.py', 'learn.py'}
    for name, source in programs.items():
        compile(source, name, 'exec')
    text = open(DEVICE_CHECK).read()
    for step in ('parity', 'speed', 'learn', 'layers_aspp', 'tf32_parity_aspp', 'tf32_parity_a2'):
        assert re.search(r'^step %s \d+ ' % step, text, re.M), step
    # the device tool brings back at most 8 files from $OUT
    published = re.search(r'for f in ([^;]+); do\n    \[ -f "\$RES/\$f" \]', text).group(1).split()
    assert len(published) + 2 <= 8  # + summary.txt, results.tgz


@pytest.fixture
def device_program(tmp_path):
    def load(name):
        path = tmp_path / name
        path.write_text(_device_python()[name])
        return str(path)

    return load


def _need_cpu_caffe():
    if not os.path.exists(CPU_CAFFE):
        pytest.skip('no CPU caffe at %s: run make setup' % CPU_CAFFE)


TINY_NET = """name: "tiny"
layer { name: "data" type: "DummyData" top: "data" top: "label"
  dummy_data_param { data_filler { type: "gaussian" std: 10 } data_filler { type: "uniform" min: 0 max: 2.999 }
    shape { dim: 2 dim: 3 dim: 17 dim: 17 } shape { dim: 2 dim: 1 dim: 9 dim: 9 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" param { lr_mult: 1 } param { lr_mult: 2 }
  convolution_param { num_output: 8 kernel_size: 3 pad: 2 dilation: 2
    weight_filler { type: "gaussian" std: 0.1 } bias_filler { type: "constant" value: 0.1 } } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" pooling_param { pool: MAX kernel_size: 3 stride: 2 pad: 1 } }
layer { name: "score" type: "Convolution" bottom: "pool1" top: "score" param { lr_mult: 10 } param { lr_mult: 0 }
  convolution_param { num_output: 3 kernel_size: 1 weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "score" bottom: "label" top: "loss" loss_weight: 3 }
"""


def test_parity_program_recovers_every_gradient_from_the_snapshots(device_program, tmp_path):
    """parity.py's gradients ((w0 - w1) / (lr * lr_mult) from its snapshots) are pycaffe's
    backward diffs of the same net, seed and batch; a repeated CPU run differs by 0."""
    _need_cpu_caffe()
    import importlib.util

    import caffe
    import numpy as np

    spec = importlib.util.spec_from_file_location('parity', device_program('parity.py'))
    parity = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(parity)
    net = tmp_path / 'tiny.prototxt'
    net.write_text(TINY_NET)
    parity.VARIANTS = [('cpu', False, {}), ('cpu_again', False, {'CAFFE_CUDNN': '0'})]
    out = tmp_path / 'parity.json'
    assert (
        parity.main(
            ['--caffe', CPU_CAFFE, '--net', 'tiny=%s' % net, '--workdir', str(tmp_path / 'w'), '--json', str(out)]
        )
        == 0
    )
    import json

    report = json.load(open(out))['nets']['tiny']
    assert 'error' not in report, report
    again = report['variants']['cpu_again']
    assert again['grad']['overall'] == 0.0 and again['grad']['blobs'] == 3  # score's bias: lr_mult 0
    assert again['fp32_within_tol'] is True and again['loss_rel'] == {'loss': 0.0}
    # the same step in pycaffe: same seed, so same data and weights
    solver = tmp_path / 'w' / 'tiny' / 'cpu.solver.prototxt'
    caffe.set_mode_cpu()
    s = caffe.SGDSolver(str(solver))
    s.net.forward()
    s.net.backward()
    loss = 3 * float(s.net.blobs['loss'].data)  # loss_weight 3
    assert abs(loss - report['variants']['cpu']['losses']['loss']) <= 1e-5 * abs(loss)
    # w0 and w1 of a fresh pair of runs, read by the program's own parser
    w0 = parity.read_caffemodel(
        parity.caffe_step(CPU_CAFFE, str(net), str(tmp_path / 'v'), 'w0', False, {}, 1e6, 1, iters=0)['model']
    )
    w1 = parity.read_caffemodel(
        parity.caffe_step(CPU_CAFFE, str(net), str(tmp_path / 'v'), 'cpu', False, {}, 1e6, 1)['model']
    )
    for layer, k, lr_mult in (('conv1', 0, 1), ('conv1', 1, 2), ('score', 0, 10)):
        grad = (w0[(layer, k)] - w1[(layer, k)]) / (1e6 * lr_mult)
        diff = s.net.params[layer][k].diff.ravel().astype(np.float64)
        assert np.allclose(grad, diff, rtol=1e-4, atol=1e-6 * np.abs(diff).max()), (layer, k)
        assert np.allclose(w0[(layer, k)], s.net.params[layer][k].data.ravel(), rtol=0, atol=0)


def test_learning_program_reads_falling_losses(device_program, tmp_path):
    """learn.py on the CPU: a tiny net on an HDF5 set (the device's data path) learns, and the
    program says so from caffe's log."""
    _need_cpu_caffe()
    import json

    import h5py
    import numpy as np

    rng = np.random.default_rng(0)
    data = rng.normal(0, 1, (8, 3, 9, 9)).astype(np.float32)
    label = (data[:, :1] > 0).astype(np.float32)  # learnable: the sign of channel 0
    with h5py.File(tmp_path / 'set.h5', 'w') as f:
        f.create_dataset('data', data=data, compression='gzip', shuffle=True)
        f.create_dataset('label', data=label)
    (tmp_path / 'list.txt').write_text(str(tmp_path / 'set.h5') + '\n')
    (tmp_path / 'net.prototxt').write_text(
        """name: "learn"
layer { name: "d" type: "HDF5Data" top: "data" top: "label" hdf5_data_param { source: "%s" batch_size: 4 } }
layer { name: "score" type: "Convolution" bottom: "data" top: "score"
  convolution_param { num_output: 2 kernel_size: 1 weight_filler { type: "gaussian" std: 0.01 } } }
layer { name: "loss_seg" type: "SoftmaxWithLoss" bottom: "score" bottom: "label" top: "loss_seg" }
"""
        % (tmp_path / 'list.txt')
    )
    out = tmp_path / 'learn.json'
    r = subprocess.run(
        [
            sys.executable,
            device_program('learn.py'),
            '--caffe',
            CPU_CAFFE,
            '--cpu',
            '--net',
            str(tmp_path / 'net.prototxt'),
            '--iters',
            '60',
            '--display',
            '5',
            '--window',
            '4',
            '--lr',
            '0.1',
            '--json',
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    result = json.load(open(out))
    assert [d['iter'] for d in result['displays']] == list(range(0, 60, 5))
    assert result['window'] == 4 and result['solver_type'] == 'Adam'
    assert result['falls'] == {'loss': True, 'loss_seg': True}, result['first_last']
    assert 'learn loss_seg' in r.stdout and 'falls' in r.stdout


def test_speed_program_reads_caffe_iteration_times_and_finds_the_converter(device_program):
    import importlib.util

    spec = importlib.util.spec_from_file_location('speed', device_program('speed.py'))
    speed = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(speed)
    log = (
        'I1203 13:41:07.100000 12345 solver.cpp:218] Iteration 0 (0 iter/s, 1.2s/1 iters), loss = 3\n'
        'I1203 13:41:07.100100 12345 solver.cpp:237]     Train net output #0: loss = 3\n'
        'I1203 13:41:07.150000 12345 solver.cpp:218] Iteration 1 (20 iter/s, 0.05s/1 iters), loss = 2\n'
        'I1203 13:41:07.210000 12345 solver.cpp:218] Iteration 2 (16 iter/s, 0.06s/1 iters), loss = 1\n'
        # glog >= 0.6 (Debian 12's) writes the year too
        'I20261203 13:41:07.250000 12345 solver.cpp:231] Iteration 3, loss = 0.5\n'
    )
    stamps = [(int(it), float(s)) for _, _, s, it in speed.STAMP.findall(log)]
    assert stamps == [(0, 7.1), (1, 7.15), (2, 7.21), (3, 7.25)]
    assert callable(speed.find_attr('CaffeNet', ['tools.porting.torch_net']))
    assert callable(speed.find_attr('read_net', ['tools.core.protos']))


TINY_DEPLOY = """name: "tiny"
layer { name: "input" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 17 dim: 17 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" param { lr_mult: 1 } param { lr_mult: 2 }
  convolution_param { num_output: 8 kernel_size: 3 pad: 2 dilation: 2 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "fixed_conv" type: "Convolution" bottom: "conv1" top: "score" param { lr_mult: 0 }
  convolution_param { num_output: 3 kernel_size: 1 bias_term: false } }
"""


def test_speed_program_times_the_converted_net_in_every_precision(device_program, tmp_path):
    """The PyTorch half of the speed step, on the CPU (the device runs it on 'cuda'): the
    converted deploy net, lr_mult 0 layers frozen, FP32 / TF32 / bf16 autocast steps timed."""
    pytest.importorskip('torch')
    import importlib.util

    spec = importlib.util.spec_from_file_location('speed', device_program('speed.py'))
    speed = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(speed)
    (tmp_path / 'deploy.prototxt').write_text(TINY_DEPLOY)
    (tmp_path / 'train.prototxt').write_text(TINY_DEPLOY)  # same layers: the lr_mults matter
    net = speed.TorchNet(str(tmp_path / 'train.prototxt'), str(tmp_path / 'deploy.prototxt'), device='cpu')
    frozen = [n for n, p in net.net.named_parameters() if not p.requires_grad]
    assert frozen and all(n.startswith('fixed_conv') for n in frozen), frozen
    for variant in speed.TORCH_VARIANTS:
        times = net.times(variant, 3, warmup=1)
        assert len(times) == 3 and all(t > 0 for t in times), (variant, times)


@pytest.mark.slow
def test_bundle_material_trains_on_the_cpu_caffe(tmp_path):
    """`gpu_bundle.sh --material` (batch 1 here, 7 in the bundle): DummyData parity nets
    without Dropout, and A2's training net on the HDF5 learning set with the fixed_* weights,
    which the CPU caffe trains for two iterations with finite losses."""
    _need_cpu_caffe()
    env = dict(os.environ, BATCH='1', PARITY_BATCH='1', LEARN_BATCHES='2')
    r = subprocess.run(
        ['bash', os.path.join(ROOT, 'bench', 'gpu_bundle.sh'), '--material', str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert 'fixed layers fixed_up2_refine' in r.stdout
    for name in ('a2', 'deeplab_aspp'):
        text = (tmp_path / 'nets' / ('%s.gradparity.prototxt' % name)).read_text()
        assert 'Dropout' not in text and 'DummyData' in text
    import h5py

    with h5py.File(tmp_path / 'learn' / 'a2_sample.h5') as f:
        assert {k: f[k].shape for k in f} == {
            'data': (2, 3, 321, 321),
            'label': (2, 1, 41, 41),
            'depth_gt_81': (2, 1, 81, 81),
        }
    (tmp_path / 'list.txt').write_text(str(tmp_path / 'learn' / 'a2_sample.h5') + '\n')
    net = tmp_path / 'learn.prototxt'
    net.write_text(
        (tmp_path / 'nets' / 'a2.learn.prototxt').read_text().replace('@LEARN_LIST@', str(tmp_path / 'list.txt'))
    )
    learn = tmp_path / 'learn.py'
    learn.write_text(_device_python()['learn.py'])
    out = tmp_path / 'learn.json'
    r = subprocess.run(
        [
            sys.executable,
            str(learn),
            '--caffe',
            CPU_CAFFE,
            '--cpu',
            '--net',
            str(net),
            '--weights',
            str(tmp_path / 'learn' / 'a2_fixed.caffemodel'),
            '--iters',
            '2',
            '--display',
            '1',
            '--json',
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    import json
    import math

    result = json.load(open(out))
    assert [d['iter'] for d in result['displays']] == [0, 1]
    for d in result['displays']:
        assert math.isfinite(d['loss']) and 'loss_seg' in d['terms'], d
    log = open(str(out)[:-5] + '.caffe.log').read()
    assert 'Finetuning from %s' % (tmp_path / 'learn' / 'a2_fixed.caffemodel') in log
    # what it copies: the corner-aligned bilinear x2 kernels of the fixed upsampling
    import numpy as np
    from caffe.proto import caffe_pb2

    fixed = caffe_pb2.NetParameter()
    fixed.ParseFromString((tmp_path / 'learn' / 'a2_fixed.caffemodel').read_bytes())
    assert [l.name for l in fixed.layer] == ['fixed_up2_refine']
    blob = fixed.layer[0].blobs[0]
    kernels = np.array(blob.data, np.float32).reshape(list(blob.shape.dim))
    assert kernels.shape[1:] == (1, 3, 3)
    assert np.array_equal(kernels[0, 0], np.outer([0.5, 1, 0.5], [0.5, 1, 0.5]))
