#!/usr/bin/env python
# Seed 002 kombu "Publish/Subscribe" emit_log.py
from kombu import Connection
from kombu import Exchange
from _broker import URL

exchange = Exchange('log', type='fanout')

with Connection(URL) as connection:
    producer = connection.Producer()
    for i in range(10):
        producer.publish(
            body=f'INFO: {i + 1}th message',
            routing_key='',
            exchange=exchange,
            declare=[exchange],
        )
print('published 10')
