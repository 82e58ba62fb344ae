#!/usr/bin/env python
# Seed 001 section 5, the producer.
import sys
import pika
from _broker import HOST, PORT

credentials = pika.PlainCredentials("guest", "guest")
connection = pika.BlockingConnection(pika.ConnectionParameters(HOST, PORT, credentials=credentials))
channel = connection.channel()
channel.exchange_declare(exchange='m2', exchange_type='direct')
channel.basic_publish(exchange='m2', routing_key=sys.argv[1] if len(sys.argv) > 1 else 'sb', body='aaaalexlaolalaodi')
print("sent")
connection.close()
