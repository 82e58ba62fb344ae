#!/usr/bin/env python
# Seed 001, example 1 consumer; pika >= 1.0 spells basic_consume(queue, callback, auto_ack).
import pika
from _broker import HOST, PORT

credentials = pika.PlainCredentials("guest", "guest")
connection = pika.BlockingConnection(pika.ConnectionParameters(HOST, PORT, credentials=credentials))
channel = connection.channel()
channel.queue_declare(queue="水许传")


def callback(ch, method, properties, body):
    print("消费者接收到了任务: %r" % body.decode("utf8"))


channel.basic_consume(queue="水许传", on_message_callback=callback, auto_ack=True)
channel.start_consuming()
