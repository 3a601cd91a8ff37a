//! The `Operation` the server layer puts in scope for code that reads it (the SQL pool's N+1
//! detector): only once `Operation::enable` was called, so services without such code do not pay
//! for it. Own process: `enable` is process-wide.

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::Request;
use http_body_util::BodyExt;
use orderscope_context::Operation;
use orderscope_tower::ServerLayer;
use tower::ServiceExt;

/// The handler answers with the name of the operation in scope.
async fn operation() -> String {
    Operation::with_current(|op| op.name().to_owned()).unwrap_or_else(|| "none".to_owned())
}

fn answer(runtime: &tokio::runtime::Runtime, app: &Router) -> String {
    runtime.block_on(async {
        let request = Request::get("/orders/7").body(Body::empty()).unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(body.to_vec()).unwrap()
    })
}

#[test]
fn an_operation_is_in_scope_once_enabled() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let app = Router::new()
        .route("/orders/{id}", get(operation))
        .layer(ServerLayer::new());

    assert!(!Operation::is_enabled());
    assert_eq!(answer(&runtime, &app), "none");

    Operation::enable();
    assert!(Operation::is_enabled());
    assert_eq!(answer(&runtime, &app), "GET /orders/{id}");
    // The same layer, a later request: still there.
    assert_eq!(answer(&runtime, &app), "GET /orders/{id}");
}
