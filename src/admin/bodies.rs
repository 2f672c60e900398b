//! The admin API's request bodies: parsed strictly (unknown fields refused, the
//! field of an error named), bounded, validated.

use serde_json::{Map, Value};

use crate::directory::expiry::Requested;
use crate::directory::status::read_status;
use crate::encoding::json_path::Located;
pub(super) use crate::encoding::json_reader::StringOrList;
use crate::encoding::json_reader::{self, map, string_or_list, strings, Object};

use super::*;

/// A body the admin API reads from its JSON value (`encoding::json_reader`).
pub(super) trait Body: Sized {
    fn read(value: &Value) -> Result<Self, json_reader::Error>;
}

pub(super) fn parse_body<T: Body>(body: &[u8]) -> Result<T, ApiResponse> {
    if body.len() > MAX_BODY_BYTES {
        return Err(error(
            413,
            "body_too_large",
            format!("bodies are limited to {MAX_BODY_BYTES} bytes"),
        ));
    }
    let value = json_reader::parse(body).map_err(invalid_body)?;
    T::read(&value).map_err(invalid_body)
}

fn invalid_body(located: Located) -> ApiResponse {
    let message = if located.path.is_empty() {
        located.message
    } else {
        format!("at `{}`: {}", located.path, located.message)
    };
    error(400, "invalid_body", message)
}

pub(super) fn check_reason(reason: Option<String>) -> Result<Option<String>, ApiResponse> {
    match reason {
        Some(reason) if reason.len() > MAX_REASON || reason.contains(char::is_control) => Err(error(
            422,
            "invalid_reason",
            format!("\"reason\" must be at most {MAX_REASON} bytes without control characters"),
        )),
        other => Ok(other.filter(|r| !r.trim().is_empty())),
    }
}

pub(super) struct CreateRequest {
    pub(super) email: String,
    pub(super) status: Option<Status>,
    pub(super) metadata: Map<String, Value>,
}

impl Body for CreateRequest {
    fn read(value: &Value) -> Result<CreateRequest, json_reader::Error> {
        let object = Object::new(value, "", &["email", "status", "metadata"])?;
        Ok(CreateRequest {
            email: object.required_string("email")?,
            status: object.optional("status", read_status)?.map(|input| input.0),
            metadata: object.optional("metadata", map)?.unwrap_or_default(),
        })
    }
}

impl CreateRequest {
    pub(super) fn into_developer(self, actor: &str, now_ms: u64) -> Result<Developer, ApiResponse> {
        let email =
            canonical_email(&self.email).map_err(|e| error(422, "invalid_email", format!("{:?} {e}", self.email)))?;
        let status = self.status.unwrap_or(Status::Requested);
        if !matches!(status, Status::Requested | Status::Approved) {
            return Err(error(
                422,
                "invalid_status",
                "a new developer is \"requested\" or, created by an admin, \"approved\"",
            ));
        }
        if self.metadata.len() > MAX_METADATA_FIELDS {
            return Err(error(
                422,
                "invalid_metadata",
                format!("at most {MAX_METADATA_FIELDS} metadata fields"),
            ));
        }
        for (name, value) in &self.metadata {
            let ok = name.len() <= 64
                && value
                    .as_str()
                    .is_some_and(|v| v.len() <= MAX_METADATA_VALUE && !v.contains(char::is_control));
            if !ok {
                return Err(error(
                    422,
                    "invalid_metadata",
                    format!(
                        "metadata.{name}: values are strings of at most {MAX_METADATA_VALUE} bytes, names at most 64"
                    ),
                ));
            }
        }
        Ok(Developer::register(&email, status, self.metadata, actor, now_ms))
    }
}

#[derive(Default)]
pub(super) struct ActRequest {
    pub(super) reason: Option<String>,
    pub(super) dry_run: bool,
    pub(super) expires_at: Option<String>,
    pub(super) expires_in: Option<String>,
}

impl Body for ActRequest {
    fn read(value: &Value) -> Result<ActRequest, json_reader::Error> {
        let object = Object::new(value, "", &["reason", "dry_run", "expires_at", "expires_in"])?;
        Ok(ActRequest {
            reason: object.string("reason")?,
            dry_run: object.bool("dry_run")?.unwrap_or_default(),
            expires_at: object.string("expires_at")?,
            expires_in: object.string("expires_in")?,
        })
    }
}

pub(super) struct BulkRequest {
    pub(super) action: String,
    pub(super) emails: Vec<String>,
    pub(super) reason: Option<String>,
    pub(super) dry_run: bool,
    pub(super) expires_at: Option<String>,
    pub(super) expires_in: Option<String>,
}

impl Body for BulkRequest {
    fn read(value: &Value) -> Result<BulkRequest, json_reader::Error> {
        let object = Object::new(
            value,
            "",
            &["action", "emails", "reason", "dry_run", "expires_at", "expires_in"],
        )?;
        Ok(BulkRequest {
            action: object.required_string("action")?,
            emails: object.required("emails", strings)?,
            reason: object.string("reason")?,
            dry_run: object.bool("dry_run")?.unwrap_or_default(),
            expires_at: object.string("expires_at")?,
            expires_in: object.string("expires_in")?,
        })
    }
}

/// The approval's end an action asks for, as an instant; `None`: never.
/// Only an action that approves takes one (and gets the configured default);
/// extending needs one.
pub(super) fn action_expiry(
    ctx: &AdminContext<'_>,
    action: DeveloperAction,
    expires_at: Option<String>,
    expires_in: Option<String>,
) -> Result<Option<u64>, ApiResponse> {
    let requested = Requested { expires_at, expires_in };
    let approves = matches!(
        action,
        DeveloperAction::Accept | DeveloperAction::Approve | DeveloperAction::Reapprove | DeveloperAction::Extend
    );
    if !approves {
        if requested != Requested::default() {
            return Err(error(
                400,
                "invalid_expiry",
                "only an approval expires: this action takes no expires_at or expires_in",
            ));
        }
        return Ok(None);
    }
    let expiry = ctx
        .approvals
        .resolve(&requested, ctx.now_ms)
        .map_err(|why| error(400, "invalid_expiry", why))?;
    if action == DeveloperAction::Extend && expiry.is_none() {
        return Err(error(400, "invalid_expiry", "extend needs expires_at or expires_in"));
    }
    Ok(expiry)
}

pub(super) struct InviteRequest {
    pub(super) emails: StringOrList,
}

impl Body for InviteRequest {
    fn read(value: &Value) -> Result<InviteRequest, json_reader::Error> {
        let object = Object::new(value, "", &["emails"])?;
        Ok(InviteRequest {
            emails: object.required("emails", string_or_list)?,
        })
    }
}
