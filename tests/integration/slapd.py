"""
A real LDAP directory (Debian's OpenLDAP slapd) for the C{ldap} login
module's tests: C{ldap://} (StartTLS) and C{ldaps://} on free loopback
ports, a certificate from the tests' CA, a search account, users with
salted password hashes (slappasswd) and groups of names.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.integration.certs import CA
from tests.integration.harness import free_port, port_open, wait_for

SUFFIX = "dc=example,dc=org"
SEARCH_DN = f"cn=gateway,ou=services,{SUFFIX}"
SEARCH_PASSWORD = "search-Secret-pw-0"
ROOT_DN = f"cn=admin,{SUFFIX}"
ROOT_PASSWORD = "root-Secret-pw-9"
PASSWORDS = {"alice": "alice-Secret-pw-1", "bob": "bob-Secret-pw-2", "carol": "carol-Secret-pw-3"}
GROUPS = {"vnc": ["alice"], "ops": ["alice", "carol"]}
SCHEMAS = ("core", "cosine", "inetorgperson", "nis")


def _hash(password: str) -> str:
    return subprocess.run(
        ["slappasswd", "-h", "{SSHA}", "-s", password], check=True, capture_output=True, text=True
    ).stdout.strip()


class Slapd:
    def __init__(self, state: Path, ca: CA) -> None:
        if shutil.which("slapd") is None or shutil.which("ldapdelete") is None:
            # A missing peer fails the test run; it never skips it.
            raise RuntimeError(
                "slapd or ldap-utils is not installed: run tests/peers/install.sh (make test does)"
            )
        self.state = state
        state.mkdir(parents=True, exist_ok=True)
        (state / "db").mkdir(exist_ok=True)
        self.port, self.tls_port = free_port(), free_port()
        self.ca = ca
        cert, key = ca.issue("directory", ["127.0.0.1", "localhost"])
        self.search_password_file = state / "search-password"
        self.search_password_file.write_text(SEARCH_PASSWORD + "\n")
        includes = [f"include /etc/ldap/schema/{name}.schema" for name in SCHEMAS]
        self.config = state / "slapd.conf"
        self.config.write_text(
            "\n".join(
                [
                    *includes,
                    "modulepath /usr/lib/ldap",
                    "moduleload back_mdb",
                    f"pidfile {state / 'slapd.pid'}",
                    f"TLSCertificateFile {cert}",
                    f"TLSCertificateKeyFile {key}",
                    "database mdb",
                    f'suffix "{SUFFIX}"',
                    f'rootdn "{ROOT_DN}"',
                    f"rootpw {_hash(ROOT_PASSWORD)}",
                    f"directory {state / 'db'}",
                    "maxsize 10485760",
                    "access to attrs=userPassword by anonymous auth by * none",
                    f'access to * by dn.exact="{SEARCH_DN}" read by users read by * none',
                ]
            )
            + "\n"
        )
        self.load(self.entries())
        self.proc: subprocess.Popen[bytes] | None = None

    def entries(self) -> str:
        blocks = [
            f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example",
            f"dn: ou=people,{SUFFIX}\nobjectClass: organizationalUnit\nou: people",
            f"dn: ou=groups,{SUFFIX}\nobjectClass: organizationalUnit\nou: groups",
            f"dn: ou=services,{SUFFIX}\nobjectClass: organizationalUnit\nou: services",
            f"dn: {SEARCH_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n"
            f"cn: gateway\nuserPassword: {_hash(SEARCH_PASSWORD)}",
        ]
        for user, password in PASSWORDS.items():
            blocks.append(
                f"dn: uid={user},ou=people,{SUFFIX}\nobjectClass: inetOrgPerson\nuid: {user}\n"
                f"cn: {user.title()}\nsn: {user.title()}\nuserPassword: {_hash(password)}"
            )
        for group, members in GROUPS.items():
            lines = [f"dn: cn={group},ou=groups,{SUFFIX}", "objectClass: groupOfNames", f"cn: {group}"]
            lines += [f"member: uid={m},ou=people,{SUFFIX}" for m in members]
            blocks.append("\n".join(lines))
        return "\n\n".join(blocks) + "\n"

    def load(self, ldif: str) -> None:
        """Entries added (slapadd) while the server is stopped."""
        path = self.state / "add.ldif"
        path.write_text(ldif)
        subprocess.run(["slapadd", "-f", str(self.config), "-l", str(path)], check=True, capture_output=True)

    def remove(self, dn: str) -> None:
        """An entry deleted while the directory runs (OpenLDAP's ldapdelete, as its administrator)."""
        command = ["ldapdelete", "-x", "-H", self.url, "-D", ROOT_DN, "-w", ROOT_PASSWORD, dn]
        subprocess.run(command, check=True, capture_output=True, timeout=10)

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def tls_url(self) -> str:
        return f"ldaps://127.0.0.1:{self.tls_port}"

    def start(self) -> Slapd:
        log = open(self.state / "slapd.log", "ab")
        urls = f"ldap://127.0.0.1:{self.port}/ ldaps://127.0.0.1:{self.tls_port}/"
        # -d: in the foreground (a debug level of none); the log is stderr
        self.proc = subprocess.Popen(
            ["slapd", "-d", "0", "-f", str(self.config), "-h", urls], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        wait_for(lambda: port_open(self.port) and port_open(self.tls_port), 20, "slapd to listen")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
