//! Cursor pagination shared by lists in pages and the API: `{"items": [...], "next_cursor": ...}`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;

/// Default page size.
pub const DEFAULT_LIMIT: i64 = 50;
/// Largest page size a caller may ask for.
pub const MAX_LIMIT: i64 = 500;

/// One page of a list.
#[derive(Clone, Debug, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass back as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// The requested page size, defaulted and checked.
pub fn limit(requested: Option<i64>) -> Result<i64, String> {
    match requested {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(_) => Err(format!("limit must be between 1 and {MAX_LIMIT}")),
    }
}

/// Encodes the sort key of the last item shown.
pub fn encode_cursor(parts: &[&str]) -> String {
    URL_SAFE_NO_PAD.encode(parts.join("\u{0}"))
}

/// Decodes a cursor into its `n` parts; `None` when it was not made by [`encode_cursor`].
pub fn decode_cursor(cursor: &str, n: usize) -> Option<Vec<String>> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor.trim()).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let parts: Vec<String> = text.split('\u{0}').map(str::to_string).collect();
    (parts.len() == n).then_some(parts)
}

/// Why a cursor is refused.
pub const BAD_CURSOR: &str = "the cursor is not valid; start from the first page";

/// The sort key after which a page starts: `None` for the first page (no or an empty cursor),
/// or the `n` parts of a cursor; a cursor not made by [`encode_cursor`] is refused with a message
/// for the caller.
pub fn after(cursor: Option<&str>, n: usize) -> Result<Option<Vec<String>>, &'static str> {
    match cursor.filter(|c| !c.trim().is_empty()) {
        None => Ok(None),
        Some(c) => decode_cursor(c, n).map(Some).ok_or(BAD_CURSOR),
    }
}

/// Turns `limit + 1` fetched rows into a page: the extra row only says that more exist.
pub fn into_page<T>(mut rows: Vec<T>, limit: i64, key: impl Fn(&T) -> String) -> Page<T> {
    let more = rows.len() as i64 > limit;
    rows.truncate(limit.max(0) as usize);
    let next_cursor = if more { rows.last().map(key) } else { None };
    Page {
        items: rows,
        next_cursor,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let c = encode_cursor(&["a@example.com", "id-1"]);
        assert_eq!(decode_cursor(&c, 2).unwrap(), vec!["a@example.com", "id-1"]);
        assert!(decode_cursor(&c, 3).is_none());
        assert!(decode_cursor("not base64!", 2).is_none());
    }

    #[test]
    fn limits_are_bounded() {
        assert_eq!(limit(None).unwrap(), 50);
        assert_eq!(limit(Some(500)).unwrap(), 500);
        assert!(limit(Some(0)).is_err());
        assert!(limit(Some(501)).is_err());
    }

    #[test]
    fn page_knows_when_more_exist() {
        let page = into_page(vec![1, 2, 3], 2, |n| n.to_string());
        assert_eq!(page.items, vec![1, 2]);
        assert_eq!(page.next_cursor.as_deref(), Some("2"));
        let last = into_page(vec![1, 2], 2, |n| n.to_string());
        assert!(last.next_cursor.is_none());
    }
}
