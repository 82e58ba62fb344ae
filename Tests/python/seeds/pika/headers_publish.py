#!/usr/bin/env python
# The headers exchange of seed 000 ("头交换机: 头信息代替路由键"): headers instead of a routing key.
import sys
import pika
from _broker import HOST, PORT

connection = pika.BlockingConnection(pika.ConnectionParameters(host=HOST, port=PORT))
channel = connection.channel()
channel.exchange_declare(exchange='ex_dcs_headers', exchange_type='headers')
# argv: key=value pairs become headers
headers = dict(arg.split('=', 1) for arg in sys.argv[1:])
channel.basic_publish(exchange='ex_dcs_headers', routing_key='',
                      properties=pika.BasicProperties(headers=headers),
                      body='headers: %s' % sorted(headers.items()))
print(" [x] Sent with headers %r" % sorted(headers.items()))
connection.close()
