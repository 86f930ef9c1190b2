"""
What twisted.web's requests become for admission (L{admission_request}),
and how a refusal or a hand-over ends them.
"""

from __future__ import annotations

from typing import cast

from twisted.web import server

from tunnelgw.admission.request import AdmissionRequest
from tunnelgw.errors import Refusal
from tunnelgw.front.channel import GatewayChannel, _decoded_args, _headers_of, _new_conn_id, _peer_certificate
from tunnelgw.front.upgrade import (
    refusal_parts,
    status_phrase,
)

__all__ = ["admission_request", "answerable"]


def admission_request(request: server.Request) -> AdmissionRequest:
    """
    What the pipeline and the login modules see of a twisted.web request.
    """
    channel = cast(GatewayChannel, request.channel)
    assert channel.lease is not None, "a request outlived its connection's lease"
    return AdmissionRequest(
        conn_id=getattr(channel, "conn_id", "") or _new_conn_id(),
        peer_host=getattr(channel, "peer_host", "unknown"),
        path=request.path.decode("latin-1"),
        method=request.method.decode("latin-1"),
        http_version=request.clientproto.decode("latin-1"),
        headers=_headers_of(request),
        lease=channel.lease,
        secure=request.isSecure(),
        query=_decoded_args(request.args),
        peer_certificate=_peer_certificate(channel.transport),
    )


def answerable(request: server.Request) -> bool:
    """
    C{request} may still be answered: nothing finished it, and its client
    is still there (twisted.web drops the channel when it goes).
    """
    return not request.finished and request.channel is not None


def _detach(request: server.Request) -> None:
    """
    The request's connection is now a WebSocket's: the HTTP channel and
    the request will never be used again.  They hold each other (the
    channel's queue of requests, the request's finish notifications and
    the closures on them), so without this each upgrade would leave a
    cycle for the garbage collector, and collecting those is most of what
    a busy gateway's collector does.
    """
    channel = request.channel
    if channel is not None:
        channel.requests = []
    request.notifications = []


def _refuse(request: server.Request, refusal: Refusal) -> None:
    request.setResponseCode(refusal.status, status_phrase(refusal.status).encode("ascii"))
    headers, body = refusal_parts(refusal)
    for name, value in headers.items():
        request.setHeader(name, value)
    request.write(body)
    # The response says "Connection: close", and means it: twisted.web keeps
    # a connection open by the request's headers alone (an upgrade's say
    # "Upgrade"), and would read what follows (a body's leftovers, another
    # request) as the next request.
    request.channel.persistent = False
    request.finish()
