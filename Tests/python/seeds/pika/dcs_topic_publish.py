#!/usr/bin/env python
# Seed 000: two messages to topic exchange 'ex_dcs_topic' (durable) with keys routing.dcs.topic1/2.
import random
import pika
from _broker import HOST, PORT

credentials = pika.PlainCredentials("guest", "guest")
connection = pika.BlockingConnection(pika.ConnectionParameters(host=HOST, port=PORT, credentials=credentials))
channel = connection.channel()
channel.exchange_declare(exchange="ex_dcs_topic", exchange_type='topic', durable=True)
a = random.randint(1, 99999)
msg = 'Hello World! {}'.format(str(a))
channel.basic_publish(exchange='ex_dcs_topic', routing_key='routing.dcs.topic1', body=msg)
a = random.randint(1, 99999)
msg = 'Hello World! {}'.format(str(a))
channel.basic_publish(exchange='ex_dcs_topic', routing_key='routing.dcs.topic2', body=msg)
print("发送2条消息 %s" % msg)
connection.close()
