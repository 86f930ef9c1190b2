"""
Every zope.interface of tunnelgw, documented.

Implementations declare C{@implementer(...)} and each has a
C{verifyObject} test.
"""

from __future__ import annotations

from zope.interface import Attribute, Interface

__all__ = [
    "IAdapter",
    "IAdapterFactory",
    "IAuthenticator",
    "ITunnel",
]


class ITunnel(Interface):
    """
    What an adapter may do with the tunnel it serves: the relay between the
    client's WebSocket and the backend's byte stream.  The tunnel owns flow
    control and the closing rules; adapters only translate.
    """

    service = Attribute("The L{tunnelgw.config.ServiceConfig} of this tunnel.")
    subprotocol = Attribute("The negotiated subprotocol, or C{None}.")
    conn_id = Attribute("The connection id used in every log event of this tunnel.")

    def send_client(payload: bytes, is_binary: bool) -> None:
        """
        Send one WebSocket message to the client.
        """

    def send_backend(data: bytes) -> None:
        """
        Write bytes to the backend connection.
        """

    def fail(code: int, reason: str) -> None:
        """
        End the tunnel: close the WebSocket with C{code} (a RFC 6455 close
        code such as 1003 or 1008) and C{reason}, log why, and close the
        backend after what it was already sent.
        """


class IAdapter(Interface):
    """
    The protocol logic of one tunnel: it turns the client's messages into
    backend bytes and the backend's bytes into client messages, and may
    inspect, refuse or rewrite either (deep packet inspection).
    """

    def client_message(payload: bytes, is_binary: bool) -> None:
        """
        One complete WebSocket message arrived from the client (already
        unmasked, UTF-8 validated when text, within the size limits).
        """

    def backend_data(data: bytes) -> None:
        """
        Bytes arrived from the backend, in order, cut anywhere.
        """


class IAdapterFactory(Interface):
    """
    A named kind of adapter (C{raw}, C{echo}, ...), chosen per service by
    the configuration key C{adapter}.
    """

    name = Attribute("The name used in the configuration (C{str}).")
    needs_upstream = Attribute(
        "C{True} when the tunnel connects to a backend before the upgrade; "
        "C{False} when the adapter answers by itself (C{echo})."
    )

    def build(tunnel: ITunnel) -> IAdapter:
        """
        Create the adapter of one tunnel.
        """


class IAuthenticator(Interface):
    """
    The authentication step of the admission pipeline: turn what the
    upgrade request carries into a subject, or refuse.
    """

    def authenticate(request: object, service: object) -> object:
        """
        Authenticate an L{tunnelgw.web.pipeline.AdmissionRequest} for a
        L{tunnelgw.config.ServiceConfig}.

        @return: a L{Deferred} firing with the authenticated
            L{tunnelgw.security.Subject}, or failing with
            L{tunnelgw.web.pipeline.Refusal} (401 or 403).
        """
