//! Portal's webhook routes on the API: the secret check and the HTTP glue around `custody`.

use http::HeaderMap;

use crate::ports::custody::CustodianStore;
use crate::ports::envelope::Envelope;
use crate::workflow::custody::{CustodyService, Hook, HookAnswer};

/// An API Gateway request routed to a webhook.
#[derive(Debug)]
pub struct HttpCall<'a> {
    /// The HTTP method.
    pub method: &'a http::Method,
    /// The request headers (the secret is among them).
    pub headers: &'a HeaderMap,
    /// The body, as API Gateway passed it.
    pub body: Option<zeroize::Zeroizing<String>>,
    /// Whether API Gateway base64-encoded the body.
    pub base64_encoded: bool,
}

/// Serves a webhook behind API Gateway: 404 when no secret is configured (the routes are off),
/// 401 before anything else is looked at, then 405, then the hook.
pub(crate) async fn serve_http<E, S>(
    custody: &CustodyService<E, S>,
    ctx: crate::entry::Ctx<'_>,
    hook: Hook,
    call: HttpCall<'_>,
) -> crate::entry::http::HttpAnswer
where
    E: Envelope,
    S: CustodianStore,
{
    use crate::entry::http::HttpAnswer;
    let Some(secret) = ctx.webhook_secret.filter(|_| custody.enabled()) else {
        return HttpAnswer::error(404, "NOT_FOUND", "no such route".into());
    };
    let answer = if !secret.admits(call.headers) {
        tracing::warn!(?hook, "webhook call refused: wrong or missing secret");
        HookAnswer::unauthorized()
    } else if *call.method != http::Method::POST {
        let mut answer = HttpAnswer::error(405, "METHOD_NOT_ALLOWED", "use POST".into());
        answer.headers.push((http::header::ALLOW, "POST".into()));
        return answer;
    } else {
        let bytes = match crate::entry::http::decode_body(call.body, call.base64_encoded) {
            Ok(bytes) => bytes,
            Err(answer) => return answer,
        };
        match custody.serve(secret, hook, call.headers, &bytes).await {
            Some(answer) => answer,
            None => return HttpAnswer::error(404, "NOT_FOUND", "no such route".into()),
        }
    };
    HttpAnswer {
        status: answer.status,
        body: answer.body,
        headers: Vec::new(),
    }
}
