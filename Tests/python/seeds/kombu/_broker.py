# The one adjustment the tutorials need: where the broker is.
import os
URL = 'amqp://guest:guest@%s:%s//' % (os.environ.get("AMQP_HOST", "localhost"), os.environ.get("AMQP_PORT", "5672"))
