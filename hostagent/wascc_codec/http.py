"""The HTTP records of the waSCC codec: what ``wascc:http_server`` hands an actor.

waSCC's ``wascc-codec`` crate (0.6 to 0.8, ``src/http.rs``) defines two structs, encoded
with ``rmp-serde`` as MessagePack *maps* (``Serializer::with_struct_map``) whose keys are
the camelCase field names, in this order:

``Request`` (operation ``HandleRequest``, provider to actor)::

    {"method": str, "path": str, "queryString": str,
     "header": {str: str}, "body": bin}

``Response`` (the actor's answer)::

    {"statusCode": uint, "status": str, "header": {str: str}, "body": bin}

``method``, ``path`` and ``queryString`` are required (a waSCC actor fails with ``Failed
to de-serialize: missing field queryString`` without it), as are ``statusCode`` (a u32)
and ``status``; ``header`` and ``body`` default to empty. ``header`` is a map of single
string values; ``body`` is raw bytes (``serde_bytes``: MessagePack bin). Unknown keys are
ignored; the package's ``deserialize`` reads what rmp-serde reads (a struct as an array
of its fields, a bin as a str or an array of bytes) and names what is wrong, e.g.
``Failed to de-serialize a Request: missing field queryString``.

How waSCC's actix provider filled a Request and read a Response (``http-server-provider``,
``request_handler`` and ``extract_headers``): ``method`` as sent (``GET``), ``path`` the
URL's path without the query (``/hello``), ``queryString`` the raw query after ``?``
(``a=1``, not decoded, ``""`` when absent), ``header`` every request header under its
lower-case name (actix's ``HeaderName``), a repeated header keeping one value, and
``body`` the request's bytes. The Response became the HTTP response's status code
(the ``status`` text unsent: actix's canonical reason instead) and body; its headers were
dropped by the provider of the ``wascc:`` era and set, one value each, by its
``wasmcloud:httpserver`` successor. An actor error became ``500`` ``Failed to handle
request`` (logged), an undecodable Response ``500`` ``Malformed response from actor``.
It listened on ``0.0.0.0:PORT`` (``8080`` without ``PORT``). Our provider
(:mod:`hostagent.providers.http_server`) fills and reads the records the same way, but
joins a repeated request header's values with ``", "`` (RFC 9110 5.3) instead of keeping
one, sets the response's headers, sends ``status`` as the reason phrase when it is
printable, needs ``PORT`` and listens on loopback unless told otherwise.

Pure: records only; ``serialize``/``deserialize`` of :mod:`hostagent.wascc_codec` encode
them, the provider does the I/O.

>>> from hostagent.wascc_codec import serialize
>>> serialize(Response(status_code=200, status="OK")).hex()
'84aa737461747573436f6465ccc8a6737461747573a24f4ba668656164657280a4626f6479c400'
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hostagent.wascc_codec import U32

#: the operation a ``wascc:http_server`` provider calls on its actor
OP_HANDLE_REQUEST = "HandleRequest"
#: the ``wascc:httpclient`` operation of the same codec module (not served by vinculum)
OP_PERFORM_REQUEST = "PerformRequest"


@dataclass(frozen=True, kw_only=True)
class Request:
    """An HTTP request as an actor reads it (``HandleRequest``'s payload)."""

    method: str
    path: str
    query_string: str
    header: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass(frozen=True, kw_only=True)
class Response:
    """An actor's answer to ``HandleRequest``."""

    status_code: U32
    status: str
    header: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
