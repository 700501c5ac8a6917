"""The one error type of `data_prep`: a fault in an input or output file.

Every converter, the database reader and the data layer raise `DataError(path, fault)`
so that a person sees which file is wrong and how: ``str(err) == "<path>: <fault>"``.
"""


class DataError(Exception):
    """A file that cannot be used as it is: `path` names it, `fault` says what is wrong."""

    def __init__(self, path, fault):
        super().__init__(str(path), str(fault))
        self.path = str(path)
        self.fault = str(fault)

    def __str__(self):
        return f'{self.path}: {self.fault}'
