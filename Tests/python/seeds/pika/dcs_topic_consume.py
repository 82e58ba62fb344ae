#!/usr/bin/env python
# Seed 000: exclusive server-named queue bound with 'routing.dcs.*'.
import pika
from _broker import HOST, PORT


def callback(ch, method, properties, body):
    print("获取到消息 %s" % body)


credentials = pika.PlainCredentials("guest", "guest")
connection = pika.BlockingConnection(pika.ConnectionParameters(host=HOST, port=PORT, credentials=credentials))
channel = connection.channel()
channel.exchange_declare(exchange='ex_dcs_topic', exchange_type='topic', durable=True)
result = channel.queue_declare('', exclusive=True)
queue_name = result.method.queue
print(queue_name)
binding_keys = ["routing.dcs.*"]
for binding_key in binding_keys:
    channel.queue_bind(exchange='ex_dcs_topic', queue=queue_name, routing_key=binding_key)

channel.basic_consume(on_message_callback=callback, queue=queue_name, auto_ack=True)
print('等待消息 CTRL+C强制退出')
channel.start_consuming()
