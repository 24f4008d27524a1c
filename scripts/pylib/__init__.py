"""What the Python tools under scripts/ share: httpio (reading HTTP/1.1 responses) and
procstat (a process's memory, CPU time and descriptors from /proc).

A script puts scripts/ on sys.path (relative to its own __file__) and imports
`from pylib import httpio, procstat`. Standard library only.
"""
