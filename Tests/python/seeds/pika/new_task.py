#!/usr/bin/env python
# Tutorial 2 "Work Queues": durable queue, persistent messages.
import pika
import sys
from _broker import HOST, PORT

connection = pika.BlockingConnection(pika.ConnectionParameters(host=HOST, port=PORT))
channel = connection.channel()

channel.queue_declare(queue='task_queue', durable=True)

message = ' '.join(sys.argv[1:]) or "Hello World!"
channel.basic_publish(
    exchange='',
    routing_key='task_queue',
    body=message,
    properties=pika.BasicProperties(
        delivery_mode=pika.DeliveryMode.Persistent
    ))
print(" [x] Sent %r" % message)
connection.close()
