"""
What the C{xmpp} adapter checks of the client's elements: its SASL
identity against the gateway user (C{bind_identity}), and each stanza's
destination against the policy (C{authorize_stanzas}).  Mixed into
L{tunnelgw.adapters.xmpp.adapter.XmppAdapter}.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from twisted.words.xish import domish

from tunnelgw.adapters.xmpp.options import XmppOptions
from tunnelgw.adapters.xmpp.protocol import (
    BINDABLE_MECHANISMS,
    POLICY_VIOLATION,
    PROTOCOL_ERROR,
    STANZAS_NS,
    bare_jid,
    text_of,
)
from tunnelgw.adapters.xmpp.protocol import Refused as _Refused
from tunnelgw.adapters.xmpp.xml import (
    CLIENT,
    element,
    serialize,
)
from tunnelgw.interfaces import ITunnel

__all__ = ["IdentityChecks"]


class IdentityChecks:
    # the adapter's, as these methods read them
    _tunnel: ITunnel
    _options: XmppOptions
    _expected: Any
    log: Any

    def _check_auth(self, el: domish.Element) -> None:
        mechanism = (el.getAttribute("mechanism") or "").upper()
        if mechanism.endswith("-PLUS"):
            raise _Refused(
                "policy-violation", f"{mechanism}: channel binding cannot cross the gateway", POLICY_VIOLATION
            )
        if not self._options.bind_identity:
            return
        if mechanism not in BINDABLE_MECHANISMS:
            raise _Refused(
                "policy-violation",
                f"SASL {mechanism or 'without a mechanism'} cannot be bound to the gateway user",
                POLICY_VIOLATION,
            )
        names = self._sasl_identities(mechanism, text_of(el))
        for name in names:
            self._check_identity(name, f"SASL {mechanism}")
        self.log.info(
            "tunnel {conn_id}: XMPP SASL {mechanism} as {identity} bound to {principal}",
            event="xmpp_auth",
            conn_id=self._tunnel.conn_id,
            transport=self._tunnel.via,
            principal=self._tunnel.subject.principal,
            mechanism=mechanism,
            identity=names[0],
        )

    @staticmethod
    def _sasl_identities(mechanism: str, text: str) -> list[str]:
        """
        The identities a client's initial SASL response claims (authcid
        first, then authzid when present).
        """
        try:
            data = base64.b64decode(text.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise _Refused(
                "malformed-request", "the SASL initial response is not base64 UTF-8", PROTOCOL_ERROR
            ) from None
        if mechanism == "PLAIN":
            parts = data.split("\0")
            if len(parts) != 3 or not parts[1]:
                raise _Refused(
                    "malformed-request",
                    "a PLAIN response is authzid NUL authcid NUL password",
                    PROTOCOL_ERROR,
                )
            return [parts[1]] + ([parts[0]] if parts[0] else [])
        # SCRAM client-first-message: gs2-header "n,a=authzid," then "n=user,r=..."
        parts = data.split(",", 2)
        if len(parts) != 3 or parts[0] not in ("n", "y") or not parts[2].startswith("n="):
            raise _Refused(
                "malformed-request",
                "not a SCRAM client-first-message without channel binding",
                PROTOCOL_ERROR,
            )
        user = parts[2][2:].split(",", 1)[0].replace("=2C", ",").replace("=3D", "=")
        authzid = parts[1][2:] if parts[1].startswith("a=") else ""
        return [user] + ([authzid] if authzid else [])

    def _check_identity(self, name: str, where: str) -> None:
        expected = self._expected
        if expected is None or name.casefold() not in expected:
            raise _Refused(
                "policy-violation",
                f"{where}: XMPP identity {name} is not the gateway user {self._tunnel.subject.principal}",
                POLICY_VIOLATION,
            )

    def _stanza_allowed(self, el: domish.Element) -> bool:
        to = el.getAttribute("to")
        if not self._options.authorize_stanzas or not to:
            return True
        if self._tunnel.permits(el.name, bare_jid(to)):
            return True
        if el.getAttribute("type") not in ("error", "result"):
            bounce = element(CLIENT, el.name, {"type": "error", "from": to})
            if el.getAttribute("id"):
                bounce["id"] = el["id"]
            error = bounce.addElement("error")
            error["type"] = "cancel"
            error.addElement((STANZAS_NS, "not-allowed"))
            error.addElement(
                (STANZAS_NS, "text"), content=f"the gateway does not allow this {el.name} to {bare_jid(to)}"
            )
            self._tunnel.send_client(serialize(bounce).encode(), False)
        return False
