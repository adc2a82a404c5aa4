"""Capability providers: Python classes that give actors a capability (messaging,
key-value, an LED strip), discovered through the ``vinculum.providers`` entry-point group
(:mod:`.registry`); the protocol they implement is in :mod:`.base`."""
