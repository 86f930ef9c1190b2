"""
The C{stomp} adapter: STOMP 1.0/1.1/1.2 over WebSocket (C{v10.stomp},
C{v11.stomp}, C{v12.stomp}) to a broker's plain STOMP port, with every
client frame inspected.

Client to broker: WebSocket messages, text or binary, are one byte stream
(a frame may be split across messages or several packed in one).  Each
frame is parsed within the configured limits and re-serialized before it is
forwarded, so the broker sees only what the gateway understood (a repeated
header reaches it once: the first, the one that was authorized).

  - The first frame must be C{CONNECT} (or C{STOMP}); its C{accept-version}
    is limited to the versions the negotiated subprotocol allows, its
    virtual host is authorized (C{connect}), and with credential injection
    its C{login}/C{passcode} (and C{host}) are replaced by the broker
    credentials configured for the authenticated user or role.
  - C{SEND} and C{SUBSCRIBE} are authorized per destination (C{send},
    C{subscribe}); the number of open subscriptions is bounded.
  - C{UNSUBSCRIBE}, C{ACK}, C{NACK}, C{BEGIN}, C{COMMIT} and C{ABORT} refer
    only to what the session already holds and pass; nothing may follow
    C{DISCONNECT}.

A refused frame is never forwarded: the client gets an C{ERROR} frame (with
C{receipt-id} when it asked for a receipt), then the WebSocket closes with
1008 (policy), 1002 (malformed) or 1009 (too big); frames accepted before it
in the same message are delivered.

Broker to client: frames are parsed (bounded the same way) only to find
their boundaries and the version; each WebSocket message carries whole
frames and heart-beats exactly as the broker sent them, text when valid
UTF-8 (or always binary, by configuration).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from zope.interface import implementer

from tunnelgw.adapters.base import Refused, log_refusal
from tunnelgw.adapters.stomp.frames import (
    CLIENT_COMMANDS,
    HEARTBEAT,
    SERVER_COMMANDS,
    Frame,
    FrameError,
    Limits,
    serialize,
)
from tunnelgw.adapters.stomp.parser import Parser
from tunnelgw.interfaces import IAdapter, ITunnel
from tunnelgw.logs import Logger

__all__ = ["BrokerCredentials", "StompAdapter", "StompOptions", "SUBPROTOCOLS"]

SUBPROTOCOLS = {"v12.stomp": "1.2", "v11.stomp": "1.1", "v10.stomp": "1.0"}
VERSIONS = ("1.0", "1.1", "1.2")

PROTOCOL_ERROR = 1002
POLICY_VIOLATION = 1008
MESSAGE_TOO_BIG = 1009
BAD_GATEWAY = 1014

# broker frames read in full: CONNECTED fixes the version, ERROR is logged;
# the rest (MESSAGE, RECEIPT) are only checked on their way to the client
_INSPECTED = frozenset({"CONNECTED", "ERROR"})


@dataclass(frozen=True)
class BrokerCredentials:
    """
    Broker credentials injected for subjects with one of C{users} or
    C{roles} (C{"*"}: everyone authenticated).
    """

    users: frozenset[str]
    roles: frozenset[str]
    login: str
    passcode: str = ""
    host: str | None = None

    def matches(self, user: str | None, roles: frozenset[str]) -> bool:
        if "*" in self.roles or (user is not None and user in self.users):
            return True
        return bool(self.roles & roles)


@dataclass(frozen=True)
class StompOptions:
    limits: Limits = Limits()
    message_type: str = "text"
    virtual_host: str = "/"
    max_subscriptions: int = 64
    credentials: tuple[BrokerCredentials, ...] = ()

    @property
    def inject(self) -> bool:
        return bool(self.credentials)


class _Refused(Refused):
    """A STOMP refusal: the reason is the ERROR frame's message; its receipt-id, if asked."""

    def __init__(self, code: int, message: str, frame: Frame | None = None) -> None:
        super().__init__(code, message)
        self.message = message
        self.receipt = frame.get("receipt") if frame is not None else None


class _State(enum.Enum):
    AWAIT_CONNECT = "await-connect"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    FAILED = "failed"


def _dedupe(frame: Frame) -> Frame:
    """
    C{frame} with each header once: the first, as STOMP 1.2 reads it and as
    the gateway authorized it.
    """
    seen: set[str] = set()
    headers = []
    for key, value in frame.headers:
        if key not in seen:
            seen.add(key)
            headers.append((key, value))
    frame.headers = headers
    return frame


@implementer(IAdapter)
class StompAdapter:
    log = Logger()

    def __init__(self, tunnel: ITunnel, options: StompOptions) -> None:
        self._tunnel = tunnel
        self._options = options
        # The subprotocol fixes the highest version; without one (a client
        # that offers none, where the service allows it) CONNECT decides.
        self._max_version = SUBPROTOCOLS.get(tunnel.subprotocol or "", "1.2")
        self._version = self._max_version
        self._client = Parser(CLIENT_COMMANDS, options.limits, self._version)
        self._broker = Parser(SERVER_COMMANDS, options.limits, self._version)
        self._state = _State.AWAIT_CONNECT
        self._subscriptions: set[str] = set()

    # -- client to broker -----------------------------------------------------

    def client_message(self, payload: bytes, is_binary: bool) -> None:
        if self._state is _State.FAILED:
            return
        out = bytearray()
        try:
            for item in self._client.feed(payload):
                if item is HEARTBEAT:
                    out += b"\n"
                else:
                    assert isinstance(item, Frame)
                    out += self._client_frame(item)
        except FrameError as e:
            self._tunnel.send_backend(bytes(out))
            self._refuse(_Refused(MESSAGE_TOO_BIG if e.too_big else PROTOCOL_ERROR, e.reason))
            return
        except _Refused as refused:
            self._tunnel.send_backend(bytes(out))
            self._refuse(refused)
            return
        if out:
            self._tunnel.send_backend(bytes(out))

    def _client_frame(self, frame: Frame) -> bytes:
        command = frame.command
        if self._state is _State.DISCONNECTED:
            raise _Refused(PROTOCOL_ERROR, f"{command} after DISCONNECT", frame)
        if command in ("CONNECT", "STOMP"):
            if self._state is not _State.AWAIT_CONNECT:
                raise _Refused(PROTOCOL_ERROR, f"{command} on a connected session", frame)
            self._connect(frame)
            self._state = _State.CONNECTED
            return serialize(_dedupe(frame), self._version)
        if self._state is _State.AWAIT_CONNECT:
            raise _Refused(PROTOCOL_ERROR, f"the first frame must be CONNECT, not {command}", frame)
        _dedupe(frame)
        if command in ("SEND", "SUBSCRIBE"):
            destination = frame.get("destination")
            if not destination:
                raise _Refused(PROTOCOL_ERROR, f"{command} without a destination", frame)
            action = command.lower()
            if not self._tunnel.permits(action, destination):
                raise _Refused(POLICY_VIOLATION, f"not authorized to {action} to {destination}", frame)
            if command == "SUBSCRIBE":
                key = frame.get("id") or destination
                if (
                    key not in self._subscriptions
                    and len(self._subscriptions) >= self._options.max_subscriptions
                ):
                    raise _Refused(
                        POLICY_VIOLATION, f"more than {self._options.max_subscriptions} subscriptions", frame
                    )
                self._subscriptions.add(key)
        elif command == "UNSUBSCRIBE":
            self._subscriptions.discard(frame.get("id") or frame.get("destination") or "")
        elif command == "DISCONNECT":
            self._state = _State.DISCONNECTED
        return serialize(frame, self._version)

    def _connect(self, frame: Frame) -> None:
        accept = frame.get("accept-version")
        offered = [v.strip() for v in accept.split(",")] if accept is not None else ["1.0"]
        allowed = [v for v in VERSIONS if v in offered and v <= self._max_version]
        if not allowed:
            raise _Refused(
                PROTOCOL_ERROR,
                f"accept-version {accept} has no STOMP version up to {self._max_version}"
                f" (subprotocol {self._tunnel.subprotocol or 'none'})",
                frame,
            )
        if accept is not None:
            frame.set("accept-version", ",".join(allowed))
        # headers of frames sent before CONNECTED are read in the highest
        # version the client accepts; CONNECTED then fixes it
        self._set_version(allowed[-1])
        subject = self._tunnel.subject
        host = frame.get("host") or self._options.virtual_host
        injected = None
        if self._options.inject:
            for entry in self._options.credentials:
                if entry.matches(subject.user, subject.roles):
                    injected = entry
                    break
            if injected is None:
                raise _Refused(POLICY_VIOLATION, "no broker credentials for this user", frame)
            frame.remove("login")
            frame.remove("passcode")
            frame.set("login", injected.login)
            if injected.passcode:
                frame.set("passcode", injected.passcode)
            if injected.host is not None:
                host = injected.host
        frame.set("host", host)
        if not self._tunnel.permits("connect", host):
            raise _Refused(POLICY_VIOLATION, f"not authorized to connect to virtual host {host}", frame)
        self.log.info(
            "tunnel {conn_id}: STOMP CONNECT of {principal} to virtual host {host}{how}",
            event="stomp_connect",
            conn_id=self._tunnel.conn_id,
            transport=self._tunnel.via,
            principal=subject.principal,
            host=host,
            accept_version=",".join(allowed),
            login=frame.get("login"),
            injected=injected is not None,
            how=f" as {injected.login} (injected)" if injected is not None else "",
        )

    def _set_version(self, version: str) -> None:
        self._version = version
        self._client.version = version
        self._broker.version = version

    def _refuse(self, refused: _Refused) -> None:
        self._state = _State.FAILED
        log_refusal(
            self.log,
            self._tunnel,
            refused,
            "stomp",
            "tunnel {conn_id}: STOMP frame from {principal} refused: {message}",
            message=refused.message,
        )
        headers = [("message", refused.message), ("content-type", "text/plain")]
        if refused.receipt is not None:
            headers.append(("receipt-id", refused.receipt))
        body = f"tunnelgw refused the frame: {refused.message}\n".encode()
        headers.append(("content-length", str(len(body))))
        self._send_client(serialize(Frame("ERROR", headers, body), self._version))
        self._tunnel.fail(refused.code, refused.message)

    def end(self, code: int, reason: str) -> None:
        """
        The gateway ends the session (L{IAdapter}): an C{ERROR} frame says
        why; the tunnel closes after it.
        """
        if self._state is _State.FAILED:
            return
        self._state = _State.FAILED
        body = f"tunnelgw ended the session: {reason}\n".encode()
        headers = [("message", reason), ("content-type", "text/plain"), ("content-length", str(len(body)))]
        self._send_client(serialize(Frame("ERROR", headers, body), self._version))

    # -- broker to client -----------------------------------------------------

    def backend_data(self, data: bytes) -> None:
        if self._state is _State.FAILED:
            return
        whole, frames, error = self._broker.relay(data, _INSPECTED)
        for frame in frames:
            self._broker_frame(frame)
        if whole:
            self._send_client(whole)
        if error is None:
            return
        self._state = _State.FAILED
        reason = f"the broker sent a bad frame: {error.reason}"
        self.log.warn(
            "tunnel {conn_id}: {reason}",
            event="stomp_backend_error",
            conn_id=self._tunnel.conn_id,
            reason=reason,
        )
        body = reason.encode()
        bad = Frame(
            "ERROR", [("message", "bad frame from the broker"), ("content-length", str(len(body)))], body
        )
        self._send_client(serialize(bad, self._version))
        self._tunnel.fail(BAD_GATEWAY, reason)

    def _broker_frame(self, frame: Frame) -> None:
        if frame.command == "CONNECTED":
            version = frame.get("version", "1.0") or "1.0"
            if version in VERSIONS:
                self._set_version(version)
        elif frame.command == "ERROR":
            self.log.info(
                "tunnel {conn_id}: the broker sent ERROR: {message}",
                event="stomp_broker_error",
                conn_id=self._tunnel.conn_id,
                principal=self._tunnel.subject.principal,
                message=frame.get("message", ""),
            )

    def _send_client(self, data: bytes) -> None:
        if self._options.message_type == "binary":
            self._tunnel.send_client(data, True)
            return
        if data.isascii():
            self._tunnel.send_client(data, False)
            return
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            self._tunnel.send_client(data, True)
        else:
            self._tunnel.send_client(data, False)
