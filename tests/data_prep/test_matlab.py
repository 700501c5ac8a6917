"""data_prep.matlab: v7.3 (HDF5, column-major, references) and v5 files, written and read back."""

import h5py
import numpy as np
import pytest
import scipy.io

from data_prep import matlab
from data_prep.errors import DataError


def test_v73_numeric_arrays_are_stored_transposed_and_read_back_by_transpose(tmp_path):
    path = tmp_path / 'a.mat'
    # MATLAB 2 x 3 x 4, every element distinct: a reshape instead of a transpose scrambles it
    array = np.arange(24, dtype=np.uint16).reshape(2, 3, 4) * 7 + 1
    matlab.write_v73(path, {'a': array, 'v': np.array([1.5, 2.5, 3.5])})
    with h5py.File(path, 'r') as f:
        assert f['a'].shape == (4, 3, 2)  # as h5py sees it: dimensions reversed
        assert f['a'][3, 1, 0] == array[0, 1, 3]
        assert f['a'].attrs['MATLAB_class'] == b'uint16'
        assert f['v'].shape == (3, 1)  # a 1 x 3 row vector
        np.testing.assert_array_equal(matlab.matlab_array(f['a']), array)
        assert not np.array_equal(f['a'][()].reshape(2, 3, 4), array)


def test_v73_file_has_the_matlab_header_in_a_512_byte_userblock(tmp_path):
    path = tmp_path / 'a.mat'
    matlab.write_v73(path, {'x': np.zeros((2, 2))})
    head = path.read_bytes()[:128]
    assert head.startswith(b'MATLAB 7.3 MAT-file')
    assert head[124:128] == b'\x00\x02IM'
    with h5py.File(path, 'r') as f:
        assert f.userblock_size == 512
    with matlab.open_v73(path) as f:
        assert 'x' in f


def test_v73_cells_and_struct_arrays_are_object_references(tmp_path):
    path = tmp_path / 's.mat'
    maps = [np.arange(6.0).reshape(2, 3), np.arange(12.0).reshape(4, 3)]
    matlab.write_v73(
        path,
        {
            'names': ['wall', 'floor mat'],
            'S': matlab.StructArray([{'seglabel': m, 'tag': f'n{i}'} for i, m in enumerate(maps)]),
        },
    )
    with matlab.open_v73(path) as f:
        assert matlab.read_cell_strings(f, 'names') == ['wall', 'floor mat']
        assert f['S'].attrs['MATLAB_class'] == b'struct'
        assert f['S/seglabel'].shape == (2, 1)  # 1 x 2 struct array, transposed
        refs = matlab.read_references(f, 'S/seglabel', count=2)
        for ref, expected in zip(refs, maps):
            np.testing.assert_array_equal(matlab.matlab_array(matlab.dereference(f, ref, 'x')), expected)
        assert matlab.read_char(matlab.dereference(f, matlab.read_references(f, 'S/tag')[1], 'x')) == 'n1'
        with pytest.raises(DataError, match='has 2 elements, expected 3'):
            matlab.read_references(f, 'S/seglabel', count=3)
        with pytest.raises(DataError, match="'missing' missing"):
            matlab.v73_dataset(f, 'missing')


def test_open_v73_names_the_file_and_the_fault(tmp_path):
    with pytest.raises(DataError, match='missing file'):
        matlab.open_v73(tmp_path / 'none.mat')
    v5 = tmp_path / 'v5.mat'
    scipy.io.savemat(v5, {'x': np.ones(3)})
    with pytest.raises(DataError, match='v5/v7') as err:
        matlab.open_v73(v5)
    assert err.value.path == str(v5)
    good = tmp_path / 'good.mat'
    matlab.write_v73(good, {'x': np.ones((64, 64))})
    cut = tmp_path / 'cut.mat'
    cut.write_bytes(good.read_bytes()[:600])
    with pytest.raises(DataError, match='truncated or not HDF5'):
        matlab.open_v73(cut)


def test_v5_round_trip_of_structs_cells_and_vectors(tmp_path):
    path = tmp_path / 'm.mat'
    matlab.write_v5(
        path,
        {
            'S': matlab.StructArray([{'p': '/a/b', 'K': np.eye(3)}, {'p': '/c', 'K': np.ones((3, 3))}]),
            'c': ['x', 'yz'],
            'n': np.array([[3.0], [1.0]]),
        },
    )
    content = matlab.load_v5(path, ['S', 'c', 'n'])
    entries = matlab.as_list(content['S'])
    assert [e.p for e in entries] == ['/a/b', '/c']
    np.testing.assert_array_equal(entries[1].K, np.ones((3, 3)))
    assert matlab.as_list(content['c']) == ['x', 'yz']
    assert matlab.as_integers(path, 'n', content['n'], 1, 3).tolist() == [3, 1]


def test_load_v5_faults(tmp_path):
    path = tmp_path / 'm.mat'
    matlab.write_v5(path, {'n': np.arange(1.0, 200.0)})
    with pytest.raises(DataError, match="variable 'other' missing"):
        matlab.load_v5(path, ['other'])
    cut = tmp_path / 'cut.mat'
    cut.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DataError, match='truncated .mat file'):
        matlab.load_v5(cut, ['n'])
    v73 = tmp_path / 'v73.mat'
    matlab.write_v73(v73, {'n': np.ones(3)})
    with pytest.raises(DataError, match='v7.3'):
        matlab.load_v5(v73, ['n'])


def test_as_integers_rejects_fractions_and_out_of_range_entries(tmp_path):
    with pytest.raises(DataError, match='entry 3 = 9 out of range 1..5'):
        matlab.as_integers('f.mat', 'idx', np.array([1.0, 2.0, 9.0]), 1, 5)
    with pytest.raises(DataError, match='not whole numbers'):
        matlab.as_integers('f.mat', 'idx', np.array([1.0, 2.5]), 1, 5)
    with pytest.raises(DataError, match='numeric vector'):
        matlab.as_integers('f.mat', 'idx', np.ones((2, 2)), 1, 5)
