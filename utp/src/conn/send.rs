//! The send half of [`Connection`]: bytes written into datagram buffers
//! (header room first, reused once acknowledged), the send queue, what
//! goes out when (congestion and receive windows, retransmissions, ACKs).

use super::{Connection, Out, Outgoing, State, MIN_SPARE};
use crate::packet::{self, PacketType, HEADER_LEN};

impl Connection {
    /// Keeps an acknowledged packet's datagram buffer for a later packet.
    pub(super) fn recycle(&mut self, buf: Vec<u8>) {
        if self.spare.len() < self.max_spare() && buf.capacity() >= self.cfg.packet_size {
            self.spare.push(buf);
        }
    }

    /// A whole send buffer's worth of datagrams (payload `mss`), plus the
    /// partly filled one at its end: as many as the send queue can hold.
    /// A buffer is only allocated when none is spare, so keeping that many
    /// never makes more buffers live than a full send queue needs, and none
    /// is freed and allocated again while sending.
    pub(super) fn max_spare(&self) -> usize {
        (self.cfg.send_buffer / self.mss() + 2).max(MIN_SPARE)
    }

    /// Copies up to `data.len()` bytes into the send buffer; returns how many
    /// (0 when full, closed or failed).
    pub fn write(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.write_space());
        let full = self.cfg.packet_size;
        let mut rest = &data[..n];
        while !rest.is_empty() {
            if self.send_buf.back().is_none_or(|b| b.len() >= full) {
                let mut b = self.spare.pop().unwrap_or_else(|| {
                    #[cfg(test)]
                    {
                        self.allocated += 1;
                    }
                    Vec::with_capacity(full)
                });
                b.clear();
                b.resize(HEADER_LEN, 0);
                self.send_buf.push_back(b);
            }
            let Some(b) = self.send_buf.back_mut() else {
                break; // just pushed one
            };
            let take = rest.len().min(full - b.len());
            b.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
        }
        self.send_bytes += n - rest.len();
        n - rest.len()
    }

    /// Queues a packet; `buf` is its datagram buffer (header room first).
    pub(super) fn push_out(&mut self, ty: PacketType, buf: Vec<u8>) {
        self.outq_bytes += buf.len() - HEADER_LEN;
        self.outq.push_back(Out {
            seq: self.seq_nr,
            ty,
            buf,
            sent_us: 0,
            transmissions: 0,
            need_send: true,
            sacked: false,
            fast_resent: false,
        });
        self.resend_pending += 1;
        self.seq_nr = self.seq_nr.wrapping_add(1);
    }

    pub(super) fn uncount(&mut self, i: usize) {
        let o = &mut self.outq[i];
        if o.transmissions > 0 && !o.need_send && !o.sacked {
            self.in_flight -= o.len();
        }
    }

    pub(super) fn mark_lost(&mut self, i: usize) {
        if self.outq[i].need_send || self.outq[i].sacked || self.outq[i].transmissions == 0 {
            return;
        }
        self.uncount(i);
        self.outq[i].need_send = true;
        self.resend_pending += 1;
    }

    /// Congestion window: one packet may always go when nothing is in
    /// flight. Peer window: strict, except for one probe after the
    /// zero-window timer fired (the window update may have been lost).
    ///
    /// Returns true when a `len`-byte packet may NOT go now, and notes why:
    /// cwnd-limited (cwnd may grow on the next ACK) or, with nothing in
    /// flight, peer-window-limited (arms the zero-window probe timer).
    pub(super) fn blocked(&mut self, len: usize, now_us: u64) -> bool {
        let cwnd_ok = self.in_flight == 0 || self.in_flight + len <= self.ledbat.cwnd() as usize;
        let peer_ok =
            self.in_flight + len <= self.peer_wnd || (self.in_flight == 0 && self.probe_allowed);
        if !cwnd_ok {
            self.window_limited = true;
        }
        if !peer_ok && self.in_flight == 0 {
            self.zero_window_deadline
                .get_or_insert(now_us + self.rtt.rto_us());
        }
        !(cwnd_ok && peer_ok)
    }

    /// Writes the next packet that is due into `out` (cleared first) and
    /// returns true, or returns false when nothing may be sent now
    /// (congestion or peer window full, Nagle, nothing to send). Call it until
    /// it returns false. Retransmissions go first, then new data, then FIN.
    pub fn poll_transmit(&mut self, now_us: u64, out: &mut Vec<u8>) -> bool {
        match self.poll_transmit_queued(now_us, out) {
            None => false,
            Some(Outgoing::Copied) => true,
            Some(Outgoing::Queued(seq)) => {
                out.clear();
                out.extend_from_slice(self.queued_datagram(seq).unwrap_or_default());
                true
            }
        }
    }

    /// [`poll_transmit`](Self::poll_transmit) without the copy: the
    /// datagram is normally left in the send queue with its header written
    /// ([`Outgoing::Queued`], read it with
    /// [`queued_datagram`](Self::queued_datagram)); only a packet that
    /// carries a selective ACK is encoded into `out` ([`Outgoing::Copied`]).
    /// `None` when nothing may be sent now.
    pub fn poll_transmit_queued(&mut self, now_us: u64, out: &mut Vec<u8>) -> Option<Outgoing> {
        out.clear();
        self.undo = None;
        if self.failure.is_some() {
            return None;
        }
        if self.resend_pending > 0 {
            if let Some(i) = self.outq.iter().position(|o| o.need_send) {
                let len = self.outq[i].len();
                if self.state == State::SynSent && self.outq[i].ty != PacketType::Syn {
                    return None;
                }
                if self.blocked(len, now_us) {
                    return None;
                }
                return Some(self.transmit(i, now_us, out));
            }
            self.resend_pending = 0;
        }
        if self.state != State::Connected {
            return None;
        }
        if self.send_bytes > 0 && self.outq.len() < 30_000 {
            let size = self.send_buf.front().map_or(0, |b| b.len() - HEADER_LEN);
            // Nagle: at most one undersized packet in flight.
            if size < self.mss() && self.close_requested.is_none() && self.nagle_seq.is_some() {
                return None;
            }
            if self.blocked(size, now_us) {
                return None;
            }
            let buf = self.send_buf.pop_front()?;
            if size < self.mss() {
                self.nagle_seq = Some(self.seq_nr);
            }
            self.send_bytes -= size;
            self.push_out(PacketType::Data, buf);
            self.resend_pending -= 1;
            let i = self.outq.len() - 1;
            return Some(self.transmit(i, now_us, out));
        }
        if self.close_requested.is_some() && self.send_bytes == 0 && !self.fin_queued {
            self.fin_queued = true;
            self.push_out(PacketType::Fin, vec![0; HEADER_LEN]);
            self.resend_pending -= 1;
            let i = self.outq.len() - 1;
            return Some(self.transmit(i, now_us, out));
        }
        None
    }

    /// The datagram of packet `seq` in the send queue, as the last
    /// [`poll_transmit_queued`](Self::poll_transmit_queued) that returned
    /// [`Outgoing::Queued`]`(seq)` left it.
    pub fn queued_datagram(&self, seq: u16) -> Option<&[u8]> {
        let i = usize::from(seq.wrapping_sub(self.una()));
        self.outq
            .get(i)
            .filter(|o| o.seq == seq)
            .map(|o| &o.buf[..])
    }

    pub(super) fn transmit(&mut self, i: usize, now_us: u64, out: &mut Vec<u8>) -> Outgoing {
        let o = &mut self.outq[i];
        if o.need_send {
            o.need_send = false;
            self.resend_pending = self.resend_pending.saturating_sub(1);
        }
        o.transmissions += 1;
        o.sent_us = now_us;
        let (ty, seq, len) = (o.ty, o.seq, o.len());
        self.in_flight += len;
        let hdr = self.header(ty, seq, now_us);
        let sack = self.sack_mask();
        let room = self.cfg.packet_size - HEADER_LEN - len;
        let sack = sack.filter(|m| packet::sack_ext_len(m.len()) <= room);
        if sack.is_some() || self.reorder.is_empty() {
            self.ack_needed = false;
            self.unacked_bytes = 0;
        }
        let how = if sack.is_some() {
            packet::encode(&hdr, sack.as_deref(), &self.outq[i].buf[HEADER_LEN..], out);
            Outgoing::Copied
        } else {
            packet::write_header(&hdr, &mut self.outq[i].buf[..HEADER_LEN]);
            Outgoing::Queued(seq)
        };
        self.last_adv_wnd = hdr.wnd_size as usize;
        self.last_send_us = now_us;
        self.rto_deadline.get_or_insert(now_us + self.current_rto());
        self.undo = Some(seq);
        self.probe_allowed = false;
        how
    }

    /// The datagram from the last `poll_transmit` could not be sent (e.g.
    /// the socket's send buffer was full): it goes back to the queue as never
    /// sent, so a stalled socket is not mistaken for loss.
    pub fn undo_transmit(&mut self) {
        if let Some(seq) = self.undo.take() {
            self.undo_transmit_seq(seq);
        }
    }

    /// [`undo_transmit`](Self::undo_transmit) for any packet of a batch
    /// that the socket did not take, by its sequence number (bytes 16..18
    /// of the datagram).
    pub fn undo_transmit_seq(&mut self, seq: u16) {
        let i = usize::from(seq.wrapping_sub(self.una()));
        if let Some(o) = self.outq.get_mut(i) {
            o.transmissions -= 1;
            o.need_send = true;
            self.in_flight -= o.len();
            self.resend_pending += 1;
        }
    }

    /// Writes a bare ACK (ST_STATE, with a selective ACK when packets are
    /// missing) if one is owed, e.g. at the end of a receive batch.
    pub fn poll_ack(&mut self, now_us: u64, out: &mut Vec<u8>) -> bool {
        out.clear();
        if !self.ack_needed || self.failure.is_some() || self.state != State::Connected {
            return false;
        }
        self.ack_needed = false;
        self.unacked_bytes = 0;
        let hdr = self.header(PacketType::State, self.seq_nr, now_us);
        let sack = self.sack_mask();
        packet::encode(&hdr, sack.as_deref(), &[], out);
        self.last_adv_wnd = hdr.wnd_size as usize;
        self.last_send_us = now_us;
        true
    }
}
