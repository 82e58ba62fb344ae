"""Every error a pika client can provoke, with the reply code and text RabbitMQ 3.10.8 sends
(recorded from a live broker), and a node that keeps serving other clients afterwards."""
import pika
import pytest

from conftest import against_warren

LOCKED = ("RESOURCE_LOCKED - cannot obtain exclusive access to locked queue 'exq1' in vhost '/'. It could be "
          "originally declared on another connection or the exclusive property value does not match that of the "
          "original declaration.")

# name: (provoke(channel), scope, code, text)
CASES = {
    'declare_passive_missing_q': (lambda ch: ch.queue_declare('nope-q', passive=True), 'channel', 404, "NOT_FOUND - no queue 'nope-q' in vhost '/'"),
    'declare_passive_missing_x': (lambda ch: ch.exchange_declare('nope-x', passive=True), 'channel', 404, "NOT_FOUND - no exchange 'nope-x' in vhost '/'"),
    'q_inequivalent_durable': (lambda ch: (ch.queue_declare('pq1'), ch.queue_declare('pq1', durable=True)), 'channel', 406, "PRECONDITION_FAILED - inequivalent arg 'durable' for queue 'pq1' in vhost '/': received 'true' but current is 'false'"),
    'q_inequivalent_args': (lambda ch: (ch.queue_declare('pq2', arguments={'x-max-length': 5}), ch.queue_declare('pq2', arguments={'x-max-length': 6})), 'channel', 406, "PRECONDITION_FAILED - inequivalent arg 'x-max-length' for queue 'pq2' in vhost '/': received '6' but current is '5'"),
    'q_arg_missing_now': (lambda ch: (ch.queue_declare('pz1', arguments={'x-max-length': 5}), ch.queue_declare('pz1')), 'channel', 406, "PRECONDITION_FAILED - inequivalent arg 'x-max-length' for queue 'pz1' in vhost '/': received none but current is the value '5' of type 'signedint'"),
    'q_inequivalent_autodelete': (lambda ch: (ch.queue_declare('pq3'), ch.queue_declare('pq3', auto_delete=True)), 'channel', 406, "PRECONDITION_FAILED - inequivalent arg 'auto_delete' for queue 'pq3' in vhost '/': received 'true' but current is 'false'"),
    'x_inequivalent_type': (lambda ch: (ch.exchange_declare('px1', 'direct'), ch.exchange_declare('px1', 'fanout')), 'channel', 406, "PRECONDITION_FAILED - inequivalent arg 'type' for exchange 'px1' in vhost '/': received 'fanout' but current is 'direct'"),
    'x_inequivalent_durable': (lambda ch: (ch.exchange_declare('px2', 'direct'), ch.exchange_declare('px2', 'direct', durable=True)), 'channel', 406, "PRECONDITION_FAILED - inequivalent arg 'durable' for exchange 'px2' in vhost '/': received 'true' but current is 'false'"),
    'x_unknown_type': (lambda ch: ch.exchange_declare('px3', 'weird'), 'connection', 503, "COMMAND_INVALID - unknown exchange type 'weird'"),
    'x_reserved_name': (lambda ch: ch.exchange_declare('amq.foo', 'direct'), 'channel', 403, "ACCESS_REFUSED - exchange name 'amq.foo' contains reserved prefix 'amq.*'"),
    'x_redeclare_amq_direct_nondurable': (lambda ch: ch.exchange_declare('amq.direct', 'direct'), 'channel', 406, "PRECONDITION_FAILED - inequivalent arg 'durable' for exchange 'amq.direct' in vhost '/': received 'false' but current is 'true'"),
    'x_declare_default': (lambda ch: ch.exchange_declare('', 'direct'), 'channel', 403, "ACCESS_REFUSED - operation not permitted on the default exchange"),
    'x_delete_default': (lambda ch: ch.exchange_delete(''), 'channel', 403, "ACCESS_REFUSED - operation not permitted on the default exchange"),
    'x_delete_amq': (lambda ch: ch.exchange_delete('amq.direct'), 'channel', 403, "ACCESS_REFUSED - deletion of system exchange 'amq.direct' in vhost '/' not allowed"),
    'q_reserved_name': (lambda ch: ch.queue_declare('amq.foo'), 'channel', 403, "ACCESS_REFUSED - queue name 'amq.foo' contains reserved prefix 'amq.*'"),
    'q_bind_default_x': (lambda ch: (ch.queue_declare('pq5'), ch.queue_bind('pq5', '')), 'channel', 403, "ACCESS_REFUSED - operation not permitted on the default exchange"),
    'q_bind_missing_x': (lambda ch: (ch.queue_declare('pq5'), ch.queue_bind('pq5', 'nope-x')), 'channel', 404, "NOT_FOUND - no exchange 'nope-x' in vhost '/'"),
    'q_bind_missing_q': (lambda ch: ch.queue_bind('nope-q', 'amq.direct'), 'channel', 404, "NOT_FOUND - no queue 'nope-q' in vhost '/'"),
    'q_purge_missing': (lambda ch: ch.queue_purge('nope-q'), 'channel', 404, "NOT_FOUND - no queue 'nope-q' in vhost '/'"),
    'q_delete_ifempty': (lambda ch: (ch.queue_declare('pq6'), ch.basic_publish('', 'pq6', b'x'), ch.queue_delete('pq6', if_empty=True)), 'channel', 406, "PRECONDITION_FAILED - queue 'pq6' in vhost '/' not empty"),
    'q_delete_ifunused': (lambda ch: (ch.queue_declare('pq7'), ch.basic_consume('pq7', lambda *a: None), ch.queue_delete('pq7', if_unused=True)), 'channel', 406, "PRECONDITION_FAILED - queue 'pq7' in vhost '/' in use"),
    'x_delete_ifunused': (lambda ch: (ch.exchange_declare('px4', 'direct'), ch.queue_declare('pq8'), ch.queue_bind('pq8', 'px4', 'k'), ch.exchange_delete('px4', if_unused=True)), 'channel', 406, "PRECONDITION_FAILED - exchange 'px4' in vhost '/' in use"),
    'publish_missing_x': (lambda ch: (ch.basic_publish('nope-x', 'k', b'x'), ch.queue_declare('pq9')), 'channel', 404, "NOT_FOUND - no exchange 'nope-x' in vhost '/'"),
    'ack_unknown_tag': (lambda ch: (ch.basic_ack(99), ch.queue_declare('pq9')), 'channel', 406, "PRECONDITION_FAILED - unknown delivery tag 99"),
    'consume_missing_q': (lambda ch: ch.basic_consume('nope-q', lambda *a: None), 'channel', 404, "NOT_FOUND - no queue 'nope-q' in vhost '/'"),
    'get_missing_q': (lambda ch: ch.basic_get('nope-q'), 'channel', 404, "NOT_FOUND - no queue 'nope-q' in vhost '/'"),
    'consume_exclusive_conflict': (lambda ch: (ch.queue_declare('pq11'), ch.basic_consume('pq11', lambda *a: None), ch.basic_consume('pq11', lambda *a: None, exclusive=True)), 'channel', 403, "ACCESS_REFUSED - queue 'pq11' in vhost '/' in exclusive use"),
    'consume_after_exclusive': (lambda ch: (ch.queue_declare('pq12'), ch.basic_consume('pq12', lambda *a: None, exclusive=True), ch.basic_consume('pq12', lambda *a: None)), 'channel', 403, "ACCESS_REFUSED - queue 'pq12' in vhost '/' in exclusive use"),
    'qos_prefetch_size': (lambda ch: ch.basic_qos(prefetch_size=10), 'connection', 540, "NOT_IMPLEMENTED - prefetch_size!=0 (10)"),
    'tx_commit_not_tx': (lambda ch: ch.tx_commit(), 'channel', 406, "PRECONDITION_FAILED - channel is not transactional"),
    'tx_then_confirm': (lambda ch: (ch.tx_select(), ch.confirm_delivery()), 'channel', 406, "PRECONDITION_FAILED - cannot switch from tx to confirm mode"),
    'confirm_then_tx': (lambda ch: (ch.confirm_delivery(), ch.tx_select()), 'channel', 406, "PRECONDITION_FAILED - cannot switch from confirm to tx mode"),
    'no_prev_declared': (lambda ch: ch.queue_bind('', 'amq.direct'), 'channel', 404, "NOT_FOUND - no previously declared queue"),
    'q_arg_invalid': (lambda ch: ch.queue_declare('pq13', arguments={'x-max-length': -1}), 'channel', 406, "PRECONDITION_FAILED - invalid arg 'x-max-length' for queue 'pq13' in vhost '/': {value_negative,-1}"),
    'q_arg_wrongtype': (lambda ch: ch.queue_declare('pq14', arguments={'x-message-ttl': 'abc'}), 'channel', 406, "PRECONDITION_FAILED - invalid arg 'x-message-ttl' for queue 'pq14' in vhost '/': \"expected integer, got longstr\""),
    'q_dlrk_without_dlx': (lambda ch: ch.queue_declare('pz12', arguments={'x-dead-letter-routing-key': 'a'}), 'channel', 406, "PRECONDITION_FAILED - invalid arg 'x-dead-letter-routing-key' for queue 'pz12' in vhost '/': routing_key_but_no_dlx_defined"),
    'publish_internal_x': (lambda ch: (ch.exchange_declare('px5', 'direct', internal=True), ch.basic_publish('px5', 'k', b'x'), ch.queue_declare('pq9')), 'channel', 403, "ACCESS_REFUSED - cannot publish to internal exchange 'px5' in vhost '/'"),
    'recover_without_requeue': (lambda ch: ch.basic_recover(requeue=False), 'connection', 540, "NOT_IMPLEMENTED - requeue=false"),
    'excl_redeclare_as_shared': (lambda ch: (ch.queue_declare('pz6', exclusive=True), ch.queue_declare('pz6')), 'channel', 405, LOCKED.replace('exq1', 'pz6')),
}


def connect(node):
    return pika.BlockingConnection(pika.ConnectionParameters(node.host, node.port, heartbeat=0))


def assert_serving(node):
    c = connect(node)
    ch = c.channel()
    q = ch.queue_declare('', exclusive=True).method.queue
    ch.basic_publish('', q, b'still here')
    for _ in range(100):
        m = ch.basic_get(q, auto_ack=True)
        if m[0] is not None:
            break
    assert m[2] == b'still here'
    c.close()


@pytest.mark.parametrize("name", sorted(CASES))
def test_error(warren, name):
    provoke, scope, code, text = CASES[name]
    bystander = connect(warren)  # another client, busy on its own queue throughout
    bch = bystander.channel()
    bq = bch.queue_declare('', exclusive=True).method.queue
    c = connect(warren)
    ch = c.channel()
    expected = pika.exceptions.ChannelClosedByBroker if scope == 'channel' else pika.exceptions.ConnectionClosedByBroker
    with pytest.raises(expected) as info:
        provoke(ch)
    assert (info.value.reply_code, info.value.reply_text) == (code, text)
    if scope == 'channel':
        # The connection lives on: a new channel works.
        c.channel().queue_declare('', exclusive=True)
    if c.is_open:
        c.close()
    bch.basic_publish('', bq, b'bystander')
    assert bch.basic_get(bq, auto_ack=True)[2] == b'bystander'
    bystander.close()
    assert_serving(warren)
    if against_warren():
        assert text in warren.log_text(), "the error is logged"


@pytest.mark.parametrize("attempt", ["declare", "passive", "consume", "get", "bind", "purge", "delete"])
def test_exclusive_queue_of_another_connection(warren, attempt):
    owner = connect(warren)
    owner.channel().queue_declare('exq1', exclusive=True)
    c = connect(warren)
    ch = c.channel()
    actions = {
        "declare": lambda: ch.queue_declare('exq1'),
        "passive": lambda: ch.queue_declare('exq1', passive=True),
        "consume": lambda: ch.basic_consume('exq1', lambda *a: None),
        "get": lambda: ch.basic_get('exq1'),
        "bind": lambda: ch.queue_bind('exq1', 'amq.direct'),
        "purge": lambda: ch.queue_purge('exq1'),
        "delete": lambda: ch.queue_delete('exq1'),
    }
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        actions[attempt]()
    assert (info.value.reply_code, info.value.reply_text) == (405, LOCKED)
    c.close()
    owner.close()
    assert_serving(warren)


@pytest.mark.parametrize("params,code,text", [
    (dict(virtual_host='nope'), 530, "NOT_ALLOWED - vhost nope not found"),
    (dict(credentials=pika.PlainCredentials('guest', 'wrong')), 403, "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. For details see the broker logfile."),
    (dict(credentials=pika.PlainCredentials('zed', 'wrong')), 403, "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. For details see the broker logfile."),
])
def test_refused_connection(warren, params, code, text):
    with pytest.raises(pika.exceptions.AMQPConnectionError) as info:
        pika.BlockingConnection(pika.ConnectionParameters(warren.host, warren.port, **params))
    assert f"({code}) '{text}'" in str(info.value)
    assert_serving(warren)
    if against_warren():
        log = warren.log_text()
        assert "login refused" in log or "vhost nope not found" in log
