"""
STOMP over WebSocket (v10.stomp, v11.stomp, v12.stomp): the frame codec
(L{tunnelgw.adapters.stomp.frames}) and the adapter that inspects,
authorizes and rewrites frames (L{tunnelgw.adapters.stomp.adapter}).
"""
