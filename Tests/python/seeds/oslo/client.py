#!/usr/bin/env python
# Seed 002 oslo.messaging "RPC" client.py
import oslo_messaging as messaging
from oslo_config import cfg
from _broker import TRANSPORT_URL

transport_url = TRANSPORT_URL

context = {}
transport = messaging.get_rpc_transport(conf=cfg.CONF, url=transport_url)
target = messaging.Target(topic='test')
client = messaging.RPCClient(transport=transport, target=target)
client = client.prepare()

result = client.call(context, 'add', x=1, y=2)
print(f'result is {result}')

client.cast(context, 'test')

result = client.call(context, 'fib', n=10)
print(f'fib(10) = {result}')
