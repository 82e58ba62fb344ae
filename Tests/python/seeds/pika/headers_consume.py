#!/usr/bin/env python
# Binds with x-match (all or any) to the headers exchange and prints what arrives.
import sys
import pika
from _broker import HOST, PORT

connection = pika.BlockingConnection(pika.ConnectionParameters(host=HOST, port=PORT))
channel = connection.channel()
channel.exchange_declare(exchange='ex_dcs_headers', exchange_type='headers')
result = channel.queue_declare('', exclusive=True)
queue_name = result.method.queue
match = sys.argv[1]  # all | any
arguments = {'x-match': match}
arguments.update(dict(arg.split('=', 1) for arg in sys.argv[2:]))
channel.queue_bind(exchange='ex_dcs_headers', queue=queue_name, arguments=arguments)
print(' [*] Waiting for messages matching %s of %r' % (match, sorted(arguments.items())))


def callback(ch, method, properties, body):
    print(" [x] %s" % body.decode())


channel.basic_consume(queue=queue_name, on_message_callback=callback, auto_ack=True)
channel.start_consuming()
