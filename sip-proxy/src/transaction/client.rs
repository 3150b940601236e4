//! Client transactions (RFC 3261 §17.1, RFC 6026 §7.2).

use std::time::Duration;

use bytes::Bytes;

use super::{TimerConfig, TimerKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientState {
    /// INVITE sent, no response yet.
    Calling,
    /// Non-INVITE sent, no response yet.
    Trying,
    Proceeding,
    Completed,
    /// INVITE: a 2xx arrived (RFC 6026).
    Accepted,
    Terminated,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct ClientOutcome {
    /// Bytes to send (the request, or its retransmission).
    pub send: Option<Bytes>,
    pub arm: Vec<(TimerKind, Duration)>,
    /// Hand the response to the TU.
    pub pass_up: bool,
    /// INVITE: send the hop-by-hop ACK for a non-2xx final response.
    pub send_ack: bool,
    /// No final response in time (Timer B or F): the TU acts as if 408 arrived.
    pub timed_out: bool,
    pub terminated: bool,
}

#[derive(Debug)]
pub struct ClientTransaction {
    invite: bool,
    reliable: bool,
    state: ClientState,
    request: Bytes,
    interval: Duration,
}

impl ClientTransaction {
    pub fn new(invite: bool, reliable: bool, request: Bytes, t: &TimerConfig) -> Self {
        ClientTransaction {
            invite,
            reliable,
            state: if invite {
                ClientState::Calling
            } else {
                ClientState::Trying
            },
            request,
            interval: t.t1,
        }
    }

    pub fn state(&self) -> ClientState {
        self.state
    }

    /// A CANCEL may be sent only after a provisional response (§9.1).
    pub fn may_cancel(&self) -> bool {
        self.invite && self.state == ClientState::Proceeding
    }

    /// True until a final response arrived (or the transaction gave up).
    pub fn is_pending(&self) -> bool {
        matches!(
            self.state,
            ClientState::Calling | ClientState::Trying | ClientState::Proceeding
        )
    }

    /// Sends the request and arms the retransmission and timeout timers.
    pub fn start(&mut self, t: &TimerConfig) -> ClientOutcome {
        let mut out = ClientOutcome {
            send: Some(self.request.clone()),
            ..ClientOutcome::default()
        };
        if self.invite {
            if !self.reliable {
                out.arm.push((TimerKind::A, self.interval));
            }
            out.arm.push((TimerKind::B, t.t1x64()));
        } else {
            if !self.reliable {
                out.arm.push((TimerKind::E, self.interval));
            }
            out.arm.push((TimerKind::F, t.t1x64()));
        }
        out
    }

    pub fn on_response(&mut self, status: u16, t: &TimerConfig) -> ClientOutcome {
        let mut out = ClientOutcome::default();
        let provisional = status < 200;
        let success = (200..300).contains(&status);
        if self.invite {
            match self.state {
                ClientState::Calling | ClientState::Proceeding => {
                    out.pass_up = true;
                    if provisional {
                        self.state = ClientState::Proceeding;
                    } else if success {
                        self.state = ClientState::Accepted;
                        out.arm.push((TimerKind::M, t.t1x64()));
                    } else {
                        self.state = ClientState::Completed;
                        out.send_ack = true;
                        out.arm.push((
                            TimerKind::D,
                            if self.reliable {
                                Duration::ZERO
                            } else {
                                Duration::from_secs(32)
                            },
                        ));
                    }
                }
                // A retransmitted final: ACK again, nothing for the TU.
                ClientState::Completed if !provisional => out.send_ack = true,
                // 2xx retransmissions (or other forks' 2xx) go up (RFC 6026).
                ClientState::Accepted if success => out.pass_up = true,
                _ => {}
            }
        } else {
            match self.state {
                ClientState::Trying | ClientState::Proceeding => {
                    out.pass_up = true;
                    if provisional {
                        self.state = ClientState::Proceeding;
                    } else {
                        self.state = ClientState::Completed;
                        out.arm.push((
                            TimerKind::K,
                            if self.reliable { Duration::ZERO } else { t.t4 },
                        ));
                    }
                }
                _ => {}
            }
        }
        out
    }

    pub fn on_timer(&mut self, kind: TimerKind, t: &TimerConfig) -> ClientOutcome {
        let mut out = ClientOutcome::default();
        match (kind, self.state) {
            (TimerKind::A, ClientState::Calling) => {
                out.send = Some(self.request.clone());
                self.interval *= 2;
                out.arm.push((TimerKind::A, self.interval));
            }
            (TimerKind::E, ClientState::Trying) => {
                out.send = Some(self.request.clone());
                self.interval = (self.interval * 2).min(t.t2);
                out.arm.push((TimerKind::E, self.interval));
            }
            (TimerKind::E, ClientState::Proceeding) => {
                out.send = Some(self.request.clone());
                self.interval = t.t2;
                out.arm.push((TimerKind::E, self.interval));
            }
            (TimerKind::B, ClientState::Calling)
            | (TimerKind::F, ClientState::Trying | ClientState::Proceeding) => {
                self.state = ClientState::Terminated;
                out.timed_out = true;
                out.terminated = true;
            }
            (TimerKind::D, ClientState::Completed)
            | (TimerKind::K, ClientState::Completed)
            | (TimerKind::M, ClientState::Accepted) => {
                self.state = ClientState::Terminated;
                out.terminated = true;
            }
            _ => {}
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> TimerConfig {
        TimerConfig::default()
    }

    #[test]
    fn invite_retransmits_with_doubling_until_a_response() {
        let t = t();
        let mut tx = ClientTransaction::new(true, false, Bytes::from_static(b"INVITE"), &t);
        let out = tx.start(&t);
        assert_eq!(out.send.as_deref(), Some(&b"INVITE"[..]));
        assert_eq!(
            out.arm,
            vec![(TimerKind::A, t.t1), (TimerKind::B, t.t1x64())]
        );
        let a = tx.on_timer(TimerKind::A, &t);
        assert!(a.send.is_some());
        assert_eq!(a.arm, vec![(TimerKind::A, t.t1 * 2)]);
        assert!(tx.on_response(180, &t).pass_up);
        assert_eq!(
            tx.on_timer(TimerKind::A, &t),
            ClientOutcome::default(),
            "no retransmission after 1xx"
        );
        assert_eq!(
            tx.on_timer(TimerKind::B, &t),
            ClientOutcome::default(),
            "B only in Calling"
        );
        assert!(tx.may_cancel());
    }

    #[test]
    fn invite_timeout_with_timer_b() {
        let t = t();
        let mut tx = ClientTransaction::new(true, true, Bytes::new(), &t);
        assert_eq!(
            tx.start(&t).arm,
            vec![(TimerKind::B, t.t1x64())],
            "no A over TCP"
        );
        let out = tx.on_timer(TimerKind::B, &t);
        assert!(out.timed_out && out.terminated);
    }

    #[test]
    fn invite_non_2xx_is_acked_and_retransmissions_acked_again() {
        let t = t();
        let mut tx = ClientTransaction::new(true, false, Bytes::new(), &t);
        tx.start(&t);
        let out = tx.on_response(486, &t);
        assert!(out.pass_up && out.send_ack);
        assert_eq!(out.arm, vec![(TimerKind::D, Duration::from_secs(32))]);
        let again = tx.on_response(486, &t);
        assert!(
            again.send_ack && !again.pass_up,
            "hop-by-hop ACK repeated, TU not told twice"
        );
        assert!(tx.on_timer(TimerKind::D, &t).terminated);
    }

    #[test]
    fn invite_2xx_and_its_retransmissions_pass_up() {
        let t = t();
        let mut tx = ClientTransaction::new(true, false, Bytes::new(), &t);
        tx.start(&t);
        let out = tx.on_response(200, &t);
        assert!(out.pass_up && !out.send_ack);
        assert_eq!(out.arm, vec![(TimerKind::M, t.t1x64())]);
        assert!(
            tx.on_response(200, &t).pass_up,
            "2xx retransmission is forwarded"
        );
        assert!(tx.on_timer(TimerKind::M, &t).terminated);
    }

    #[test]
    fn non_invite_retransmissions_cap_at_t2_and_time_out_with_f() {
        let t = t();
        let mut tx = ClientTransaction::new(false, false, Bytes::from_static(b"BYE"), &t);
        assert_eq!(
            tx.start(&t).arm,
            vec![(TimerKind::E, t.t1), (TimerKind::F, t.t1x64())]
        );
        let mut last = Duration::ZERO;
        for _ in 0..6 {
            last = tx.on_timer(TimerKind::E, &t).arm[0].1;
        }
        assert_eq!(last, t.t2);
        tx.on_response(100, &t);
        assert_eq!(
            tx.on_timer(TimerKind::E, &t).arm,
            vec![(TimerKind::E, t.t2)],
            "Proceeding retransmits at T2"
        );
        let out = tx.on_timer(TimerKind::F, &t);
        assert!(out.timed_out);
    }

    #[test]
    fn non_invite_final_waits_timer_k_absorbing_copies() {
        let t = t();
        let mut tx = ClientTransaction::new(false, false, Bytes::new(), &t);
        tx.start(&t);
        let out = tx.on_response(200, &t);
        assert!(out.pass_up);
        assert_eq!(out.arm, vec![(TimerKind::K, t.t4)]);
        assert!(!tx.on_response(200, &t).pass_up);
        assert!(tx.on_timer(TimerKind::K, &t).terminated);
    }
}
