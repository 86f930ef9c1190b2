"""
twistd's options: the embedded default moved by --listen, reread for a reload.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from tunnelgw.errors import ConfigError
from tunnelgw.tap import Options


class OptionsTests(SynchronousTestCase):
    def test_the_embedded_default_admits_the_origin_where_it_listens(self) -> None:
        options = Options()
        options.parseOptions(["--listen", "tcp:9000:interface=127.0.0.1", "--listen", "tcp:9001"])
        origins = options["gateway_config"].services[0].origins
        for origin in ("http://127.0.0.1:9000", "http://localhost:9000", "http://127.0.0.1:9001"):
            self.assertIn(origin, origins)

    def test_a_configuration_file_keeps_its_origins(self) -> None:
        path = Path(tempfile.mkdtemp()) / "gw.toml"
        path.write_text(
            '[gateway]\nlisten = ["tcp:8080"]\n[realms.p]\n[[realms.p.modules]]\nmodule = "anonymous"\n'
            'flag = "required"\n[services.e]\npath = "/e"\nadapter = "echo"\nrealm = "p"\n'
            'allow_no_subprotocol = true\norigins = ["https://app.example"]\n'
        )
        options = Options()
        options.parseOptions(["--config", str(path), "--listen", "tcp:9000"])
        self.assertEqual(options["gateway_config"].services[0].origins, {"https://app.example"})
        # a reload reads the file again, the command line's listeners still in force
        self.assertEqual(options.reread().listen, ("tcp:9000",))
        path.write_text("[gateway]\nlisten = 7\n")
        with self.assertRaises(ConfigError):
            options.reread()

    def test_a_listener_twisted_cannot_parse(self) -> None:
        with self.assertRaises(usage.UsageError):
            Options().parseOptions(["--listen", "systemd:"])


class WorkerTests(SynchronousTestCase):
    CONFIG = (
        '[gateway]\nlisten = ["reuseport:8080"]\n[realms.p]\n[[realms.p.modules]]\nmodule = "anonymous"\n'
        'flag = "required"\n[metrics]\nlisten = "tcp:9464:interface=127.0.0.1"\n'
        '[admin]\nlisten = "tcp:9465:interface=127.0.0.1"\nrealm = "p"\n'
    )

    def test_worker_i_serves_metrics_on_the_port_plus_i_and_only_worker_0_admin(self) -> None:
        from tunnelgw.config.loader import loads
        from tunnelgw.tap import for_worker

        config = loads(self.CONFIG)
        self.assertIs(for_worker(config, {}), config)
        self.assertIs(for_worker(config, {"TUNNELGW_WORKER": "0"}), config)
        third = for_worker(config, {"TUNNELGW_WORKER": "2"})
        assert third.metrics is not None
        self.assertEqual(third.metrics.listen, "tcp:9466:interface=127.0.0.1")
        self.assertIsNone(third.admin)

    def test_workers_share_reuseport_listeners_only(self) -> None:
        from tunnelgw.config.loader import loads
        from tunnelgw.workers import shared_listeners

        shared_listeners(loads(self.CONFIG))
        with self.assertRaises(ConfigError) as e:
            shared_listeners(loads(self.CONFIG.replace("reuseport:8080", "tcp:8080")))
        self.assertEqual(
            str(e.exception),
            "gateway.listen[0]: workers share their listeners: use reuseport:PORT (not tcp:)",
        )
