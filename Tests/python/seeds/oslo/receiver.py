#!/usr/bin/env python
# Seed 002 oslo.messaging "Notification" receiver.py
from oslo_config import cfg
import oslo_messaging as messaging
from _broker import TRANSPORT_URL


class NotificationEndpoint(object):
    filter_rule = messaging.NotificationFilter(publisher_id="^local.*")

    def info(self, context, publish_id, event_type, payload, metadata):
        print("Info", flush=True)
        print(context, publish_id, event_type, payload, metadata, flush=True)

    def warn(self, context, publish_id, event_type, payload, metadata):
        print("Warn", flush=True)
        print(context, publish_id, event_type, payload, metadata, flush=True)

    def error(self, context, publish_id, event_type, payload, metadata):
        print("Error", flush=True)
        print(context, publish_id, event_type, payload, metadata, flush=True)


transport_url = TRANSPORT_URL

transport = messaging.get_notification_transport(cfg.CONF, transport_url)
target = messaging.Target(topic="notifications")
listener = messaging.get_notification_listener(
    transport,
    targets=[target],
    endpoints=[NotificationEndpoint()],
    pool='listener'
)
print('listening', flush=True)
listener.start()
listener.wait()
