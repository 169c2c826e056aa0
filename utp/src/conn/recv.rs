//! The receive half of [`Connection::on_packet`]: incoming data into the
//! reorder buffer and the in-order stream, and incoming ACKs / selective
//! ACKs against the send queue (RTT samples, fast retransmit, loss).

use super::{seq_less, Connection, DUP_ACK_LIMIT, MAX_REORDER, MAX_SACK_BYTES};
use crate::packet::PacketType;

impl Connection {
    pub(super) fn on_data(&mut self, seq: u16, payload: &[u8]) {
        self.ack_needed = true;
        let d = seq.wrapping_sub(self.ack_nr.wrapping_add(1));
        if d >= 0x8000 {
            return; // already received: the re-ACK is enough
        }
        if self.eof_seq.is_some_and(|e| !seq_less(seq, e)) {
            return; // past the peer's FIN
        }
        let free = self.adv_window();
        if d == 0 {
            // The packet that fills the hole is judged against the read
            // buffer alone: packets waiting behind it (already selectively
            // acked, so never resent) may fill the window, and refusing it
            // then would stall the connection for good. Memory stays below
            // twice the receive buffer.
            let in_order_free = self.cfg.recv_buffer.saturating_sub(self.recv_buf.len());
            if self.read_closed {
                // discard
            } else if payload.len() > in_order_free {
                log::trace!("utp {}: data past our window dropped", self.recv_id);
                return;
            } else {
                self.recv_buf.extend(payload);
            }
            self.ack_nr = seq;
            self.advance_in_order();
        } else if usize::from(d) < MAX_SACK_BYTES * 8
            && self.reorder.len() < MAX_REORDER
            && payload.len() <= free
            && !self.reorder.contains_key(&seq)
        {
            self.reorder_bytes += payload.len();
            self.reorder.insert(seq, payload.to_vec());
        }
    }

    pub(super) fn advance_in_order(&mut self) {
        if self.reorder.is_empty() && self.eof_seq.is_none() {
            return; // the common case: nothing waits behind the new packet
        }
        loop {
            let next = self.ack_nr.wrapping_add(1);
            if let Some(data) = self.reorder.remove(&next) {
                self.reorder_bytes -= data.len();
                if !self.read_closed {
                    self.recv_buf.extend(&data);
                }
                self.ack_nr = next;
            } else if self.eof_seq == Some(next) {
                self.ack_nr = next;
                self.eof = true;
                self.reorder.clear();
                self.reorder_bytes = 0;
                return;
            } else {
                return;
            }
        }
    }

    pub(super) fn on_ack(
        &mut self,
        ack: u16,
        sack: Option<&[u8]>,
        delay: u32,
        dup_ok: bool,
        now_us: u64,
    ) {
        let una = self.una();
        // Valid acks lie in [una - 1, seq_nr - 1].
        if seq_less(ack, una.wrapping_sub(1)) || !seq_less(ack, self.seq_nr) {
            return;
        }
        let mut acked_bytes = 0usize;
        let mut progress = false;
        while let Some(front) = self.outq.front() {
            if seq_less(ack, front.seq) {
                break;
            }
            self.uncount(0);
            let Some(o) = self.outq.pop_front() else {
                break;
            };
            progress = true;
            if o.need_send {
                self.resend_pending = self.resend_pending.saturating_sub(1);
            }
            self.outq_bytes -= o.len();
            if !o.sacked {
                acked_bytes += o.len();
                if o.transmissions == 1 {
                    self.rtt.sample(now_us.saturating_sub(o.sent_us));
                }
            }
            if o.ty == PacketType::Fin {
                self.fin_acked = true;
            }
            if self.nagle_seq == Some(o.seq) {
                self.nagle_seq = None;
            }
            self.recycle(o.buf);
        }
        let mut lost = false;
        if let Some(mask) = sack {
            let base = ack.wrapping_add(2);
            let una = self.una();
            let mut highest = None;
            for (byte_i, &byte) in mask.iter().enumerate() {
                for bit in 0..8 {
                    if byte & (1 << bit) == 0 {
                        continue;
                    }
                    let seq = base.wrapping_add((byte_i * 8 + bit) as u16);
                    let i = usize::from(seq.wrapping_sub(una));
                    if i >= self.outq.len() || self.outq[i].transmissions == 0 {
                        continue;
                    }
                    highest = Some(i);
                    if !self.outq[i].sacked {
                        self.uncount(i);
                        if self.outq[i].need_send {
                            self.outq[i].need_send = false;
                            self.resend_pending = self.resend_pending.saturating_sub(1);
                        }
                        let o = &mut self.outq[i];
                        o.sacked = true;
                        acked_bytes += o.len();
                        if o.transmissions == 1 {
                            self.rtt.sample(now_us.saturating_sub(o.sent_us));
                        }
                    }
                }
            }
            // A packet with DUP_ACK_LIMIT or more sacked packets after it is lost.
            if let Some(hi) = highest {
                let mut after = 0;
                for i in (0..=hi).rev() {
                    if self.outq[i].sacked {
                        after += 1;
                    } else if after >= DUP_ACK_LIMIT && self.in_flight_at(i) {
                        self.outq[i].fast_resent = true;
                        self.mark_lost(i);
                        lost = true;
                    }
                }
            }
        }
        if progress {
            self.dup_acks = 0;
            self.timeouts = 0;
        } else if dup_ok && ack == una.wrapping_sub(1) && !self.outq.is_empty() {
            self.dup_acks += 1;
            if self.dup_acks >= DUP_ACK_LIMIT && self.in_flight_at(0) {
                self.outq[0].fast_resent = true;
                self.mark_lost(0);
                lost = true;
            }
        }
        if lost && !seq_less(ack, self.loss_seq) {
            self.ledbat.on_loss();
            self.loss_seq = self.seq_nr.wrapping_sub(1);
        }
        if acked_bytes > 0 {
            let limited = std::mem::take(&mut self.window_limited);
            self.ledbat
                .on_ack(acked_bytes as u32, delay, limited, now_us);
        }
        if progress || acked_bytes > 0 {
            // A FIN carries no payload, so `in_flight` does not count it:
            // one sent and not yet acknowledged keeps the timer running
            // too, or a lost FIN is never sent again.
            let outstanding = self.in_flight > 0
                || self.resend_pending > 0
                || (self.fin_queued && !self.fin_acked);
            self.rto_deadline = outstanding.then(|| now_us + self.current_rto());
        }
    }

    /// Sent, not yet resent fast, not already queued for resending: a
    /// candidate for fast retransmit (and a genuine new loss).
    fn in_flight_at(&self, i: usize) -> bool {
        let o = &self.outq[i];
        o.transmissions > 0 && !o.need_send && !o.sacked && !o.fast_resent
    }
}
