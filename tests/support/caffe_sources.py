"""Where the build's inputs are (shared by the build tests): the vendored patches, the build
cache and the brocolli-caffe sdist that `make setup` downloads into it, and the sdist unpacked
with every patch applied."""

import glob
import os
import subprocess
import tarfile

from tests.support import ROOT

THIRD = os.path.join(ROOT, 'third_party', 'caffe')
CACHE = os.path.expanduser(os.environ.get('HYBRIDNET_CACHE', '~/.cache/hybridnet-caffe'))
SDIST = os.path.join(CACHE, 'downloads', 'brocolli-caffe-9.0.2.tar.gz')
COMMON_PATCHES = sorted(glob.glob(os.path.join(THIRD, 'patches', '*.patch')))
CUDA_PATCHES = sorted(glob.glob(os.path.join(THIRD, 'patches', 'cuda', '*.patch')))


def unpack_patched(tree, patches=COMMON_PATCHES + CUDA_PATCHES):
    """The sdist unpacked under `tree` with `patches` applied in order; returns its source
    directory. AssertionError naming a patch that does not apply."""
    with tarfile.open(SDIST) as tar:
        top = tar.getmembers()[0].name.split('/')[0]
        tar.extractall(tree, filter='data')
    src = tree / top
    for p in patches:
        with open(p) as f:
            r = subprocess.run(
                ['patch', '-p1', '--forward', '--batch'], cwd=src, stdin=f, capture_output=True, text=True
            )
        assert r.returncode == 0, '%s does not apply:\n%s%s' % (p, r.stdout, r.stderr)
    return src
