"""Fixtures of the build tests: the sdist with the common then the CUDA patches applied, once
per session (it skips, saying why, where `make setup` has not downloaded the sdist)."""

import os

import pytest

from tests.support.caffe_sources import SDIST, unpack_patched


@pytest.fixture(scope='session')
def patched(tmp_path_factory):
    """The sdist unpacked, every common then CUDA patch applied in order."""
    if not os.path.exists(SDIST):
        pytest.skip('no sdist at %s: run make setup (it downloads it)' % SDIST)
    return unpack_patched(tmp_path_factory.mktemp('caffe-cuda-src'))
