#!/usr/bin/env python
# Seed 002 oslo.messaging "Notification" send.py
from oslo_config import cfg
import oslo_messaging as messaging
from _broker import TRANSPORT_URL

transport_url = TRANSPORT_URL

transport = messaging.get_notification_transport(cfg.CONF, transport_url)

notifier = messaging.Notifier(
    transport,
    publisher_id="local",
    driver="messaging",
    topics=["notifications"],
)

client = notifier.prepare()
client.info({}, event_type="my_type", payload={"content": "Hello World"})
client.error({}, event_type="error_type", payload={"content": "Hello World"})
print('notified')
