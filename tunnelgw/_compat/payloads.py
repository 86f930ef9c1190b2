"""
What tunnelgw does with how autobahn reads a frame's payload (see
L{tunnelgw._compat}): its masks and its UTF-8 validation, both done by
NVX, autobahn's C extension, through a C object per frame or per call.
For the payloads a tunnel mostly carries, CPython's own C does it for
less: the shortcuts replace the names autobahn's protocol module reads
(C{create_xor_masker}, C{Utf8Validator}), and each falls back to
autobahn's when switched off.

  - C{small_masks}: L{install_small_masks}, L{SmallMasker}.
  - C{utf8_text}: L{install_text_validator}, L{TextValidator}.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable
from typing import Any

import autobahn.websocket.protocol as _autobahn_protocol

from tunnelgw._compat import enabled

__all__ = ["SMALL_FRAME", "SmallMasker", "TextValidator", "install_small_masks", "install_text_validator"]


# -- shortcut "small_masks" -----------------------------------------------------

SMALL_FRAME = 2048
"""Frames shorter than this (bytes) are unmasked by L{SmallMasker}."""
_SMALL_MASKS = enabled("small_masks")


class SmallMasker:
    """
    autobahn's frame masker (C{pointer}, C{reset}, C{process}) for a short
    frame: the payload and the repeated key XORed as two integers, three
    calls into C.  NVX's masker makes a C object per frame (allocated,
    tied to the collector, configured) and copies the payload in and
    out: for a 32-byte frame that is five times the work.
    """

    __slots__ = ("_mask", "_ptr")

    def __init__(self, mask: bytes) -> None:
        self._mask = bytes(mask)
        self._ptr = 0

    def pointer(self) -> int:
        return self._ptr

    def reset(self) -> None:
        self._ptr = 0

    def process(self, data: bytes) -> bytes:
        mask = self._mask
        shift = self._ptr & 3  # a frame's payload may come in pieces
        if shift:
            mask = mask[shift:] + mask[:shift]
        self._ptr += len(data)
        return _xor(mask, data)


def _xor(mask: bytes, data: bytes) -> bytes:
    size = len(data)
    key = (mask * ((size >> 2) + 1))[:size]
    return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(size, "little")


def unmask(mask: bytes, payload: bytes) -> bytes:
    """
    A whole frame's C{payload} unmasked with its C{mask}: by L{SmallMasker}'s
    XOR when short (shortcut C{small_masks}), else by autobahn's masker.
    """
    size = len(payload)
    if _SMALL_MASKS and size < SMALL_FRAME:
        return _xor(mask, payload)
    return _autobahn_protocol.create_xor_masker(mask, size).process(payload)  # type: ignore[no-any-return]


def install_small_masks() -> None:
    """
    autobahn makes a masker per masked frame with C{create_xor_masker}
    (read from its protocol module's globals): frames shorter than
    L{SMALL_FRAME} get a L{SmallMasker}, longer ones autobahn's own.
    Idempotent.
    """
    if not _SMALL_MASKS:
        return
    own: Callable[..., Any] = _autobahn_protocol.create_xor_masker
    if getattr(own, "small_masks", False):
        return

    def create_xor_masker(mask: bytes, length: int | None = None) -> Any:
        if length is not None and length < SMALL_FRAME:
            return SmallMasker(mask)
        return own(mask, length)

    create_xor_masker.small_masks = True  # type: ignore[attr-defined]
    _autobahn_protocol.create_xor_masker = create_xor_masker


# -- shortcut "utf8_text" -------------------------------------------------------

_UTF8 = codecs.getincrementaldecoder("utf-8")


class TextValidator:
    """
    autobahn's UTF-8 validator (C{reset}, C{validate} answering valid so
    far, ends on a code point, index in this piece, index in the message)
    on CPython's incremental UTF-8 decoder, which is strict as RFC 6455
    asks (no surrogates, no overlong forms, nothing past U+10FFFF) and,
    with the one check it defers added, fails at the first byte that
    cannot begin or continue a code point, as NVX's does.  NVX's goes
    byte by byte (37 us for 16 KiB of text); the decoder takes ASCII a
    word at a time (2.4 us).
    """

    __slots__ = ("_decoder", "_total", "_held")

    def __init__(self) -> None:
        self._decoder = _UTF8()
        self.reset()

    def reset(self) -> None:
        self._decoder.reset()
        self._total = 0  # bytes of the message so far
        self._held = 0  # of them, the start of a code point the decoder holds

    def validate(self, data: bytes) -> tuple[bool, bool, int, int]:
        start = self._total  # this piece's place in the message
        try:
            self._decoder.decode(data)
        except UnicodeDecodeError as e:
            # where the bad sequence starts (NVX names its bad byte: the
            # same, or up to three bytes on)
            where = start - self._held + e.start
            return False, False, max(0, where - start), where
        self._total = start + len(data)
        pending = self._decoder.getstate()[0]
        self._held = len(pending)
        if self._held >= 2 and pending[0] == 0xED and pending[1] > 0x9F:
            # a surrogate (U+D800 to U+DFFF): the decoder waits for its
            # third byte to say so, NVX does not
            where = self._total - self._held
            return False, False, max(0, where - start), where
        return True, not pending, len(data), self._total


def install_text_validator() -> None:
    """
    autobahn makes its validators (one a connection, one a close reason)
    with the C{Utf8Validator} its protocol module imported: replaced by
    L{TextValidator}.  Idempotent.
    """
    if enabled("utf8_text"):
        setattr(_autobahn_protocol, "Utf8Validator", TextValidator)  # noqa: B010  # a class, in a module
