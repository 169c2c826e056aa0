#!/usr/bin/env python3
"""Decodes a plain (unencrypted) BitTorrent conversation from a pcap of lo:
reassembles both TCP directions and prints one line per message, with the
time, direction (T->B: from the peer on PORT) and arguments.

    btwire.py cap.pcap PORT
"""
import struct, sys
NAMES = {0:'choke',1:'unchoke',2:'interested',3:'notinterested',4:'have',5:'bitfield',
         6:'request',7:'piece',8:'cancel',9:'port',13:'suggest',14:'haveall',15:'havenone',
         16:'reject',17:'allowedfast',20:'extended'}
def packets(path):
    d = open(path,'rb').read()
    magic = struct.unpack('<I', d[:4])[0]
    e = '<' if magic in (0xa1b2c3d4, 0xa1b23c4d) else '>'
    nano = magic in (0xa1b23c4d, 0x4d3cb2a1)
    off = 24
    while off + 16 <= len(d):
        ts, tu, incl, orig = struct.unpack(e+'IIII', d[off:off+16]); off += 16
        pkt = d[off:off+incl]; off += incl
        yield ts + tu/(1e9 if nano else 1e6), pkt
def main():
    path, tport = sys.argv[1], int(sys.argv[2])
    streams = {}  # (sport,dport) -> dict(isn, data bytearray-by-offset)
    for t, pkt in packets(path):
        ip = pkt[14:]
        if ip[0] >> 4 != 4 or ip[9] != 6: continue
        ihl = (ip[0] & 15) * 4; tot = struct.unpack('>H', ip[2:4])[0]
        tcp = ip[ihl:tot]
        sport, dport, seq = struct.unpack('>HHI', tcp[:8])
        doff = (tcp[12] >> 4) * 4; flags = tcp[13]
        payload = tcp[doff:]
        key = (sport, dport)
        s = streams.setdefault(key, {'isn': None, 'segs': {}})
        if flags & 2: s['isn'] = (seq + 1) & 0xffffffff; continue
        if s['isn'] is None or not payload: continue
        rel = (seq - s['isn']) & 0xffffffff
        if rel not in s['segs'] or len(s['segs'][rel][1]) < len(payload):
            s['segs'][rel] = (t, payload)
    events = []
    for (sp, dp), s in streams.items():
        who = 'T->B' if sp == tport else 'B->T'
        # reassemble in order, keeping time of segment holding each message start
        buf = bytearray(); times = []  # (offset, t)
        pos = 0
        for rel in sorted(s['segs']):
            t, p = s['segs'][rel]
            if rel > pos: print(f'# gap in {who} {sp}->{dp} at {pos}: {rel-pos} bytes', file=sys.stderr); break
            p = p[pos-rel:] if rel < pos else p
            if not p: continue
            times.append((pos, t)); buf += p; pos += len(p)
        # skip handshake (68 bytes)
        i = 68; ti = 0
        while i + 4 <= len(buf):
            n = struct.unpack('>I', buf[i:i+4])[0]
            if i + 4 + n > len(buf): break
            while ti + 1 < len(times) and times[ti+1][0] <= i: ti += 1
            t = times[ti][1]
            if n == 0: events.append((t, who, 'keepalive', '')); i += 4; continue
            mid = buf[i+4]; body = bytes(buf[i+5:i+4+n])
            name = NAMES.get(mid, str(mid)); arg = ''
            if mid in (6, 8, 16): arg = '%d %d %d' % struct.unpack('>III', body)
            elif mid == 7: arg = '%d %d len=%d' % (*struct.unpack('>II', body[:8]), len(body)-8)
            elif mid in (4, 17): arg = '%d' % struct.unpack('>I', body)
            elif mid == 20: arg = '%d %r' % (body[0], body[1:200])
            events.append((t, who, name, arg)); i += 4 + n
    events.sort(key=lambda e: e[0])
    t0 = events[0][0] if events else 0
    for t, who, name, arg in events:
        print(f'{t-t0:10.6f} {who} {name} {arg}')
main()
