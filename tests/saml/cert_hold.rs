//! A certificate change found by a metadata refresh is held for an admin's approval (emailed,
//! shown on the SSO page with approve and reject, audited) unless the new metadata is signed
//! by a key the connection already trusts; until approved, the old certificate stays in force.

use std::sync::{Arc, Mutex};

use super::*;
use common::{idp_answers, post_form};
use nulab_pass::saml::mock_idp::metadata_with_certs;

/// An organization `corp` whose connection reads its metadata from a URL on loopback.
struct Rollover {
    server: TestServer,
    admin: reqwest::Client,
    token: String,
    idp: MockIdp,
    served: Arc<Mutex<String>>,
    connection: Value,
}

impl Rollover {
    async fn start(backend: Backend) -> Rollover {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let idp = MockIdp::generate(&format!("{base}/metadata"), &format!("{base}/sso")).unwrap();
        let served = Arc::new(Mutex::new(idp.metadata_xml()));
        let shared = served.clone();
        let app = axum::Router::new().route(
            "/metadata",
            axum::routing::get(move || {
                let xml = shared.lock().unwrap().clone();
                async move { xml }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        // Development mode fetches metadata from loopback.
        let server = TestServer::start_with(backend, |c| c.dev = true).await;
        let admin = server.account("admin@corp.test", "Admin", PASSWORD).await;
        let org = server.org("corp", &admin).await;
        server.verified_domain(&org, "corp.test").await;
        server.seats(&org, 10).await;
        let token = server.token(&org).await;
        let http = server.client();
        new_managed(&server, "corp", &token, "mia@corp.test", "Mia").await;
        let (status, connection) = api(
            &http,
            Method::POST,
            server.url("/api/v1/orgs/corp/saml-connections"),
            &token,
            Some(json!({"metadata_url": format!("{base}/metadata")})),
        )
        .await;
        assert_eq!(status, 201, "{connection}");
        let admin = server.signed_in("admin@corp.test", PASSWORD).await;
        Rollover {
            server,
            admin,
            token,
            idp,
            served,
            connection,
        }
    }

    fn id(&self) -> &str {
        self.connection["id"].as_str().unwrap()
    }

    /// The IdP publishes `xml`; a day later the job refreshes it.
    async fn publish_and_refresh(&self, xml: String) {
        *self.served.lock().unwrap() = xml;
        self.server.state.clock.advance_ms(25 * 3600 * 1000);
        nulab_pass::saml::jobs::pass(&self.server.state)
            .await
            .unwrap();
    }

    /// The fingerprints of the certificates the connection trusts now.
    async fn trusted(&self) -> Vec<String> {
        let url = self
            .server
            .url(&format!("/api/v1/orgs/corp/saml-connections/{}", self.id()));
        let (_, view) = api(&self.server.client(), Method::GET, url, &self.token, None).await;
        let mut all: Vec<String> = view["certificates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["fingerprint"].as_str().unwrap().to_string())
            .collect();
        all.sort();
        all
    }

    /// Whether Mia's sign-in through a response signed by `signer` succeeds.
    async fn signs_in_with(&self, signer: &MockIdp) -> bool {
        let browser = self.server.client();
        let res = browser
            .get(self.connection["login_url"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        let to_idp = res.headers()["location"].to_str().unwrap().to_string();
        let res = idp_answers(&browser, &to_idp, signer, &self.connection, "mia@corp.test").await;
        res.status() == 303
    }

    async fn sso_page(&self) -> String {
        self.admin
            .get(self.server.url("/admin/corp/sso"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    async fn decide(&self, what: &str) -> reqwest::Response {
        let page = self.server.url("/admin/corp/sso");
        let action = self.server.url(&format!(
            "/admin/corp/sso/{}/certificates/{what}",
            self.id()
        ));
        post_form(&self.admin, &page, &action, &[]).await
    }

    async fn events(&self, action: &str) -> usize {
        self.server
            .rows(&format!(
                "SELECT id FROM audit_events WHERE action = '{action}'"
            ))
            .await
            .len()
    }

    async fn approval_mails(&self) -> usize {
        self.server
            .rows("SELECT id FROM outbox WHERE subject LIKE '%waits for your approval%'")
            .await
            .len()
    }
}

fn fingerprint(idp: &MockIdp) -> String {
    nulab_pass::saml::metadata::certificate(&idp.cert_base64())
        .unwrap()
        .fingerprint
}

/// Metadata listing `certs`, enveloped-signed over the whole EntityDescriptor by `signer`.
fn signed_metadata(signer: &MockIdp, entity: &str, sso: &str, certs: &[String]) -> String {
    let xml = metadata_with_certs(entity, sso, certs, false).replacen(
        "<md:EntityDescriptor ",
        "<md:EntityDescriptor ID=\"_metadata\" ",
        1,
    );
    let open_end = xml.find("<md:IDPSSODescriptor").unwrap();
    let with_template = format!(
        "{}{}{}",
        &xml[..open_end],
        signer.signature_template("_metadata", Algorithm::RsaSha256),
        &xml[open_end..]
    );
    signer.sign(&with_template).unwrap()
}

async fn held_until_approved(backend: Backend) {
    let r = Rollover::start(backend).await;
    let (entity, sso) = (r.idp.entity_id.clone(), r.idp.sso_url.clone());
    let old = fingerprint(&r.idp);
    assert_eq!(r.trusted().await, vec![old.clone()]);

    // Someone replaces the published metadata with a key of theirs, unsigned: held, the old
    // certificate stays in force, the admins are emailed and the page offers the decision.
    let intruder = MockIdp::generate(&entity, &sso).unwrap();
    r.publish_and_refresh(metadata_with_certs(
        &entity,
        &sso,
        &[intruder.cert_base64()],
        false,
    ))
    .await;
    assert_eq!(r.trusted().await, vec![old.clone()]);
    assert_eq!(r.events("saml_connection.certificates_held").await, 1);
    assert_eq!(r.events("saml_connection.certificates_changed").await, 0);
    assert_eq!(r.approval_mails().await, 1);
    r.server
        .last_mail("admin@corp.test", "saml_connection.notice")
        .await;
    let page = r.sso_page().await;
    assert!(
        page.contains(&format!("certificate-change-{}", r.id())),
        "the page shows the held change"
    );
    assert!(
        page.contains(&fingerprint(&intruder))
            && page.contains("/certificates/approve")
            && page.contains("/certificates/reject")
    );
    assert!(
        !r.signs_in_with(&intruder).await,
        "the held key signs nobody in"
    );
    assert!(r.signs_in_with(&r.idp).await, "the old key still works");

    // The same change found again is not raised again.
    r.publish_and_refresh(metadata_with_certs(
        &entity,
        &sso,
        &[intruder.cert_base64()],
        false,
    ))
    .await;
    assert_eq!(
        (
            r.events("saml_connection.certificates_held").await,
            r.approval_mails().await
        ),
        (1, 1)
    );

    // Rejected: audited, the page no longer offers it, a refresh does not raise it again, and a
    // second decision finds nothing (409) and changes nothing.
    let res = r.decide("reject").await;
    assert_eq!(res.status(), 303);
    assert_eq!(r.events("saml_connection.certificates_rejected").await, 1);
    assert!(!r.sso_page().await.contains("/certificates/approve"));
    r.publish_and_refresh(metadata_with_certs(
        &entity,
        &sso,
        &[intruder.cert_base64()],
        false,
    ))
    .await;
    assert_eq!(r.events("saml_connection.certificates_held").await, 1);
    let events = r.server.count("audit_events").await;
    for what in ["approve", "reject"] {
        let res = r.decide(what).await;
        assert_eq!(res.status(), 409, "{what} with nothing held");
        assert!(res.text().await.unwrap().contains("no certificate change"));
    }
    assert_eq!(r.server.count("audit_events").await, events);
    assert_eq!(r.trusted().await, vec![old.clone()]);
    assert!(!r.signs_in_with(&intruder).await);

    // The IdP's admins roll the key without signing the metadata: held, then approved.
    let rolled = MockIdp::generate(&entity, &sso).unwrap();
    r.publish_and_refresh(metadata_with_certs(
        &entity,
        &sso,
        &[r.idp.cert_base64(), rolled.cert_base64()],
        false,
    ))
    .await;
    assert_eq!(r.events("saml_connection.certificates_held").await, 2);
    assert!(!r.signs_in_with(&rolled).await);
    let res = r.decide("approve").await;
    assert_eq!(res.status(), 303);
    assert_eq!(r.events("saml_connection.certificates_approved").await, 1);
    let mut both = vec![old.clone(), fingerprint(&rolled)];
    both.sort();
    assert_eq!(r.trusted().await, both);
    assert!(r.signs_in_with(&rolled).await, "the approved key signs in");

    // Metadata signed by a key the connection trusts applies at once, without a hold.
    let next = MockIdp::generate(&entity, &sso).unwrap();
    r.publish_and_refresh(signed_metadata(
        &rolled,
        &entity,
        &sso,
        &[rolled.cert_base64(), next.cert_base64()],
    ))
    .await;
    let mut now_trusted = vec![fingerprint(&rolled), fingerprint(&next)];
    now_trusted.sort();
    assert_eq!(r.trusted().await, now_trusted);
    assert_eq!(r.events("saml_connection.certificates_changed").await, 1);
    assert_eq!(r.events("saml_connection.certificates_held").await, 2);
    assert!(r.signs_in_with(&next).await);
    assert!(
        !r.signs_in_with(&r.idp).await,
        "the key left out is no longer trusted"
    );

    // Signed, but by a key it does not trust (the intruder's own): held.
    r.publish_and_refresh(signed_metadata(
        &intruder,
        &entity,
        &sso,
        &[intruder.cert_base64()],
    ))
    .await;
    assert_eq!(r.trusted().await, now_trusted);
    assert_eq!(r.events("saml_connection.certificates_held").await, 3);
    assert!(!r.signs_in_with(&intruder).await);
}
both!(
    certificate_changes_are_held_for_approval,
    held_until_approved
);
