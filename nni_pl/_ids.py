"""Random identifiers from the system's randomness, without :mod:`secrets` (which imports :mod:`hmac` and
OpenSSL's hashes, ~3 ms of every ``nni-pl`` command's start).

Example:
    >>> len(random_id(8)), set(random_id(50)) <= set(ID_CHARS), len(url_token(24))
    (8, True, 32)
    >>> set(random_id(50, "ab")) <= {"a", "b"}, 0 <= random_below(3) < 3
    (True, True)
"""

from __future__ import annotations

import base64
import os
import random
import string

ID_CHARS = string.ascii_letters + string.digits
_system = random.SystemRandom()


def random_id(length: int, alphabet: str = ID_CHARS) -> str:
    """``length`` unbiased characters of ``alphabet`` (at most 256), as ``secrets.choice`` picks them, from one
    read of the system's randomness per round: a byte at or above the last whole multiple of ``len(alphabet)``
    would favour the first characters, and is dropped."""
    n = len(alphabet)
    limit = 256 - 256 % n
    out: list[str] = []
    while len(out) < length:
        out += [alphabet[b % n] for b in os.urandom(length + 4) if b < limit]
    return "".join(out[:length])


def random_below(n: int) -> int:
    """A uniform integer in ``[0, n)`` from the system's randomness (``secrets.randbelow``)."""
    return _system.randrange(n)


def url_token(nbytes: int) -> str:
    """``nbytes`` random bytes as URL-safe text (what ``secrets.token_urlsafe`` returns)."""
    return base64.urlsafe_b64encode(os.urandom(nbytes)).rstrip(b"=").decode("ascii")
