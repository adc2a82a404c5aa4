"""``wascc:extras``: random numbers, GUIDs and sequence numbers (codec ``extras.rs``).

| operation (actor -> provider) | payload | answer |
|---|---|---|
| ``RequestGuid`` | ``GeneratorRequest`` | ``GeneratorResult`` with ``guid`` |
| ``RequestRandom`` | ``GeneratorRequest``: ``random``, ``min``, ``max`` | ... ``randomNumber`` |
| ``RequestSequence`` | ``GeneratorRequest`` | ``GeneratorResult`` with ``sequenceNumber`` |

``GeneratorRequest`` is ``{guid: bool, sequence: bool, random: bool, min: u32, max: u32}``,
every field required (``wascc-actor`` sends all five); ``GeneratorResult`` is ``{guid:
Option<String>, sequenceNumber: u64, randomNumber: u32}``, the fields not asked for nil
or 0. As in ``wascc-host``'s own extras provider: a random number is in ``[min, max)``
(a request with ``random`` false gets all zeros), a GUID is a random (v4) UUID in its
hyphenated form, and the sequence counts per actor from 0.
"""

from __future__ import annotations

from dataclasses import dataclass

from hostagent.wascc_codec import U32, U64

OP_REQUEST_GUID = "RequestGuid"
OP_REQUEST_SEQUENCE = "RequestSequence"
OP_REQUEST_RANDOM = "RequestRandom"


@dataclass(frozen=True, kw_only=True)
class GeneratorRequest:
    """What an actor asks to be generated (flattened: flags rather than an enum)."""

    guid: bool
    sequence: bool
    random: bool
    min: U32
    max: U32


@dataclass(frozen=True, kw_only=True)
class GeneratorResult:
    """What was generated; what was not asked for is nil or 0."""

    guid: str | None = None
    sequence_number: U64
    random_number: U32
