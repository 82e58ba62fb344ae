#!/usr/bin/env python
# Seed 002 kombu "Routing" emit_log_direct.py
from kombu import Exchange
from kombu import Connection
from _broker import URL

levels = ['INFO', 'ERROR', 'WARNING']
exchange = Exchange('direct_logs', type='direct')


with Connection(URL) as connection:
    producer = connection.Producer()
    for i in range(1, 20):
        level = levels[i % len(levels)]
        log = f'{level}: {i}th message'
        producer.publish(
            body=log,
            routing_key=level,
            exchange=exchange,
            declare=[exchange],
        )
print('published 19')
