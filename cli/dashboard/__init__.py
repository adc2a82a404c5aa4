"""``latticectl dashboard``: a read-only web view of the lattice and its status branch.

:mod:`cli.dashboard.model` turns what latticectl already reads (the status branch, the
hosts' inventories, the lattice's events) into view models, purely;
:mod:`cli.dashboard.picture` keeps them current from git and NATS; :mod:`cli.dashboard.server`
serves server-rendered pages (Jinja2 templates) and a server-sent event stream that tells
the pages' script which regions to fetch again. Nothing here can change the lattice or the
repository: it imports readers only (import-linter checks it).
"""
