"""
A service's URL: the resource that admits WebSocket upgrades through the
pipeline and hands the admitted connection to autobahn, whichever HTTP
path read the head (L{Upgrade}).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from autobahn.twisted.resource import WebSocketResource
from twisted.internet import defer
from twisted.python.failure import Failure
from twisted.web import server
from twisted.web.resource import Resource

from tunnelgw._compat.twisted import early_bytes
from tunnelgw.admission.checks import check_websocket_upgrade
from tunnelgw.admission.request import Admission, AdmissionRequest
from tunnelgw.config.model import ServiceConfig
from tunnelgw.errors import Refusal
from tunnelgw.front.channel import GatewayChannel
from tunnelgw.front.fallback import FallbackEndpoint
from tunnelgw.front.requests import _detach, _refuse, admission_request
from tunnelgw.logs import Logger
from tunnelgw.websocket.server import AdmittedFactory, make_factory

__all__ = ["ServiceResource", "Upgrade"]


class ServiceResource(Resource):
    """
    One service's URL: admits WebSocket upgrades and hands the admitted
    connection to autobahn.
    """

    isLeaf = True
    log = Logger()

    def __init__(self, site: Any, service: ServiceConfig) -> None:  # a GatewaySite
        super().__init__()
        self.site = site
        self.service = service
        policy = site.config.policy(service.policy)
        self.factory = make_factory(service, site.clock, site.registry, policy)
        self.fallback = FallbackEndpoint(site, service, policy) if service.fallback else None

    def render(self, request: server.Request) -> Any:
        if self.fallback is not None and request.method in (b"POST", b"OPTIONS"):
            return self.fallback.render(request)

        def hand_over(factory: AdmittedFactory) -> None:
            # What the client sent after its head, before its 101, waits in
            # the channel (which stopped reading past 16 KiB of it) and
            # would be dropped with it: autobahn reads it after the head.
            early = early_bytes(request.channel)
            channel = cast(GatewayChannel, request.channel)
            factory.channel_is_producer = True
            WebSocketResource(factory).render(request)
            _detach(request)
            if factory.protocol is not None:
                if early:
                    factory.protocol.dataReceived(early)
                # admitted at once, in the read that ended the head: what
                # followed it in that read is still to come, to the channel
                channel.forward = factory.protocol

        # asked for first: an upgrade may be decided at once, and the hand
        # over then detaches the request from its notifications
        finished = request.notifyFinish()
        upgrade = self.upgrade(
            admission_request(request),
            cast(GatewayChannel, request.channel),
            hand_over,
            lambda refusal: _refuse(request, refusal),
        )
        finished.addErrback(lambda _: upgrade.cancel())
        return server.NOT_DONE_YET

    def upgrade(
        self,
        areq: AdmissionRequest,
        channel: GatewayChannel,
        hand_over: Callable[[AdmittedFactory], None],
        refuse: Callable[[Refusal], None],
    ) -> Upgrade:
        """
        Admit C{areq}, an upgrade on C{channel}: then C{hand_over} the
        connection to autobahn (a factory for its protocol), or C{refuse}.
        """
        return Upgrade(self, areq, channel, hand_over, refuse)


class Upgrade:
    """
    One WebSocket upgrade from admission to hand-over, whichever HTTP
    parser read it (twisted.web's, or the fast path's).
    """

    log = Logger()

    def __init__(
        self,
        resource: ServiceResource,
        areq: AdmissionRequest,
        channel: GatewayChannel,
        hand_over: Callable[[AdmittedFactory], None],
        refuse: Callable[[Refusal], None],
    ) -> None:
        self._resource = resource
        self._areq = areq
        self._channel = channel
        self._hand_over = hand_over
        self._refuse = refuse
        self._gone = False
        self._began = resource.site.clock.seconds()
        self._admission = d = resource.site.pipeline.admit(areq, resource.service, check_websocket_upgrade)
        d.addCallbacks(self._admitted, self._refused)
        d.addErrback(self._failed)

    def cancel(self) -> None:
        """
        The client went away: stop the admission, or abandon what it admitted.
        """
        self._gone = True
        self._admission.cancel()

    def _admitted(self, admission: Admission) -> None:
        if self._gone:
            admission.abandon()
            return
        resource = self._resource
        resource.site.pipeline.log_decision(
            self._areq,
            resource.service.name,
            admission.subprotocol,
            "accept",
            101,
            "switching protocols",
            admission.subject.principal,
            elapsed=resource.site.clock.seconds() - self._began,
        )
        lease = self._channel.take_lease()
        self._hand_over(AdmittedFactory(resource.factory, admission, lease, resource.site.clock))

    def _refused(self, f: Failure) -> None:
        if f.check(defer.CancelledError) or self._gone:
            return
        f.trap(Refusal)
        self._refuse(cast(Refusal, f.value))

    def _failed(self, f: Failure) -> None:
        self.log.failure("upgrade of {conn_id} failed", f, conn_id=self._areq.conn_id)
