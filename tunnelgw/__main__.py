"""
Command line: C{tunnelgw check-config FILE}, C{hash-password}, C{revoke},
C{tunnels} (or C{python -m tunnelgw ...}).

The gateway itself runs under twistd: C{twistd -n tunnelgw --config FILE}.
"""

from __future__ import annotations

import sys

from tunnelgw.config.loader import load
from tunnelgw.config.model import GatewayConfig
from tunnelgw.config.values import ConfigError
from tunnelgw.listeners import check_listeners
from tunnelgw.tls import context_factory

USAGE = """\
usage: tunnelgw check-config FILE
       tunnelgw hash-password < password
       tunnelgw revoke --admin URL (--user U | --role R | --session S | --jti J)
                       --for DURATION [--reason TEXT] [--auth-file FILE] [--ca FILE]
       tunnelgw tunnels --admin URL [--auth-file FILE] [--ca FILE]
       tunnelgw workers --config FILE [--count N] [--logger OBSERVER]
       tunnelgw --help

  check-config FILE   validate a configuration file; exit 0 if valid,
                      1 with the offending key and why otherwise.
  hash-password       read a password (first line of standard input, or a
                      prompt on a terminal) and print its argon2 hash for
                      a password_file line: name:HASH[:role,role]
  revoke              end a user's (role's, session's, token's) tunnels on
                      every instance and refuse them for DURATION (1h,
                      30m...), through the admin listener ([admin])
  tunnels             list the open tunnels, cluster-wide
  workers             run N gateway processes sharing reuseport: listeners,
                      restarted when they die; SIGHUP, SIGUSR1 and SIGTERM
                      go to every one of them

Run the gateway with: twistd -n tunnelgw [--config FILE]
"""


def check_config(path: str) -> GatewayConfig:
    """
    Load C{path} and check what loading alone cannot: that every listener
    description builds an endpoint (certificate files included).

    @raise ConfigError: with the key and the reason.
    """
    config = load(path)
    check_listeners(config, passed=False)  # systemd: sockets are passed to the gateway alone
    for i, listener in enumerate(config.tls_listeners):
        context_factory(listener, f"gateway.tls_listeners[{i}]")  # loads and checks the files
    return config


def summary(path: str, config: GatewayConfig) -> str:
    """What check-config says of a valid file: every way in, every service."""
    listeners = [*config.listen, *(f"{t.endpoint} (TLS, client certificates)" for t in config.tls_listeners)]
    parts = [f"listeners: {', '.join(listeners) or 'none'}"]
    if config.links:
        parts.append("links: " + ", ".join(f"{pool.name} ({pool.path})" for pool in config.links))
    if config.reverse_links:
        parts.append("reverse links to: " + ", ".join(link.outer for link in config.reverse_links))
    if config.metrics is not None:
        parts.append(f"metrics: {config.metrics.listen}")
    if config.audit is not None:
        parts.append(f"audit: {'standard output' if config.audit == '-' else config.audit}")
    names = ", ".join(f"{s.name} ({s.path})" for s in config.services) or "none"
    parts.append(f"services: {names}")
    return f"{path}: valid; " + "; ".join(parts)


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
    if args in (["--help"], ["-h"], ["help"]):
        sys.stdout.write(USAGE)
        return 0
    if args == ["hash-password"]:
        return hash_password()
    if args and args[0] == "workers":
        from tunnelgw.workers import main as workers_main

        return workers_main(args[1:])
    if args and args[0] in ("revoke", "tunnels"):
        from tunnelgw.admin_cli import main as admin_main

        return admin_main(args[0], args[1:])
    if len(args) != 2 or args[0] != "check-config":
        sys.stderr.write(USAGE)
        return 2
    path = args[1]
    try:
        config = check_config(path)
    except ConfigError as e:
        message = str(e)
        # a file that cannot be read is named by the error already
        sys.stderr.write(f"{message if message.startswith(path + ':') else f'{path}: {message}'}\n")
        return 1
    sys.stdout.write(summary(path, config) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
