//! The protocol message of an HTTP-POST binding form: the first field of an
//! `application/x-www-form-urlencoded` body with the given name, decoded as forms are (`+` a
//! space, `%XX` a byte, a `%` without two hex digits itself) and with its whitespace taken out,
//! since IdPs wrap their base64 in lines.
//!
//! The result is exactly what `form_urlencoded::parse` followed by `split_whitespace` gives;
//! it is made in one pass over the bytes, because that general route (each value decoded to a
//! `String` checked for UTF-8, then copied again without its whitespace) cost nearly a third
//! of the instructions the server spends on a sign-in beyond the signature check.
//! A value that decodes to a byte beyond ASCII takes the general route, so that Unicode
//! whitespace is removed as it always was.

/// The value of the first field named `name` in `body`, or `None` when no field has that name.
pub fn field(body: &[u8], name: &str) -> Option<String> {
    let mut rest = body;
    while !rest.is_empty() {
        let key_end = rest
            .iter()
            .position(|b| matches!(b, b'=' | b'&'))
            .unwrap_or(rest.len());
        let (key, after) = rest.split_at(key_end);
        // `after` starts with the `=` before a value, with the `&` after a field that has
        // none, or is empty. An empty field (`&&`) is no field.
        let value = after.strip_prefix(b"=");
        if (!key.is_empty() || value.is_some()) && named(key, name) {
            return Some(value_of(value.unwrap_or_default(), rest));
        }
        rest = match after.iter().position(|b| *b == b'&') {
            Some(at) => &after[at + 1..],
            None => &[],
        };
    }
    None
}

/// Whether the form key `key` decodes to `name`. A key as sent needs no decoding; one with
/// escapes is decoded by the general route (keys are short).
fn named(key: &[u8], name: &str) -> bool {
    if !key.contains(&b'%') && !key.contains(&b'+') {
        return key == name.as_bytes();
    }
    url::form_urlencoded::parse(key)
        .next()
        .is_some_and(|(k, _)| k == name)
}

/// The bytes of a value copied as they are: every ASCII byte but the field's end (`&`), an
/// escape (`%`), a space (`+`) and whitespace.
const PLAIN: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 128 {
        table[byte] = !matches!(byte as u8, b'&' | b'%' | b'+' | b' ' | b'\t'..=b'\r');
        byte += 1;
    }
    table
};

/// The value that starts `value` (up to its `&`), decoded and without whitespace; `field`
/// is the whole field from its key on, for the general route.
fn value_of(value: &[u8], field: &[u8]) -> String {
    let mut out = Vec::with_capacity(value.len());
    let mut at = 0;
    loop {
        let run = value[at..]
            .iter()
            .take_while(|b| PLAIN[usize::from(**b)])
            .count();
        out.extend_from_slice(&value[at..at + run]);
        at += run;
        let byte = match value.get(at) {
            None | Some(b'&') => break,
            Some(b'+') => b' ',
            Some(b'%') => match (value.get(at + 1), value.get(at + 2)) {
                (Some(&high), Some(&low))
                    if high.is_ascii_hexdigit() && low.is_ascii_hexdigit() =>
                {
                    at += 2;
                    hex(high) << 4 | hex(low)
                }
                _ => b'%',
            },
            Some(&other) => other,
        };
        at += 1;
        if !byte.is_ascii() {
            return general(field);
        }
        if !char::from(byte).is_whitespace() {
            out.push(byte);
        }
    }
    // Every byte kept is ASCII.
    String::from_utf8(out).unwrap_or_default()
}

/// The value of the first field of `field` by the general route: decoded to a `String` (bytes
/// that are not UTF-8 become U+FFFD) and every Unicode whitespace taken out.
fn general(field: &[u8]) -> String {
    url::form_urlencoded::parse(field)
        .next()
        .map(|(_, v)| v.split_whitespace().collect())
        .unwrap_or_default()
}

fn hex(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        b'a'..=b'f' => digit - b'a' + 10,
        _ => digit - b'A' + 10,
    }
}

#[cfg(test)]
mod tests {
    use super::field;

    /// The general route this module replaces, as the ACS had it.
    fn reference(body: &[u8], name: &str) -> Option<String> {
        url::form_urlencoded::parse(body)
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.split_whitespace().collect())
    }

    fn same(body: &[u8]) {
        assert_eq!(
            field(body, "SAMLResponse"),
            reference(body, "SAMLResponse"),
            "body {:?}",
            String::from_utf8_lossy(body)
        );
    }

    #[test]
    fn decodes_as_forms_are_and_drops_whitespace() {
        assert_eq!(
            field(
                b"RelayState=x&SAMLResponse=PD94%2B%2Fw%3D%3D%0D%0Aab+cd",
                "SAMLResponse"
            )
            .as_deref(),
            Some("PD94+/w==abcd")
        );
        assert_eq!(field(b"RelayState=x", "SAMLResponse"), None);
        assert_eq!(field(b"SAMLResponse", "SAMLResponse").as_deref(), Some(""));
    }

    #[test]
    fn the_first_field_of_the_name_counts() {
        assert_eq!(
            field(b"SAMLResponse=one&SAMLResponse=two", "SAMLResponse").as_deref(),
            Some("one")
        );
    }

    #[test]
    fn matches_the_general_route_on_edge_cases() {
        let cases: &[&[u8]] = &[
            b"",
            b"&&&",
            b"=",
            b"SAMLResponse=",
            b"SAMLResponse==a=b",
            b"SAMLResponse=a%",
            b"SAMLResponse=a%2",
            b"SAMLResponse=a%zz%2",
            b"SAMLResponse=%4a%4A%2b%2B",
            b"SAMLResponse=a%00b",
            b"SAMLResponse=a%0Bb%0Cc%09d%85e",
            b"SAMLResponse=a%C2%A0b%E2%80%A8c",
            b"SAMLResponse=a%C2b",
            b"SAMLResponse=a%FFb",
            b"SAMLResponse=a\xc2\xa0b",
            b"SAMLResponse=a\xffb",
            b"SAML%52esponse=encoded-key",
            b"SAML+Response=spaced&SAMLResponse=plain",
            b"SAMLResponse%=x&SAMLResponse=y",
            b"x=1&&SAMLResponse=+++a+++&SAMLResponse=b",
        ];
        for body in cases {
            same(body);
        }
        // An empty field (`&&`) is no field, not one with an empty name.
        for body in [&b"a&&b"[..], b"&", b"=x&"] {
            assert_eq!(field(body, ""), reference(body, ""));
        }
    }

    #[test]
    fn matches_the_general_route_on_generated_bodies() {
        // Bodies made of the pieces that matter to the decoding, drawn by a fixed linear
        // congruential sequence so that a failure repeats.
        let pieces: &[&[u8]] = &[
            b"SAMLResponse=",
            b"SAML%52esponse=",
            b"RelayState=",
            b"&",
            b"&&",
            b"=",
            b"%",
            b"%2",
            b"%2B",
            b"%2f",
            b"%0D%0A",
            b"%26",
            b"%25",
            b"%zz",
            b"+",
            b" ",
            b"\r\n",
            b"\x0b",
            b"PD94bWw",
            b"a",
            b"Z9",
            b"\xc2\xa0",
            b"%C2%A0",
            b"%E2%80%A8",
            b"\xff",
            b"%FF",
        ];
        let mut seed: u64 = 0x5eed;
        let mut next = |bound: usize| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) as usize % bound
        };
        for _ in 0..50_000 {
            let mut body = Vec::new();
            for _ in 0..next(24) {
                body.extend_from_slice(pieces[next(pieces.len())]);
            }
            same(&body);
        }
    }
}
