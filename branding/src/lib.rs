//! The default theme of the console: handlebars templates, texts in each
//! language, and static assets, compiled into the binary. Each reseller's
//! overrides (logo, favicon, colours, texts) live in the database; this crate
//! holds only what every brand starts from, and must itself name no one: no
//! operator or product name appears in any file here (a test checks it).

#![forbid(unsafe_code)]

/// The logo of the demo reseller that `pbx serve --demo` creates.
pub const DEMO_RESELLER_LOGO_SVG: &[u8] = include_bytes!("../assets/demo-reseller-logo.svg");

macro_rules! templates {
    ($($name:literal),* $(,)?) => {
        /// Every template, by name (its file name without `.hbs`). Templates
        /// whose name another one includes as `{{> name}}` are partials.
        pub const TEMPLATES: &[(&str, &str)] = &[
            $(($name, include_str!(concat!("../templates/", $name, ".hbs")))),*
        ];
    };
}

templates!(
    "layout",
    "login",
    "error",
    "dashboard",
    "dashboard_live",
    "extensions",
    "extension",
    "form_errors",
    "credentials",
    "calls",
    "numbers",
    "customers",
    "usage",
    "brand",
    "resellers",
    "health",
    "forgot",
    "reset",
    "code",
    "account",
    "ring_groups",
    "ring_group",
    "ring_group_fields",
    "conference_rooms",
    "conference_room",
    "conference_room_fields",
    "ivr_menus",
    "ivr_menu",
    "ivr_menu_fields",
    "destination_options",
    "recordings",
    "plans",
    "plan",
    "trunks",
    "trunk",
    "trunk_fields",
    "hours",
    "hours_rule",
    "hours_fields",
    "security",
);

/// The console's texts per language: (language code, TOML table of texts).
/// The first is the fallback.
pub const LOCALES: &[(&str, &str)] = &[
    ("en", include_str!("../locales/en.toml")),
    ("de", include_str!("../locales/de.toml")),
];

/// A static file of the theme.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    pub name: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
}

/// Served under `/assets/<name>`.
pub const ASSETS: &[Asset] = &[
    Asset {
        name: "console.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../assets/console.css"),
    },
    Asset {
        name: "console.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../assets/console.js"),
    },
];

/// The logo shown when a brand has none of its own: a neutral phone mark.
pub const DEFAULT_LOGO_SVG: &[u8] = include_bytes!("../assets/default-logo.svg");
/// The favicon shown when a brand has none of its own.
pub const DEFAULT_FAVICON_SVG: &[u8] = include_bytes!("../assets/default-favicon.svg");

#[cfg(test)]
mod tests {
    use super::*;

    /// The keys of a TOML table of texts, in order of appearance.
    fn keys(toml: &str) -> Vec<&str> {
        toml.lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .filter_map(|l| l.split_once(" = ").map(|(k, _)| k.trim()))
            .collect()
    }

    #[test]
    fn every_language_has_every_text() {
        let mut reference = keys(LOCALES[0].1);
        reference.sort_unstable();
        for (code, toml) in LOCALES {
            let mut k = keys(toml);
            k.sort_unstable();
            assert_eq!(k, reference, "texts of {code}");
        }
    }

    #[test]
    fn every_text_a_template_uses_exists() {
        let known = keys(LOCALES[0].1);
        for (name, body) in TEMPLATES {
            for (i, _) in body.match_indices("t.") {
                let before = body[..i].chars().last();
                if !matches!(before, Some('{') | Some(' ') | Some('/')) {
                    continue;
                }
                let key: String = body[i + 2..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                assert!(known.contains(&key.as_str()), "{name} uses t.{key}");
            }
        }
    }
}
