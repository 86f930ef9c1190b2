from twisted.application.service import ServiceMaker

tunnelgw = ServiceMaker(
    "tunnelgw",
    "tunnelgw.tap",
    "WebSocket gateway to TCP services (raw, VNC, STOMP, XMPP)",
    "tunnelgw",
)
