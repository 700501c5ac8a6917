"""The engine of the evaluation's forward pass: Caffe (the default, the faithful one), ONNX Runtime or PyTorch.

A backend has `name`, `version`, `threads` and `run(batch, blobs) -> {blob: array}`, batch
N x 3 x H x W float32 (BGR minus the mean); `Predictor` does the rest (tiling, merging) the
same way for all. Caffe runs the loaded `caffe.Net`; ONNX Runtime and PyTorch run the
stand-alone files (.onnx, torch.export's .pt2, batch dynamic) written from that same live
net, so the three see the same weights, fixed layers included. The evaluation may not
import `tools.porting` (docs/DESIGN.md): the caller passes the writer,
`exporter(deploy, net, backend, directory) -> path` (`python -m tools.evaluate` passes
`tools.porting.export.export_live_net`).

Threads: every engine (and OpenCV's resizing) uses `threads`, by default the cores this
process may run on.
"""

import ctypes
import ctypes.util
import os
import tempfile
from dataclasses import dataclass

import numpy as np

from tools.core import ToolError

BACKENDS = ('caffe', 'onnxruntime', 'pytorch')


@dataclass(frozen=True)
class EngineOptions:
    """backend: the engine of the run; compare: a second engine run on the same images
    (`tools.evaluation.compare`); threads: per engine (None: every core); exporter: writes the
    stand-alone file a non-Caffe engine runs (see the module's docstring)."""

    backend: str = 'caffe'
    compare: str = None
    threads: int = None
    exporter: object = None


def default_threads():
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def set_openblas_threads(threads):
    """Caffe's BLAS (OpenBLAS) thread count, set in the loaded library; False if there is none."""
    for name in ('libopenblas.so.0', ctypes.util.find_library('openblas')):
        try:
            setter = ctypes.CDLL(name).openblas_set_num_threads
        except (OSError, AttributeError, TypeError):
            continue
        setter(int(threads))
        return True
    return False


class CaffeBackend:
    name = 'caffe'

    def __init__(self, net, threads=None):
        import caffe  # noqa: PLC0415 (each engine loads only when used)

        self.net, self.threads = net, threads or default_threads()
        self.version = getattr(caffe, '__version__', 'unknown')
        if threads:  # OpenBLAS uses every core unless told otherwise
            set_openblas_threads(threads)

    def run(self, batch, blobs):
        data = self.net.blobs['data']
        if data.data.shape != batch.shape:
            data.reshape(*batch.shape)
            self.net.reshape()
        data.data[...] = batch
        result = self.net.forward(blobs=list(blobs))
        return {name: result[name].copy() for name in blobs}


class OnnxRuntimeBackend:
    name = 'onnxruntime'

    def __init__(self, path, threads=None):
        import onnxruntime  # noqa: PLC0415

        self.threads, self.version = threads or default_threads(), onnxruntime.__version__
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = self.threads, 1
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        # no busy-waiting between ops: the tiling's Python and the other engines share the cores
        options.add_session_config_entry('session.intra_op.allow_spinning', '0')
        self.session = onnxruntime.InferenceSession(str(path), options, providers=['CPUExecutionProvider'])
        self.input = self.session.get_inputs()[0].name

    def run(self, batch, blobs):
        blobs = list(blobs)
        return dict(zip(blobs, self.session.run(blobs, {self.input: np.ascontiguousarray(batch, np.float32)})))


class PyTorchBackend:
    name = 'pytorch'

    def __init__(self, path, threads=None):
        import torch  # noqa: PLC0415

        self.torch, self.threads, self.version = torch, threads or default_threads(), torch.__version__
        torch.set_num_threads(self.threads)
        self.program = torch.export.load(str(path)).module()

    def run(self, batch, blobs):
        with self.torch.inference_mode():
            out = self.program(self.torch.from_numpy(np.ascontiguousarray(batch, np.float32)))
        return {name: out[name].numpy() for name in blobs}


def open_backend(name, net, deploy, threads=None, exporter=None, gpu=None):
    """The backend `name` on the weights of the live caffe.Net `net` (deploy net `deploy`)."""
    if name not in BACKENDS:
        raise ToolError('unknown backend %r: choose from %s' % (name, ', '.join(BACKENDS)))
    if threads is not None and threads < 1:
        raise ToolError('--threads must be >= 1, not %d' % threads)
    if name == 'caffe':
        return CaffeBackend(net, threads)
    if gpu is not None:
        raise ToolError('backend %s runs on the CPU here; --gpu is for the caffe backend' % name)
    if exporter is None:
        raise ToolError('backend %s needs an exporter (tools.porting.export.export_live_net)' % name)
    with tempfile.TemporaryDirectory(prefix='hybridnet-%s-' % name) as directory:
        path = exporter(str(deploy), net, name, directory)
        return (OnnxRuntimeBackend if name == 'onnxruntime' else PyTorchBackend)(path, threads)


def describe(backend):
    """What the report says of a backend."""
    return {'name': backend.name, 'version': backend.version, 'threads': backend.threads}


def set_threads(threads):
    """OpenCV's threads (resizing in `predict_resized`) as the engines'."""
    import cv2  # noqa: PLC0415

    cv2.setNumThreads(int(threads or default_threads()))
