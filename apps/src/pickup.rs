//! Picking up a colleague's ringing call: `*8` takes the call that has
//! rung longest at any other extension of the customer, `**<number>` the
//! one ringing at that extension. The proxy routes the picker's call here;
//! the server answers it, finds the ringing call (the busy lamps know which
//! calls ring where), and asks the proxy to hand it over: the proxy
//! cancels that call's phones and rings this server with it instead. The
//! server answers it too and joins the two.

use std::time::Duration;

use pbx_store::{CustomerId, ExtensionId, Principal};

use crate::bridge;
use crate::media::Ended;
use crate::prompts::Prompts;
use crate::server::{hang_up, lock, App};
use crate::Run;

/// How long the picker waits for the proxy to hand the call over.
const HANDOVER: Duration = Duration::from_secs(10);

/// Runs a pickup for the caller of `run`, a phone of `customer`; true when
/// the caller hung up (no BYE needed).
pub(crate) async fn answer(
    mut run: Run,
    customer: CustomerId,
    extension: Option<ExtensionId>,
) -> bool {
    let store = run.inner.store.clone();
    let prompts = Prompts::of_customer(&store, customer).await;
    let watched = match extension {
        Some(e) => vec![e],
        None => colleagues(&run, customer).await,
    };
    let Some(key) = run.inner.lines.ringing(&watched) else {
        return nothing_to_pick_up(&mut run, prompts).await;
    };
    let Some((call_id, tag)) = key.rsplit_once(';') else {
        return nothing_to_pick_up(&mut run, prompts).await;
    };
    let token = rand::random::<u64>();
    let (handed, taken) = tokio::sync::oneshot::channel();
    lock(&run.inner.picked).insert(token, handed);
    let user = App::PickedUp(token).user();
    let asked = run
        .inner
        .pickup
        .get()
        .is_some_and(|pick_up| pick_up(call_id, tag, &user));
    let picked = if asked {
        tokio::time::timeout(HANDOVER, taken)
            .await
            .ok()
            .and_then(Result::ok)
    } else {
        None
    };
    lock(&run.inner.picked).remove(&token);
    let Some(mut picked) = picked else {
        return nothing_to_pick_up(&mut run, prompts).await;
    };
    tracing::info!(call_id = %run.call_id, picked = %picked.call_id, customer = %customer,
        "call picked up");
    let ended = bridge::join(
        (&run.media, &mut run.events),
        (&picked.media, &mut picked.events),
    )
    .await;
    if ended != bridge::Ended::Placed {
        hang_up(&run.inner, &picked.call_id).await;
    }
    ended == bridge::Ended::Caller
}

/// The customer's extensions other than the picker's own (its number is
/// the caller).
async fn colleagues(run: &Run, customer: CustomerId) -> Vec<ExtensionId> {
    let sys = Principal::system();
    match run.inner.store.extensions().list(&sys, customer).await {
        Ok(list) => list
            .into_iter()
            .filter(|e| e.number != run.caller)
            .map(|e| e.id)
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, customer = %customer, "extensions not readable for a pickup");
            Vec::new()
        }
    }
}

async fn nothing_to_pick_up(run: &mut Run, prompts: &Prompts) -> bool {
    run.media
        .play(prompts.pickup_none(), &mut run.events, false)
        .await
        == Ended::Hangup
}
