"""Minimal raw AMQP 0-9-1 frame helper for protocol-level tests."""
import socket, struct

FRAME_END = b'\xce'

def shortstr(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack('B', len(b)) + b

def longstr(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack('>I', len(b)) + b

def frame(ftype, channel, payload, end=FRAME_END):
    return struct.pack('>BHI', ftype, channel, len(payload)) + payload + end

def method(channel, cls, mid, args=b''):
    return frame(1, channel, struct.pack('>HH', cls, mid) + args)

def header(channel, cls, size, flags=0, props=b''):
    return frame(2, channel, struct.pack('>HHQH', cls, 0, size, flags) + props)

def body(channel, data):
    return frame(3, channel, data)

class Raw:
    def __init__(self, port, host='127.0.0.1', timeout=5):
        self.s = socket.create_connection((host, port), timeout=timeout)
        self.buf = b''
    def send(self, data):
        self.s.sendall(data)
    def read_exact(self, n):
        while len(self.buf) < n:
            d = self.s.recv(65536)
            if not d:
                raise EOFError('closed')
            self.buf += d
        out, self.buf = self.buf[:n], self.buf[n:]
        return out
    def read_frame(self):
        hdr = self.read_exact(7)
        t, ch, size = struct.unpack('>BHI', hdr)
        payload = self.read_exact(size)
        end = self.read_exact(1)
        return t, ch, payload
    def read_method(self):
        while True:
            t, ch, p = self.read_frame()
            if t == 1:
                cls, mid = struct.unpack('>HH', p[:4])
                return ch, cls, mid, p[4:]
    def closed(self):
        try:
            d = self.s.recv(1)
            return d == b''
        except (ConnectionResetError, socket.timeout):
            return True
    def handshake(self, user='guest', password='guest', vhost='/', channel_max=None, frame_max=None, heartbeat=0,
                  capabilities=()):
        """`capabilities`: names the client declares true (e.g. consumer_cancel_notify)."""
        self.send(b'AMQP\x00\x00\x09\x01')
        ch, cls, mid, args = self.read_method()
        assert (cls, mid) == (10, 10), (cls, mid)
        resp = b'\x00' + user.encode() + b'\x00' + password.encode()
        caps = b''.join(shortstr(c) + b't\x01' for c in capabilities)
        props = shortstr('capabilities') + b'F' + longstr(caps) if caps else b''
        self.send(method(0, 10, 11, longstr(props) + shortstr('PLAIN') + longstr(resp) + shortstr('en_US')))
        ch, cls, mid, args = self.read_method()
        assert (cls, mid) == (10, 30), (cls, mid, args)
        self.tune = struct.unpack('>HIH', args)
        if channel_max is None: channel_max = self.tune[0]
        if frame_max is None: frame_max = self.tune[1]
        self.send(method(0, 10, 31, struct.pack('>HIH', channel_max, frame_max, heartbeat)))
        self.send(method(0, 10, 40, shortstr(vhost) + shortstr('') + b'\x00'))
        ch, cls, mid, args = self.read_method()
        assert (cls, mid) == (10, 41), (cls, mid, args)
    def open_channel(self, n):
        self.send(method(n, 20, 10, shortstr('')))
        return self.read_method()

def read_methods(raw, timeout=1.0, limit=50):
    """The methods that arrive until `timeout` passes without one (or `limit` are read), as
    (channel, 'class.method', args) tuples; content frames are skipped."""
    raw.s.settimeout(timeout)
    out = []
    try:
        while len(out) < limit:
            t, ch, p = raw.read_frame()
            if t == 1:
                cls, mid = struct.unpack('>HH', p[:4])
                out.append((ch, f'{cls}.{mid}', p[4:]))
    except (socket.timeout, TimeoutError, EOFError, ConnectionResetError):
        pass
    return out


def close_reason(args):
    code = struct.unpack('>H', args[:2])[0]
    ln = args[2]
    text = args[3:3+ln].decode()
    cls, mid = struct.unpack('>HH', args[3+ln:7+ln])
    return code, text, cls, mid
