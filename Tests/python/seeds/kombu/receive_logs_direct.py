#!/usr/bin/env python
# Seed 002 kombu "Routing" receive_logs_direct.py
from kombu import Queue
from kombu import Exchange
from kombu import Connection
from kombu.mixins import ConsumerMixin
from _broker import URL

levels = ['INFO', 'ERROR', 'WARNING']
exchange = Exchange('direct_logs', type='direct')
queues = [
    Queue(f'log.{level}', exchange=exchange, routing_key=level)
    for level in levels
]


class Worker(ConsumerMixin):
    def __init__(self, connection) -> None:
        self.connection = connection

    def get_consumers(self, Consumer, channel):
        return [
            Consumer(
                queues=queues,
                accept=['text/plain', 'json'],
                callbacks=[self.process_task],
            )
        ]

    def process_task(self, body, message):
        print(body, flush=True)
        message.ack()


with Connection(URL) as connection:
    try:
        worker = Worker(connection=connection)
        worker.run()
    except KeyboardInterrupt:
        print('bye bye')
