#!/usr/bin/env python
# Seed 001 section 5, consumers 1 and 2: direct exchange 'm2', keys given on the command line.
import sys
import pika
from _broker import HOST, PORT

credentials = pika.PlainCredentials("guest", "guest")
connection = pika.BlockingConnection(pika.ConnectionParameters(HOST, PORT, credentials=credentials))
channel = connection.channel()
channel.exchange_declare(exchange='m2', exchange_type='direct')
result = channel.queue_declare('', exclusive=True)
queue_name = result.method.queue
for key in sys.argv[1:]:
    channel.queue_bind(exchange='m2', queue=queue_name, routing_key=key)
print(' [*] bound %r' % sys.argv[1:])


def callback(ch, method, properties, body):
    print("消费者接受到了任务: %r" % body)


channel.basic_consume(queue=queue_name, on_message_callback=callback, auto_ack=True)
channel.start_consuming()
