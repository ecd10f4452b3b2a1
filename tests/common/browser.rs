//! Headless Chromium driven over the W3C WebDriver protocol (chromedriver), with a small client
//! built on reqwest: enough to open pages, fill forms, click, read the page and take screenshots.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::process::{Child, Command};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Runs axe-core and answers the serious and critical violations, one line each.
const AXE_RUN: &str = "const done = arguments[arguments.length - 1];
axe.run(document, { resultTypes: ['violations'] }).then(function (r) {
  done(r.violations.filter(function (v) { return v.impact === 'serious' || v.impact === 'critical'; })
    .map(function (v) { return v.id + ' (' + v.impact + '): ' + v.help + ' at ' +
      v.nodes.map(function (n) { return n.target.join(' '); }).join(', '); }));
}, function (e) { done(['axe failed: ' + e]); });";

/// A running chromedriver with one browser session.
pub struct Browser {
    driver: Child,
    http: reqwest::Client,
    session: String,
    base: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver on a free loopback port and a headless Chromium session.
    pub async fn start() -> Browser {
        let port = super::steady_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver (Debian package chromium-driver) must be installed: scripts/setup.sh --test");
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        for _ in 0..100 {
            if http.get(format!("{base}/status")).send().await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL"}, "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--disable-quic", "--no-first-run", "--window-size=1280,900",
                     format!("--user-data-dir={}", profile.path().display())]
        }}}});
        let reply: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = reply["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {reply}"))
            .to_string();
        Browser {
            driver,
            http,
            session,
            base,
            _profile: profile,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut req = self.http.request(method, url);
        req = req.json(&body.unwrap_or_else(|| json!({})));
        let reply: Value = req.send().await.unwrap().json().await.unwrap();
        if reply["value"].get("error").is_some() {
            panic!("webdriver {path}: {}", reply["value"]);
        }
        reply["value"].clone()
    }

    pub async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    pub async fn current_url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap()
            .to_string()
    }

    pub async fn source(&self) -> String {
        self.call(reqwest::Method::GET, "/source", None)
            .await
            .as_str()
            .unwrap()
            .to_string()
    }

    async fn find(&self, css: &str) -> String {
        let found = self
            .call(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        found[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {found}"))
            .to_string()
    }

    /// Types into the element matching `css` (after clearing it).
    pub async fn fill(&self, css: &str, text: &str) {
        let id = self.find(css).await;
        self.call(reqwest::Method::POST, &format!("/element/{id}/clear"), None)
            .await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    /// Clicks the element matching `css` where no page follows (a checkbox).
    pub async fn tick(&self, css: &str) {
        let id = self.find(css).await;
        self.call(reqwest::Method::POST, &format!("/element/{id}/click"), None)
            .await;
    }

    /// Clicks the element matching `css` and waits until the next page has loaded: a marker set
    /// on the old document is gone and the new one is complete.
    pub async fn click(&self, css: &str) {
        let id = self.find(css).await;
        self.script("window.__nulabPassOldPage = true; return null")
            .await;
        self.call(reqwest::Method::POST, &format!("/element/{id}/click"), None)
            .await;
        for _ in 0..200 {
            let done = self.script("return window.__nulabPassOldPage === undefined && document.readyState === 'complete'").await;
            if done == Value::Bool(true) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("no new page after clicking {css}");
    }

    /// Runs JavaScript in the page and returns its result.
    pub async fn script(&self, js: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": js, "args": []})),
        )
        .await
    }

    /// Saves a PNG screenshot (for people to look at; tests do not compare pixels).
    pub async fn screenshot(&self, path: &std::path::Path) {
        use base64::Engine;
        let png = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    /// Sets the browser window's outer size in CSS pixels (screenshots take the viewport's).
    pub async fn set_window_size(&self, width: u32, height: u32) {
        self.call(
            reqwest::Method::POST,
            "/window/rect",
            Some(json!({ "width": width, "height": height })),
        )
        .await;
    }

    /// The browser console's errors (level SEVERE: script errors, refused resources, CSP
    /// violations) since the last call; reading them empties the log.
    pub async fn console_errors(&self) -> Vec<String> {
        let entries = self
            .call(
                reqwest::Method::POST,
                "/se/log",
                Some(json!({ "type": "browser" })),
            )
            .await;
        entries
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["level"] == "SEVERE")
            .map(|e| e["message"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// Runs axe-core (installed by `scripts/setup.sh --test` into `tests/axe`) on the page and
    /// returns its violations of `serious` or `critical` impact, each as "rule: target, ...".
    pub async fn axe_serious_violations(&self) -> Vec<String> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/axe/node_modules/axe-core/axe.min.js"
        );
        let source = std::fs::read_to_string(path)
            .unwrap_or_else(|_| panic!("{path} is missing: run scripts/setup.sh --test"));
        self.script(&format!("{source}\n;return null")).await;
        let found = self
            .call(
                reqwest::Method::POST,
                "/execute/async",
                Some(json!({"script": AXE_RUN, "args": []})),
            )
            .await;
        found
            .as_array()
            .unwrap_or_else(|| panic!("axe answered {found}"))
            .iter()
            .map(|v| v.as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// Saves a PNG of the whole page: the window grows to the page's height first (up to 6000
    /// pixels) and is put back after.
    pub async fn full_screenshot(&self, path: &std::path::Path, width: u32, height: u32) {
        let full = self
            .script("return Math.ceil(document.documentElement.scrollHeight)")
            .await
            .as_u64()
            .unwrap_or(u64::from(height));
        let full = u32::try_from(full).unwrap_or(height).clamp(height, 6000);
        self.set_window_size(width, full).await;
        self.screenshot(path).await;
        self.set_window_size(width, height).await;
    }

    /// Waits until the page's source holds `text`; returns the source.
    pub async fn wait_for_text(&self, text: &str) -> String {
        let mut page = String::new();
        for _ in 0..100 {
            page = self.source().await;
            if page.contains(text) {
                return page;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no {text:?} on the page: {page}");
    }

    /// Waits until the browser is at a URL starting with `prefix`; returns the URL.
    pub async fn wait_for_url(&self, prefix: &str) -> String {
        let mut at = String::new();
        for _ in 0..200 {
            at = self.current_url().await;
            if at.starts_with(prefix) {
                return at;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the browser is at {at}, not {prefix}");
    }

    /// Signs in at nulab-pass `base` on the sign-in page's password form (a Nulab account on a
    /// domain that signs in through an IdP would be sent there by the identifier-first page).
    pub async fn sign_in_with_password(&self, base: &str, email: &str, password: &str) {
        self.goto(&format!("{base}/signin?with=password")).await;
        self.fill("input[name=email]", email).await;
        self.fill("input[name=password]", password).await;
        self.click("form[action='/signin'] button[type=submit]")
            .await;
        self.wait_for_text(email).await;
    }

    /// From the home page of the demo product at `product` through nulab-pass's sign-in page at
    /// `base` and the mock IdP at `idp` back to the product, as `email`; waits until the product
    /// shows who is signed in.
    pub async fn sso_into_product(&self, product: &str, base: &str, idp: &str, email: &str) {
        self.goto(product).await;
        self.click("#sign-in").await;
        self.wait_for_url(&format!("{base}/signin")).await;
        self.identify_at_idp(idp, email).await;
        self.wait_for_url(&format!("{product}/")).await;
        self.wait_for_text("claim-sub").await;
    }

    /// On nulab-pass's sign-in page: enters `email`, is sent to the mock IdP at `idp`, finds
    /// its form already filled with `email` (the `login_hint`) and signs in there (what
    /// nulab-pass answers is up to the caller to wait for).
    pub async fn identify_at_idp(&self, idp: &str, email: &str) {
        self.fill("input[name=identifier]", email).await;
        self.click("form[action='/signin/identify'] button[type=submit]")
            .await;
        self.wait_for_url(&format!("{idp}/sso?")).await;
        let filled = self
            .script("return document.querySelector('input[name=email]').value")
            .await;
        assert_eq!(
            filled.as_str(),
            Some(email),
            "the IdP's form holds the email"
        );
        self.click("#sign-in").await;
    }

    /// The text of the demo product's row for `claim` (`sub`, `email`, `org`, `amr`).
    pub async fn product_claim(&self, claim: &str) -> String {
        let js = format!("return document.getElementById('claim-{claim}').textContent");
        self.script(&js).await.as_str().unwrap().to_string()
    }

    pub async fn quit(mut self) {
        let _ = self
            .http
            .delete(format!("{}/session/{}", self.base, self.session))
            .send()
            .await;
        let _ = self.driver.kill().await;
    }
}
