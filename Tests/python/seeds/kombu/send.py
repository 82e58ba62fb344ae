#!/usr/bin/env python
# Seed 002 kombu "Hello World" send.py
import kombu
import datetime
from _broker import URL

with kombu.Connection(URL) as conn:
    simple_queue = conn.SimpleQueue('hello')
    message = f'helloworld, sent at {datetime.datetime.today()}'
    simple_queue.put(message)
    print(f'Sent: {message}')
    simple_queue.close()
