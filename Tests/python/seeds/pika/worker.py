#!/usr/bin/env python
# Tutorial 2 "Work Queues": manual ack, prefetch 1 (fair dispatch); a dot is a second of work
# (scaled down by WORK_UNIT for the test).
import os
import pika
import time
from _broker import HOST, PORT

UNIT = float(os.environ.get("WORK_UNIT", "1"))
connection = pika.BlockingConnection(pika.ConnectionParameters(host=HOST, port=PORT))
channel = connection.channel()

channel.queue_declare(queue='task_queue', durable=True)
print(' [*] Waiting for messages. To exit press CTRL+C')


def callback(ch, method, properties, body):
    print(" [x] Received %r" % body.decode())
    time.sleep(body.count(b'.') * UNIT)
    print(" [x] Done %r" % body.decode())
    ch.basic_ack(delivery_tag=method.delivery_tag)


channel.basic_qos(prefetch_count=1)
channel.basic_consume(queue='task_queue', on_message_callback=callback)

channel.start_consuming()
