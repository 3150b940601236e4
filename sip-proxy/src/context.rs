//! The state of one request this node handles statefully: its server
//! transaction and, when it is forwarded, the client transactions of its
//! branches (the RFC 3261 §16 response context). One mutex guards one
//! context, so work on different calls never waits on each other.

use pbx_sip_message::{Message, Method};
use pbx_store::{DeviceId, ExtensionId};

use crate::dialogs::CallInfo;
use crate::transaction::{ClientKey, ClientTransaction, ServerKey, ServerTransaction};
use crate::transport::Flow;

/// Which timer of a context fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerTarget {
    Server,
    Branch(usize),
    /// The CANCEL client transaction of a branch.
    Cancel(usize),
    /// The ringing time of a no-answer forward ran out.
    NoAnswer,
}

/// A branch's ACK for a non-2xx final response, kept for retransmissions.
pub type AckBytes = bytes::Bytes;

/// One forwarded copy of the request.
#[derive(Debug)]
pub struct Branch {
    pub key: ClientKey,
    /// The request as sent (kept until a final response, for ACK and CANCEL).
    pub request: Option<Message>,
    pub flow: Flow,
    pub tx: ClientTransaction,
    pub final_status: Option<u16>,
    /// Timer C deadline (INVITE), pushed back by each provisional response.
    pub timer_c: Option<tokio::time::Instant>,
    /// CANCEL asked for before a provisional response allowed sending it.
    pub cancel_wanted: bool,
    pub cancel: Option<(ClientKey, ClientTransaction)>,
    /// The hop-by-hop ACK once built (non-2xx final response).
    pub ack: Option<AckBytes>,
    pub extension: Option<ExtensionId>,
    pub device: Option<DeviceId>,
    /// The carrier trunk the branch went to (calls to the public network).
    pub trunk: Option<pbx_store::TrunkId>,
    /// A provisional response beyond 100 came: the callee was reached.
    pub reached: bool,
}

/// Who rings next when the phones ringing now do not answer: a ring
/// group's next members, then its no-answer extension.
#[derive(Debug, Clone)]
pub struct Step {
    pub members: Vec<ExtensionId>,
    /// How long they ring before the step after them; None: until they answer.
    pub ring_s: Option<u64>,
}

/// The call an initial INVITE starts, for dialogs and events.
#[derive(Debug, Clone)]
pub struct CallSetup {
    pub info: CallInfo,
    pub caller: String,
    pub callee: String,
    /// The caller's Contact.
    pub caller_contact: Option<pbx_sip_message::Uri>,
    pub started_at: pbx_store::Millis,
    /// Extensions the call was forwarded through so far (loop detection).
    pub passed: Vec<ExtensionId>,
    /// The caller's From tag as the INVITE had it: with the Call-ID, the
    /// call's key in events (never taken from a response, which may differ).
    pub caller_tag: String,
    /// Whether the call is recorded when answered.
    pub recording: crate::recording::Policy,
}

/// An anchored request's media: the call, and which parties its SDP passes
/// between (None for the initial INVITE, whose callee is each branch).
#[derive(Debug, Clone)]
pub struct MediaLeg {
    pub key: pbx_media::CallKey,
    /// For in-dialog requests: (sender, receiver).
    pub parties: Option<(pbx_media::Party, pbx_media::Party)>,
}

#[derive(Debug)]
pub struct Context {
    pub key: ServerKey,
    pub method: Method,
    /// The request as received, with its Via stamped. Dropped once a final
    /// response is sent, to keep lingering transactions small.
    pub request: Option<Message>,
    pub inbound: Flow,
    /// Where responses go (RFC 3261 §18.2.2, RFC 3581).
    pub reply_flow: Flow,
    pub server: ServerTransaction,
    pub branches: Vec<Branch>,
    /// The best final non-2xx response so far (§16.7 step 6).
    pub best: Option<Message>,
    pub answered: bool,
    pub cancelled: bool,
    /// Set for initial INVITEs: the call this context sets up.
    pub call: Option<CallSetup>,
    /// Set for in-dialog requests: the dialog's tags (from, to) as received.
    pub in_dialog: Option<(String, String)>,
    /// To tags of early dialogs (provisional responses) of an initial INVITE.
    pub early: Vec<String>,
    /// Removed from the tables already.
    pub finished: bool,
    /// The no-answer time ran out: the branches were cancelled to forward.
    pub no_answer: bool,
    /// When the ringing extension's no-answer forward applies (a timer that
    /// fires for an extension rung before is recognised as stale by it).
    pub no_answer_at: Option<tokio::time::Instant>,
    /// The steps left of a ring group's plan.
    pub plan: std::collections::VecDeque<Step>,
    /// Set for calls to the public network: the trunks left to try.
    pub carrier: Option<crate::carrier::CarrierLeg>,
    /// Set when the call's media is anchored: SDP passes through the relay.
    pub media: Option<MediaLeg>,
    /// A colleague picked the ringing call up: once the phones are
    /// cancelled, the call goes to the application server that joins the
    /// two.
    pub pickup: Option<crate::location::Binding>,
}

impl Context {
    /// True when nothing is left to wait for: the context can go.
    pub fn is_done(&self) -> bool {
        use crate::transaction::{ClientState, ServerState};
        self.server.state() == ServerState::Terminated
            && self.branches.iter().all(|b| {
                b.tx.state() == ClientState::Terminated
                    && b.cancel
                        .as_ref()
                        .is_none_or(|(_, c)| c.state() == ClientState::Terminated)
            })
    }

    /// Branches still waiting for a final response.
    pub fn pending_branches(&self) -> usize {
        self.branches
            .iter()
            .filter(|b| b.final_status.is_none())
            .count()
    }

    /// The request's Call-ID (empty once the request is dropped).
    pub fn key_call_id(&self) -> String {
        self.request
            .as_ref()
            .map(|r| r.call_id().to_owned())
            .unwrap_or_default()
    }

    /// The call's key in events and admission: its Call-ID and the caller's
    /// From tag as the INVITE had it.
    pub fn call_key(&self) -> crate::admission::CallKey {
        let tag = match &self.call {
            Some(call) => call.caller_tag.clone(),
            None => self
                .request
                .as_ref()
                .and_then(|r| r.from().tag())
                .unwrap_or_default(),
        };
        (self.key_call_id(), tag)
    }
}
