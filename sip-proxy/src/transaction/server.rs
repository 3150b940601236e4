//! Server transactions (RFC 3261 §17.2, RFC 6026 §7.1).

use std::time::Duration;

use bytes::Bytes;

use super::{TimerConfig, TimerKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    /// Non-INVITE, nothing sent yet.
    Trying,
    Proceeding,
    /// A final response (non-2xx for INVITE) was sent.
    Completed,
    /// INVITE: the ACK for the non-2xx arrived.
    Confirmed,
    /// INVITE: a 2xx was sent (RFC 6026).
    Accepted,
    Terminated,
}

/// What the core must do after an event.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ServerOutcome {
    /// Bytes to send again (a response retransmission).
    pub resend: Option<Bytes>,
    /// Timers to arm.
    pub arm: Vec<(TimerKind, Duration)>,
    /// The transaction is over and can be dropped.
    pub terminated: bool,
    /// INVITE: no ACK arrived (Timer H); the TU is told.
    pub ack_timeout: bool,
}

#[derive(Debug)]
pub struct ServerTransaction {
    invite: bool,
    reliable: bool,
    state: ServerState,
    last_response: Option<Bytes>,
    last_status: u16,
    g_interval: Duration,
}

impl ServerTransaction {
    pub fn new(invite: bool, reliable: bool, t: &TimerConfig) -> Self {
        ServerTransaction {
            invite,
            reliable,
            state: if invite {
                ServerState::Proceeding
            } else {
                ServerState::Trying
            },
            last_response: None,
            last_status: 0,
            g_interval: t.t1,
        }
    }

    pub fn state(&self) -> ServerState {
        self.state
    }

    pub fn is_invite(&self) -> bool {
        self.invite
    }

    /// The status of the last response sent (0 if none).
    pub fn last_status(&self) -> u16 {
        self.last_status
    }

    /// True while the TU may still send a final response.
    pub fn awaiting_final(&self) -> bool {
        matches!(self.state, ServerState::Trying | ServerState::Proceeding)
    }

    /// A retransmission of the request arrived (§17.2.1, §17.2.2): answer it
    /// with the last response, if the state has one to repeat.
    pub fn on_retransmission(&self) -> ServerOutcome {
        let resend = match self.state {
            ServerState::Proceeding | ServerState::Completed => self.last_response.clone(),
            _ => None,
        };
        ServerOutcome {
            resend,
            ..ServerOutcome::default()
        }
    }

    /// The TU sends a response: remember it and arm the timers its class needs.
    /// Returns false if the state does not allow it (the response is then not sent).
    pub fn on_send(
        &mut self,
        status: u16,
        response: Bytes,
        t: &TimerConfig,
    ) -> (bool, ServerOutcome) {
        let mut out = ServerOutcome::default();
        match self.state {
            ServerState::Trying | ServerState::Proceeding => {}
            // Further 2xx from other forks pass in Accepted (RFC 6026 §7.1).
            ServerState::Accepted if (200..300).contains(&status) => return (true, out),
            _ => return (false, out),
        }
        self.last_status = status;
        self.last_response = Some(response);
        if status < 200 {
            self.state = ServerState::Proceeding;
        } else if self.invite && status < 300 {
            self.state = ServerState::Accepted;
            out.arm.push((TimerKind::L, t.t1x64()));
        } else if self.invite {
            self.state = ServerState::Completed;
            if !self.reliable {
                out.arm.push((TimerKind::G, self.g_interval));
            }
            out.arm.push((TimerKind::H, t.t1x64()));
        } else {
            self.state = ServerState::Completed;
            out.arm.push((
                TimerKind::J,
                if self.reliable {
                    Duration::ZERO
                } else {
                    t.t1x64()
                },
            ));
        }
        (true, out)
    }

    /// An ACK for a non-2xx final response arrived.
    pub fn on_ack(&mut self, t: &TimerConfig) -> ServerOutcome {
        let mut out = ServerOutcome::default();
        if self.invite && self.state == ServerState::Completed {
            self.state = ServerState::Confirmed;
            out.arm.push((
                TimerKind::I,
                if self.reliable { Duration::ZERO } else { t.t4 },
            ));
        }
        out
    }

    pub fn on_timer(&mut self, kind: TimerKind, t: &TimerConfig) -> ServerOutcome {
        let mut out = ServerOutcome::default();
        match (kind, self.state) {
            (TimerKind::G, ServerState::Completed) => {
                out.resend = self.last_response.clone();
                self.g_interval = (self.g_interval * 2).min(t.t2);
                out.arm.push((TimerKind::G, self.g_interval));
            }
            (TimerKind::H, ServerState::Completed) => {
                self.state = ServerState::Terminated;
                out.terminated = true;
                out.ack_timeout = true;
            }
            (TimerKind::I, ServerState::Confirmed)
            | (TimerKind::J, ServerState::Completed)
            | (TimerKind::L, ServerState::Accepted) => {
                self.state = ServerState::Terminated;
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
    fn invite_non_2xx_retransmits_until_ack_then_waits_for_ack_copies() {
        let t = t();
        let mut tx = ServerTransaction::new(true, false, &t);
        assert_eq!(tx.state(), ServerState::Proceeding);
        let (ok, out) = tx.on_send(100, Bytes::from_static(b"100"), &t);
        assert!(ok && out.arm.is_empty());
        assert_eq!(
            tx.on_retransmission().resend,
            Some(Bytes::from_static(b"100"))
        );
        let (_, out) = tx.on_send(486, Bytes::from_static(b"486"), &t);
        assert_eq!(
            out.arm,
            vec![(TimerKind::G, t.t1), (TimerKind::H, t.t1x64())]
        );
        let g1 = tx.on_timer(TimerKind::G, &t);
        assert_eq!(g1.resend, Some(Bytes::from_static(b"486")));
        assert_eq!(g1.arm, vec![(TimerKind::G, t.t1 * 2)]);
        for _ in 0..5 {
            tx.on_timer(TimerKind::G, &t);
        }
        assert_eq!(
            tx.on_timer(TimerKind::G, &t).arm,
            vec![(TimerKind::G, t.t2)],
            "G caps at T2"
        );
        assert_eq!(tx.on_ack(&t).arm, vec![(TimerKind::I, t.t4)]);
        assert_eq!(tx.state(), ServerState::Confirmed);
        assert_eq!(
            tx.on_timer(TimerKind::G, &t),
            ServerOutcome::default(),
            "G stops after ACK"
        );
        assert!(tx.on_timer(TimerKind::I, &t).terminated);
    }

    #[test]
    fn invite_without_ack_times_out_with_timer_h() {
        let t = t();
        let mut tx = ServerTransaction::new(true, true, &t);
        let (_, out) = tx.on_send(404, Bytes::from_static(b"404"), &t);
        assert_eq!(
            out.arm,
            vec![(TimerKind::H, t.t1x64())],
            "no G over reliable transports"
        );
        let out = tx.on_timer(TimerKind::H, &t);
        assert!(out.terminated && out.ack_timeout);
    }

    #[test]
    fn invite_2xx_moves_to_accepted_and_lets_other_2xx_pass() {
        let t = t();
        let mut tx = ServerTransaction::new(true, false, &t);
        let (_, out) = tx.on_send(200, Bytes::from_static(b"200a"), &t);
        assert_eq!(out.arm, vec![(TimerKind::L, t.t1x64())]);
        assert_eq!(tx.state(), ServerState::Accepted);
        assert!(
            tx.on_send(200, Bytes::from_static(b"200b"), &t).0,
            "a second fork's 2xx passes"
        );
        assert!(
            !tx.on_send(486, Bytes::from_static(b"486"), &t).0,
            "no final after a 2xx"
        );
        assert_eq!(
            tx.on_retransmission().resend,
            None,
            "INVITE retransmissions are absorbed"
        );
        assert!(tx.on_timer(TimerKind::L, &t).terminated);
    }

    #[test]
    fn non_invite_absorbs_then_repeats_final_until_timer_j() {
        let t = t();
        let mut tx = ServerTransaction::new(false, false, &t);
        assert_eq!(tx.on_retransmission().resend, None, "Trying absorbs");
        let (_, out) = tx.on_send(200, Bytes::from_static(b"200"), &t);
        assert_eq!(out.arm, vec![(TimerKind::J, t.t1x64())]);
        assert_eq!(
            tx.on_retransmission().resend,
            Some(Bytes::from_static(b"200"))
        );
        assert!(!tx.on_send(500, Bytes::from_static(b"500"), &t).0);
        assert!(tx.on_timer(TimerKind::J, &t).terminated);
        let mut tcp = ServerTransaction::new(false, true, &t);
        assert_eq!(
            tcp.on_send(200, Bytes::new(), &t).1.arm,
            vec![(TimerKind::J, Duration::ZERO)]
        );
    }
}
