//! `grpc.health.v1.Health/Check` answered on the CRI socket.
//!
//! Input: a `HealthCheckRequest` (one gRPC message: `string service = 1`).
//! Output: `HealthCheckResponse { status: SERVING }` for the empty service
//! name and the CRI services pullgate fronts, `NOT_FOUND` for any other
//! name, `UNIMPLEMENTED` for `Watch`. SERVING means pullgate accepts and
//! decides requests; it does not probe containerd (a probe that restarts
//! pullgate because containerd is down would only add churn).
//!
//! Answered by hand rather than with `tonic-health`: the CRI socket is a
//! plain hyper HTTP/2 server routing on the path, not a tonic `Router`, and
//! the whole protocol is one two-byte message.
//! Protocol: <https://github.com/grpc/grpc/blob/master/doc/health-checking.md>

use super::passthrough::CallBody;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::StreamBody;
use hyper::body::Frame;
use prost::Message;
use tonic::{Code, Status};

use super::grpc::{frame, unframe};
use super::passthrough::{boxed, ProxyBody};
use super::status;

/// gRPC path of `Health/Check`.
pub(crate) const CHECK_PATH: &str = "/grpc.health.v1.Health/Check";
/// gRPC path of `Health/Watch` (not supported).
pub(crate) const WATCH_PATH: &str = "/grpc.health.v1.Health/Watch";

/// Largest health request read.
pub(crate) const MAX_REQUEST_BYTES: usize = 4096;

/// Service names answered SERVING.
const SERVICES: [&str; 3] = ["", "runtime.v1.ImageService", "runtime.v1.RuntimeService"];

#[derive(Clone, PartialEq, prost::Message)]
struct HealthCheckRequest {
    #[prost(string, tag = "1")]
    service: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct HealthCheckResponse {
    /// `SERVING = 1`.
    #[prost(int32, tag = "1")]
    status: i32,
}

const SERVING: i32 = 1;

/// Answers one `Check` or `Watch` call.
pub(crate) async fn answer(req: Request<CallBody>) -> Response<ProxyBody> {
    if req.uri().path() == WATCH_PATH {
        return status::response(Status::new(
            Code::Unimplemented,
            "pullgate answers grpc.health.v1.Health/Check only",
        ));
    }
    let body = match super::grpc::read_body(req.into_body(), MAX_REQUEST_BYTES).await {
        Ok(b) => b,
        Err(_) => return status::response(Status::invalid_argument("health request unreadable")),
    };
    let request = match unframe(body)
        .ok()
        .and_then(|m| HealthCheckRequest::decode(m).ok())
    {
        Some(r) => r,
        None => return status::response(Status::invalid_argument("malformed health request")),
    };
    if !SERVICES.contains(&request.service.as_str()) {
        return status::response(Status::not_found(format!(
            "unknown service {:?}",
            request.service
        )));
    }
    let message = HealthCheckResponse { status: SERVING }.encode_to_vec();
    grpc_ok(frame(&message))
}

/// A unary gRPC OK response carrying one framed message.
pub(crate) fn grpc_ok(framed: Bytes) -> Response<ProxyBody> {
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    let frames = [
        Ok::<_, std::convert::Infallible>(Frame::data(framed)),
        Ok(Frame::trailers(trailers)),
    ];
    let mut resp = Response::new(boxed(StreamBody::new(futures_util::stream::iter(frames))));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serving_is_field_one_value_one() {
        assert_eq!(
            HealthCheckResponse { status: SERVING }.encode_to_vec(),
            [0x08, 0x01]
        );
    }
}
