"""What the Python tools under scripts/ share: procstat (a process's memory, CPU time and
descriptors from /proc).

A script puts scripts/ on sys.path (relative to its own __file__) and imports
`from pylib import procstat`. Standard library only.
"""
