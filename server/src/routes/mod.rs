//! HTTP routes, a module per resource.

pub mod admin;
pub mod auth;
pub mod backup;
pub mod hazards;
pub mod health;
pub mod metrics;
pub mod photos;
pub mod records;
pub mod recovery;
pub mod reviews;
pub mod schedule;
pub mod sites;
pub mod sync;
pub mod uploads;

/// The query string as `T`; one that does not fit is a 400 `invalid_query`.
fn query_params<T: serde::de::DeserializeOwned>(req: &actix_web::HttpRequest) -> Result<T, crate::error::ApiError> {
    actix_web::web::Query::<T>::from_query(req.query_string())
        .map(actix_web::web::Query::into_inner)
        .map_err(|e| crate::error::ApiError::bad("invalid_query", e.to_string(), None))
}

/// No route matched: a documented path with another method is 405 with
/// `Allow`, anything else 404. The app's default service, and each resource's
/// (actix would answer an unmatched method there with an empty 405).
pub async fn no_route(req: actix_web::HttpRequest) -> Result<actix_web::HttpResponse, crate::error::ApiError> {
    match crate::openapi::allowed_methods(req.path()) {
        Some(allow) => Err(crate::error::ApiError::MethodNotAllowed { allow }),
        None => Err(crate::error::ApiError::NotFound),
    }
}
