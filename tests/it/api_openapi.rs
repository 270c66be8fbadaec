//! `docs/openapi.json` and the router are built from the same route table: every route and
//! method of the table is in the document and vice versa, and every route of the table is
//! really routed (neither 404 `not_found` nor 405).

use std::collections::BTreeSet;

use axum::http::Method;
use hookstream_server::api::ROUTES;
use serde_json::Value;

use crate::support::{self, request, TOKEN};

fn document() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json");
    let text = std::fs::read_to_string(path).expect("docs/openapi.json");
    serde_json::from_str(&text).expect("docs/openapi.json is JSON")
}

#[test]
fn openapi_document_lists_exactly_the_routes_of_the_router() {
    let doc = document();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "post", "put", "patch", "delete", "head", "options"]
                .contains(&method.as_str())
            {
                documented.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    let routed: BTreeSet<(String, String)> =
        ROUTES.iter().map(|r| (r.method.to_owned(), r.path.to_owned())).collect();
    let missing: Vec<_> = routed.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&routed).collect();
    assert!(missing.is_empty(), "routes missing from docs/openapi.json: {missing:?}");
    assert!(extra.is_empty(), "docs/openapi.json documents unknown routes: {extra:?}");
}

#[tokio::test]
async fn every_route_of_the_table_is_routed() {
    let app = support::demo_server();
    let id = uuid::Uuid::new_v4().to_string();
    for route in ROUTES {
        let path = route.path.replace("{id}", &id).replace("{kickoff_id}", &id);
        let method = Method::from_bytes(route.method.as_bytes()).unwrap();
        let answer = app.send(request(method, &path, Some(TOKEN), None)).await;
        assert_ne!(
            answer.body["error"], "not_found",
            "{} {} is not routed",
            route.method, route.path
        );
        assert_ne!(answer.status.as_u16(), 405, "{} {}", route.method, route.path);
        assert_ne!(answer.status.as_u16(), 500, "{} {}", route.method, route.path);
    }
}
