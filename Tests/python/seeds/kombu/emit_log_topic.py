#!/usr/bin/env python
# Seed 002 kombu "Topic" emit_log_topic.py
from kombu import Exchange
from kombu import Connection
from _broker import URL

levels = ['INFO', 'ERROR', 'WARNING']
exchange = Exchange('topic_logs', type='topic')


with Connection(URL) as connection:
    producer = connection.Producer()
    for i in range(1, 20):
        level = levels[i % len(levels)]
        log = f'{level}: {i}th message'
        producer.publish(
            body=log,
            routing_key=f'log.{level}',
            exchange=exchange,
            declare=[exchange],
        )
print('published 19')
