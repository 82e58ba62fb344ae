#!/usr/bin/env python
# Tutorial 6 "RPC": the client, with an exclusive callback queue and correlation ids.
import sys
import pika
import uuid
from _broker import HOST, PORT


class FibonacciRpcClient(object):

    def __init__(self):
        self.connection = pika.BlockingConnection(pika.ConnectionParameters(host=HOST, port=PORT))

        self.channel = self.connection.channel()

        result = self.channel.queue_declare(queue='', exclusive=True)
        self.callback_queue = result.method.queue

        self.channel.basic_consume(
            queue=self.callback_queue,
            on_message_callback=self.on_response,
            auto_ack=True)

        self.response = None
        self.corr_id = None

    def on_response(self, ch, method, props, body):
        if self.corr_id == props.correlation_id:
            self.response = body

    def call(self, n):
        self.response = None
        self.corr_id = str(uuid.uuid4())
        self.channel.basic_publish(
            exchange='',
            routing_key='rpc_queue',
            properties=pika.BasicProperties(
                reply_to=self.callback_queue,
                correlation_id=self.corr_id,
            ),
            body=str(n))
        self.connection.process_data_events(time_limit=None)
        while self.response is None:
            self.connection.process_data_events(time_limit=1)
        return int(self.response)


fibonacci_rpc = FibonacciRpcClient()

n = int(sys.argv[1]) if len(sys.argv) > 1 else 30
print(" [x] Requesting fib(%d)" % n)
response = fibonacci_rpc.call(n)
print(" [.] Got %r" % response)
