"""
C{tunnelgw revoke} and C{tunnelgw tunnels}: the admin API from a shell.

    tunnelgw revoke --admin URL (--user U | --role R | --session S | --jti J)
                    --for DURATION [--reason TEXT] [--auth-file FILE] [--ca FILE]
    tunnelgw tunnels --admin URL [--auth-file FILE] [--ca FILE]

C{--auth-file} holds the C{Authorization} header value the admin realm
expects (C{Basic ...}, C{Bearer ...}): a credential never goes on a
command line, where other users of the machine read it.  C{DURATION}:
seconds, or a number with C{s}, C{m}, C{h} or C{d}.
"""

from __future__ import annotations

import argparse
import json
import re
import ssl
import sys
import time
import urllib.error
import urllib.request
from typing import Any

__all__ = ["duration", "main", "opener"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(text: str) -> float:
    """C{"90"}, C{"90s"}, C{"30m"}, C{"1h"}, C{"2d"} in seconds."""
    found = _DURATION.match(text)
    if found is None or float(found.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 90s, 30m, 1h, 2d)")
    return float(found.group(1)) * _UNIT[found.group(2)]


def _parser(command: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"tunnelgw {command}")
    parser.add_argument("--admin", required=True, help="the admin listener's URL, e.g. http://127.0.0.1:9465")
    parser.add_argument("--auth-file", help="a file holding the Authorization header value")
    parser.add_argument("--ca", help="PEM: the CAs an https admin listener's certificate chains to")
    if command == "revoke":
        whom = parser.add_mutually_exclusive_group(required=True)
        for kind in ("user", "role", "session", "jti"):
            whom.add_argument(f"--{kind}")
        parser.add_argument("--for", dest="seconds", type=duration, required=True, help="e.g. 1h")
        parser.add_argument("--reason", default="")
    return parser


def _call(options: Any, method: str, path: str, body: Any = None) -> Any:
    headers = {"Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    if options.auth_file:
        with open(options.auth_file, encoding="utf-8") as f:
            headers["Authorization"] = f.read().strip()
    request = urllib.request.Request(
        options.admin.rstrip("/") + path,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers=headers,
    )
    with opener(options.ca).open(request, timeout=30) as response:
        return json.loads(response.read())


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """
    A redirect is answered as the error it is here: urllib would follow it
    with the C{Authorization} header, to whatever host and scheme it names.
    """

    def redirect_request(self, *args: Any) -> None:
        return None


def opener(ca: str | None = None) -> urllib.request.OpenerDirector:
    """
    What the commands call the admin API with: https verified against the
    CAs of C{ca} (the system's without it), and redirects not followed.
    """
    context = ssl.create_default_context(cafile=ca) if ca else None
    return urllib.request.build_opener(_NoRedirects, urllib.request.HTTPSHandler(context=context))


def _when(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds))


def main(command: str, argv: list[str]) -> int:
    options = _parser(command).parse_args(argv)
    try:
        if command == "revoke":
            kind = next(k for k in ("user", "role", "session", "jti") if getattr(options, k) is not None)
            body = {
                "kind": kind,
                "value": getattr(options, kind),
                "seconds": options.seconds,
                "reason": options.reason,
            }
            revocation = _call(options, "POST", "/api/revocations", body)["revocation"]
            sys.stdout.write(f"revoked {kind} {revocation['value']} until {_when(revocation['until'])} UTC\n")
            return 0
        rows = _call(options, "GET", "/api/tunnels")["tunnels"]
    except urllib.error.HTTPError as e:
        try:
            why = json.loads(e.read()).get("error", "")
        except ValueError:
            why = ""
        if 300 <= e.code < 400:
            why = (
                f"a redirect to {e.headers.get('Location')}, not followed: give the admin listener's own URL"
            )
        sys.stderr.write(f"tunnelgw {command}: HTTP {e.code} {why}\n")
        return 1
    except (OSError, ValueError) as e:
        sys.stderr.write(f"tunnelgw {command}: {e}\n")
        return 1
    columns = ("instance", "user", "service", "subprotocol", "origin", "bytes_up", "bytes_down", "since")
    table = [columns] + [
        tuple(
            _when(r[c]) if c == "since" else str(r.get(c) if r.get(c) is not None else "-") for c in columns
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(columns))]
    for row in table:
        sys.stdout.write(
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() + "\n"
        )
    return 0
