"""Safety numbers: a human-comparable fingerprint of two users' identity keys, as digits and a QR code.

Melo has no per-user identity key (no cross-signing yet), so a party's identity is the set of device
ed25519 keys being vouched for — usually the one device under verification, or all of a user's devices.
Construction (after Signal's numeric fingerprints): per party, SHA-512 iterated 5,200 times over
version ‖ keys ‖ stable user id, the first 30 bytes read as six 5-byte big-endian numbers mod 100,000
(30 digits). The two parties' digits are concatenated in ascending (user id, digits) order, so both sides
compute the same 60 digits, shown as 12 groups of 5. Any key change changes the number.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

VERSION = 0
ITERATIONS = 5200
QR_PREFIX = "melo-safety:1:"


@dataclass(frozen=True)
class PartyIdentity:
    """One side: a stable user id and the ed25519 key(s) of the device(s) being vouched for."""

    user_id: int
    ed25519_keys: tuple[str, ...]

    @classmethod
    def of(cls, user_id: int, keys: str | Iterable[str]) -> PartyIdentity:
        return cls(user_id, (keys,) if isinstance(keys, str) else tuple(keys))


def party_digits(party: PartyIdentity) -> str:
    """The 30 digits of one party."""
    key_material = b"".join(k.encode("ascii") + b"\n" for k in sorted(party.ed25519_keys))
    stable_id = str(party.user_id).encode("ascii")
    digest = hashlib.sha512(VERSION.to_bytes(2, "big") + key_material + stable_id).digest()
    for _ in range(ITERATIONS - 1):
        digest = hashlib.sha512(digest + key_material).digest()
    return "".join(f"{int.from_bytes(digest[i:i + 5], 'big') % 100_000:05d}" for i in range(0, 30, 5))


def safety_digits(a: PartyIdentity, b: PartyIdentity) -> str:
    """60 digits, the same whichever party computes them."""
    parts = sorted([(a.user_id, party_digits(a)), (b.user_id, party_digits(b))])
    return parts[0][1] + parts[1][1]


def safety_number(a: PartyIdentity, b: PartyIdentity) -> str:
    """12 groups of 5 digits separated by spaces, e.g. "12345 67890 …"."""
    digits = safety_digits(a, b)
    return " ".join(digits[i:i + 5] for i in range(0, 60, 5))


def safety_qr_payload(a: PartyIdentity, b: PartyIdentity) -> str:
    return QR_PREFIX + safety_digits(a, b)


def safety_qr(a: PartyIdentity, b: PartyIdentity, *, invert: bool = True, border: int = 2) -> str:
    """The QR code of the safety number as terminal text: Unicode half blocks, two modules rows per line.

    `invert=True` (the default) draws light modules as blocks, which reads correctly on the usual dark
    terminal background; use False on a light background.
    """
    import segno  # here, not at the top: every command imports this package, few draw a QR code

    qr = segno.make_qr(safety_qr_payload(a, b), error="m")
    rows = [[bool(cell) != invert for cell in row] for row in qr.matrix_iter(border=border)]
    if len(rows) % 2:
        rows.append([not invert] * len(rows[0]))
    glyphs = {(True, True): "█", (True, False): "▀", (False, True): "▄", (False, False): " "}
    return "\n".join("".join(glyphs[(top, bottom)] for top, bottom in zip(upper, lower, strict=True))
                     for upper, lower in zip(rows[0::2], rows[1::2], strict=True))
