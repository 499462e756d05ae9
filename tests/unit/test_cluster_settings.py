"""Settings and topology for more than one machine: node lists, queue types, sentinel and replica URLs."""

from __future__ import annotations

import pydantic
import pytest

from infra.amqp import TopologyBroker, amqp_urls, node_name, queue_arguments, topology
from infra.settings import Settings
from schemas.queues import ALL_QUEUES

SECRETS = {"jwt_secret": "x" * 32, "admin_token": "y" * 32}


def test_amqp_url_lists_nodes_separated_by_semicolons_or_commas():
    a, b = "amqp://u:p@rabbit-1:5672/%2F", "amqps://u:p@rabbit-2/prod"
    assert amqp_urls(a) == (a,)
    assert amqp_urls(f"{a};{b}") == amqp_urls(f" {a} , {b} ") == amqp_urls(f"{a};{b};") == (a, b)
    assert [node_name(u) for u in (a, b)] == ["rabbit-1:5672", "rabbit-2:5672"]
    for bad in ("", ";", "http://rabbit/", "rabbit-1:5672", "amqp://u:secret@rabbit:notaport/"):
        with pytest.raises(ValueError) as refused:
            amqp_urls(bad)
        assert "secret" not in str(refused.value)


@pytest.mark.parametrize("queue_type", ["classic", "quorum"])
def test_dramatiq_broker_declares_what_ingress_declares(queue_type):
    broker = TopologyBroker(url="amqp://guest:guest@127.0.0.1:1/%2F", queue_type=queue_type)  # never connects
    for queue in ALL_QUEUES:
        work, delay, dead = topology(queue, queue_type)
        assert broker._build_queue_arguments(queue) == work[1] == delay[1] == queue_arguments(queue, queue_type)
        assert dead[0] == f"{queue}.XQ" and dead[1]["x-message-ttl"] > 0
        assert ("x-queue-type" in dead[1]) == (queue_type == "quorum") == ("x-queue-type" in work[1])


def test_classic_queues_keep_the_arguments_they_always_had():
    """Existing deployments' queues were declared without x-queue-type; adding it would be refused."""
    assert topology("chat") == [
        ("chat", {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "chat.XQ"}),
        ("chat.DQ", {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "chat.XQ"}),
        ("chat.XQ", {"x-message-ttl": 7 * 86_400_000}),
    ]


def test_settings_accept_cluster_urls():
    s = Settings(
        **SECRETS,
        amqp_url="amqp://a/;amqp://b/",
        amqp_queue_type="quorum",
        redis_url="redis+sentinel://:pw@s1:26379,s2:26379/2/gkmaster",
        database_read_url="postgresql://reader@replica:5432/gatekeeper?application_name=gatekeeper-read",
    )
    assert s.amqp_urls == ("amqp://a/", "amqp://b/") and s.amqp_queue_type == "quorum"
    assert Settings(**SECRETS).amqp_queue_type == "classic" and Settings(**SECRETS).database_read_url == ""


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("amqp_url", "amqp://ok/;redis://nope/", "AMQP_URL"),
        ("redis_url", "redis+sentinel://127.0.0.1:26379/0", "master name"),
        ("redis_url", "http://127.0.0.1:6379", "REDIS_URL"),
        ("database_read_url", "mysql://replica/db", "DATABASE_READ_URL"),
        ("amqp_queue_type", "stream", "amqp_queue_type"),
    ],
)
def test_settings_refuse_bad_cluster_urls(field, value, message):
    with pytest.raises(pydantic.ValidationError, match=message):
        Settings(**SECRETS, **{field: value})
