//! Each server instance keeps SAML connections parsed in memory, per version: a change written
//! by another instance (here straight to the row, with no word to this one) raises the version
//! and counts at the very next response.

use serde_json::json;

use super::sso;
use crate::both;
use crate::common::Backend;

async fn changed_elsewhere(backend: Backend) {
    let s = sso(backend).await;
    assert_eq!(s.patch(json!({"allow_idp_initiated": true})).await.0, 200);
    let unsolicited = || s.unsolicited("mia@corp.test");
    let browser = s.server.client();
    let res = s.post(&browser, &unsolicited(), "", None).await;
    assert_eq!(
        res.status(),
        303,
        "parked: the connection allows IdP-initiated sign-in"
    );
    let version = || async {
        s.server
            .rows(&format!(
                "SELECT CAST(version AS TEXT) FROM saml_connections WHERE id = '{}'",
                s.id()
            ))
            .await
    };
    let before = version().await;

    sqlx::query("UPDATE saml_connections SET allow_idp_initiated = 0 WHERE id = $1")
        .bind(s.id())
        .execute(s.server.db().pool())
        .await
        .unwrap();
    let after = version().await;
    assert_eq!(
        after[0].parse::<i64>().unwrap(),
        before[0].parse::<i64>().unwrap() + 1
    );
    let other = s.server.client();
    let res = s.post(&other, &unsolicited(), "", None).await;
    s.assert_refused(&other, res, 403, "unsolicited_response")
        .await;
}
both!(
    a_connection_changed_by_another_instance_counts_at_once,
    changed_elsewhere
);
