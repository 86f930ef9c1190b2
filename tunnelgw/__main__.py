"""
Command line: C{tunnelgw check-config FILE} (or C{python -m tunnelgw ...}).

The gateway itself runs under twistd: C{twistd -n tunnelgw --config FILE}.
"""

from __future__ import annotations

import sys

from twisted.internet.endpoints import serverFromString
from twisted.internet.testing import MemoryReactor

from tunnelgw.config.loader import load
from tunnelgw.config.model import GatewayConfig
from tunnelgw.config.values import ConfigError
from tunnelgw.tls import context_factory

USAGE = """\
usage: tunnelgw check-config FILE
       tunnelgw hash-password < password

  check-config FILE   validate a configuration file; exit 0 if valid,
                      1 with the offending key and why otherwise.
  hash-password       read a password (first line of standard input, or a
                      prompt on a terminal) and print its argon2 hash for
                      a password_file line: name:HASH[:role,role]

Run the gateway with: twistd -n tunnelgw [--config FILE]
"""


def check_config(path: str) -> GatewayConfig:
    """
    Load C{path} and check what loading alone cannot: that every listener
    description builds an endpoint (certificate files included).

    @raise ConfigError: with the key and the reason.
    """
    config = load(path)
    for i, description in enumerate(config.listen):
        try:
            serverFromString(MemoryReactor(), description)
        except Exception as e:
            raise ConfigError(f"gateway.listen[{i}]: invalid endpoint {description!r}: {e}") from None
    for i, listener in enumerate(config.tls_listeners):
        key = f"gateway.tls_listeners[{i}]"
        context_factory(listener, key)  # loads and checks the files
        try:
            serverFromString(MemoryReactor(), listener.endpoint)
        except Exception as e:
            raise ConfigError(f"{key}.endpoint: invalid endpoint {listener.endpoint!r}: {e}") from None
    return config


def hash_password() -> int:
    from tunnelgw.security.modules.password_file import HASHER

    if sys.stdin.isatty():
        import getpass

        password = getpass.getpass("password: ")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        sys.stderr.write("hash-password: empty password\n")
        return 1
    sys.stdout.write(HASHER.hash(password) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["hash-password"]:
        return hash_password()
    if len(args) != 2 or args[0] != "check-config":
        sys.stderr.write(USAGE)
        return 2
    try:
        config = check_config(args[1])
    except ConfigError as e:
        sys.stderr.write(f"{args[1]}: {e}\n")
        return 1
    names = ", ".join(f"{s.name} ({s.path})" for s in config.services) or "none"
    sys.stdout.write(f"{args[1]}: valid; listeners: {', '.join(config.listen)}; services: {names}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
