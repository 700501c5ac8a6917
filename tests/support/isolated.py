"""Run Python in a fresh interpreter where neither this project nor Caffe is importable (holds no tests).

`run_isolated(code, cwd)`: `python -I -S` (no PYTHONPATH, no user site, no .pth files: the
venv's `hybridnet_caffe.pth` is what puts pycaffe on the path) with the venv's site-packages
appended to sys.path as `site` would, and a cwd outside the repository. The code first checks
that `caffe`, `tools`, `netgen` and `data_prep` cannot be imported, then runs.
"""

import os
import subprocess
import sys
import sysconfig

import numpy as np

FORBIDDEN = ('caffe', 'tools', 'netgen', 'data_prep', 'tests')
BOOTSTRAP = f"""import importlib.util, sys
sys.path.append({sysconfig.get_paths()['purelib']!r})
_found = [name for name in {FORBIDDEN!r} if importlib.util.find_spec(name) is not None]
assert not _found, f'importable in the isolated interpreter: {{_found}}'
"""


def run_isolated(code, cwd, timeout=600):
    """Run `code` isolated in `cwd`; returns its stdout, raises AssertionError with stderr on failure."""
    env = {'PATH': os.environ.get('PATH', '/usr/bin:/bin'), 'HOME': str(cwd)}
    result = subprocess.run(
        [sys.executable, '-I', '-S', '-c', BOOTSTRAP + code],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, f'isolated interpreter failed:\n{result.stderr[-4000:]}'
    return result.stdout


#: Loads net.pt2 (torch.export) and net.onnx, runs every array of inputs.npz through both and
#: writes outputs.npz: '<engine>/<input key>/<blob>'.
RUN_ARTIFACTS = """
import numpy as np
import onnxruntime
import torch

inputs = np.load('inputs.npz')
program = torch.export.load('net.pt2').module()
session = onnxruntime.InferenceSession('net.onnx', providers=['CPUExecutionProvider'])
names = [o.name for o in session.get_outputs()]
out = {}
for key in inputs.files:
    with torch.no_grad():
        for blob, value in program(torch.from_numpy(inputs[key])).items():
            out[f'pytorch/{key}/{blob}'] = value.numpy()
    for blob, value in zip(names, session.run(names, {'data': inputs[key]})):
        out[f'onnx/{key}/{blob}'] = value
np.savez('outputs.npz', **out)
"""


def run_artifacts(directory, inputs, timeout=600):
    """{(engine, input key, blob): array} of net.pt2 / net.onnx in `directory`, run isolated."""
    np.savez(os.path.join(directory, 'inputs.npz'), **inputs)
    run_isolated(RUN_ARTIFACTS, directory, timeout)
    with np.load(os.path.join(directory, 'outputs.npz')) as arrays:
        return {tuple(key.split('/', 2)): arrays[key] for key in arrays.files}
