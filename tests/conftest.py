"""pytest configuration of the whole suite: the tests live in folders that mirror the
packages (tests/netgen, tests/data_prep, tests/training, tests/evaluation, tests/porting,
tests/build) and share helpers from tests/support. Caffe must be importable: tests that need
it fail, not skip, without it (the project's rule); GPU-only tests skip, saying why."""
