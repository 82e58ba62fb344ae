#!/usr/bin/env python
# Seed 002 kombu "Work Queues" worker.py
from kombu import Queue
from kombu.mixins import ConsumerMixin
from kombu import Connection
from _broker import URL


queue = Queue('task_queue', routing_key='task_queue')


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
