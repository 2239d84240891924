//! A keep-alive front for moto (benchmarks), which can also refuse chosen requests (tests that
//! need an AWS service to fail at one precise call).

/// A keep-alive front for moto. moto's server closes every connection after one response, so a
/// function would pay a TCP connect per AWS call that it never pays in AWS, whose endpoints keep
/// connections alive. This front keeps the subject's connections open and forwards each request
/// to moto as it is; both subjects go through it, and its own CPU is not theirs.
pub struct KeepAliveFront {
    /// Where the front listens.
    pub url: String,
}

impl KeepAliveFront {
    /// Starts a front that forwards to `upstream` (e.g. `http://127.0.0.1:5050`).
    pub async fn start(upstream: &str) -> Self {
        Self::refusing(upstream, |_, _| false).await
    }

    /// As `start`, but answers a request for which `refuse(headers, body)` holds with a KMS
    /// internal error (HTTP 500, `KMSInternalException`) instead of forwarding it.
    pub async fn refusing(
        upstream: &str,
        refuse: impl Fn(&axum::http::HeaderMap, &[u8]) -> bool + Send + Sync + 'static,
    ) -> Self {
        let refuse = std::sync::Arc::new(refuse);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the keep-alive front");
        let url = format!("http://{}", listener.local_addr().expect("its address"));
        let upstream = upstream.to_owned();
        let client = reqwest::Client::new();
        let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
            let (client, upstream, refuse) = (client.clone(), upstream.clone(), refuse.clone());
            async move {
                let (parts, body) = req.into_parts();
                let body = axum::body::to_bytes(body, usize::MAX)
                    .await
                    .unwrap_or_default();
                if refuse(&parts.headers, &body) {
                    return axum::response::Response::builder()
                        .status(500)
                        .header("content-type", "application/x-amz-json-1.1")
                        .body(axum::body::Body::from(
                            r#"{"__type":"KMSInternalException","message":"refused by the test's front"}"#,
                        ))
                        .expect("a fixed response");
                }
                let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
                let mut headers = parts.headers;
                headers.remove(axum::http::header::HOST);
                headers.remove(axum::http::header::CONNECTION);
                let answer = client
                    .request(parts.method, format!("{upstream}{path}"))
                    .headers(headers)
                    .body(body)
                    .send()
                    .await
                    .expect("moto answers the keep-alive front");
                let mut out = axum::response::Response::builder().status(answer.status());
                for (name, value) in answer.headers() {
                    if !matches!(
                        name.as_str(),
                        "connection" | "content-length" | "transfer-encoding"
                    ) {
                        out = out.header(name, value);
                    }
                }
                let bytes = answer.bytes().await.unwrap_or_default();
                out.body(axum::body::Body::from(bytes))
                    .expect("a response from moto's parts")
            }
        });
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url }
    }
}
