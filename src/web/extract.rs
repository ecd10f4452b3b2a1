//! Extractors that prove nothing about the caller: where the request came from, the path's
//! organization slug, and bodies whose rejections are readable. The extractors that carry
//! authorization live beside what they prove: `accounts::session::SignedIn`,
//! `orgs::extract::OrgAdmin`, `api_tokens::extract::ApiAdmin`.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use super::error::{ApiError, AppError};
use crate::audit::RequestMeta;

/// Where the request came from, for audit events.
pub struct ClientMeta(pub RequestMeta);

impl<S: Send + Sync> FromRequestParts<S> for ClientMeta {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientMeta(meta_of(parts)))
    }
}

pub fn meta_of(parts: &Parts) -> RequestMeta {
    let ip = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip().to_string());
    let user_agent = parts
        .headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(400).collect());
    RequestMeta { ip, user_agent }
}

/// The path's `{org}` slug.
pub async fn org_slug<S: Send + Sync>(parts: &mut Parts, state: &S) -> Option<String> {
    let Path(params) = Path::<HashMap<String, String>>::from_request_parts(parts, state)
        .await
        .ok()?;
    params.get("org").cloned()
}

/// A urlencoded form whose rejection is a readable 400 page.
pub struct PageForm<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for PageForm<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        axum::Form::<T>::from_request(req, state)
            .await
            .map(|axum::Form(v)| PageForm(v))
            .map_err(|rejection| match rejection.status() {
                StatusCode::PAYLOAD_TOO_LARGE => AppError::client(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    "the request is too large",
                ),
                _ => AppError::bad_request(
                    "The form was incomplete or malformed. Go back and fill in every field.",
                ),
            })
    }
}

/// The UTF-8 text of the file a page uploads as the multipart field `file` (a CSV file); every
/// rejection is a readable 400 (or 413) page.
pub struct UploadedText(pub String);

impl<S: Send + Sync> FromRequest<S> for UploadedText {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let malformed = || AppError::bad_request("the upload is malformed; choose the file again");
        let mut multipart = axum::extract::Multipart::from_request(req, state)
            .await
            .map_err(|_| malformed())?;
        let mut text = None;
        while let Some(field) = multipart.next_field().await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                AppError::client(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    "the file is too large",
                )
            } else {
                malformed()
            }
        })? {
            if field.name() == Some("file") {
                let bytes = field.bytes().await.map_err(|_| malformed())?;
                text = Some(
                    String::from_utf8(bytes.to_vec())
                        .map_err(|_| AppError::bad_request("the file must be UTF-8 text"))?,
                );
            }
        }
        text.map(UploadedText)
            .ok_or_else(|| AppError::bad_request("choose a file to upload"))
    }
}

/// A JSON body whose rejection is a JSON 400 (or 413) error.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        axum::Json::<T>::from_request(req, state)
            .await
            .map(|axum::Json(v)| ApiJson(v))
            .map_err(|rejection| {
                let status = rejection.status();
                let err = if status == StatusCode::PAYLOAD_TOO_LARGE {
                    AppError::client(status, "too_large", "the request body is too large")
                } else {
                    AppError::client(
                        StatusCode::BAD_REQUEST,
                        "invalid_body",
                        rejection.body_text(),
                    )
                };
                ApiError(err)
            })
    }
}
