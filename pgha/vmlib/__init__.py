"""The library the Python programs on the VMs share (see ``pgha/vmprograms.py``).

Standard library only, shipped to the VMs file by file beside the programs:
nothing here may import anything else of pgha, and this file stays empty (on a
VM ``pgha.vmlib`` is a namespace package, without it).
"""
