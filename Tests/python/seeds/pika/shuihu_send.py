#!/usr/bin/env python
# Seed 001, example 1: a queue with a Chinese name; credentials adjusted to guest.
import pika
from _broker import HOST, PORT

credentials = pika.PlainCredentials("guest", "guest")
connection = pika.BlockingConnection(pika.ConnectionParameters(HOST, PORT, credentials=credentials))
channel = connection.channel()
channel.queue_declare(queue='水许传')
channel.basic_publish(exchange='', routing_key='水许传', body='武松又去打老虎啦2')
print("已经发送了消息")
connection.close()
