//! Where a customer's calls may go, as the console's selects offer it: the
//! numbers page, business-hours rules and menu options all choose from the
//! customer's extensions, ring groups, conference rooms, voicemail boxes and
//! menus (and, for numbers, business-hours rules). A choice is written
//! `kind:id` (`extension:5`); forms that used to take a number typed in
//! still read one (`101`, `*101` for 101's box). The store checks again that
//! what was chosen is the customer's.

use pbx_store::numbers::Destination;
use pbx_store::{
    BusinessHoursId, ConferenceRoomId, CustomerId, ExtensionId, IvrMenuId, RingGroupId,
};
use serde_json::{json, Value};

use super::i18n::Texts;
use super::visit::{Failure, Visit};
use crate::AppState;

/// Which kinds a form offers.
#[derive(Debug, Clone, Copy)]
pub(super) enum For {
    /// A phone number: everything, rules too.
    Number,
    /// A rule: everything but rules.
    Rule,
    /// A menu's option: everything but rules and the menu itself.
    Menu(Option<IvrMenuId>),
}

/// One place a call can go.
struct Choice {
    destination: Destination,
    label: String,
    /// What may be typed for it, where it has a number.
    dialled: Option<String>,
}

/// A customer's choices, grouped by kind in the order the selects show them.
pub(super) struct Choices {
    groups: Vec<(&'static str, Vec<Choice>)>,
}

impl Choices {
    pub async fn of(
        s: &AppState,
        visit: &Visit,
        customer: CustomerId,
        what: For,
    ) -> Result<Choices, Failure> {
        let by = visit.principal()?;
        let texts = visit.texts(s);
        let store = &s.store;
        let mut extensions: Vec<_> = store
            .extensions()
            .list(by, customer)
            .await?
            .into_iter()
            .filter(|e| e.deleted_at.is_none())
            .collect();
        extensions.sort_by(|a, b| a.number.cmp(&b.number));
        let mut groups = Vec::new();
        groups.push((
            "extensions",
            extensions
                .iter()
                .map(|e| Choice {
                    destination: Destination::Extension(e.id),
                    label: format!("{} {}", e.number, e.display_name),
                    dialled: Some(e.number.clone()),
                })
                .collect(),
        ));
        let mut rings = store.ring_groups().list(by, customer).await?;
        rings.sort_by(|a, b| a.number.cmp(&b.number));
        groups.push((
            "ring_groups",
            rings
                .into_iter()
                .map(|g| Choice {
                    destination: Destination::RingGroup(g.id),
                    label: format!("{} {}", g.number, g.name),
                    dialled: Some(g.number),
                })
                .collect(),
        ));
        let mut rooms = store.conference_rooms().list(by, customer).await?;
        rooms.sort_by(|a, b| a.number.cmp(&b.number));
        groups.push((
            "conference_rooms",
            rooms
                .into_iter()
                .map(|r| Choice {
                    destination: Destination::ConferenceRoom(r.id),
                    label: format!("{} {}", r.number, r.name),
                    dialled: Some(r.number),
                })
                .collect(),
        ));
        groups.push((
            "voicemail_boxes",
            extensions
                .iter()
                .map(|e| Choice {
                    destination: Destination::Voicemail(e.id),
                    label: format!("{} {} {}", texts.get("voicemail"), e.number, e.display_name),
                    dialled: Some(format!("*{}", e.number)),
                })
                .collect(),
        ));
        let except = match what {
            For::Menu(this) => this,
            _ => None,
        };
        groups.push((
            "ivr_menus",
            store
                .ivr_menus()
                .list(by, customer)
                .await?
                .into_iter()
                .filter(|m| Some(m.id) != except)
                .map(|m| Choice {
                    destination: Destination::IvrMenu(m.id),
                    label: m.name,
                    dialled: None,
                })
                .collect(),
        ));
        if matches!(what, For::Number) {
            groups.push((
                "business_hours",
                store
                    .business_hours()
                    .list(by, customer)
                    .await?
                    .into_iter()
                    .map(|r| Choice {
                        destination: Destination::BusinessHours(r.id),
                        label: r.name,
                        dialled: None,
                    })
                    .collect(),
            ));
        }
        Ok(Choices { groups })
    }

    fn all(&self) -> impl Iterator<Item = &Choice> {
        self.groups.iter().flat_map(|(_, c)| c)
    }

    /// What the page shows for `d` (empty for none, or one that is gone).
    pub fn label(&self, d: Option<Destination>) -> String {
        self.all()
            .find(|c| Some(c.destination) == d)
            .map(|c| c.label.clone())
            .unwrap_or_default()
    }

    /// A select's groups of options with `current` selected, after a first
    /// option for none labelled `none`.
    pub fn select(&self, texts: &Texts, current: Option<Destination>, none: &str) -> Value {
        let current = current.map(value).unwrap_or_default();
        let groups: Vec<Value> = self
            .groups
            .iter()
            .filter(|(_, choices)| !choices.is_empty())
            .map(|(kind, choices)| {
                let options: Vec<Value> = choices
                    .iter()
                    .map(|c| {
                        let v = value(c.destination);
                        json!({ "value": v, "label": c.label, "selected": v == current })
                    })
                    .collect();
                json!({ "label": texts.get(kind), "options": options })
            })
            .collect();
        json!({ "none": none, "none_selected": current.is_empty(), "groups": groups })
    }

    /// A destination from a form: `kind:id`, or a number typed in; Err with
    /// the text when it names nothing of the customer.
    pub fn read(&self, text: &str) -> Result<Option<Destination>, String> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(None);
        }
        let found = match parse(text) {
            Ok(Some(d)) => self.all().find(|c| c.destination == d),
            _ => self.all().find(|c| c.dialled.as_deref() == Some(text)),
        };
        found
            .map(|c| Some(c.destination))
            .ok_or_else(|| text.to_owned())
    }
}

/// A destination as the forms write it: `extension:5`.
pub(super) fn value(d: Destination) -> String {
    match d {
        Destination::Extension(e) => format!("extension:{}", e.0),
        Destination::RingGroup(g) => format!("ring_group:{}", g.0),
        Destination::BusinessHours(h) => format!("business_hours:{}", h.0),
        Destination::ConferenceRoom(r) => format!("conference_room:{}", r.0),
        Destination::Voicemail(e) => format!("voicemail:{}", e.0),
        Destination::IvrMenu(m) => format!("ivr_menu:{}", m.0),
    }
}

/// `kind:id` back to a destination; Ok(None) for the empty text, Err for
/// anything else that is not one.
pub(super) fn parse(text: &str) -> Result<Option<Destination>, ()> {
    if text.is_empty() {
        return Ok(None);
    }
    let (kind, id) = text.split_once(':').ok_or(())?;
    let id: i64 = id.parse().map_err(|_| ())?;
    Ok(Some(match kind {
        "extension" => Destination::Extension(ExtensionId(id)),
        "ring_group" => Destination::RingGroup(RingGroupId(id)),
        "business_hours" => Destination::BusinessHours(BusinessHoursId(id)),
        "conference_room" => Destination::ConferenceRoom(ConferenceRoomId(id)),
        "voicemail" => Destination::Voicemail(ExtensionId(id)),
        "ivr_menu" => Destination::IvrMenu(IvrMenuId(id)),
        _ => return Err(()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_back() {
        for d in [
            Destination::Extension(ExtensionId(5)),
            Destination::RingGroup(RingGroupId(6)),
            Destination::BusinessHours(BusinessHoursId(7)),
            Destination::ConferenceRoom(ConferenceRoomId(8)),
            Destination::Voicemail(ExtensionId(9)),
            Destination::IvrMenu(IvrMenuId(10)),
        ] {
            assert_eq!(parse(&value(d)), Ok(Some(d)));
        }
        assert_eq!(parse(""), Ok(None));
        assert_eq!(parse("sauna:1"), Err(()));
        assert_eq!(parse("extension:x"), Err(()));
        assert_eq!(parse("101"), Err(()));
    }
}
