"""The git side of vinculum: desired state in, status out.

* :mod:`gitsync.source` opens a repository (a local path watched in place, read-only, or a
  remote URL mirrored into the agent's data dir) and turns the tree at a commit into a
  validated :class:`~lattice.manifests.DesiredState`, cached by tree id;
* :mod:`gitsync.watch` yields each new head of the branch (watchfiles on a local
  repository's refs, an APScheduler fetch interval plus nudges for a remote one);
* :mod:`gitsync.status` writes notes under ``refs/notes/lattice`` and the
  ``lattice/status`` orphan branch with plumbing, coalesced, pushed when remote;
* :mod:`gitsync.apply` is ``latticectl apply``/``delete``: validate, commit, push, retry.

The reconciler calls the sync APIs through ``asyncio.to_thread``. This package imports
only :mod:`lattice` of ours.
"""
