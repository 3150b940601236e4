//! Two calls of the application server joined: the caller it answered and
//! the call it placed for it (an auto attendant's transfer). Each side
//! hears the other a frame every 20 ms, through the jitter buffer of what
//! it receives; the audio is decoded and encoded again, so the two sides
//! need not agree on a law. It lasts until either side hangs up.

use std::time::Duration;

use pbx_media::audio::FRAME;
use tokio::sync::mpsc::Receiver;

use crate::media::{CallEvent, CallMedia};

/// A joined call this long ends (a forgotten call costs the customer).
const LONGEST: Duration = Duration::from_secs(8 * 3600);
/// Nothing at all from a side this long (not even the relay's music on
/// hold): that side is gone without a BYE.
const SILENT: Duration = Duration::from_secs(300);

/// Who ended a joined call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The caller (the first side) hung up: the placed call needs our BYE.
    Caller,
    /// The placed call (the second side) hung up: the caller needs our BYE.
    Placed,
    /// Neither: too long, or a side fell silent; both need our BYE.
    Neither,
}

/// Joins a caller (its media and events) and the call placed for it
/// until one hangs up.
pub async fn join(
    caller: (&CallMedia, &mut Receiver<CallEvent>),
    placed: (&CallMedia, &mut Receiver<CallEvent>),
) -> Ended {
    let (a, a_events) = caller;
    let (b, b_events) = placed;
    a.start_listening();
    b.start_listening();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let deadline = tokio::time::sleep(LONGEST);
    tokio::pin!(deadline);
    let mut frame = [0i16; FRAME];
    let mut ticks = 0u64;
    let ended = loop {
        tokio::select! {
            _ = tick.tick() => {
                a.take_frame(&mut frame);
                b.send_frame(&frame);
                b.take_frame(&mut frame);
                a.send_frame(&frame);
                ticks += 1;
                // Once a second is often enough to look for a dead side.
                if ticks.is_multiple_of(50)
                    && (a.silent_for() > SILENT || b.silent_for() > SILENT)
                {
                    break Ended::Neither;
                }
            }
            _ = &mut deadline => break Ended::Neither,
            event = a_events.recv() => {
                if matches!(event, Some(CallEvent::Hangup) | None) {
                    break Ended::Caller;
                }
            }
            event = b_events.recv() => {
                if matches!(event, Some(CallEvent::Hangup) | None) {
                    break Ended::Placed;
                }
            }
        }
    };
    a.stop_listening();
    b.stop_listening();
    ended
}
