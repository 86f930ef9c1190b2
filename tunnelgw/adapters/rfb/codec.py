"""
RFB (RFC 6143) as the adapter needs it: close codes, security types,
versions, the length of every client message the gateway parses, and the
VNC authentication response.
"""

from __future__ import annotations

import re
import struct

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes

from tunnelgw.adapters.base import Refused as AdapterRefused

__all__ = ["Refused", "message_length", "vnc_auth_response"]

PROTOCOL_ERROR = 1002
POLICY_VIOLATION = 1008
MESSAGE_TOO_BIG = 1009
BAD_GATEWAY = 1014

NONE, VNC_AUTH = 1, 2
SECURITY_TYPES = {"none": NONE, "vnc": VNC_AUTH}
TYPE_NAMES = {0: "invalid", 1: "None", 2: "VNC authentication", 5: "RA2", 6: "RA2ne", 16: "Tight",
              17: "Ultra", 18: "TLS", 19: "VeNCrypt", 20: "GTK-VNC SASL", 21: "MD5", 22: "Colin Dean xvp",
              30: "Apple remote desktop", 113: "MSLogonII"}  # fmt: skip
INPUTS = ("keyboard", "pointer", "clipboard", "resize")
VERSION_LINE = re.compile(rb"RFB (\d{3})\.(\d{3})\n")
# The versions a client may answer, and the handshake each means: 3.3, 3.7
# and 3.8 (RFC 6143 7.1.1), the 3.x that clients report and that speak 3.3's
# handshake (3.4 and 3.6, UltraVNC; 3.5), and Apple's 3.889, which speaks
# 3.8's.  Anything else (RFB 009.999) is not guessed at.
CLIENT_VERSIONS = {
    (3, 3): (3, 3),
    (3, 4): (3, 3),
    (3, 5): (3, 3),
    (3, 6): (3, 3),
    (3, 7): (3, 7),
    (3, 8): (3, 8),
    (3, 889): (3, 8),
}
MAX_PRE_SESSION = 4096  # what either side may send ahead of the handshake step


def vnc_auth_response(password: str, challenge: bytes) -> bytes:
    """
    The VNC authentication response (RFC 6143 7.2.2): the challenge DES
    encrypted with the password (first 8 bytes, zero-padded) as the key,
    each key byte's bits reversed, as VNC has always done.
    """
    raw = password.encode("latin-1", "replace")[:8].ljust(8, b"\0")
    key = bytes(int(f"{byte:08b}"[::-1], 2) for byte in raw)
    # three equal keys: single DES, which the library keeps only in this form
    encryptor = Cipher(TripleDES(key * 3), modes.ECB()).encryptor()
    return encryptor.update(challenge) + encryptor.finalize()


class Refused(AdapterRefused):
    """An RFB refusal (L{tunnelgw.adapters.base.Refused})."""


FIXED_LENGTHS = {0: 20, 3: 10, 4: 8, 5: 6, 150: 10}
INPUT_OF = {4: "keyboard", 5: "pointer", 6: "clipboard", 251: "resize", 255: "keyboard"}


def message_length(kind: int, buf: bytearray, max_encodings: int, max_cut_text: int) -> int | None:
    """
    The length of the client message starting C{buf}, C{None} until
    enough of it is there to tell.

    @raise Refused: unknown or oversized.
    """
    fixed = FIXED_LENGTHS.get(kind)
    if fixed is not None:
        return fixed
    if kind == 2:  # SetEncodings
        if len(buf) < 4:
            return None
        (count,) = struct.unpack_from("!H", buf, 2)
        if count > max_encodings:
            raise Refused(
                MESSAGE_TOO_BIG,
                f"SetEncodings with {count} encodings (limit {max_encodings})",
            )
        return 4 + 4 * count
    if kind == 6:  # ClientCutText (a negative length: extended clipboard)
        if len(buf) < 8:
            return None
        (length,) = struct.unpack_from("!i", buf, 4)
        if abs(length) > max_cut_text:
            raise Refused(
                MESSAGE_TOO_BIG,
                f"ClientCutText of {abs(length)} bytes (limit {max_cut_text})",
            )
        return 8 + abs(length)
    if kind == 248:  # ClientFence
        if len(buf) < 9:
            return None
        if buf[8] > 64:
            raise Refused(PROTOCOL_ERROR, "ClientFence payload longer than 64 bytes")
        return 9 + buf[8]
    if kind == 251:  # SetDesktopSize
        if len(buf) < 8:
            return None
        return 8 + 16 * buf[6]
    if kind == 255:  # QEMU client messages
        if len(buf) < 2:
            return None
        if buf[1] == 0:
            return 12  # extended key event
        if buf[1] == 1:  # audio
            if len(buf) < 4:
                return None
            (operation,) = struct.unpack_from("!H", buf, 2)
            if operation in (0, 1):
                return 4
            if operation == 2:
                return 10
        raise Refused(PROTOCOL_ERROR, f"unknown QEMU client message {buf[1]}")
    raise Refused(PROTOCOL_ERROR, f"unknown RFB client message type {kind}")
