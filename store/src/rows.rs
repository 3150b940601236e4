//! Small helpers shared by the aggregate modules for reading rows and storing
//! enumerations as text.

use sqlx::any::AnyRow;
use sqlx::Row;

/// Declares an enum stored as a fixed lower-case word, with `as_str` and `parse`.
macro_rules! text_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(&self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn parse(text: &str) -> Option<$name> {
                match text { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use text_enum;

/// Reads a text column holding one of a `text_enum`'s words.
pub(crate) fn enum_col<T>(
    row: &AnyRow,
    col: &str,
    parse: fn(&str) -> Option<T>,
) -> Result<T, sqlx::Error> {
    let text: String = row.try_get(col)?;
    parse(&text).ok_or_else(|| sqlx::Error::ColumnDecode {
        index: col.to_owned(),
        source: format!("unexpected value {text:?}").into(),
    })
}

/// Reads a 0/1 flag column.
pub(crate) fn flag(row: &AnyRow, col: &str) -> Result<bool, sqlx::Error> {
    Ok(row.try_get::<i64, _>(col)? != 0)
}

pub(crate) fn flag_value(b: bool) -> i64 {
    i64::from(b)
}

/// `($1, …, $arity), ($arity+1, …), …` for a multi-row INSERT of `rows`
/// rows. SQLite gets anonymous `?` instead: sqlx looks every `$N` up by name,
/// which SQLite answers by a linear search, so binding a statement cost the
/// square of its parameters (2 % of the node's CPU at 1,000 calls/s).
pub(crate) fn placeholders(engine: crate::Engine, rows: usize, arity: usize) -> String {
    (0..rows)
        .map(|r| format!("({})", param_list(engine, r * arity + 1, arity)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `$first, …` (`?, …` on SQLite: see [`placeholders`]) for `n` parameters,
/// e.g. an `IN (…)` list.
pub(crate) fn param_list(engine: crate::Engine, first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| match engine {
            crate::Engine::Sqlite => "?".to_owned(),
            crate::Engine::Postgres => format!("${i}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}
