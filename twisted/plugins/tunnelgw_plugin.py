from twisted.application.reactors import Reactor
from twisted.application.service import ServiceMaker

from tunnelgw.listeners import ReusePortParser

tunnelgw = ServiceMaker(
    "tunnelgw",
    "tunnelgw.tap",
    "WebSocket gateway to TCP services (raw, VNC, STOMP, XMPP)",
    "tunnelgw",
)

# reuseport:PORT[:interface=...][:backlog=...]: a TCP listener that several
# gateway processes share (SO_REUSEPORT).
reuseport = ReusePortParser()

# twistd --reactor tunnelgw: epoll without a logging context per I/O event
# (what twistd -n tunnelgw runs on by default; see tunnelgw.reactor).
gateway_reactor = Reactor(
    "tunnelgw", "tunnelgw.reactor", "epoll(4), without a legacy logging context per I/O event (Linux)."
)
