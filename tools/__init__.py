"""Drivers of HybridNet-Caffe: thin command lines over three packages and a small foundation.

Command lines (`python -m tools.<name> --help`; the convention is docs/DESIGN.md's):
`train` (also data parallel under torchrun), `evaluate`, `report`, `plot_log`, `export`,
`parity`, `demo` (`make demo`).

Packages (each `__init__` says what it owns and what it may import):
- `tools.core`: repository root, `ToolError` and exit statuses, device choice, protos and
  caffemodels, weight copying by layer name;
- `tools.training`: the pycaffe training driver (paper sec. 4.3);
- `tools.evaluation`: inference with the paper's tiling, metrics, report and figures (sec. 5);
- `tools.porting`: the nets as torch modules, export to PyTorch / ONNX / NumPy, parity.
"""
