//! What anyone can send without harming the server: made-up methods and paths do not grow the
//! metrics, public routes ignore keys, and bad input answers 4xx at once.

use reqwest::{Method, StatusCode};

use crate::helpers::spawn_app;

#[tokio::test]
async fn made_up_methods_and_paths_do_not_grow_the_metrics() {
    let app = spawn_app().await;
    let mut sent = Vec::new();
    for i in 0..5 {
        let method = format!("M{i:06}XB");
        let path = format!("/no-such-route-{i}");
        for target in ["/healthz", path.as_str()] {
            let response = app
                .client
                .request(
                    Method::from_bytes(method.as_bytes()).unwrap(),
                    app.url(target),
                )
                .send()
                .await
                .unwrap();
            assert!(response.status().is_client_error(), "{method} {target}");
        }
        let response = app.client.get(app.url(&path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        sent.push(method);
        sent.push(path);
    }
    let metrics = app.metrics().await;
    for made_up in &sent {
        assert!(
            !metrics.contains(made_up.as_str()),
            "{made_up} in:\n{metrics}"
        );
    }
    for expected in [
        "tenantry_http_requests_total{method=\"other\",route=\"/healthz\",status=\"405\"}",
        "tenantry_http_requests_total{method=\"other\",route=\"unmatched\",status=\"404\"}",
        "tenantry_http_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"}",
    ] {
        assert!(
            metrics.contains(expected),
            "{expected} missing from:\n{metrics}"
        );
    }
}

#[tokio::test]
async fn public_routes_ignore_an_unknown_key() {
    let app = spawn_app().await;
    // Ready once the NATS connection (made in the background at start) is up.
    app.ready().await;
    for path in ["/healthz", "/readyz", "/metrics"] {
        for key in ["sk_live_nonsense", "pk_widget_nonsense", "whatever"] {
            let response = app
                .client
                .get(app.url(path))
                .bearer_auth(key)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{path} with {key}");
        }
    }
    // A keyed route still refuses the same key.
    let response = app
        .client
        .get(app.url("/v1/organizations"))
        .bearer_auth("sk_live_nonsense")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_position_never_issued_is_400_at_once() {
    let app = spawn_app().await;
    let response = app.create_organization("tokens").await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let position = response.headers()["x-tenantry-position"]
        .to_str()
        .unwrap()
        .to_owned();
    let created: serde_json::Value = response.json().await.unwrap();
    let path = format!("/v1/organizations/{}", created["id"].as_str().unwrap());
    let (transaction, _) = position.split_once('-').unwrap();
    for made_up in [
        "99999999999-1".to_owned(),
        format!("{transaction}-99999999999"),
    ] {
        let started = std::time::Instant::now();
        let response = app
            .admin(Method::GET, &path)
            .header("X-Tenantry-Min-Position", &made_up)
            .send()
            .await
            .unwrap();
        let elapsed = started.elapsed();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{made_up}");
        let problem: serde_json::Value = response.json().await.unwrap();
        assert_eq!(problem["type"], "urn:tenantry:problem:invalid-position");
        assert!(
            elapsed < std::time::Duration::from_secs(1),
            "{made_up} took {elapsed:?}"
        );
    }
    for issued in [position.as_str(), "0-0", "1-1"] {
        let response = app
            .admin(Method::GET, &path)
            .header("X-Tenantry-Min-Position", issued)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{issued}");
    }
}

#[tokio::test]
async fn a_suspend_reason_is_validated_like_every_text_field() {
    let app = spawn_app().await;
    let response = app.create_organization("reasoned").await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let created: serde_json::Value = response.json().await.unwrap();
    let path = format!(
        "/v1/organizations/{}/suspend",
        created["id"].as_str().unwrap()
    );
    for (reason, why) in [
        ("unpaid\u{0}".to_owned(), "NUL"),
        ("x".repeat(500_000), "length"),
        ("   ".to_owned(), "blank"),
    ] {
        let response = app
            .admin(Method::POST, &path)
            .json(&serde_json::json!({ "reason": reason }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{why}");
        let problem: serde_json::Value = response.json().await.unwrap();
        assert_eq!(problem["type"], "urn:tenantry:problem:validation", "{why}");
        assert_eq!(problem["field"], "reason", "{why}");
    }
    let response = app
        .admin(Method::POST, &path)
        .json(&serde_json::json!({ "reason": "  unpaid invoices  " }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let suspended: serde_json::Value = response.json().await.unwrap();
    assert_eq!(suspended["status"], "suspended");
}
