"""The ``nni-pl`` command line (see ``nni-pl --help``)."""
