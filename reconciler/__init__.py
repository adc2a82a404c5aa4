"""The vinculum: the agent that reconciles desired state from git with a lattice.

Its pure core is :mod:`reconciler.matching` (what satisfies what), :mod:`reconciler.planner`
(``plan(desired, observed) -> actions``, typed records from :mod:`reconciler.actions`) and
:mod:`reconciler.assess` (ready counts, placements and conditions for the status writer).
Around it sit the observed-state tracker, the executor (the only code that talks to the
lattice), the leader lease and the agent's main loop.
"""
