"""Porting the nets to other frameworks (docs/PORTING.md): `caffe_ops` (Caffe's semantics as
torch functions), `layers` (one Caffe layer -> one torch module), `torch_net` (`CaffeNet`, a
deploy net as a torch module), `backends` (the forward pass on pycaffe, PyTorch, ONNX Runtime
and OpenCV, and the error measure), `export` (to PyTorch / ONNX / NumPy and back to a
caffemodel), `parity` (every backend against pycaffe).

May import: `tools.core`, `netgen` (generated paths, fixed weights), torch, onnx, cv2, caffe.
"""
