#!/usr/bin/env python
# Seed 001 section 3: manual ack; a message not acked stays in the queue. With FAIL set the
# callback raises before acking, as the tutorial's commented-out int('asdfasdf') does.
import os
import pika
from _broker import HOST, PORT

credentials = pika.PlainCredentials("guest", "guest")
connection = pika.BlockingConnection(pika.ConnectionParameters(HOST, PORT, credentials=credentials))
channel = connection.channel()
channel.queue_declare(queue='LOL', durable=True)


def callback(ch, method, properties, body):
    print("消费者接受到了任务：%r" % body.decode("utf-8"))
    if os.environ.get("FAIL"):
        int('asdfasdf')
    ch.basic_ack(delivery_tag=method.delivery_tag)


channel.basic_consume(queue='LOL', on_message_callback=callback, auto_ack=False)
channel.start_consuming()
