"""What aiormq's own suite relies on (update-secret, channel numbers and the channel count,
messages larger than a frame), through aiormq itself."""
import asyncio
import os
import uuid

import aiormq
import pytest

from conftest import Node, against_warren


def url(node):
    return f"amqp://guest:guest@{node.host}:{node.port}//"


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, timeout=60))


def test_update_secret(warren):
    async def go():
        conn = await aiormq.connect(url(warren))
        ok = await conn.update_secret("guest", timeout=5)
        assert isinstance(ok, aiormq.spec.Connection.UpdateSecretOk)
        channel = await conn.channel()  # still usable
        await channel.queue_declare(auto_delete=True)
        await conn.close()
    run(go())


def test_channel_65535_opens_and_errors_stay_on_it(warren):
    async def go():
        conn = await aiormq.connect(url(warren))
        channel = await conn.channel(65535)
        with pytest.raises(aiormq.exceptions.ChannelNotFoundEntity):
            await channel.queue_bind(uuid.uuid4().hex, uuid.uuid4().hex)
        other = await conn.channel()
        await other.queue_declare(auto_delete=True)
        await conn.close()
    run(go())


@pytest.mark.skipif(not against_warren(), reason="starts a Warren node with a small channel_max")
def test_the_channel_past_channel_max_is_refused_with_530():
    node = Node("aiormq-channel-max", ["--channel-max", "16"])
    try:
        async def go():
            conn = await aiormq.connect(url(node))
            assert conn.connection_tune.channel_max == 16
            await asyncio.gather(*[conn.channel(n + 1) for n in range(16)])
            with pytest.raises(aiormq.exceptions.ConnectionNotAllowed):
                await asyncio.wait_for(conn.channel(), timeout=5)
        run(go())
    finally:
        assert node.stop() == 0


def test_a_message_of_two_and_a_half_frames(warren):
    async def go():
        conn = await aiormq.connect(url(warren))
        body = os.urandom(int(conn.connection_tune.frame_max * 2.5))
        channel = await conn.channel()
        received = asyncio.Queue()
        q = (await channel.queue_declare(auto_delete=True)).queue
        await channel.basic_consume(q, received.put, no_ack=True)
        confirmation = await channel.basic_publish(body, routing_key=q)
        assert isinstance(confirmation, aiormq.spec.Basic.Ack)
        message = await asyncio.wait_for(received.get(), timeout=10)
        assert message.body == body
        await conn.close()
    run(go())
