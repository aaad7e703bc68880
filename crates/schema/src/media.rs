//! Media types of GraphQL over HTTP: which POST bodies are executed, and
//! which response type a client's `Accept` header prefers.

use axum::http::{HeaderMap, HeaderValue, header};

/// The response media types the server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseMedia {
    /// `application/graphql-response+json`: HTTP statuses tell request
    /// errors (4xx, no `data`) from executed operations (200).
    GraphqlResponse,
    /// `application/json`: 200 for every GraphQL answer, as older clients
    /// expect.
    Json,
}

impl ResponseMedia {
    /// The type the client prefers: the higher quality, then the more
    /// specific range; with equal standing an explicit
    /// `application/graphql-response+json` wins, while a wildcard gets
    /// `application/json`. No `Accept` (or an empty one) means
    /// `application/json`; None when the client accepts neither.
    pub fn negotiate(headers: &HeaderMap) -> Option<Self> {
        let accept: Vec<&str> = headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .collect();
        let accept = accept.join(",");
        if accept.trim().is_empty() {
            return Some(Self::Json);
        }
        let ranges: Vec<MediaRange<'_>> = accept.split(',').filter_map(MediaRange::parse).collect();
        let graphql = standing(&ranges, "graphql-response+json");
        let json = standing(&ranges, "json");
        match (graphql, json) {
            (None, None) => None,
            (Some(_), None) => Some(Self::GraphqlResponse),
            (None, Some(_)) => Some(Self::Json),
            (Some(graphql), Some(json)) if graphql > json => Some(Self::GraphqlResponse),
            (Some(graphql), Some(json)) if graphql == json && graphql.specificity == Specificity::Exact => {
                Some(Self::GraphqlResponse)
            }
            _ => Some(Self::Json),
        }
    }

    /// The `Content-Type` of an answer.
    pub fn content_type(self) -> HeaderValue {
        match self {
            Self::GraphqlResponse => HeaderValue::from_static("application/graphql-response+json; charset=utf-8"),
            Self::Json => HeaderValue::from_static("application/json"),
        }
    }
}

/// How closely a range names a type; more specific ranges override less
/// specific ones (RFC 9110, 12.5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Specificity {
    Any,
    Type,
    Exact,
}

/// The quality (in thousandths) and specificity of the range that decides
/// for one media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Standing {
    quality: u16,
    specificity: Specificity,
}

struct MediaRange<'a> {
    ty: &'a str,
    subtype: &'a str,
    quality: u16,
}

impl<'a> MediaRange<'a> {
    /// `type/subtype;param=value;q=0.5`; None for anything malformed.
    fn parse(range: &'a str) -> Option<Self> {
        let mut parts = range.split(';');
        let (ty, subtype) = parts.next()?.trim().split_once('/')?;
        let mut quality = 1000;
        for parameter in parts {
            let Some((name, value)) = parameter.trim().split_once('=') else {
                continue;
            };
            if name.trim().eq_ignore_ascii_case("q") {
                quality = parse_quality(value.trim())?;
            }
        }
        Some(Self {
            ty: ty.trim(),
            subtype: subtype.trim(),
            quality,
        })
    }

    fn specificity_for(&self, subtype: &str) -> Option<Specificity> {
        match (self.ty, self.subtype) {
            ("*", "*") => Some(Specificity::Any),
            (ty, "*") if ty.eq_ignore_ascii_case("application") => Some(Specificity::Type),
            (ty, sub) if ty.eq_ignore_ascii_case("application") && sub.eq_ignore_ascii_case(subtype) => {
                Some(Specificity::Exact)
            }
            _ => None,
        }
    }
}

/// `application/<subtype>`'s standing: the most specific matching range
/// decides; None when no range accepts it (or it has q=0).
fn standing(ranges: &[MediaRange<'_>], subtype: &str) -> Option<Standing> {
    ranges
        .iter()
        .filter_map(|range| {
            range.specificity_for(subtype).map(|specificity| Standing {
                quality: range.quality,
                specificity,
            })
        })
        .max_by_key(|standing| standing.specificity)
        .filter(|standing| standing.quality > 0)
}

/// A qvalue (`0`, `0.5`, `1.000`) in thousandths.
fn parse_quality(value: &str) -> Option<u16> {
    let (whole, fraction) = value.split_once('.').unwrap_or((value, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths = format!("{fraction:0<3}").parse::<u16>().ok()?;
    match whole {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// The POST bodies that are executed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// `application/json` (in UTF-8, the only charset JSON has).
    Json,
    /// The GraphQL multipart request (`multipart/form-data`), for uploads.
    Multipart,
}

impl BodyKind {
    /// What the `Content-Type` says the body is; the refusal's message
    /// when it is something else, which a browser may send cross-site
    /// without asking first (text/plain, a form).
    pub fn of(headers: &HeaderMap) -> Result<Self, String> {
        let Some(content_type) = headers.get(header::CONTENT_TYPE) else {
            return Err("a POST needs Content-Type: application/json (or multipart/form-data for uploads)".to_owned());
        };
        let refusal = || {
            format!(
                "Content-Type {:?} is not accepted: send application/json, or multipart/form-data for uploads",
                String::from_utf8_lossy(content_type.as_bytes())
            )
        };
        let mime: mime::Mime = content_type
            .to_str()
            .ok()
            .and_then(|value| value.parse().ok())
            .ok_or_else(refusal)?;
        match (mime.type_(), mime.subtype(), mime.suffix()) {
            (mime::APPLICATION, mime::JSON, None) => {
                let utf8 = mime
                    .get_param(mime::CHARSET)
                    .is_none_or(|charset| charset == mime::UTF_8);
                if utf8 { Ok(Self::Json) } else { Err(refusal()) }
            }
            (mime::MULTIPART, mime::FORM_DATA, None) => Ok(Self::Multipart),
            _ => Err(refusal()),
        }
    }
}

/// Headers a browser cannot add to a cross-site request without a CORS
/// preflight, which only allowed origins pass. A multipart body is one a
/// plain HTML form can send, so it must come with one of them (Apollo's
/// CSRF prevention asks the same).
pub const PREFLIGHT_HEADERS: [&str; 3] = ["authorization", "apollo-require-preflight", "x-tollgate-csrf"];

/// Whether the request carries a (non-empty) header from
/// [`PREFLIGHT_HEADERS`].
pub fn forces_preflight(headers: &HeaderMap) -> bool {
    PREFLIGHT_HEADERS
        .iter()
        .any(|name| headers.get(*name).is_some_and(|value| !value.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn negotiate(accept: Option<&str>) -> Option<ResponseMedia> {
        let mut headers = HeaderMap::new();
        if let Some(accept) = accept {
            headers.insert(header::ACCEPT, HeaderValue::from_str(accept).unwrap());
        }
        ResponseMedia::negotiate(&headers)
    }

    #[test]
    fn the_accept_header_picks_the_response_type() {
        use ResponseMedia::{GraphqlResponse, Json};
        assert_eq!(negotiate(None), Some(Json));
        assert_eq!(negotiate(Some("")), Some(Json));
        assert_eq!(negotiate(Some("*/*")), Some(Json));
        assert_eq!(negotiate(Some("application/json")), Some(Json));
        assert_eq!(
            negotiate(Some("application/graphql-response+json")),
            Some(GraphqlResponse)
        );
        // Apollo Client 4.
        assert_eq!(
            negotiate(Some("application/graphql-response+json,application/json;q=0.9")),
            Some(GraphqlResponse)
        );
        // urql.
        assert_eq!(
            negotiate(Some(
                "application/graphql-response+json, application/graphql+json, application/json, text/event-stream, multipart/mixed"
            )),
            Some(GraphqlResponse)
        );
        assert_eq!(
            negotiate(Some("application/graphql-response+json;q=0.5, application/json")),
            Some(Json)
        );
        assert_eq!(
            negotiate(Some("application/json;q=0, application/*")),
            Some(GraphqlResponse)
        );
        assert_eq!(negotiate(Some("text/html, */*;q=0.8")), Some(Json));
        assert_eq!(negotiate(Some("text/html")), None);
        assert_eq!(negotiate(Some("application/json;q=0")), None);
        assert_eq!(negotiate(Some("application/json;q=2")), None);
    }

    #[test]
    fn qualities_parse_as_thousandths() {
        assert_eq!(parse_quality("1"), Some(1000));
        assert_eq!(parse_quality("1.000"), Some(1000));
        assert_eq!(parse_quality("0.9"), Some(900));
        assert_eq!(parse_quality("0.125"), Some(125));
        assert_eq!(parse_quality("0"), Some(0));
        assert_eq!(parse_quality("0.1234"), None);
        assert_eq!(parse_quality("1.5"), None);
        assert_eq!(parse_quality("x"), None);
    }

    fn kind(content_type: Option<&str>) -> Result<BodyKind, String> {
        let mut headers = HeaderMap::new();
        if let Some(content_type) = content_type {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_str(content_type).unwrap());
        }
        BodyKind::of(&headers)
    }

    #[test]
    fn only_json_and_multipart_bodies_are_executed() {
        assert_eq!(kind(Some("application/json")), Ok(BodyKind::Json));
        assert_eq!(kind(Some("application/json; charset=utf-8")), Ok(BodyKind::Json));
        assert_eq!(kind(Some("Application/JSON; charset=UTF-8")), Ok(BodyKind::Json));
        assert_eq!(kind(Some("multipart/form-data; boundary=x")), Ok(BodyKind::Multipart));
        for refused in [
            None,
            Some("text/plain"),
            Some("text/plain; charset=utf-8"),
            Some("application/x-www-form-urlencoded"),
            Some("application/json; charset=latin1"),
            Some("application/graphql"),
            Some("multipart/mixed; boundary=x"),
            Some("nonsense"),
        ] {
            assert!(kind(refused).is_err(), "{refused:?}");
        }
    }
}
