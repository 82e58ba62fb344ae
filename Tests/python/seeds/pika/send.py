#!/usr/bin/env python
# Tutorial 1 "Hello World!" (seeds 001/003/004): send one message to the 'hello' queue.
import pika
from _broker import HOST, PORT

connection = pika.BlockingConnection(pika.ConnectionParameters(host=HOST, port=PORT))
channel = connection.channel()
channel.queue_declare(queue='hello')
channel.basic_publish(exchange='', routing_key='hello', body='Hello World!')
print(" [x] Sent 'Hello World!'")
connection.close()
