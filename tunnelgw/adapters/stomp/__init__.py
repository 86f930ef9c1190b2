"""
STOMP over WebSocket (v10.stomp, v11.stomp, v12.stomp).  This package holds
the frame codec; the adapter that inspects, authorizes and rewrites frames
builds on it.
"""
