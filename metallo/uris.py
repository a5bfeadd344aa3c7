"""URIs as Metallo prints them: the user information (``alice:S3cr3t@``) of every URI in a text is masked.

A tracking URI may carry credentials (``http://alice:S3cr3t@host:5000``); every message that shows a URI, or
an error text that may quote one, goes through :func:`masked` first.
"""

from __future__ import annotations

import re

#: ``scheme://userinfo@``: the user information of a URI inside any text (RFC 3986: no ``/``, ``?``, ``#`` in it).
_USERINFO = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*://)[^/?#@\s]+@")
MASK = "***"


def masked(text: object) -> str:
    """``text`` with the user information of every URI in it replaced by ``***`` (``http://***@host:5000``)."""
    return _USERINFO.sub(rf"\g<1>{MASK}@", str(text))
