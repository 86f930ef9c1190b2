"""
The C{rfb} adapter: VNC (RFB 3.3, 3.7, 3.8, RFC 6143) as the C{raw} adapter
carries it (binary messages to and from a byte stream, subprotocol
C{binary} or none, as noVNC and websockify do), with the protocol followed
and enforced:

  - the handshake (versions, security types, VNC authentication, security
    result, ClientInit/ServerInit) is parsed both ways; only the security
    types the service allows (C{none}, C{vnc}) may be used, and the client
    is offered only those;
  - with a configured password, the gateway answers the server's VNC
    authentication challenge itself and offers the client security type
    None: browser users never see the VNC password;
  - once running, every client message is parsed (SetPixelFormat,
    SetEncodings, FramebufferUpdateRequest, KeyEvent, PointerEvent,
    ClientCutText and the common extensions); unknown types and oversized
    ones end the session;
  - input is authorized through the policy (action C{input} on
    C{keyboard}, C{pointer}, C{clipboard}, C{resize}): for a view-only
    user, key events, clipboard and resizes are dropped and pointer events
    pass with their buttons released (moves only); the session still
    renders.

Server messages after ServerInit pass unparsed, as bytes, like C{raw}.
Close codes: 1002 malformed, 1008 policy (a forbidden security type),
1009 too big, 1014 the server refused the gateway's password.
"""

from __future__ import annotations

import enum
import re
import struct
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes

from zope.interface import implementer

from tunnelgw.config.values import (
    ConfigError,
    Table,
    file_text,
    positive_int_value,
    string_value,
    strings_value,
)
from tunnelgw.interfaces import IAdapter, IAdapterFactory, ITunnel
from tunnelgw.logs import Logger

__all__ = ["RfbAdapter", "RfbAdapterFactory", "RfbOptions", "vnc_auth_response"]

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
_VERSION = re.compile(rb"RFB (\d{3})\.(\d{3})\n")
# The versions a client may answer, and the handshake each means: 3.3, 3.7
# and 3.8 (RFC 6143 7.1.1), the 3.x that clients report and that speak 3.3's
# handshake (3.4 and 3.6, UltraVNC; 3.5), and Apple's 3.889, which speaks
# 3.8's.  Anything else (RFB 009.999) is not guessed at.
_CLIENT_VERSIONS = {
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


@dataclass(frozen=True)
class RfbOptions:
    security_types: frozenset[int] = frozenset({VNC_AUTH})
    password: str | None = None
    max_cut_text: int = 256 * 1024
    max_encodings: int = 128


class _Refused(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class _Phase(enum.Enum):
    VERSION_S = "server version"
    VERSION_C = "client version"
    SECURITY_S = "server security types"
    SECURITY_C = "client security type"
    CHALLENGE_S = "VNC authentication challenge"
    RESPONSE_C = "VNC authentication response"
    RESULT_S = "security result"
    INIT_C = "ClientInit"
    INIT_S = "ServerInit"
    RUNNING = "running"
    DONE = "done"


def _names(types: Any) -> str:
    return ", ".join(TYPE_NAMES.get(t, str(t)) for t in types) or "none"


@implementer(IAdapter)
class RfbAdapter:
    log = Logger()

    def __init__(self, tunnel: ITunnel, options: RfbOptions) -> None:
        self._tunnel = tunnel
        self._options = options
        self._phase = _Phase.VERSION_S
        self._from_client = bytearray()
        self._from_server = bytearray()
        self._version = (3, 8)
        self._injecting = False
        self._chosen = 0
        self._offered: list[int] = []
        self._allowed: dict[str, bool] | None = None
        self._dropped = 0

    # -- entry points -------------------------------------------------------

    def client_message(self, payload: bytes, is_binary: bool) -> None:
        if self._phase is _Phase.DONE:
            return
        if not is_binary and not self._tunnel.service.allow_text:
            self._fail(_Refused(1003, "text messages are not RFB (send binary messages)"))
            return
        self._from_client += payload
        self._advance()

    def backend_data(self, data: bytes) -> None:
        if self._phase is _Phase.RUNNING:
            # the hot path: framebuffer updates pass as they come
            self._tunnel.send_client(data, True)
            return
        if self._phase is _Phase.DONE:
            return
        self._from_server += data
        self._advance()

    # -- the handshake, one step at a time ------------------------------------

    def _advance(self) -> None:
        to_server = bytearray()
        try:
            while self._phase not in (_Phase.RUNNING, _Phase.DONE):
                if not self._step(to_server):
                    break
            if self._phase is _Phase.RUNNING:
                self._client_messages(to_server)
                if self._from_server:
                    data, self._from_server = bytes(self._from_server), bytearray()
                    self._tunnel.send_client(data, True)
            if len(self._from_client) > MAX_PRE_SESSION + self._running_limit():
                raise _Refused(MESSAGE_TOO_BIG, "the client sent too much ahead of the handshake")
            if self._phase is not _Phase.RUNNING and len(self._from_server) > MAX_PRE_SESSION + 65536:
                raise _Refused(BAD_GATEWAY, "the VNC server sent too much during the handshake")
        except _Refused as refused:
            if to_server:
                self._tunnel.send_backend(bytes(to_server))
            self._fail(refused)
            return
        if to_server:
            self._tunnel.send_backend(bytes(to_server))

    def _running_limit(self) -> int:
        return 8 + self._options.max_cut_text if self._phase is _Phase.RUNNING else 0

    def _take(self, buf: bytearray, n: int) -> bytes | None:
        if len(buf) < n:
            return None
        data = bytes(buf[:n])
        del buf[:n]
        return data

    def _step(self, to_server: bytearray) -> bool:
        """
        One handshake step if its bytes are there; C{False} to wait.
        """
        phase = self._phase
        s, c = self._from_server, self._from_client
        if phase is _Phase.VERSION_S:
            data = self._take(s, 12)
            if data is None:
                return False
            if not _VERSION.fullmatch(data):
                raise _Refused(BAD_GATEWAY, "the server did not send an RFB version")
            self._send_client(data)
            self._phase = _Phase.VERSION_C
        elif phase is _Phase.VERSION_C:
            data = self._take(c, 12)
            if data is None:
                return False
            match = _VERSION.fullmatch(data)
            if not match:
                raise _Refused(PROTOCOL_ERROR, "not an RFB protocol version")
            major, minor = int(match[1]), int(match[2])
            version = _CLIENT_VERSIONS.get((major, minor))
            if version is None:
                raise _Refused(PROTOCOL_ERROR, f"RFB {major}.{minor} is not a version this gateway speaks")
            self._version = version
            to_server += data
            self._phase = _Phase.SECURITY_S
        elif phase is _Phase.SECURITY_S:
            return self._server_security(to_server)
        elif phase is _Phase.SECURITY_C:
            data = self._take(c, 1)
            if data is None:
                return False
            self._client_choice(data[0], to_server)
        elif phase is _Phase.CHALLENGE_S:
            challenge = self._take(s, 16)
            if challenge is None:
                return False
            if self._injecting:
                assert self._options.password is not None
                to_server += vnc_auth_response(self._options.password, challenge)
                self._phase = _Phase.RESULT_S
            else:
                self._send_client(challenge)
                self._phase = _Phase.RESPONSE_C
        elif phase is _Phase.RESPONSE_C:
            data = self._take(c, 16)
            if data is None:
                return False
            to_server += data
            self._phase = _Phase.RESULT_S
        elif phase is _Phase.RESULT_S:
            return self._security_result()
        elif phase is _Phase.INIT_C:
            data = self._take(c, 1)
            if data is None:
                return False
            if not self._permitted("pointer") or not self._permitted("keyboard"):
                data = b"\x01"  # a viewer shares: it may not take the desktop from others
            to_server += data
            self._phase = _Phase.INIT_S
        elif phase is _Phase.INIT_S:
            if len(s) < 24:
                return False
            (name_length,) = struct.unpack_from("!I", s, 20)
            if name_length > 65536:
                raise _Refused(BAD_GATEWAY, "the server's desktop name is too long")
            data = self._take(s, 24 + name_length)
            if data is None:
                return False
            self._send_client(data)
            self._phase = _Phase.RUNNING
            self.log.info(
                "tunnel {conn_id}: RFB session of {principal} running (RFB {version}, security {security}{how})",
                event="rfb_session",
                conn_id=self._tunnel.conn_id,
                principal=self._tunnel.subject.principal,
                version=".".join(map(str, self._version)),
                security=TYPE_NAMES.get(self._chosen, str(self._chosen)),
                injected=self._injecting,
                view_only=not self._permitted("keyboard"),
                how=", password injected" if self._injecting else "",
            )
        return True

    def _server_security(self, to_server: bytearray) -> bool:
        s = self._from_server
        allowed = self._options.security_types
        if self._version == (3, 3):
            if len(s) < 4:
                return False
            (kind,) = struct.unpack_from("!I", s)
            if kind == 0:
                return self._server_failure(4)
            del s[:4]
            if kind not in allowed:
                raise _Refused(
                    POLICY_VIOLATION,
                    f"the server wants security type {_names([kind])}; this service allows {_names(sorted(allowed))}",
                )
            self._chosen = kind
            if kind == VNC_AUTH and self._options.password is not None:
                self._injecting = True
                self._send_client(struct.pack("!I", NONE))
            else:
                self._send_client(struct.pack("!I", kind))
            self._after_choice()
            return True
        if not s:
            return False
        count = s[0]
        if count == 0:
            return self._server_failure(1)
        if len(s) < 1 + count:
            return False
        offered = list(s[1 : 1 + count])
        del s[: 1 + count]
        usable = [t for t in offered if t in allowed]
        if VNC_AUTH in usable and self._options.password is not None:
            self._injecting = True
            client_offer = [NONE]
        else:
            client_offer = usable
        if not client_offer:
            reason = f"the server offers {_names(offered)}; this service allows {_names(sorted(allowed))}"
            if self._version == (3, 8):
                text = reason.encode()
                self._send_client(b"\x00" + struct.pack("!I", len(text)) + text)
            raise _Refused(POLICY_VIOLATION, reason)
        self._offered = client_offer
        self._send_client(bytes([len(client_offer)]) + bytes(client_offer))
        self._phase = _Phase.SECURITY_C
        return True

    def _server_failure(self, header: int) -> bool:
        """
        The server refused the connection with a reason: pass it on whole.
        """
        s = self._from_server
        if len(s) < header + 4:
            return False
        (length,) = struct.unpack_from("!I", s, header)
        if length > 4096:
            raise _Refused(BAD_GATEWAY, "the server's failure reason is too long")
        data = self._take(s, header + 4 + length)
        if data is None:
            return False
        self._send_client(data)
        self._phase = _Phase.DONE
        return False

    def _client_choice(self, choice: int, to_server: bytearray) -> None:
        if choice not in self._offered:
            raise _Refused(PROTOCOL_ERROR, f"security type {_names([choice])} was not offered")
        if self._injecting:
            choice = VNC_AUTH
        self._chosen = choice
        to_server.append(choice)
        self._after_choice()

    def _after_choice(self) -> None:
        if self._chosen == VNC_AUTH:
            self._phase = _Phase.CHALLENGE_S
        elif self._version == (3, 8):
            self._phase = _Phase.RESULT_S
        else:
            self._phase = _Phase.INIT_C

    def _security_result(self) -> bool:
        s = self._from_server
        if len(s) < 4:
            return False
        (result,) = struct.unpack_from("!I", s)
        if result == 0:
            del s[:4]
            # the client chose None: before 3.8 it expects no result
            if not self._injecting or self._version == (3, 8):
                self._send_client(b"\x00\x00\x00\x00")
            self._phase = _Phase.INIT_C
            return True
        if self._injecting:
            raise _Refused(BAD_GATEWAY, "the VNC server refused the gateway's password")
        if self._version == (3, 8):
            return self._server_failure(4)
        self._send_client(self._take(s, 4) or b"")
        self._phase = _Phase.DONE
        return False

    # -- the session ------------------------------------------------------------

    def _permitted(self, what: str) -> bool:
        if self._allowed is None:
            self._allowed = {name: self._tunnel.permits("input", name) for name in INPUTS}
        return self._allowed[what]

    def _client_messages(self, to_server: bytearray) -> None:
        buf = self._from_client
        while buf:
            kind = buf[0]
            length = self._message_length(kind, buf)
            if length is None or len(buf) < length:
                return
            message = bytes(buf[:length])
            del buf[:length]
            permission = _INPUT_OF.get(kind)
            if kind == 255 and message[1] != 0:
                permission = None  # QEMU audio control is not input
            if permission is None or self._permitted(permission):
                to_server += message
            elif kind == 5:
                # a viewer's pointer moves pass, its buttons do not
                to_server += b"\x05\x00" + message[2:]
                self._dropped += 1
            else:
                self._dropped += 1
                if self._dropped == 1:
                    self.log.info(
                        "tunnel {conn_id}: view-only: input from {principal} dropped",
                        event="rfb_input_dropped",
                        conn_id=self._tunnel.conn_id,
                        principal=self._tunnel.subject.principal,
                    )

    def _message_length(self, kind: int, buf: bytearray) -> int | None:
        """
        The length of the client message starting C{buf}, C{None} until
        enough of it is there to tell.

        @raise _Refused: unknown or oversized.
        """
        fixed = _FIXED.get(kind)
        if fixed is not None:
            return fixed
        if kind == 2:  # SetEncodings
            if len(buf) < 4:
                return None
            (count,) = struct.unpack_from("!H", buf, 2)
            if count > self._options.max_encodings:
                raise _Refused(
                    MESSAGE_TOO_BIG,
                    f"SetEncodings with {count} encodings (limit {self._options.max_encodings})",
                )
            return 4 + 4 * count
        if kind == 6:  # ClientCutText (a negative length: extended clipboard)
            if len(buf) < 8:
                return None
            (length,) = struct.unpack_from("!i", buf, 4)
            if abs(length) > self._options.max_cut_text:
                raise _Refused(
                    MESSAGE_TOO_BIG,
                    f"ClientCutText of {abs(length)} bytes (limit {self._options.max_cut_text})",
                )
            return 8 + abs(length)
        if kind == 248:  # ClientFence
            if len(buf) < 9:
                return None
            if buf[8] > 64:
                raise _Refused(PROTOCOL_ERROR, "ClientFence payload longer than 64 bytes")
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
            raise _Refused(PROTOCOL_ERROR, f"unknown QEMU client message {buf[1]}")
        raise _Refused(PROTOCOL_ERROR, f"unknown RFB client message type {kind}")

    # -- helpers -----------------------------------------------------------------

    def _send_client(self, data: bytes) -> None:
        self._tunnel.send_client(data, True)

    def _fail(self, refused: _Refused) -> None:
        self._phase = _Phase.DONE
        self.log.info(
            "tunnel {conn_id}: RFB from {principal} refused: {reason}",
            event="rfb_refused",
            conn_id=self._tunnel.conn_id,
            principal=self._tunnel.subject.principal,
            reason=refused.reason,
            code=refused.code,
        )
        self._tunnel.fail(refused.code, refused.reason)


_FIXED = {0: 20, 3: 10, 4: 8, 5: 6, 150: 10}
_INPUT_OF = {4: "keyboard", 5: "pointer", 6: "clipboard", 251: "resize", 255: "keyboard"}


def _security_types(key: str, value: Any) -> frozenset[int]:
    names = strings_value(key, value)
    unknown = [n for n in names if n not in SECURITY_TYPES]
    if unknown:
        raise ConfigError(
            f"{key}: {', '.join(unknown)}: the gateway can follow only none and vnc"
            " (other security types encrypt or hide what it must inspect)"
        )
    if not names:
        raise ConfigError(f"{key}: at least one security type is needed")
    return frozenset(SECURITY_TYPES[n] for n in names)


@implementer(IAdapterFactory)
class RfbAdapterFactory:
    name = "rfb"
    needs_upstream = True
    subprotocols = None  # "binary" or none, like raw

    def needs_policy(self, options: Any) -> bool:
        return True

    def parse_options(self, options: dict[str, Any], key: str) -> RfbOptions:
        table = Table(options, key)
        security = table.take("security_types", _security_types, frozenset({VNC_AUTH}))
        password = table.take("password", string_value, None)
        password_file = table.take("password_file", string_value, None)
        max_cut_text = table.take("max_cut_text", positive_int_value, 256 * 1024)
        max_encodings = table.take("max_encodings", positive_int_value, 128)
        table.done()
        if password_file is not None:
            if password is not None:
                raise ConfigError(f"{table.key('password_file')}: set password or password_file, not both")
            password = file_text(table.key("password_file"), password_file).strip()
        if password is not None and VNC_AUTH not in security:
            raise ConfigError(f'{table.key("password")}: injection needs "vnc" in security_types')
        return RfbOptions(security, password, max_cut_text, max_encodings)

    def build(self, tunnel: ITunnel) -> IAdapter:
        options = tunnel.service.adapter_options
        assert isinstance(options, RfbOptions)
        return RfbAdapter(tunnel, options)
