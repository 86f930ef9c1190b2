"""
The C{rfb} adapter: VNC (RFB 3.3, 3.7, 3.8, RFC 6143) as the C{raw} adapter
carries it (binary messages to and from a byte stream, subprotocol
C{binary} or none, as noVNC and websockify do), with the protocol followed
and enforced:

  - the handshake (versions, security types, VNC authentication, security
    result, ClientInit/ServerInit) is parsed both ways; only the security
    types the service allows (C{none}, C{vnc}) may be used, and the client
    is offered only those;
  - with a configured password, the gateway answers the server's VNC
    authentication challenge itself and offers the client security type
    None: browser users never see the VNC password;
  - once running, every client message is parsed (SetPixelFormat,
    SetEncodings, FramebufferUpdateRequest, KeyEvent, PointerEvent,
    ClientCutText and the common extensions); unknown types and oversized
    ones end the session;
  - input is authorized through the policy (action C{input} on
    C{keyboard}, C{pointer}, C{clipboard}, C{resize}): for a view-only
    user, key events, clipboard and resizes are dropped and pointer events
    pass with their buttons released (moves only); the session still
    renders.

Server messages after ServerInit pass unparsed, as bytes, like C{raw}.
Close codes: 1002 malformed, 1008 policy (a forbidden security type),
1009 too big, 1014 the server refused the gateway's password.
"""
