//! Cursor pagination: a page of items and a cursor for the next one.
//! Cursors name the last item seen (today its id, in decimal; clients treat
//! them as opaque), so that inserts and deletes between two requests neither
//! repeat nor skip an item.

use serde::{Deserialize, Serialize};

use super::problem::Problem;

pub const DEFAULT_LIMIT: u32 = 100;
pub const MAX_LIMIT: u32 = 1000;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Items per page, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    #[param(pattern = "^[0-9]{1,18}$")]
    pub cursor: Option<String>,
}

impl PageQuery {
    pub fn limit(&self) -> Result<u32, Problem> {
        match self.limit {
            None => Ok(DEFAULT_LIMIT),
            Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            Some(_) => Err(Problem::invalid(vec![pbx_store::FieldError::new(
                "limit",
                format!("must be 1 to {MAX_LIMIT}"),
            )])),
        }
    }

    /// The id after which the page starts (in the list's order).
    pub fn after(&self) -> Result<Option<i64>, Problem> {
        self.cursor.as_deref().map(decode).transpose()
    }
}

pub fn encode(id: i64) -> String {
    id.to_string()
}

fn decode(cursor: &str) -> Result<i64, Problem> {
    Some(cursor)
        .filter(|c| (1..=18).contains(&c.len()) && c.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| {
            Problem::invalid(vec![pbx_store::FieldError::new(
                "cursor",
                "is not a cursor this API gave out",
            )])
        })
}

/// Pages a list the store returns whole, in ascending id order.
pub fn paginate<T>(
    mut items: Vec<T>,
    id: impl Fn(&T) -> i64,
    q: &PageQuery,
) -> Result<Page<T>, Problem> {
    let limit = q.limit()? as usize;
    let after = q.after()?;
    items.sort_by_key(|i| id(i));
    let mut items: Vec<T> = items
        .into_iter()
        .filter(|i| after.is_none_or(|a| id(i) > a))
        .take(limit + 1)
        .collect();
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|i| encode(id(i)))
    } else {
        None
    };
    Ok(Page { items, next_cursor })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_a_list_without_repeats_or_gaps() {
        let q = |cursor: Option<String>| PageQuery {
            limit: Some(2),
            cursor,
        };
        let items: Vec<i64> = vec![5, 1, 4, 2, 3];
        let p1 = paginate(items.clone(), |i| *i, &q(None)).unwrap();
        assert_eq!(p1.items, vec![1, 2]);
        let p2 = paginate(items.clone(), |i| *i, &q(p1.next_cursor)).unwrap();
        assert_eq!(p2.items, vec![3, 4]);
        let p3 = paginate(items, |i| *i, &q(p2.next_cursor)).unwrap();
        assert_eq!(p3.items, vec![5]);
        assert!(p3.next_cursor.is_none());
        assert_eq!(
            paginate(vec![1], |i| *i, &q(Some("bogus".into())))
                .unwrap_err()
                .status,
            422
        );
        let over = PageQuery {
            limit: Some(1001),
            cursor: None,
        };
        assert_eq!(over.limit().unwrap_err().status, 422);
    }
}
