"""Capability providers: Python classes that give actors a capability (messaging,
key-value, logging, extras, an LED strip), discovered through the ``vinculum.providers``
entry-point group (:mod:`.registry`); the protocol they implement is in :mod:`.base`.
Those of the ``wascc:*`` capability ids speak waSCC's codec (:mod:`hostagent.wascc_codec`)."""
