"""
The relay between a client leg (a WebSocket) and a backend leg (a byte
stream or a chained gateway), with flow control both ways, the closing
rules and the timers:

  - L{tunnelgw.tunnel.relay}: the L{Tunnel} itself;
  - L{tunnelgw.tunnel.legs}: what the tunnel needs of each leg, and the
    TCP (or TLS) backend leg;
  - L{tunnelgw.tunnel.flow}: buffer accounting, gates and valves;
  - L{tunnelgw.tunnel.deadlines}: timers of one configured delay on one
    reactor timer;
  - L{tunnelgw.tunnel.rates}: a client's message and byte rates;
  - L{tunnelgw.tunnel.registry}: the open tunnels of a gateway.
"""
