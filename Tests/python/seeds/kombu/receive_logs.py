#!/usr/bin/env python
# Seed 002 kombu "Publish/Subscribe" receive_logs.py
from kombu import Queue
from kombu import Exchange
from kombu import Connection
from kombu.mixins import ConsumerMixin
from _broker import URL

exchange = Exchange('log', type='fanout')
queue = Queue('log', exchange=exchange)


class Worker(ConsumerMixin):
    def __init__(self, connection) -> None:
        self.connection = connection

    def get_consumers(self, Consumer, channel):
        return [
            Consumer(
                queues=[queue],
                callbacks=[self.process_task],
                accept=['text/plain', 'json'],
                prefetch_count=1,
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
