//! A caller in an auto-attendant menu: the menu's greeting (uploaded, or
//! the default in the customer's language) played until the caller keys
//! something; a key the menu has leads to its destination, an extension's
//! number keyed (direct dialling) to that extension, anything else to "not
//! valid" and the greeting again. A caller who keys nothing through the
//! menu's tries goes to its timeout destination, or is said goodbye to.
//!
//! Extensions and ring groups are rung by a call placed through the proxy
//! (their forwards and steps apply as to any call), joined to the caller
//! once answered; a box, a room or another menu runs right here on the
//! caller's own call.

use std::time::Duration;

use pbx_media::audio::Clip;
use pbx_store::destinations::Destination;
use pbx_store::ivr_menus::IvrMenu;
use pbx_store::{IvrMenuId, Principal};

use crate::media::Ended;
use crate::originate::{self, Outcome, Target};
use crate::prompts::Prompts;
use crate::{bridge, Run};

/// Menus one call may pass through (menus leading to each other in a
/// circle would otherwise keep a silent caller for ever).
const MOST_MENUS: usize = 20;
/// How long a caller keying an extension's number may pause between keys.
const DIGIT_PAUSE: Duration = Duration::from_secs(3);
/// The longest extension number keyed.
const LONGEST_NUMBER: usize = 10;

/// What a caller's keys chose.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Choice {
    Go(Destination),
    /// An extension or ring group keyed by its number.
    Dial(String),
    Invalid,
}

/// Runs a caller through menus from `menu` on; true when the caller hung
/// up (no BYE needed).
pub(crate) async fn answer(mut run: Run, menu: IvrMenuId) -> bool {
    let store = run.inner.store.clone();
    let sys = Principal::system();
    let mut current = menu;
    for _ in 0..MOST_MENUS {
        let Ok(menu) = store.ivr_menus().get(&sys, current).await else {
            tracing::info!(call_id = %run.call_id, menu = current.0, "menu gone; call ended");
            return false;
        };
        let Ok(customer) = store.customers().get(&sys, menu.customer_id).await else {
            return false;
        };
        tracing::info!(call_id = %run.call_id, customer = %menu.customer_id, menu = menu.id.0,
            "caller in menu");
        let prompts = Prompts::for_language(&customer.language);
        let greeting = uploaded_greeting(&run, &menu).await;
        let greeting = greeting
            .as_ref()
            .map_or(prompts.menu_default(), Clip::samples);
        let choice = match choose(&mut run, &menu, greeting, prompts).await {
            Some(choice) => choice,
            None => return true,
        };
        tracing::info!(call_id = %run.call_id, customer = %menu.customer_id, menu = menu.id.0,
            choice = ?choice, "menu choice");
        let number = match choice {
            // Tries used up with nowhere to go.
            Choice::Invalid => return unreachable(&mut run, prompts).await,
            Choice::Dial(number) => number,
            Choice::Go(Destination::IvrMenu(next)) => {
                current = next;
                continue;
            }
            Choice::Go(Destination::Voicemail(e)) => {
                return crate::voicemail::deposit(run, e).await
            }
            Choice::Go(Destination::ConferenceRoom(r)) => {
                return crate::conference::join(run, r).await
            }
            Choice::Go(d) => match number_of(&run, d).await {
                Some(number) => number,
                None => return unreachable(&mut run, prompts).await,
            },
        };
        match transfer(&mut run, &number, &customer.sip_domain, prompts).await {
            Transferred::Again => continue,
            Transferred::Done(hung_up) => return hung_up,
        }
    }
    tracing::info!(call_id = %run.call_id, "menus lead to each other; call ended");
    false
}

/// The number a call is placed to for an extension or ring group that is
/// still there (a rule is never an option's destination: the store
/// refuses it).
async fn number_of(run: &Run, d: Destination) -> Option<String> {
    let store = &run.inner.store;
    let sys = Principal::system();
    match d {
        Destination::Extension(e) => {
            let found = store.extensions().get(&sys, e).await.ok()?;
            found.deleted_at.is_none().then_some(found.number)
        }
        Destination::RingGroup(g) => store
            .ring_groups()
            .get(&sys, g)
            .await
            .ok()
            .map(|g| g.number),
        _ => None,
    }
}

/// The menu's uploaded greeting, when it has one that reads.
async fn uploaded_greeting(run: &Run, menu: &IvrMenu) -> Option<Clip> {
    let key = menu.greeting_audio.clone()?;
    let what = format!("greeting of menu {}", menu.id.0);
    crate::prompts::uploaded(&run.inner.config.audio, key, &what).await
}

/// Plays the greeting and takes the caller's choice, through the menu's
/// tries; None when the caller hung up.
async fn choose(
    run: &mut Run,
    menu: &IvrMenu,
    greeting: &[i16],
    prompts: &Prompts,
) -> Option<Choice> {
    let numbers = if menu.direct_dial {
        dialable(run, menu).await
    } else {
        Vec::new()
    };
    for _ in 0..menu.tries {
        let first = match run.media.play(greeting, &mut run.events, true).await {
            Ended::Hangup => return None,
            Ended::Key(k) => Some(k),
            Ended::Done => {
                let wait = Duration::from_secs(menu.timeout_s.unsigned_abs());
                match run.media.wait_key(wait, &mut run.events).await {
                    Ended::Hangup => return None,
                    Ended::Key(k) => Some(k),
                    Ended::Done => None,
                }
            }
        };
        let Some(first) = first else { continue };
        let mut keyed = first.to_string();
        // A key that could begin an extension's number waits for more.
        while numbers
            .iter()
            .any(|n| n.len() > keyed.len() && n.starts_with(&keyed))
            && keyed.len() < LONGEST_NUMBER
        {
            match run.media.wait_key(DIGIT_PAUSE, &mut run.events).await {
                Ended::Hangup => return None,
                Ended::Key('#') | Ended::Done => break,
                Ended::Key(k) => keyed.push(k),
            }
        }
        match pick(menu, &numbers, &keyed) {
            Choice::Invalid => {
                if run
                    .media
                    .play(prompts.menu_invalid(), &mut run.events, true)
                    .await
                    == Ended::Hangup
                {
                    return None;
                }
            }
            choice => return Some(choice),
        }
    }
    Some(menu.on_timeout.map_or(Choice::Invalid, Choice::Go))
}

/// What `keyed` chooses in `menu`: an option's key, else a number of
/// `numbers` (direct dialling).
fn pick(menu: &IvrMenu, numbers: &[String], keyed: &str) -> Choice {
    if let Some(option) = menu.options.iter().find(|o| o.key == keyed) {
        return Choice::Go(option.destination);
    }
    if numbers.iter().any(|n| n == keyed) {
        return Choice::Dial(keyed.to_owned());
    }
    Choice::Invalid
}

/// The numbers a caller may key in the menu's customer: its extensions'
/// and ring groups'.
async fn dialable(run: &Run, menu: &IvrMenu) -> Vec<String> {
    let store = &run.inner.store;
    let sys = Principal::system();
    let mut numbers: Vec<String> = match store.extensions().list(&sys, menu.customer_id).await {
        Ok(list) => list.into_iter().map(|e| e.number).collect(),
        Err(e) => {
            tracing::warn!(error = %e, menu = menu.id.0, "extensions not readable for direct dialling");
            Vec::new()
        }
    };
    if let Ok(groups) = store.ring_groups().list(&sys, menu.customer_id).await {
        numbers.extend(groups.into_iter().map(|g| g.number));
    }
    numbers
}

enum Transferred {
    /// Nobody took it: the caller hears so and the menu again.
    Again,
    /// The call is over; true when the caller hung up.
    Done(bool),
}

/// Rings `number` of the customer for the caller and joins them once
/// answered.
async fn transfer(run: &mut Run, number: &str, domain: &str, prompts: &Prompts) -> Transferred {
    let caller = run.caller.clone();
    let target = Target {
        user: number,
        domain,
        caller: &caller,
    };
    match originate::place(run, &target).await {
        Outcome::CallerGone => Transferred::Done(true),
        Outcome::Refused(code) => {
            tracing::info!(call_id = %run.call_id, to = %number, code, "menu transfer not taken");
            if run
                .media
                .play(prompts.menu_unreachable(), &mut run.events, false)
                .await
                == Ended::Hangup
            {
                return Transferred::Done(true);
            }
            Transferred::Again
        }
        Outcome::Answered(mut placed) => {
            let ended = bridge::join(
                (&run.media, &mut run.events),
                (&placed.media, &mut placed.events),
            )
            .await;
            if ended != bridge::Ended::Placed {
                crate::server::hang_up_placed(&run.inner, &placed.call_id).await;
            }
            Transferred::Done(ended == bridge::Ended::Caller)
        }
    }
}

/// Nobody can take the call, and the caller is said goodbye to.
async fn unreachable(run: &mut Run, prompts: &Prompts) -> bool {
    run.media
        .play(prompts.menu_unreachable(), &mut run.events, false)
        .await
        == Ended::Hangup
}

#[cfg(test)]
mod tests {
    use super::*;
    use pbx_store::ivr_menus::MenuOption;
    use pbx_store::{CustomerId, ExtensionId, ResellerId, RingGroupId};

    fn menu() -> IvrMenu {
        IvrMenu {
            id: IvrMenuId(1),
            customer_id: CustomerId(1),
            reseller_id: ResellerId(1),
            name: "Main".into(),
            has_greeting: false,
            greeting_audio: None,
            timeout_s: 5,
            tries: 3,
            direct_dial: true,
            options: vec![
                MenuOption {
                    key: "1".into(),
                    destination: Destination::Extension(ExtensionId(7)),
                },
                MenuOption {
                    key: "#".into(),
                    destination: Destination::RingGroup(RingGroupId(3)),
                },
            ],
            on_timeout: None,
            created_at: 0,
            version: 1,
        }
    }

    #[test]
    fn keys_choose_options_then_numbers() {
        let m = menu();
        let numbers = vec!["101".to_owned(), "102".to_owned()];
        assert_eq!(
            pick(&m, &numbers, "1"),
            Choice::Go(Destination::Extension(ExtensionId(7)))
        );
        assert_eq!(
            pick(&m, &numbers, "#"),
            Choice::Go(Destination::RingGroup(RingGroupId(3)))
        );
        assert_eq!(pick(&m, &numbers, "102"), Choice::Dial("102".into()));
        assert_eq!(pick(&m, &numbers, "10"), Choice::Invalid);
        assert_eq!(pick(&m, &numbers, "5"), Choice::Invalid);
    }
}
