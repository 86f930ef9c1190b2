"""
The C{rfb} adapter's state machine: the handshake followed both ways, the
security type enforced (or the password injected), every client message
parsed and authorized.  The package docstring says what it does and why.
"""

from __future__ import annotations

import enum
import struct
from typing import Any

from zope.interface import implementer

from tunnelgw.adapters.base import log_refusal
from tunnelgw.adapters.rfb.codec import (
    BAD_GATEWAY,
    CLIENT_VERSIONS,
    INPUT_OF,
    INPUTS,
    MAX_PRE_SESSION,
    MESSAGE_TOO_BIG,
    NONE,
    POLICY_VIOLATION,
    PROTOCOL_ERROR,
    TYPE_NAMES,
    VERSION_LINE,
    VNC_AUTH,
    message_length,
    vnc_auth_response,
)
from tunnelgw.adapters.rfb.codec import Refused as _Refused
from tunnelgw.adapters.rfb.options import RfbOptions
from tunnelgw.interfaces import IAdapter, ITunnel
from tunnelgw.logs import Logger

__all__ = ["RfbAdapter"]


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
        self._allowed_under: tuple[object, object] | None = None
        self._viewer = False  # made view-only by a revocation: for good
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
            if not VERSION_LINE.fullmatch(data):
                raise _Refused(BAD_GATEWAY, "the server did not send an RFB version")
            self._send_client(data)
            self._phase = _Phase.VERSION_C
        elif phase is _Phase.VERSION_C:
            data = self._take(c, 12)
            if data is None:
                return False
            match = VERSION_LINE.fullmatch(data)
            if not match:
                raise _Refused(PROTOCOL_ERROR, "not an RFB protocol version")
            major, minor = int(match[1]), int(match[2])
            version = CLIENT_VERSIONS.get((major, minor))
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
                transport=self._tunnel.via,
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
        # asked once per policy and set of principals: a reload that gives
        # the tunnel another policy, or its subject other roles, asks again
        if self._viewer:
            return False
        policy, principals = getattr(self._tunnel, "policy", None), self._tunnel.subject.principals
        seen = self._allowed_under
        if self._allowed is None or seen is None or policy is not seen[0] or principals is not seen[1]:
            self._allowed = {name: self._tunnel.permits("input", name) for name in INPUTS}
            self._allowed_under = (policy, principals)
        return self._allowed[what]

    def downgrade(self) -> bool:
        """
        A revocation names this session (see L{tunnelgw.cluster.revocations}):
        with C{on_revoke = "view_only"} it goes on without input (the screen
        still shows), and C{True}; else C{False}, and the tunnel ends.
        """
        if self._options.on_revoke != "view_only":
            return False
        self._viewer = True
        return True

    def _client_messages(self, to_server: bytearray) -> None:
        buf = self._from_client
        while buf:
            kind = buf[0]
            length = self._message_length(kind, buf)
            if length is None or len(buf) < length:
                return
            message = bytes(buf[:length])
            del buf[:length]
            permission = INPUT_OF.get(kind)
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
                        transport=self._tunnel.via,
                        principal=self._tunnel.subject.principal,
                    )

    def _message_length(self, kind: int, buf: bytearray) -> int | None:
        o = self._options
        return message_length(kind, buf, o.max_encodings, o.max_cut_text)

    # -- helpers -----------------------------------------------------------------

    def _send_client(self, data: bytes) -> None:
        self._tunnel.send_client(data, True)

    def _fail(self, refused: _Refused) -> None:
        self._phase = _Phase.DONE
        log_refusal(
            self.log,
            self._tunnel,
            refused,
            "rfb",
            "tunnel {conn_id}: RFB from {principal} refused: {reason}",
            reason=refused.reason,
        )
        self._tunnel.fail(refused.code, refused.reason)
