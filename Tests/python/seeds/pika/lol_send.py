#!/usr/bin/env python
# Seed 001 section 3: durable queue 'LOL' and a persistent message (delivery_mode=2).
import pika
from _broker import HOST, PORT

credentials = pika.PlainCredentials("guest", "guest")
connection = pika.BlockingConnection(pika.ConnectionParameters(HOST, PORT, credentials=credentials))
channel = connection.channel()
channel.queue_declare(queue='LOL', durable=True)
channel.basic_publish(exchange='',
                      routing_key='LOL',
                      body='德玛西亚万岁',
                      properties=pika.BasicProperties(delivery_mode=2))
connection.close()
print("sent")
