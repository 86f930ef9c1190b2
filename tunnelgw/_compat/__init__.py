"""
The fence: everything tunnelgw does with what its libraries do not promise
(private names of Twisted, autobahn and txaio; replacements of their
behaviour) lives in this package, one module per library.  Nothing else in
tunnelgw may touch a library's private attribute
(C{tests/unit/test_compat.py} scans the tree, and tests every entry here
against the real library objects, so that a release that changes them
fails the suite rather than the gateway).

Two kinds of entry:

  - B{shortcuts}: the same behaviour for less CPU or memory.  Each is named
    in L{SHORTCUTS} with what it saves and the public API it falls back to,
    and each can be switched off: C{TUNNELGW_PUBLIC_API=name,name} (or
    C{all}) in the gateway's environment makes it use that public API
    instead.  C{bench/compare.py --ablation} measures every shortcut
    against its fallback in one run (docs/benchmarks.md, "Ablation";
    C{tls_writes}, which only TLS shows, in C{bench/users.py}); one that
    saves under 3% on its bench is removed.
  - B{fixes}: behaviour the public API does not offer (a bound, nothing
    lost).  They are not switched off: the gateway's invariants rest on
    them.

This module is a leaf: it imports nothing of tunnelgw, and its children
are imported by the stages that use them.
"""

from __future__ import annotations

import os

__all__ = ["SHORTCUTS", "ENVIRONMENT", "enabled", "disabled", "check"]

ENVIRONMENT = "TUNNELGW_PUBLIC_API"
"""The environment variable naming the shortcuts to switch off."""

SHORTCUTS: dict[str, str] = {
    "reactor": (
        "twisted: epoll without a legacy logging context per I/O event"
        " (EPollReactor's _poller, _selectables, _doReadOrWrite);"
        " public: EPollReactor"
    ),
    "write_now": (
        "twisted: a write, a half-close or a close on an idle plain TCP"
        " connection goes to the kernel now, not on the reactor's next turn"
        " (tcp.Connection's _tempDataLen, _writeDisconnecting,"
        " _writeDisconnected, _closeWriteConnection, _shouldShutdown);"
        " public: write, loseWriteConnection, loseConnection"
    ),
    "tls_writes": (
        "twisted: a write on an idle TLS connection is encrypted whole and"
        " goes to the kernel now, not gathered for the reactor's next turn"
        " and cut in 16 KiB writes (TLSMemoryBIOProtocol's _tlsConnection,"
        " _handshakeDone, _appSendBuffer; BufferingTLSTransport's"
        " _aggregator); public: write"
    ),
    "handshake": (
        "autobahn: the admitted head is answered without a second parse"
        " (_wskey, succeedHandshake); public: onConnect"
    ),
    "transport_details": (
        "autobahn: no WAMP transport details built per connection (process"
        " and thread ids, TLS channel binding; its connectionMade without"
        " them: _connectionMade); public: connectionMade"
    ),
    "small_masks": (
        "autobahn: a frame under 2 KiB unmasked in Python (two integers"
        " XORed) rather than by an NVX masker made for it"
        " (autobahn.websocket.protocol's create_xor_masker);"
        " public: autobahn's masker"
    ),
    "utf8_text": (
        "autobahn: text checked as UTF-8 by CPython's incremental decoder"
        " rather than NVX's byte-by-byte validator"
        " (autobahn.websocket.protocol's Utf8Validator);"
        " public: autobahn's validator"
    ),
    "whole_frames": (
        "autobahn: a message of one frame, whole in the read that brings it,"
        " goes to the leg's _onMessage in one pass over the read, not through"
        " autobahn's per-frame parse, hooks and 'message' event (current_frame,"
        " inside_message, _perMessageCompress, _cancelAutoPingTimeoutCall);"
        " public: dataReceived"
    ),
    "whole_sends": (
        "autobahn: a server's message of one frame framed in two lines and"
        " given to sendData, not through sendMessage's and sendFrame's"
        " general case (state, maskServerFrames, _perMessageCompress,"
        " autoFragmentSize); public: sendMessage"
    ),
    "class_options": (
        "autobahn: a service's options on its protocol class, not copied"
        " per connection (CONFIG_ATTRS); public: the factory's copy"
    ),
    "lazy_debug": (
        "autobahn: the arguments of its debug lines formatted only when"
        " logged (its modules' pformat, hltype, hlval); public: as autobahn does"
    ),
    "lean_tunnels": (
        "autobahn: what an open tunnel does not need is dropped (the send"
        " queue, the handshake's leftovers _wskey, _transport_details);"
        " public: kept as autobahn keeps them"
    ),
}
"""Every shortcut by name: what it saves, what it uses, its public fallback."""


def disabled(environ: dict[str, str] | None = None) -> frozenset[str]:
    """
    The shortcuts the environment switches off.
    """
    text = (os.environ if environ is None else environ).get(ENVIRONMENT, "")
    names = {name.strip() for name in text.split(",") if name.strip()}
    if "all" in names:
        return frozenset(SHORTCUTS)
    return frozenset(names)


_DISABLED = disabled()


def enabled(name: str) -> bool:
    """
    Whether the shortcut C{name} is in use in this process.
    """
    assert name in SHORTCUTS, name
    return name not in _DISABLED


def check(environ: dict[str, str] | None = None) -> None:
    """
    @raise ValueError: the environment names a shortcut there is not.
    """
    unknown = disabled(environ) - set(SHORTCUTS)
    if unknown:
        raise ValueError(
            f"{ENVIRONMENT}: no shortcut named {', '.join(sorted(unknown))}"
            f" (there are: {', '.join(SHORTCUTS)}, or all)"
        )
