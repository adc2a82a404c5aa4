"""The shared kernel of vinculum.

Everything here is imported by every other package and imports nothing of ours: the
manifest models, label selectors, the wire protocol (subjects, messages, CloudEvents),
the NATS connect helper and the local nats-server launcher.
"""
