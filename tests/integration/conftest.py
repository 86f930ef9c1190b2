from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import EchoServer, Gateway, free_port


@pytest.fixture
def start_gateway(tmp_path: Path) -> Iterator[Callable[..., Gateway]]:
    """
    Start a gateway from config text; C{{port}} in the text is replaced by a
    free port.  Stopped at the end of the test.
    """
    started: list[Gateway] = []

    def start(config: str, env: dict[str, str] | None = None) -> Gateway:
        port = free_port()
        workdir = tmp_path / f"gw{len(started)}"
        workdir.mkdir()
        gateway = Gateway(workdir, config.replace("{port}", str(port)), port, env)
        started.append(gateway)
        return gateway.start()

    yield start
    for gateway in started:
        gateway.stop()


@pytest.fixture
def echo_server() -> Iterator[EchoServer]:
    server = EchoServer()
    yield server
    server.close()


@pytest.fixture(scope="session")
def rabbitmq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """
    One real RabbitMQ (rabbitmq_stomp) for the whole test session: it takes
    seconds to start.
    """
    from tests.integration.rabbitmq import RabbitMQ

    broker = RabbitMQ(tmp_path_factory.mktemp("rabbitmq")).start()
    yield broker
    broker.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
