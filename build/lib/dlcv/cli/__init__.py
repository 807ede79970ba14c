"""The ``dlcv`` command line: it parses arguments and calls the library, nothing else."""
