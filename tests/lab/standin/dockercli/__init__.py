"""The modules of the lab's `docker` stand-in (entry point: ../docker.py); see tests/lab/README.md.

They import `shim` (../shim.py) as a top-level module: the directory above must be on sys.path,
as it is when python3 runs ../docker.py.
"""
