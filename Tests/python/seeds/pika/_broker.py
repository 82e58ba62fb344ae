# The one adjustment the tutorials need: where the broker is (host, port).
import os
HOST = os.environ.get("AMQP_HOST", "localhost")
PORT = int(os.environ.get("AMQP_PORT", "5672"))
