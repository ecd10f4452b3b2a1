//! Every route of the real router, read from the router itself, so a list built from it cannot
//! go stale: a route added anywhere shows up here without anyone remembering to list it.
//!
//! axum keeps no public route list; its `Debug` output names each route's path (the path
//! router's `node`) and the methods it answers (each method router's `allow_header`). The
//! parser fails loudly if that shape ever changes (an axum upgrade), never silently.

use std::collections::BTreeMap;

/// One route: its path template (`/admin/{org}/domains/{id}/verify`) and a method (`GET`,
/// `POST`, ...; `ANY` for a service or an `any(..)` handler). `HEAD` is left out: axum answers
/// it with the `GET` handler.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Route {
    pub method: String,
    pub path: String,
}

/// Every route of `router` (the application's, built by `nulab_pass::app`), sorted.
pub fn of(router: &axum::Router) -> Vec<Route> {
    let text = format!("{router:?}");
    let start = text
        .find("path_router: PathRouter { routes: {")
        .expect("axum's Router Debug names its path router");
    let end = text[start..]
        .find("fallback_router:")
        .map(|i| start + i)
        .expect("axum's Router Debug names its fallback router");
    let own = &text[start..end];
    let split = own
        .find("node: Node { paths: {")
        .expect("axum's path router Debug names its paths");
    let methods = by_route_id(&own[..split], |chunk| {
        match chunk.split_once("allow_header: Bytes(b\"") {
            Some((_, rest)) => rest[..rest.find('"').expect("end of methods")].to_string(),
            None => "ANY".to_string(),
        }
    });
    let paths = by_route_id(&own[split..], |chunk| {
        let rest = &chunk[chunk.find('"').expect("a quoted path") + 1..];
        rest[..rest.find('"').expect("end of path")].to_string()
    });
    assert_eq!(
        methods.keys().collect::<Vec<_>>(),
        paths.keys().collect::<Vec<_>>(),
        "every route id has a path and a method router"
    );
    let mut routes = Vec::new();
    for (id, path) in paths {
        for method in methods[&id].split(',').filter(|m| *m != "HEAD") {
            routes.push(Route {
                method: method.to_string(),
                path: path.clone(),
            });
        }
    }
    routes.sort();
    assert!(routes.len() > 50, "too few routes read: {routes:?}");
    routes
}

/// Splits a `{RouteId(n): value, ...}` rendering into `n → read(value's text)`.
fn by_route_id(text: &str, read: impl Fn(&str) -> String) -> BTreeMap<u32, String> {
    let mut out = BTreeMap::new();
    for chunk in text.split("RouteId(").skip(1) {
        let (number, rest) = chunk.split_once(')').expect("RouteId(n)");
        let id: u32 = number.trim().parse().expect("a route id number");
        out.insert(id, read(rest));
    }
    out
}
