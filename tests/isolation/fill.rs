//! How each route of the router is filled with organization B's things, and what kind of
//! guard it has. A route this file does not know fails the test with its name: add it here,
//! saying what protects it.

use serde_json::json;

use super::world::World;
use crate::common::routes::Route;

/// What guards a route.
pub enum Kind {
    /// An organization's admin page or API operation (`{org}` in its path).
    Admin,
    /// The signed-in account's own action on something named by id (an invitation, a
    /// membership): only its own things are found.
    Own,
    /// The signed-in account's own page, without an id: it shows nothing of anyone else.
    Mine,
    /// Keyed by a secret in the path (an emailed link): a wrong secret finds nothing.
    Secret,
    /// No organization's data behind it, or only what is public by design; the reason says why.
    Open(&'static str),
}

/// A route filled in: its kind, its path with B's slug and B's ids, and (for an admin route
/// with ids) the path with A's slug and B's ids.
pub struct Target {
    pub kind: Kind,
    pub in_b: String,
    pub in_a_with_b_ids: Option<String>,
}

/// The form a page POST sends (beside its CSRF header), for the same reason as `json_body`.
pub fn form_body(route: &Route) -> Vec<(&'static str, &'static str)> {
    match route.path.as_str() {
        "/admin/{org}/sso/{id}/settings" => vec![
            ("name", "Renamed"),
            ("email_attribute", "email"),
            ("clock_skew_seconds", "60"),
        ],
        _ => vec![("name", "x"), ("role", "member")],
    }
}

/// The JSON body an API operation with an id gets: one its handler reads past, so that it
/// reaches the lookup of the thing named (a body it refuses first would prove nothing).
pub fn json_body(route: &Route) -> serde_json::Value {
    match (route.method.as_str(), route.path.as_str()) {
        ("PATCH", "/api/v1/orgs/{org}/members/{account_id}") => json!({"role": "member"}),
        ("PATCH", "/api/v1/orgs/{org}/managed-accounts/{id}") => json!({"name": "Renamed"}),
        ("PATCH", "/api/v1/orgs/{org}/saml-connections/{id}") => json!({"name": "Renamed"}),
        _ => json!({}),
    }
}

/// Routes with nothing of an organization to guard, each with the reason.
fn open(method: &str, path: &str) -> Option<&'static str> {
    Some(match (method, path) {
        (_, "/" | "/healthz" | "/readyz") => "no organization's data",
        (_, "/static" | "/static/" | "/static/{*__private__axum_nest_tail_param}") => {
            "static files"
        }
        (_, "/favicon.ico") => "the site icon",
        (_, "/api/v1/openapi.json") => "the public API description",
        (_, "/api/{*rest}") => "the API's 404 for unknown paths",
        (_, "/.well-known/openid-configuration" | "/oauth/jwks") => {
            "OpenID Connect discovery and public keys"
        }
        (
            _,
            "/oauth/authorize"
            | "/oauth/authorize/resume"
            | "/oauth/token"
            | "/oauth/userinfo"
            | "/oauth/logout"
            | "/oauth/logout/confirm",
        ) => {
            "products' OpenID Connect endpoints: the client, its secret and the signed-in account decide"
        }
        (
            _,
            "/signin"
            | "/signin/identify"
            | "/signin/two-step"
            | "/signup"
            | "/signout"
            | "/verify-email"
            | "/password/set"
            | "/account/email-change-report",
        ) => "signing in, up and out (link tokens travel in the query)",
        ("POST", "/account" | "/account/two-step" | "/account/password" | "/account/email")
        | ("POST", "/account/two-step/remove" | "/account/resend-verification") => {
            "changes the signed-in account's own settings"
        }
        (_, "/orgs/new") => "creates an organization of one's own",
        (
            _,
            "/sso/{id}/login" | "/sso/{id}/acs" | "/sso/{id}/metadata" | "/sso/{id}/slo"
            | "/sso/{id}/continue",
        ) => {
            "an SSO connection's public endpoints (its id is in the IdP's configuration and the SP \
             metadata): the IdP's signed messages and the browser's binding cookies decide"
        }
        _ => return None,
    })
}

pub async fn target(w: &World, route: &Route) -> Target {
    let path = route.path.as_str();
    if let Some(reason) = open(&route.method, path) {
        return Target {
            kind: Kind::Open(reason),
            in_b: path.to_string(),
            in_a_with_b_ids: None,
        };
    }
    let kind = if path.starts_with("/admin/{org}") || path.starts_with("/api/v1/orgs/{org}") {
        Kind::Admin
    } else if path.starts_with("/account/") && path.contains('{') {
        Kind::Own
    } else if path.starts_with("/account") && route.method == "GET" {
        Kind::Mine
    } else if path.starts_with("/invitations/{token}") || path.starts_with("/migration/{token}") {
        Kind::Secret
    } else {
        panic!(
            "{} {path}: the isolation test does not know this route; add it to \
             tests/isolation/fill.rs with what guards it",
            route.method
        )
    };
    if path.contains("/webhook") {
        w.webhook().await;
    }
    let segments: Vec<&str> = path.split('/').collect();
    let mut in_b = Vec::new();
    let mut has_ids = false;
    for (i, segment) in segments.iter().enumerate() {
        let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) else {
            in_b.push(segment.to_string());
            continue;
        };
        let value = match name {
            "org" => "bravo".to_string(),
            "token" => "np-not-a-link-token".to_string(),
            "action" => action(segments[i - 2], route, path),
            _ => {
                has_ids = true;
                resource(w, segments[i - 1], route).await
            }
        };
        in_b.push(value);
    }
    let in_b = in_b.join("/");
    let in_a_with_b_ids =
        (matches!(kind, Kind::Admin) && has_ids).then(|| in_b.replacen("/bravo", "/alpha", 1));
    Target {
        kind,
        in_b,
        in_a_with_b_ids,
    }
}

/// The action segment: one that exists for that kind of thing.
fn action(kind: &str, route: &Route, path: &str) -> String {
    match kind {
        "managed-accounts" => "suspend",
        "migrations" => "resend",
        _ => panic!("{} {path}: which action of {kind}?", route.method),
    }
    .to_string()
}

/// A fresh thing of B named by the segment before the id.
async fn resource(w: &World, kind: &str, route: &Route) -> String {
    match kind {
        "api-tokens" => w.api_token().await,
        "domains" => w.domain().await,
        "members" => w.member().await,
        "managed-accounts" => w.managed().await,
        "invitations" => w.invitation().await,
        "migrations" => w.migration().await,
        "sso" | "saml-connections" => w.connection().await,
        "events" | "audit-events" => w.event().await,
        "invoices" => w.invoice.clone(),
        _ => panic!(
            "{} {}: the isolation test cannot fill an id after `{kind}`; add it to \
             tests/isolation/fill.rs",
            route.method, route.path
        ),
    }
}
