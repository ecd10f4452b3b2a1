//! Certificate changes found by a metadata refresh. Whoever can alter the metadata at its URL or
//! on its way could otherwise make this service trust a key of theirs and sign in as any
//! managed account; so a change applies at once only when the new metadata is signed by a key
//! the connection already trusts (an IdP rolling its key signs the new metadata with the old
//! one), and is otherwise held for an admin: emailed, shown on the SSO page with approve and
//! reject, audited. Until it is approved the connection keeps its certificates.

use super::metadata::{self, Certificate, IdpMetadata};
use super::{Connection, SamlError, store};
use crate::audit::{AuditAction, Target};
use crate::db::Tx;
use crate::ids::SamlConnectionId;
use crate::orgs::AdminScope;

/// A held change, as the SSO page shows it.
#[derive(Clone, Debug)]
pub struct Hold {
    pub connection_id: SamlConnectionId,
    /// The certificates of the held metadata.
    pub certificates: Vec<Certificate>,
    /// `false`: an admin rejected it (kept so that the same change is not raised again).
    pub pending: bool,
    pub found_at: i64,
}

/// The fingerprints of `certs`, sorted: their order in the metadata means nothing.
pub fn fingerprints(certs: &[Certificate]) -> Vec<String> {
    let mut all: Vec<String> = certs.iter().map(|c| c.fingerprint.clone()).collect();
    all.sort();
    all.dedup();
    all
}

/// The new metadata, read from its signed content only, when it is signed over the whole
/// EntityDescriptor and every signature verifies with a certificate the connection trusts now.
pub fn signed_by_trusted(xml: &str, connection: &Connection) -> Option<IdpMetadata> {
    let signed = super::acs::verify_signed_metadata(xml, connection).ok()?;
    let meta = metadata::parse(&signed, Some(&connection.idp_entity_id)).ok()?;
    // A signature over a part of the document would leave the certificates outside it unsigned.
    (fingerprints(&meta.certificates)
        == fingerprints(
            &metadata::parse(xml, Some(&connection.idp_entity_id))
                .ok()?
                .certificates,
        ))
    .then_some(meta)
}

/// Holds `xml` for `connection`; returns whether it is news (not the change already held or
/// already rejected), which the caller audits and emails.
pub async fn hold(
    tx: &mut Tx,
    connection: &Connection,
    xml: &str,
    certs: &[Certificate],
    now: i64,
) -> Result<bool, sqlx::Error> {
    if let Some(existing) = store::hold_of(&mut **tx, connection.id).await?
        && fingerprints(&existing.certificates) == fingerprints(certs)
    {
        return Ok(false);
    }
    store::put_hold(tx, connection, xml, certs, now).await?;
    Ok(true)
}

/// An admin approves the held change: the held metadata applies (the connection's
/// certificates become the new ones). Decided once: a parallel decision finds nothing held.
pub async fn approve(
    tx: &mut Tx,
    now: i64,
    scope: &AdminScope,
    id: SamlConnectionId,
) -> Result<Connection, SamlError> {
    let mut connection = super::get(tx, scope.org().id, id).await?;
    let xml = store::take_pending_hold(tx, id)
        .await?
        .ok_or(SamlError::NothingHeld)?;
    let meta = metadata::parse(&xml, Some(&connection.idp_entity_id))?;
    let from = fingerprints(&connection.certificates);
    super::apply_metadata(&mut connection, meta, xml, now);
    connection.updated_at = now;
    store::update(tx, &connection).await?;
    let to = fingerprints(&connection.certificates);
    scope
        .audit(
            tx,
            now,
            AuditAction::SamlCertificatesApproved,
            target(id),
            serde_json::json!({ "from": from, "to": to }),
        )
        .await?;
    Ok(connection)
}

/// An admin rejects the held change: the connection keeps its certificates, and the same
/// change found again is not raised again.
pub async fn reject(
    tx: &mut Tx,
    now: i64,
    scope: &AdminScope,
    id: SamlConnectionId,
) -> Result<(), SamlError> {
    let connection = super::get(tx, scope.org().id, id).await?;
    let rejected = store::reject_pending_hold(tx, id, now)
        .await?
        .ok_or(SamlError::NothingHeld)?;
    scope
        .audit(
            tx,
            now,
            AuditAction::SamlCertificatesRejected,
            target(id),
            serde_json::json!({
                "kept": fingerprints(&connection.certificates),
                "rejected": fingerprints(&rejected),
            }),
        )
        .await?;
    Ok(())
}

fn target(id: SamlConnectionId) -> Target {
    Target {
        kind: "saml_connection",
        id: id.to_string(),
    }
}
