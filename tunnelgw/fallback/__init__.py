"""
The HTTP fallback transport: a WebSocket's messages carried by a streaming
response down and POSTs up, for networks that break WebSocket, with the
same admission, security and bounds (docs/decisions.md, "The fallback
transport").  This package holds its wire format and its resumable
queues; the HTTP side and the tunnel's leg come next.
"""
