//! The one reading of a verified response: what xmlsec verified (samael's reduction keeps only
//! signed content) is read from libxml2's tree as the reduction leaves it (a decrypted
//! assertion's reduction is parsed again), and every check and every identity value comes from
//! that tree: issuer, status, destination, the time windows with bounded skew, the audience,
//! the bearer subject confirmation (recipient, `InResponseTo`), the NameID and the attributes.
//! Attribute values that are elements (Shibboleth's `eduPersonTargetedID` holds a NameID) are
//! kept as their text and never break a response.

use chrono::{DateTime, Duration, Utc};
use libxml::readonly::RoNode;
use libxml::tree::Document;

use super::acs::{Reason, Rejection, Verified};
use super::xml::{ASSERTION, NoNsProperty, PROTOCOL, child, children, is, text};

const SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";
const BEARER: &str = "urn:oasis:names:tc:SAML:2.0:cm:bearer";

/// What the response must match.
pub struct Expected<'a> {
    pub idp_entity_id: &'a str,
    pub sp_entity_id: &'a str,
    pub acs_url: &'a str,
    /// The requests this browser may be answering; `None`: an unsolicited response the
    /// connection allows.
    pub request_ids: Option<&'a [&'a str]>,
    pub skew: Duration,
    /// How old an IssueInstant may be (skew included).
    pub max_issue_delay: Duration,
    pub now: DateTime<Utc>,
}

/// Reads and checks `reduced`, the signed content of a response as samael's reduction left it
/// (its root is the Response, or the Assertion when only the Assertion is signed). `response_id`
/// and `in_response_to` come from the outline and only feed the replay cache and the page.
pub fn read(
    reduced: &Document,
    expected: &Expected,
    response_id: Option<String>,
    in_response_to: Option<String>,
) -> Result<Verified, Rejection> {
    let unreadable = || Rejection::new(Reason::Malformed, "the signed content could not be read");
    let root = reduced.get_root_readonly().ok_or_else(unreadable)?;
    let assertion = if is(root, PROTOCOL, "Response") {
        check_response(root, expected)?;
        match children(root, ASSERTION, "Assertion").as_slice() {
            [one] => *one,
            _ => {
                return Err(Rejection::new(
                    Reason::Wrapped,
                    "the signed Response does not hold exactly one Assertion",
                ));
            }
        }
    } else if is(root, ASSERTION, "Assertion") {
        root
    } else {
        return Err(unreadable());
    };
    finish(assertion, expected, response_id, in_response_to)
}

/// Reads a decrypted assertion (`assertion_xml`, already verified when it is signed) and, when
/// the Response was signed, the Response's signed content (`signed_response`).
pub fn read_decrypted(
    signed_response: Option<&str>,
    assertion_xml: &str,
    expected: &Expected,
    response_id: Option<String>,
    in_response_to: Option<String>,
) -> Result<Verified, Rejection> {
    let unreadable = || Rejection::new(Reason::Malformed, "the signed content could not be read");
    if let Some(response) = signed_response {
        let doc = super::xml::parse_strict(response).ok_or_else(unreadable)?;
        let root = doc.get_root_readonly().ok_or_else(unreadable)?;
        if !is(root, PROTOCOL, "Response") {
            return Err(unreadable());
        }
        check_response(root, expected)?;
    }
    let doc = super::xml::parse_strict(assertion_xml).ok_or_else(unreadable)?;
    let assertion = doc.get_root_readonly().ok_or_else(unreadable)?;
    if !is(assertion, ASSERTION, "Assertion") {
        return Err(unreadable());
    }
    finish(assertion, expected, response_id, in_response_to)
}

/// Checks the assertion and takes its identity values.
fn finish(
    assertion: RoNode,
    expected: &Expected,
    response_id: Option<String>,
    in_response_to: Option<String>,
) -> Result<Verified, Rejection> {
    let valid_until = check_assertion(assertion, expected)?;
    let name_id =
        child(assertion, ASSERTION, "Subject").and_then(|s| child(s, ASSERTION, "NameID"));
    let authn = child(assertion, ASSERTION, "AuthnStatement");
    Ok(Verified {
        issuer: child(assertion, ASSERTION, "Issuer")
            .map(text)
            .unwrap_or_default(),
        assertion_id: assertion.get_property_no_ns("ID").unwrap_or_default(),
        response_id,
        in_response_to,
        name_id: name_id.map(text),
        name_id_format: name_id.and_then(|n| n.get_property_no_ns("Format")),
        name_qualifiers: (
            name_id.and_then(|n| n.get_property_no_ns("NameQualifier")),
            name_id.and_then(|n| n.get_property_no_ns("SPNameQualifier")),
        ),
        session_index: authn.and_then(|a| a.get_property_no_ns("SessionIndex")),
        session_not_on_or_after: authn
            .map(|a| time(a, "SessionNotOnOrAfter"))
            .transpose()?
            .flatten()
            .map(|t| t.timestamp_millis()),
        attributes: attributes(assertion),
        valid_until: valid_until.timestamp_millis(),
        assertion_signed: false,
    })
}
fn time(node: RoNode, attr: &str) -> Result<Option<DateTime<Utc>>, Rejection> {
    node.get_property_no_ns(attr)
        .map(|v| {
            DateTime::parse_from_rfc3339(v.trim())
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| {
                    Rejection::new(
                        Reason::Malformed,
                        format!("{attr} of <{}> is not a time: {v:?}", node.get_name()),
                    )
                })
        })
        .transpose()
}

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Issued recently enough: `IssueInstant` plus the allowed delay is not in the past, and it is
/// not later than now beyond the skew (an instant in the future would stay fresh for as long,
/// longer than the replay cache keeps its ID when no NotOnOrAfter bounds it).
fn fresh(node: RoNode, expected: &Expected) -> Result<(), Rejection> {
    let issued = time(node, "IssueInstant")?.ok_or_else(|| {
        Rejection::new(
            Reason::Malformed,
            format!("<{}> has no IssueInstant", node.get_name()),
        )
    })?;
    if issued - expected.skew > expected.now {
        return Err(Rejection::new(
            Reason::NotYetValid,
            format!(
                "<{}> was issued at {}, later than now",
                node.get_name(),
                stamp(issued)
            ),
        ));
    }
    if issued + expected.max_issue_delay < expected.now {
        return Err(Rejection::new(
            Reason::Expired,
            format!(
                "<{}> was issued at {}, longer ago than allowed",
                node.get_name(),
                stamp(issued)
            ),
        ));
    }
    Ok(())
}

fn issuer_matches(node: RoNode, expected: &Expected, required: bool) -> Result<(), Rejection> {
    match child(node, ASSERTION, "Issuer").map(text) {
        Some(issuer) if issuer == expected.idp_entity_id => Ok(()),
        None if !required => Ok(()),
        came => Err(Rejection::new(
            Reason::WrongIssuer,
            format!("expected issuer {}, {came:?} came", expected.idp_entity_id),
        )),
    }
}

fn check_response(response: RoNode, expected: &Expected) -> Result<(), Rejection> {
    // The Response is signed here, so its Destination is required to be this ACS.
    let destination = response.get_property_no_ns("Destination");
    if destination.as_deref() != Some(expected.acs_url) {
        return Err(Rejection::new(
            Reason::WrongDestination,
            format!("expected {}, {destination:?} came", expected.acs_url),
        ));
    }
    answers(response, expected, "the Response")?;
    fresh(response, expected)?;
    issuer_matches(response, expected, false)?;
    let status = child(response, PROTOCOL, "Status")
        .and_then(|s| child(s, PROTOCOL, "StatusCode"))
        .and_then(|c| c.get_property_no_ns("Value"));
    if let Some(status) = status.filter(|s| s != SUCCESS) {
        return Err(Rejection::new(
            Reason::StatusNotSuccess,
            format!("expected {SUCCESS}, {status} came"),
        ));
    }
    Ok(())
}

/// Checks the assertion; returns until when it is valid (skew included), for the replay cache.
fn check_assertion(assertion: RoNode, expected: &Expected) -> Result<DateTime<Utc>, Rejection> {
    fresh(assertion, expected)?;
    issuer_matches(assertion, expected, true)?;
    let conditions = child(assertion, ASSERTION, "Conditions");
    let mut until = expected.now + Duration::minutes(5);
    if let Some(conditions) = conditions {
        if let Some(nb) = time(conditions, "NotBefore")?
            && expected.now < nb - expected.skew
        {
            return Err(Rejection::new(
                Reason::NotYetValid,
                format!("valid from {}", stamp(nb)),
            ));
        }
        if let Some(noa) = time(conditions, "NotOnOrAfter")? {
            if noa + expected.skew < expected.now {
                return Err(Rejection::new(
                    Reason::Expired,
                    format!("valid until {}", stamp(noa)),
                ));
            }
            until = noa;
        }
    }
    // An audience is required (the SAML profile makes it optional; an assertion without one
    // could be replayed to any SP that trusts this IdP). Each AudienceRestriction is a condition
    // of its own that must hold (SAML Core 2.5.1.4: its audiences are alternatives, several
    // restrictions all apply), so every one of them must name this SP.
    let restrictions: Vec<Vec<String>> = conditions
        .into_iter()
        .flat_map(|c| children(c, ASSERTION, "AudienceRestriction"))
        .map(|r| {
            children(r, ASSERTION, "Audience")
                .into_iter()
                .map(text)
                .collect()
        })
        .collect();
    let ours = |audiences: &Vec<String>| audiences.iter().any(|a| a == expected.sp_entity_id);
    if restrictions.is_empty() || !restrictions.iter().all(ours) {
        let audiences = restrictions.concat();
        return Err(Rejection::new(
            Reason::WrongAudience,
            format!(
                "expected audience {}, {audiences:?} came",
                expected.sp_entity_id
            ),
        ));
    }
    check_confirmation(assertion, expected)?;
    Ok(until + expected.skew)
}

/// At least one bearer SubjectConfirmation whose data is in its window, names this ACS and
/// answers this browser's request (an unsolicited response's: none).
fn check_confirmation(assertion: RoNode, expected: &Expected) -> Result<(), Rejection> {
    let bearer: Vec<RoNode> = child(assertion, ASSERTION, "Subject")
        .into_iter()
        .flat_map(|s| children(s, ASSERTION, "SubjectConfirmation"))
        .filter(|c| c.get_property_no_ns("Method").as_deref() == Some(BEARER))
        .collect();
    let mut first_error = None;
    for confirmation in bearer {
        match confirmation_holds(confirmation, expected) {
            Ok(()) => return Ok(()),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Err(first_error.unwrap_or_else(|| {
        Rejection::new(Reason::WrongRecipient, "no bearer SubjectConfirmation came")
    }))
}

fn confirmation_holds(confirmation: RoNode, expected: &Expected) -> Result<(), Rejection> {
    let data = child(confirmation, ASSERTION, "SubjectConfirmationData").ok_or_else(|| {
        Rejection::new(
            Reason::WrongRecipient,
            "the SubjectConfirmation has no data",
        )
    })?;
    if let Some(nb) = time(data, "NotBefore")?
        && expected.now < nb - expected.skew
    {
        return Err(Rejection::new(
            Reason::NotYetValid,
            format!("the subject is confirmed from {}", stamp(nb)),
        ));
    }
    match time(data, "NotOnOrAfter")? {
        Some(noa) if noa + expected.skew < expected.now => {
            return Err(Rejection::new(
                Reason::Expired,
                format!("the subject was confirmed until {}", stamp(noa)),
            ));
        }
        Some(_) => {}
        None => {
            return Err(Rejection::new(
                Reason::Expired,
                "the SubjectConfirmationData has no NotOnOrAfter",
            ));
        }
    }
    let recipient = data.get_property_no_ns("Recipient");
    if recipient.as_deref() != Some(expected.acs_url) {
        return Err(Rejection::new(
            Reason::WrongRecipient,
            format!(
                "expected recipient {}, {recipient:?} came",
                expected.acs_url
            ),
        ));
    }
    answers(data, expected, "the assertion")
}

/// The signed `InResponseTo` of `node` (the Response, or a SubjectConfirmationData): one of this
/// browser's requests, or none at all for an unsolicited response. A response that answers a
/// request belongs to the browser that started it; taken as IdP-initiated, whoever holds it
/// would sign in without that browser (SAML Profiles 4.1.5: an unsolicited response carries no
/// InResponseTo).
fn answers(node: RoNode, expected: &Expected, what: &str) -> Result<(), Rejection> {
    let irt = node.get_property_no_ns("InResponseTo");
    let (holds, instead) = match expected.request_ids {
        Some(ids) => (
            irt.as_deref().is_some_and(|i| ids.contains(&i)),
            "not this browser's request",
        ),
        None => (irt.is_none(), "but it came as IdP-initiated"),
    };
    if holds {
        return Ok(());
    }
    Err(Rejection::new(
        Reason::UnknownRequest,
        format!("{what} answers {irt:?}, {instead}"),
    ))
}

/// Every attribute by Name with its values' text (an element value: the text inside it).
fn attributes(assertion: RoNode) -> Vec<(String, Vec<String>)> {
    children(assertion, ASSERTION, "AttributeStatement")
        .into_iter()
        .flat_map(|s| children(s, ASSERTION, "Attribute"))
        .map(|attribute| {
            (
                attribute.get_property_no_ns("Name").unwrap_or_default(),
                children(attribute, ASSERTION, "AttributeValue")
                    .into_iter()
                    .map(text)
                    .collect(),
            )
        })
        .collect()
}
