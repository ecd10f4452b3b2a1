//! Attribute mapping per connection through the running server: presets and attribute names
//! set by the API (bad values refused with nothing changed), and the "test connection" page
//! showing every attribute redacted beyond its first characters with what it is used for, and
//! the mapped display name kept on the account at sign-in (audited once per change).

use nulab_pass::mock_idp::EMAIL_CLAIM;
use serde_json::{Value, json};

use super::{PASSWORD, sso};
use crate::both;
use crate::common::{Backend, api};

const GIVEN: &str = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname";
const SURNAME: &str = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname";

async fn connection(s: &super::Sso) -> Value {
    let (status, body) = api(
        &s.server.client(),
        reqwest::Method::GET,
        s.server
            .url(&format!("/api/v1/orgs/corp/saml-connections/{}", s.id())),
        &s.token,
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn presets(backend: Backend) {
    let s = sso(backend).await;
    let (status, body) = s.patch(json!({"attribute_preset": "entra"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["email_attribute"], EMAIL_CLAIM);
    assert_eq!(body["given_name_attribute"], GIVEN);
    assert_eq!(body["family_name_attribute"], SURNAME);
    assert_eq!(
        body["name_attribute"],
        "http://schemas.microsoft.com/identity/claims/displayname"
    );
    // A field given beside the preset wins.
    let (status, body) = s
        .patch(json!({"attribute_preset": "okta", "email_attribute": "mail"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["email_attribute"], "mail");
    assert_eq!(body["given_name_attribute"], "firstName");
    assert_eq!(body["name_attribute"], Value::Null);

    let before = connection(&s).await;
    for (bad, fragment) in [
        (
            json!({"attribute_preset": "ping"}),
            "unknown attribute preset",
        ),
        (
            json!({"name_attribute": "x".repeat(257)}),
            "name attribute name is too long",
        ),
        (
            json!({"attribute_preset": "entra", "given_name_attribute": "y".repeat(300)}),
            "given name attribute name is too long",
        ),
    ] {
        let (status, body) = s.patch(bad).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"], "invalid_setting");
        assert!(
            body["message"].as_str().unwrap().contains(fragment),
            "{body}"
        );
        assert_eq!(connection(&s).await, before, "nothing changed");
    }
}
both!(attribute_presets_are_applied_and_bad_names_refused, presets);

async fn test_page(backend: Backend) {
    let s = sso(backend).await;
    assert_eq!(s.patch(json!({"attribute_preset": "entra"})).await.0, 200);
    let admin = s.server.signed_in("admin@corp.test", PASSWORD).await;
    let res = s
        .test_sign_in(&admin, |spec| {
            // Entra's shape: an opaque NameID, the email and names in claims.
            spec.name_id = Some("a1b2c3d4-opaque".into());
            spec.attributes = vec![
                (EMAIL_CLAIM.into(), vec!["mia@corp.test".into()]),
                (GIVEN.into(), vec!["Mirella".into()]),
                (SURNAME.into(), vec!["Rossi".into()]),
            ];
        })
        .await;
    assert_eq!(res.status(), 200);
    let page = res.text().await.unwrap();
    assert!(page.contains("The sign-in works"), "{page}");
    assert!(page.contains(&format!("attribute {EMAIL_CLAIM}")));
    assert!(page.contains("mia… (13 characters) (used for the email)"));
    assert!(page.contains("Mir… (7 characters) (used for the given name)"));
    assert!(page.contains("Ros… (5 characters) (used for the family name)"));
    assert!(page.contains("Mir… (13 characters)"), "the display name");
    assert!(
        !page.contains("Mirella") && !page.contains("Rossi"),
        "values are redacted"
    );
}
both!(
    the_test_page_shows_attributes_redacted_and_what_each_is_used_for,
    test_page
);

async fn name_sync(backend: Backend) {
    let s = sso(backend).await;
    assert_eq!(s.patch(json!({"attribute_preset": "entra"})).await.0, 200);
    let entra = |given: String| {
        move |spec: &mut nulab_pass::mock_idp::ResponseSpec| {
            spec.attributes = vec![
                (EMAIL_CLAIM.into(), vec!["mia@corp.test".into()]),
                (GIVEN.into(), vec![given]),
                (SURNAME.into(), vec!["Rossi".into()]),
            ];
        }
    };
    let name = || async {
        let row: (String,) =
            sqlx::query_as("SELECT name FROM accounts WHERE email_norm = 'mia@corp.test'")
                .fetch_one(s.server.db().pool())
                .await
                .unwrap();
        row.0
    };
    assert_eq!(name().await, "Mia");
    let (browser, res) = s.attempt("mia@corp.test", entra("Mirella".into())).await;
    assert_eq!(res.status(), 303);
    assert!(s.signed_in_as(&browser).await.is_some());
    assert_eq!(name().await, "Mirella Rossi", "the IdP's name is kept");
    let renames = || async {
        s.server
            .audit_actions(50)
            .await
            .iter()
            .filter(|a| *a == "managed_account.renamed")
            .count()
    };
    assert_eq!(renames().await, 1);
    // The same name again changes nothing and writes no event.
    let (_, res) = s.attempt("mia@corp.test", entra("Mirella".into())).await;
    assert_eq!(res.status(), 303);
    assert_eq!(renames().await, 1);
    // A value that is not a valid name (over 200 characters) is not taken.
    let (_, res) = s.attempt("mia@corp.test", entra("M".repeat(200))).await;
    assert_eq!(res.status(), 303);
    assert_eq!(name().await, "Mirella Rossi");
    assert_eq!(renames().await, 1);
}
both!(the_mapped_display_name_is_kept_on_sign_in, name_sync);
