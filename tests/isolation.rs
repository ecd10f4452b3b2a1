//! Tenant isolation, proven for every route: the routes are read from the real router (and the
//! API's operations from its OpenAPI document), so a route added anywhere is covered without
//! anyone remembering; each must be filled by `fill::target` (a route it does not know fails
//! the test). For every route of an organization, an admin session and an API token of
//! organization A get 403 or 404 for organization B's resources (under B's slug, and under A's
//! own slug with B's ids), nothing of B in the answer and nothing changed; B's plain member
//! and B's managed account get no admin access; and B's own admin passes the same request
//! (the control that shows the request was filled right).

mod common;
#[path = "isolation/fill.rs"]
mod fill;
#[path = "isolation/world.rs"]
mod world;

use common::Backend;
use common::routes::Route;
use fill::{Kind, Target};
use world::World;

/// Statuses that refuse without saying whether the thing exists.
const REFUSED: [u16; 3] = [401, 403, 404];

async fn every_route(backend: Backend) {
    let w = World::build(backend).await;
    let routes = common::routes::of(&nulab_pass::app(w.server.state.clone()));
    api_routes_match_the_document(&w, &routes).await;
    let mut checked = 0;
    for route in &routes {
        let target = fill::target(&w, route).await;
        match target.kind {
            Kind::Open(reason) => {
                // An organization's path is never open, whatever the reason given.
                assert!(!route.path.contains("{org}"), "{}: {reason}", route.path);
                continue;
            }
            Kind::Mine => mine(&w, route, &target).await,
            Kind::Secret => secret(&w, route, &target).await,
            Kind::Own => own(&w, route, &target).await,
            Kind::Admin => admin(&w, route, &target).await,
        }
        checked += 1;
    }
    assert!(checked >= 80, "only {checked} routes checked");
}
both!(every_route_is_isolated_between_organizations, every_route);

/// The API routes the router serves are exactly the operations of the OpenAPI document (so
/// walking the router also walks the document).
async fn api_routes_match_the_document(w: &World, routes: &[Route]) {
    let doc = w.server.openapi().await;
    let mut documented: Vec<Route> = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().unwrap().keys() {
            documented.push(Route {
                method: method.to_uppercase(),
                path: path.clone(),
            });
        }
    }
    documented.sort();
    let served: Vec<Route> = routes
        .iter()
        .filter(|r| r.path.starts_with("/api/v1/orgs/"))
        .cloned()
        .collect();
    assert_eq!(
        served, documented,
        "the router and the OpenAPI document differ"
    );
}

/// An organization's admin page or API operation.
async fn admin(w: &World, route: &Route, t: &Target) {
    let api = route.path.starts_with("/api/");
    let (a, ours) = if api {
        (w.a_token(), w.b_token())
    } else {
        (w.a_admin(), w.b_admin())
    };
    w.refused(a, route, &t.in_b, "A's admin in B").await;
    if let Some(cross) = &t.in_a_with_b_ids {
        w.refused(a, route, cross, "A's admin with B's ids").await;
    }
    if !api {
        w.refused(w.b_member(), route, &t.in_b, "B's member").await;
        w.refused(w.b_managed(), route, &t.in_b, "B's managed account")
            .await;
    }
    let status = w.send(ours, route, &t.in_b).await.0;
    assert!(
        !REFUSED.contains(&status),
        "{} {}: B's own admin gets {status}: the route is not filled right",
        route.method,
        t.in_b
    );
}

/// A route of the signed-in account's own things that names another organization's (an
/// invitation, a membership): A's admin gets nothing of B's and changes nothing.
async fn own(w: &World, route: &Route, t: &Target) {
    w.refused(w.a_admin(), route, &t.in_b, "A's admin on B's things")
        .await;
}

/// A route keyed by a secret in its path (an emailed link): a wrong secret finds nothing.
async fn secret(w: &World, route: &Route, t: &Target) {
    let a = w.a_admin();
    let before = w.snapshot().await;
    let (status, body) = w.send(a, route, &t.in_b).await;
    assert!(
        (400..500).contains(&status),
        "{} {}: {status}",
        route.method,
        t.in_b
    );
    w.assert_nothing_of_b(route, &body);
    assert_eq!(w.snapshot().await, before, "{} {}", route.method, t.in_b);
}

/// A page of the signed-in account itself (no id in its path): A's admin sees nothing of B.
async fn mine(w: &World, route: &Route, t: &Target) {
    let (status, body) = w.send(w.a_admin(), route, &t.in_b).await;
    assert_eq!(status, 200, "{} {}", route.method, t.in_b);
    w.assert_nothing_of_b(route, &body);
}
