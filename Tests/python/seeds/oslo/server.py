#!/usr/bin/env python
# Seed 002 oslo.messaging "RPC" server.py
import time
import oslo_messaging as messaging
from oslo_config import cfg
from _broker import TRANSPORT_URL

transport_url = TRANSPORT_URL


class Endpoint(object):
    def _fib(self, n):
        if n == 0:
            return 0
        elif n == 1:
            return 1
        else:
            return self._fib(n - 1) + self._fib(n - 2)

    def fib(self, context, n):
        print(n, flush=True)
        return self._fib(n)

    def test(self, context):
        print('testing', flush=True)

    def add(self, context, x, y):
        result = x + y
        print(f'result is {result}', flush=True)
        return result


transport = messaging.get_rpc_transport(conf=cfg.CONF, url=transport_url)
target = messaging.Target(topic='test', server='server-1')
endpoints = [
    Endpoint()
]
server = messaging.get_rpc_server(transport, target, endpoints=endpoints)
try:
    print('Start Server', flush=True)
    server.start()
    while True:
        time.sleep(1)
except KeyboardInterrupt:
    print('Stopping Server')
    server.stop()
    server.wait()
