#!/usr/bin/env python
# Seed 002 kombu "Hello World" receive.py
import kombu
from _broker import URL

with kombu.Connection(URL) as conn:
    simple_queue = conn.SimpleQueue('hello')
    message = simple_queue.get(block=True, timeout=1)
    print(f'Received: {message.payload}')
    message.ack()
    simple_queue.close()
