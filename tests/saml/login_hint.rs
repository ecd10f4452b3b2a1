//! The email a user types on the sign-in page travels to the IdP as `login_hint`, so the IdP's
//! form is filled with it: through the identify step, the connection's login URL and the
//! redirect to the IdP, into the mock IdP's page. A hint that is not an email goes nowhere, and
//! the hint grants nothing: who signs in is what the signed assertion says.

use super::*;
use common::{csrf_of, page_text};

/// Where `url` redirects to (a `303`/`302`/`307`), as an absolute or local URL.
async fn redirect(browser: &reqwest::Client, url: &str) -> String {
    let res = browser.get(url).send().await.unwrap();
    assert!(res.status().is_redirection(), "{url}: {}", res.status());
    res.headers()["location"].to_str().unwrap().to_string()
}

fn query_value(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The mock IdP's sign-in page for the redirect URL `at_idp`, served by its real router.
async fn idp_page(idp: &MockIdp, at_idp: &str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let router = nulab_pass::saml::mock_idp_server::router(Arc::new(idp.clone()));
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let query = url::Url::parse(at_idp)
        .unwrap()
        .query()
        .unwrap()
        .to_string();
    page_text(
        &reqwest::Client::new(),
        &format!("http://127.0.0.1:{port}/sso?{query}"),
    )
    .await
}

async fn hint(backend: Backend) {
    let s = sso(backend).await;
    let browser = s.server.client();
    let csrf = csrf_of(&browser, &s.server.url("/signin")).await;
    let res = browser
        .post(s.server.url("/signin/identify"))
        .form(&[("csrf", csrf.as_str()), ("identifier", " Mia@Corp.test ")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let login = res.headers()["location"].to_str().unwrap().to_string();
    let login = s.server.url(login.trim_start_matches(&s.server.base));
    assert_eq!(
        query_value(&login, "login_hint").as_deref(),
        Some("mia@corp.test"),
        "{login}"
    );
    let at_idp = redirect(&browser, &login).await;
    assert!(
        at_idp.starts_with(&format!("{IDP_SSO}?SAMLRequest=")),
        "{at_idp}"
    );
    assert_eq!(
        query_value(&at_idp, "login_hint").as_deref(),
        Some("mia@corp.test")
    );
    let page = idp_page(&s.idp, &at_idp).await;
    assert!(
        page.contains(r#"name="email" value="mia@corp.test""#),
        "{page}"
    );

    // Not an email: the IdP gets no hint. Its page escapes whatever it is given.
    for hostile in ["\"><script>alert(1)</script>", "mia@corp.test&x=1\n", ""] {
        let encoded: String = url::form_urlencoded::byte_serialize(hostile.as_bytes()).collect();
        let login = s
            .server
            .url(&format!("/sso/{}/login?login_hint={encoded}", s.id()));
        let at_idp = redirect(&browser, &login).await;
        assert_eq!(query_value(&at_idp, "login_hint"), None, "{hostile:?}");
        let page = idp_page(&s.idp, &format!("{at_idp}&login_hint={encoded}")).await;
        assert!(!page.contains("<script>"), "{page}");
    }

    // The hint grants nothing: the IdP answers for another user of the domain, and that user is
    // who signs in.
    new_managed(&s.server, "corp", &s.token, "noa@corp.test", "Noa").await;
    let hinted = s
        .server
        .url(&format!("/sso/{}/login?login_hint=mia%40corp.test", s.id()));
    let at_idp = redirect(&browser, &hinted).await;
    let request = nulab_pass::saml::mock_idp_server::read_request(
        &query_value(&at_idp, "SAMLRequest").unwrap(),
    )
    .unwrap();
    let relay = query_value(&at_idp, "RelayState").unwrap();
    let response = s
        .idp
        .response_b64(&ResponseSpec::new(
            "noa@corp.test",
            &s.acs(),
            &s.audience(),
            Some(&request.id),
        ))
        .unwrap();
    let res = browser
        .post(s.acs())
        .form(&[("SAMLResponse", response.as_str()), ("RelayState", &relay)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303, "{}", res.text().await.unwrap());
    let account = page_text(&browser, &s.server.url("/account")).await;
    assert!(account.contains("noa@corp.test"), "{account}");
    assert!(!account.contains("mia@corp.test"), "{account}");
}
both!(the_typed_email_fills_the_idp_form, hint);
