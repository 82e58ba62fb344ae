#!/usr/bin/env python
# Seed 002 kombu "Work Queues" client.py
from kombu import Queue
from kombu import Connection
from _broker import URL

queue = Queue('task_queue', routing_key='task_queue')

with Connection(URL) as connection:
    producer = connection.Producer()
    for i in range(1, 11):
        producer.publish(
            body=f'{i}th message',
            routing_key='task_queue',
            queue=queue,
            declare=[queue],
        )
print('published 10')
