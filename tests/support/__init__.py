"""Helpers the tests share (no tests here): `ROOT` (the repository root), `toy_scenes` (small
training nets, a toy Caffe data layer, caffemodel writers), `colour_net` (deploy nets and
in-memory databases whose right answer is known, for the evaluation tests)."""

import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
