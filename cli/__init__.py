"""``latticectl``: the operator's command line (click).

``cli.main`` holds the group and the global settings; each family of commands lives in a
module of its own and is registered on the group in :mod:`cli.main`.
"""
