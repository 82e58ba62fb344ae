# The one adjustment the tutorials need: where the broker is.
import os
TRANSPORT_URL = 'rabbit://guest:guest@%s:%s/' % (os.environ.get("AMQP_HOST", "127.0.0.1"), os.environ.get("AMQP_PORT", "5672"))
