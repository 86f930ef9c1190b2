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
