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
