#!/usr/bin/env python
# Seed 000: publish to the durable fanout exchange 'ex_dcs_fanout'.
import random
import pika
from _broker import HOST, PORT

credentials = pika.PlainCredentials("guest", "guest")
connection = pika.BlockingConnection(pika.ConnectionParameters(host=HOST, port=PORT, credentials=credentials))
channel = connection.channel()
channel.exchange_declare(exchange='ex_dcs_fanout', exchange_type='fanout', durable=True)
a = random.randint(1, 99999)
msg = 'Hello World! {}'.format(str(a))
channel.basic_publish(exchange='ex_dcs_fanout', routing_key='', body=msg)
print("发送一条消息")
connection.close()
