#!/usr/bin/env python
# Seed 000: consume two durable queues on two channels of one connection. The tutorial binds
# them to 'ex_dcs_fanout' beforehand in the management UI; here the binding is made in code.
import pika
from _broker import HOST, PORT


def callback(ch, method, properties, body):
    print("获取到消息 %s" % body)


credentials = pika.PlainCredentials("guest", "guest")
connection = pika.BlockingConnection(pika.ConnectionParameters(host=HOST, port=PORT, credentials=credentials))
channel = connection.channel()
channel.exchange_declare(exchange='ex_dcs_fanout', exchange_type='fanout', durable=True)
channel.queue_declare(queue='queue_dcs_fanout', durable=True)
channel.queue_bind('queue_dcs_fanout', 'ex_dcs_fanout')
channel.basic_consume(on_message_callback=callback, queue='queue_dcs_fanout', auto_ack=True)

channel2 = connection.channel()
channel2.queue_declare(queue='queue_dcs_fanout2', durable=True)
channel2.queue_bind('queue_dcs_fanout2', 'ex_dcs_fanout')
channel2.basic_consume(on_message_callback=callback, queue='queue_dcs_fanout2', auto_ack=True)

print('等待消息 CTRL+C强制退出')
channel.start_consuming()
