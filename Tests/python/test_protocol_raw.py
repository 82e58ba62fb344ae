"""Frames no real client sends, written byte by byte: the reply code, and a node that keeps
serving. Where RabbitMQ 3.10.8 answers differently (or resets the socket), the case says so."""
import socket
import struct

import pika
import pytest

from amqpraw import Raw, body, close_reason, frame, header, method, shortstr


def expect_close(r):
    """The connection.close the server sends (reply code, text, class, method)."""
    while True:
        ch, cls, mid, args = r.read_method()
        if (cls, mid) == (10, 50):
            return close_reason(args)
        if (cls, mid) == (20, 40):
            return ('channel',) + close_reason(args)


def assert_serving(node):
    c = pika.BlockingConnection(pika.ConnectionParameters(node.host, node.port))
    ch = c.channel()
    q = ch.queue_declare('', exclusive=True).method.queue
    ch.basic_publish('', q, b'ok')
    assert ch.basic_get(q, auto_ack=True)[2] == b'ok'
    c.close()


PUBLISH = method(1, 60, 40, struct.pack('>H', 0) + shortstr('') + shortstr('q') + b'\x00')


def case_unknown_frame_type(r):
    r.handshake(); r.send(frame(9, 0, b'abc'))


def case_bad_frame_end(r):
    r.handshake(); r.send(frame(1, 1, struct.pack('>HH', 20, 10) + shortstr(''), end=b'\x00'))


def case_method_on_unopened_channel(r):
    r.handshake(); r.send(method(3, 50, 10, struct.pack('>H', 0) + shortstr('q') + b'\x00' + struct.pack('>I', 0)))


def case_header_without_method(r):
    r.handshake(); r.open_channel(1); r.send(header(1, 60, 5))


def case_body_without_method(r):
    r.handshake(); r.open_channel(1); r.send(body(1, b'abc'))


def case_method_instead_of_header(r):
    r.handshake(); r.open_channel(1); r.send(PUBLISH); r.send(PUBLISH)


def case_body_larger_than_declared(r):
    r.handshake(); r.open_channel(1); r.send(PUBLISH); r.send(header(1, 60, 3)); r.send(body(1, b'abcdef'))


def case_second_channel_open(r):
    r.handshake(); r.open_channel(1); r.send(method(1, 20, 10, shortstr('')))


def case_unknown_method(r):
    r.handshake(); r.open_channel(1); r.send(method(1, 60, 99, b''))


def case_unknown_class(r):
    r.handshake(); r.open_channel(1); r.send(method(1, 77, 10, b''))


def case_truncated_arguments(r):
    r.handshake(); r.open_channel(1); r.send(method(1, 50, 10, b'\x00'))


def case_channels_past_channel_max(r):
    r.handshake(channel_max=1); r.open_channel(500); r.send(method(11, 20, 10, shortstr('')))


def case_frame_over_frame_max(r):
    r.handshake(frame_max=4096); r.open_channel(1); r.send(frame(1, 1, struct.pack('>HH', 60, 40) + b'\x00' * 5000))


def case_frame_max_below_minimum(r):
    r.send(b'AMQP\x00\x00\x09\x01'); r.read_method()
    r.send(method(0, 10, 11, struct.pack('>I', 0) + shortstr('PLAIN') + struct.pack('>I', 12) + b'\x00guest\x00guest' + shortstr('en_US')))
    r.read_method()
    r.send(method(0, 10, 31, struct.pack('>HIH', 0, 1024, 0)))


def case_heartbeat_on_a_channel(r):
    r.handshake(); r.send(frame(8, 1, b''))


def case_connection_method_on_a_channel(r):
    r.handshake(); r.open_channel(1); r.send(method(1, 10, 50, struct.pack('>H', 200) + shortstr('x') + struct.pack('>HH', 0, 0)))


def case_channel_method_on_channel_zero(r):
    r.handshake(); r.send(method(0, 20, 10, shortstr('')))


def case_consumer_tag_reused(r):
    r.handshake(); r.open_channel(1)
    r.send(method(1, 50, 10, struct.pack('>H', 0) + shortstr('ctr') + b'\x00' + struct.pack('>I', 0))); r.read_method()
    c = method(1, 60, 20, struct.pack('>H', 0) + shortstr('ctr') + shortstr('tag') + b'\x00' + struct.pack('>I', 0))
    r.send(c); r.read_method(); r.send(c)


def case_publish_immediate(r):
    r.handshake(); r.open_channel(1)
    r.send(method(1, 60, 40, struct.pack('>H', 0) + shortstr('') + shortstr('q') + b'\x02'))
    r.send(header(1, 60, 1)); r.send(body(1, b'a'))


def case_header_of_wrong_class(r):
    r.handshake(); r.open_channel(1); r.send(PUBLISH); r.send(header(1, 50, 1))


def case_frame_before_handshake_ends(r):
    r.send(b'AMQP\x00\x00\x09\x01'); r.read_method(); r.send(method(1, 20, 10, shortstr('')))


def case_huge_frame_before_login(r):
    # A 4 GiB frame announced right after the protocol header: refused from its 7-byte header,
    # nothing is allocated for it.
    r.send(b'AMQP\x00\x00\x09\x01'); r.read_method(); r.send(struct.pack('>BHI', 1, 0, 0xFFFFFFFF))


def nested_table(depth):
    inner = struct.pack('>I', 0)
    for _ in range(depth):
        entry = shortstr('k') + b'F' + inner
        inner = struct.pack('>I', len(entry)) + entry
    return inner


def case_deeply_nested_table(r):
    r.handshake(); r.open_channel(1)
    r.send(method(1, 50, 10, struct.pack('>H', 0) + shortstr('q') + b'\x00' + nested_table(200)))


# name: (provoke, code, text, class, method, how RabbitMQ 3.10.8 differs)
CASES = {
    'unknown_frame_type': (case_unknown_frame_type, 501, 'FRAME_ERROR - unknown frame type 9', 0, 0, 'wording'),
    'bad_frame_end': (case_bad_frame_end, 501, 'FRAME_ERROR - type 1, invalid frame end marker 0', 0, 0, 'wording'),
    'method_on_unopened_channel': (case_method_on_unopened_channel, 504, "CHANNEL_ERROR - expected 'channel.open'", 50, 10, None),
    'header_without_method': (case_header_without_method, 505, 'UNEXPECTED_FRAME - expected method frame, got non method frame instead', 0, 0, None),
    'body_without_method': (case_body_without_method, 505, 'UNEXPECTED_FRAME - expected method frame, got non method frame instead', 0, 0, None),
    'method_instead_of_header': (case_method_instead_of_header, 505, 'UNEXPECTED_FRAME - expected content header for class 60, got non content header frame instead', 60, 40, None),
    'body_larger_than_declared': (case_body_larger_than_declared, 505, 'UNEXPECTED_FRAME - content body frame of 6 bytes exceeds the 3 bytes left of the declared body size', 60, 40, 'RabbitMQ accepts it and waits'),
    'second_channel_open': (case_second_channel_open, 504, "CHANNEL_ERROR - second 'channel.open' seen", 20, 10, None),
    'unknown_method': (case_unknown_method, 540, 'NOT_IMPLEMENTED - unknown method class 60 method 99', 60, 99, 'RabbitMQ resets the socket'),
    'unknown_class': (case_unknown_class, 540, 'NOT_IMPLEMENTED - unknown method class 77 method 10', 77, 10, 'RabbitMQ resets the socket'),
    'truncated_arguments': (case_truncated_arguments, 501, 'FRAME_ERROR - cannot decode method arguments: truncated short', 50, 10, 'wording'),
    'channels_past_channel_max': (case_channels_past_channel_max, 530, 'NOT_ALLOWED - number of channels opened (1) has reached the negotiated channel_max (1)', 0, 0, None),
    'frame_over_frame_max': (case_frame_over_frame_max, 501, 'FRAME_ERROR - type 1, frame size 5004 is larger than the negotiated maximum 4088', 0, 0, 'wording'),
    'frame_max_below_minimum': (case_frame_max_below_minimum, 530, 'NOT_ALLOWED - negotiated frame_max = 1024 is lower than the minimum allowed value (4096)', 0, 0, 'RabbitMQ closes the socket'),
    'heartbeat_on_a_channel': (case_heartbeat_on_a_channel, 505, 'UNEXPECTED_FRAME - heartbeat frame on channel 1', 0, 0, 'wording'),
    'connection_method_on_a_channel': (case_connection_method_on_a_channel, 503, 'COMMAND_INVALID - unimplemented method', 10, 50, None),
    'channel_method_on_channel_zero': (case_channel_method_on_channel_zero, 504, 'CHANNEL_ERROR - unexpected method in connection state running', 20, 10, None),
    'consumer_tag_reused': (case_consumer_tag_reused, 530, "NOT_ALLOWED - attempt to reuse consumer tag 'tag'", 60, 20, None),
    'publish_immediate': (case_publish_immediate, 540, 'NOT_IMPLEMENTED - immediate=true', 60, 40, None),
    'header_of_wrong_class': (case_header_of_wrong_class, 505, 'UNEXPECTED_FRAME - expected content header for class 60, got one for class 50 instead', 60, 40, None),
    'huge_frame_before_login': (case_huge_frame_before_login, 501, 'FRAME_ERROR - type 1, frame size 4294967295 is larger than the negotiated maximum 8184', 0, 0, 'wording'),
    'deeply_nested_table': (case_deeply_nested_table, 501, 'FRAME_ERROR - cannot decode method arguments: field table nesting deeper than 32', 50, 10, 'RabbitMQ has no nesting limit'),
    'frame_before_handshake_ends': (case_frame_before_handshake_ends, 503, 'COMMAND_INVALID - channel frame received before the connection was opened', 0, 0, 'RabbitMQ closes the socket'),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_frame(warren, name):
    provoke, code, text, cls, mid, _differs = CASES[name]
    r = Raw(warren.port)
    provoke(r)
    assert expect_close(r) == (code, text, cls, mid)
    r.send(method(0, 10, 51))  # close-ok: the server then closes the socket
    assert r.closed()
    assert_serving(warren)




def test_declared_body_over_the_maximum_message_size_closes_the_channel(warren):
    """The header's body size is checked before any body is buffered: 406 on the channel."""
    r = Raw(warren.port)
    r.handshake(); r.open_channel(1); r.send(PUBLISH); r.send(header(1, 60, 200 * 1024 * 1024))
    assert expect_close(r) == ('channel', 406, 'PRECONDITION_FAILED - message size 209715200 is larger than configured max size 134217728', 60, 40)
    r.send(method(1, 20, 41))  # channel.close-ok; the connection stays usable
    r.open_channel(2)
    assert_serving(warren)


@pytest.mark.parametrize("greeting", [b'AMQP\x00\x00\x08\x00', b'GET / HTTP/1.1\r\n\r\n', b'AMQP\x01\x01\x00\x09'])
def test_wrong_protocol_header_is_answered_with_ours(warren, greeting):
    r = Raw(warren.port)
    r.send(greeting)
    assert r.read_exact(8) == b'AMQP\x00\x00\x09\x01'
    assert r.closed()
    assert_serving(warren)


def test_client_close_is_answered_with_close_ok(warren):
    r = Raw(warren.port)
    r.handshake()
    r.send(method(0, 10, 50, struct.pack('>H', 200) + shortstr('bye') + struct.pack('>HH', 0, 0)))
    assert r.read_method()[1:3] == (10, 51)
    assert r.closed()


def test_frames_after_channel_close_are_ignored_until_close_ok(warren):
    r = Raw(warren.port)
    r.handshake()
    r.open_channel(1)
    passive = method(1, 50, 10, struct.pack('>H', 0) + shortstr('nope') + b'\x01' + struct.pack('>I', 0))
    r.send(passive)
    assert expect_close(r)[:2] == ('channel', 404)
    r.send(passive)                          # ignored: the channel is closing
    r.send(method(1, 20, 41))                # close-ok frees the number
    r.send(method(1, 20, 10, shortstr('')))  # so it can be opened again
    assert r.read_method()[1:3] == (20, 11)


def test_a_client_that_never_finishes_the_handshake_is_dropped():
    """Sockets that stop mid-handshake are closed when the handshake timeout passes (1 s here,
    10 s by default); other clients are served meanwhile."""
    from conftest import Node, against_warren
    if not against_warren():
        pytest.skip("needs a node started with a short handshake timeout")
    node = Node("handshake-timeout", ["--handshake-timeout", "1"])
    try:
        silent = socket.create_connection((node.host, node.port), timeout=5)
        halfway = Raw(node.port)
        halfway.send(b'AMQP\x00\x00\x09\x01')
        halfway.read_method()  # connection.start, never answered
        assert_serving(node)
        assert silent.recv(1) == b''
        assert halfway.closed()
        assert "handshake timeout" in node.log_text()
    finally:
        assert node.stop() == 0
