"""The CUDA variant of Caffe (make setup CAFFE_GPU=1), without a GPU.

Always run: the CUDA patches apply to a pristine unpack of the sdist after the common
patches; the TF32 switch, compiled from the patched common.cpp against a stub cuBLAS, is
off unless CAFFE_TF32 is set (and not "0"), logs when on, and is called wherever Caffe
creates a cuBLAS handle; the scripts parse; the wheels are pinned.

Run when a CUDA build is in the cache (`make setup CAFFE_GPU=1`, ~9 minutes, which CI does
not spend): libcaffe, the caffe tool and pycaffe link, with cuBLAS/cuRAND resolved from the
cache entry's wheels and cudart from the toolkit, no LD_LIBRARY_PATH; nothing of Caffe is
left undefined; the GPU code is there; `make gpu-bundle`'s archive holds what
bench/device_check.sh needs. Otherwise each says why it skipped.
"""

import glob
import os
import re
import subprocess
import tarfile

import pytest

from tests.support import ROOT
from tests.support.caffe_sources import CACHE, CUDA_PATCHES, THIRD


def test_cuda_patches_exist_and_say_why():
    names = [os.path.basename(p) for p in CUDA_PATCHES]
    for needed in (
        'cuda13-device-query',
        'fork-layers-gpu-link',
        'relu-gpu-no-host-copy',
        'tf32-cublas',
        'multigpu-p2psync',
        'cudnn9',
    ):
        assert any(needed in n for n in names), (needed, names)
    for p in CUDA_PATCHES:
        first = open(p).readline()
        assert first.startswith('# ') and len(first) > 20, '%s: no header comment' % p


def test_cuda_patches_apply_to_the_pristine_sdist(patched):
    common = (patched / 'src/caffe/common.cpp').read_text()
    assert 'prop.clockRate' not in common and 'cudaDevAttrClockRate' in common
    assert 'prop.deviceOverlap' not in common and 'prop.kernelExecTimeoutEnabled' not in common
    relu = (patched / 'src/caffe/layers/relu_layer.cu').read_text()
    fwd = relu[relu.index('ReLULayer<Dtype>::Forward_gpu') : relu.index('ReLUBackward')]
    code = [l for l in fwd.splitlines() if not l.strip().startswith('//')]
    assert not [l for l in code if 'cpu_data' in l], code
    assert (
        'INSTANTIATE_LAYER_GPU_FORWARD(ProposalLayer)' in (patched / 'src/caffe/layers/proposal_layer.cu').read_text()
    )
    for name in ('hardsigmoid', 'hardswish', 'maxunpool', 'pixelshuffle', 'relu6', 'upsample'):
        hpp = (patched / ('include/caffe/layers/%s_layer.hpp' % name)).read_text()
        assert '_gpu(' not in hpp, name  # Layer's defaults: the CPU code in GPU mode
    tool = (patched / 'tools/caffe.cpp').read_text()
    assert 'caffe::NCCL<float> nccl' not in tool and 'P2PSync<float> sync(solver' in tool
    assert 'Finetuning from' in tool  # the common patch 03 is still there


def test_tf32_switch_is_called_for_every_cublas_handle(patched):
    src = (patched / 'src/caffe/common.cpp').read_text()
    gpu_part = src[src.index('#else  // Normal GPU + CPU Caffe.') :]
    creates = [m.start() for m in re.finditer(r'cublasCreate\(', gpu_part)]
    assert len(creates) == 2  # Caffe::Caffe and Caffe::SetDevice
    for pos in creates:
        assert 'ConfigureCublasMathMode(' in gpu_part[pos : pos + 300]


STUB = r"""
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
typedef struct Handle* cublasHandle_t;
typedef int cublasMath_t;
typedef int cublasStatus_t;
const cublasMath_t CUBLAS_TF32_TENSOR_OP_MATH = 3;
const cublasStatus_t CUBLAS_STATUS_SUCCESS = 0;
static int g_mode = -1;
cublasStatus_t cublasSetMathMode(cublasHandle_t, cublasMath_t m) { g_mode = m; return 0; }
#define INFO std::cout << "LOG(INFO) "
#define ERROR std::cout << "LOG(ERROR) "
#define LOG(severity) severity
%s
int main() {
  ConfigureCublasMathMode(0);
  std::cout << std::endl << "mode " << g_mode << std::endl;
  return 0;
}
"""


@pytest.fixture(scope='module')
def tf32_switch(patched, tmp_path_factory):
    """The patch's ConfigureCublasMathMode, compiled against a recording cuBLAS stub."""
    src = (patched / 'src/caffe/common.cpp').read_text()
    start = src.index('static void ConfigureCublasMathMode')
    end = src.index('\n}\n', start) + 3
    d = tmp_path_factory.mktemp('tf32')
    (d / 'switch.cpp').write_text(STUB % src[start:end])
    r = subprocess.run(['g++', '-o', str(d / 'switch'), str(d / 'switch.cpp')], capture_output=True, text=True)
    if r.returncode != 0 and 'not found' in r.stderr:
        pytest.skip('no g++')
    assert r.returncode == 0, r.stderr

    def run(value):
        env = {k: v for k, v in os.environ.items() if k != 'CAFFE_TF32'}
        if value is not None:
            env['CAFFE_TF32'] = value
        return subprocess.run([str(d / 'switch')], env=env, capture_output=True, text=True, check=True).stdout

    return run


@pytest.mark.parametrize('value', [None, '', '0'])
def test_tf32_is_off_by_default(tf32_switch, value):
    out = tf32_switch(value)
    assert 'mode -1' in out and 'TF32' not in out


@pytest.mark.parametrize('value', ['1', 'yes'])
def test_tf32_env_switches_cublas_to_tf32_tensor_ops_and_logs_it(tf32_switch, value):
    out = tf32_switch(value)
    assert 'mode 3' in out
    assert 'LOG(INFO) CAFFE_TF32=%s: cuBLAS math mode CUBLAS_TF32_TENSOR_OP_MATH' % value in out


def test_cuda_wheels_are_pinned_to_cuda_13():
    lines = [
        l.strip() for l in open(os.path.join(THIRD, 'requirements-cuda.txt')) if l.strip() and not l.startswith('#')
    ]
    pins = dict(l.split('==') for l in lines)
    assert set(pins) == {'nvidia-cublas', 'nvidia-curand', 'nvidia-cudnn-cu13'}
    assert pins['nvidia-cublas'].startswith('13.0.')
    assert pins['nvidia-curand'].startswith('10.4.0.')
    assert re.fullmatch(r'9\.\d+\.\d+\.\d+', pins['nvidia-cudnn-cu13'])  # exact, cuDNN 9


@pytest.mark.parametrize('script', ['scripts/setup.sh', 'bench/device_check.sh', 'bench/gpu_bundle.sh'])
def test_scripts_parse(script):
    subprocess.run(['bash', '-n', os.path.join(ROOT, script)], check=True)


def test_setup_keeps_the_cpu_cache_key_free_of_cuda_files():
    """The CPU key hashes patches/*.patch (not patches/cuda/) and Makefile.config.in; CUDA
    settings are appended for the CUDA variant only."""
    text = open(os.path.join(ROOT, 'scripts', 'setup.sh')).read()
    key = text[text.index('KEY=$(') : text.index('PREFIX=$CACHE/caffe-$NAME-$KEY')]
    cuda_part = key[key.index('if [ "$VARIANT" = cuda ]') :]
    assert 'patches/cuda' in cuda_part and 'requirements-cuda.txt' in cuda_part
    assert 'patches/cuda' not in key[: key.index('if [ "$VARIANT" = cuda ]')]
    assert 'USE_NCCL' not in open(os.path.join(THIRD, 'Makefile.config.in')).read()


# --- the CUDA cache entry, when one was built here -------------------------------------------


def _cuda_prefix():
    link = os.path.join(CACHE, 'current-cuda')
    if os.path.exists(os.path.join(link, '.complete')):
        return os.path.realpath(link)
    done = sorted(glob.glob(os.path.join(CACHE, 'caffe-cuda-*', '.complete')), key=os.path.getmtime)
    return os.path.dirname(done[-1]) if done else None


@pytest.fixture(scope='module')
def cuda_prefix():
    prefix = _cuda_prefix()
    if prefix is None:
        pytest.skip('no CUDA build in %s: `make setup CAFFE_GPU=1` builds one (~9 min on 2 cores; CI does not)' % CACHE)
    return prefix


ARTEFACTS = ['build/lib/libcaffe.so', 'build/tools/caffe.bin', 'python/caffe/_caffe.so']


def _ldd(path):
    env = {k: v for k, v in os.environ.items() if k != 'LD_LIBRARY_PATH'}
    out = subprocess.run(['ldd', path], env=env, capture_output=True, text=True, check=True).stdout
    return dict(re.findall(r'^\s*(\S+) => (.*?) \(0x', out, re.M)), out


@pytest.mark.parametrize('artefact', ARTEFACTS)
def test_cuda_artefacts_link_without_ld_library_path(cuda_prefix, artefact):
    libs, out = _ldd(os.path.join(cuda_prefix, artefact))
    assert 'not found' not in out, out
    wheels = os.path.join(cuda_prefix, 'nvidia-wheels', 'nvidia', 'cu13', 'lib')
    for lib in ('libcublas.so.13', 'libcurand.so.10'):
        assert os.path.realpath(libs[lib]).startswith(os.path.realpath(wheels)), (lib, libs[lib])
    assert 'libcudart.so.13' in libs


def test_cuda_libcaffe_has_the_gpu_code_and_no_undefined_caffe_symbols(cuda_prefix):
    lib = os.path.join(cuda_prefix, 'build/lib/libcaffe.so')
    undefined = subprocess.run(
        ['nm', '-D', '-C', '--undefined-only', lib], capture_output=True, text=True, check=True
    ).stdout
    assert 'caffe::' not in undefined, [l for l in undefined.splitlines() if 'caffe::' in l]
    defined = subprocess.run(
        ['nm', '-D', '-C', '--defined-only', lib], capture_output=True, text=True, check=True
    ).stdout
    for sym in (
        'caffe::ReLULayer<float>::Forward_gpu',
        'caffe::ProposalLayer<float>::Forward_gpu',
        'caffe::P2PSync<float>::Run',
        'caffe::caffe_gpu_gemm<float>',
    ):
        assert sym in defined, sym
    sections = subprocess.run(['readelf', '-S', lib], capture_output=True, text=True).stdout
    assert '.nv_fatbin' in sections
    runpath = subprocess.run(['readelf', '-d', lib], capture_output=True, text=True).stdout
    assert '$ORIGIN/../../nvidia-wheels/nvidia/cu13/lib' in runpath


def test_cuda_build_targets_the_requested_archs(cuda_prefix):
    config = open(os.path.join(cuda_prefix, 'Makefile.config')).read()
    arch = re.search(r'^CUDA_ARCH := (.*)$', config, re.M).group(1)
    assert re.findall(r'code=sm_(\d+)', arch), arch
    assert '# CPU_ONLY off: CUDA build' in config


def test_gpu_bundle_holds_what_the_device_check_needs(cuda_prefix, tmp_path):
    out = tmp_path / 'bundle.tar.xz'
    r = subprocess.run(
        ['bash', os.path.join(ROOT, 'bench', 'gpu_bundle.sh'), str(out)],
        capture_output=True,
        text=True,
        env=dict(os.environ, NETS='deeplab_aspp a2'),
    )
    assert r.returncode == 0, r.stdout + r.stderr
    with tarfile.open(out) as tar:
        names = set(tar.getnames())
    b = 'hybridnet-caffe-cuda/'
    for needed in (
        'bin/caffe',
        'bin/caffe.bin',
        'lib/libcaffe.so',
        'python/caffe/_caffe.so',
        'pyshim/caffe/proto/caffe_pb2.py',
        'nets/manifest.json',
        'nets/a2.train.prototxt',
        'nets/a2.deploy.prototxt',
        'nets/a2.parity.prototxt',
        'nets/deeplab_aspp.parity.prototxt',
        'MANIFEST.txt',
        # the device check's own material (issue 16)
        'nets/a2.gradparity.prototxt',
        'nets/deeplab_aspp.gradparity.prototxt',
        'nets/a2.learn.prototxt',
        'learn/a2_sample.h5',
        'learn/a2_fixed.caffemodel',
    ):
        assert b + needed in names, needed
    libs = {n.split('/')[-1] for n in names if n.startswith(b + 'lib/')}
    for debian in ('libglog.so.1', 'libprotobuf.so.32', 'libopenblas.so.0'):
        assert any(l.startswith(debian.split('.so')[0]) for l in libs), (debian, libs)
    assert not any(
        l.startswith(('libcublas', 'libcurand', 'libcudart', 'libcudnn', 'libc.so', 'libstdc++', 'libresolv'))
        for l in libs
    ), libs
    assert out.stat().st_size < 60 * 2**20  # the device tool carries at most 64 MiB
    # The bundle's tool runs here (no GPU needed for --version) with only lib/ + CUDA's.
    x = tmp_path / 'x'
    with tarfile.open(out) as tar:
        tar.extractall(x, filter='fully_trusted')
    wheels = os.path.join(cuda_prefix, 'nvidia-wheels', 'nvidia', 'cu13', 'lib')
    cudnn = os.path.join(cuda_prefix, 'nvidia-wheels', 'nvidia', 'cudnn', 'lib')
    env = dict(os.environ, CUDA_LIBS='%s:%s:/usr/local/cuda/lib64' % (wheels, cudnn))
    r = subprocess.run([str(x / b / 'bin' / 'caffe'), '--ldd'], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_cuda_build_trains_in_cpu_mode_like_the_cpu_build(cuda_prefix, tmp_path):
    """Without a driver the CUDA build still runs CPU mode (cuBLAS/cuRAND handles fail
    and are logged, not fatal): same CPU code, same losses as the CPU build."""
    from google.protobuf import text_format

    from bench import caffe_cli
    from tests.build.test_gpu_bench import TINY_TRAIN, _net

    net = tmp_path / 'n.prototxt'
    net.write_text(text_format.MessageToString(caffe_cli.dummy_data_net(_net(TINY_TRAIN))))
    solver = tmp_path / 's.prototxt'
    solver.write_text(caffe_cli.parity_solver(str(net), str(tmp_path / 'snap'), base_lr=0.01, iterations=2, gpu=False))
    cpu = caffe_cli.caffe_train_losses(os.path.join(ROOT, '.venv', 'bin', 'caffe'), str(solver))[0]
    cuda_tool = os.path.join(cuda_prefix, 'build', 'tools', 'caffe')
    cuda = caffe_cli.caffe_train_losses(cuda_tool, str(solver))[0]
    assert cuda == cpu and len(cpu) == 3
